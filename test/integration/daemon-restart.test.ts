/**
 * Daemon restarts: a stale socket (nothing listening) is replaced; a live daemon is
 * never displaced; a daemon whose socket was replaced stops without harming its
 * successor; and a daemon that died (SIGKILL) takes its sandboxes with it, which the
 * next daemon records as `session.end` with reason `runtime-lost`. REAL processes.
 */
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { readAuditFile, verifyAuditFile } from '../../runtime/audit';
import { RuntimeClient } from '../../runtime/client/client';
import { DaemonProcess, descendantsOf, startDaemonProcess } from '../helpers/daemon';
import { sleep, until, within } from '../helpers/integration';
import { AIRLOCK_BIN, processesInNamespace, runCli, stopDaemonAt, tempDir } from '../helpers/sandbox';

type T = { after: (fn: () => Promise<void> | void) => void };

/** Leaves a socket file at SOCKET with nothing listening: a listener SIGKILLed before it could clean up. */
async function staleSocket(socket: string): Promise<void> {
  fs.mkdirSync(path.dirname(socket), { recursive: true, mode: 0o700 });
  const child = spawn(process.execPath, ['-e', "require('net').createServer().listen(process.argv[1], () => console.log('listening'))", socket], { stdio: ['ignore', 'pipe', 'inherit'] });
  await within(new Promise<void>((r) => child.stdout.once('data', () => r())), 10_000, 'the throwaway listener');
  const gone = new Promise<void>((r) => child.once('exit', () => r()));
  child.kill('SIGKILL');
  await within(gone, 5000, 'the throwaway listener to die');
  assert.ok(fs.statSync(socket).isSocket(), 'the socket file is left behind');
  const refused = await RuntimeClient.connect({ socket }).then((c) => (c.close(), 'connected'), (e: NodeJS.ErrnoException) => e.code);
  assert.equal(refused, 'ECONNREFUSED');
}

test('airlock serve --socket replaces a stale socket that nothing listens on, and serves', { timeout: 90_000 }, async (t: T) => {
  const root = tempDir('airlock-stale-');
  const socket = path.join(root, 'run', 'runtime.sock');
  t.after(async () => {
    await stopDaemonAt(socket);
    fs.rmSync(root, { recursive: true, force: true });
  });
  await staleSocket(socket);
  const r = spawnSync(process.execPath, [AIRLOCK_BIN, 'serve', '--socket', socket, '--idle-exit', '60'], { env: { ...process.env, XDG_STATE_HOME: path.join(root, 'state') }, encoding: 'utf8', timeout: 30_000 });
  assert.equal(r.status, 0, r.stderr);
  const pid = Number(fs.readFileSync(socket + '.pid', 'utf8'));
  assert.match(r.stdout, new RegExp(`^airlock daemon running \\(pid ${pid}\\) on `));
  const c = await RuntimeClient.connect({ socket });
  assert.equal((await c.call('runtime.info', {})).pid, pid);
  c.close();
});

test('a second airlock serve on a live daemon\'s socket exits 1 saying it already serves, and the first keeps serving', { timeout: 90_000 }, async (t: T) => {
  const d = await startDaemonProcess();
  t.after(() => d.stop());
  const env = { XDG_STATE_HOME: d.state };
  const fg = await runCli(['serve', '--foreground', '--socket', d.socket], { env, keepDaemon: true, timeoutMs: 30_000 });
  assert.equal(fg.code, 1);
  assert.equal(fg.stderr, `airlock: an Airlock daemon already serves ${d.socket} (pid ${d.pid}): use it, or stop it with 'kill ${d.pid}'\n`);
  const bg = await runCli(['serve', '--socket', d.socket], { env, keepDaemon: true, timeoutMs: 30_000 });
  assert.equal(bg.code, 1, 'the detached form says the same, and names no pid of a daemon that refused');
  assert.equal(bg.stderr, `airlock: an Airlock daemon already serves ${d.socket} (pid ${d.pid}): use it, or stop it with 'kill ${d.pid}'\n`);
  assert.equal(bg.stdout, '');
  assert.equal(Number(fs.readFileSync(d.socket + '.pid', 'utf8')), d.pid);
  const c = await d.client();
  assert.equal((await c.call('runtime.info', {})).pid, d.pid);
});

test('a daemon whose socket was removed stops by itself, without removing the socket of the daemon that took its place', { timeout: 90_000 }, async (t: T) => {
  const a = await startDaemonProcess();
  let b: DaemonProcess | undefined;
  t.after(async () => {
    await b?.stop();
    await a.stop();
  });
  fs.rmSync(a.socket);
  b = await startDaemonProcess({ socket: a.socket });
  assert.equal(await within(a.exited, 10_000, 'the first daemon to notice and stop'), 0);
  assert.match(fs.readFileSync(a.log, 'utf8'), /stopping: its socket .* was removed or replaced/);
  assert.ok(fs.existsSync(b.socket), 'the successor\'s socket is still there');
  assert.equal(Number(fs.readFileSync(b.socket + '.pid', 'utf8')), b.pid, 'and so is its pid file');
  await sleep(2500); // the successor's own socket watch runs every 2 s
  const c = await b.client();
  assert.equal((await c.call('runtime.info', {})).pid, b.pid);
});

test('a daemon killed with SIGKILL takes its sandboxes with it; the next daemon records session.end runtime-lost and the chain verifies', { timeout: 90_000 }, async (t: T) => {
  const state = tempDir('airlock-state-');
  const first = await startDaemonProcess({ state });
  let second: DaemonProcess | undefined;
  t.after(async () => {
    try {
      await second?.stop();
      await first.stop();
    } finally {
      fs.rmSync(state, { recursive: true, force: true });
    }
  });
  const c = await first.client();
  const { sessionId } = await c.call('session.create', { workspace: first.workspace() });
  const kept = (await c.call('session.create', { workspace: first.workspace() })).sessionId;
  await c.call('session.kill', { sessionId: kept, reason: 'ended properly' });
  await c.call('process.start', { sessionId, argv: ['sleep', '1000'] });
  // The sandbox: the PID namespace of the `sleep 1000` among the daemon's descendants.
  let ns = '';
  await until(() => {
    for (const pid of descendantsOf(first.pid)) {
      try {
        if (fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8') === 'sleep\u00001000\u0000') ns = fs.readlinkSync(`/proc/${pid}/ns/pid`);
      } catch {
        /* exited meanwhile */
      }
    }
    return ns !== '';
  }, 5000, 'the sandboxed sleep among the daemon\'s descendants');
  assert.notEqual(ns, fs.readlinkSync('/proc/self/ns/pid'), 'it runs in its own PID namespace');
  assert.ok(processesInNamespace(ns).length >= 2, 'the agent and the sleep run in it');

  await first.kill();
  await until(() => processesInNamespace(ns).length === 0, 10_000, 'every process of the sandbox to die with the daemon');
  assert.ok(fs.existsSync(first.socket), 'SIGKILL left its socket behind');
  const before = readAuditFile(first.auditFile).records.filter((r) => r.session === sessionId).map((r) => r.type);
  assert.deepEqual(before, ['session.start', 'process.start'], 'nobody could write the end');

  second = await startDaemonProcess({ state, socket: first.socket });
  const recs = readAuditFile(second.auditFile).records;
  const ends = recs.filter((r) => r.session === sessionId && r.type === 'session.end');
  assert.equal(ends.length, 1);
  assert.equal(ends[0].reason, 'runtime-lost');
  assert.equal(ends[0].detail, `the runtime (pid ${first.pid}) stopped without ending the session; its processes died with it`);
  assert.equal(recs.filter((r) => r.session === kept && r.type === 'session.end').length, 1, 'a session that ended properly is not ended again');
  assert.match(fs.readFileSync(second.log, 'utf8'), new RegExp(`recorded 1 session\\(s\\) of a runtime that stopped without ending them: ${sessionId}`));
  const v = verifyAuditFile(second.auditFile);
  assert.equal(v.ok, true, JSON.stringify(v.firstBad));
  const c2 = await second.client();
  assert.ok(!(await c2.call('session.list', {})).sessions.length, 'the new daemon has no sessions');

  // A third start records nothing more.
  await second.stop();
  second = await startDaemonProcess({ state });
  assert.equal(readAuditFile(second.auditFile).records.filter((r) => r.session === sessionId && r.type === 'session.end').length, 1);
});
