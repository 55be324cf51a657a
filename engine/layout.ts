/**
 * What each disk of a backup reads: its layout from an extent map (--extents), the data
 * ranges of a sparse file, or the whole device; its changed ranges (--changed) relative to
 * the parent's map (--parent). Everything is read and checked here, before the backup
 * writes anything.
 */
import type { Store } from '../store/store.js';
import type { BackupKind, DiskEntry, RestorePoint } from '../store/catalog.js';
import { DamagedDataError, InvalidInputError } from './errors.js';
import type { BackupDisk } from './backup.js';
import { checkCbtFormat, parseChanges, type CbtFormat } from './cbt.js';
import { parseExtentMap } from './extents.js';
import { dataRanges } from './holes.js';
import { readInputFile, readStdin } from './json-input.js';
import { readMapOrDamage } from './locate.js';
import { checkLabel } from './names.js';
import { discardRanges, mergeRanges, resizedRange, wholeDisk, type DiskLayout, type Range } from './plan.js';
import { resolveRef } from './refs.js';
import type { Source } from './source.js';

export interface LayoutOptions {
  /** `[LABEL=]FILE.json` extent maps. */
  extents?: string[];
  /**
   * REF of the restore point this backup is incremental to; by default the newest restore
   * point of the same name, if any (as restic picks its parent); false: none.
   */
  parent?: string | false;
  /** `[LABEL=]FILE` changed-block lists, relative to the parent; FILE `-` is standard input. */
  changed?: string[];
  /** The format of every --changed file (cbt.ts CBT_FORMATS); by default `auto`, detected from each file. */
  changedFormat?: string;
}

export interface PreparedBackup {
  disks: BackupDisk[];
  kind: BackupKind;
  parent: RestorePoint | null;
  /** The parent was picked by default, not named: if it goes away, the backup goes on without it. */
  implicitParent: boolean;
  /** What the inputs had that was ignored, for the report. */
  warnings: string[];
}

/** `LABEL=FILE` or `FILE` (only when there is one disk), keyed by the disk's label. */
function byLabel(specs: string[], sources: Source[], flag: string): Map<string, string> {
  const files = new Map<string, string>();
  const labels = sources.map((s) => s.label);
  for (const spec of specs) {
    const eq = spec.indexOf('=');
    let label = eq > 0 ? checkLabel(spec.slice(0, eq)) : null;
    const file = eq > 0 ? spec.slice(eq + 1) : spec;
    if (label === null) {
      if (sources.length > 1) throw new InvalidInputError(`${flag} ${spec}: there are ${sources.length} disks (${labels.join(', ')}); name one: ${flag} LABEL=${spec}`, { flag });
      label = labels[0];
    }
    if (!labels.includes(label)) throw new InvalidInputError(`${flag} ${spec}: no disk '${label}' in this backup (disks: ${labels.join(', ')})`, { flag, label });
    if (files.has(label)) throw new InvalidInputError(`${flag} is given twice for disk '${label}'`, { flag, label });
    if (file === '') throw new InvalidInputError(`${flag} ${spec} names no file`, { flag });
    files.set(label, file);
  }
  return files;
}

async function findParent(store: Store, ref: string, name: string): Promise<RestorePoint> {
  const parent = resolveRef((await store.catalog.list()).points, ref);
  if (parent.name !== name) {
    throw new InvalidInputError(
      `--parent ${ref} is restore point ${parent.id} of '${parent.name}', but this backup is named '${name}'; pick a parent of '${name}' (e.g. ${name}@latest) or pass --name ${parent.name}`,
      { parent: parent.id, parentName: parent.name, name },
    );
  }
  return parent;
}

/** The default parent: the newest restore point of this name. */
async function newestOf(store: Store, name: string): Promise<RestorePoint | null> {
  const points = (await store.catalog.list()).points.filter((p) => p.name === name);
  return points.reduce<RestorePoint | null>((newest, p) => (!newest || p.time > newest.time ? p : newest), null);
}

async function baseLayout(source: Source, extentFile: string | undefined, chunkSize: number): Promise<DiskLayout> {
  if (extentFile !== undefined) {
    const map = parseExtentMap(await readInputFile(extentFile, '--extents'), extentFile, source.path, source.size);
    return { size: map.size, chunkSize, extents: map.extents, changed: null };
  }
  if (source.isDevice) return wholeDisk(source.size, chunkSize);
  const data = await dataRanges(source.path, source.size);
  return { size: source.size, chunkSize, extents: data.map((r) => ({ ...r, from: r.offset })), changed: null };
}

/** The parent's map, exactly one id per slot (readMapOrDamage), with its disk's chunks laid out as this store's. */
async function readParentMap(store: Store, parent: RestorePoint, disk: DiskEntry): Promise<Buffer> {
  if (parent.chunkSize !== store.chunkSize) {
    throw new DamagedDataError(`parent ${parent.id} has ${parent.chunkSize}-byte chunks, this store ${store.chunkSize}; back up without --parent`, { restorePoint: parent.id, disk: disk.label, offset: 0 });
  }
  return readMapOrDamage(store, parent, disk.label);
}

/** Standard input can feed one disk only: a second `-` would read nothing and take the disk as unchanged. */
function checkStdinOnce(files: Map<string, string>): void {
  const fromStdin = [...files].filter(([, file]) => file === '-').map(([label]) => label);
  if (fromStdin.length > 1) throw new InvalidInputError(`--changed -: standard input can feed one disk, not ${fromStdin.join(' and ')}; give the others a file`, { flag: '--changed', labels: fromStdin });
}

function readChanges(file: string): Promise<string> {
  return file === '-' ? readStdin('--changed') : readInputFile(file, '--changed');
}

/** The CBT ranges plus whatever a size change since the parent forces to be read. */
function changedSinceParent(cbt: Range[], parentSize: number, size: number, chunkSize: number): Range[] {
  const resized = resizedRange(parentSize, size, chunkSize);
  return resized ? mergeRanges([...cbt, resized]) : cbt;
}

export async function prepareDisks(store: Store, sources: Source[], name: string, options: LayoutOptions): Promise<PreparedBackup> {
  const extentFiles = byLabel(options.extents ?? [], sources, '--extents');
  const changedFiles = byLabel(options.changed ?? [], sources, '--changed');
  if (changedFiles.size > 0 && typeof options.parent !== 'string') {
    throw new InvalidInputError('--changed needs --parent REF: a changed-block list describes changes since the restore point it was tracked from', {});
  }
  const format: CbtFormat | 'auto' = options.changedFormat === undefined ? 'auto' : checkCbtFormat(options.changedFormat, '--changed-format');
  if (options.changedFormat !== undefined && changedFiles.size === 0) throw new InvalidInputError('--changed-format names the format of the --changed files: give --changed too', { flag: '--changed-format' });
  checkStdinOnce(changedFiles);
  const warnings: string[] = [];
  // Sparse files are mapped by a filefrag child process: it runs while the catalog is read.
  const layouts = sources.map((source) => baseLayout(source, extentFiles.get(source.label), store.chunkSize));
  layouts.forEach((layout) => layout.catch(() => undefined)); // awaited below, after the parent's checks
  const implicitParent = options.parent === undefined;
  let parent = typeof options.parent === 'string' ? await findParent(store, options.parent, name) : implicitParent ? await newestOf(store, name) : null;
  const disks: BackupDisk[] = [];
  for (const [i, source] of sources.entries()) {
    const parentDisk = parent?.disks.find((d) => d.label === source.label) ?? null;
    const cbtFile = changedFiles.get(source.label);
    if (cbtFile !== undefined && !parentDisk) {
      throw new InvalidInputError(`--changed ${cbtFile}: parent ${parent!.id} has no disk '${source.label}' (it has ${parent!.disks.map((d) => d.label).join(', ')})`, {
        parent: parent!.id,
        disk: source.label,
      });
    }
    let layout = await layouts[i];
    if (cbtFile !== undefined) {
      const changes = parseChanges(await readChanges(cbtFile), cbtFile === '-' ? 'standard input' : cbtFile, layout.size, format);
      layout.changed = changedSinceParent(changes.changed, parentDisk!.size, layout.size, store.chunkSize);
      layout = discardRanges(layout, changes.discarded);
      warnings.push(...changes.warnings);
    }
    const parentMap = parentDisk ? await readParentMap(store, parent!, parentDisk).catch((err: Error) => (implicitParent ? null : Promise.reject(err))) : null;
    if (parentDisk && !parentMap) {
      // A damaged default parent must not stop the next backup: it only saves compression.
      parent = null;
      disks.forEach((d) => (d.parentMap = null));
    }
    disks.push({ label: source.label, path: source.path, layout, parentMap, sourceSize: source.size });
  }
  const kind: BackupKind = changedFiles.size > 0 ? 'cbt' : extentFiles.size > 0 ? 'extents' : 'full';
  return { disks, kind, parent, implicitParent, warnings };
}
