/** REF: a full id, a unique id prefix, `latest`, or `NAME@latest`. */
import type { RestorePoint } from '../store/catalog.js';
import { AmbiguousRefError, DamagedDataError, UnknownRefError } from './errors.js';

/**
 * points must be newest first, as Catalog.list returns them. `damaged`: ids of catalog
 * entries that cannot be read, so a ref naming one says that instead of "no restore point".
 */
export function resolveRef(points: RestorePoint[], ref: string, damaged: string[] = []): RestorePoint {
  if (ref === 'latest') return first(points, ref);
  if (ref.endsWith('@latest')) {
    const name = ref.slice(0, -'@latest'.length);
    return first(points.filter((p) => p.name === name), ref);
  }
  if (!/^[0-9a-f]{1,16}$/.test(ref)) throw new UnknownRefError(`no restore point '${ref}' (a REF is an id, an id prefix, latest or NAME@latest)`, { ref });
  const matches = points.filter((p) => p.id.startsWith(ref));
  const unreadable = damaged.find((id) => id.startsWith(ref));
  if (matches.length === 0 && unreadable) {
    throw new DamagedDataError(`restore point ${unreadable}: its catalog entry is damaged (unreadable); its maps and chunks are kept`, { restorePoint: unreadable });
  }
  if (matches.length > 1) {
    throw new AmbiguousRefError(`restore point prefix '${ref}' is ambiguous: ${matches.map((p) => p.id).join(', ')}`, { ref });
  }
  return first(matches, ref);
}

function first(points: RestorePoint[], ref: string): RestorePoint {
  if (points.length === 0) throw new UnknownRefError(`no restore point '${ref}'`, { ref });
  return points[0];
}
