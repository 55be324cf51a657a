/** ReadAhead as a plain object: what it prefetches for sequential, slightly reordered and random reads. */
import t from 'tap';
import { ReadAhead } from '../../fuse/image-file.js';

const UNIT = 1024;

function recorder(maxAhead = 8): { ahead: ReadAhead; calls: [number, number][] } {
  const calls: [number, number][] = [];
  return { ahead: new ReadAhead(UNIT, 1000 * UNIT, maxAhead, (first, count) => calls.push([first, count])), calls };
}

t.test('sequential reads: the window doubles up to its maximum and is topped up at half', async (t) => {
  const { ahead, calls } = recorder();
  for (let unit = 0; unit < 12; unit++) ahead.note(unit * UNIT, UNIT);
  t.same(calls, [
    [1, 1],
    [2, 2],
    [4, 3],
    [7, 5],
    [12, 4],
    [16, 4],
  ]);
});

t.test('reads a little out of order, as from several requests in flight, stay sequential', async (t) => {
  const { ahead, calls } = recorder();
  for (const unit of [0, 1, 3, 2, 4, 6, 5, 7]) ahead.note(unit * UNIT, UNIT);
  t.same(calls, [
    [1, 1],
    [2, 2],
    [4, 4],
    [8, 5],
  ], 'the window keeps growing: no request lands outside what was prefetched');
});

t.test('a jump starts over, and reads sequential from there grow again', async (t) => {
  const { ahead, calls } = recorder();
  for (let unit = 0; unit < 4; unit++) ahead.note(unit * UNIT, UNIT);
  const before = calls.length;
  ahead.note(500 * UNIT, UNIT);
  t.equal(calls.length, before, 'nothing prefetched on the jump');
  ahead.note(501 * UNIT, UNIT);
  ahead.note(502 * UNIT, UNIT);
  t.same(calls.slice(before), [
    [502, 1],
    [503, 2],
  ]);
  ahead.note(100 * UNIT, UNIT);
  ahead.note(101 * UNIT, UNIT);
  t.same(calls[calls.length - 1], [102, 1], 'a jump back is a jump too');
});
