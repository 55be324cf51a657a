import t from 'tap';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { packageRoot } from '../../engine/package-root.js';

t.test('packageRoot: the same directory from source, from dist/ and from the bundled CLI', async (t) => {
  const root = packageRoot(import.meta.url);
  t.equal(JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')).name, 'chunkvault');
  for (const module of ['engine/pool.ts', 'dist/engine/pool.js', 'dist/cli/main.cjs']) {
    t.equal(packageRoot(pathToFileURL(join(root, module)).href), root, module);
  }
});

t.test('packageRoot: a module with no package.json above it is an error, not an endless climb', async (t) => {
  t.throws(() => packageRoot('file:///no-such-dir/engine/pool.js'), /no package.json above \/no-such-dir\/engine\/pool.js/);
});
