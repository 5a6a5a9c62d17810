/**
 * Every session and process method of the daemon, its success and its error paths,
 * over a real unix socket to a daemon serving REAL sandboxes (serve() in this
 * process, a BwrapDriver, an audit log on a temp file), through RuntimeClient.
 */
import { after, before, test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as path from 'node:path';
import type { RuntimeClient } from '../../runtime/client/client';
import { ErrorCode, FrameKind } from '../../runtime/protocol';
import { InProcessDaemon, rpcFails, startInProcessDaemon } from '../helpers/daemon';
import { sleep, until, within } from '../helpers/integration';

let d: InProcessDaemon;
let c: RuntimeClient;
before(async () => {
  d = await startInProcessDaemon();
  c = await d.client();
}, { timeout: 60_000 });
after(() => d.stop(), { timeout: 60_000 });

async function newSession(opts: { policy?: Record<string, unknown> } = {}): Promise<string> {
  const { sessionId } = await c.call('session.create', { workspace: d.workspace(), ...opts } as never);
  return sessionId;
}

/** Attaches to PROCESSID collecting stdout and stderr as text. */
async function attachText(client: RuntimeClient, processId: string) {
  let out = '';
  let err = '';
  const a = await client.attach(processId, (kind, data) => {
    if (kind === FrameKind.Stderr) err += data.toString('utf8');
    else out += data.toString('utf8');
  });
  return { a, out: () => out, err: () => err };
}

test('runtime.info answers the version, protocol, pid, drivers and limits', { timeout: 90_000 }, async () => {
  const info = await c.call('runtime.info', {});
  assert.equal(info.protocol, 1);
  assert.equal(info.pid, process.pid);
  assert.deepEqual(info.drivers, [{ name: 'bwrap', available: true }]);
  assert.ok(info.limits.length > 0, 'the limits enforced here are listed');
  await rpcFails(c.call('runtime.info', { extra: 1 } as never), ErrorCode.InvalidParams, /^runtime\.info: params: unknown field extra$/);
});

test('session.create starts a sandbox session that session.get and session.list report', { timeout: 90_000 }, async () => {
  const ws = d.workspace();
  const { sessionId } = await c.call('session.create', { workspace: ws, label: 'methods-test' });
  assert.match(sessionId, /^[0-9a-f]{16}$/);
  const s = await c.call('session.get', { sessionId });
  assert.equal(s.sessionId, sessionId);
  assert.equal(s.state, 'running');
  assert.equal(s.label, 'methods-test');
  assert.equal(s.workspace, ws);
  assert.equal(s.driver, 'bwrap');
  assert.deepEqual(s.processes, []);
  assert.ok(s.lifetimeLeft > 3600);
  const { sessions } = await c.call('session.list', {});
  assert.equal(sessions[0].sessionId, sessionId, 'newest first');
  await c.call('session.kill', { sessionId });
});

test('session.create with an invalid policy fails with PolicyInvalid naming the field', { timeout: 90_000 }, async () => {
  await rpcFails(c.call('session.create', { workspace: d.workspace(), policy: { limits: { pids: 'many' } } as never }), ErrorCode.PolicyInvalid, /limits\.pids: must be integer/);
  await rpcFails(c.call('session.create', { workspace: d.workspace(), policy: { limitz: {} } as never }), ErrorCode.PolicyInvalid, /limitz: unknown field/);
});

test('session.create with a missing workspace fails with WorkspaceInvalid naming the path', { timeout: 90_000 }, async () => {
  const missing = path.join(d.workspace(), 'no-such-dir');
  await rpcFails(c.call('session.create', { workspace: missing }), ErrorCode.WorkspaceInvalid, new RegExp(`workspace ${missing} does not exist`));
});

test('session.create with a relative workspace fails with InvalidParams naming the field', { timeout: 90_000 }, async () => {
  await rpcFails(c.call('session.create', { workspace: 'relative/dir' }), ErrorCode.InvalidParams, /^session\.create: workspace: must match pattern "\^\/"$/);
  await rpcFails(c.call('session.create', {} as never), ErrorCode.InvalidParams, /^session\.create: params: missing field workspace$/);
});

test('session.get and session.kill of an unknown session fail with SessionNotFound saying so', { timeout: 90_000 }, async () => {
  await rpcFails(c.call('session.get', { sessionId: 'feedfacefeedface' }), ErrorCode.SessionNotFound, /^session feedfacefeedface not found: 'airlock sessions' lists the live ones$/);
  await rpcFails(c.call('session.kill', { sessionId: 'feedfacefeedface' }), ErrorCode.SessionNotFound, /session feedfacefeedface not found/);
});

test('session.kill ends a session; afterwards its methods fail with SessionEnded saying when and why', { timeout: 90_000 }, async () => {
  const sessionId = await newSession();
  const { processId } = await c.call('process.start', { sessionId, argv: ['sleep', '100'] });
  const r = await c.call('session.kill', { sessionId, reason: 'test is done' });
  assert.deepEqual(r, { warnings: [] });
  const e = await rpcFails(c.call('session.get', { sessionId }), ErrorCode.SessionEnded, new RegExp(`^session ${sessionId} has ended \\(\\d+ s ago: killed, test is done\\)$`));
  assert.deepEqual(e.data, { reason: 'killed' });
  await rpcFails(c.call('session.kill', { sessionId }), ErrorCode.SessionEnded, /has ended \(\d+ s ago: killed/);
  await rpcFails(c.call('process.start', { sessionId, argv: ['true'] }), ErrorCode.SessionEnded, /has ended \(\d+ s ago: killed/);
  await rpcFails(c.call('exec', { sessionId, argv: ['true'] }), ErrorCode.SessionEnded, /has ended \(\d+ s ago: killed/);
  // Its processes stay attachable for a while: their replay and exit, nothing else.
  const late = await attachText(c, processId);
  assert.deepEqual(await within(late.a.exited, 5000, 'the exit note'), { processId, code: null, signal: 'SIGKILL', reason: 'session ended: killed' });
  await rpcFails(c.call('process.input', { processId, data: 'x' }), ErrorCode.ProcessNotFound, /has exited \(code null, signal SIGKILL\)/);
  assert.ok(!(await c.call('session.list', {})).sessions.some((s) => s.sessionId === sessionId), 'session.list shows live sessions only');
  const recs = (await c.call('audit.query', { sessionId, types: ['session.end'] })).records;
  assert.equal(recs.length, 1);
  assert.equal(recs[0].reason, 'killed');
  assert.equal(recs[0].detail, 'test is done');
});

test('process.start runs argv in the session; its output is replayed to a later attach, then its exit', { timeout: 90_000 }, async () => {
  const sessionId = await newSession();
  const { processId } = await c.call('process.start', { sessionId, argv: ['sh', '-c', 'echo out-line; echo err-line >&2; exit 3'] });
  assert.equal(processId, `${sessionId}.1`);
  // Attach after it exited: replay, then the exit note.
  let info = await c.call('session.get', { sessionId });
  const deadline = Date.now() + 10_000;
  while (info.processes[0].running && Date.now() < deadline) {
    await sleep(20);
    info = await c.call('session.get', { sessionId });
  }
  assert.equal(info.processes[0].running, false);
  assert.equal(info.processes[0].exitCode, 3);
  assert.deepEqual(info.processes[0].argv, ['sh', '-c', 'echo out-line; echo err-line >&2; exit 3']);
  const t = await attachText(c, processId);
  await within(t.a.replayDone, 5000, 'the replay');
  assert.equal(t.out(), 'out-line\n');
  assert.equal(t.err(), 'err-line\n');
  const exit = await within(t.a.exited, 5000, 'the exit note of an exited process');
  assert.deepEqual(exit, { processId, code: 3, signal: null });
  await c.call('session.kill', { sessionId });
});

test('a short command whose exit ended its session (endsSession) can still be attached: its output and exit are not lost', { timeout: 90_000 }, async () => {
  for (let i = 0; i < 5; i++) {
    const sessionId = await newSession();
    const { processId } = await c.call('process.start', { sessionId, argv: ['sh', '-c', `echo quick-${i}; exit ${i}`], endsSession: true });
    // Attach only once the session is over (what a slow client, or `airlock run -- echo`, may do).
    const deadline = Date.now() + 10_000;
    while (await c.call('session.get', { sessionId }).then(() => true, () => false)) {
      assert.ok(Date.now() < deadline, 'the session ended');
      await sleep(10);
    }
    const t = await attachText(c, processId);
    const exit = await within(t.a.exited, 5000, 'the exit note');
    assert.equal(exit.code, i);
    assert.equal(t.out(), `quick-${i}\n`);
  }
});

test('process.start with shell: true runs the interactive shell in a terminal', { timeout: 90_000 }, async () => {
  const sessionId = await newSession();
  const { processId } = await c.call('process.start', { sessionId, shell: true, cols: 90, rows: 20 });
  const t = await attachText(c, processId);
  const info = await c.call('session.get', { sessionId });
  assert.equal(info.processes[0].pty, true, 'shell: true defaults to a PTY');
  assert.deepEqual(info.processes[0].argv, ['/bin/bash', '-i']);
  await c.call('process.input', { processId, data: 'echo shell-says-$((6*7)); stty size\r' });
  await until(() => t.out().includes('shell-says-42') && t.out().includes('20 90'), 10_000, 'the shell to answer');
  await c.call('process.input', { processId, data: 'exit 4\r' });
  assert.equal((await within(t.a.exited, 10_000, 'the shell to exit')).code, 4);
  await c.call('session.kill', { sessionId });
});

test('process.start with both argv and shell, or neither, fails with InvalidParams', { timeout: 90_000 }, async () => {
  const sessionId = await newSession();
  await rpcFails(c.call('process.start', { sessionId, argv: ['true'], shell: true }), ErrorCode.InvalidParams, /^process\.start: give argv or shell: true, not both$/);
  await rpcFails(c.call('process.start', { sessionId }), ErrorCode.InvalidParams, /^process\.start: missing field argv \(or shell: true/);
  await rpcFails(c.call('process.start', { sessionId, argv: [] }), ErrorCode.InvalidParams, /^process\.start: argv: must NOT have fewer than 1 items$/);
  await c.call('session.kill', { sessionId });
});

test('process.start of a command that does not exist fails with SpawnFailed and data.notFound', { timeout: 90_000 }, async () => {
  const sessionId = await newSession();
  const e = await rpcFails(c.call('process.start', { sessionId, argv: ['no-such-command-xyz'] }), ErrorCode.SpawnFailed, /^command not found: no-such-command-xyz$/);
  assert.equal(e.data?.notFound, true);
  assert.equal(e.data?.errno, 2);
  const missingCwd = await rpcFails(c.call('process.start', { sessionId, argv: ['true'], cwd: 'no-such-subdir' }), ErrorCode.SpawnFailed, /no-such-subdir/);
  assert.equal(missingCwd.data?.notFound, false, 'a missing cwd is not "command not found"');
  await c.call('session.kill', { sessionId });
});

test('process.attach of an unknown process fails with ProcessNotFound naming it', { timeout: 90_000 }, async () => {
  const sessionId = await newSession();
  await rpcFails(c.call('process.attach', { processId: `${sessionId}.99` }), ErrorCode.ProcessNotFound, new RegExp(`^process ${sessionId}\\.99 not found in session ${sessionId}$`));
  await rpcFails(c.call('process.attach', { processId: 'nosuchsession.1' }), ErrorCode.SessionNotFound, /session nosuchsession not found/);
  await c.call('session.kill', { sessionId });
});

test('process.attach replays the output so far, then live output follows; a second attach reuses its channel', { timeout: 90_000 }, async () => {
  const sessionId = await newSession();
  const { processId } = await c.call('process.start', { sessionId, argv: ['sh', '-c', 'echo early; read go; echo "late:$go"; sleep 100'] });
  const other = await d.client();
  // Let "early" land in the replay buffer first.
  const probe = await attachText(other, processId);
  await until(() => probe.out().includes('early'), 5000, 'early output');
  const t = await attachText(c, processId);
  await within(t.a.replayDone, 5000, 'the replay');
  assert.equal(t.out(), 'early\n', 'the replay holds the output so far');
  await c.call('process.input', { processId, data: 'now\n' });
  await until(() => t.out() === 'early\nlate:now\n', 5000, 'live output after the replay');
  const again = await c.call('process.attach', { processId });
  assert.deepEqual(again, { channel: t.a.channel, replayBytes: 0, running: true });
  assert.equal((await c.call('session.get', { sessionId })).processes[0].attached, 2);
  other.close();
  await c.call('session.kill', { sessionId });
  const exit = await within(t.a.exited, 5000, 'the exit note after session.kill');
  assert.equal(exit.signal, 'SIGKILL');
  assert.equal(exit.reason, 'session ended: killed');
});

test('process.detach stops the output to this connection while the process keeps running', { timeout: 90_000 }, async () => {
  const sessionId = await newSession();
  const { processId } = await c.call('process.start', { sessionId, argv: ['sh', '-c', 'while :; do echo tick; sleep 0.05; done'] });
  const t = await attachText(c, processId);
  await until(() => t.out().includes('tick'), 5000, 'ticks');
  assert.deepEqual(await c.call('process.detach', { processId }), {});
  await sleep(100); // frames already in flight
  const frozen = t.out().length;
  await sleep(400);
  assert.equal(t.out().length, frozen, 'no output after process.detach');
  const info = await c.call('session.get', { sessionId });
  assert.equal(info.processes[0].running, true);
  assert.equal(info.processes[0].attached, 0);
  assert.deepEqual(await c.call('process.detach', { processId }), {}, 'detaching twice is harmless');
  await c.call('session.kill', { sessionId });
});

test('process.input writes text to stdin and eof closes it', { timeout: 90_000 }, async () => {
  const sessionId = await newSession();
  const { processId } = await c.call('process.start', { sessionId, argv: ['sh', '-c', 'cat; echo "<eof>"'] });
  const t = await attachText(c, processId);
  await c.call('process.input', { processId, data: 'héllo\n' });
  await until(() => t.out() === 'héllo\n', 5000, 'the echo of the input');
  await c.call('process.input', { processId, data: 'last', eof: true });
  assert.equal((await within(t.a.exited, 5000, 'cat to end at eof')).code, 0);
  assert.equal(t.out(), 'héllo\nlast<eof>\n');
  await rpcFails(c.call('process.input', { processId, data: 'x' }), ErrorCode.ProcessNotFound, new RegExp(`^process ${processId.replace('.', '\\.')} has exited \\(code 0, signal null\\)$`));
  await c.call('session.kill', { sessionId });
});

test('process.resize sets the terminal size of a PTY process and refuses a pipe process', { timeout: 90_000 }, async () => {
  const sessionId = await newSession();
  const { processId } = await c.call('process.start', { sessionId, argv: ['sh', '-c', 'stty size; read x; stty size'], pty: true, cols: 80, rows: 24 });
  const t = await attachText(c, processId);
  await until(() => t.out().includes('24 80'), 5000, 'the first size');
  assert.deepEqual(await c.call('process.resize', { processId, cols: 132, rows: 43 }), {});
  await c.call('process.input', { processId, data: '\r' });
  await until(() => t.out().includes('43 132'), 5000, 'the new size');
  const pipe = await c.call('process.start', { sessionId, argv: ['sleep', '100'] });
  await rpcFails(c.call('process.resize', { processId: pipe.processId, cols: 10, rows: 10 }), ErrorCode.InvalidParams, /has no terminal to resize \(started with pty: false\)/);
  await rpcFails(c.call('process.resize', { processId: pipe.processId, cols: 0, rows: 10 }), ErrorCode.InvalidParams, /^process\.resize: cols: must be >= 1$/);
  await c.call('session.kill', { sessionId });
});

test('process.signal SIGINT ends a sleep with signal SIGINT; a bad signal name fails with InvalidParams', { timeout: 90_000 }, async () => {
  const sessionId = await newSession();
  const { processId } = await c.call('process.start', { sessionId, argv: ['sleep', '100'] });
  const t = await attachText(c, processId);
  await rpcFails(c.call('process.signal', { processId, signal: 'SIGBOGUS' }), ErrorCode.InvalidParams, /^process\.signal: unknown signal SIGBOGUS$/);
  await rpcFails(c.call('process.signal', { processId, signal: 'int' }), ErrorCode.InvalidParams, /^process\.signal: signal: must match pattern/);
  assert.deepEqual(await c.call('process.signal', { processId, signal: 'SIGINT' }), {});
  assert.deepEqual(await within(t.a.exited, 5000, 'sleep to die of SIGINT'), { processId, code: null, signal: 'SIGINT' });
  await rpcFails(c.call('process.signal', { processId, signal: 'SIGINT' }), ErrorCode.ProcessNotFound, /has exited/);
  await c.call('session.kill', { sessionId });
});

test('a process can be attached, and its output received, by a client that did not start it', { timeout: 90_000 }, async () => {
  const sessionId = await newSession();
  const { processId } = await c.call('process.start', { sessionId, argv: ['sh', '-c', 'read line; echo "got $line"'] });
  const other = await d.client();
  const t = await attachText(other, processId);
  t.a.write(Buffer.from('via-binary-input\n'));
  assert.equal((await within(t.a.exited, 5000, 'the process to exit')).code, 0);
  assert.equal(t.out(), 'got via-binary-input\n');
  other.close();
  await c.call('session.kill', { sessionId });
});
