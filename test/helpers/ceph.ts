/**
 * A throwaway Ceph cluster for tests: one monitor (msgr2 on 127.0.0.1, a free port) and one
 * memstore OSD, everything (config, data, logs, pid files, sockets) in `dir`, no auth. About
 * two seconds to start. `stop()` ends the daemons by their pid files; a start that fails
 * half-way stops what it had started before it throws.
 */
import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { promises as fs } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { hasCommand } from './index.js';

const run = promisify(execFile);

export interface Ceph {
  /** ceph.conf, for `-c` or the `conf=` of a librbd URI. */
  conf: string;
  /** CEPH_CONF: what ceph, rbd, rados and radosgw need to find the cluster. */
  env: Record<string, string>;
  stop(): Promise<void>;
}

export const CEPH_COMMANDS = ['ceph-mon', 'ceph-osd', 'ceph', 'monmaptool'];

export function hasCeph(): boolean {
  return CEPH_COMMANDS.every(hasCommand);
}

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

function config(dir: string, fsid: string, port: number): string {
  return `[global]
fsid = ${fsid}
mon_host = v2:127.0.0.1:${port}
ms_bind_msgr1 = false
ms_bind_msgr2 = true
auth_cluster_required = none
auth_service_required = none
auth_client_required = none
osd_pool_default_size = 1
osd_pool_default_min_size = 1
mon_allow_pool_size_one = true
osd_objectstore = memstore
memstore_device_bytes = 1073741824
osd_crush_chooseleaf_type = 0
paxos_propose_interval = 0.01
mon_data_avail_crit = 0
run_dir = ${dir}/run
pid_file = ${dir}/run/$name.pid
admin_socket = ${dir}/run/$name.asok
log_file = ${dir}/log/$name.log
[mon.a]
mon_data = ${dir}/mon.a
[osd.0]
osd_data = ${dir}/osd.0
`;
}

/** A pid is gone when kill(0) fails or it is a zombie (a daemon's parent need not reap it). */
async function gone(pid: number): Promise<boolean> {
  try {
    process.kill(pid, 0);
  } catch {
    return true;
  }
  const stat = await fs.readFile(`/proc/${pid}/stat`, 'utf8').catch(() => '');
  return stat === '' || / Z /.test(stat.slice(stat.lastIndexOf(')')));
}

type Signals = readonly (readonly [NodeJS.Signals, number])[];

/** Sends each signal in turn until the daemon of `pidFile` is gone, waiting up to its ms after each. */
async function endDaemon(pidFile: string, signals: Signals): Promise<void> {
  const pid = Number((await fs.readFile(pidFile, 'utf8')).trim());
  if (!Number.isInteger(pid) || pid <= 1) return;
  for (const [signal, waitMs] of signals) {
    if (await gone(pid)) return;
    process.kill(pid, signal);
    for (const until = Date.now() + waitMs; Date.now() < until; ) {
      if (await gone(pid)) return;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }
  throw new Error(`ceph daemon ${pid} (${pidFile}) survived SIGKILL`);
}

export function stopDaemon(pidFile: string): Promise<void> {
  return endDaemon(pidFile, [['SIGTERM', 10_000], ['SIGKILL', 5_000]]);
}

/** A crash: SIGKILL at once, no chance to close connections or flush anything. */
export function killDaemon(pidFile: string): Promise<void> {
  return endDaemon(pidFile, [['SIGKILL', 5_000]]);
}

async function stopAll(runDir: string): Promise<void> {
  const pidFiles = (await fs.readdir(runDir).catch(() => [])).filter((name) => name.endsWith('.pid'));
  await Promise.all(pidFiles.map((name) => stopDaemon(join(runDir, name))));
}

async function waitForOsd(env: NodeJS.ProcessEnv): Promise<void> {
  for (const until = Date.now() + 60_000; Date.now() < until; ) {
    const { stdout } = await run('ceph', ['--connect-timeout', '30', 'osd', 'stat', '--format', 'json'], { env });
    if ((JSON.parse(stdout) as { num_up_osds: number }).num_up_osds === 1) return;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error('the ceph OSD did not come up within 60 s');
}

export async function startCeph(dir: string): Promise<Ceph> {
  const conf = join(dir, 'ceph.conf');
  const env = { CEPH_CONF: conf };
  const childEnv = { ...process.env, ...env };
  const runDir = join(dir, 'run');
  const stop = (): Promise<void> => stopAll(runDir);
  try {
    const fsid = randomUUID();
    await Promise.all(['run', 'log', 'mon.a', 'osd.0'].map((sub) => fs.mkdir(join(dir, sub), { recursive: true })));
    const port = await freePort();
    await fs.writeFile(conf, config(dir, fsid, port));
    const monmap = join(dir, 'monmap');
    await run('monmaptool', ['--create', '--clobber', '--fsid', fsid, '--addv', 'a', `[v2:127.0.0.1:${port}]`, monmap]);
    await run('ceph-mon', ['-c', conf, '-i', 'a', '--mkfs', '--monmap', monmap]);
    await run('ceph-mon', ['-c', conf, '-i', 'a']);
    const osdUuid = randomUUID();
    const { stdout: id } = await run('ceph', ['--connect-timeout', '30', 'osd', 'new', osdUuid], { env: childEnv });
    if (id.trim() !== '0') throw new Error(`ceph osd new gave id ${id.trim()}, expected 0`);
    await run('ceph-osd', ['-c', conf, '-i', '0', '--mkfs', '--osd-uuid', osdUuid]);
    await run('ceph-osd', ['-c', conf, '-i', '0']);
    await waitForOsd(childEnv);
    return { conf, env, stop };
  } catch (err) {
    await stop();
    throw err;
  }
}
