/**
 * A throwaway S3 endpoint for tests: radosgw (beast on 127.0.0.1, a free port) on a startCeph
 * cluster, with one user whose keys are made here. Everything (logs, pid files) in `dir`; radosgw
 * makes the pools it needs on first start, size 1 by the cluster's defaults. Ready about 0.3 s
 * after the cluster (about 2 s). `stop()` ends radosgw by its pid file, then the cluster.
 * `kill()` SIGKILLs radosgw alone and `start()` brings it back on the same port: the data lives in
 * the memstore OSD, which keeps running (restarting the OSD would lose it).
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { request } from 'node:http';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { CEPH_COMMANDS, freePort, killDaemon, startCeph, stopDaemon } from './ceph.js';
import { hasCommand } from './index.js';

const run = promisify(execFile);

export interface Rgw {
  endpoint: string;
  accessKeyId: string;
  secretAccessKey: string;
  /** CEPH_CONF, for radosgw-admin. */
  env: Record<string, string>;
  /** SIGKILL radosgw (not the cluster) and wait until it is gone: the endpoint refuses connections. */
  kill(): Promise<void>;
  /** Starts radosgw again on the same port, with what the cluster holds, and waits until it answers. */
  start(): Promise<void>;
  stop(): Promise<void>;
}

export const RGW_COMMANDS = [...CEPH_COMMANDS, 'radosgw', 'radosgw-admin'];

export function hasRgw(): boolean {
  return RGW_COMMANDS.every(hasCommand);
}

/**
 * With `auth none`, radosgw (unlike the ceph and rados tools) offers the monitor no connection
 * mode unless told one, and its authentication fails with EACCES: crc is the plain one.
 */
const CRC_MODES = ['--ms_mon_client_mode=crc', '--ms_client_mode=crc'];
const NAME = 'client.rgw.a';

export async function startRgw(dir: string): Promise<Rgw> {
  const ceph = await startCeph(dir);
  const childEnv = { ...process.env, ...ceph.env };
  const pidFile = join(dir, 'run', `${NAME}.pid`);
  const stop = async (): Promise<void> => {
    await stopDaemon(pidFile).catch(() => undefined);
    await ceph.stop();
  };
  try {
    // One OSD holds every placement group: rgw's seven pools at the default 32 each near the per-OSD limit.
    await run('ceph', ['--connect-timeout', '30', 'config', 'set', 'global', 'osd_pool_default_pg_num', '8'], { env: childEnv });
    const port = await freePort();
    const endpoint = `http://127.0.0.1:${port}`;
    const start = async (): Promise<void> => {
      await run('radosgw', ['-c', ceph.conf, '-n', NAME, `--rgw_frontends=beast endpoint=127.0.0.1:${port}`, `--rgw_data=${join(dir, 'rgw.a')}`, ...CRC_MODES], { env: childEnv });
      await waitForHttp(endpoint);
    };
    const kill = (): Promise<void> => killDaemon(pidFile);
    await start();
    const accessKeyId = `CV${randomBytes(9).toString('hex').toUpperCase()}`;
    const secretAccessKey = randomBytes(30).toString('base64url');
    await run('radosgw-admin', ['-c', ceph.conf, ...CRC_MODES, 'user', 'create', '--uid=chunkvault', '--display-name=chunkvault tests', `--access-key=${accessKeyId}`, `--secret-key=${secretAccessKey}`], { env: childEnv });
    return { endpoint, accessKeyId, secretAccessKey, env: ceph.env, kill, start, stop };
  } catch (err) {
    await stop();
    throw err;
  }
}

function answers(endpoint: string): Promise<boolean> {
  return new Promise((resolve) => {
    const req = request(endpoint, { timeout: 1000 }, (res) => {
      res.resume();
      resolve(res.statusCode === 200);
    });
    req.on('error', () => resolve(false));
    req.on('timeout', () => req.destroy());
    req.end();
  });
}

async function waitForHttp(endpoint: string): Promise<void> {
  for (const until = Date.now() + 30_000; Date.now() < until; ) {
    if (await answers(endpoint)) return;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  throw new Error(`radosgw did not answer at ${endpoint} within 30 s`);
}
