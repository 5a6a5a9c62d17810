/**
 * Many sessions at once through one daemon (a REAL separate process): 50 sandboxes
 * created and run in parallel from several connections, every exit code right, and
 * one consistent audit chain holding all of them.
 */
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { readAuditFile, verifyAuditFile } from '../../runtime/audit';
import type { RuntimeClient } from '../../runtime/client/client';
import { rssBytes, startDaemonProcess } from '../helpers/daemon';

const SESSIONS = 50;
const CLIENTS = 5;

test('50 parallel sessions each run a command: every exit code is right and the audit chain is valid with 50 starts and 50 ends', { timeout: 90_000 }, async (t) => {
  const d = await startDaemonProcess();
  t.after(() => d.stop());
  const clients: RuntimeClient[] = [];
  for (let i = 0; i < CLIENTS; i++) clients.push(await d.client());
  const rss0 = rssBytes(d.pid);
  const started = Date.now();
  const results = await Promise.all(
    Array.from({ length: SESSIONS }, async (_, i) => {
      const c = clients[i % CLIENTS];
      const { sessionId } = await c.call('session.create', { workspace: d.workspace(), label: `scale-${i}` });
      const r = await c.call('exec', { sessionId, argv: ['sh', '-c', `echo "session ${i}"; exit ${i % 7}`] });
      return { i, sessionId, r };
    }),
  );
  const elapsed = Date.now() - started;
  const live = (await clients[0].call('session.list', {})).sessions;
  const rss1 = rssBytes(d.pid);
  console.log(`# scale: ${SESSIONS} sessions created and run in parallel in ${elapsed} ms; daemon RSS ${(rss0 / 2 ** 20).toFixed(1)} -> ${(rss1 / 2 ** 20).toFixed(1)} MiB with them live`);
  for (const { i, r } of results) {
    assert.equal(r.exitCode, i % 7, `session ${i}`);
    assert.equal(r.stdout, `session ${i}\n`);
    assert.equal(r.signal, null);
  }
  const ids = results.map((x) => x.sessionId);
  assert.equal(new Set(ids).size, SESSIONS, 'distinct session ids');
  assert.equal(live.length, SESSIONS, 'all live at once');

  await Promise.all(results.map(({ i, sessionId }) => clients[i % CLIENTS].call('session.kill', { sessionId, reason: 'scale test done' })));
  assert.equal((await clients[0].call('session.list', {})).sessions.length, 0);

  const v = verifyAuditFile(d.auditFile);
  assert.equal(v.ok, true, JSON.stringify(v.firstBad));
  assert.deepEqual(v.torn, []);
  const recs = readAuditFile(d.auditFile).records;
  const mine = new Set(ids);
  const count = (type: string) => recs.filter((r) => r.type === type && mine.has(r.session)).length;
  assert.equal(count('session.start'), SESSIONS);
  assert.equal(count('session.end'), SESSIONS);
  assert.equal(count('process.start'), SESSIONS);
  assert.equal(count('process.exit'), SESSIONS);
  for (const { i, sessionId } of results) {
    const exit = recs.find((r) => r.session === sessionId && r.type === 'process.exit');
    assert.equal(exit?.code, i % 7, `the audit log has session ${i}'s exit code`);
  }
  assert.equal(v.records, recs.length, 'every record is in the one chain');
});
