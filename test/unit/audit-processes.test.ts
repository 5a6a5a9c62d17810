import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { acquireLock, AuditLog, LEASE_CHECK_MS, lockFile, readAuditFile, verifyAuditFile, wantFile } from '../../runtime/audit';
import { assertChain, exited, fileLines, firstLine, spawnNode, tempDir } from '../helpers/audit-fixture';

/** Appends COUNT records as session child-ID once it reads a line on stdin, so all children start together. */
const APPENDER = `
const { AuditLog } = require(process.env.AUDIT_MODULE);
const log = AuditLog.open({ file: process.env.AUDIT_FILE });
const count = Number(process.env.COUNT);
process.stdin.once('data', () => {
  for (let i = 0; i < count; i++) {
    log.append('child-' + process.env.CHILD_ID, 'process.start', { i, pid: process.pid, pad: 'x'.repeat(200) });
    if (i % 50 === 49) log.sync();
  }
  log.close();
  process.exit(0);
});
process.stdout.write('ready\\n');
`;

/** Appends COUNT records, BATCH per event-loop turn, holding the lock while busy as the daemon does. */
const TURN_APPENDER = `
const { AuditLog } = require(process.env.AUDIT_MODULE);
const fs = require('fs');
const log = AuditLog.open({ file: process.env.AUDIT_FILE, holdLock: true });
const count = Number(process.env.COUNT);
const batch = Number(process.env.BATCH);
let i = 0;
let lockSeenHeld = 0;
const turn = () => {
  for (let k = 0; k < batch && i < count; k++, i++) log.append('turn-' + process.env.CHILD_ID, 'process.start', { i, pad: 'y'.repeat(100) });
  if (fs.existsSync(process.env.AUDIT_FILE + '.lock')) lockSeenHeld++;
  if (i < count) setTimeout(turn, 1); // still held then, unless the other writer waits
  else setImmediate(() => { log.close(); process.stdout.write(JSON.stringify({ lockSeenHeld }) + '\\n'); process.exit(0); });
};
process.stdin.once('data', turn);
process.stdout.write('ready\\n');
`;

/**
 * Appends three records, then does what append() does but dies inside the write:
 * takes the lock, builds the next real record line, writes the first half of its
 * bytes with one writeSync on an O_APPEND descriptor of the log, and hangs there.
 */
const TORN_WRITER = `
const fs = require('fs');
const audit = require(process.env.AUDIT_MODULE);
const file = process.env.AUDIT_FILE;
const log = audit.AuditLog.open({ file });
for (let i = 0; i < 3; i++) log.append('victim', 'process.start', { i });
audit.acquireLock(audit.lockFile(file));
const last = audit.readAuditFile(file).records.at(-1);
const { line } = audit.formatRecord({
  seq: last.seq + 1, ts: new Date().toISOString(), session: 'victim', type: 'process.exit',
  fields: audit.encodeFields('process.exit', { code: 0 }), prev: last.hash,
});
const half = Buffer.from(line + '\\n').subarray(0, Math.floor(line.length / 2));
const fd = fs.openSync(file, 'a');
fs.writeSync(fd, half);
process.stdout.write(JSON.stringify({ bytes: half.length }) + '\\n');
setInterval(() => {}, 60000);
`;

test('4 processes appending 200 records each at once produce one valid chain of 800 records', async (t) => {
  const file = path.join(tempDir(t), 'audit.jsonl');
  const children = [1, 2, 3, 4].map((id) => spawnNode(APPENDER, { AUDIT_FILE: file, COUNT: '200', CHILD_ID: String(id) }));
  t.after(() => children.forEach((c) => c.exitCode === null && c.kill('SIGKILL')));
  await Promise.all(children.map(firstLine));
  const done = children.map(exited);
  children.forEach((c) => c.stdin?.write('go\n'));
  for (const r of await Promise.all(done)) assert.equal(r.code, 0, r.stderr);

  assert.deepEqual(verifyAuditFile(file), { ok: true, records: 800, torn: [] });
  assertChain(file, 800); // every line parses on its own: nothing interleaved
  const { records } = readAuditFile(file);
  for (const id of [1, 2, 3, 4]) {
    const mine = records.filter((r) => r.session === `child-${id}`).map((r) => r.i);
    assert.deepEqual(mine, Array.from({ length: 200 }, (_, i) => i), `child ${id} records out of order`);
  }
  const sessions = new Set(records.slice(0, 400).map((r) => r.session));
  assert.ok(sessions.size > 1, 'the children did not overlap; the test did not exercise the lock');
  assert.equal(fs.existsSync(lockFile(file)), false);
});

test('writers holding the lock per event-loop turn (as the daemon does) and plain writers, all at once, produce one valid chain', async (t) => {
  const file = path.join(tempDir(t), 'audit.jsonl');
  const children = [
    spawnNode(TURN_APPENDER, { AUDIT_FILE: file, COUNT: '1000', BATCH: '20', CHILD_ID: '1' }),
    spawnNode(TURN_APPENDER, { AUDIT_FILE: file, COUNT: '1000', BATCH: '20', CHILD_ID: '2' }),
    spawnNode(APPENDER, { AUDIT_FILE: file, COUNT: '300', CHILD_ID: '3' }),
  ];
  t.after(() => children.forEach((c) => c.exitCode === null && c.kill('SIGKILL')));
  await Promise.all(children.map(firstLine));
  const outs = children.map((c) => {
    let out = '';
    c.stdout?.on('data', (d: Buffer) => (out += d.toString()));
    return () => out;
  });
  const done = children.map(exited);
  children.forEach((c) => c.stdin?.write('go\n'));
  const results = await Promise.all(done);
  for (const r of results) assert.equal(r.code, 0, r.stderr);
  // Each turn ended with the lock still held by its writer (released by a later check, or at setImmediate when the other waits).
  for (const out of outs.slice(0, 2)) assert.equal(JSON.parse(out().trim().split('\n').pop()!).lockSeenHeld, 50, out());

  assert.deepEqual(verifyAuditFile(file), { ok: true, records: 2300, torn: [] });
  assertChain(file, 2300);
  const { records } = readAuditFile(file);
  for (const [who, n] of [['turn-1', 1000], ['turn-2', 1000], ['child-3', 300]] as const) {
    assert.deepEqual(records.filter((r) => r.session === who).map((r) => r.i), Array.from({ length: n }, (_, i) => i), `${who}: records missing or out of order`);
  }
  // A turn's 20 records go in one run, nobody between them; the writers still took turns.
  const runs = records.reduce((acc: { s: string; n: number }[], r) => {
    if (acc.at(-1)?.s === r.session) acc.at(-1)!.n++;
    else acc.push({ s: r.session, n: 1 });
    return acc;
  }, []);
  assert.ok(runs.length > 3, 'the writers did not overlap; the test did not exercise the lock');
  for (const r of runs) if (r.s.startsWith('turn-')) assert.equal(r.n % 20, 0, `a turn's records were split: ${JSON.stringify(r)}`);
  assert.equal(fs.existsSync(lockFile(file)), false, 'the last turn released the lock');
});

test('held while busy: the lock is taken at the first append, kept across turns while appends come, and gone once they stop; close() releases it at once', async (t) => {
  const file = path.join(tempDir(t), 'audit.jsonl');
  const log = AuditLog.open({ file, holdLock: true });
  t.after(() => log.close());
  for (let turn = 0; turn < 10; turn++) {
    for (let i = 0; i < 10; i++) log.append('s', 'process.start', { turn, i });
    assert.equal(fs.readFileSync(lockFile(file), 'utf8'), `${process.pid}\n`, 'held while appends keep coming');
    await new Promise((r) => setImmediate(r));
  }
  log.sync(); // under the same lease: must not wait for its own lock
  const held = Date.now();
  while (fs.existsSync(lockFile(file))) await new Promise((r) => setTimeout(r, 1));
  assert.ok(Date.now() - held >= LEASE_CHECK_MS - 1, 'released at the first check that found no append since the last one, not before');
  log.append('s', 'process.exit', { code: 0 });
  log.close();
  assert.equal(fs.existsSync(lockFile(file)), false, 'close() released it');
  assert.deepEqual(verifyAuditFile(file), { ok: true, records: 101, torn: [] });
});

test('held while busy: a writer in another process that waits for the lock says so and gets it while the holder keeps appending', async (t) => {
  const file = path.join(tempDir(t), 'audit.jsonl');
  const log = AuditLog.open({ file, holdLock: true });
  t.after(() => log.close());
  log.append('holder', 'process.start', { i: 0 });
  const child = spawnNode(APPENDER, { AUDIT_FILE: file, COUNT: '20', CHILD_ID: '1' });
  t.after(() => { if (child.exitCode === null) child.kill('SIGKILL'); });
  await firstLine(child);
  const done = exited(child);
  let finished = false;
  void done.then(() => (finished = true));
  child.stdin?.write('go\n');
  // The holder never stops: a record every millisecond until the other writer is done.
  let i = 1;
  while (!finished) {
    log.append('holder', 'process.start', { i: i++ });
    await new Promise((r) => setTimeout(r, 1));
    assert.ok(i < 20_000, 'the waiting writer never got the lock');
  }
  assert.equal((await done).code, 0);
  log.append('holder', 'process.exit', { code: 0 });
  const sessions = readAuditFile(file).records.map((r) => r.session);
  assert.deepEqual(verifyAuditFile(file), { ok: true, records: sessions.length, torn: [] });
  assert.equal(sessions.filter((s) => s === 'child-1').length, 20);
  assert.equal(sessions.at(-1), 'holder', 'the holder was still appending when the other writer finished');
  // Each of its records waited for one check of the holder's (LEASE_CHECK_MS) and one of
  // its own retries (at most 20 ms), not for the lease to run out (LEASE_MAX_MS) again and
  // again: without the want file this took seconds, thousands of the holder's records.
  const during = sessions.slice(sessions.indexOf('child-1'), sessions.lastIndexOf('child-1')).filter((s) => s === 'holder').length;
  assert.ok(during < 20 * 50, `${during} of the holder's records went in while the other writer wrote its 20`);
  assert.equal(fs.existsSync(wantFile(lockFile(file))), false, 'the waiter removed its want once it had the lock');
});

test('held while busy: a record another AuditLog of this process writes meanwhile ends the lease and is chained to, not overwritten', async (t) => {
  const file = path.join(tempDir(t), 'audit.jsonl');
  const mine = AuditLog.open({ file, holdLock: true });
  const other = AuditLog.open({ file });
  t.after(() => { mine.close(); other.close(); });
  mine.append('a', 'process.start', { i: 0 });
  await new Promise((r) => setImmediate(r));
  other.append('b', 'process.start', { i: 0 });
  mine.append('a', 'process.start', { i: 1 });
  await new Promise((r) => setImmediate(r));
  assert.deepEqual(verifyAuditFile(file), { ok: true, records: 3, torn: [] });
  assert.deepEqual(readAuditFile(file).records.map((r) => r.session), ['a', 'b', 'a']);
});

test('a writer killed mid-write leaves a torn line that is reported, and the next writer continues the chain', async (t) => {
  const file = path.join(tempDir(t), 'audit.jsonl');
  const child = spawnNode(TORN_WRITER, { AUDIT_FILE: file });
  t.after(() => { if (child.exitCode === null) child.kill('SIGKILL'); });
  const { bytes } = JSON.parse(await firstLine(child)) as { bytes: number };
  const gone = exited(child);
  child.kill('SIGKILL');
  assert.equal((await gone).signal, 'SIGKILL');

  // The dead writer's lock is still there, and its half line ends the file.
  assert.equal(fs.readFileSync(lockFile(file), 'utf8').trim(), String(child.pid));
  assert.notEqual(fs.readFileSync(file).at(-1), 0x0a);
  assert.deepEqual(verifyAuditFile(file), { ok: true, records: 3, torn: [{ line: 4, bytes }] });
  const read = readAuditFile(file);
  assert.deepEqual(read.records.map((r) => r.seq), [1, 2, 3]);
  assert.deepEqual(read.torn, [{ line: 4, bytes }]);
  assert.deepEqual(read.malformed, []);

  const log = AuditLog.open({ file, lockTimeoutMs: 3000 });
  t.after(() => log.close());
  const next = log.append('survivor', 'session.start');
  assert.equal(next.seq, 5);
  const lines = fileLines(file);
  assert.equal(lines.length, 6);
  const tornRecord = JSON.parse(lines[4]) as Record<string, unknown>;
  const third = JSON.parse(lines[2]) as Record<string, unknown>;
  assert.equal(tornRecord.type, 'audit.torn');
  assert.equal(tornRecord.session, '-');
  assert.deepEqual([tornRecord.seq, tornRecord.line, tornRecord.bytes], [4, 4, bytes]);
  assert.equal(tornRecord.prev, third.hash, 'audit.torn must chain to the last good record');
  assert.equal(next.prev, tornRecord.hash);
  assert.deepEqual(verifyAuditFile(file), { ok: true, records: 5, torn: [{ line: 4, bytes }] });
  assert.equal(fs.existsSync(lockFile(file)), false, 'the stale lock was taken over and released');

  // Deleting the audit.torn record to hide the crash is itself evident.
  fs.writeFileSync(file, lines.filter((_, i) => i !== 4).map((l) => `${l}\n`).join(''));
  assert.equal(verifyAuditFile(file).firstBad?.line, 4);
});

test('a torn first line is repaired with an audit.torn record that starts the chain', (t) => {
  const file = path.join(tempDir(t), 'audit.jsonl');
  fs.writeFileSync(file, '{"seq":1,"ts":"2025-');
  const log = AuditLog.open({ file });
  t.after(() => log.close());
  assert.equal(log.append('s', 'session.start').seq, 2);
  const first = JSON.parse(fileLines(file)[1]) as Record<string, unknown>;
  assert.deepEqual([first.seq, first.type, first.line, first.bytes, first.prev], [1, 'audit.torn', 1, 20, '0'.repeat(64)]);
  assert.deepEqual(verifyAuditFile(file), { ok: true, records: 2, torn: [{ line: 1, bytes: 20 }] });
});

test("releasing a lock that was taken over leaves the new holder's lock in place; releasing one's own removes it", (t) => {
  const lock = lockFile(path.join(tempDir(t), 'audit.jsonl'));
  const release = acquireLock(lock);
  assert.equal(fs.readFileSync(lock, 'utf8'), `${process.pid}\n`);
  // Another process decided ours was stale and took over: a new file, even with the same contents.
  fs.unlinkSync(lock);
  fs.writeFileSync(lock, `${process.pid}\n`);
  release();
  assert.equal(fs.existsSync(lock), true, "the new holder's lock stays");
  fs.unlinkSync(lock);
  acquireLock(lock)();
  assert.equal(fs.existsSync(lock), false);
});

test('a lock left by a dead process is taken over', async (t) => {
  const file = path.join(tempDir(t), 'audit.jsonl');
  const dead = spawnNode('', {});
  await exited(dead);
  fs.writeFileSync(lockFile(file), `${dead.pid}\n`);
  const log = AuditLog.open({ file, lockTimeoutMs: 2000 });
  t.after(() => log.close());
  assert.equal(log.append('s', 'session.start').seq, 1);
  assert.equal(fs.existsSync(lockFile(file)), false);
});

test('an empty lock file left by a process killed before it wrote its pid is taken over once it is old', (t) => {
  const file = path.join(tempDir(t), 'audit.jsonl');
  fs.writeFileSync(lockFile(file), '');
  const old = new Date(Date.now() - 10_000);
  fs.utimesSync(lockFile(file), old, old);
  const log = AuditLog.open({ file, lockTimeoutMs: 2000 });
  t.after(() => log.close());
  assert.equal(log.append('s', 'session.start').seq, 1);
});

test('a lock held by a live process times out with an error naming the lock file and the fix', (t) => {
  const file = path.join(tempDir(t), 'audit.jsonl');
  const release = acquireLock(lockFile(file)); // held by this (live) process
  t.after(release);
  const log = AuditLog.open({ file, lockTimeoutMs: 200 });
  t.after(() => log.close());
  const started = Date.now();
  assert.throws(() => log.append('s', 'session.start'), (e: Error) => {
    assert.match(e.message, new RegExp(`waiting for the audit log lock ${lockFile(file).replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}`));
    assert.match(e.message, new RegExp(`held by pid ${process.pid}.*delete .*\\.lock and try again`));
    return true;
  });
  assert.ok(Date.now() - started < 2000);
});
