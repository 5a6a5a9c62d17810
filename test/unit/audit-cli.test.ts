import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { AuditLog } from '../../runtime/audit';
import { auditCommand } from '../../runtime/cli/commands/audit';
import { capture, fileLines, tempDir, writeLines } from '../helpers/audit-fixture';

function sampleLog(t: { after: (fn: () => void) => void }): string {
  const file = path.join(tempDir(t), 'audit.jsonl');
  const log = AuditLog.open({ file });
  log.append('5f1c2a9e-0000-4000-8000-000000000001', 'session.start', { workspace: '/home/me/proj', policy: 'default' });
  log.append('5f1c2a9e-0000-4000-8000-000000000001', 'process.start', { argv: ['bash', '-lc', 'npm test'], pid: 42 });
  log.append('-', 'host.note', { text: 'two words' });
  log.append('5f1c2a9e-0000-4000-8000-000000000001', 'process.exit', { code: 0 });
  log.append('0b7d0000-aaaa-4bbb-8ccc-000000000002', 'session.start', {});
  log.close();
  return file;
}

async function run(argv: string[]): Promise<{ code: number; out: string; err: string }> {
  const c = capture();
  const code = await auditCommand(argv, c.io);
  return { code, out: c.out, err: c.err };
}

test('audit verify reports an intact log with its record count and exits 0', async (t) => {
  const file = sampleLog(t);
  assert.deepEqual(await run(['verify', '--file', file]), { code: 0, out: `audit log OK: 5 records (${file})\n`, err: '' });
});

test('audit verify names the first bad line, seq and cause and exits 1', async (t) => {
  const file = sampleLog(t);
  const lines = fileLines(file);
  lines[2] = lines[2].replace('two words', 'two w0rds');
  writeLines(file, lines);
  const r = await run(['verify', `--file=${file}`]);
  assert.equal(r.code, 1);
  assert.equal(r.err, 'audit log FAILED at line 3 (seq 3): hash mismatch: the record was modified after it was written\n');
});

test('audit verify warns about a torn last line but still passes', async (t) => {
  const file = sampleLog(t);
  fs.appendFileSync(file, '{"seq":6,"ts":"20');
  const r = await run(['verify', '--file', file]);
  assert.equal(r.code, 0);
  assert.equal(r.out, `audit log OK: 5 records (${file})\n`);
  assert.equal(r.err, 'warning: line 6 is a torn record (17 bytes), left by a writer that was killed mid-write\n');
});

test('audit verify on a missing log says there is no log yet and exits 0', async (t) => {
  const file = path.join(tempDir(t), 'none.jsonl');
  assert.deepEqual(await run(['verify', '--file', file]), { code: 0, out: `no audit log yet at ${file}\n`, err: '' });
});

test('audit verify on a deleted log whose head file remains reports the removal and exits 1', async (t) => {
  const file = path.join(tempDir(t), 'audit.jsonl');
  const log = AuditLog.open({ file });
  log.append('s', 'session.start');
  log.sync();
  log.close();
  fs.rmSync(file);
  const r = await run(['verify', '--file', file]);
  assert.equal(r.code, 1);
  assert.equal(r.err, 'audit log FAILED at line 1 (seq 1): log ends at seq 0 but the head file records seq 1: records were removed from the end\n');
});

test('audit tail prints one readable line per record, hiding chain fields', async (t) => {
  const file = sampleLog(t);
  const r = await run(['tail', '--file', file, '-n', '3']);
  assert.equal(r.code, 0);
  const lines = r.out.trimEnd().split('\n');
  assert.equal(lines.length, 3);
  assert.match(lines[0], /^\d{4}-\d\d-\d\dT[\d:.]+Z {2}- {9}host\.note {7}text="two words"$/);
  assert.match(lines[1], /Z {2}5f1c2a9e {2}process\.exit {4}code=0$/);
  assert.match(lines[2], /Z {2}0b7d0000 {2}session\.start$/);
  assert.doesNotMatch(r.out, /prev=|hash=|seq=/);
});

test('audit tail --session --json prints the stored lines of that session unchanged', async (t) => {
  const file = sampleLog(t);
  const r = await run(['tail', '--session', '5f1c2a9e-0000-4000-8000-000000000001', '--json', '--file', file]);
  assert.equal(r.code, 0);
  const stored = fileLines(file);
  assert.equal(r.out, [stored[0], stored[1], stored[3]].map((l) => `${l}\n`).join(''));
  const human = await run(['tail', '--session', '5f1c2a9e-0000-4000-8000-000000000001', '-n', '2', '--file', file]);
  assert.match(human.out.split('\n')[0], /process\.start {3}argv=\["bash","-lc","npm test"\] {2}pid=42$/);
});

test('audit export writes one session as JSON Lines to stdout or to --out', async (t) => {
  const file = sampleLog(t);
  const id = '0b7d0000-aaaa-4bbb-8ccc-000000000002';
  const r = await run(['export', '--session', id, '--file', file]);
  assert.deepEqual(r, { code: 0, out: `${fileLines(file)[4]}\n`, err: '' });

  const out = path.join(path.dirname(file), 'export.jsonl');
  const w = await run(['export', '--session', '5f1c2a9e-0000-4000-8000-000000000001', '--out', out, '--file', file]);
  assert.equal(w.code, 0);
  assert.equal(fs.readFileSync(out, 'utf8').split('\n').filter(Boolean).length, 3);
  assert.equal(fs.statSync(out).mode & 0o777, 0o600);
});

test('audit export of an unknown session exits 1 naming the session and file', async (t) => {
  const file = sampleLog(t);
  assert.deepEqual(await run(['export', '--session', 'nope', '--file', file]),
    { code: 1, out: '', err: `no audit records for session nope in ${file}\n` });
});

test('--help prints usage and exits 0 for the command and each subcommand', async () => {
  for (const argv of [['--help'], ['verify', '--help'], ['tail', '--help'], ['export', '--help']]) {
    const r = await run(argv);
    assert.equal(r.code, 0, argv.join(' '));
    assert.match(r.out, /^Usage: airlock audit/);
    assert.equal(r.err, '');
  }
});

test('unknown subcommands, unknown flags and missing values are usage errors with exit 2', async () => {
  for (const argv of [[], ['frobnicate'], ['verify', '--bogus'], ['tail', '-n'], ['tail', '-n', 'ten'], ['export'], ['verify', 'extra'], ['constructor']]) {
    const r = await run(argv);
    assert.equal(r.code, 2, argv.join(' '));
    assert.equal(r.out, '');
    assert.match(r.err, /^airlock audit: .+\n\nUsage: airlock audit/, argv.join(' '));
  }
});
