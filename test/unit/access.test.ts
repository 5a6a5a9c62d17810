/**
 * The access-request store on its own, with a stand-in for the registry: what is
 * recorded, granted and returned, the limits, waiting, expiry, and that nothing (no
 * timer, no waiter, no value) is left behind. test/integration/access-requests.test.ts
 * does the same through a real daemon and real sandboxes.
 */
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { AccessOwner, AccessRequests, AccessSession } from '../../runtime/daemon/access';
import { printable } from '../../runtime/cli/commands/requests';
import { Api, ErrorCode, RpcError } from '../../runtime/protocol';

const iso = (ms: number): string => new Date(ms).toISOString();

function fake(): {
  owner: AccessOwner;
  records: { session: string; type: string; fields: Record<string, unknown> }[];
  allowed: Api['network.allow'][0][];
  granted: Api['secret.grant'][0][];
  addSession(id: string, network?: boolean): void;
  failGrant: { error?: Error };
} {
  const records: { session: string; type: string; fields: Record<string, unknown> }[] = [];
  const sessions = new Map<string, AccessSession>();
  const allowed: Api['network.allow'][0][] = [];
  const granted: Api['secret.grant'][0][] = [];
  const failGrant: { error?: Error } = {};
  const owner: AccessOwner = {
    entry(id) {
      const session = sessions.get(id);
      if (!session) throw new RpcError(ErrorCode.SessionNotFound, `session ${id} not found`);
      return { session };
    },
    networkAllow(p) {
      allowed.push(p);
      return { rule: p.rule, effect: 'allow', source: 'grant', expiresAt: iso(Date.now() + p.ttlSeconds * 1000) };
    },
    async secretGrant(p) {
      await new Promise((r) => setImmediate(r));
      if (failGrant.error) throw failGrant.error;
      granted.push(p);
      const now = Date.now();
      return { name: p.name, mode: p.mode, grantedAt: iso(now), expiresAt: iso(now + (p.ttlSeconds ?? 3600) * 1000), by: p.by ?? '', uses: 0 };
    },
  };
  return {
    owner, records, allowed, granted, failGrant,
    addSession(id, network = true) {
      sessions.set(id, {
        id, network: network ? {} : undefined, policy: { network: { mode: network ? 'proxy' : 'none' } },
        recordAccess: (type, fields) => records.push({ session: id, type, fields }),
      });
    },
  };
}

async function fails(p: Promise<unknown> | (() => unknown), code: number, re: RegExp): Promise<void> {
  let err: unknown;
  try {
    await (typeof p === 'function' ? p() : p);
  } catch (e) {
    err = e;
  }
  assert.ok(err instanceof RpcError, `expected RpcError ${code}, got ${String(err)}`);
  assert.equal(err.code, code, err.message);
  assert.match(err.message, re);
}

test('a host request stays pending and grants nothing until a person approves it; the approval allows the canonical target for the chosen time and names the approver', async () => {
  const f = fake();
  f.addSession('s1');
  const store = new AccessRequests(f.owner);
  const r = await store.request({ sessionId: 's1', kind: 'host', target: 'API.Example.com:443', reason: 'docs' });
  assert.match(r.requestId, /^[0-9a-f]{16}$/);
  assert.equal(r.state, 'pending');
  assert.equal(r.target, 'api.example.com:443');
  assert.equal(r.requestedTtlSeconds, 900);
  assert.match(r.message, new RegExp(`^waiting for a person: they can run 'airlock approve ${r.requestId}' \\(or 'airlock deny ${r.requestId}'\\)`));
  assert.deepEqual(f.allowed, []);
  assert.deepEqual(f.records.map((x) => x.type), ['access.request']);
  assert.deepEqual(f.records[0].fields, { requestId: r.requestId, kind: 'host', target: 'api.example.com:443', reason: 'docs', requestedTtlSeconds: 900 });

  const a = await store.decide({ requestId: r.requestId, approve: true, ttlSeconds: 60, by: 'ada' });
  assert.equal(a.state, 'approved');
  assert.equal(a.ttlSeconds, 60);
  assert.equal(a.decidedBy, 'ada');
  assert.match(a.message, /^approved by ada: api\.example\.com:443 is reachable until \d{4}-/);
  assert.deepEqual(f.allowed, [{ sessionId: 's1', rule: 'api.example.com:443', ttlSeconds: 60, by: `ada (access request ${r.requestId})` }]);
  assert.deepEqual(f.records.map((x) => x.type), ['access.request', 'access.decide']);
  assert.equal(f.records[1].fields.approve, true);
  await fails(store.decide({ requestId: r.requestId, approve: false }), ErrorCode.InvalidParams, /is already approved \(by ada, /);
  assert.deepEqual(store.held, { timers: 0, waiters: 0 });
});

test('a secret approval hands the value to the grant and nowhere else; without a value it is refused and stays pending; a failed grant leaves it pending', async () => {
  const f = fake();
  f.addSession('s1');
  const store = new AccessRequests(f.owner);
  const value = 'fake-value-0123456789';
  const r = await store.request({ sessionId: 's1', kind: 'secret', target: 'API_TOKEN', reason: 'deploy', ttlSeconds: 120 });
  await fails(store.decide({ requestId: r.requestId, approve: true }), ErrorCode.InvalidParams, /asks for the secret API_TOKEN: approving it needs the value from the person's client/);
  f.failGrant.error = new Error('the grant failed');
  await assert.rejects(store.decide({ requestId: r.requestId, approve: true, secret: { value, mode: 'env' } }), /the grant failed/);
  assert.equal(store.list({}).requests[0].state, 'pending');
  delete f.failGrant.error;
  const a = await store.decide({ requestId: r.requestId, approve: true, secret: { value, mode: 'file' }, by: 'ada' });
  assert.equal(a.state, 'approved');
  assert.equal(a.ttlSeconds, 120);
  assert.match(a.message, /^approved by ada: the secret API_TOKEN is the file/);
  assert.equal(f.granted.length, 1);
  assert.equal(f.granted[0].value, value);
  assert.equal(f.granted[0].mode, 'file');
  const everything = JSON.stringify([f.records, store.list({}), a]);
  assert.ok(!everything.includes(value), 'the value appears in a record or a result');
});

test('a denial records who and why and grants nothing; a host approval with a secret and a denial with a ttl are refused', async () => {
  const f = fake();
  f.addSession('s1');
  const store = new AccessRequests(f.owner);
  const r = await store.request({ sessionId: 's1', kind: 'host', target: 'example.com', reason: 'x' });
  await fails(store.decide({ requestId: r.requestId, approve: true, secret: { value: 'abcdefghij', mode: 'env' } }), ErrorCode.InvalidParams, /asks for a host \(example\.com\), not a secret/);
  await fails(store.decide({ requestId: r.requestId, approve: false, ttlSeconds: 5 }), ErrorCode.InvalidParams, /denying request .* takes no secret and no ttlSeconds/);
  const d = await store.decide({ requestId: r.requestId, approve: false, by: 'ada', note: 'not today' });
  assert.equal(d.state, 'denied');
  assert.equal(d.note, 'not today');
  assert.match(d.message, /^denied by ada \("not today"\): nothing was granted/);
  assert.deepEqual(f.allowed, []);
  assert.deepEqual(f.records[1].fields, { requestId: r.requestId, kind: 'host', target: 'example.com', approve: false, by: 'ada', note: 'not today' });
  await fails(store.decide({ requestId: '0123456789abcdef', approve: true }), ErrorCode.InvalidParams, /access request 0123456789abcdef not found/);
});

test('targets are checked: a malformed rule or secret name is refused naming it, and so is a host request in a session without network', async () => {
  const f = fake();
  f.addSession('s1');
  f.addSession('offline', false);
  const store = new AccessRequests(f.owner);
  await fails(store.request({ sessionId: 's1', kind: 'host', target: 'exa mple.com', reason: 'x' }), ErrorCode.InvalidParams, /^access\.request: target: network rule "exa mple\.com" is not valid/);
  await fails(store.request({ sessionId: 's1', kind: 'host', target: '*', reason: 'x' }), ErrorCode.InvalidParams, /bare "\*"/);
  await fails(store.request({ sessionId: 's1', kind: 'secret', target: '1TOKEN', reason: 'x' }), ErrorCode.InvalidParams, /invalid secret name "1TOKEN"/);
  await fails(store.request({ sessionId: 'offline', kind: 'host', target: 'example.com', reason: 'x' }), ErrorCode.InvalidParams, /session offline has no network \(network\.mode is 'none'\)/);
  await fails(store.request({ sessionId: 'nope', kind: 'host', target: 'example.com', reason: 'x' }), ErrorCode.SessionNotFound, /session nope not found/);
  assert.deepEqual(f.records, []);
});

test('a session has at most 32 pending requests; asking again for a pending target returns that request; deciding one frees a place', async () => {
  const f = fake();
  f.addSession('s1');
  f.addSession('s2');
  const store = new AccessRequests(f.owner);
  const ids: string[] = [];
  for (let i = 0; i < 32; i++) ids.push((await store.request({ sessionId: 's1', kind: 'host', target: `h${i}.example.com`, reason: 'x' })).requestId);
  assert.equal(new Set(ids).size, 32);
  assert.equal((await store.request({ sessionId: 's1', kind: 'host', target: 'h3.example.com', reason: 'again' })).requestId, ids[3]);
  await fails(store.request({ sessionId: 's1', kind: 'host', target: 'h32.example.com', reason: 'x' }), ErrorCode.LimitExceeded, /session s1 already has 32 pending access requests: a person must decide some first/);
  await store.request({ sessionId: 's2', kind: 'host', target: 'h32.example.com', reason: 'x' });
  await store.decide({ requestId: ids[0], approve: false });
  await store.request({ sessionId: 's1', kind: 'host', target: 'h32.example.com', reason: 'x' });
  store.dispose();
  assert.deepEqual(store.held, { timers: 0, waiters: 0 });
});

test('the list shows pending requests first, newest first, then the rest newest first, filtered by session and state', async () => {
  const f = fake();
  f.addSession('s1');
  f.addSession('s2');
  const store = new AccessRequests(f.owner);
  const a = await store.request({ sessionId: 's1', kind: 'host', target: 'a.example.com', reason: 'x' });
  const b = await store.request({ sessionId: 's2', kind: 'host', target: 'b.example.com', reason: 'x' });
  const c = await store.request({ sessionId: 's1', kind: 'host', target: 'c.example.com', reason: 'x' });
  const d = await store.request({ sessionId: 's1', kind: 'host', target: 'd.example.com', reason: 'x' });
  await store.decide({ requestId: c.requestId, approve: false });
  await store.decide({ requestId: a.requestId, approve: false });
  assert.deepEqual(store.list({}).requests.map((r) => r.requestId), [d, b, c, a].map((r) => r.requestId));
  assert.deepEqual(store.list({ sessionId: 's1', state: 'pending' }).requests.map((r) => r.requestId), [d.requestId]);
  assert.deepEqual(store.list({ state: 'denied' }).requests.map((r) => r.requestId), [c, a].map((r) => r.requestId));
  await fails(() => store.list({ sessionId: 'gone' }), ErrorCode.SessionNotFound, /session gone not found/);
  store.dispose();
});

test('a waiting request returns as soon as a person decides, or when its wait is over, or when it expires; expiry is recorded and leaves no timer', async (t) => {
  // The store's timers are unref'd (the daemon's server keeps it alive): here a test handle does.
  const alive = setInterval(() => {}, 1000);
  t.after(() => clearInterval(alive));
  const f = fake();
  f.addSession('s1');
  const store = new AccessRequests(f.owner, { pendingMs: 400 });
  let t0 = Date.now();
  const waiting = store.request({ sessionId: 's1', kind: 'host', target: 'a.example.com', reason: 'x', waitMs: 60_000 });
  await new Promise((r) => setTimeout(r, 50));
  const id = store.list({ state: 'pending' }).requests[0].requestId;
  await store.decide({ requestId: id, approve: true, by: 'ada' });
  assert.equal((await waiting).state, 'approved');
  assert.ok(Date.now() - t0 < 1000);

  t0 = Date.now();
  const short = await store.request({ sessionId: 's1', kind: 'host', target: 'b.example.com', reason: 'x', waitMs: 100 });
  assert.equal(short.state, 'pending');
  assert.ok(Date.now() - t0 >= 95);
  assert.deepEqual(store.held, { timers: 1, waiters: 0 });

  const expired = await store.request({ sessionId: 's1', kind: 'host', target: 'b.example.com', reason: 'x', waitMs: 60_000 });
  assert.equal(expired.requestId, short.requestId);
  assert.equal(expired.state, 'expired');
  assert.match(expired.message, /^nobody decided within 400 ms: nothing was granted; ask again if it is still needed$/);
  assert.deepEqual(f.records.filter((r) => r.type === 'access.expire').map((r) => r.fields), [{ requestId: short.requestId, kind: 'host', target: 'b.example.com' }]);
  assert.deepEqual(store.held, { timers: 0, waiters: 0 });
});

test('when a session ends, its pending requests expire saying so and their waiters return', async () => {
  const f = fake();
  f.addSession('s1');
  const store = new AccessRequests(f.owner);
  const waiting = store.request({ sessionId: 's1', kind: 'secret', target: 'TOKEN', reason: 'x', waitMs: 60_000 });
  await new Promise((r) => setImmediate(r));
  store.sessionEnded('s1', 'killed');
  const r = await waiting;
  assert.equal(r.state, 'expired');
  assert.match(r.message, /^the session ended \(killed\) before a person decided: nothing was granted$/);
  assert.deepEqual(store.held, { timers: 0, waiters: 0 });
});

test('requests no longer pending are remembered up to the history bound', async () => {
  const f = fake();
  f.addSession('s1');
  const store = new AccessRequests(f.owner, { history: 3 });
  for (let i = 0; i < 5; i++) {
    const r = await store.request({ sessionId: 's1', kind: 'host', target: `h${i}.example.com`, reason: 'x' });
    await store.decide({ requestId: r.requestId, approve: false });
  }
  assert.deepEqual(store.list({}).requests.map((r) => r.target), ['h4.example.com', 'h3.example.com', 'h2.example.com']);
});

test('printable() removes what a terminal would act on from an agent\'s text and keeps it on one line', () => {
  assert.equal(printable('fix\x1b[2J\x1b]0;pwned\x07 the\r\nbuild\u202e\u2066 now\x9b31m\u200b'), 'fix[2J]0;pwned the  build now31m');
  assert.equal(printable('plain text, ünïcödé and emoji 🙂'), 'plain text, ünïcödé and emoji 🙂');
});
