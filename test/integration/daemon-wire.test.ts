/**
 * The wire format, seen with no library: `bin/airlock serve --socket PATH` (started
 * detached, as a user would, and stopped by the pid in PATH.pid) and a plain `ws`
 * client writing JSON-RPC text frames by hand and reading binary frames byte by byte.
 */
import { after, before, test } from 'node:test';
import * as assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { verifyAuditFile } from '../../runtime/audit';
import { RawClient, Wire } from '../helpers/daemon';
import { sleep, until } from '../helpers/integration';
import { AIRLOCK_BIN, tempDir } from '../helpers/sandbox';

let root: string;
let socket: string;
let state: string;
let pid: number;
let raw: RawClient;
let workspace: string;

before(async () => {
  root = tempDir('airlock-wire-');
  socket = path.join(root, 'x', 'runtime.sock');
  state = path.join(root, 'state');
  workspace = path.join(root, 'ws');
  fs.mkdirSync(workspace);
  const r = spawnSync(process.execPath, [AIRLOCK_BIN, 'serve', '--socket', socket, '--idle-exit', '120'], {
    env: { ...process.env, XDG_STATE_HOME: state, XDG_RUNTIME_DIR: path.join(root, 'rt') },
    encoding: 'utf8',
    timeout: 30_000,
  });
  assert.equal(r.status, 0, r.stderr);
  pid = Number(fs.readFileSync(socket + '.pid', 'utf8'));
  assert.match(r.stdout, new RegExp(`^airlock daemon running \\(pid ${pid}\\) on ${socket.replace(/[.]/g, '\\.')}; log: `));
  raw = await RawClient.open(socket);
}, { timeout: 60_000 });

after(async () => {
  raw?.close();
  if (pid) {
    try {
      process.kill(pid, 'SIGTERM');
      await until(() => !fs.existsSync(`/proc/${pid}`), 20_000, `daemon ${pid} to exit`);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ESRCH') throw e;
    }
  }
  fs.rmSync(root, { recursive: true, force: true });
}, { timeout: 60_000 });

test('the socket directory is private and the daemon writes its pid beside the socket', () => {
  assert.equal(fs.statSync(path.dirname(socket)).mode & 0o777, 0o700);
  assert.equal(fs.statSync(socket).mode & 0o777, 0o600);
  assert.ok(fs.statSync(socket).isSocket());
  assert.equal(fs.statSync(socket + '.pid').mode & 0o777, 0o600);
});

test('runtime.info, session.create and exec work as raw JSON-RPC text frames', { timeout: 90_000 }, async () => {
  raw.sendText('{"jsonrpc":"2.0","id":1,"method":"runtime.info","params":{}}');
  const info = await raw.response(1);
  assert.equal(info.jsonrpc, '2.0');
  const r = info.result as Record<string, unknown>;
  assert.equal(r.pid, pid);
  assert.equal(r.protocol, 1);
  assert.match(String(r.version), /^\d+\.\d+\.\d+/);
  assert.deepEqual(r.drivers, [{ name: 'bwrap', available: true }]);
  assert.ok(Array.isArray(r.limits) && r.limits.length > 0);

  raw.sendText(JSON.stringify({ jsonrpc: '2.0', id: 'create-1', method: 'session.create', params: { workspace } }));
  const created = await raw.response('create-1', 30_000);
  const sessionId = (created.result as { sessionId: string }).sessionId;
  assert.match(sessionId, /^[0-9a-f]{16}$/);

  raw.sendText(JSON.stringify({ jsonrpc: '2.0', id: 3, method: 'exec', params: { sessionId, argv: ['sh', '-c', 'echo hi; echo oops >&2; exit 5'] } }));
  const ex = (await raw.response(3)).result as Record<string, unknown>;
  assert.deepEqual({ ...ex, durationMs: 0 }, { exitCode: 5, signal: null, stdout: 'hi\n', stderr: 'oops\n', truncated: false, omittedBytes: { stdout: 0, stderr: 0 }, timedOut: false, durationMs: 0 });
  assert.deepEqual((await raw.call('session.kill', { sessionId })).warnings, []);
});

test('process output arrives as binary frames: kind byte, u32 LE channel, raw payload, then ReplayEnd', { timeout: 90_000 }, async () => {
  const { sessionId } = (await raw.call('session.create', { workspace })) as { sessionId: string };
  const { processId } = (await raw.call('process.start', { sessionId, argv: ['sh', '-c', 'echo first; cat; echo after-eof'] })) as { processId: string };
  await sleep(200); // "first" lands in the replay buffer
  const before = raw.binaries.length;
  const att = (await raw.call('process.attach', { processId })) as { channel: number; replayBytes: number; running: boolean };
  assert.deepEqual(att, { channel: att.channel, replayBytes: 6, running: true });
  const frames = () => raw.binaries.slice(before).map((b) => ({ kind: b[0], channel: b.readUInt32LE(1), payload: b.subarray(5).toString('utf8') }));
  await raw.waitUntil(() => (frames().some((f) => f.kind === 5) ? true : undefined), 5000, 'ReplayEnd');
  assert.deepEqual(frames(), [
    { kind: 1, channel: att.channel, payload: 'first\n' },
    { kind: 5, channel: att.channel, payload: '' },
  ]);
  // Input as a binary frame (kind 2): the daemon answers with InputAck (kind 6, u32 bytes taken).
  const input = Buffer.from('typed\n');
  const head = Buffer.alloc(5);
  head.writeUInt8(2, 0);
  head.writeUInt32LE(att.channel, 1);
  raw.sendBinary(Buffer.concat([head, input]));
  await raw.waitUntil(() => (frames().some((f) => f.kind === 1 && f.payload === 'typed\n') ? true : undefined), 5000, 'the echo of binary input');
  const acks = raw.binaries.slice(before).filter((b) => b[0] === 6);
  assert.ok(acks.length >= 1);
  assert.equal(acks.reduce((n, b) => n + b.readUInt32LE(5), 0), input.length, 'InputAck counts the bytes the process took');
  // An Ack frame (kind 3, u32 bytes consumed) is accepted silently.
  const ack = Buffer.alloc(9);
  ack.writeUInt8(3, 0);
  ack.writeUInt32LE(att.channel, 1);
  ack.writeUInt32LE(12, 5);
  raw.sendBinary(ack);
  await raw.call('process.input', { processId, eof: true });
  const exit = await raw.waitUntil(() => raw.texts.find((m) => m.method === 'process.exit'), 5000, 'the process.exit notification');
  assert.deepEqual(exit, { jsonrpc: '2.0', method: 'process.exit', params: { processId, code: 0, signal: null } });
  assert.ok(frames().some((f) => f.kind === 1 && f.payload === 'after-eof\n'));
  await raw.call('session.kill', { sessionId });
});

test('events arrive as "event" notifications in raw JSON', { timeout: 90_000 }, async () => {
  assert.deepEqual(await raw.call('events.subscribe', { filter: ['session.start'] }), {});
  const { sessionId } = (await raw.call('session.create', { workspace, label: 'wire' })) as { sessionId: string };
  const ev = await raw.waitUntil(() => raw.texts.find((m) => m.method === 'event' && (m.params as Record<string, unknown>).sessionId === sessionId), 5000, 'the session.start event');
  assert.equal(ev.id, undefined, 'a notification has no id');
  const p = ev.params as Record<string, unknown>;
  assert.deepEqual({ ...p, ts: 'T' }, { type: 'session.start', ts: 'T', sessionId, workspace, driver: 'bwrap', label: 'wire' });
  await raw.call('events.unsubscribe', {});
  await raw.call('session.kill', { sessionId });
});

/** Sends TEXT and returns the next error response (by id, or the next with id null). */
async function errorFor(text: string, id: unknown): Promise<Wire> {
  const from = raw.texts.length;
  raw.sendText(text);
  return raw.waitUntil(() => raw.texts.slice(from).find((m) => m.id === id && m.error), 5000, `the error answer to ${text.slice(0, 60)}`);
}

test('text that is not JSON is answered with ParseError -32700 and id null', { timeout: 90_000 }, async () => {
  const r = await errorFor('{"jsonrpc":"2.0","id":9,"method":', null);
  assert.equal(r.jsonrpc, '2.0');
  assert.equal(r.error!.code, -32700);
  assert.match(r.error!.message, /^parse error: not JSON/);
  assert.equal((await errorFor('\u0000\u00ff garbage', null)).error!.code, -32700);
});

test('JSON that is not a JSON-RPC 2.0 request is answered with InvalidRequest -32600', { timeout: 90_000 }, async () => {
  const obj = await errorFor('{"hello":"world"}', null);
  assert.equal(obj.error!.code, -32600);
  assert.match(obj.error!.message, /^invalid request: expected a JSON-RPC 2\.0 message/);
  assert.equal((await errorFor('{"jsonrpc":"1.0","id":4,"method":"runtime.info"}', 4)).error!.code, -32600);
  assert.equal((await errorFor('{"jsonrpc":"2.0","id":5,"method":"runtime.info","params":7}', 5)).error!.code, -32600);
  assert.equal((await errorFor('{"jsonrpc":"2.0","id":{"x":1},"method":"runtime.info"}', null)).error!.code, -32600);
  assert.equal((await errorFor('[{"jsonrpc":"2.0","id":6,"method":"runtime.info"}]', null)).error!.code, -32600, 'batches are not supported');
  assert.equal((await errorFor('42', null)).error!.code, -32600);
});

test('an unknown method is answered with MethodNotFound -32601 naming it', { timeout: 90_000 }, async () => {
  const r = await raw.request('no.such.method', {});
  assert.equal(r.error!.code, -32601);
  assert.match(r.error!.message, /^unknown method "no\.such\.method" \(methods: /);
});

test('params of the wrong type are answered with InvalidParams -32602 naming the field', { timeout: 90_000 }, async () => {
  const r = await raw.request('session.create', { workspace: 42 });
  assert.equal(r.error!.code, -32602);
  assert.equal(r.error!.message, 'session.create: workspace: must be string');
  const extra = await raw.request('session.list', { verbose: true });
  assert.equal(extra.error!.message, 'session.list: params: unknown field verbose');
});

test('a notification (no id) gets no answer; the connection keeps working', { timeout: 90_000 }, async () => {
  const from = raw.texts.length;
  raw.sendText('{"jsonrpc":"2.0","method":"runtime.info","params":{}}');
  raw.sendText('{"jsonrpc":"2.0","method":"no.such.notification"}');
  const r = await raw.request('runtime.info', {});
  assert.equal((r.result as Record<string, unknown>).pid, pid);
  assert.deepEqual(raw.texts.slice(from).map((m) => m.id), [r.id], 'only the request was answered');
});

test('a $/cancelRequest naming no request, or any other library notification, neither stops the daemon nor gets an answer', { timeout: 90_000 }, async () => {
  const from = raw.texts.length;
  for (const text of [
    '{"jsonrpc":"2.0","method":"$/cancelRequest"}',
    '{"jsonrpc":"2.0","method":"$/cancelRequest","params":{}}',
    '{"jsonrpc":"2.0","method":"$/cancelRequest","params":{"id":{"x":1}}}',
    '{"jsonrpc":"2.0","method":"$/cancelRequest","params":{"id":12345}}',
    '{"jsonrpc":"2.0","method":"$/setTrace","params":{}}',
    '{"jsonrpc":"2.0","method":"$/progress","params":{"token":null}}',
    '{"jsonrpc":"2.0","id":77,"result":{}}',
    '{"jsonrpc":"2.0","id":null,"error":{"code":1,"message":"x"}}',
  ]) raw.sendText(text);
  const r = await raw.request('runtime.info', {});
  assert.equal((r.result as Record<string, unknown>).pid, pid, 'the daemon still answers');
  assert.ok(fs.existsSync(`/proc/${pid}`));
  assert.deepEqual(raw.texts.slice(from).map((m) => m.id), [r.id], 'notifications and stray responses are not answered');
});

test('stopping the daemon by its pid ends its sessions, removes its socket and leaves a valid audit log', { timeout: 90_000 }, async () => {
  const { sessionId } = (await raw.call('session.create', { workspace })) as { sessionId: string };
  process.kill(pid, 'SIGTERM');
  await until(() => !fs.existsSync(`/proc/${pid}`), 20_000, 'the daemon to exit');
  assert.ok(!fs.existsSync(socket), 'the socket is removed');
  assert.ok(!fs.existsSync(socket + '.pid'), 'the pid file is removed');
  const file = path.join(state, 'airlock', 'audit.jsonl');
  const v = verifyAuditFile(file);
  assert.equal(v.ok, true, JSON.stringify(v.firstBad));
  const end = fs.readFileSync(file, 'utf8').trimEnd().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>).find((x) => x.session === sessionId && x.type === 'session.end');
  assert.equal(end?.reason, 'killed');
  assert.match(String(end?.detail), /^the runtime stopped: received SIGTERM$/);
  pid = 0;
});
