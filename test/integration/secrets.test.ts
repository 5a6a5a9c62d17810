/**
 * Secrets in real sandboxes: env and file leases, redaction of everything a process
 * prints, and brokered credentials through the real egress proxy with real TLS
 * interception (the runtime's CA issues the leaf, a loopback HTTPS server with its own
 * test CA plays the service). All values are fake, generated here.
 */
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as https from 'node:https';
import * as net from 'node:net';
import * as path from 'node:path';
import { startSession, tempDir, TestSession } from '../helpers/sandbox';
import { hostHttpServer } from '../helpers/egress';
import { CertificateAuthority } from '../../runtime/secrets/ca';
import { readAuditFile } from '../../runtime/audit';
import { sleep } from '../helpers/attack';

const fakeValue = (prefix = 'fake'): string => `${prefix}-${crypto.randomBytes(12).toString('hex')}`;

/** Every encoding a careless command prints a value in. */
function forms(v: string): string[] {
  const b = Buffer.from(v);
  return [v, b.toString('base64').replace(/=+$/, ''), b.toString('base64url'), b.toString('hex'), b.toString('hex').toUpperCase()];
}

function assertNoForm(text: string, value: string, where: string): void {
  for (const f of forms(value)) assert.ok(!text.includes(f), `${where} contains a form of the secret (${f === value ? 'raw' : 'encoded'})`);
}

test('the .env echo incident: a granted env secret printed raw, by env, via /proc/self/environ, base64, hex and in two writes is redacted every time', async (t) => {
  const s = await startSession();
  t.after(() => s.close());
  const value = fakeValue('topsecret');
  await s.session.secrets.grant({ name: 'API_KEY', value, mode: 'env' }, 'test');
  const half = Math.floor(value.length / 2);
  const script = [
    'echo "raw: $API_KEY"',
    'env',
    "tr '\\0' '\\n' < /proc/self/environ",
    'printf %s "$API_KEY" | base64',
    'printf %s "$API_KEY" | od -An -v -tx1 | tr -d " \\n"; echo',
    // Two write(2) calls, one half each (bash's printf is a builtin: no fork between them).
    `bash -c 'printf %s "\${API_KEY:0:${half}}"; printf %s "\${API_KEY:${half}}"'; echo`,
  ].join('; ');
  for (const pty of [false, true]) {
    const r = await s.run(['sh', '-c', script], { pty });
    assert.equal(r.code, 0, r.stderr);
    assertNoForm(r.stdout + r.stderr, value, pty ? 'terminal output' : 'pipe output');
    assert.match(r.stdout, /raw: \[REDACTED:API_KEY\]/);
    assert.match(r.stdout, /API_KEY=\[REDACTED:API_KEY\]/);
    // The process really had the value: the redaction, not an empty variable, hid it.
    const len = await s.run(['sh', '-c', 'printf %s "$API_KEY" | wc -c']);
    assert.equal(len.stdout.trim(), String(value.length));
  }
  // The audit log never holds it, even where a command line carried it.
  await s.run(['sh', '-c', `echo ${value} > /dev/null`]);
  assertNoForm(fs.readFileSync(s.auditFile, 'utf8'), value, 'the audit log');
  const argvRecord = readAuditFile(s.auditFile).records.find((x) => x.type === 'process.start' && JSON.stringify(x.argv).includes('/dev/null'));
  assert.match(JSON.stringify(argvRecord?.argv), /\[REDACTED:API_KEY\]/);
});

test('a file secret appears at /run/airlock/secrets/NAME with mode 0400 and is gone after revoke', async (t) => {
  const s = await startSession();
  t.after(() => s.close());
  const value = fakeValue();
  const info = await s.session.secrets.grant({ name: 'DB_PASSWORD', value, mode: 'file' }, 'test');
  assert.equal(info.path, '/run/airlock/secrets/DB_PASSWORD');
  const st = await s.run(['sh', '-c', 'stat -c %a /run/airlock/secrets/DB_PASSWORD; wc -c < /run/airlock/secrets/DB_PASSWORD; cat /run/airlock/secrets/DB_PASSWORD']);
  assert.equal(st.code, 0, st.stderr);
  const [mode, size, shown] = st.stdout.trim().split('\n');
  assert.equal(mode, '400');
  assert.equal(size!.trim(), String(value.length));
  assert.equal(shown, '[REDACTED:DB_PASSWORD]');
  // Not an env variable in file mode.
  const env = await s.run(['sh', '-c', 'env | grep -c DB_PASSWORD || true']);
  assert.equal(env.stdout.trim(), '0');
  await s.session.secrets.revoke('DB_PASSWORD', 'test');
  const gone = await s.run(['sh', '-c', 'test -e /run/airlock/secrets/DB_PASSWORD && echo present || echo absent']);
  assert.equal(gone.stdout.trim(), 'absent');
  const types = readAuditFile(s.auditFile).records.filter((x) => x.type.startsWith('secret.')).map((x) => x.type);
  assert.deepEqual(types, ['secret.grant', 'secret.revoke']);
});

test('an env secret reaches processes started after the grant, not after its revoke, and expires on its TTL with a record', async (t) => {
  const s = await startSession();
  t.after(() => s.close());
  const value = fakeValue();
  const before = await s.run(['sh', '-c', 'echo "[${TOKEN:-unset}]"']);
  assert.equal(before.stdout.trim(), '[unset]');
  await s.session.secrets.grant({ name: 'TOKEN', value, mode: 'env', ttlSeconds: 1 }, 'test');
  const during = await s.run(['sh', '-c', 'printf %s "$TOKEN" | wc -c']);
  assert.equal(during.stdout.trim(), String(value.length));
  await sleep(1300);
  const after = await s.run(['sh', '-c', 'echo "[${TOKEN:-unset}]"']);
  assert.equal(after.stdout.trim(), '[unset]');
  const expire = readAuditFile(s.auditFile).records.find((x) => x.type === 'secret.expire');
  assert.equal(expire?.name, 'TOKEN');
  assert.deepEqual(s.session.secrets.list(), []);
});

test('bad grants are refused with messages that name the secret and never its value', async (t) => {
  const s = await startSession();
  t.after(() => s.close());
  const value = fakeValue();
  const cases: [Record<string, unknown>, RegExp][] = [
    [{ name: '1BAD', value, mode: 'env' }, /invalid secret name "1BAD"/],
    [{ name: 'SHORT', value: 'abc', mode: 'env' }, /SHORT: its value is 3 bytes; Airlock needs at least 8/],
    [{ name: 'B', value, mode: 'brokered' }, /B: a brokered secret needs the hosts/],
    [{ name: 'H', value, mode: 'env', hosts: ['example.com'] }, /H: hosts apply only to brokered secrets/],
    [{ name: 'M', value, mode: 'weird' }, /M: mode must be one of env, file, brokered/],
    [{ name: 'T', value, mode: 'env', ttlSeconds: 0 }, /T: ttlSeconds must be a whole number/],
  ];
  for (const [g, re] of cases) {
    await assert.rejects(s.session.secrets.grant(g as never, 'test'), (e: Error) => {
      assert.match(e.message, re);
      assert.ok(!e.message.includes(value));
      return true;
    });
  }
  await assert.rejects(s.session.secrets.revoke('NOPE', 'test'), /has no live secret "NOPE" \(it has none\)/);
});

interface BrokerRig {
  s: TestSession;
  ca: CertificateAuthority;
  /** The service: HTTPS on loopback with a certificate of a test CA the proxy is told to trust. */
  port: number;
  seen: { url: string; authorization?: string; acceptEncoding?: string }[];
  /** Another allowed host (plain HTTP), where the placeholder must never arrive. */
  other: Awaited<ReturnType<typeof hostHttpServer>>;
}

async function brokerRig(t: { after(fn: () => unknown): void }): Promise<BrokerRig> {
  const dir = tempDir('airlock-ca-');
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  const ca = await CertificateAuthority.loadOrCreate(path.join(dir, 'runtime'));
  const serviceCa = await CertificateAuthority.loadOrCreate(path.join(dir, 'service'));
  const leaf = await serviceCa.leaf('127.0.0.1');
  const seen: BrokerRig['seen'] = [];
  const server = https.createServer({ key: leaf.key, cert: leaf.cert }, (req, res) => {
    seen.push({ url: req.url ?? '', authorization: req.headers.authorization, acceptEncoding: req.headers['accept-encoding'] });
    // An echo service: what it got comes back (the proxy must not hand the value to the sandbox).
    res.end(`you sent: ${req.headers.authorization ?? '(nothing)'}\n`);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.after(() => new Promise<void>((r) => {
    server.closeAllConnections();
    server.close(() => r());
  }));
  const port = (server.address() as net.AddressInfo).port;
  const other = await hostHttpServer();
  t.after(() => other.close());
  const s = await startSession({
    egress: { ca, upstreamCAs: [serviceCa.certPem] },
    policy: { network: { allow: [`127.0.0.1:${port}`, `127.0.0.1:${other.port}`] } },
  });
  t.after(() => s.close());
  return { s, ca, port, seen, other };
}

const CURL = ['curl', '-sS', '--max-time', '20'];

test('brokered: the sandbox sees only a placeholder, the HTTPS service gets the real value, and its echo comes back redacted', async (t) => {
  const { s, port, seen } = await brokerRig(t);
  const value = fakeValue('ghp');
  await s.session.secrets.grant({ name: 'GH_TOKEN', value, mode: 'brokered', hosts: [`127.0.0.1:${port}`] }, 'test');
  const env = await s.run(['sh', '-c', 'env | grep GH_TOKEN']);
  assert.match(env.stdout, /^GH_TOKEN=airlock-brokered-GH_TOKEN-[0-9a-f]{32}\n$/);
  const r = await s.run(['sh', '-c', `curl -sS --max-time 20 -H "Authorization: Bearer $GH_TOKEN" https://127.0.0.1:${port}/api`]);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(seen.at(-1)?.authorization, `Bearer ${value}`);
  assert.equal(seen.at(-1)?.acceptEncoding, undefined, 'compressed answers could not be scanned: the proxy drops Accept-Encoding after a substitution');
  assert.equal(r.stdout, 'you sent: Bearer [REDACTED:GH_TOKEN]\n');
  // Basic auth: the placeholder as the password, re-encoded with the value.
  const basic = await s.run(['sh', '-c', `curl -sS --max-time 20 -u "me:$GH_TOKEN" https://127.0.0.1:${port}/basic`]);
  assert.equal(basic.code, 0, basic.stderr);
  assert.equal(seen.at(-1)?.authorization, `Basic ${Buffer.from(`me:${value}`).toString('base64')}`);
  const uses = readAuditFile(s.auditFile).records.filter((x) => x.type === 'secret.use');
  assert.deepEqual(uses.map((u) => [u.name, u.host, u.port, u.method, u.path]), [['GH_TOKEN', '127.0.0.1', port, 'GET', '/api'], ['GH_TOKEN', '127.0.0.1', port, 'GET', '/basic']]);
  assertNoForm(fs.readFileSync(s.auditFile, 'utf8'), value, 'the audit log');
});

test('brokered: the placeholder sent to another host is refused before it gets there and audited as secret.blocked', async (t) => {
  const { s, port, other } = await brokerRig(t);
  await s.session.secrets.grant({ name: 'GH_TOKEN', value: fakeValue(), mode: 'brokered', hosts: [`127.0.0.1:${port}`] }, 'test');
  const header = await s.run(['sh', '-c', `${CURL.join(' ')} -o /dev/null -w '%{http_code}' -H "X-Leak: $GH_TOKEN" http://127.0.0.1:${other.port}/`]);
  assert.equal(header.stdout, '403');
  const inUrl = await s.run(['sh', '-c', `${CURL.join(' ')} -o /dev/null -w '%{http_code}' "http://127.0.0.1:${other.port}/?t=$GH_TOKEN"`]);
  assert.equal(inUrl.stdout, '403');
  const asName = await s.run(['sh', '-c', `${CURL.join(' ')} -o /dev/null -w '%{http_code}' "https://$GH_TOKEN.example.com/"`]);
  assert.notEqual(asName.stdout, '200');
  assert.equal(other.requests.length, 0, 'the other host received a request carrying the placeholder');
  const blocked = readAuditFile(s.auditFile).records.filter((x) => x.type === 'secret.blocked');
  assert.deepEqual(blocked.map((b) => [b.name, b.reason]), [['GH_TOKEN', 'wrong-host'], ['GH_TOKEN', 'wrong-host'], ['GH_TOKEN', 'host-name']]);
  const body = await s.run(['sh', '-c', `${CURL.join(' ')} -H "X-Leak: $GH_TOKEN" http://127.0.0.1:${other.port}/`]);
  assert.match(body.stdout, /carries the placeholder of the brokered secret GH_TOKEN, which may only be sent to 127\.0\.0\.1:\d+/);
});

test('brokered: after the TTL the same request fails with a 403 naming the expired lease, and a revoke takes effect at once', async (t) => {
  const { s, port, seen } = await brokerRig(t);
  await s.session.secrets.grant({ name: 'SHORT', value: fakeValue(), mode: 'brokered', hosts: [`127.0.0.1:${port}`], ttlSeconds: 1 }, 'test');
  const cmd = ['sh', '-c', `${CURL.join(' ')} -w ' %{http_code}' -H "Authorization: Bearer $SHORT" https://127.0.0.1:${port}/x`];
  const ok = await s.run(cmd);
  assert.match(ok.stdout, / 200$/);
  const served = seen.length;
  await sleep(1300);
  // A process started before the expiry still holds the placeholder (new ones do not get it).
  const ph = s.session.secrets.brokered().ended[0]!.placeholder!;
  const late = await s.run(['sh', '-c', `${CURL.join(' ')} -w ' %{http_code}' -H "Authorization: Bearer ${ph}" https://127.0.0.1:${port}/x`]);
  assert.match(late.stdout, /whose lease expired at .* 403$/s);
  assert.equal(seen.length, served, 'the service was reached after the lease expired');

  await s.session.secrets.grant({ name: 'LIVE', value: fakeValue(), mode: 'brokered', hosts: [`127.0.0.1:${port}`] }, 'test');
  const live = await s.run(['sh', '-c', `${CURL.join(' ')} -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $LIVE" https://127.0.0.1:${port}/y`]);
  assert.equal(live.stdout, '200');
  const ph2 = s.session.secrets.env().LIVE!;
  await s.session.secrets.revoke('LIVE', 'test');
  const revoked = await s.run(['sh', '-c', `${CURL.join(' ')} -w ' %{http_code}' -H "Authorization: Bearer ${ph2}" https://127.0.0.1:${port}/y`]);
  assert.match(revoked.stdout, /whose lease was revoked.* 403$/s);
  const reasons = readAuditFile(s.auditFile).records.filter((x) => x.type === 'secret.blocked').map((x) => x.reason);
  assert.deepEqual(reasons, ['expired', 'revoked']);
});

test('other HTTPS hosts stay end-to-end tunnels: the runtime CA is trusted inside but only brokered hosts are intercepted, and its key is not visible', async (t) => {
  const { s, ca, port } = await brokerRig(t);
  // No brokered secret names the service: the tunnel is not intercepted, so the client
  // sees the service's own certificate, which only the proxy was told to trust.
  const r = await s.run([...CURL, '-o', '/dev/null', '-w', '%{http_code}', `https://127.0.0.1:${port}/`]);
  assert.notEqual(r.stdout, '200');
  assert.match(r.stderr, /certificate|SSL/i);
  const inside = await s.run(['sh', '-c', `cat ${ca.dir}/ca-key.pem; grep -c "PRIVATE KEY" /run/airlock-ca.pem; echo "SSL_CERT_FILE=$SSL_CERT_FILE"`]);
  assert.match(inside.stderr, /No such file or directory/);
  assert.match(inside.stdout, /^0\nSSL_CERT_FILE=\/run\/airlock-ca.pem\n$/);
  const bundle = await s.run(['sh', '-c', 'grep -c "BEGIN CERTIFICATE" /run/airlock-ca.pem']);
  assert.ok(Number(bundle.stdout) > 10, 'the bundle keeps the system roots');
});
