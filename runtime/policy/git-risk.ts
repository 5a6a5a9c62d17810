/**
 * After a session: git repositories the sandbox created. Hooks and config of a
 * repository that existed at start are read-only inside; a repository created during
 * the session (`git init`, a nested clone, a new `.git` file) is the sandbox's own,
 * and host git (including an editor's automatic `git status`) runs its hooks and
 * honours its config. That cannot be prevented without breaking `git init`, so it is
 * reported: what in it would execute on this machine.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';

export interface GitRisk {
  /** Workspace-relative path of the new `.git`. */
  repo: string;
  /** Hooks that would run (anything but git's `*.sample` files). */
  hooks: string[];
  /** Config keys that make git run a program, as `section.key`. */
  configKeys: string[];
  /** For a `.git` file: the directory it points git at. */
  gitdir?: string;
}

/** Config keys whose values git executes (lower-case; `*` is one subsection name). */
const EXECUTING_KEYS = [
  /^core\.(fsmonitor|hookspath|sshcommand|pager|editor|askpass|gitproxy)$/,
  /^sequence\.editor$/, /^diff\.external$/, /^diff\..+\.(textconv|command)$/, /^filter\..+\.(clean|smudge|process)$/,
  /^merge\..+\.driver$/, /^credential(\..+)?\.helper$/, /^gpg(\..+)?\.program$/, /^uploadpack\.packobjectshook$/,
  /^include\.path$/, /^includeif\..+\.path$/, /^alias\..+$/, /^pager\..+$/, /^remote\..+\.(uploadpack|receivepack|vcs)$/,
];

function riskyConfigKeys(file: string): string[] {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch {
    return [];
  }
  const out = new Set<string>();
  let section = '';
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    const sec = /^\[\s*([A-Za-z0-9.-]+)(?:\s+"(.*)")?\s*\]/.exec(line);
    if (sec) {
      section = (sec[2] !== undefined ? `${sec[1]}.${sec[2]}` : sec[1]).toLowerCase();
      continue;
    }
    const kv = /^([A-Za-z][A-Za-z0-9-]*)\s*(=|$)/.exec(line);
    if (!kv || !section) continue;
    const key = `${section}.${kv[1].toLowerCase()}`;
    if (EXECUTING_KEYS.some((re) => re.test(key))) out.add(key);
  }
  return [...out];
}

function hooksIn(dir: string): string[] {
  try {
    return fs.readdirSync(dir).filter((h) => !h.endsWith('.sample')).sort();
  } catch {
    return [];
  }
}

/** `.git` entries under ROOT (bounded walk; symlinks not followed). */
export function findGitEntries(root: string, limit = 200_000): string[] {
  const out: string[] = [];
  const queue = [''];
  let seen = 0;
  while (queue.length && seen < limit) {
    const rel = queue.pop()!;
    let entries: fs.Dirent[];
    try {
      entries = fs.readdirSync(path.join(root, rel), { withFileTypes: true });
    } catch {
      continue;
    }
    for (const ent of entries) {
      if (++seen > limit) break;
      const childRel = rel ? `${rel}/${ent.name}` : ent.name;
      if (ent.name === '.git') out.push(childRel);
      else if (ent.isDirectory()) queue.push(childRel);
    }
  }
  return out;
}

/**
 * Repositories under ROOT that were not there before: not among BEFORE (the plan's
 * scan, which skips masked directories) and born at or after SINCE (ms epoch).
 */
export function newGitRisks(root: string, before: readonly string[], since: number): GitRisk[] {
  const known = new Set(before);
  const risks: GitRisk[] = [];
  for (const rel of findGitEntries(root)) {
    if (known.has(rel)) continue;
    const abs = path.join(root, rel);
    const st = fs.lstatSync(abs, { throwIfNoEntry: false });
    if (!st || (st.birthtimeMs || st.ctimeMs) < since - 1000) continue;
    if (st.isDirectory()) {
      risks.push({ repo: rel, hooks: hooksIn(path.join(abs, 'hooks')), configKeys: riskyConfigKeys(path.join(abs, 'config')) });
    } else {
      const m = /^gitdir:\s*(.+)$/m.exec(fs.readFileSync(abs, 'utf8'));
      risks.push({ repo: rel, hooks: [], configKeys: [], gitdir: m?.[1].trim() });
    }
  }
  return risks;
}

export function describeGitRisk(r: GitRisk): string {
  const where = path.dirname(r.repo) === '.' ? 'the workspace root' : path.dirname(r.repo);
  if (r.gitdir !== undefined) return `the sandbox created a .git file in ${where} pointing git at ${r.gitdir}: check it before using git there`;
  const parts = [r.hooks.length ? `hooks ${r.hooks.join(', ')}` : '', r.configKeys.length ? `config ${r.configKeys.join(', ')}` : ''].filter(Boolean);
  return parts.length
    ? `the sandbox created a git repository in ${where} whose ${parts.join(' and ')} would run programs on this machine: review ${r.repo}/hooks and ${r.repo}/config before using git there`
    : `the sandbox created a git repository in ${where}; its hooks and config were not protected (none that run programs were found)`;
}
