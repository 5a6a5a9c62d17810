/**
 * Validates a workspace and finds, before a session starts, every path in it that
 * the policy masks or makes read-only. Drivers turn the result into mounts.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { PatternSet } from './patterns';
import type { Policy } from './policy';

export class WorkspaceError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'WorkspaceError';
  }
}

export interface ProtectedPath {
  /** Absolute path on the host (symlinks resolved). */
  host: string;
  /** Absolute path inside the sandbox. */
  inside: string;
  dir: boolean;
  /** For placeholders: what the file holds (default empty). */
  content?: string;
}

/**
 * Placeholders whose emptiness would mean something to the host. `.git/commondir`
 * names the directory git takes config and hooks from: git rejects an empty one, and
 * "." means the repository itself, which is what its absence means. An empty
 * `.mcp.json` is an error to the editors that read it (VS Code reported "must contain
 * a valid JSON object" for as long as a session ran); an empty server list is what its
 * absence means.
 */
const PLACEHOLDER_CONTENT: Record<string, string> = { '.git/commondir': '.\n', '.mcp.json': '{ "mcpServers": {} }\n' };

export interface WorkspacePlan {
  /** Where the workspace is inside the sandbox: the path the caller named, normalized. */
  inside: string;
  /** The workspace's real path on the host. */
  host: string;
  /** Its device and inode when scanned: a directory removed and made again at the same path is another workspace. */
  hostId: string;
  masks: ProtectedPath[];
  readOnly: ProtectedPath[];
  /** Read-only paths absent at start: a placeholder is created so they cannot be created inside. */
  absentReadOnly: ProtectedPath[];
  /** Workspace-relative paths of every `.git` (directory or file) found at start. */
  gitEntries: string[];
  scanned: number;
}

/** Directories a workspace may not be: the sandbox would see the whole system or a home. */
function forbiddenWorkspace(real: string): string | null {
  const homes = new Set([os.homedir(), process.env.HOME ?? ''].filter(Boolean).map((h) => safeReal(h)));
  // Each reason ends with what to do instead: the person reading it has to act on it.
  if (real === '/') return 'the root directory: open a project folder instead';
  for (const h of homes) {
    if (real === h) return 'your home directory (it holds your credentials): open a project folder inside it instead';
    if (h.startsWith(real + '/')) return `a parent of your home directory ${h}: open a project folder instead`;
  }
  const system = ['/usr', '/etc', '/bin', '/sbin', '/lib', '/lib64', '/boot', '/dev', '/proc', '/sys', '/run', '/var', '/home', '/root', '/tmp'];
  if (system.includes(real)) return `the system directory ${real}: open a project folder instead`;
  return null;
}

function safeReal(p: string): string {
  try {
    return fs.realpathSync(p);
  } catch {
    return path.resolve(p);
  }
}

/** Git internals with many entries and nothing a pattern is about. */
const SKIP_IN_GIT = new Set(['objects', 'lfs', 'logs', 'refs', 'rr-cache']);

export function planWorkspace(workspace: string, policy: Policy): WorkspacePlan {
  const inside = path.resolve(workspace);
  let host: string;
  try {
    host = fs.realpathSync(inside);
  } catch {
    throw new WorkspaceError(`workspace ${inside} does not exist: create it or pass --workspace DIR`);
  }
  if (!fs.statSync(host).isDirectory()) throw new WorkspaceError(`workspace ${inside} is not a directory`);
  const why = forbiddenWorkspace(host);
  if (why) throw new WorkspaceError(`workspace ${inside} is ${why}`);

  checkHostReadOnly(policy.filesystem.hostReadOnly, host, inside);
  const masks = new PatternSet(policy.filesystem.mask);
  const readOnly = new PatternSet(policy.filesystem.readOnly);
  const visibleRoots = [host, ...policy.filesystem.hostReadOnly.map(safeReal)];
  const toInside = (h: string): string => (h === host ? inside : h.startsWith(host + '/') ? inside + h.slice(host.length) : h);
  const st = fs.statSync(host);
  const plan: WorkspacePlan = { inside, host, hostId: `${st.dev}:${st.ino}`, masks: [], readOnly: [], absentReadOnly: [], gitEntries: [], scanned: 0 };
  const seen = new Set<string>();
  const add = (list: ProtectedPath[], h: string, dir: boolean): void => {
    const key = `${list === plan.masks ? 'm' : 'r'}:${h}`;
    if (seen.has(key)) return;
    seen.add(key);
    list.push({ host: h, inside: toInside(h), dir });
  };

  // A symlink's target is what a sandboxed process would read or write through it, so
  // protection follows links whose targets stay visible inside the sandbox.
  const resolveLink = (abs: string): { real: string; dir: boolean } | null => {
    try {
      const real = fs.realpathSync(abs);
      if (!visibleRoots.some((r) => real === r || real.startsWith(r + '/'))) return null;
      return { real, dir: fs.statSync(real).isDirectory() };
    } catch {
      return null; // dangling: nothing to protect, nothing to read
    }
  };

  const limit = policy.filesystem.maskScanLimit;
  const queue: { abs: string; rel: string; inGit: boolean }[] = [{ abs: host, rel: '', inGit: false }];
  while (queue.length) {
    const { abs, rel, inGit } = queue.pop()!;
    let entries: fs.Dirent[];
    try {
      entries = fs.readdirSync(abs, { withFileTypes: true });
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'EACCES' || code === 'EPERM') continue; // unreadable here, unreadable inside too
      throw e;
    }
    for (const ent of entries) {
      if (++plan.scanned > limit) {
        throw new WorkspaceError(
          `workspace ${inside} has more than ${limit} entries to scan for masked files: ` +
            'open a smaller folder, or raise filesystem.maskScanLimit in the policy',
        );
      }
      const childAbs = path.join(abs, ent.name);
      const childRel = rel ? `${rel}/${ent.name}` : ent.name;
      if (ent.name === '.git') plan.gitEntries.push(childRel);
      if (ent.isSymbolicLink()) {
        const t = resolveLink(childAbs);
        if (!t) continue;
        if (masks.matches(childRel, t.dir)) add(plan.masks, t.real, t.dir);
        else if (readOnly.matches(childRel, t.dir) || (ent.name === '.git' && t.dir)) {
          throw new WorkspaceError(
            `${childAbs} must be read-only in the sandbox but is a symlink, which a sandboxed process could replace: ` +
              `make it a real ${t.dir ? 'directory' : 'file'}, or add "!${childRel}" to filesystem.readOnly in the policy`,
          );
        }
        continue;
      }
      const isDir = ent.isDirectory();
      if (masks.matches(childRel, isDir)) {
        add(plan.masks, childAbs, isDir);
        continue; // nothing under a masked directory is visible
      }
      // A `.git` FILE (submodule or worktree checkout) names the directory host git uses
      // as the repository: rewritten, it would hand host git a repository of the sandbox's.
      if (readOnly.matches(childRel, isDir) || (ent.name === '.git' && ent.isFile())) add(plan.readOnly, childAbs, isDir);
      if (isDir && !(inGit && SKIP_IN_GIT.has(ent.name) && rel.endsWith('.git'))) {
        queue.push({ abs: childAbs, rel: childRel, inGit: inGit || ent.name === '.git' });
      }
    }
  }

  // Literal read-only paths are protected while absent: at the workspace root, and
  // those inside `.git` in every repository found (nested ones too: host git and
  // editors use them just the same).
  const repoBases = plan.gitEntries.filter((g) => isRealDir(path.join(host, g))).map((g) => path.dirname(g));
  for (const { rel, dir } of readOnly.literalRootPaths()) {
    const bases = rel.startsWith('.git/') ? repoBases : [''];
    for (const base of bases) {
      const relHere = base === '.' || base === '' ? rel : `${base}/${rel}`;
      const abs = path.join(host, relHere);
      const parent = path.dirname(abs);
      if (fs.existsSync(abs) || isSymlink(abs)) continue;
      // `.git/hooks` matters only in a repository: placeholders never create one.
      if (parent !== host && !isRealDir(parent)) continue;
      plan.absentReadOnly.push({ host: abs, inside: toInside(abs), dir, ...(rel in PLACEHOLDER_CONTENT ? { content: PLACEHOLDER_CONTENT[rel] } : {}) });
    }
  }
  return plan;
}

/**
 * Extra host paths are for toolchains. They must not bring a home directory back in,
 * nor show the workspace's real path unmasked (when the workspace was named through
 * a symlink, masks sit on the name the caller used, not on the real path).
 */
function checkHostReadOnly(paths: string[], wsHost: string, wsInside: string): void {
  const homes = ['/root', '/home', os.homedir(), process.env.HOME ?? ''].filter(Boolean).map(safeReal);
  for (const p of paths) {
    const real = safeReal(p);
    const within = (a: string, b: string): boolean => a === b || a.startsWith(b + '/');
    if (within(wsHost, real) && wsHost !== wsInside) {
      throw new WorkspaceError(`filesystem.hostReadOnly ${p} contains the workspace's real path ${wsHost}, which would show it unmasked: open the workspace by its real path or drop that entry`);
    }
    if (within(real, wsHost)) continue; // inside the workspace: visible anyway
    if (real === '/' || homes.some((h) => within(real, h) || within(h, real))) {
      throw new WorkspaceError(`filesystem.hostReadOnly ${p} would make a home directory visible in the sandbox: name a directory outside /root and /home`);
    }
  }
}

function isSymlink(p: string): boolean {
  try {
    return fs.lstatSync(p).isSymbolicLink();
  } catch {
    return false;
  }
}

function isRealDir(p: string): boolean {
  try {
    return fs.lstatSync(p).isDirectory();
  } catch {
    return false;
  }
}
