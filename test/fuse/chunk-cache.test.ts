/** The bounded LRU of decoded chunks. */
import t from 'tap';
import { LruChunkCache } from '../../fuse/chunk-cache.js';

const chunk = (bytes: number, fill = 1): Buffer => Buffer.alloc(bytes, fill);

t.test('evicts the least recently used chunks beyond its capacity in bytes', async (t) => {
  const cache = new LruChunkCache(300);
  cache.set('a', chunk(100));
  cache.set('b', chunk(100));
  cache.set('c', chunk(100));
  t.equal(cache.size, 300);
  t.ok(cache.get('a'), 'a is used: b is now the oldest');
  cache.set('d', chunk(100));
  t.same(['a', 'b', 'c', 'd'].map((k) => cache.has(k)), [true, false, true, true]);
  t.equal(cache.size, 300);

  t.ok(cache.has('c'));
  const c = cache.get('c')!;
  cache.get('d');
  const e = chunk(150);
  t.equal(cache.set('e', e).length, 2, 'set returns what it evicted, to be reused');
  t.ok(cache.has('d') && !cache.has('c'));
  cache.set('c', c);
  t.same(['a', 'c', 'd', 'e'].map((k) => cache.has(k)), [false, true, false, true], 'has() does not count as a use; enough is evicted to fit');
  t.equal(cache.size, 250);
});

t.test('replacing a chunk counts its bytes once; a chunk larger than the cache is not kept', async (t) => {
  const cache = new LruChunkCache(200);
  const first = chunk(100, 1);
  cache.set('a', first);
  t.same(cache.set('a', chunk(100, 2)), [first], 'the replaced buffer is let go of');
  t.equal(cache.size, 100);
  t.equal(cache.get('a')![0], 2);
  const huge = chunk(500);
  t.ok(cache.set('huge', huge).includes(huge), 'a chunk larger than the cache is let go of at once');
  t.equal(cache.size, 0);
  t.equal(cache.get('huge'), undefined);
  t.equal(cache.get('missing'), undefined);
});
