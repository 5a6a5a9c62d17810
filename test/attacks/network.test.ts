/**
 * Attacks on the network boundary. A sandbox has no route but the egress proxy; the
 * proxy refuses internal addresses however they are written or resolved, unless an
 * explicit IP rule allows them; rules a person grants expire on time; deny wins.
 * Every refused attempt must leave the target server untouched.
 *
 * Names that resolve to internal addresses come from a test resolver injected into
 * the egress service (a DNS server answering such names cannot exist on this
 * machine); IP literals and everything else are real.
 */
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as dgram from 'node:dgram';
import { startSession } from '../helpers/sandbox';
import { hostHttpServer, netRecords } from '../helpers/egress';
import type { LookupFn } from '../../runtime/egress/service';
import { DEFAULT_PROXY_LIMITS } from '../../runtime/egress/types';
import { sleep } from '../helpers/attack';

const CURL = ['curl', '-sS', '--max-time', '20', '-o', '/dev/null', '-w', '%{http_code}'];

/** A test resolver: names under airlock-test.invalid resolve to internal addresses. */
const testResolver: LookupFn = async (name) => {
  const table: Record<string, { address: string; family: 4 | 6 }[]> = {
    'loopback.airlock-test.invalid': [{ address: '127.0.0.1', family: 4 }],
    'private.airlock-test.invalid': [{ address: '10.1.2.3', family: 4 }],
    'metadata.airlock-test.invalid': [{ address: '169.254.169.254', family: 4 }],
    'v6loopback.airlock-test.invalid': [{ address: '::1', family: 6 }],
    'mapped.airlock-test.invalid': [{ address: '::ffff:127.0.0.1', family: 6 }],
    'mixed.airlock-test.invalid': [{ address: '93.184.215.14', family: 4 }, { address: '127.0.0.1', family: 4 }],
  };
  const r = table[name];
  if (!r) throw Object.assign(new Error(`no such name ${name}`), { code: 'ENOTFOUND' });
  return r;
};

test('names that resolve to loopback, private, metadata, ::1 or mapped loopback are refused by the SSRF guard even when the name is allowed', async (t) => {
  const srv = await hostHttpServer();
  t.after(() => srv.close());
  const s = await startSession({ egress: { lookup: testResolver }, policy: { network: { allow: ['*.airlock-test.invalid'] } } });
  t.after(() => s.close());
  const names = ['loopback', 'private', 'metadata', 'v6loopback', 'mapped', 'mixed'];
  for (const n of names) {
    const r = await s.run([...CURL, `http://${n}.airlock-test.invalid:${srv.port}/`]);
    assert.equal(r.stdout, '403', `${n}: ${r.stderr}`);
  }
  assert.equal(srv.connections, 0);
  const rules = netRecords(s.auditFile).map((x) => [x.host, x.decision, x.rule]);
  assert.deepEqual(rules, [
    ['loopback.airlock-test.invalid', 'deny', 'ssrf:loopback'],
    ['private.airlock-test.invalid', 'deny', 'ssrf:private'],
    ['metadata.airlock-test.invalid', 'deny', 'ssrf:metadata'],
    ['v6loopback.airlock-test.invalid', 'deny', 'ssrf:loopback'],
    ['mapped.airlock-test.invalid', 'deny', 'ssrf:loopback'],
    ['mixed.airlock-test.invalid', 'deny', 'ssrf:loopback'],
  ]);
});

test('loopback written in every notation, and localhost., is refused without an IP rule even under --allow-all-network', async (t) => {
  const srv = await hostHttpServer();
  t.after(() => srv.close());
  const s = await startSession({ egress: {}, policy: { network: { allowAll: true } } });
  t.after(() => s.close());
  const hosts = ['127.0.0.1', '2130706433', '0177.0.0.1', '0x7f.1', '0x7f000001', '127.1', '[::1]', '[::ffff:127.0.0.1]', 'localhost', 'localhost.', '0.0.0.0'];
  for (const h of hosts) {
    const r = await s.run([...CURL, `http://${h}:${srv.port}/`]);
    assert.notEqual(r.stdout, '200', `${h} reached the host server`);
  }
  // The SOCKS and CONNECT paths take the same checks.
  const socks = await s.run([...CURL, '--proxy', 'socks5h://127.0.0.1:3128', `http://2130706433:${srv.port}/`]);
  assert.notEqual(socks.stdout, '200');
  const tunnel = await s.run([...CURL, '--proxytunnel', `http://0x7f.1:${srv.port}/`]);
  assert.notEqual(tunnel.stdout, '200');
  assert.equal(srv.connections, 0, 'no notation reached the host loopback');
  const recs = netRecords(s.auditFile);
  assert.ok(recs.length >= hosts.length);
  assert.ok(recs.every((x) => x.decision === 'deny' && String(x.rule).startsWith('ssrf:')), JSON.stringify(recs.map((x) => [x.host, x.rule])));
  assert.equal(netRecords(s.auditFile, 'net.allow-all').length, 1, 'allow-all is flagged in the audit log');
});

test('an explicit IP rule lets the sandbox reach that loopback address and port, and no other port', async (t) => {
  const srv = await hostHttpServer();
  const other = await hostHttpServer();
  t.after(() => srv.close());
  t.after(() => other.close());
  const s = await startSession({ egress: {}, policy: { network: { allow: [`127.0.0.1:${srv.port}`] } } });
  t.after(() => s.close());
  assert.equal((await s.run([...CURL, `http://2130706433:${srv.port}/`])).stdout, '200', 'the decimal form of the allowed address works too');
  assert.equal((await s.run([...CURL, `http://127.0.0.1:${other.port}/`])).stdout, '403');
  assert.equal(other.connections, 0);
});

test('direct connections that bypass the proxy fail: host loopback, an outside address, DNS and UDP', async (t) => {
  const srv = await hostHttpServer();
  t.after(() => srv.close());
  const udp = dgram.createSocket('udp4');
  let datagrams = 0;
  udp.on('message', () => datagrams++);
  await new Promise<void>((r) => udp.bind(0, '127.0.0.1', r));
  t.after(() => udp.close());
  const udpPort = udp.address().port;
  const s = await startSession({ egress: {}, policy: { network: { allowAll: true, allow: [`127.0.0.1:${srv.port}`] } } });
  t.after(() => s.close());
  // --noproxy: curl connects itself. 127.0.0.1 inside is the sandbox's own loopback.
  const direct = await s.run(['curl', '-sS', '--max-time', '5', '--noproxy', '*', `http://127.0.0.1:${srv.port}/`]);
  assert.notEqual(direct.code, 0);
  assert.match(direct.stderr, /Connection refused|Couldn't connect/);
  const outside = await s.run(['curl', '-sS', '--max-time', '5', '--noproxy', '*', 'http://93.184.215.14/']);
  assert.notEqual(outside.code, 0);
  assert.match(outside.stderr, /unreachable|Couldn't connect/i);
  const dns = await s.run(['node', '-e', "require('dns').lookup('example.com', (e, a) => console.log(e ? 'ERR ' + e.code : 'RESOLVED ' + a))"]);
  assert.match(dns.stdout, /^ERR /, 'no resolver inside');
  const dns2 = await s.run(['node', '-e', "new (require('dns').Resolver)().resolve4('example.com', (e, a) => console.log(e ? 'ERR ' + e.code : 'RESOLVED ' + a))"]);
  assert.match(dns2.stdout, /^ERR /);
  const udpScript = `const s = require('dgram').createSocket('udp4'); s.send('leak', ${udpPort}, '127.0.0.1', () => { s.send('leak', 53, '8.8.8.8', (e) => { console.log(e ? 'ERR ' + e.code : 'SENT'); s.close(); }); });`;
  const u = await s.run(['node', '-e', udpScript]);
  assert.match(u.stdout, /ERR ENETUNREACH/);
  await sleep(200);
  assert.equal(datagrams, 0, 'the host UDP server received nothing');
  assert.equal(srv.connections, 0);
  assert.equal(netRecords(s.auditFile).length, 0, 'none of these went through the proxy');
});

test('a grant with a TTL allows a host until it expires, on time, and the expiry is audited', async (t) => {
  const srv = await hostHttpServer();
  t.after(() => srv.close());
  const s = await startSession({ egress: {} });
  t.after(() => s.close());
  const url = `http://127.0.0.1:${srv.port}/`;
  assert.equal((await s.run([...CURL, url])).stdout, '403');
  const granted = s.session.network!.allow(`127.0.0.1:${srv.port}`, 2, 'the test');
  assert.equal(granted.source, 'grant');
  assert.equal((await s.run([...CURL, url])).stdout, '200');
  await sleep(Date.parse(granted.expiresAt!) - Date.now() + 100);
  assert.equal((await s.run([...CURL, url])).stdout, '403', 'expired on time');
  assert.equal(srv.requests.length, 1);
  const expired = netRecords(s.auditFile, 'net.rule-expired');
  assert.equal(expired.length, 1);
  assert.equal(expired[0].rule, `127.0.0.1:${srv.port}`);
  assert.equal(netRecords(s.auditFile, 'net.rule-added')[0].by, 'the test');
});

test('deny beats allow: a denied subdomain stays refused under a wildcard allow and under allow-all', async (t) => {
  const srv = await hostHttpServer();
  t.after(() => srv.close());
  const resolver: LookupFn = async () => [{ address: '127.0.0.1', family: 4 }];
  const s = await startSession({
    egress: { lookup: resolver },
    policy: { network: { allowAll: true, allow: ['*.corp.invalid', `127.0.0.1:${srv.port}`], deny: ['prod-db.corp.invalid'] } },
  });
  t.after(() => s.close());
  assert.equal((await s.run([...CURL, `http://dev.corp.invalid:${srv.port}/`])).stdout, '200', 'the wildcard allows a sibling');
  assert.equal((await s.run([...CURL, `http://prod-db.corp.invalid:${srv.port}/`])).stdout, '403');
  s.session.network!.allow('prod-db.corp.invalid', 60, 'the test');
  assert.equal((await s.run([...CURL, `http://prod-db.corp.invalid:${srv.port}/`])).stdout, '403', 'a later grant does not override a deny');
  assert.equal(srv.requests.length, 1);
  const denied = netRecords(s.auditFile).filter((x) => x.decision === 'deny');
  assert.deepEqual(denied.map((x) => x.rule), ['prod-db.corp.invalid', 'prod-db.corp.invalid']);
});

test('the sandbox cannot add rules: the control socket is not visible and the proxy port takes no commands', async (t) => {
  const srv = await hostHttpServer();
  t.after(() => srv.close());
  const s = await startSession({ egress: {} });
  t.after(() => s.close());
  // A control call (JSON-RPC network.allow) sent to the proxy port is not a proxy request.
  const call = JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'network.allow', params: { sessionId: s.session.id, rule: `127.0.0.1:${srv.port}`, ttlSeconds: 60 } });
  const script = `
    const net = require('net');
    const c = net.connect(3128, '127.0.0.1', () => c.write(${JSON.stringify(call + '\n')}));
    let b = ''; c.on('data', (d) => (b += d)); c.on('close', () => console.log(JSON.stringify(b.split('\\r\\n')[0]))); c.on('error', (e) => console.log('ERR', e.code));
    setTimeout(() => c.destroy(), 3000);`;
  const r = await s.run(['node', '-e', script]);
  assert.equal(r.stdout.trim(), JSON.stringify('HTTP/1.1 400 Bad Request'));
  assert.equal((await s.run([...CURL, `http://127.0.0.1:${srv.port}/`])).stdout, '403', 'and the host is still refused');
  assert.equal(srv.connections, 0);
  assert.deepEqual(s.session.network!.list().filter((x) => x.source !== 'policy'), [], 'no rule was added');
  // No unix socket leads out of the sandbox at all: the proxy's listener is the only way out.
  const ls = await s.run(['sh', '-c', 'ls /run; ls -a /run/airlock; test -e /run/egress.sock && echo egress.sock present']);
  assert.doesNotMatch(ls.stdout, /runtime\.sock|egress\.sock/);
});

test("one session cannot use another's rules: each sandbox has its own proxy listener, and its attempts are recorded under its own id", async (t) => {
  const srv = await hostHttpServer();
  t.after(() => srv.close());
  const open = await startSession({ egress: {}, policy: { network: { allow: [`127.0.0.1:${srv.port}`] } } });
  t.after(() => open.close());
  const closed = await startSession({ egress: {} });
  t.after(() => closed.close());
  assert.equal((await open.run([...CURL, `http://127.0.0.1:${srv.port}/`])).stdout, '200');
  // No socket file anywhere (under /run, /tmp, home or the root file system) leads to another session's proxy.
  // `test -S` stats each name: find's own -type trusts readdir's type, which for a
  // socket bound onto a placeholder file says "regular file".
  const r = await closed.run(['sh', '-c', `${CURL.join(' ')} http://127.0.0.1:${srv.port}/; echo; { find / -xdev; find /run /tmp /home; } 2>/dev/null | while read -r f; do [ -S "$f" ] && echo "$f"; done`]);
  const [code, ...sockets] = r.stdout.trim().split('\n');
  assert.equal(code, '403');
  assert.deepEqual([...new Set(sockets)], [], 'no socket file in sight');
  assert.equal(srv.requests.length, 1);
  const recs = netRecords(closed.auditFile);
  assert.deepEqual(recs.map((x) => [x.session, x.decision]), [[closed.session.id, 'deny']]);
});

test('silent connections to the proxy beyond maxStreams are closed and audited as denied, and the proxy keeps serving', async (t) => {
  const srv = await hostHttpServer();
  t.after(() => srv.close());
  const s = await startSession({ egress: { limits: { ...DEFAULT_PROXY_LIMITS, maxStreams: 4 } }, policy: { network: { allow: [`127.0.0.1:${srv.port}`] } } });
  t.after(() => s.close());
  // Six connections that never send a byte, one at a time: each reports whether the proxy closed it within 1 s.
  const script = `
    const net = require('net'); const out = [];
    const open = (i) => new Promise((res) => {
      const c = net.connect(3128, '127.0.0.1');
      let closed = false;
      c.on('close', () => (closed = true)); c.on('error', () => undefined);
      setTimeout(() => { out.push(closed ? 'closed' : 'open'); res(c); }, 1000);
    });
    (async () => { const held = []; for (let i = 0; i < 6; i++) held.push(await open(i)); console.log(out.join(' ')); held.forEach((c) => c.destroy()); })();`;
  const r = await s.run(['node', '-e', script]);
  assert.equal(r.stdout.trim(), 'open open open open closed closed', r.stderr);
  const dropped = netRecords(s.auditFile).filter((x) => x.rule === 'limit:streams');
  assert.equal(dropped.length, 2, 'one denied record per connection closed unread');
  assert.equal(dropped[0]!.decision, 'deny');
  assert.match(String(dropped[0]!.error), /already had 4 connections to the proxy open/);
  assert.equal((await s.run([...CURL, `http://127.0.0.1:${srv.port}/`])).stdout, '200', 'once they are gone, the proxy serves again');
});

test('a connection opened under a grant is cut when the grant expires, not only new ones refused', async (t) => {
  const { createServer } = await import('node:net');
  const echo = createServer((c) => c.pipe(c));
  await new Promise<void>((r) => echo.listen(0, '127.0.0.1', r));
  t.after(() => echo.close());
  const port = (echo.address() as import('node:net').AddressInfo).port;
  const s = await startSession({ egress: {} });
  t.after(() => s.close());
  const granted = s.session.network!.allow(`127.0.0.1:${port}`, 2, 'the test');
  // Opens a tunnel and pings through it every 100 ms until it closes; prints how long it
  // lived. The cut is a reset when a ping is still unread by the proxy: an error, then the close.
  const script = `
    const net = require('net'); const t0 = Date.now(); let pongs = 0; let error;
    const c = net.connect(3128, '127.0.0.1', () => c.write('CONNECT 127.0.0.1:${port} HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n'));
    let open = false;
    c.on('data', (d) => { if (!open) { open = String(d).startsWith('HTTP/1.1 200'); if (!open) { console.log('refused'); c.destroy(); } return; } pongs++; });
    c.on('error', (e) => (error = e.code));
    const timer = setInterval(() => open && c.write('ping'), 100);
    c.on('close', () => { clearInterval(timer); console.log(JSON.stringify({ livedMs: Date.now() - t0, pongs, error })); });
    setTimeout(() => c.destroy(), 8000);`;
  const r = await s.run(['node', '-e', script]);
  const out = JSON.parse(r.stdout.trim());
  const grantMs = Date.parse(granted.expiresAt!) - Date.now();
  assert.ok(out.pongs > 5, `the tunnel carried data while the grant lasted: ${r.stdout}`);
  assert.ok(out.livedMs < 5000, `cut at the expiry (about 2 s), not at the script's own 8 s: ${r.stdout} (${grantMs})`);
  const closes = netRecords(s.auditFile, 'net.close');
  assert.equal(closes.length, 1);
  assert.match(String(closes[0].error), new RegExp(`the grant "127\\.0\\.0\\.1:${port}" that allowed it expired`));
});
