/**
 * Runs the real CLI on a real pseudo-terminal (python3's pty module): what a person at a
 * terminal sees, and what they type in answer to each prompt.
 */
import { execFile } from 'node:child_process';
import { CLI, childEnv } from './index.js';

export interface PtyResult {
  code: number;
  /** Everything the terminal showed: the prompts, and anything echoed. */
  screen: string;
  /** The child's /proc/PID/cmdline and environ, read while it waited at its last prompt. */
  cmdline: string;
  environ: string;
}

/**
 * Forks the command on a pty; each time the screen ends with `prompt` it types the next answer
 * and Enter. A prompt that never comes fails after 20 s rather than hanging the test.
 */
const DRIVER = String.raw`
import json, os, pty, select, sys, time
argv, env, prompt, answers = json.loads(sys.argv[1])
pid, fd = pty.fork()
if pid == 0:
    os.execve(argv[0], argv, env)
screen, cmdline, environ, deadline = b'', b'', b'', time.time() + 20
while time.time() < deadline:
    ready, _, _ = select.select([fd], [], [], 0.1)
    if ready:
        try:
            data = os.read(fd, 4096)
        except OSError:
            break
        if not data:
            break
        screen += data
        if answers and screen.endswith(prompt.encode()):
            cmdline = open('/proc/%d/cmdline' % pid, 'rb').read()
            environ = open('/proc/%d/environ' % pid, 'rb').read()
            os.write(fd, answers.pop(0).encode() + b'\r')
_, status = os.waitpid(pid, 0)
code = os.waitstatus_to_exitcode(status)
print(json.dumps({'code': code, 'screen': screen.decode(errors='replace'), 'cmdline': cmdline.decode(errors='replace'), 'environ': environ.decode(errors='replace')}))
`;

export function cliOnPty(args: string[], answers: string[], env: Record<string, string | undefined> = {}, prompt = 'passphrase: '): Promise<PtyResult> {
  const spec = JSON.stringify([[process.execPath, CLI, ...args], childEnv(env), prompt, answers]);
  return new Promise((resolve, reject) => {
    execFile('python3', ['-c', DRIVER, spec], { timeout: 30_000 }, (err, stdout, stderr) => {
      if (err) reject(new Error(`pty driver failed: ${err.message} ${stderr}`));
      else resolve(JSON.parse(stdout) as PtyResult);
    });
  });
}
