/** Where Airlock keeps its files on the host. Every directory it creates is 0700. */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

function home(env: NodeJS.ProcessEnv): string {
  return env.HOME && path.isAbsolute(env.HOME) ? env.HOME : os.homedir();
}

/** `$XDG_STATE_HOME/airlock` (audit log, runtime CA later), else `~/.local/state/airlock`. */
export function stateDir(env: NodeJS.ProcessEnv = process.env): string {
  const base = env.XDG_STATE_HOME && path.isAbsolute(env.XDG_STATE_HOME)
    ? env.XDG_STATE_HOME
    : path.join(home(env), '.local', 'state');
  return path.join(base, 'airlock');
}

/** Per-user scratch space for session files that must not outlive a reboot. */
export function runDir(env: NodeJS.ProcessEnv = process.env): string {
  if (env.XDG_RUNTIME_DIR && path.isAbsolute(env.XDG_RUNTIME_DIR)) return path.join(env.XDG_RUNTIME_DIR, 'airlock');
  const uid = typeof process.getuid === 'function' ? process.getuid() : 0;
  return path.join(os.tmpdir(), `airlock-${uid}`);
}

/**
 * Creates DIR (and parents) with mode 0700 and checks that it is ours and private:
 * a directory another user created in a shared /tmp first must not be trusted.
 */
export function ensurePrivateDir(dir: string): string {
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  const st = fs.lstatSync(dir);
  const uid = typeof process.getuid === 'function' ? process.getuid() : st.uid;
  if (!st.isDirectory() || st.uid !== uid) {
    throw new Error(`${dir} is not a directory owned by uid ${uid}: remove it or set XDG_RUNTIME_DIR/XDG_STATE_HOME`);
  }
  if ((st.mode & 0o077) !== 0) fs.chmodSync(dir, 0o700);
  return dir;
}
