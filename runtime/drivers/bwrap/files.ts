/**
 * Host files every bubblewrap sandbox binds read-only: the agent binary, an empty
 * file and an empty directory to mask paths with, and generated /etc files. They
 * live in the runtime's private run directory and are rewritten atomically.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { ensurePrivateDir, runDir } from '../../util/paths';
import type { BwrapFiles } from './args';
import { generatedEtc, Identity } from './system';
import { DriverError } from '../driver';

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
 * binary, the generated /etc files (linked from /etc), and the empty file and
 * directory masks are bound from. One mount for all of them keeps sandbox start fast.
 * Nothing in it is secret: the sandbox may read all of it.
 */
export function prepareFiles(identity: Identity): BwrapFiles {
  const dir = ensurePrivateDir(path.join(runDir(), 'files'));
  // Whatever else is there (an older layout) would be visible inside: remove it.
  for (const name of fs.readdirSync(dir)) {
    if (!['agent', 'empty', 'empty.d', 'etc'].includes(name)) fs.rmSync(path.join(dir, name), { recursive: true, force: true });
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
  return { dir, emptyFile, emptyDir, etc: Object.keys(etc) };
}
