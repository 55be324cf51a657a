/**
 * `thin_delta --snap1 PARENT --snap2 CURRENT METADATA` XML: under `<superblock
 * data_block_size="SECTORS">` one `<diff>` of `<same|different|left_only|right_only begin
 * length/>` in data blocks, or with --verbose the same elements holding `<range begin length
 * .../>`. `different` and `right_only` blocks changed; `left_only` blocks are unmapped in the
 * current device now (discarded: zeros); `same` nothing. A tag scanner is enough: thin_delta
 * writes no text, entities or CDATA.
 */
import { InvalidInputError } from './errors.js';
import { parseNumber, type CbtInput, type Located, type Parsed } from './cbt-input.js';

const KINDS = ['same', 'different', 'left_only', 'right_only'] as const;
type Kind = (typeof KINDS)[number];
const SECTOR = 512;

interface Tag {
  name: string;
  closing: boolean;
  empty: boolean;
  attributes: Map<string, string>;
  source: string;
}

function* tags(text: string, file: string): Generator<Tag> {
  const pattern = /<(\/?)([A-Za-z_][\w-]*)((?:\s+[\w-]+="[^"]*")*)\s*(\/?)>|<\?[^>]*\?>|<!--[\s\S]*?-->/g;
  let last = 0;
  for (let match; (match = pattern.exec(text)); last = pattern.lastIndex) {
    if (text.slice(last, match.index).trim() !== '') throw notThinDelta(file, `text ${JSON.stringify(text.slice(last, match.index).trim().slice(0, 40))} between tags`);
    if (match[2] === undefined) continue; // a declaration or comment
    const attributes = new Map([...match[3].matchAll(/([\w-]+)="([^"]*)"/g)].map((a) => [a[1], a[2]]));
    yield { name: match[2], closing: match[1] === '/', empty: match[4] === '/', attributes, source: match[0].slice(0, 80) };
  }
  if (text.slice(last).trim() !== '') throw notThinDelta(file, `text ${JSON.stringify(text.slice(last).trim().slice(0, 40))} that is not a tag`);
}

function notThinDelta(file: string, problem: string): InvalidInputError {
  return new InvalidInputError(`${file}: not thin_delta XML: ${problem}`, { file, problem });
}

function attribute(tag: Tag, name: string, file: string, min: 0 | 1): number {
  const value = tag.attributes.get(name);
  if (value === undefined) throw notThinDelta(file, `${tag.source} has no ${name}`);
  return parseNumber(value, file, `${tag.source} ${name}`, min);
}

export function parseThinDelta(input: CbtInput, file: string): Parsed {
  const changed: Located[] = [];
  const discarded: Located[] = [];
  let block = 0;
  let diffs = 0;
  let open: Kind | null = null;
  const add = (kind: Kind, tag: Tag): void => {
    if (block === 0) throw notThinDelta(file, `${tag.source} comes before <superblock data_block_size=...>`);
    if (diffs !== 1) throw notThinDelta(file, `${tag.source} is outside <diff>`);
    const range = { offset: attribute(tag, 'begin', file, 0) * block, length: attribute(tag, 'length', file, 1) * block, where: tag.source };
    if (kind === 'different' || kind === 'right_only') changed.push(range);
    else if (kind === 'left_only') discarded.push(range);
  };
  for (const tag of tags(input.text, file)) {
    const kind = KINDS.find((k) => k === tag.name);
    if (tag.closing) {
      if (kind && kind === open) open = null;
    } else if (tag.name === 'superblock') {
      block = attribute(tag, 'data_block_size', file, 1) * SECTOR;
    } else if (tag.name === 'diff') {
      if (++diffs > 1) throw notThinDelta(file, 'more than one <diff>; give the delta of one pair of devices');
    } else if (kind && tag.empty) {
      add(kind, tag);
    } else if (kind) {
      open = kind;
    } else if (tag.name === 'range' && open) {
      add(open, tag);
    } else {
      throw notThinDelta(file, `unexpected ${tag.source}`);
    }
  }
  if (block === 0 || diffs === 0) throw notThinDelta(file, 'no <superblock data_block_size=...> with a <diff> in it');
  return { changed, discarded, warnings: [], block, pastEndHint: 'is it thin_delta of another thin device, or of one of another size?' };
}
