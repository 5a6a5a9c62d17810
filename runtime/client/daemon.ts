/**
 * Finding the daemon, and starting it detached when none runs. The daemon gets a
 * minimal environment: it must not hold the secrets of whichever shell started it.
 */
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { defaultSocketPath } from '../protocol';
import { ensurePrivateDir } from '../util/paths';
import { RuntimeClient } from './client';

/**
 * Variables the daemon keeps: where its files go, test overrides of its tools, and
 * ELECTRON_RUN_AS_NODE (a VS Code extension starts it with VS Code's own Electron).
 */
const DAEMON_ENV = ['HOME', 'USER', 'LOGNAME', 'LANG', 'XDG_RUNTIME_DIR', 'XDG_STATE_HOME', 'AIRLOCK_BWRAP', 'AIRLOCK_AGENT', 'ELECTRON_RUN_AS_NODE'];

export function daemonEnv(env: NodeJS.ProcessEnv = process.env): NodeJS.ProcessEnv {
  const out: NodeJS.ProcessEnv = { PATH: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' };
  for (const k of DAEMON_ENV) if (env[k] !== undefined) out[k] = env[k];
  return out;
}

/** dist/airlock.js, the entry that `airlock serve` runs from. */
export function findCliEntry(): string {
  const candidates = [path.join(__dirname, 'airlock.js')];
  for (let dir = __dirname; dir !== path.dirname(dir); dir = path.dirname(dir)) candidates.push(path.join(dir, 'dist', 'airlock.js'));
  const found = candidates.find((c) => fs.existsSync(c));
  if (!found) throw new Error("dist/airlock.js not found: build Airlock with 'npm run build'");
  return found;
}

/** Starts `airlock serve --foreground` detached, logging to LOG, and waits until it answers. */
export async function startDaemon(socket: string, extraArgs: string[] = [], env: NodeJS.ProcessEnv = process.env): Promise<{ pid: number; log: string }> {
  const log = path.join(ensurePrivateDir(path.dirname(socket)), 'daemon.log');
  const fd = fs.openSync(log, 'a', 0o600);
  const child = spawn(process.execPath, [findCliEntry(), 'serve', '--foreground', '--socket', socket, ...extraArgs], {
    detached: true,
    stdio: ['ignore', fd, fd],
    env: daemonEnv(env),
    cwd: '/',
  });
  fs.closeSync(fd);
  let exited: number | null | undefined;
  child.once('exit', (code) => (exited = code));
  child.unref();
  for (let i = 0; i < 500; i++) {
    try {
      const c = await RuntimeClient.connect({ socket });
      // Success only when the daemon we started answers: another one serving SOCKET
      // answers at once too, while ours refuses and exits (its pid must not be reported).
      const { pid } = await c.call('runtime.info', {}).finally(() => c.close());
      if (pid === child.pid) return { pid: child.pid!, log };
    } catch {
      /* not up yet */
    }
    if (exited !== undefined) break;
    await new Promise((r) => setTimeout(r, 20));
  }
  const tail = fs.readFileSync(log, 'utf8').trim().split('\n').slice(-5).join('\n');
  throw new Error(`the Airlock daemon did not start${exited !== undefined ? ` (exit ${exited})` : ''}; its log ${log} says:\n${tail}`);
}

/** A client of the running daemon, starting one when none answers on SOCKET. */
export async function connectOrStart(socket = defaultSocketPath(), env: NodeJS.ProcessEnv = process.env): Promise<RuntimeClient> {
  try {
    return await RuntimeClient.connect({ socket });
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code !== 'ENOENT' && code !== 'ECONNREFUSED') throw e;
  }
  try {
    await startDaemon(socket, [], env);
  } catch (e) {
    // Another client started one at the same moment (ours then refused): use that one.
    return RuntimeClient.connect({ socket }).catch(() => Promise.reject(e));
  }
  return RuntimeClient.connect({ socket });
}
