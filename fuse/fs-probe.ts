/**
 * TEMPORARY: stands in for probeFilesystem of engine/filesystems.ts (branch h-parts) until it is
 * merged; same signature, so the swap is an import. Superblock magics only.
 */
type Read = (offset: number, length: number) => Promise<Buffer>;

const MAGICS: { type: string; offset: number; bytes: Buffer }[] = [
  { type: 'xfs', offset: 0, bytes: Buffer.from('XFSB') },
  { type: 'ntfs', offset: 3, bytes: Buffer.from('NTFS    ') },
  { type: 'btrfs', offset: 0x10040, bytes: Buffer.from('_BHRfS_M') },
  { type: 'vfat', offset: 0x52, bytes: Buffer.from('FAT32') },
  { type: 'vfat', offset: 0x36, bytes: Buffer.from('FAT1') },
  { type: 'ext4', offset: 0x438, bytes: Buffer.from([0x53, 0xef]) },
];

export async function probeFilesystem(read: Read): Promise<string | null> {
  for (const magic of MAGICS) {
    const found = await read(magic.offset, magic.bytes.length);
    if (found.equals(magic.bytes)) return magic.type;
  }
  return null;
}
