/**
 * Nothing runs unrecorded: when the audit log cannot be written (a full disk here,
 * through /dev/full), no session starts, a running session ends, the error names the
 * log and the fix, and what was already recorded stays whole.
 */
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { AuditLog, verifyAuditFile } from '../../runtime/audit';
import { BwrapDriver } from '../../runtime/drivers/bwrap/driver';
import { resolvePolicy } from '../../runtime/policy/policy';
import { AuditWriteError, Session } from '../../runtime/sessions';
import { hostPidsWhere, runCli, stopDaemonIn, tempDir } from '../helpers/sandbox';

/** The full disk is simulated with /dev/full, which some machines keep root-only. */
const DEV_FULL_WRITABLE = ((): boolean => {
  try {
    fs.accessSync('/dev/full', fs.constants.W_OK);
    return true;
  } catch {
    return false;
  }
})();
const NO_DEV_FULL = '/dev/full is not writable by this user here (mode 0600 on this machine): the full-disk simulation needs it';

/** A fresh workspace and state dir, removed after the test. */
function dirs(t: { after: (fn: () => void) => void }): { ws: string; state: string } {
  const d = { ws: tempDir('airlock-ws-'), state: tempDir('airlock-state-') };
  t.after(() => {
    for (const x of Object.values(d)) fs.rmSync(x, { recursive: true, force: true });
  });
  return d;
}

test('a session does not start when its start record cannot be written, and leaves no sandbox behind', async (t) => {
  if (!DEV_FULL_WRITABLE) return t.skip(NO_DEV_FULL);
  const { ws, state } = dirs(t);
  const file = path.join(state, 'audit.jsonl');
  fs.symlinkSync('/dev/full', file);
  const audit = AuditLog.open({ file });
  await assert.rejects(
    Session.create({ workspace: ws, policy: resolvePolicy(), driver: new BwrapDriver(), audit }),
    (e: Error) => {
      assert.ok(e instanceof AuditWriteError);
      assert.match(e.message, new RegExp(`cannot write the audit log ${file}: no space left on the device \\(ENOSPC\\)`));
      assert.match(e.message, /set XDG_STATE_HOME to a writable directory; nothing runs unrecorded, so the session was not started/);
      return true;
    },
  );
  audit.close();
  assert.deepEqual(hostPidsWhere((argv) => argv.some((a) => a.includes(ws))), [], 'no bubblewrap or sandbox process is left');
  assert.deepEqual(fs.readdirSync(ws), [], 'no placeholder is left in the workspace');
});

test('a running session whose audit log fills up ends with reason error, and the records written before stay whole', async (t) => {
  if (!DEV_FULL_WRITABLE) return t.skip(NO_DEV_FULL);
  const { ws, state } = dirs(t);
  const file = path.join(state, 'audit.jsonl');
  const audit = AuditLog.open({ file });
  const s = await Session.create({ workspace: ws, policy: resolvePolicy(), driver: new BwrapDriver(), audit });
  const first = await s.spawn({ argv: ['sleep', '100'] });
  // The disk "fills": the log now leads to /dev/full (the writer reopens the path).
  fs.renameSync(file, `${file}.before`);
  fs.symlinkSync('/dev/full', file);
  const ended = new Promise<string>((r) => s.once('end', (reason) => r(reason)));
  const second = await s.spawn({ argv: ['true'] }).catch((e: Error) => e);
  assert.equal(await ended, 'error');
  const exit = await first.exited;
  assert.equal(exit.signal, 'SIGKILL');
  assert.match(exit.reason ?? '', /session ended: error/);
  if (!(second instanceof Error)) await second.exited;
  await assert.rejects(s.spawn({ argv: ['true'] }), /cannot write the audit log .*ENOSPC.*the session was stopped/);
  assert.match(s.warnings.join('\n'), /cannot write the audit log/);
  audit.close();
  const before = verifyAuditFile(`${file}.before`);
  assert.equal(before.ok, true, JSON.stringify(before.firstBad));
  assert.ok(before.records >= 2, 'session.start and process.start of the first process were kept');
});

test('airlock run through the daemon, whose audit log has filled up, exits 125 and runs nothing', async (t) => {
  if (!DEV_FULL_WRITABLE) return t.skip(NO_DEV_FULL);
  const ws = tempDir('airlock-ws-');
  const state = tempDir('airlock-state-');
  const rt = tempDir('airlock-rt-');
  t.after(async () => {
    await stopDaemonIn(rt);
    for (const d of [ws, state, rt]) fs.rmSync(d, { recursive: true, force: true });
  });
  const env = { XDG_STATE_HOME: state, XDG_RUNTIME_DIR: rt };
  const started = await runCli(['serve', '--idle-exit', '60'], { env, keepDaemon: true });
  assert.equal(started.code, 0, started.stderr);
  // The disk "fills": the daemon's log now leads to /dev/full (its writer reopens the path).
  const file = path.join(state, 'airlock', 'audit.jsonl');
  fs.renameSync(file, `${file}.before`);
  fs.symlinkSync('/dev/full', file);
  const r = await runCli(['run', '--workspace', ws, '--', 'sh', '-c', 'echo SHOULD-NOT-RUN'], { env, keepDaemon: true });
  assert.equal(r.code, 125);
  assert.match(r.stderr, /airlock: cannot write the audit log .*audit\.jsonl: no space left on the device \(ENOSPC\).*the session was not started/);
  assert.doesNotMatch(r.stdout, /SHOULD-NOT-RUN/);
  assert.equal(verifyAuditFile(`${file}.before`).ok, true);
});

test('a connection whose audit record cannot be written carries nothing: the destination gets no byte of the request, and the session ends', async (t) => {
  if (!DEV_FULL_WRITABLE) return t.skip(NO_DEV_FULL);
  const { ws, state } = dirs(t);
  let bytes = 0;
  let connections = 0;
  const server = net.createServer((sock) => {
    connections++;
    sock.on('data', (d: Buffer) => (bytes += d.length));
    sock.on('error', () => undefined);
  });
  const port = await new Promise<number>((r) => server.listen(0, '127.0.0.1', () => r((server.address() as net.AddressInfo).port)));
  t.after(() => server.close());
  const file = path.join(state, 'audit.jsonl');
  const audit = AuditLog.open({ file, holdLock: true }); // as the daemon opens it
  t.after(() => audit.close());
  const policy = resolvePolicy({ network: { registries: false, allow: [`127.0.0.1:${port}`] } });
  const s = await Session.create({ workspace: ws, policy, driver: new BwrapDriver(), audit });
  // Started (and recorded) first; it sends its request once told to on stdin.
  const p = await s.spawn({ argv: ['sh', '-c', `read go; curl -s -m 5 -d secret-body-${process.pid} http://127.0.0.1:${port}/upload; echo curl=$?`] });
  let out = '';
  p.on('stdout', (d: Buffer) => (out += d.toString()));
  await new Promise((r) => setTimeout(r, 300)); // the writer's lease on the log has ended: its next record opens the path again
  fs.renameSync(file, `${file}.before`);
  fs.symlinkSync('/dev/full', file);
  const ended = new Promise<string>((r) => s.once('end', (reason) => r(reason)));
  p.write('go\n');
  assert.equal(await ended, 'error');
  await p.exited;
  await new Promise((r) => setTimeout(r, 200));
  assert.equal(bytes, 0, `the destination received ${bytes} bytes (${connections} connections) of a request that was never recorded`);
  assert.doesNotMatch(out, /curl=0/);
  assert.match(s.warnings.join('\n'), /cannot write the audit log/);
  const before = verifyAuditFile(`${file}.before`);
  assert.equal(before.ok, true, JSON.stringify(before.firstBad));
});
