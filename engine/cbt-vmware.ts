/**
 * VMware vSphere `QueryChangedDiskAreas` results: a DiskChangeInfo `{"startOffset", "length",
 * "changedArea": [{"start", "length"}]}`, or an array of them: one call covers only part of a
 * large disk, and the caller calls again from startOffset + length until the disk's end.
 * Together they must cover the whole disk, or the bytes outside would silently count as
 * unchanged. pyVmomi's JSON encoder adds "_vimtype"; the SOAP bindings "dynamicType" and
 * "dynamicProperty": those are taken silently.
 */
import { InvalidInputError } from './errors.js';
import type { CbtInput, Located, Parsed } from './cbt-input.js';
import { checkArray, checkBytes, checkObject } from './json-input.js';

const BINDING_KEYS = ['_vimtype', 'dynamicType', 'dynamicProperty'];

interface Area extends Located {
  changed: Located[];
}

function changeInfo(value: unknown, file: string, where: string): Area {
  const info = checkObject(value, file, where, ['startOffset', 'length', 'changedArea'], BINDING_KEYS);
  const offset = checkBytes(info.startOffset, file, `${where}.startOffset`, 0);
  const length = checkBytes(info.length, file, `${where}.length`, 0);
  const changed = checkArray(info.changedArea, file, `${where}.changedArea`).map((item, i) => {
    const at = `${where}.changedArea[${i}]`;
    const extent = checkObject(item, file, at, ['start', 'length'], BINDING_KEYS);
    const range = { offset: checkBytes(extent.start, file, `${at}.start`, 0), length: checkBytes(extent.length, file, `${at}.length`, 1), where: at };
    if (range.offset < offset || range.offset + range.length > offset + length) {
      throw new InvalidInputError(`${file}: ${at} (bytes ${range.offset}-${range.offset + range.length - 1}) lies outside the area it was queried for (${where}: bytes ${offset}-${offset + length - 1})`, { file, where: at });
    }
    return range;
  });
  return { offset, length, where, changed };
}

/** The areas' end, when they cover [0, end) without a gap. */
function coveredEnd(areas: Area[], file: string): number {
  let end = 0;
  for (const area of [...areas].sort((a, b) => a.offset - b.offset)) {
    if (area.offset > end) {
      throw new InvalidInputError(`${file}: no DiskChangeInfo covers bytes ${end}-${area.offset - 1}; give the result of every QueryChangedDiskAreas call from offset 0 to the disk's end`, { file, where: area.where });
    }
    end = Math.max(end, area.offset + area.length);
  }
  return end;
}

export function parseVmwareAreas(input: CbtInput, file: string): Parsed {
  const value = input.json();
  const areas = Array.isArray(value) ? value.map((v, i) => changeInfo(v, file, `[${i}]`)) : [changeInfo(value, file, 'the DiskChangeInfo')];
  return { changed: areas.flatMap((a) => a.changed), discarded: [], warnings: [], describes: coveredEnd(areas, file) };
}
