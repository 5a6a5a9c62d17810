/**
 * Placeholders for read-only paths that do not exist when a session starts (say
 * `.vscode` or `.mcp.json`). A mount needs a path to sit on, so an empty file or
 * directory is created on the host and bound read-only into the sandbox; then the
 * sandbox can neither create the path nor put anything in it.
 *
 * LIMITATION: the host sees the empty placeholder while the session runs. It is
 * removed when the last session using it ends, if it is still empty and still the
 * same inode (a person may have written into it meanwhile). A runtime killed with
 * SIGKILL leaves empty placeholders behind; they are harmless and reused.
 */
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { ensurePrivateDir } from '../../util/paths';

export interface Placeholder {
  path: string;
  dir: boolean;
  ino: number;
  marker: string;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Creates (or adopts) the placeholder and registers this session as a user of it. */
export function acquirePlaceholder(registry: string, sessionId: string, p: string, dir: boolean): Placeholder {
  try {
    if (dir) fs.mkdirSync(p, { mode: 0o755 });
    else fs.closeSync(fs.openSync(p, 'wx', 0o644));
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
  }
  const st = fs.lstatSync(p);
  if (st.isSymbolicLink() || st.isDirectory() !== dir) {
    throw new Error(`${p} changed while the sandbox was being set up: start the session again`);
  }
  const users = ensurePrivateDir(path.join(registry, crypto.createHash('sha256').update(p).digest('hex').slice(0, 32)));
  const marker = path.join(users, `${process.pid}-${sessionId}`);
  fs.writeFileSync(marker, p);
  return { path: p, dir, ino: st.ino, marker };
}

/** Unregisters this session; removes the placeholder when nobody else uses it and it is untouched. */
export function releasePlaceholder(ph: Placeholder): void {
  fs.rmSync(ph.marker, { force: true });
  const users = path.dirname(ph.marker);
  const others = fs.readdirSync(users).filter((m) => alive(Number(m.split('-')[0])));
  if (others.length) return;
  fs.rmSync(users, { recursive: true, force: true });
  try {
    const st = fs.lstatSync(ph.path);
    if (st.ino !== ph.ino) return;
    if (ph.dir) fs.rmdirSync(ph.path); // fails when not empty: then a person put something there
    else if (st.size === 0) fs.unlinkSync(ph.path);
  } catch {
    /* gone already, or no longer empty: leave it */
  }
}
