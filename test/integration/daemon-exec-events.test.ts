/**
 * `exec`, `events.subscribe`/`events.unsubscribe` and `audit.query` over a real unix
 * socket to a daemon serving REAL sandboxes, through RuntimeClient; and how the
 * daemon answers requests it cannot serve (unknown method, params of the wrong type).
 */
import { after, before, test } from 'node:test';
import * as assert from 'node:assert/strict';
import type { RuntimeClient } from '../../runtime/client/client';
import { ErrorCode, RuntimeEvent } from '../../runtime/protocol';
import { InProcessDaemon, rpcFails, startInProcessDaemon } from '../helpers/daemon';
import { sleep, until } from '../helpers/integration';

let d: InProcessDaemon;
let c: RuntimeClient;
let sessionId: string;
before(async () => {
  d = await startInProcessDaemon();
  c = await d.client();
  sessionId = (await c.call('session.create', { workspace: d.workspace() })).sessionId;
}, { timeout: 60_000 });
after(() => d.stop(), { timeout: 60_000 });

test('exec returns the exit code with stdout and stderr kept apart', { timeout: 90_000 }, async () => {
  const r = await c.call('exec', { sessionId, argv: ['sh', '-c', 'echo to-out; echo to-err >&2; exit 7'] });
  assert.equal(r.exitCode, 7);
  assert.equal(r.signal, null);
  assert.equal(r.stdout, 'to-out\n');
  assert.equal(r.stderr, 'to-err\n');
  assert.equal(r.truncated, false);
  assert.equal(r.timedOut, false);
  assert.ok(r.durationMs >= 0 && r.durationMs < 10_000);
});

test('exec caps each stream at maxOutputBytes, keeping its head and tail around a note, and says truncated', { timeout: 90_000 }, async () => {
  const r = await c.call('exec', { sessionId, argv: ['sh', '-c', 'head -c 100000 /dev/zero | tr "\\0" a; echo bbbbbbbbbb >&2'], maxOutputBytes: 1000 });
  assert.equal(r.exitCode, 0);
  assert.match(r.stdout, /^a{500}\n\[airlock: 99000 bytes left out; the full output is in \/tmp\/airlock-output\/exec-\d+\.stdout inside the sandbox\]\na{500}$/);
  assert.deepEqual(r.omittedBytes, { stdout: 99000, stderr: 0 });
  assert.match(r.fullOutput?.stdout ?? '', /^\/tmp\/airlock-output\/exec-\d+\.stdout$/);
  assert.equal(r.stderr, 'bbbbbbbbbb\n', 'stderr under the cap is whole');
  assert.equal(r.truncated, true);
  const whole = await c.call('exec', { sessionId, argv: ['printf', '12345'], maxOutputBytes: 5 });
  assert.deepEqual([whole.stdout, whole.truncated], ['12345', false], 'exactly the cap is not truncated');
  const none = await c.call('exec', { sessionId, argv: ['printf', 'x'], maxOutputBytes: 0 });
  assert.deepEqual([none.stdout.trim().replace(/exec-\d+/, 'exec-N'), none.truncated], ['[airlock: 1 byte left out; the full output is in /tmp/airlock-output/exec-N.stdout inside the sandbox]', true]);
});

test('exec kills a command that outlives timeoutMs: timedOut with signal SIGKILL', { timeout: 90_000 }, async () => {
  const started = Date.now();
  const r = await c.call('exec', { sessionId, argv: ['sleep', '30'], timeoutMs: 300 });
  assert.equal(r.timedOut, true);
  assert.equal(r.signal, 'SIGKILL');
  assert.equal(r.exitCode, null);
  assert.ok(Date.now() - started < 5000, 'it returned soon after the timeout');
});

test('exec feeds stdin to the command and closes it', { timeout: 90_000 }, async () => {
  const r = await c.call('exec', { sessionId, argv: ['sh', '-c', 'tr a-z A-Z; echo done'], stdin: 'hello sandbox\n' });
  assert.equal(r.exitCode, 0);
  assert.equal(r.stdout, 'HELLO SANDBOX\ndone\n');
  const empty = await c.call('exec', { sessionId, argv: ['wc', '-c'] });
  assert.equal(empty.stdout.trim(), '0', 'without stdin the command reads EOF at once');
});

test('exec errors: a missing command is SpawnFailed, bad params are InvalidParams naming the field', { timeout: 90_000 }, async () => {
  const e = await rpcFails(c.call('exec', { sessionId, argv: ['no-such-cmd-xyz'] }), ErrorCode.SpawnFailed, /^command not found: no-such-cmd-xyz$/);
  assert.equal(e.data?.notFound, true);
  await rpcFails(c.call('exec', { sessionId, argv: ['true'], timeoutMs: 0 }), ErrorCode.InvalidParams, /^exec: timeoutMs: must be >= 1$/);
  await rpcFails(c.call('exec', { sessionId, argv: 'true' } as never), ErrorCode.InvalidParams, /^exec: argv: must be array$/);
  await rpcFails(c.call('exec', { sessionId, argv: ['true', 5] } as never), ErrorCode.InvalidParams, /^exec: argv\.1: must be string$/);
  await rpcFails(c.call('exec', { sessionId: 'feedfacefeedface', argv: ['true'] }), ErrorCode.SessionNotFound, /not found/);
});

test('events.subscribe with session.* delivers session.start and session.end but no process events; unsubscribe stops them', { timeout: 90_000 }, async () => {
  const watcher = await d.client();
  const seen: RuntimeEvent[] = [];
  watcher.on('event', (e) => seen.push(e));
  assert.deepEqual(await watcher.call('events.subscribe', { filter: ['session.*'] }), {});
  const ws = d.workspace();
  const s = (await c.call('session.create', { workspace: ws, label: 'watched' })).sessionId;
  await c.call('exec', { sessionId: s, argv: ['true'] });
  await c.call('session.kill', { sessionId: s, reason: 'watched enough' });
  await until(() => seen.some((e) => e.type === 'session.end' && e.sessionId === s), 5000, 'the session.end event');
  await sleep(100);
  const mine = seen.filter((e) => e.sessionId === s);
  assert.deepEqual(mine.map((e) => e.type), ['session.start', 'session.end']);
  assert.equal(mine[0].workspace, ws);
  assert.equal(mine[0].label, 'watched');
  assert.equal(mine[1].reason, 'killed');
  assert.equal(mine[1].detail, 'watched enough');
  assert.ok(!Number.isNaN(Date.parse(mine[0].ts)));

  assert.deepEqual(await watcher.call('events.unsubscribe', {}), {});
  const count = seen.length;
  const s2 = (await c.call('session.create', { workspace: d.workspace() })).sessionId;
  await c.call('session.kill', { sessionId: s2 });
  await sleep(200);
  assert.equal(seen.length, count, 'no events after events.unsubscribe');
  watcher.close();
});

test('events.subscribe with process.exit delivers process exits only; the default is every event', { timeout: 90_000 }, async () => {
  const narrow = await d.client();
  const wide = await d.client();
  const n: RuntimeEvent[] = [];
  const w: RuntimeEvent[] = [];
  narrow.on('event', (e) => n.push(e));
  wide.on('event', (e) => w.push(e));
  await narrow.call('events.subscribe', { filter: ['process.exit'] });
  await wide.call('events.subscribe', {});
  const s = (await c.call('session.create', { workspace: d.workspace() })).sessionId;
  const { processId } = await c.call('process.start', { sessionId: s, argv: ['sh', '-c', 'exit 2'] });
  await until(() => n.some((e) => e.type === 'process.exit'), 5000, 'the process.exit event');
  await c.call('session.kill', { sessionId: s });
  await until(() => w.some((e) => e.type === 'session.end' && e.sessionId === s), 5000, 'session.end to the wide subscriber');
  await sleep(100);
  assert.deepEqual(n.filter((e) => e.sessionId === s).map((e) => [e.type, e.processId, e.code, e.signal]), [['process.exit', processId, 2, null]]);
  assert.deepEqual(w.filter((e) => e.sessionId === s).map((e) => e.type), ['session.start', 'process.start', 'process.exit', 'session.end']);
  assert.deepEqual(w.find((e) => e.type === 'process.start')?.argv, ['sh', '-c', 'exit 2']);
  await rpcFails(narrow.call('events.subscribe', { filter: ['Session.Start'] }), ErrorCode.InvalidParams, /^events\.subscribe: filter\.0: must match pattern/);
  narrow.close();
  wide.close();
});

test('audit.query returns records by session, by types and at most limit of the newest', { timeout: 90_000 }, async () => {
  const s = (await c.call('session.create', { workspace: d.workspace() })).sessionId;
  for (let i = 0; i < 3; i++) await c.call('exec', { sessionId: s, argv: ['sh', '-c', `exit ${i}`] });
  await c.call('session.kill', { sessionId: s, reason: 'audit test' });
  const all = (await c.call('audit.query', { sessionId: s })).records;
  assert.deepEqual(all.map((r) => r.type), ['session.start', 'process.start', 'process.exit', 'process.start', 'process.exit', 'process.start', 'process.exit', 'session.end']);
  assert.ok(all.every((r) => r.session === s));
  const exits = (await c.call('audit.query', { sessionId: s, types: ['process.exit'] })).records;
  assert.deepEqual(exits.map((r) => r.code), [0, 1, 2]);
  const two = (await c.call('audit.query', { sessionId: s, types: ['process.exit', 'session.end'], limit: 2 })).records;
  assert.deepEqual(two.map((r) => r.type), ['process.exit', 'session.end'], 'the newest two, oldest first');
  assert.equal(two[0].code, 2);
  const everything = (await c.call('audit.query', {})).records;
  assert.ok(new Set(everything.map((r) => r.session)).size > 1, 'without sessionId: every session');
  await rpcFails(c.call('audit.query', { limit: 0 }), ErrorCode.InvalidParams, /^audit\.query: limit: must be >= 1$/);
});

test('an unknown method fails with MethodNotFound naming it', { timeout: 90_000 }, async () => {
  await rpcFails(c.call('session.destroy' as never, {} as never), ErrorCode.MethodNotFound, /^unknown method "session\.destroy" \(methods: runtime\.info, session\.create, /);
});

test('params of the wrong type fail with InvalidParams naming the field', { timeout: 90_000 }, async () => {
  await rpcFails(c.call('session.get', { sessionId: 5 } as never), ErrorCode.InvalidParams, /^session\.get: sessionId: must be string$/);
  await rpcFails(c.call('process.start', { sessionId, argv: ['true'], cols: 'wide' } as never), ErrorCode.InvalidParams, /^process\.start: cols: must be integer$/);
  await rpcFails(c.call('session.create', { workspace: '/tmp', endOnDisconnect: 'yes' } as never), ErrorCode.InvalidParams, /^session\.create: endOnDisconnect: must be boolean$/);
  await rpcFails(c.call('session.get', { sessionId: '../etc' }), ErrorCode.InvalidParams, /^session\.get: sessionId: must match pattern/);
});
