/**
 * A disk's partition table: MBR (primaries, and the logicals of an extended partition's EBR
 * chain) or, behind a protective MBR, GPT (primary header, else the backup at the disk's last
 * sector). Partitions are numbered as Linux numbers them: MBR primaries 1-4, logicals from 5
 * in chain order; GPT entries by index + 1.
 *
 * Sectors are 512 bytes. A 4Kn disk (4096-byte logical sectors) keeps its GPT header at byte
 * 4096 and counts LBAs in 4 KiB: it is not read as such here, and shows as a damaged table.
 *
 * What cannot be trusted (a bad checksum, an entry past the end of the disk, a looping EBR
 * chain) is named in `problems`, one line each, and left out; what can is still listed.
 */
import { crc32 } from 'node:zlib';
import type { ReadBytes } from './byte-reader.js';
import { isExfatBootSector, isFatBootSector, isNtfsBootSector } from './filesystems.js';

export const SECTOR_BYTES = 512;

export type TableScheme = 'mbr' | 'gpt' | 'none';

export interface Partition {
  number: number;
  /** The type's name, or its raw value when it has none here. */
  type: string;
  /** `0x83` for MBR, the type GUID (lowercase) for GPT. */
  typeId: string;
  /** In bytes from the start of the disk. */
  start: number;
  size: number;
  /** GPT's partition name; MBR has none. */
  name?: string;
  /** An MBR extended partition: a container of logicals, not a partition with data of its own. */
  extended?: true;
}

export interface PartitionTable {
  scheme: TableScheme;
  partitions: Partition[];
  problems: string[];
}

const MBR_TYPES: Record<number, string> = {
  0x01: 'FAT12',
  0x04: 'FAT16 <32M',
  0x05: 'Extended',
  0x06: 'FAT16',
  0x07: 'HPFS/NTFS/exFAT',
  0x0b: 'W95 FAT32',
  0x0c: 'W95 FAT32 (LBA)',
  0x0e: 'W95 FAT16 (LBA)',
  0x0f: "W95 Ext'd (LBA)",
  0x27: 'Hidden NTFS WinRE',
  0x82: 'Linux swap / Solaris',
  0x83: 'Linux',
  0x85: 'Linux extended',
  0x8e: 'Linux LVM',
  0xa5: 'FreeBSD',
  0xa6: 'OpenBSD',
  0xa9: 'NetBSD',
  0xaf: 'HFS / HFS+',
  0xee: 'GPT',
  0xef: 'EFI (FAT-12/16/32)',
  0xfd: 'Linux raid autodetect',
};

const EXTENDED_TYPES = new Set([0x05, 0x0f, 0x85]);
const PROTECTIVE_TYPE = 0xee;

const GPT_TYPES: Record<string, string> = {
  'c12a7328-f81f-11d2-ba4b-00a0c93ec93b': 'EFI System',
  '21686148-6449-6e6f-744e-656564454649': 'BIOS boot',
  '0fc63daf-8483-4772-8e79-3d69d8477de4': 'Linux filesystem',
  '0657fd6d-a4ab-43c4-84e5-0933c84b4f4f': 'Linux swap',
  'e6d6d379-f507-44c2-a23c-238f2a3df928': 'Linux LVM',
  'a19d880f-05fc-4d3b-a006-743f0f84911e': 'Linux RAID',
  '933ac7e1-2eb4-4f13-b844-0e14e2aef915': 'Linux home',
  '4f68bce3-e8cd-4db1-96e7-fbcaf984b709': 'Linux root (x86-64)',
  '44479540-f297-41b2-9af7-d131d5f0458a': 'Linux root (x86)',
  'b921b045-1df0-41c3-af44-4c6f280d3fae': 'Linux root (ARM-64)',
  '3b8f8425-20e0-4f3b-907f-1a25a76f98e8': 'Linux server data',
  'bc13c2ff-59e6-4262-a352-b275fd6f7172': 'Linux extended boot',
  'ebd0a0a2-b9e5-4433-87c0-68b6b72699c7': 'Microsoft basic data',
  'e3c9e316-0b5c-4db8-817d-f92df00215ae': 'Microsoft reserved',
  'de94bba4-06d1-4d40-a16a-bfd50179d6ac': 'Windows recovery environment',
  '5808c8aa-7e8f-42e0-85d2-e1e90434cfb3': 'Microsoft LDM metadata',
  'af9b60a0-1431-4f62-bc68-3311714a69ad': 'Microsoft LDM data',
  '48465300-0000-11aa-aa11-00306543ecac': 'Apple HFS/HFS+',
  '7c3457ef-0000-11aa-aa11-00306543ecac': 'Apple APFS',
  '516e7cb4-6ecf-11d6-8ff8-00022d09712b': 'FreeBSD data',
  '516e7cb5-6ecf-11d6-8ff8-00022d09712b': 'FreeBSD swap',
  '516e7cb6-6ecf-11d6-8ff8-00022d09712b': 'FreeBSD UFS',
};

function hex2(n: number): string {
  return `0x${n.toString(16).padStart(2, '0')}`;
}

/** GPT's mixed-endian GUID: the first three fields little-endian, the rest in order. */
function guidOf(bytes: Buffer): string {
  const hex = bytes.toString('hex');
  const swap = (from: number, to: number): string => hex.slice(from, to).match(/../g)!.reverse().join('');
  return `${swap(0, 8)}-${swap(8, 12)}-${swap(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20, 32)}`;
}

async function sectors(read: ReadBytes, lba: number, count: number): Promise<Buffer> {
  return read(lba * SECTOR_BYTES, count * SECTOR_BYTES);
}

function hasSignature(sector: Buffer): boolean {
  return sector.length === SECTOR_BYTES && sector.readUInt16LE(510) === 0xaa55;
}

interface MbrEntry {
  type: number;
  /** In sectors, relative to whatever the table's entries count from. */
  first: number;
  count: number;
}

function mbrEntries(sector: Buffer): MbrEntry[] {
  return [0, 1, 2, 3].map((i) => {
    const at = 446 + i * 16;
    return { type: sector[at + 4], first: sector.readUInt32LE(at + 8), count: sector.readUInt32LE(at + 12) };
  });
}

/** What Linux would list from an MBR entry, or why it is left out. */
function mbrPartition(number: number, entry: MbrEntry, base: number, diskSectors: number, problems: string[]): Partition | null {
  const first = base + entry.first;
  if (first + entry.count > diskSectors) {
    problems.push(`partition ${number}: sectors ${first}-${first + entry.count - 1} lie past the end of the disk (${diskSectors} sectors); left out`);
    return null;
  }
  const typeId = hex2(entry.type);
  return {
    number,
    type: MBR_TYPES[entry.type] ?? typeId,
    typeId,
    start: first * SECTOR_BYTES,
    size: entry.count * SECTOR_BYTES,
    ...(EXTENDED_TYPES.has(entry.type) ? { extended: true as const } : {}),
  };
}

/** Linux follows no more EBRs than this either (block/partitions/msdos.c): a chain can step forward one sector at a time. */
const MAX_EBRS = 100;

/**
 * Each EBR holds one logical (its start relative to the EBR) and a link to the next EBR (relative
 * to the extended partition's start). A link back to an EBR already seen, or out of the extended
 * partition, ends the chain with a problem: the logicals before it are kept.
 */
async function logicals(read: ReadBytes, extended: Partition, diskSectors: number, problems: string[]): Promise<Partition[]> {
  const extFirst = extended.start / SECTOR_BYTES;
  const extEnd = extFirst + extended.size / SECTOR_BYTES;
  const found: Partition[] = [];
  const seen = new Set<number>();
  let ebr = extFirst;
  for (;;) {
    if (seen.size === MAX_EBRS) {
      problems.push(`extended partition ${extended.number}: its EBR chain goes on past ${MAX_EBRS} EBRs; logical partitions after ${4 + found.length} ignored`);
      return found;
    }
    if (seen.has(ebr)) {
      problems.push(`extended partition ${extended.number}: its EBR chain loops back to sector ${ebr}; logical partitions after ${4 + found.length} ignored`);
      return found;
    }
    seen.add(ebr);
    const sector = await sectors(read, ebr, 1);
    if (!hasSignature(sector)) {
      problems.push(`extended partition ${extended.number}: the EBR at sector ${ebr} has no 0x55AA signature; logical partitions from ${5 + found.length} on ignored`);
      return found;
    }
    const [data, link] = mbrEntries(sector);
    if (data.type !== 0 && data.count > 0) {
      const number = 5 + found.length;
      const first = ebr + data.first;
      if (first + data.count > extEnd) {
        problems.push(`partition ${number}: sectors ${first}-${first + data.count - 1} lie outside its extended partition (sectors ${extFirst}-${extEnd - 1}); left out`);
      } else {
        const partition = mbrPartition(number, data, ebr, diskSectors, problems);
        if (partition) found.push(partition);
      }
    }
    if (link.type === 0 || link.count === 0) return found;
    const next = extFirst + link.first;
    if (next >= extEnd) {
      problems.push(`extended partition ${extended.number}: the EBR at sector ${ebr} links to sector ${next}, outside the extended partition; logical partitions after ${4 + found.length} ignored`);
      return found;
    }
    ebr = next;
  }
}

async function readMbr(read: ReadBytes, entries: MbrEntry[], diskSectors: number): Promise<PartitionTable> {
  const problems: string[] = [];
  const partitions: Partition[] = [];
  for (const [i, entry] of entries.entries()) {
    if (entry.type === 0 || entry.count === 0) continue;
    const partition = mbrPartition(i + 1, entry, 0, diskSectors, problems);
    if (partition) partitions.push(partition);
  }
  for (const extended of partitions.filter((p) => p.extended)) partitions.push(...(await logicals(read, extended, diskSectors, problems)));
  return { scheme: 'mbr', partitions, problems };
}

interface GptHeader {
  entriesLba: number;
  entryCount: number;
  entrySize: number;
  alternateLba: number;
  entries: Buffer;
}

/** Entries beyond this many bytes are not a table anyone wrote (the usual is 16 KiB). */
const MAX_GPT_ENTRIES_BYTES = 1024 * 1024;

/** The header at `lba` with its entries, or why it cannot be used. */
async function readGptHeader(read: ReadBytes, lba: number, diskSectors: number): Promise<GptHeader | string> {
  const sector = await sectors(read, lba, 1);
  if (sector.length < SECTOR_BYTES || sector.toString('latin1', 0, 8) !== 'EFI PART') return 'no "EFI PART" signature';
  const headerSize = sector.readUInt32LE(12);
  if (headerSize < 92 || headerSize > SECTOR_BYTES) return `header size ${headerSize} is impossible`;
  const header = Buffer.from(sector.subarray(0, headerSize));
  const storedCrc = header.readUInt32LE(16);
  header.writeUInt32LE(0, 16);
  if (crc32(header) !== storedCrc) return 'header CRC32 mismatch';
  if (Number(sector.readBigUInt64LE(24)) !== lba) return `header says it is at sector ${sector.readBigUInt64LE(24)}`;
  const entriesLba = Number(sector.readBigUInt64LE(72));
  const entryCount = sector.readUInt32LE(80);
  const entrySize = sector.readUInt32LE(84);
  if (entrySize < 128 || entrySize % 8 !== 0 || entryCount * entrySize > MAX_GPT_ENTRIES_BYTES) return `entry array of ${entryCount} entries of ${entrySize} bytes is impossible`;
  const entrySectors = Math.ceil((entryCount * entrySize) / SECTOR_BYTES);
  if (entriesLba + entrySectors > diskSectors) return `entry array at sector ${entriesLba} lies past the end of the disk`;
  const entries = (await sectors(read, entriesLba, entrySectors)).subarray(0, entryCount * entrySize);
  if (crc32(entries) !== sector.readUInt32LE(88)) return 'entry array CRC32 mismatch';
  return { entriesLba, entryCount, entrySize, alternateLba: Number(sector.readBigUInt64LE(32)), entries };
}

function gptPartitions(header: GptHeader, diskSectors: number, problems: string[]): Partition[] {
  const partitions: Partition[] = [];
  for (let i = 0; i < header.entryCount; i++) {
    const entry = header.entries.subarray(i * header.entrySize, (i + 1) * header.entrySize);
    if (entry.subarray(0, 16).every((b) => b === 0)) continue;
    const number = i + 1;
    const first = Number(entry.readBigUInt64LE(32));
    const last = Number(entry.readBigUInt64LE(40));
    if (last < first || last >= diskSectors) {
      problems.push(`partition ${number}: sectors ${first}-${last} are not within the disk (${diskSectors} sectors); left out`);
      continue;
    }
    const typeId = guidOf(entry.subarray(0, 16));
    const name = entry.toString('utf16le', 56, 128).replace(/\0.*$/s, '');
    partitions.push({ number, type: GPT_TYPES[typeId] ?? typeId, typeId, start: first * SECTOR_BYTES, size: (last - first + 1) * SECTOR_BYTES, ...(name === '' ? {} : { name }) });
  }
  return partitions;
}

/** The primary header, else the backup at the disk's last sector; each copy's damage is named. */
async function readGpt(read: ReadBytes, diskSectors: number): Promise<PartitionTable> {
  const problems: string[] = [];
  const lastLba = diskSectors - 1;
  const primary = await readGptHeader(read, 1, diskSectors);
  if (typeof primary !== 'string') {
    const backup = primary.alternateLba >= diskSectors ? `header at sector ${primary.alternateLba} is outside the disk` : await readGptHeader(read, primary.alternateLba, diskSectors);
    if (typeof backup === 'string') problems.push(`GPT backup header damaged (${backup}); the primary is used`);
    return { scheme: 'gpt', partitions: gptPartitions(primary, diskSectors, problems), problems };
  }
  const backup = await readGptHeader(read, lastLba, diskSectors);
  if (typeof backup === 'string') {
    problems.push(`GPT primary header damaged (${primary}) and backup header at sector ${lastLba} damaged (${backup}): no partitions read`);
    return { scheme: 'gpt', partitions: [], problems };
  }
  problems.push(`GPT primary header damaged (${primary}); using the backup header at sector ${lastLba}`);
  return { scheme: 'gpt', partitions: gptPartitions(backup, diskSectors, problems), problems };
}

/**
 * A boot sector of FAT, exFAT or NTFS also ends in 0x55AA: as blkid does, a sector that reads
 * as one is a filesystem on the whole disk, not a partition table. So is one whose entries
 * have a boot flag other than 0x00 or 0x80.
 */
function isPartitionTable(sector: Buffer): boolean {
  if (!hasSignature(sector) || isFatBootSector(sector) || isExfatBootSector(sector) || isNtfsBootSector(sector)) return false;
  return [0, 1, 2, 3].every((i) => sector[446 + i * 16] === 0x00 || sector[446 + i * 16] === 0x80);
}

export async function readPartitionTable(read: ReadBytes, diskSize: number): Promise<PartitionTable> {
  const diskSectors = Math.floor(diskSize / SECTOR_BYTES);
  const mbr = await sectors(read, 0, 1);
  if (!isPartitionTable(mbr)) return { scheme: 'none', partitions: [], problems: [] };
  const entries = mbrEntries(mbr);
  if (entries.some((e) => e.type === PROTECTIVE_TYPE)) return readGpt(read, diskSectors);
  return readMbr(read, entries, diskSectors);
}
