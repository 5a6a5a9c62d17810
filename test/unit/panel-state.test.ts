/**
 * The Airlock panel's model (webview/state.ts): snapshot plus live events, the network
 * table's join of net.connect and net.close, filters kept incrementally, secrets with
 * their use counts, requests, and the row cap.
 */
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import type { RuntimeEvent, SessionInfo } from '../../runtime/protocol';
import { formatBytes, formatDuration, PanelModel } from '../../webview/state';

const T0 = Date.parse('2026-12-01T10:00:00.000Z');
const ts = (s: number): string => new Date(T0 + s * 1000).toISOString();
const ev = (type: string, sessionId: string, s: number, fields: Record<string, unknown> = {}): RuntimeEvent => ({ type: type as RuntimeEvent['type'], sessionId, ts: ts(s), ...fields });
const connect = (sessionId: string, conn: number, host: string, decision: 'allow' | 'deny', s = conn): RuntimeEvent =>
  ev('net.connect', sessionId, s, { conn, host, port: 443, protocol: 'connect', decision, rule: decision === 'allow' ? host : 'default-deny', process: 'curl' });
const session = (sessionId: string, lifetimeLeft = 3600): SessionInfo => ({
  sessionId, workspace: '/w', driver: 'bwrap', state: 'running', startedAt: ts(0), lifetimeLeft, limits: [], placeholders: [],
  processes: [{ processId: `${sessionId}.1`, argv: ['bash'], pty: true, pid: 2, running: true, exitCode: null, signal: null, startedAt: ts(0), attached: 1 }],
});

test('a snapshot loads sessions, their secrets, pending requests, and network rows joined with their close', () => {
  const m = new PanelModel();
  m.load({
    sessions: [session('a'), session('b', 60)],
    secrets: { a: [{ name: 'TOKEN', mode: 'brokered', hosts: ['api.example.com'], grantedAt: ts(1), expiresAt: ts(3601), by: 'me', uses: 2 }] },
    requests: [
      { requestId: 'r1', sessionId: 'a', kind: 'host', target: 'x.example', reason: 'needs it', requestedTtlSeconds: 900, state: 'pending', createdAt: ts(2), message: '' },
      { requestId: 'r2', sessionId: 'a', kind: 'host', target: 'y.example', reason: 'old', requestedTtlSeconds: 900, state: 'denied', createdAt: ts(1), message: '' },
    ],
    net: [connect('a', 1, 'ok.example', 'allow'), connect('a', 2, 'evil.example', 'deny'), ev('net.close', 'a', 3, { conn: 1, bytesUp: 10, bytesDown: 2048, durationMs: 15 })],
    takenAt: T0,
  });
  assert.deepEqual([...m.sessions.keys()], ['a', 'b']);
  assert.equal(m.sessions.get('b')!.endsAt, T0 + 60_000);
  assert.equal(m.sessions.get('a')!.running, 1);
  assert.deepEqual([m.sessions.get('a')!.connections, m.sessions.get('a')!.denied], [2, 1]);
  assert.equal(m.secrets.get('a')!.get('TOKEN')!.uses, 2);
  assert.deepEqual([...m.requests.keys()], ['r1'], 'only pending requests are shown');
  const [ok, evil] = m.visibleNet;
  assert.deepEqual([ok!.host, ok!.closed, ok!.bytesDown, ok!.durationMs], ['ok.example', true, 2048, 15]);
  assert.deepEqual([evil!.decision, evil!.rule, evil!.closed], ['deny', 'default-deny', true]);
  assert.equal(m.netTotal, 2);
});

test('live events: a connection row opens, then closes with its bytes; the session counts it', () => {
  const m = new PanelModel();
  m.load({ sessions: [session('a')], secrets: {}, requests: [], net: [], takenAt: T0 });
  const c1 = m.apply([connect('a', 7, 'ok.example', 'allow')]);
  assert.deepEqual([c1.net, c1.sessions, c1.secrets], [true, true, false]);
  assert.equal(m.visibleNet[0]!.closed, false, 'open until net.close');
  m.apply([ev('net.close', 'a', 9, { conn: 7, bytesUp: 1, bytesDown: 2, durationMs: 2000, error: 'idle timeout' })]);
  assert.deepEqual([m.visibleNet[0]!.closed, m.visibleNet[0]!.error], [true, 'idle timeout']);
  // A close for an attempt never seen (before the snapshot) changes nothing.
  m.apply([ev('net.close', 'a', 9, { conn: 99 })]);
  assert.equal(m.allNet.length, 1);
  // Same conn number in another session is another row.
  m.apply([connect('b', 7, 'other.example', 'allow')]);
  assert.equal(m.allNet.length, 2);
});

test('filters: denied only, one session, a host substring; new rows are tested against the filter as they come', () => {
  const m = new PanelModel();
  m.load({ sessions: [session('a'), session('b')], secrets: {}, requests: [], net: [connect('a', 1, 'ok.example', 'allow'), connect('a', 2, 'Evil.example', 'deny'), connect('b', 1, 'evil.example', 'deny')], takenAt: T0 });
  m.setFilter({ deniedOnly: true });
  assert.deepEqual(m.visibleNet.map((r) => r.key), ['a/2', 'b/1']);
  m.setFilter({ deniedOnly: true, sessionId: 'a' });
  assert.deepEqual(m.visibleNet.map((r) => r.key), ['a/2']);
  m.setFilter({ deniedOnly: false, host: '  EVIL ' });
  assert.deepEqual(m.visibleNet.map((r) => r.key), ['a/2', 'b/1']);
  m.apply([connect('a', 3, 'evil.example', 'allow'), connect('a', 4, 'fine.example', 'deny')]);
  assert.deepEqual(m.visibleNet.map((r) => r.key), ['a/2', 'b/1', 'a/3']);
  m.setFilter({ deniedOnly: false });
  assert.equal(m.visibleNet.length, 5);
});

test('"denied in the last 10 min": counts denials (snapshot and live), not allows, and lets old ones age out', () => {
  const m = new PanelModel();
  m.load({ sessions: [session('a')], secrets: {}, requests: [], net: [connect('a', 1, 'ok.example', 'allow', 0), connect('a', 2, 'evil.example', 'deny', 0)], takenAt: T0 });
  assert.equal(m.deniedRecently(T0 + 1000), 1);
  m.apply([connect('a', 3, 'evil.example', 'deny', 300), connect('a', 4, 'ok.example', 'allow', 300)]);
  assert.equal(m.deniedRecently(T0 + 301_000), 2);
  assert.equal(m.deniedRecently(T0 + 601_000), 1, 'the first denial is older than ten minutes');
  assert.equal(m.deniedRecently(T0 + 901_000), 0);
  m.load({ sessions: [], secrets: {}, requests: [], net: [], takenAt: T0 });
  assert.equal(m.deniedRecently(T0 + 1000), 0, 'a new snapshot starts over');
});

test('secrets: a grant shows (never a value), brokered uses count, a revoke or expiry removes it, a replacement keeps one row', () => {
  const m = new PanelModel();
  m.load({ sessions: [session('a')], secrets: {}, requests: [], net: [], takenAt: T0 });
  m.apply([ev('secret.grant', 'a', 1, { name: 'GH', mode: 'brokered', hosts: ['api.github.com'], by: 'VS Code', expiresAt: ts(901), ttlSeconds: 900 })]);
  m.apply([ev('secret.use', 'a', 2, { name: 'GH', host: 'api.github.com', uses: 1 }), ev('secret.use', 'a', 3, { name: 'GH', host: 'api.github.com', uses: 2 })]);
  const row = m.secrets.get('a')!.get('GH')!;
  assert.deepEqual([row.mode, row.hosts, row.uses, row.expiresAt], ['brokered', ['api.github.com'], 2, ts(901)]);
  assert.ok(!('value' in row));
  m.apply([ev('secret.revoke', 'a', 4, { name: 'GH', mode: 'brokered', detail: 'replaced' }), ev('secret.grant', 'a', 4, { name: 'GH', mode: 'env', expiresAt: ts(100), by: 'me' })]);
  assert.equal(m.secrets.get('a')!.size, 1);
  assert.equal(m.secrets.get('a')!.get('GH')!.mode, 'env');
  m.apply([ev('secret.expire', 'a', 100, { name: 'GH', mode: 'env' })]);
  assert.equal(m.secrets.get('a')!.size, 0);
});

test('grants: a live grant of host:port marks its denied rows until it expires (from the snapshot or a net.rule-added event)', () => {
  const m = new PanelModel();
  m.load({ sessions: [session('a')], secrets: {}, requests: [], net: [connect('a', 1, 'x.example', 'deny'), connect('a', 2, 'y.example', 'deny')], grants: { a: [{ rule: 'x.example:443', expiresAt: ts(900) }] }, takenAt: T0 });
  const [x, y] = m.allNet;
  assert.equal(m.grantFor(x!, T0), ts(900));
  assert.equal(m.grantFor(x!, T0 + 901_000), undefined, 'expired');
  assert.equal(m.grantFor(y!, T0), undefined);
  m.apply([ev('net.rule-added', 'a', 5, { rule: 'y.example', effect: 'allow', ttlSeconds: 60, expiresAt: ts(65), by: 'VS Code' })]);
  assert.equal(m.grantFor(y!, T0), ts(65), 'a host rule covers every port');
  m.apply([ev('net.rule-expired', 'a', 65, { rule: 'y.example', effect: 'allow', source: 'grant' })]);
  assert.equal(m.grantFor(y!, T0), undefined);
});

test('requests come and go; an ended session leaves the lists but its network rows stay', () => {
  const m = new PanelModel();
  m.load({ sessions: [session('a')], secrets: {}, requests: [], net: [connect('a', 1, 'x.example', 'deny')], takenAt: T0 });
  m.apply([ev('access.request', 'a', 1, { requestId: 'q1', kind: 'host', target: 'pypi.org', reason: 'install deps', requestedTtlSeconds: 900 })]);
  assert.equal(m.requests.get('q1')!.reason, 'install deps');
  m.apply([ev('access.decide', 'a', 2, { requestId: 'q1', approve: true })]);
  assert.equal(m.requests.size, 0);
  m.apply([ev('access.request', 'a', 3, { requestId: 'q2', kind: 'secret', target: 'TOKEN', reason: 'r', requestedTtlSeconds: 60 })]);
  m.apply([ev('secret.grant', 'a', 3, { name: 'S', mode: 'env', expiresAt: ts(60), by: 'me' })]);
  const c = m.apply([ev('session.end', 'a', 4, { reason: 'killed' })]);
  assert.deepEqual([c.sessions, c.secrets, c.requests], [true, true, true]);
  assert.deepEqual([m.sessions.size, m.secrets.size, m.requests.size], [0, 0, 0]);
  assert.equal(m.allNet.length, 1, 'the record of what it did stays');
  m.apply([ev('session.start', 'n', 5, { workspace: '/w2', driver: 'bwrap', label: 'vscode-terminal' })]);
  assert.equal(m.sessions.get('n')!.label, 'vscode-terminal');
});

test('10 000 connection events: every one is a row (the count equals the audit log\'s); past the cap the oldest go, counted', () => {
  const m = new PanelModel();
  m.load({ sessions: [session('a')], secrets: {}, requests: [], net: [], takenAt: T0 });
  const batch: RuntimeEvent[] = [];
  for (let i = 1; i <= 10_000; i++) batch.push(connect('a', i, `h${i % 7}.example`, i % 3 ? 'allow' : 'deny'));
  m.apply(batch);
  assert.equal(m.allNet.length, 10_000);
  assert.equal(m.netTotal, 10_000);
  assert.equal(m.sessions.get('a')!.denied, 3333);

  const small = new PanelModel(10);
  small.load({ sessions: [], secrets: {}, requests: [], net: [], takenAt: T0 });
  small.setFilter({ deniedOnly: true });
  for (let i = 1; i <= 30; i++) small.apply([connect('a', i, 'h.example', i % 2 ? 'deny' : 'allow')]);
  assert.ok(small.allNet.length <= 11, `${small.allNet.length} rows kept`);
  assert.equal(small.netTotal, 30);
  assert.equal(small.dropped + small.allNet.length, 30);
  const kept = new Set(small.allNet.map((r) => r.key));
  assert.ok(small.visibleNet.every((r) => kept.has(r.key) && r.decision === 'deny'), 'the visible rows are kept rows that pass the filter');
  assert.equal(small.visibleNet.length, small.allNet.filter((r) => r.decision === 'deny').length);
});

test('durations and byte counts read well in a cell', () => {
  assert.deepEqual([0, 12_400, 61_000, 15 * 60_000, 2 * 3600_000 + 5 * 60_000].map(formatDuration), ['0 s', '12 s', '1 min 1 s', '15 min', '2 h 5 min']);
  assert.deepEqual([undefined, 512, 1536, 10 * 1024 * 1024, 3.5 * 1024 ** 3].map(formatBytes), ['', '512 B', '1.5 KiB', '10 MiB', '3.5 GiB']);
});
