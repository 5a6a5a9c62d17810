/** Temp logs, captured CLI output and child processes for the audit tests. */
import * as assert from 'node:assert/strict';
import { ChildProcess, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { AuditLog } from '../../runtime/audit';

/** The compiled audit module, as children must require it (out/test/helpers -> out/runtime/audit). */
export const AUDIT_MODULE = path.resolve(__dirname, '..', '..', 'runtime', 'audit', 'index.js');

export function tempDir(t: { after: (fn: () => void) => void }): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'airlock-audit-'));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** A log in a fresh temp dir with N records `step` {i, note} of session "sess-1". */
export function logWith(t: { after: (fn: () => void) => void }, n: number): { file: string; log: AuditLog } {
  const file = path.join(tempDir(t), 'audit.jsonl');
  const log = AuditLog.open({ file });
  t.after(() => log.close());
  for (let i = 1; i <= n; i++) log.append('sess-1', 'step', { i, note: 'aaaa' });
  return { file, log };
}

/** The file's lines without the final newline's empty piece. */
export function fileLines(file: string): string[] {
  const text = fs.readFileSync(file, 'utf8');
  const lines = text.split('\n');
  if (lines[lines.length - 1] === '') lines.pop();
  return lines;
}

export function writeLines(file: string, lines: string[]): void {
  fs.writeFileSync(file, lines.map((l) => `${l}\n`).join(''));
}

export interface Captured { out: string; err: string; io: { out: (s: string) => void; err: (s: string) => void } }

export function capture(): Captured {
  const c: Captured = { out: '', err: '', io: { out: (s) => { c.out += s; }, err: (s) => { c.err += s; } } };
  return c;
}

/** Runs SCRIPT (CommonJS source) in a new Node process with AUDIT_MODULE and ENV set. */
export function spawnNode(script: string, env: Record<string, string>): ChildProcess {
  return spawn(process.execPath, ['-e', script], {
    env: { ...process.env, AUDIT_MODULE, ...env },
    stdio: ['pipe', 'pipe', 'pipe'],
  });
}

/** Resolves with the first stdout line of CHILD; rejects if it exits first. */
export function firstLine(child: ChildProcess): Promise<string> {
  return new Promise((resolve, reject) => {
    let buf = '';
    let err = '';
    child.stderr?.on('data', (d: Buffer) => { err += d.toString(); });
    child.stdout?.on('data', (d: Buffer) => {
      buf += d.toString();
      const nl = buf.indexOf('\n');
      if (nl >= 0) resolve(buf.slice(0, nl));
    });
    child.once('exit', (code, signal) => reject(new Error(`child exited (${code ?? signal}) before writing a line: ${err}`)));
  });
}

export function exited(child: ChildProcess): Promise<{ code: number | null; signal: NodeJS.Signals | null; stderr: string }> {
  let stderr = '';
  child.stderr?.on('data', (d: Buffer) => { stderr += d.toString(); });
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) {
      resolve({ code: child.exitCode, signal: child.signalCode, stderr });
      return;
    }
    child.once('exit', (code, signal) => resolve({ code, signal, stderr }));
  });
}

export function assertChain(file: string, expected: number): void {
  const lines = fileLines(file).map((l) => JSON.parse(l) as { seq: number; prev: string; hash: string });
  assert.equal(lines.length, expected);
  lines.forEach((r, i) => {
    assert.equal(r.seq, i + 1);
    assert.equal(r.prev, i === 0 ? '0'.repeat(64) : lines[i - 1].hash);
  });
}
