/** Writes a view layout out as a file, with the disk bytes taken from a buffer: what the mount serves, without FUSE. */
import { promises as fs } from 'node:fs';
import type { ViewLayout } from '../../engine/views/index.js';

export function materialize(layout: ViewLayout, disk: Buffer): Buffer {
  const out = Buffer.alloc(layout.size);
  let at = 0;
  for (const piece of layout.pieces(0, layout.size)) {
    if (piece.kind === 'disk') disk.copy(out, at, piece.at, piece.at + piece.length);
    else if (piece.kind === 'bytes') piece.data.copy(out, at);
    at += piece.kind === 'bytes' ? piece.data.byteLength : piece.length;
  }
  if (at !== layout.size) throw new Error(`pieces cover ${at} of ${layout.size} bytes`);
  return out;
}

export async function writeView(path: string, layout: ViewLayout, disk: Buffer): Promise<void> {
  await fs.writeFile(path, materialize(layout, disk));
}
