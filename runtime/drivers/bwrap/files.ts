/**
 * Host files every bubblewrap sandbox binds read-only: the agent binary, an empty
 * file and an empty directory to mask paths with, generated /etc files, and the empty
 * mount point of the sandbox's secrets tmpfs. They live in the runtime's private run
 * directory and are rewritten atomically.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { ensurePrivateDir, runDir } from '../../util/paths';
import type { BwrapFiles } from './args';
import { generatedEtc, Identity } from './system';
import { DriverError } from '../driver';
import { shellFiles } from '../../shell';

/** The static agent binary built by `npm run build` (dist/airlock-agent). */
export function findAgent(): string {
  const candidates = [process.env.AIRLOCK_AGENT, path.join(__dirname, 'airlock-agent')];
  for (let dir = __dirname; dir !== path.dirname(dir); dir = path.dirname(dir)) {
    candidates.push(path.join(dir, 'dist', 'airlock-agent'));
  }
  for (const c of candidates) {
    if (c && fs.existsSync(c)) return c;
  }
  throw new DriverError('airlock-agent binary not found', "build it with 'npm run build' (it needs a C compiler: 'apt-get install gcc libc6-dev')");
}

function writeAtomic(file: string, content: string | Buffer, mode: number): void {
  const tmp = `${file}.${process.pid}.tmp`;
  fs.writeFileSync(tmp, content, { mode });
  fs.chmodSync(tmp, mode);
  fs.renameSync(tmp, file);
}

/**
 * Prepares the directory bound read-only at /run/airlock in every sandbox: the agent
 * binary, the generated /etc files (linked from /etc), the empty file and directory
 * masks are bound from, and the shell-integration files (`shell/`, see runtime/shell). One mount for all of them keeps sandbox start fast.
 * Nothing in it is secret: the sandbox may read all of it.
 */
export function prepareFiles(identity: Identity): BwrapFiles {
  const dir = ensurePrivateDir(path.join(runDir(), 'files'));
  // Whatever else is there (an older layout) would be visible inside: remove it.
  for (const name of fs.readdirSync(dir)) {
    if (!['agent', 'empty', 'empty.d', 'etc', 'shell', 'secrets'].includes(name)) fs.rmSync(path.join(dir, name), { recursive: true, force: true });
  }
  const agentSrc = findAgent();
  const agent = path.join(dir, 'agent');
  const a = fs.statSync(agentSrc);
  const b = fs.statSync(agent, { throwIfNoEntry: false });
  if (!b || b.size !== a.size || b.mtimeMs < a.mtimeMs) {
    writeAtomic(agent, fs.readFileSync(agentSrc), 0o555);
  }
  const emptyFile = path.join(dir, 'empty');
  if (!fs.existsSync(emptyFile) || fs.statSync(emptyFile).size !== 0) writeAtomic(emptyFile, '', 0o444);
  const emptyDir = path.join(dir, 'empty.d');
  fs.mkdirSync(emptyDir, { recursive: true, mode: 0o555 });
  if (fs.readdirSync(emptyDir).length) throw new DriverError(`${emptyDir} should be empty`, 'remove its contents');
  const etcDir = path.join(dir, 'etc');
  fs.mkdirSync(etcDir, { recursive: true, mode: 0o755 });
  const etc = generatedEtc(identity);
  for (const [name, content] of Object.entries(etc)) {
    const file = path.join(etcDir, name);
    if (!fs.existsSync(file) || fs.readFileSync(file, 'utf8') !== content) writeAtomic(file, content, 0o444);
  }
  writeShellFiles(path.join(dir, 'shell'));
  // The mount point of the tmpfs secrets are written to inside (args.ts): only the
  // mount point lives on the host, so it stays empty; anything found in it is removed.
  const secretsDir = path.join(dir, 'secrets');
  fs.mkdirSync(secretsDir, { recursive: true, mode: 0o755 });
  for (const name of fs.readdirSync(secretsDir)) fs.rmSync(path.join(secretsDir, name), { recursive: true, force: true });
  return { dir, emptyFile, emptyDir, etc: Object.keys(etc) };
}

/**
 * Writes shellFiles() under DIR (rewriting only what changed) and removes anything else
 * there, which would otherwise be visible inside. Temporary files of a concurrent
 * writeAtomic (NAME.PID.tmp) are left to their writer, which renames them away.
 */
function writeShellFiles(dir: string): void {
  const files = shellFiles();
  // Directories that lead to a file, by relative path ('zsh' for 'zsh/.zshrc').
  const dirs = new Set<string>();
  for (const rel of Object.keys(files)) {
    for (let p = path.dirname(rel); p !== '.'; p = path.dirname(p)) dirs.add(p);
  }
  fs.mkdirSync(dir, { recursive: true, mode: 0o755 });
  const prune = (sub: string): void => {
    for (const name of fs.readdirSync(path.join(dir, sub))) {
      const rel = sub ? `${sub}/${name}` : name;
      const abs = path.join(dir, rel);
      if (/\.\d+\.tmp$/.test(name)) continue;
      const st = fs.lstatSync(abs, { throwIfNoEntry: false });
      if (!st) continue; // removed meanwhile by a concurrent prepareFiles
      if (dirs.has(rel) && st.isDirectory()) prune(rel);
      else if (!(Object.hasOwn(files, rel) && st.isFile())) fs.rmSync(abs, { recursive: true, force: true });
    }
  };
  prune('');
  for (const [rel, content] of Object.entries(files)) {
    const file = path.join(dir, rel);
    fs.mkdirSync(path.dirname(file), { recursive: true, mode: 0o755 });
    if (!fs.existsSync(file) || fs.readFileSync(file, 'utf8') !== content) writeAtomic(file, content, 0o444);
  }
}
