/**
 * Issue 15 through the real CLI against a real radosgw: every command on `--store s3://BUCKET/PREFIX`
 * with sha256 round trips, a second host with an empty cache, repair of an empty cache, bad input
 * (one line, exit 2, the bucket unchanged) and exact request counters. One radosgw for the file, a
 * fresh prefix per subtest.
 */
import t, { type Test } from 'tap';
import { createHash } from 'node:crypto';
import { promises as fs } from 'node:fs';
import { join } from 'node:path';
import type { BackupReport } from '../../engine/index.js';
import type { BackendStats, ObjectInfo } from '../../store/backend/backend.js';
import { S3Backend } from '../../store/backend/s3.js';
import { resolveS3Options } from '../../store/backend/s3-options.js';
import { MiB, cli, cliJson, ext4Image, hasCommand, mixedImage, requireCapability, seededBytes, sha256File, sha256Head, tempDir } from '../helpers/index.js';
import { hasRgw, startRgw } from '../helpers/rgw.js';
import { createBucket } from '../store/backend/s3-bucket.js';
import { canMount, startMount } from '../fuse/mounting.js';

const BUCKET = 'cli';

if (requireCapability(t, hasRgw(), 'needs radosgw, radosgw-admin, ceph-mon, ceph-osd, ceph and monmaptool (radosgw ceph-mon ceph-osd ceph-common)')) {
  const dir = await tempDir(t, 'cv-s3cli-');
  const rgw = await startRgw(join(dir, 'ceph'));
  t.teardown(() => rgw.stop());
  // The CLI children (and mounts) inherit these; HOME and XDG_CACHE_HOME keep every cache in the temp dir.
  Object.assign(process.env, { AWS_ACCESS_KEY_ID: rgw.accessKeyId, AWS_SECRET_ACCESS_KEY: rgw.secretAccessKey, AWS_ENDPOINT_URL: rgw.endpoint, HOME: dir, XDG_CACHE_HOME: join(dir, 'cache') });
  const bucket = new S3Backend(resolveS3Options({ location: `s3://${BUCKET}`, stageDir: join(dir, 'stage') }));
  t.teardown(() => bucket.close());
  await createBucket(bucket.options);
  let prefixes = 0;
  const freshStore = (): string => `s3://${BUCKET}/t${++prefixes}`;
  const objects = async (): Promise<string[]> => (await bucket.list('')).map((o: ObjectInfo) => `${o.key} ${o.size} ${o.mtimeMs}`);

  const image = join(dir, 'disk.img');
  await mixedImage(image);
  const imageSha = await sha256File(image);

  const restoresSame = async (t: Test, args: string[], what: string): Promise<void> => {
    const out = join(await tempDir(t), 'out.img');
    await cliJson(['restore', ...args, out]);
    t.equal(await sha256File(out), imageSha, what);
  };

  t.test('every command on s3: init, backup (full, CBT, extents), list, restore (--onto, --compare), verify, stats, ls, hold, prune, gc, repair of an empty cache', async (t) => {
    const store = freshStore();
    const s = ['--store', store];
    const init = await cliJson<{ store: string; backend: BackendStats }>(['init', ...s]);
    t.equal(init.store, store);
    t.ok(init.backend.requests.create === 1, 'the format file is one conditional create');
    const full = await cliJson<BackupReport & { backend: BackendStats }>(['backup', ...s, image, '--time', '2026-11-20T23:00:00Z']);
    t.equal(full.bytesRead, 16 * MiB + 12345);
    t.ok(full.backend.bytesSent > full.bytesNew, 'what was stored went over the wire');
    await restoresSame(t, [...s, full.id], 'a full backup restores byte-identical');

    const changed = join(dir, 'changed.json');
    await fs.writeFile(changed, JSON.stringify({ changed: [{ offset: MiB, length: 4096 }] }));
    const cbt = await cliJson<BackupReport>(['backup', ...s, image, '--parent', full.id, '--changed', changed, '--time', '2026-11-21T23:00:00Z']);
    t.equal(cbt.kind, 'cbt');
    t.equal(cbt.bytesNew, 0, 'the changed block holds what it held: nothing new');
    const extents = join(dir, 'extents.json');
    await fs.writeFile(extents, JSON.stringify({ size: 4 * MiB, extents: [{ offset: 0, length: 4 * MiB, sourceOffset: 0 }] }));
    const ext = await cliJson<BackupReport>(['backup', ...s, image, '--name', 'head', '--extents', extents, '--time', '2026-11-22T23:00:00Z']);
    t.equal(ext.kind, 'extents');
    t.equal(ext.disks[0]!.size, 4 * MiB);

    const list = await cliJson<{ id: string }[]>(['list', ...s]);
    t.same(list.map((p) => p.id), [ext.id, cbt.id, full.id]);
    await restoresSame(t, [...s, cbt.id], 'the CBT backup restores byte-identical');

    const target = join(await tempDir(t), 'target.img');
    await cliJson(['restore', ...s, full.id, target]);
    t.match(await cliJson(['restore', ...s, cbt.id, target, '--onto', full.id]), { size: 16 * MiB + 12345 });
    t.equal(await sha256File(target), imageSha, '--onto leaves the target identical');
    t.match(await cliJson(['restore', ...s, cbt.id, target, '--compare']), { size: 16 * MiB + 12345 });
    t.equal(await sha256File(target), imageSha, '--compare leaves the target identical');

    t.match(await cliJson(['verify', ...s]), { clean: true, restorePoints: 3 });
    const readData = await cliJson<{ clean: boolean; bytesChecked: number; backend: BackendStats }>(['verify', ...s, '--read-data']);
    t.equal(readData.clean, true);
    t.ok(readData.backend.requests.range! > 0 && readData.backend.bytesReceived >= readData.bytesChecked / 2, "the worker threads' ranged reads are counted");
    t.match(await cliJson(['stats', ...s]), { restorePoints: 3 });
    t.match(await cliJson(['ls', ...s, full.id]), { id: full.id, disks: [{ label: 'disk' }] });

    // Data only the older 'scratch' point holds: what prune and gc must free.
    const scratch = join(await tempDir(t), 'scratch.img');
    await fs.writeFile(scratch, seededBytes(7, 4 * MiB));
    const old = await cliJson<BackupReport>(['backup', ...s, scratch, '--name', 'scratch', '--time', '2026-11-19T23:00:00Z']);
    const zeros = join(await tempDir(t), 'zeros.img');
    await fs.writeFile(zeros, Buffer.alloc(MiB));
    await cliJson(['backup', ...s, `scratch=${zeros}`, '--name', 'scratch', '--time', '2026-11-23T23:00:00Z']);
    await cliJson(['hold', ...s, old.id]);
    t.match(await cliJson(['prune', ...s, '--keep-last', '1', '--name', 'scratch']), { removed: 0 }, 'a held point is kept');
    await cliJson(['release', ...s, old.id]);
    t.match(await cliJson(['prune', ...s, '--keep-last', '1', '--name', 'scratch']), { removed: 1 });
    const before = await objects();
    const gc = await cliJson<{ chunksFreed: number; packsDeleted: number; packsRewritten: number; bytesFreed: number }>(['gc', ...s, '--max-unused', '0']);
    t.equal(gc.chunksFreed, 4, 'gc frees the four chunks only the pruned point used');
    t.ok(gc.packsDeleted + gc.packsRewritten > 0 && gc.bytesFreed >= 4 * MiB);
    t.notSame(await objects(), before, 'gc deleted or rewrote packs in the bucket');
    t.match(await cliJson(['verify', ...s, '--read-data']), { clean: true, restorePoints: 4 });
    await restoresSame(t, [...s, full.id], 'the kept full point restores identical after gc');
    const kept = join(await tempDir(t), 'head.img');
    await cliJson(['restore', ...s, ext.id, kept]);
    t.equal((await fs.stat(kept)).size, 4 * MiB);
    t.equal(await sha256File(kept), await sha256Head(image, 4 * MiB), 'the kept point restores identical after gc');

    const emptyCache = ['--cache-dir', join(await tempDir(t), 'empty-cache')];
    const repaired = await cliJson<{ backend: BackendStats }>(['repair', ...s, ...emptyCache]);
    t.ok(repaired.backend.requests.list! > 0);
    await restoresSame(t, [...s, ...emptyCache, full.id], 'repair rebuilt an empty cache: the full point restores identical through it');
  });

  t.test('a new host: an empty --cache-dir lists, restores and mounts what the first host wrote, with no repair', async (t) => {
    const store = freshStore();
    const s = ['--store', store];
    await cliJson(['init', ...s]);
    const { id } = await cliJson<BackupReport>(['backup', ...s, image]);
    const host2 = ['--cache-dir', join(await tempDir(t), 'host2')];
    t.same((await cliJson<{ id: string }[]>(['list', ...s, ...host2])).map((p) => p.id), [id]);
    await restoresSame(t, [...s, ...host2, id], 'the second host restores byte-identical');
    t.match(await cliJson(['verify', ...s, ...host2, '--read-data']), { clean: true });
    if (!canMount(t)) return;
    const mountpoint = join(await tempDir(t), 'mnt');
    await fs.mkdir(mountpoint);
    await startMount(t, store, mountpoint, ['--cache-dir', join(await tempDir(t), 'host3')]);
    t.equal(await sha256File(join(mountpoint, id, 'disk.img')), imageSha, 'a third host mounts it: the disk file reads identical');
    await cli(['umount', mountpoint]);
  });

  t.test('files on s3: lists and extracts the files of an ext4 disk image, identical', async (t) => {
    if (!canMount(t)) return;
    if (!requireCapability(t, hasCommand('fuse2fs') && hasCommand('mkfs.ext4'), 'needs fuse2fs and e2fsprogs')) return;
    const work = await tempDir(t);
    const tree = join(work, 'tree');
    await fs.mkdir(join(tree, 'etc'), { recursive: true });
    const hosts = seededBytes(3, 100_000);
    await fs.writeFile(join(tree, 'etc', 'hosts'), hosts);
    const disk = join(work, 'root.img');
    ext4Image(disk, 16, tree);
    const store = freshStore();
    await cliJson(['init', '--store', store]);
    const { id } = await cliJson<BackupReport>(['backup', '--store', store, disk]);
    const listing = await cliJson<{ filesystem: string; entries: { name: string }[] }>(['files', '--store', store, id, '/etc']);
    t.equal(listing.filesystem, 'ext4');
    t.same(listing.entries.map((e) => e.name), ['hosts']);
    const out = join(work, 'out');
    await cliJson(['files', '--store', store, id, '--get', '/etc/hosts', '--to', out]);
    t.equal(await sha256File(join(out, 'hosts')), createHash('sha256').update(hosts).digest('hex'), 'the extracted file is identical');
  });

  t.test('--cache-dir defaults to one directory per store id under XDG_CACHE_HOME', async (t) => {
    const store = freshStore();
    await cliJson(['init', '--store', store]);
    await cliJson(['backup', '--store', store, image]);
    const format = JSON.parse(String(await bucket.get(`${store.slice(`s3://${BUCKET}/`.length)}/chunkvault.json`))) as { id: string };
    t.match(format.id, /^[0-9a-f]{32}$/);
    t.ok((await fs.stat(join(dir, 'cache', 'chunkvault', format.id))).isDirectory(), 'the index cache is named by the store id');
  });

  t.test('bad input: one line, exit 2, nothing written to the bucket', async (t) => {
    const existing = freshStore();
    await cliJson(['init', '--store', existing]);
    const other = freshStore();
    await bucket.put(`${other.slice(`s3://${BUCKET}/`.length)}/notes.txt`, Buffer.from('not a store'));
    const cases: [string, string[], Record<string, string>, RegExp, string][] = [
      ['wrong credentials', ['init', '--store', freshStore()], { AWS_SECRET_ACCESS_KEY: 'wrong' }, /refused the credentials \(.*\); check AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY or the AWS profile$/, 'CV_BACKEND_AUTH'],
      ['missing bucket', ['init', '--store', 's3://no-such-bucket/x'], {}, /^chunkvault: s3:\/\/no-such-bucket\/x: no bucket 'no-such-bucket' at http:\/\/127\.0\.0\.1:\d+; create it or check the --store name and the endpoint$/, 'CV_NO_SUCH_BUCKET'],
      ['unreachable endpoint', ['init', '--store', freshStore(), '--s3-endpoint', 'http://127.0.0.1:9'], {}, /cannot reach http:\/\/127\.0\.0\.1:9 \(ECONNREFUSED, 5 attempts\); check the endpoint \(--s3-endpoint, AWS_ENDPOINT_URL_S3\) and that the server runs$/, 'CV_BACKEND_UNREACHABLE'],
      ['a prefix holding something else', ['init', '--store', other], {}, new RegExp(`^chunkvault: ${other} holds something that is not a chunkvault store; init needs an empty prefix$`), 'CV_INVALID_INPUT'],
      ['init on a store', ['init', '--store', existing], {}, new RegExp(`^chunkvault: ${existing} is already a chunkvault store$`), 'CV_STORE_EXISTS'],
      ['backup with wrong credentials', ['backup', '--store', existing, image], { AWS_SECRET_ACCESS_KEY: 'wrong' }, /refused the credentials/, 'CV_BACKEND_AUTH'],
      ['list of a prefix holding something else', ['list', '--store', other], {}, new RegExp(`^chunkvault: ${other} is not a chunkvault store \\(no chunkvault.json; create one with 'chunkvault init'\\)$`), 'CV_NOT_A_STORE'],
    ];
    for (const [what, args, env, message] of cases) {
      const before = await objects();
      const result = await cli(args, env);
      t.equal(result.code, 2, `${what}: exit 2`);
      t.equal(result.stdout, '', `${what}: nothing on stdout`);
      t.equal(result.stderr.split('\n').length, 2, `${what}: one line`);
      t.match(result.stderr.trimEnd(), message, what);
      t.notMatch(result.stderr, new RegExp(rgw.secretAccessKey.replace(/[-/\\^$*+?.()|[\]{}]/g, '\\$&')), `${what}: the secret is never printed`);
      t.same(await objects(), before, `${what}: the bucket is unchanged`);
    }
    for (const [what, args, env, , code] of cases) {
      const result = await cli([...args, '--json'], env);
      t.equal(result.code, 2, `${what} --json: exit 2 (${code})`);
    }
  });

  t.test('--json counters are exact: list of a store with 2 points makes 3 GETs, 1 HEAD, 1 LIST', async (t) => {
    const store = freshStore();
    await cliJson(['init', '--store', store]);
    await cliJson(['backup', '--store', store, image, '--time', '2026-11-20T23:00:00Z']);
    await cliJson(['backup', '--store', store, image, '--time', '2026-11-21T23:00:00Z']);
    const result = await cli(['list', '--store', store, '--json']);
    t.equal(result.code, 0);
    t.equal((JSON.parse(result.stdout) as unknown[]).length, 2, 'stdout stays the array of restore points');
    // Opening: HEAD and GET of chunkvault.json; listing: one LIST of catalog/, one GET per entry.
    const { backend } = JSON.parse(result.stderr) as { backend: BackendStats };
    t.same(backend.requests, { head: 1, get: 3, list: 1 });
    t.equal(backend.bytesSent, 0);
    t.equal(backend.retries, 0);
    t.ok(backend.bytesReceived > 0);
  });

  t.test('gc removes staged files of a killed process older than an hour, and leaves a fresh multipart upload alone', async (t) => {
    const store = freshStore();
    await cliJson(['init', '--store', store]);
    const options = resolveS3Options({ location: store });
    const old = join(options.stageDir, '.chunkvault-stage-0123456789abcdef.tmp');
    const fresh = join(options.stageDir, '.chunkvault-stage-fedcba9876543210.tmp');
    await fs.mkdir(options.stageDir, { recursive: true });
    await fs.writeFile(old, 'left by a killed backup');
    await fs.writeFile(fresh, 'a backup still writing');
    const twoHoursAgo = new Date(Date.now() - 2 * 3600_000);
    await fs.utimes(old, twoHoursAgo, twoHoursAgo);
    const backend = new S3Backend(options);
    t.teardown(() => backend.close());
    const upload = await backend.upload('packs/unfinished.pack');
    await upload.append([Buffer.alloc(options.partSize + 1)]); // a full part: the multipart upload exists now
    const gc = await cliJson<{ staleUploadsAborted: number; stagedFilesRemoved: number }>(['gc', '--store', store]);
    t.match(gc, { staleUploadsAborted: 0, stagedFilesRemoved: 1 });
    await t.rejects(fs.stat(old), { code: 'ENOENT' });
    t.ok((await fs.stat(fresh)).isFile(), 'a fresh staged file is kept');
    t.same((await backend.staleWrites(0)).filter((w) => w.kind === 'upload').map((w) => w.key), ['packs/unfinished.pack'], 'the fresh upload is still open');
    await upload.abort();
    t.same((await backend.staleWrites(0)).filter((w) => w.kind === 'upload'), [], 'aborted: ListMultipartUploads shows none');
  });
}
