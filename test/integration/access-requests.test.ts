/**
 * Access requests through a real daemon, real sandboxes and the `airlock` CLI: a client
 * (the MCP server, for an agent) asks for a host or a secret, a person lists and decides
 * with `airlock requests / approve / deny`, and the sandbox gets exactly that, for that
 * long. At the end of the secret test, every event, record, response and CLI output is
 * searched for the value.
 */
import { after, before, test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { AccessRequest, ErrorCode, RuntimeEvent } from '../../runtime/protocol';
import type { RuntimeClient } from '../../runtime/client/client';
import { AccessRequests } from '../../runtime/daemon/access';
import { readAuditFile } from '../../runtime/audit';
import { DaemonProcess, rpcFails, startDaemonProcess, startInProcessDaemon } from '../helpers/daemon';
import { hostHttpServer } from '../helpers/egress';
import { runCli, tempDir } from '../helpers/sandbox';
import { sleep, until } from '../helpers/integration';

let d: DaemonProcess;
let rt: string;

before(async () => {
  d = await startDaemonProcess();
  rt = path.dirname(path.dirname(d.socket));
});

after(() => d.stop());

const cli = (args: string[], env: NodeJS.ProcessEnv = {}) => runCli(args, { env: { XDG_RUNTIME_DIR: rt, XDG_STATE_HOME: d.state, ...env }, keepDaemon: true });

async function networkSession(c: RuntimeClient): Promise<string> {
  return (await c.call('session.create', { workspace: d.workspace(), policy: { network: { registries: false } } })).sessionId;
}

/** The HTTP status the sandbox gets for URL through its proxy. */
async function status(c: RuntimeClient, sessionId: string, url: string): Promise<string> {
  return (await c.call('exec', { sessionId, argv: ['curl', '-s', '-o', '/dev/null', '-w', '%{http_code}', url] })).stdout;
}

/** The pending request of SESSIONID for TARGET, once it is there (bounded). */
async function pendingFor(c: RuntimeClient, sessionId: string, target: string): Promise<AccessRequest> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    const found = (await c.call('access.list', { sessionId, state: 'pending' })).requests.find((r) => r.target === target);
    if (found) return found;
    if (Date.now() > deadline) throw new Error(`no pending request for ${target} after 10 s`);
    await sleep(20);
  }
}

test('a host request waits for a person: airlock requests lists it, airlock approve --ttl 2 opens the host for 2 s, and the audit log names the approver', async (t) => {
  const srv = await hostHttpServer();
  t.after(() => srv.close());
  const c = await d.client();
  const events: RuntimeEvent[] = [];
  c.on('event', (e: RuntimeEvent) => events.push(e));
  await c.call('events.subscribe', { filter: ['access.*', 'net.rule-added', 'net.rule-expired'] });
  const sessionId = await networkSession(c);
  const url = `http://127.0.0.1:${srv.port}/`;
  const target = `127.0.0.1:${srv.port}`;
  assert.equal(await status(c, sessionId, url), '403');

  // The reason is the agent's text: it may try to drive the person's terminal.
  const reason = 'run the tests against the local API\x1b[2J\x1b]0;owned\x07\u202e';
  const req = await c.call('access.request', { sessionId, kind: 'host', target, reason });
  assert.match(req.requestId, /^[0-9a-f]{16}$/);
  assert.equal(req.state, 'pending');
  assert.equal(req.requestedTtlSeconds, 900);
  assert.match(req.message, new RegExp(`^waiting for a person: they can run 'airlock approve ${req.requestId}'`));
  assert.equal(await status(c, sessionId, url), '403', 'a pending request allows nothing');

  const listed = await cli(['requests']);
  assert.equal(listed.code, 0, listed.stderr);
  const line = listed.stdout.split('\n').find((l) => l.startsWith(req.requestId));
  assert.ok(line, `airlock requests should list ${req.requestId}:\n${listed.stdout}`);
  assert.match(line, new RegExp(`^${req.requestId}\\s+${sessionId}\\s+host\\s+127\\.0\\.0\\.1:${srv.port}\\s+900s\\s+\\d+s\\s+run the tests against the local API\\[2J\\]0;owned$`));
  assert.doesNotMatch(listed.stdout, /[\x00-\x08\x0b-\x1f\x7f\u202e]/, 'no control character reaches the terminal');

  const approved = await cli(['approve', req.requestId, '--ttl', '2']);
  assert.equal(approved.code, 0, approved.stderr);
  assert.match(approved.stdout, new RegExp(`^approved ${req.requestId} \\(host ${target.replace(/\./g, '\\.')}, session ${sessionId}\\) until \\d{4}-`));
  assert.equal(await status(c, sessionId, url), '200');
  const [now] = (await c.call('access.list', { sessionId })).requests;
  assert.equal(now.state, 'approved');
  assert.equal(now.ttlSeconds, 2);
  assert.match(now.decidedBy!, /^airlock approve \(uid \d+\)$/);
  assert.match(now.message, new RegExp(`^approved by airlock approve \\(uid \\d+\\): ${target.replace(/\./g, '\\.')} is reachable until `));

  await until(() => events.some((e) => e.type === 'net.rule-expired'), 10_000, 'the grant to expire');
  assert.equal(await status(c, sessionId, url), '403', 'after its TTL the host is closed again');
  assert.equal(srv.requests.length, 1);

  const { records } = await c.call('audit.query', { sessionId, types: ['access.request', 'access.decide', 'net.rule-added', 'net.rule-expired'] });
  assert.deepEqual(records.map((r) => r.type), ['access.request', 'net.rule-added', 'access.decide', 'net.rule-expired']);
  const [asked, added, decided] = records;
  assert.equal(asked.requestId, req.requestId);
  assert.equal(asked.reason, reason, 'the audit log keeps what the agent wrote');
  assert.match(String(added.by), new RegExp(`^airlock approve \\(uid \\d+\\) \\(access request ${req.requestId}\\)$`));
  assert.equal(added.ttlSeconds, 2);
  assert.deepEqual([decided.approve, decided.ttlSeconds, decided.target], [true, 2, target]);
  assert.match(String(decided.by), /^airlock approve \(uid \d+\)$/);
  assert.deepEqual(events.map((e) => e.type), ['access.request', 'net.rule-added', 'access.decide', 'net.rule-expired']);
  assert.deepEqual([events[0].requestId, events[0].kind, events[0].target, events[0].requestedTtlSeconds], [req.requestId, 'host', target, 900]);
  assert.deepEqual([events[2].approve, events[2].ttlSeconds], [true, 2]);

  assert.match((await cli(['requests', sessionId])).stdout, new RegExp(`^no pending access requests in session ${sessionId}\\n$`));
  assert.match((await cli(['requests', '--all'])).stdout, new RegExp(`${req.requestId}.*approved`));
});

test('a request with waitMs returns as soon as a person approves it, and a wait nobody answers returns it still pending', async () => {
  const asker = await d.client();
  const person = await d.client();
  const sessionId = await networkSession(asker);
  const t0 = Date.now();
  const waiting = asker.call('access.request', { sessionId, kind: 'host', target: 'docs.example.com:443', reason: 'read the docs', waitMs: 120_000 });
  const pending = await pendingFor(person, sessionId, 'docs.example.com:443');
  await person.call('access.decide', { requestId: pending.requestId, approve: true, by: 'a test person' });
  const r = await waiting;
  const took = Date.now() - t0;
  assert.equal(r.requestId, pending.requestId);
  assert.equal(r.state, 'approved');
  assert.match(r.message, /^approved by a test person: docs\.example\.com:443 is reachable until /);
  assert.ok(took < 15_000, `the waiting call took ${took} ms of its 120 000`);

  const t1 = Date.now();
  const unanswered = await asker.call('access.request', { sessionId, kind: 'host', target: 'other.example.com', reason: 'x', waitMs: 300 });
  assert.equal(unanswered.state, 'pending');
  assert.ok(Date.now() - t1 >= 290, 'it waited');
});

test('deny, deciding twice, unknown requests, malformed targets and the 33rd pending request are refused with errors that name the problem', async (t) => {
  const srv = await hostHttpServer();
  t.after(() => srv.close());
  const c = await d.client();
  const sessionId = await networkSession(c);
  const target = `127.0.0.1:${srv.port}`;
  const req = await c.call('access.request', { sessionId, kind: 'host', target, reason: 'x', ttlSeconds: 60 });

  const denied = await cli(['deny', req.requestId, '--reason', 'not today']);
  assert.equal(denied.code, 0, denied.stderr);
  assert.equal(denied.stdout, `denied ${req.requestId} (host ${target}, session ${sessionId})\n`);
  const [r] = (await c.call('access.list', { sessionId })).requests;
  assert.deepEqual([r.state, r.note], ['denied', 'not today']);
  assert.match(r.message, /^denied by airlock deny \(uid \d+\) \("not today"\): nothing was granted/);
  assert.deepEqual((await c.call('network.rules', { sessionId })).rules, [], 'a denial allows nothing');
  assert.equal(await status(c, sessionId, `http://${target}/`), '403');

  await rpcFails(c.call('access.decide', { requestId: req.requestId, approve: true }), ErrorCode.InvalidParams, new RegExp(`^access request ${req.requestId} is already denied \\(by airlock deny \\(uid \\d+\\), `));
  const again = await cli(['approve', req.requestId]);
  assert.notEqual(again.code, 0);
  assert.match(again.stderr, /is already denied/);
  await rpcFails(c.call('access.decide', { requestId: '0123456789abcdef', approve: true }), ErrorCode.InvalidParams, /^access request 0123456789abcdef not found: 'airlock requests --all' lists/);
  const unknown = await cli(['deny', 'feedfacefeedface']);
  assert.notEqual(unknown.code, 0);
  assert.match(unknown.stderr, /access request feedfacefeedface not found/);

  await rpcFails(c.call('access.request', { sessionId, kind: 'host', target: 'exa mple.com', reason: 'x' }), ErrorCode.InvalidParams, /^access\.request: target: network rule "exa mple\.com" is not valid/);
  await rpcFails(c.call('access.request', { sessionId, kind: 'host', target: '*', reason: 'x' }), ErrorCode.InvalidParams, /bare "\*"/);
  await rpcFails(c.call('access.request', { sessionId, kind: 'secret', target: 'NOT A NAME', reason: 'x' }), ErrorCode.InvalidParams, /invalid secret name "NOT A NAME"/);
  await rpcFails(c.call('access.request', { sessionId, kind: 'host', target: 'example.com', reason: '' }), ErrorCode.InvalidParams, /^access\.request: reason: /);
  await rpcFails(c.call('access.request', { sessionId, kind: 'host', target: 'example.com', reason: 'x', ttlSeconds: 86401 }), ErrorCode.InvalidParams, /ttlSeconds: must be <= 86400/);
  // Nothing a requester sends can approve: there is no such field.
  await rpcFails(c.call('access.request', { sessionId, kind: 'host', target: 'example.com', reason: 'x', approve: true } as never), ErrorCode.InvalidParams, /unknown field approve/);
  await rpcFails(c.call('access.request', { sessionId: 'nosuchsession', kind: 'host', target: 'example.com', reason: 'x' }), ErrorCode.SessionNotFound, /session nosuchsession not found/);
  const offline = (await c.call('session.create', { workspace: d.workspace(), policy: { network: { mode: 'none' } } })).sessionId;
  await rpcFails(c.call('access.request', { sessionId: offline, kind: 'host', target: 'example.com', reason: 'x' }), ErrorCode.InvalidParams, /has no network \(network\.mode is 'none'\)/);

  const ids: string[] = [];
  for (let i = 0; i < 32; i++) ids.push((await c.call('access.request', { sessionId, kind: 'host', target: `h${i}.example.com`, reason: `try ${i}` })).requestId);
  assert.equal((await c.call('access.request', { sessionId, kind: 'host', target: 'h7.example.com', reason: 'again' })).requestId, ids[7], 'the same target returns the pending request');
  await rpcFails(c.call('access.request', { sessionId, kind: 'host', target: 'h32.example.com', reason: 'x' }), ErrorCode.LimitExceeded, new RegExp(`^session ${sessionId} already has 32 pending access requests: a person must decide some first`));
  const wrongFlags = await cli(['approve', ids[0], '--mode', 'file']);
  assert.equal(wrongFlags.code, 2);
  assert.match(wrongFlags.stderr, /asks for a host \(h0\.example\.com\); --mode, --host and --from-file are for secret requests/);
  assert.equal((await cli(['requests', sessionId])).stdout.split('\n').filter((l) => /^[0-9a-f]{16} /.test(l)).length, 32);
});

test('a pending request nobody decides expires (a short expiry injected into a store), and a session that ends returns its waiting requests as expired', async (t) => {
  const ip = await startInProcessDaemon();
  t.after(() => ip.stop());
  const c = await ip.client();
  const events: RuntimeEvent[] = [];
  c.on('event', (e: RuntimeEvent) => events.push(e));
  await c.call('events.subscribe', { filter: ['access.*'] });
  const { sessionId } = await c.call('session.create', { workspace: ip.workspace(), policy: { network: { registries: false } } });

  const store = new AccessRequests(ip.server.registry, { pendingMs: 300 });
  t.after(() => store.dispose());
  const t0 = Date.now();
  const r = await store.request({ sessionId, kind: 'host', target: 'example.com', reason: 'x', waitMs: 30_000 });
  assert.equal(r.state, 'expired');
  assert.ok(Date.now() - t0 >= 290 && Date.now() - t0 < 10_000, `expired after ${Date.now() - t0} ms`);
  assert.match(r.message, /^nobody decided within 300 ms: nothing was granted; ask again if it is still needed$/);
  await rpcFails(store.decide({ requestId: r.requestId, approve: true }), ErrorCode.InvalidParams, /is already expired/);
  await until(() => events.some((e) => e.type === 'access.expire'), 5000, 'the access.expire event');
  const records = readAuditFile(ip.auditFile).records.filter((x) => x.session === sessionId && x.type.startsWith('access.'));
  assert.deepEqual(records.map((x) => [x.type, x.requestId, x.target]), [['access.request', r.requestId, 'example.com'], ['access.expire', r.requestId, 'example.com']]);
  assert.deepEqual(store.held, { timers: 0, waiters: 0 });

  const waiting = c.call('access.request', { sessionId, kind: 'secret', target: 'DEPLOY_TOKEN', reason: 'deploy', waitMs: 120_000 });
  const pending = await pendingFor(await ip.client(), sessionId, 'DEPLOY_TOKEN');
  await (await ip.client()).call('session.kill', { sessionId });
  const ended = await waiting;
  assert.equal(ended.requestId, pending.requestId);
  assert.equal(ended.state, 'expired');
  assert.match(ended.message, /^the session ended \(killed\) before a person decided: nothing was granted$/);
  assert.deepEqual(ip.server.registry.access.held, { timers: 0, waiters: 0 });
  assert.deepEqual((await c.call('access.list', { sessionId })).requests.map((x) => x.state), ['expired'], 'ended sessions\' requests are still listed');
  await rpcFails(c.call('access.request', { sessionId, kind: 'host', target: 'example.com', reason: 'x' }), ErrorCode.SessionEnded, /has ended/);
});

test('a secret request approved with the value from the approver\'s shell reaches new processes redacted, and the value is in no event, record, response or output', async () => {
  const c = await d.client();
  const events: RuntimeEvent[] = [];
  c.on('event', (e: RuntimeEvent) => events.push(e));
  await c.call('events.subscribe', { filter: ['*'] });
  const responses: unknown[] = [];
  const outputs: string[] = [];
  const call: RuntimeClient['call'] = async (m, p) => {
    const r = await c.call(m, p);
    responses.push(r);
    return r;
  };
  const run = async (args: string[], env: NodeJS.ProcessEnv = {}) => {
    const r = await cli(args, env);
    outputs.push(r.stdout, r.stderr);
    return r;
  };
  // Names no real shell has set: the CLI reads the value from the variable of that name.
  const name = `AIRLOCK_TEST_TOKEN_${crypto.randomBytes(4).toString('hex').toUpperCase()}`;
  const fileName = `${name}_FILE`;
  const value = `fake-${crypto.randomBytes(16).toString('hex')}`;
  const fileValue = `fake-file-${crypto.randomBytes(16).toString('hex')}`;
  const { sessionId } = await call('session.create', { workspace: d.workspace(), policy: { network: { registries: false } } });

  const req = await call('access.request', { sessionId, kind: 'secret', target: name, reason: 'call the staging API', ttlSeconds: 600 });
  await rpcFails(c.call('access.decide', { requestId: req.requestId, approve: true }), ErrorCode.InvalidParams, new RegExp(`asks for the secret ${name}: approving it needs the value from the person's client`));
  const unset = await run(['approve', req.requestId]);
  assert.equal(unset.code, 2);
  assert.match(unset.stderr, new RegExp(`the request asks for the secret ${name}, and the variable ${name} is not set in this shell \\(export it, or give --from-file FILE\\)`));
  assert.equal((await call('access.list', { sessionId })).requests[0].state, 'pending', 'a failed approval leaves it pending');

  const ok = await run(['approve', req.requestId], { [name]: value });
  assert.equal(ok.code, 0, ok.stderr);
  const seen = await call('exec', { sessionId, argv: ['sh', '-c', `echo "$${name}"; printf %s "$${name}" | wc -c`] });
  assert.equal(seen.stdout, `[REDACTED:${name}]\n${value.length}\n`);
  const [approved] = (await call('access.list', { sessionId })).requests;
  assert.equal(approved.state, 'approved');
  assert.equal(approved.ttlSeconds, 600);
  assert.match(approved.message, new RegExp(`^approved by airlock approve \\(uid \\d+\\): the secret ${name} is in the environment of processes started from now on`));
  assert.deepEqual((await call('secret.list', { sessionId })).secrets.map((s) => [s.name, s.mode]), [[name, 'env']]);

  const dir = tempDir();
  fs.writeFileSync(path.join(dir, 'value'), fileValue + '\n', { mode: 0o600 });
  const fileReq = await call('access.request', { sessionId, kind: 'secret', target: fileName, reason: 'read a key file' });
  const fromFile = await run(['approve', fileReq.requestId, '--mode', 'file', '--from-file', path.join(dir, 'value'), '--ttl', '120']);
  fs.rmSync(dir, { recursive: true });
  assert.equal(fromFile.code, 0, fromFile.stderr);
  const cat = await call('exec', { sessionId, argv: ['cat', `/run/airlock/secrets/${fileName}`] });
  // A file secret keeps the file's trailing newline (as `airlock secret grant --mode file`): it is part of the value.
  assert.equal(cat.stdout, `[REDACTED:${fileName}]`);

  const { records } = await call('audit.query', { sessionId, types: ['access.request', 'access.decide', 'secret.grant'] });
  assert.deepEqual(records.map((r) => r.type), ['access.request', 'secret.grant', 'access.decide', 'access.request', 'secret.grant', 'access.decide']);
  assert.match(String(records[1].by), new RegExp(`^airlock approve \\(uid \\d+\\) \\(access request ${req.requestId}\\)$`));
  assert.deepEqual([records[5].mode, records[5].ttlSeconds], ['file', 120]);

  await until(() => events.filter((e) => e.type === 'access.decide').length === 2, 5000, 'both access.decide events');
  const b64 = (v: string): string => Buffer.from(v).toString('base64').replace(/=+$/, '');
  const hex = (v: string): string => Buffer.from(v).toString('hex');
  const places: [string, string][] = [
    ['the audit log', fs.readFileSync(d.auditFile, 'utf8')],
    ['the events', JSON.stringify(events)],
    ['the responses', JSON.stringify(responses)],
    ['the CLI output', outputs.join('\n')],
    ['the daemon log', fs.readFileSync(d.log, 'utf8')],
  ];
  for (const v of [value, fileValue]) {
    for (const form of [v, b64(v), hex(v)]) {
      for (const [where, text] of places) assert.ok(!text.includes(form), `a form of a granted value is in ${where}`);
    }
  }
});
