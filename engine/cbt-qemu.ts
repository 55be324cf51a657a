/**
 * QEMU dirty bitmaps, read over NBD from an export of the bitmap's context
 * (`qemu-nbd -B NAME`, or an NBD server of a running VM). Both listings cover the whole
 * export, clean areas included: a map that does not end at the disk's end is of another disk.
 */
import { InvalidInputError } from './errors.js';
import { describeValue } from '../store/describe.js';
import { parseNumber, significantLines, type CbtInput, type Located, type Parsed } from './cbt-input.js';
import { checkArray, checkBytes, checkObject } from './json-input.js';

interface MapEntry extends Located {
  dirty: boolean;
}

const OTHER_CONTEXT = 'is this map of another context (base:allocation)? Map the bitmap: nbdinfo --map=qemu:dirty-bitmap:NAME';

/** The NBD dirty-bitmap context has one flag, bit 0 (dirty), that nbdinfo prints as "dirty" or "clean". */
function dirtyState(type: number, description: string, file: string, where: string): boolean {
  const dirty = description === 'dirty';
  if ((!dirty && description !== 'clean') || type !== (dirty ? 1 : 0)) {
    throw new InvalidInputError(`${file}: ${where}: type ${type} "${description}" is not a dirty-bitmap state (0 clean or 1 dirty); ${OTHER_CONTEXT}`, { file, where });
  }
  return dirty;
}

function mapOf(entries: MapEntry[]): Parsed {
  return {
    changed: entries.filter((e) => e.dirty),
    discarded: [],
    warnings: [],
    describes: entries.reduce((end, e) => Math.max(end, e.offset + e.length), 0),
  };
}

/** `nbdinfo --map=qemu:dirty-bitmap:NAME URI`: `OFFSET LENGTH TYPE DESCRIPTION` per line. */
export function parseNbdinfoText(input: CbtInput, file: string): Parsed {
  return mapOf(
    significantLines(input.text, false).map(({ line, number }) => {
      const where = `line ${number}`;
      const fields = /^(\S+)\s+(\S+)\s+(\S+)\s+(.+)$/.exec(line);
      if (!fields) throw new InvalidInputError(`${file}: ${where}: expected OFFSET LENGTH TYPE DESCRIPTION (nbdinfo --map), got ${JSON.stringify(line.slice(0, 60))}`, { file, where });
      const [offset, length, type] = [parseNumber(fields[1], file, `${where} offset`, 0), parseNumber(fields[2], file, `${where} length`, 1), parseNumber(fields[3], file, `${where} type`, 0)];
      return { offset, length, where, dirty: dirtyState(type, fields[4], file, where) };
    }),
  );
}

/** `nbdinfo --json --map=qemu:dirty-bitmap:NAME URI`: `[{"offset", "length", "type", "description"}]`. */
export function parseNbdinfoJson(input: CbtInput, file: string): Parsed {
  return mapOf(
    checkArray(input.json(), file, 'the nbdinfo map').map((item, i) => {
      const where = `[${i}]`;
      const entry = checkObject(item, file, where, ['offset', 'length', 'type', 'description']);
      const type = checkBytes(entry.type, file, `${where}.type`, 0);
      if (typeof entry.description !== 'string') throw new InvalidInputError(`${file}: ${where}.description must be a string, got ${describeValue(entry.description)}`, { file, where });
      return { offset: checkBytes(entry.offset, file, `${where}.offset`, 0), length: checkBytes(entry.length, file, `${where}.length`, 1), where, dirty: dirtyState(type, entry.description, file, where) };
    }),
  );
}

/**
 * `qemu-img map --output=json --image-opts driver=nbd,...,x-dirty-bitmap=qemu:dirty-bitmap:NAME`.
 * x-dirty-bitmap makes QEMU's NBD client read the bitmap's flag where base:allocation has
 * NBD_STATE_HOLE (bit 0 both), so a DIRTY area comes out as a hole: `"data": false` (and
 * `"present": false`), a clean one as `"data": true`. Seen with qemu-img 7.2 in
 * test/cli/cbt-sources.test.ts. The bitmap context never sets bit 1 (NBD_STATE_ZERO), so
 * `"zero": true` means the map is of the image's allocation, not of its bitmap.
 */
export function parseQemuMap(input: CbtInput, file: string): Parsed {
  return mapOf(
    checkArray(input.json(), file, 'the qemu-img map').map((item, i) => {
      const where = `[${i}]`;
      const entry = checkObject(item, file, where, ['start', 'length', 'data', 'zero'], ['depth', 'present', 'offset', 'compressed', 'filename']);
      if (typeof entry.data !== 'boolean') throw new InvalidInputError(`${file}: ${where}.data must be true or false, got ${describeValue(entry.data)}`, { file, where });
      if (entry.zero !== false) {
        throw new InvalidInputError(`${file}: ${where} has "zero": ${describeValue(entry.zero)}, which a dirty-bitmap map never has: map the bitmap with qemu-img map --image-opts driver=nbd,...,x-dirty-bitmap=qemu:dirty-bitmap:NAME`, { file, where });
      }
      return { offset: checkBytes(entry.start, file, `${where}.start`, 0), length: checkBytes(entry.length, file, `${where}.length`, 1), where, dirty: !entry.data };
    }),
  );
}
