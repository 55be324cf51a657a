/**
 * Issue 15, faults against a real radosgw: radosgw SIGKILLed during a backup, while a pack's
 * multipart upload is open. Kept down, the backup fails with one line and exit 2; restarted at
 * once, it fails the same way or retries to success. Either way nothing committed is lost,
 * nothing uncommitted is listed, and the next gc aborts the stale uploads (none remain in
 * ListMultipartUploads) and leaves nothing to reclaim.
 * Two writers and gc racing: two hosts (own --cache-dir) back up different images into one store
 * while a third loops prune and gc; only outcomes that must hold whatever the interleaving are
 * asserted (gc and backups may be refused as busy, exit 3, and are counted).
 */
import t, { type Test } from 'tap';
import { join } from 'node:path';
import type { BackupReport } from '../../engine/index.js';
import { S3Backend } from '../../store/backend/s3.js';
import { resolveS3Options } from '../../store/backend/s3-options.js';
import { MiB, cli, cliJson, requireCapability, seededBytes, sha256File, tempDir } from '../helpers/index.js';
import { hasRgw, startRgw, type Rgw } from '../helpers/rgw.js';
import { createBucket } from '../store/backend/s3-bucket.js';
import { promises as fs } from 'node:fs';

const BUCKET = 'faults';
/** gc's margin for unfinished uploads: the killed backup's upload is seconds old, not an hour. */
const GC_ENV = { CHUNKVAULT_STALE_WRITE_SECONDS: '0' };

if (requireCapability(t, hasRgw(), 'needs radosgw, radosgw-admin, ceph-mon, ceph-osd, ceph and monmaptool (radosgw ceph-mon ceph-osd ceph-common)')) {
  const dir = await tempDir(t, 'cv-s3faults-');
  const rgw = await startRgw(join(dir, 'ceph'));
  t.teardown(() => rgw.stop());
  Object.assign(process.env, { AWS_ACCESS_KEY_ID: rgw.accessKeyId, AWS_SECRET_ACCESS_KEY: rgw.secretAccessKey, AWS_ENDPOINT_URL: rgw.endpoint, HOME: dir, XDG_CACHE_HOME: join(dir, 'cache') });
  await createBucket(resolveS3Options({ location: `s3://${BUCKET}` }));

  const base = join(dir, 'base.img');
  await fs.writeFile(base, seededBytes(1, 4 * MiB));
  // Four 8 MiB parts of random data: the pack's multipart upload is open for most of the backup.
  const big = join(dir, 'big.img');
  await fs.writeFile(big, seededBytes(2, 40 * MiB));
  const shas = new Map([[base, await sha256File(base)], [big, await sha256File(big)]]);

  const openUploads = async (store: string): Promise<number> => {
    const backend = new S3Backend(resolveS3Options({ location: store }));
    try {
      return (await backend.staleWrites(0)).filter((w) => w.kind === 'upload').length;
    } finally {
      await backend.close();
    }
  };
  const untilUploadOpens = async (store: string, backup: Promise<unknown>): Promise<void> => {
    let ended = false;
    void backup.then(() => (ended = true));
    while (!ended && (await openUploads(store)) === 0) await new Promise((r) => setTimeout(r, 20));
    if (ended) throw new Error('the backup ended before its multipart upload was seen');
  };

  /** A store with one committed point, a backup of `big` cut by a radosgw kill, then the checks. */
  const killDuringBackup = async (t: Test, store: string, restart: (rgw: Rgw, backup: Promise<unknown>) => Promise<void>): Promise<void> => {
    const s = ['--store', store];
    await cliJson(['init', ...s]);
    const committed = await cliJson<BackupReport>(['backup', ...s, `disk=${base}`, '--name', 'base']);
    const backup = cli(['backup', ...s, `disk=${big}`, '--name', 'big']);
    await untilUploadOpens(store, backup);
    await rgw.kill();
    await restart(rgw, backup);
    const result = await backup;
    const expected = [committed.id];
    if (result.code === 0) {
      t.comment('the backup retried to success');
      expected.unshift((JSON.parse(result.stdout.split('\n').find((l) => l.startsWith('{')) ?? 'null') as BackupReport | null)?.id ?? '');
    } else {
      t.equal(result.code, 2, 'the backup fails with exit 2');
      t.equal(result.stderr.split('\n').length, 2, `one line: ${result.stderr.trim()}`);
      t.match(result.stderr, /^chunkvault: /);
    }
    const list = await cliJson<{ id: string; name: string }[]>(['list', ...s]);
    t.same(list.filter((p) => p.name === 'base').map((p) => p.id), [committed.id], 'the committed point is still listed');
    t.equal(list.filter((p) => p.name === 'big').length, result.code === 0 ? 1 : 0, 'the cut backup is listed only if it succeeded');
    await cliJson(['gc', ...s, '--max-unused', '0'], GC_ENV);
    t.equal(await openUploads(store), 0, 'no multipart upload remains after gc');
    t.match(await cliJson(['gc', ...s, '--max-unused', '0', '--dry-run']), { chunksFreed: 0, packsDeleted: 0, packsRewritten: 0 }, 'nothing left to reclaim');
    t.match(await cliJson(['verify', ...s, '--read-data']), { clean: true, restorePoints: list.length });
    for (const point of list) {
      const out = join(await tempDir(t), 'out.img');
      await cliJson(['restore', ...s, point.id, out]);
      t.equal(await sha256File(out), shas.get(point.name === 'base' ? base : big), `${point.name} restores byte-identical`);
    }
  };

  t.test('radosgw killed during a backup and kept down until it gives up: exit 2, one line, gc aborts the upload', async (t) => {
    const store = `s3://${BUCKET}/down`;
    await killDuringBackup(t, store, async (rgw, backup) => {
      await backup;
      await rgw.start();
      t.ok((await openUploads(store)) > 0, 'the killed upload is still open');
    });
  });

  t.test('radosgw killed during a backup and restarted at once: the backup fails cleanly or retries to success', async (t) => {
    await killDuringBackup(t, `s3://${BUCKET}/restart`, (rgw) => rgw.start());
  });

  t.test('two writers and gc racing: every point of both hosts restores identical, and each host dedups against the other', async (t) => {
    const s = ['--store', `s3://${BUCKET}/race`];
    await cliJson(['init', ...s]);
    const host = async (name: string): Promise<string[]> => ['--cache-dir', join(await tempDir(t), name)];
    const [hostA, hostB, hostC] = [await host('a'), await host('b'), await host('c')];
    const images = new Map<string, string[]>();
    for (const [name, seeds] of [['a', [10, 11]], ['b', [20, 21]], ['scratch', [30, 31]]] as const) {
      const paths: string[] = [];
      for (const seed of seeds) {
        const path = join(dir, `${name}-${seed}.img`);
        await fs.writeFile(path, seededBytes(seed, 6 * MiB));
        shas.set(path, await sha256File(path));
        paths.push(path);
      }
      images.set(name, paths);
    }
    for (const image of images.get('scratch')!) await cliJson(['backup', ...s, ...hostC, `disk=${image}`, '--name', 'scratch']);
    const outcomes = new Map<string, number>();
    const count = (what: string, code: number): void => void outcomes.set(`${what} exit ${code}`, (outcomes.get(`${what} exit ${code}`) ?? 0) + 1);
    const imageOf = new Map<string, string>();
    const writer = async (name: string, cache: string[]): Promise<void> => {
      for (const image of images.get(name)!) {
        for (;;) {
          const result = await cli(['backup', ...s, ...cache, `disk=${image}`, '--name', name, '--json']);
          count('backup', result.code);
          if (result.code === 0) {
            imageOf.set((JSON.parse(result.stdout) as BackupReport).id, image);
            break;
          }
          if (result.code !== 3) throw new Error(`backup exited ${result.code}: ${result.stderr}`);
        }
      }
    };
    let writing = true;
    const racer = async (): Promise<void> => {
      while (writing) {
        for (const args of [['prune', '--name', 'scratch', '--keep-last', '1'], ['gc', '--max-unused', '0']]) {
          const result = await cli([...args, ...s, ...hostC]);
          count(args[0]!, result.code);
          if (result.code !== 0 && result.code !== 3) throw new Error(`${args[0]} exited ${result.code}: ${result.stderr}`);
        }
      }
    };
    const race = racer();
    await Promise.all([writer('a', hostA), writer('b', hostB)]).finally(() => (writing = false));
    await race;
    t.comment([...outcomes].map(([what, n]) => `${what}: ${n}`).join(', '));
    t.equal(outcomes.get('backup exit 0'), 4, 'four backups committed');
    const list = await cliJson<{ id: string; name: string }[]>(['list', ...s, ...hostC]);
    t.same(list.filter((p) => p.name !== 'scratch').map((p) => p.id).sort(), [...imageOf.keys()].sort(), 'the catalog lists every committed point of both hosts');
    t.match(await cliJson(['verify', ...s, ...hostC, '--read-data']), { clean: true });
    for (const [id, image] of imageOf) {
      const out = join(await tempDir(t), 'out.img');
      await cliJson(['restore', ...s, ...hostC, id, out]);
      t.equal(await sha256File(out), shas.get(image), `${id} restores byte-identical`);
    }
    const fromA = await cliJson<BackupReport>(['backup', ...s, ...hostA, `disk=${images.get('b')![1]!}`, '--name', 'copy']);
    t.equal(fromA.bytesNew, 0, "host A stores nothing new for host B's image");
    const fromB = await cliJson<BackupReport>(['backup', ...s, ...hostB, `disk=${images.get('a')![0]!}`, '--name', 'copy']);
    t.equal(fromB.bytesNew, 0, "host B stores nothing new for host A's image");
  });
}
