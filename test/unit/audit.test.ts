import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import {
  AuditLog, defaultAuditFile, readAuditFile, sessionRecords, verifyAuditFile, ZERO_HASH,
} from '../../runtime/audit';
import { assertChain, fileLines, logWith, tempDir, writeLines } from '../helpers/audit-fixture';

test('records are written in the documented key order and form a hash chain that verifies', (t) => {
  const file = path.join(tempDir(t), 'state', 'audit.jsonl');
  const log = AuditLog.open({ file });
  t.after(() => log.close());
  const a = log.append('abc123', 'session.start', { policy: 'default', '7': 'integer-like key' });
  const b = log.append('abc123', 'process.start', { argv: ['bash', '-c', 'echo hi'] });
  const c = log.append('-', 'host.note', {});
  assert.deepEqual([a.seq, b.seq, c.seq], [1, 2, 3]);
  assert.equal(a.prev, ZERO_HASH);
  assert.equal(b.prev, a.hash);
  assert.match(a.ts, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);

  const first = fileLines(file)[0];
  const keys = [...first.matchAll(/"([^"]+)":/g)].map((m) => m[1]);
  // Caller fields keep their object's own order (JS puts "7" first); seq..type and
  // prev, hash stay where they are even for integer-like field names.
  assert.deepEqual(keys, ['seq', 'ts', 'session', 'type', '7', 'policy', 'prev', 'hash']);
  assert.equal(fs.statSync(file).mode & 0o777, 0o600);
  assert.deepEqual(verifyAuditFile(file), { ok: true, records: 3, torn: [] });
  assert.deepEqual(readAuditFile(file).records.map((r) => r.hash), [a.hash, b.hash, c.hash]);
});

test('without a file option the log lives in stateDir()/audit.jsonl inside a private directory', (t) => {
  const dir = tempDir(t);
  const saved = process.env.XDG_STATE_HOME;
  process.env.XDG_STATE_HOME = dir;
  t.after(() => { if (saved === undefined) delete process.env.XDG_STATE_HOME; else process.env.XDG_STATE_HOME = saved; });
  const log = AuditLog.open();
  t.after(() => log.close());
  assert.equal(log.file, path.join(dir, 'airlock', 'audit.jsonl'));
  assert.equal(defaultAuditFile(), log.file);
  assert.equal(fs.statSync(path.join(dir, 'airlock')).mode & 0o777, 0o700);
  log.append('-', 'host.start');
  assert.equal(verifyAuditFile(log.file).records, 1);
});

test('a reopened log continues the chain where the file ends', (t) => {
  const { file, log } = logWith(t, 3);
  log.close();
  const again = AuditLog.open({ file });
  t.after(() => again.close());
  assert.equal(again.append('sess-2', 'session.start').seq, 4);
  assertChain(file, 4);
  assert.equal(verifyAuditFile(file).ok, true);
});

test('caller fields cannot override seq, ts, session, type, prev or hash, and audit.* types are refused', (t) => {
  const { file, log } = logWith(t, 1);
  for (const key of ['seq', 'ts', 'session', 'type', 'prev', 'hash']) {
    assert.throws(() => log.append('s', 'step', { [key]: 1 }), new RegExp(`audit field "${key}".*reserved.*rename the field`));
  }
  assert.throws(() => log.append('s', 'step', { toJSON: () => ({ prev: ZERO_HASH }) }), /"prev".*reserved/);
  assert.throws(() => log.append('s', 'audit.torn', { line: 1, bytes: 1 }), /"audit\.torn" is reserved/);
  assert.throws(() => log.append('', 'step'), /session must be a session id/);
  assert.equal(readAuditFile(file).records.length, 1, 'refused records must not reach the file');
});

test('one flipped byte in the middle is reported at its line and seq as a hash mismatch', (t) => {
  const { file } = logWith(t, 10);
  const lines = fileLines(file);
  lines[6] = lines[6].replace('"aaaa"', '"aaab"');
  writeLines(file, lines);
  const v = verifyAuditFile(file);
  assert.equal(v.ok, false);
  assert.deepEqual(v.firstBad, { line: 7, seq: 7, reason: 'hash mismatch: the record was modified after it was written' });
  assert.equal(v.records, 6);
  assert.deepEqual(readAuditFile(file).malformed.map((m) => m.line), [7]);
});

test('a byte flipped in the raw line is caught even where JSON parsing would not notice', (t) => {
  const { file } = logWith(t, 3);
  const lines = fileLines(file);
  lines[1] = lines[1].replace('"note":"aaaa"', '"note":"\\u0061aaa"'); // same parsed value, other bytes
  writeLines(file, lines);
  assert.deepEqual(verifyAuditFile(file).firstBad, { line: 2, seq: 2, reason: 'hash mismatch: the record was modified after it was written' });
});

test('a removed middle record is reported at the line that follows the gap', (t) => {
  const { file } = logWith(t, 10);
  const lines = fileLines(file);
  lines.splice(4, 1); // seq 5
  writeLines(file, lines);
  const v = verifyAuditFile(file);
  assert.equal(v.ok, false);
  assert.deepEqual(v.firstBad, { line: 5, seq: 6, reason: 'prev does not match the hash of seq 4: a record was removed or reordered' });
});

test('swapped records and a removed first record are reported', (t) => {
  const { file } = logWith(t, 5);
  const lines = fileLines(file);
  writeLines(file, [lines[0], lines[2], lines[1], lines[3], lines[4]]);
  assert.match(verifyAuditFile(file).firstBad?.reason ?? '', /^prev does not match the hash of seq 1/);
  writeLines(file, lines.slice(1));
  assert.deepEqual(verifyAuditFile(file).firstBad, {
    line: 1, seq: 2, reason: 'prev is not 64 zeros although this is the first record: records were removed from the start',
  });
});

test('records cut off the end after a sync are reported through the head file', (t) => {
  const { file, log } = logWith(t, 10);
  log.sync();
  assert.equal(fs.statSync(`${file}.head`).mode & 0o777, 0o600);
  assert.equal(verifyAuditFile(file).ok, true);
  writeLines(file, fileLines(file).slice(0, 8));
  const v = verifyAuditFile(file);
  assert.equal(v.ok, false);
  assert.deepEqual(v.firstBad, {
    line: 9, seq: 9, reason: 'log ends at seq 8 but the head file records seq 10: records were removed from the end',
  });
});

test('a log rewritten with fresh hashes after a sync disagrees with the head file', (t) => {
  const { file, log } = logWith(t, 3);
  log.sync();
  log.close();
  fs.rmSync(file);
  const forged = AuditLog.open({ file });
  t.after(() => forged.close());
  for (let i = 0; i < 3; i++) forged.append('sess-1', 'step', { i: 99 });
  assert.match(verifyAuditFile(file).firstBad?.reason ?? '', /hash of seq 3 differs from the head file/);
});

test('records appended after the log was moved aside start a new log at the path', (t) => {
  const { file, log } = logWith(t, 2);
  fs.renameSync(file, `${file}.old`);
  assert.equal(log.append('sess-1', 'step').seq, 1);
  assertChain(file, 1);
  assertChain(`${file}.old`, 2);
});

test('a last record that lost only its newline is completed, not reported as torn', (t) => {
  const { file, log } = logWith(t, 2);
  fs.truncateSync(file, fs.statSync(file).size - 1);
  assert.deepEqual(verifyAuditFile(file), { ok: true, records: 2, torn: [] });
  assert.equal(log.append('sess-1', 'step').seq, 3);
  assertChain(file, 3);
});

test('the writer refuses to chain onto a last record that was edited, and says how to recover', (t) => {
  const { file, log } = logWith(t, 2);
  const lines = fileLines(file);
  lines[1] = lines[1].replace('"aaaa"', '"bbbb"');
  writeLines(file, lines);
  assert.throws(() => log.append('sess-1', 'step'), /is not a valid audit record \(hash mismatch.*airlock audit verify --file .*move .* aside/s);
});

test('a torn line in the middle without its audit.torn record fails verification', (t) => {
  const { file } = logWith(t, 3);
  const lines = fileLines(file);
  writeLines(file, [lines[0], lines[1].slice(0, 40), lines[2]]);
  const v = verifyAuditFile(file);
  assert.equal(v.ok, false);
  assert.equal(v.firstBad?.line, 2);
  assert.match(v.firstBad?.reason ?? '', /not valid JSON.*no audit\.torn record explains it/);
});

test('sessionRecords returns one session\'s records in order', (t) => {
  const { file, log } = logWith(t, 2);
  log.append('other', 'session.start');
  log.append('sess-1', 'session.end', { code: 0 });
  assert.deepEqual(sessionRecords(file, 'sess-1').map((r) => r.seq), [1, 2, 4]);
  assert.deepEqual(sessionRecords(file, 'nobody'), []);
  assert.deepEqual(sessionRecords(path.join(path.dirname(file), 'missing.jsonl'), 'sess-1'), []);
});

test('a closed log refuses to append and names the file', (t) => {
  const { file, log } = logWith(t, 1);
  log.close();
  assert.throws(() => log.append('s', 'step'), new RegExp(`audit log ${file.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} is closed`));
});

test('two writers on one file take turns and form one chain (each sees the other\'s records)', (t) => {
  const { file, log } = logWith(t, 1);
  const other = AuditLog.open({ file });
  t.after(() => other.close());
  const seqs = [log.append('sess-1', 'a').seq, other.append('sess-2', 'b').seq, log.append('sess-1', 'c').seq, log.append('sess-1', 'd').seq, other.append('sess-2', 'e').seq];
  assert.deepEqual(seqs, [2, 3, 4, 5, 6]);
  assertChain(file, 6);
});
