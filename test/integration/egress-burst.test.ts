/**
 * A burst of connections while the runtime is too busy to take them: the sandbox's
 * relay must hold them (TCP's backpressure) rather than refuse them. A refusal there
 * is an attempt the proxy never saw, so one the audit log never records: the log's
 * promise is one record per attempt.
 */
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { startDaemonProcess } from '../helpers/daemon';
import { hostHttpServer, netRecords } from '../helpers/egress';
import { sleep } from '../helpers/integration';
import { REPO } from '../helpers/sandbox';

test('1 000 connections/s while the daemon is stopped for 6 s: every attempt is answered and audited, none refused unrecorded', { timeout: 120_000 }, async (t) => {
  const srv = await hostHttpServer((_req, res) => res.end('ok\n'));
  t.after(() => srv.close());
  const d = await startDaemonProcess();
  t.after(async () => {
    process.kill(d.pid, 'SIGCONT');
    await d.stop();
  });
  const c = await d.client();
  const ws = d.workspace();
  fs.copyFileSync(path.join(REPO, 'test', 'fixtures', 'net-flood.mjs'), path.join(ws, 'net-flood.mjs'));
  const target = `127.0.0.1:${srv.port}`;
  const { sessionId } = await c.call('session.create', { workspace: ws, policy: { network: { registries: false, allow: [target] } } });
  const run = c.call('exec', { sessionId, argv: ['node', 'net-flood.mjs', '1000', '8', target, '5'], timeoutMs: 90_000 });
  // The proxy's listen queue (4 096) fills in about four seconds of this; the relay then
  // holds the rest in its own.
  await sleep(1000);
  process.kill(d.pid, 'SIGSTOP');
  await sleep(6000);
  process.kill(d.pid, 'SIGCONT');
  const r = await run;
  assert.equal(r.exitCode, 0, r.stderr);
  const flood = JSON.parse(r.stdout.trim().split('\n').pop()!) as { sent: number; statuses: Record<string, number> };
  assert.deepEqual(flood, { sent: 8000, statuses: { 200: 6400, 403: 1600 } });
  assert.equal(srv.requests.length, 6400);
  const records = netRecords(d.auditFile).filter((x) => x.session === sessionId);
  assert.equal(records.length, 8000, 'one net.connect record per attempt');
  assert.equal(records.filter((x) => x.decision === 'deny').length, 1600);
});
