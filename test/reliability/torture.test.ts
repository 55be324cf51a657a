/**
 * The short crash torture (issue 6), through `npm run torture`'s own entry point: at least
 * 30 SIGKILLs of backups, CBT incremental backups, prunes and gc with compaction (some also
 * recompressing with zstd), at random moments and at every injected step. After each kill
 * the store opens, verify --read-data is clean, the catalog lists exactly what was committed,
 * every restore point reads back byte-identical, the dead process's lock is gone; after each
 * gc nothing is left to reclaim.
 * The harness runs compiled, in its own process, without the test runner's NODE_OPTIONS hooks:
 * under them every one of its hundred CLI processes starts twice as slowly.
 */
import t from 'tap';
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { CRASH_STEPS } from '../../engine/crash.js';
import { OPS, describeTorture, type TortureReport } from '../../bench/torture.js';
import { ROOT } from '../helpers/index.js';
import { canMount } from '../fuse/mounting.js';

function torture(args: string[]): Promise<{ code: number | null; report: TortureReport }> {
  return new Promise((resolve, reject) => {
    const child = spawn('env', ['-u', 'NODE_OPTIONS', process.execPath, join(ROOT, 'dist', 'bench', 'torture.js'), ...args, '--json', '--quiet'], { stdio: ['ignore', 'pipe', 'inherit'] });
    let stdout = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, report: JSON.parse(stdout) as TortureReport }));
  });
}

t.test('30 kills across backup, incremental backup, prune and gc leave every committed restore point intact', async (t) => {
  const { code, report } = await torture(['--kills', '30', '--seed', '6', '--image-mib', '4']);
  t.comment(describeTorture(report).join('\n'));
  t.same(report.failures, [], 'no check failed');
  t.equal(code, 0, 'exit 0');
  t.ok(report.kills >= 30, `${report.kills} kills`);
  for (const op of OPS) t.ok(report.killsByOp[op] > 0, `${op} killed ${report.killsByOp[op]} times`);
  t.ok(report.randomKills > 0, `${report.randomKills} kills at random moments`);
  t.ok(report.recompressingGcKills > 0 && report.recompressingGcs > report.recompressingGcKills, `${report.recompressingGcs} gcs recompressed, ${report.recompressingGcKills} of them killed`);
  for (const step of Object.values(CRASH_STEPS).flat()) t.ok(report.killsByStep[step] > 0, `killed at ${step}`);
  t.ok(report.storeChecks >= report.kills, `${report.storeChecks} store checks`);
  t.ok(report.restorePointsChecked >= report.storeChecks && report.bytesCompared > 0, `${report.restorePointsChecked} restore points checked`);
  t.ok(report.leftoverChecks > 0, 'some gc ran to the end, and left nothing to reclaim');
  t.equal(report.workDir, null, 'the work directory was removed');
});

t.test('prunes and gcs meeting EIO and EMFILE on store reads stop cleanly or finish, and lose nothing', async (t) => {
  if (!canMount(t)) return;
  const { code, report } = await torture(['--kills', '1', '--faults', '8', '--seed', '7', '--image-mib', '4']);
  t.comment(describeTorture(report).join('\n'));
  t.same(report.failures, [], 'no check failed');
  t.equal(code, 0, 'exit 0');
  t.equal(report.faultedOps, 8, '8 operations under read faults');
  t.ok(report.faultsInjected > 0, `${report.faultsInjected} faults injected`);
  t.ok(report.storeChecks >= report.faultedOps, `${report.storeChecks} store checks`);
  t.equal(report.workDir, null, 'the work directory was removed');
});

t.test('the harness refuses bad flags', async (t) => {
  const child = spawn(process.execPath, [join(ROOT, 'dist', 'bench', 'torture.js'), '--kills', '0'], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d) => (stderr += d));
  const code = await new Promise((resolve) => child.on('close', resolve));
  t.equal(code, 2);
  t.match(stderr, /^torture: --kills: '0' is not a positive whole number$/m);
});
