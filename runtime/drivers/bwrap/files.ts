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

export function prepareFiles(identity: Identity): BwrapFiles {
  // The run dir itself is 0700, but bubblewrap resolves bind sources as the caller,
  // so the sandbox needs no access to it: only the bound files' own modes matter.
  const base = ensurePrivateDir(path.join(runDir(), 'files'));
  const emptyFile = path.join(base, 'empty');
  if (!fs.existsSync(emptyFile) || fs.statSync(emptyFile).size !== 0) writeAtomic(emptyFile, '', 0o444);
  const emptyDir = path.join(base, 'empty.d');
  fs.mkdirSync(emptyDir, { recursive: true, mode: 0o555 });
  if (fs.readdirSync(emptyDir).length) throw new DriverError(`${emptyDir} should be empty`, `remove its contents`);
  const etc: Record<string, string> = {};
  for (const [name, content] of Object.entries(generatedEtc(identity))) {
    const file = path.join(base, `etc-${identity.uid}-${name}`);
    if (!fs.existsSync(file) || fs.readFileSync(file, 'utf8') !== content) writeAtomic(file, content, 0o444);
    etc[name] = file;
  }
  return { agent: findAgent(), emptyFile, emptyDir, etc };
}
