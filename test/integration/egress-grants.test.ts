/**
 * Network grants through the daemon, as a person makes them: `airlock allow` and the
 * network.allow / network.rules methods on a live session, with the net.* events a
 * client (the panel, later) sees live and the errors for bad input.
 */
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as path from 'node:path';
import { ErrorCode, RpcError, RuntimeEvent } from '../../runtime/protocol';
import { startDaemonProcess } from '../helpers/daemon';
import { hostHttpServer } from '../helpers/egress';
import { runCli } from '../helpers/sandbox';
import { until } from '../helpers/integration';

test('airlock allow grants a live session a host for a while; the grant, both attempts and the rule list are visible to clients', async (t) => {
  const srv = await hostHttpServer();
  t.after(() => srv.close());
  const d = await startDaemonProcess();
  t.after(() => d.stop());
  const c = await d.client();
  const events: RuntimeEvent[] = [];
  c.on('event', (e: RuntimeEvent) => events.push(e));
  await c.call('events.subscribe', { filter: ['net.*'] });
  const { sessionId } = await c.call('session.create', { workspace: d.workspace(), policy: { network: { registries: false } } });
  const curl = async (): Promise<string> => (await c.call('exec', { sessionId, argv: ['curl', '-s', '-o', '/dev/null', '-w', '%{http_code}', `http://127.0.0.1:${srv.port}/`] })).stdout;
  assert.equal(await curl(), '403');

  const cliEnv = { XDG_RUNTIME_DIR: path.dirname(path.dirname(d.socket)) };
  const granted = await runCli(['allow', sessionId, `127.0.0.1:${srv.port}`, '--ttl', '60'], { env: cliEnv, keepDaemon: true });
  assert.equal(granted.code, 0, granted.stderr);
  assert.match(granted.stdout, new RegExp(`^session ${sessionId} may reach 127\\.0\\.0\\.1:${srv.port} until \\d{4}-`));
  assert.equal(await curl(), '200');

  const list = await runCli(['allow', sessionId, '--list'], { env: cliEnv, keepDaemon: true });
  assert.match(list.stdout, new RegExp(`allow\\s+127\\.0\\.0\\.1:${srv.port}\\s+grant, until `));
  const rules = await c.call('network.rules', { sessionId });
  assert.equal(rules.mode, 'proxy');
  assert.equal(rules.allowAll, false);
  assert.deepEqual(rules.rules.map((r) => [r.rule, r.source]), [[`127.0.0.1:${srv.port}`, 'grant']]);

  await until(() => events.filter((e) => e.type === 'net.close').length === 1, 5000, 'the net.close event');
  assert.deepEqual(events.map((e) => [e.type, e.decision ?? null]), [
    ['net.connect', 'deny'], ['net.rule-added', null], ['net.connect', 'allow'], ['net.close', null],
  ]);
  assert.ok(events.every((e) => e.sessionId === sessionId));
  assert.match(String(events[1].by), /^airlock allow \(uid \d+\)$/);
});

test('network.allow refuses a malformed rule, a bare *, an unknown session and a session without network, each naming the problem', async (t) => {
  const d = await startDaemonProcess();
  t.after(() => d.stop());
  const c = await d.client();
  const { sessionId } = await c.call('session.create', { workspace: d.workspace(), policy: { network: { registries: false } } });
  const fails = async (p: Promise<unknown>, code: number, re: RegExp): Promise<void> => {
    const e = await p.then(() => null, (x: unknown) => x);
    assert.ok(e instanceof RpcError, `expected an RpcError, got ${String(e)}`);
    assert.equal(e.code, code, e.message);
    assert.match(e.message, re);
  };
  await fails(c.call('network.allow', { sessionId, rule: 'exa mple.com', ttlSeconds: 60 }), ErrorCode.InvalidParams, /network rule "exa mple\.com" is not valid: .*examples: example\.com/);
  await fails(c.call('network.allow', { sessionId, rule: '*', ttlSeconds: 60 }), ErrorCode.InvalidParams, /--allow-all-network/);
  await fails(c.call('network.allow', { sessionId, rule: 'example.com', ttlSeconds: 0 }), ErrorCode.InvalidParams, /ttlSeconds: must be >= 1/);
  await fails(c.call('network.allow', { sessionId: 'nosuchsession', rule: 'example.com', ttlSeconds: 60 }), ErrorCode.SessionNotFound, /session nosuchsession not found/);
  const none = (await c.call('session.create', { workspace: d.workspace(), policy: { network: { mode: 'none' } } })).sessionId;
  await fails(c.call('network.allow', { sessionId: none, rule: 'example.com', ttlSeconds: 60 }), ErrorCode.InvalidParams, /has no network \(network\.mode is 'none'\)/);
  // A session without the proxy has no way out at all, not even to the proxy port.
  const r = await c.call('exec', { sessionId: none, argv: ['sh', '-c', 'curl -s --max-time 5 http://127.0.0.1:3128/ ; echo " rc=$?"; ls /run'] });
  assert.match(r.stdout, /rc=7/, 'curl: connection refused (nothing listens on the proxy port)');
  assert.doesNotMatch(r.stdout, /egress\.sock/);
  const cli = await runCli(['allow', sessionId, 'exa mple.com'], { env: { XDG_RUNTIME_DIR: path.dirname(path.dirname(d.socket)) }, keepDaemon: true });
  assert.notEqual(cli.code, 0);
  assert.match(cli.stderr, /network rule "exa mple\.com" is not valid/);
});

test('a connection made by a command typed in the sandbox shell is recorded with that command line (as the shell reports it)', async (t) => {
  const srv = await hostHttpServer();
  t.after(() => srv.close());
  const d = await startDaemonProcess();
  t.after(() => d.stop());
  const c = await d.client();
  const events: RuntimeEvent[] = [];
  c.on('event', (e: RuntimeEvent) => events.push(e));
  await c.call('events.subscribe', { filter: ['net.connect', 'command.end'] });
  const { sessionId } = await c.call('session.create', { workspace: d.workspace(), policy: { network: { registries: false, allow: [`127.0.0.1:${srv.port}`] } } });
  const { processId } = await c.call('process.start', { sessionId, shell: true });
  let out = '';
  const a = await c.attach(processId, (_k, data) => (out += data.toString('utf8')));
  await until(() => out.includes('$ '), 10_000, 'the shell prompt');
  const line = `curl -s http://127.0.0.1:${srv.port}/typed`;
  a.write(Buffer.from(`${line}\r`));
  await until(() => events.some((e) => e.type === 'command.end'), 10_000, 'the command to end');
  const conn = events.find((e) => e.type === 'net.connect');
  assert.ok(conn, 'a net.connect event');
  assert.equal(conn.command, line);
  assert.equal(conn.decision, 'allow');
  assert.equal(srv.requests[0]?.url, '/typed');
});
