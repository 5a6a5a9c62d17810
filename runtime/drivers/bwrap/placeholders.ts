/**
 * Placeholders for read-only paths that do not exist when a session starts (say
 * `.vscode` or `.mcp.json`). A mount needs a path to sit on, so an empty file or
 * directory is created on the host and bound read-only into the sandbox; then the
 * sandbox can neither create the path nor put anything in it.
 *
 * Sessions register the placeholders they rely on in one marker file per session,
 * under a directory per workspace. A placeholder is removed when the last live
 * session relying on it ends, and only if it is still empty and still the same
 * inode (a person may have written into it meanwhile). Removing it earlier would
 * detach the mount in the other session and let that sandbox create the path.
 *
 * LIMITATION: the host sees the empty placeholders while a session runs. A runtime
 * killed with SIGKILL leaves them behind; they are harmless and reused.
 */
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { ensurePrivateDir } from '../../util/paths';
import { pidAlive } from '../../util/process';

export interface PlaceholderSet {
  marker: string;
  created: { path: string; dir: boolean; ino: number; size: number }[];
}

/** Creates (or adopts) each placeholder and registers this session as relying on them. */
export function acquirePlaceholders(registry: string, workspace: string, sessionId: string, wanted: { host: string; dir: boolean; content?: string }[]): PlaceholderSet {
  const set: PlaceholderSet = { marker: '', created: [] };
  if (wanted.length === 0) return set;
  // Written whole (rename) so a session ending meanwhile never reads half a list. A
  // session ending meanwhile may also remove the then-empty directory: try again.
  for (let attempt = 0; ; attempt++) {
    try {
      const dir = ensurePrivateDir(registryDir(registry, workspace));
      set.marker = path.join(dir, `${process.pid}-${sessionId}`);
      fs.writeFileSync(`${set.marker}.tmp`, JSON.stringify(wanted.map((w) => w.host)));
      fs.renameSync(`${set.marker}.tmp`, set.marker);
      break;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT' || attempt >= 3) throw e;
    }
  }
  try {
    for (const w of wanted) {
      try {
        if (w.dir) fs.mkdirSync(w.host, { mode: 0o755 });
        else fs.writeFileSync(w.host, w.content ?? '', { flag: 'wx', mode: 0o644 });
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
      }
      const st = fs.lstatSync(w.host);
      if (st.isSymbolicLink() || st.isDirectory() !== w.dir) {
        throw new Error(`${w.host} changed while the sandbox was being set up: start the session again`);
      }
      set.created.push({ path: w.host, dir: w.dir, ino: st.ino, size: st.size });
    }
  } catch (e) {
    releasePlaceholders(set);
    throw e;
  }
  return set;
}

function registryDir(registry: string, workspace: string): string {
  return path.join(registry, crypto.createHash('sha256').update(workspace).digest('hex').slice(0, 32));
}

/**
 * Paths that live sessions on this workspace rely on as placeholders. A session that
 * finds one of them already there must register it too, or the first session's end
 * would remove it from under the second sandbox. Markers of dead runtimes are removed.
 */
export function placeholdersInUse(registry: string, workspace: string): Set<string> {
  return pathsInMarkers(registryDir(registry, workspace));
}

function pathsInMarkers(dir: string): Set<string> {
  const inUse = new Set<string>();
  let markers: string[];
  try {
    markers = fs.readdirSync(dir);
  } catch {
    return inUse;
  }
  for (const m of markers) {
    if (!/^\d+-[0-9a-z]+$/.test(m)) continue;
    if (!pidAlive(Number(m.split('-')[0]))) {
      fs.rmSync(path.join(dir, m), { force: true }); // left by a runtime that died
      continue;
    }
    try {
      for (const p of JSON.parse(fs.readFileSync(path.join(dir, m), 'utf8')) as string[]) inUse.add(p);
    } catch {
      /* ended meanwhile, or being written: its placeholders are re-checked when it ends */
    }
  }
  return inUse;
}

/** Unregisters this session; removes each placeholder no other live session relies on. */
export function releasePlaceholders(set: PlaceholderSet): void {
  if (!set.marker) return;
  fs.rmSync(set.marker, { force: true });
  const dir = path.dirname(set.marker);
  const inUse = pathsInMarkers(dir);
  for (const c of set.created) {
    if (inUse.has(c.path)) continue;
    try {
      const st = fs.lstatSync(c.path);
      if (st.ino !== c.ino) continue;
      if (c.dir) fs.rmdirSync(c.path); // fails when not empty: then a person put something there
      else if (st.size === c.size) fs.unlinkSync(c.path);
    } catch {
      /* gone already, or no longer empty: leave it */
    }
  }
  try {
    fs.rmdirSync(dir); // the workspace's registry, once no session uses it
  } catch {
    /* other sessions' markers are still there */
  }
  set.marker = '';
}
