/**
 * The per-runtime CA (runtime/secrets/ca.ts): its files and their modes, reloading,
 * refusing damaged or exposed files, and leaves that real TLS clients (Node, curl,
 * Python's ssl with VERIFY_X509_STRICT) accept for the right name and reject for a
 * wrong one. Every test works in a fresh temp dir, never the user's state dir.
 */
import { test, after } from 'node:test';
import * as assert from 'node:assert/strict';
import { execFile, spawnSync } from 'node:child_process';
import { X509Certificate, webcrypto } from 'node:crypto';
import * as fs from 'node:fs';
import * as https from 'node:https';
import { isIP } from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import * as tls from 'node:tls';
import 'reflect-metadata';
import * as x509 from '@peculiar/x509';
import { CertificateAuthority } from '../../runtime/secrets/ca';
import { SYSTEM_BUNDLES } from '../../runtime/secrets/trust';

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'airlock-ca-test-'));
after(() => fs.rmSync(root, { recursive: true, force: true }));
let n = 0;
/** A fresh, not yet existing CA directory. */
const freshDir = (): string => path.join(root, `t${n++}`, 'ca');
const mode = (file: string): number => fs.statSync(file).mode & 0o777;
/** Milliseconds since T0. */
const ms = (t0: bigint): string => (Number(process.hrtime.bigint() - t0) / 1e6).toFixed(1);

/**
 * An HTTPS server on 127.0.0.1 answering "ok". With a SecureContext it serves that
 * one identity whatever SNI a client sends (so a client asking for another name must
 * refuse it); with PEM it serves those to clients that send no SNI (IP literals).
 */
async function serve(identity: tls.SecureContext | { key: string; cert: string }): Promise<{ port: number; close(): void }> {
  const options: https.ServerOptions = 'key' in identity
    ? { key: identity.key, cert: identity.cert }
    : { SNICallback: (_name, cb) => cb(null, identity) };
  const server = https.createServer(options, (_req, res) => res.end('ok'));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { port: (server.address() as { port: number }).port, close: () => server.close() };
}

/** Connects to 127.0.0.1:PORT trusting only CA_PEM and checking NAME: 'accepted' or the error code. */
function nodeClient(port: number, caPem: string, name: string): Promise<string> {
  return new Promise((resolve) => {
    const sock = tls.connect({ host: '127.0.0.1', port, ca: caPem, servername: isIP(name) ? undefined : name,
      checkServerIdentity: (_host, cert) => tls.checkServerIdentity(name, cert) });
    sock.once('secureConnect', () => { sock.destroy(); resolve('accepted'); });
    sock.once('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? e.message));
  });
}

function run(cmd: string, args: string[]): Promise<{ code: number; out: string; err: string }> {
  return new Promise((resolve) => {
    execFile(cmd, args, { timeout: 20_000 }, (e, out, err) =>
      resolve({ code: e ? (typeof e.code === 'number' ? e.code : -1) : 0, out, err }));
  });
}
const missing = (cmd: string): boolean => spawnSync(cmd, ['--version']).error !== undefined;

test('creating a CA writes the directory 0700, the key 0600 and the certificate 0644, and nothing else', async (t) => {
  const dir = freshDir();
  const t0 = process.hrtime.bigint();
  const ca = await CertificateAuthority.loadOrCreate(dir);
  t.diagnostic(`CA creation took ${ms(t0)} ms`);
  assert.equal(mode(dir), 0o700);
  assert.equal(mode(path.join(dir, 'ca-key.pem')), 0o600);
  assert.equal(mode(ca.certPath), 0o644);
  assert.equal(ca.certPath, path.join(dir, 'ca.pem'));
  assert.deepEqual(fs.readdirSync(dir).sort(), ['ca-key.pem', 'ca.pem'], 'no lock or temp file is left behind');
  assert.equal(fs.readFileSync(ca.certPath, 'utf8'), ca.certPem);
});

test('the CA certificate is a P-256 CA limited to signing leaves, valid a year and backdated an hour', async () => {
  const ca = await CertificateAuthority.loadOrCreate(freshDir());
  const cert = new X509Certificate(ca.certPem);
  assert.equal(cert.ca, true);
  assert.match(cert.subject, new RegExp(`CN=Airlock sandbox CA \\(.*, uid ${process.getuid!()}\\)`));
  assert.equal(cert.publicKey.asymmetricKeyDetails?.namedCurve, 'prime256v1');
  assert.equal(cert.serialNumber.length, 32, 'a 16-byte serial');
  assert.ok(parseInt(cert.serialNumber[0], 16) < 8, 'the serial is positive');
  const from = Date.parse(cert.validFrom);
  const to = Date.parse(cert.validTo);
  assert.ok(Math.abs(Date.now() - 3600_000 - from) < 60_000, `backdated an hour: ${cert.validFrom}`);
  assert.ok(Math.abs(to - from - (365 * 24 + 1) * 3600_000) < 60_000, `valid a year: ${cert.validTo}`);
  const parsed = new x509.X509Certificate(ca.certPem);
  const bc = parsed.getExtension(x509.BasicConstraintsExtension)!;
  assert.deepEqual([bc.ca, bc.pathLength, bc.critical], [true, 0, true]);
  const ku = parsed.getExtension(x509.KeyUsagesExtension)!;
  assert.deepEqual([ku.usages, ku.critical], [x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true]);
  assert.ok(parsed.getExtension(x509.SubjectKeyIdentifierExtension)?.keyId);
});

test('loading an existing CA gives the same certificate and signing key', async () => {
  const dir = freshDir();
  const first = await CertificateAuthority.loadOrCreate(dir);
  const key = fs.readFileSync(path.join(dir, 'ca-key.pem'), 'utf8');
  const second = await CertificateAuthority.loadOrCreate(dir);
  assert.equal(second.certPem, first.certPem);
  assert.equal(fs.readFileSync(path.join(dir, 'ca-key.pem'), 'utf8'), key);
  const leaf = new X509Certificate((await second.leaf('reload.example')).cert);
  assert.ok(leaf.verify(new X509Certificate(first.certPem).publicKey), 'the reloaded CA signs with the same key');
});

test('a leaf names its host in the SAN, is no CA, serves TLS only, and lasts 7 days backdated an hour', async (t) => {
  const ca = await CertificateAuthority.loadOrCreate(freshDir());
  const t0 = process.hrtime.bigint();
  const { cert } = await ca.leaf('Api.Example.COM.');
  const first = ms(t0);
  const t1 = process.hrtime.bigint();
  await ca.leaf('second.example');
  t.diagnostic(`first leaf took ${first} ms, a second ${ms(t1)} ms`);
  const leaf = new X509Certificate(cert);
  assert.equal(leaf.ca, false);
  assert.equal(leaf.subjectAltName, 'DNS:api.example.com', 'the host is normalized');
  assert.equal(leaf.checkHost('api.example.com'), 'api.example.com');
  assert.deepEqual(leaf.keyUsage, ['1.3.6.1.5.5.7.3.1']);
  assert.ok(leaf.checkIssued(new X509Certificate(ca.certPem)));
  const from = Date.parse(leaf.validFrom);
  assert.ok(Math.abs(Date.now() - 3600_000 - from) < 60_000, `backdated an hour: ${leaf.validFrom}`);
  assert.ok(Math.abs(Date.parse(leaf.validTo) - from - (7 * 24 + 1) * 3600_000) < 60_000, leaf.validTo);
  const parsed = new x509.X509Certificate(cert);
  const caSki = new x509.X509Certificate(ca.certPem).getExtension(x509.SubjectKeyIdentifierExtension)!.keyId;
  assert.equal(parsed.getExtension(x509.AuthorityKeyIdentifierExtension)?.keyId, caSki);
  assert.ok(parsed.getExtension(x509.SubjectKeyIdentifierExtension)?.keyId);
  assert.equal(parsed.getExtension(x509.BasicConstraintsExtension)?.critical, true);
  assert.equal(parsed.getExtension(x509.KeyUsagesExtension)?.usages, x509.KeyUsageFlags.digitalSignature);
});

test('a Node client trusting only the CA accepts the localhost leaf and rejects it for another name', async () => {
  const ca = await CertificateAuthority.loadOrCreate(freshDir());
  const srv = await serve(await ca.secureContext('localhost'));
  try {
    assert.equal(await nodeClient(srv.port, ca.certPem, 'localhost'), 'accepted');
    assert.equal(await nodeClient(srv.port, ca.certPem, 'wrong.example'), 'ERR_TLS_CERT_ALTNAME_INVALID');
    const other = await CertificateAuthority.loadOrCreate(freshDir());
    assert.equal(await nodeClient(srv.port, other.certPem, 'localhost'), 'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
      'another CA does not vouch for this leaf');
  } finally {
    srv.close();
  }
});

test('leaves for IPv4 and IPv6 literals carry IP SANs that a Node client verifies', async () => {
  const ca = await CertificateAuthority.loadOrCreate(freshDir());
  const v4 = await ca.leaf('127.0.0.1');
  assert.equal(new X509Certificate(v4.cert).subjectAltName, 'IP Address:127.0.0.1');
  const srv = await serve(v4);
  try {
    assert.equal(await nodeClient(srv.port, ca.certPem, '127.0.0.1'), 'accepted');
    assert.equal(await nodeClient(srv.port, ca.certPem, '127.0.0.2'), 'ERR_TLS_CERT_ALTNAME_INVALID');
  } finally {
    srv.close();
  }
  const v6 = new X509Certificate((await ca.leaf('[0:0::1]')).cert);
  assert.equal(v6.checkIP('::1'), '::1');
});

test('curl trusting only ca.pem accepts the localhost leaf and rejects it for another name', async (t) => {
  if (missing('curl')) return t.skip('curl is not installed: apt-get install curl to run this check');
  const ca = await CertificateAuthority.loadOrCreate(freshDir());
  const srv = await serve(await ca.secureContext('localhost'));
  try {
    const ok = await run('curl', ['-sS', '--cacert', ca.certPath, `https://localhost:${srv.port}/`]);
    assert.deepEqual([ok.code, ok.out], [0, 'ok'], ok.err);
    const wrong = await run('curl', ['-sS', '--cacert', ca.certPath, '--resolve', `wrong.example:${srv.port}:127.0.0.1`,
      `https://wrong.example:${srv.port}/`]);
    assert.equal(wrong.code, 60, `curl exits 60 (peer certificate not OK): ${wrong.err}`);
    assert.match(wrong.err, /wrong\.example/);
  } finally {
    srv.close();
  }
});

// Python 3.13 turns VERIFY_X509_STRICT on by default; setting it here checks the same
// rules (AKI present, critical CA basicConstraints, ...) on older Pythons.
const PY_CLIENT = `
import socket, ssl, sys
ctx = ssl.create_default_context(cafile=sys.argv[1])
ctx.verify_flags |= ssl.VERIFY_X509_STRICT
try:
    with ctx.wrap_socket(socket.create_connection(("127.0.0.1", int(sys.argv[3]))), server_hostname=sys.argv[2]):
        print("accepted")
except ssl.SSLCertVerificationError as e:
    print("rejected:", e.verify_message); sys.exit(3)
`;

test("Python's ssl with VERIFY_X509_STRICT accepts the localhost leaf and rejects it for another name", async (t) => {
  if (missing('python3')) return t.skip('python3 is not installed: apt-get install python3 to run this check');
  const ca = await CertificateAuthority.loadOrCreate(freshDir());
  const srv = await serve(await ca.secureContext('localhost'));
  try {
    const ok = await run('python3', ['-c', PY_CLIENT, ca.certPath, 'localhost', String(srv.port)]);
    assert.deepEqual([ok.code, ok.out.trim()], [0, 'accepted'], ok.err);
    const wrong = await run('python3', ['-c', PY_CLIENT, ca.certPath, 'wrong.example', String(srv.port)]);
    assert.equal(wrong.code, 3, wrong.out + wrong.err);
    assert.match(wrong.out, /^rejected: Hostname mismatch.*'wrong\.example'/);
  } finally {
    srv.close();
  }
});

test('twenty concurrent leaf calls for one host share one certificate', async () => {
  const ca = await CertificateAuthority.loadOrCreate(freshDir());
  const leaves = await Promise.all(Array.from({ length: 20 }, () => ca.leaf('same.example')));
  assert.equal(new Set(leaves.map((l) => l.cert)).size, 1);
  assert.equal((await ca.leaf('SAME.example.')).cert, leaves[0].cert, 'spellings of one host share the cache');
  const contexts = await Promise.all([ca.secureContext('same.example'), ca.secureContext('same.example')]);
  assert.equal(contexts[0], contexts[1]);
});

test('a host that cannot be a name or an address is refused with an error naming it', async () => {
  const ca = await CertificateAuthority.loadOrCreate(freshDir());
  await assert.rejects(ca.leaf('bad host!'), /host "bad host!" is not valid/);
});

test('a key file readable by group or others is refused with an error naming it and the fix', async () => {
  const dir = freshDir();
  await CertificateAuthority.loadOrCreate(dir);
  const key = path.join(dir, 'ca-key.pem');
  fs.chmodSync(key, 0o644);
  await assert.rejects(CertificateAuthority.loadOrCreate(dir), (e: Error) => {
    assert.equal(e.message, `${key} is accessible to group or others (mode 0644), so the key may have been read: ` +
      `remove ${dir} to make a new CA (running sandboxes then need restarting)`);
    return true;
  });
});

test('a corrupted ca.pem is refused with an error naming it and the fix', async () => {
  const dir = freshDir();
  const ca = await CertificateAuthority.loadOrCreate(dir);
  fs.writeFileSync(ca.certPath, ca.certPem.replace(/[A-Za-z]{8}/, '!!!!!!!!'));
  await assert.rejects(CertificateAuthority.loadOrCreate(dir),
    new RegExp(`^Error: ${ca.certPath} is not a readable certificate \\(.*\\): remove ${dir} to make a new CA`));
  fs.writeFileSync(path.join(dir, 'ca-key.pem'), 'garbage', { mode: 0o600 });
  await assert.rejects(CertificateAuthority.loadOrCreate(dir), new RegExp(`^Error: ${dir}/ca-key.pem is not a readable private key`));
});

test('a ca.pem that belongs to another key is refused with an error naming both files', async () => {
  const dir = freshDir();
  await CertificateAuthority.loadOrCreate(dir);
  const other = await CertificateAuthority.loadOrCreate(freshDir());
  fs.writeFileSync(path.join(dir, 'ca.pem'), other.certPem);
  await assert.rejects(CertificateAuthority.loadOrCreate(dir),
    new RegExp(`${dir}/ca.pem does not belong to ${dir}/ca-key.pem \\(their public keys differ\\): remove ${dir}`));
});

test('a CA with fewer than 30 days left is replaced by a new one when loaded', async () => {
  const dir = freshDir();
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  const alg = { name: 'ECDSA', namedCurve: 'P-256' };
  const keys = await webcrypto.subtle.generateKey(alg, true, ['sign', 'verify']) as webcrypto.CryptoKeyPair;
  const old = await x509.X509CertificateGenerator.createSelfSigned({
    name: 'CN=old', notBefore: new Date(), notAfter: new Date(Date.now() + 29 * 86400_000), keys,
    extensions: [new x509.BasicConstraintsExtension(true, 0, true)],
  }, webcrypto);
  fs.writeFileSync(path.join(dir, 'ca.pem'), old.toString('pem'));
  const pkcs8 = await webcrypto.subtle.exportKey('pkcs8', keys.privateKey);
  fs.writeFileSync(path.join(dir, 'ca-key.pem'), x509.PemConverter.encode(pkcs8, 'PRIVATE KEY'), { mode: 0o600 });
  const ca = await CertificateAuthority.loadOrCreate(dir);
  const renewed = new X509Certificate(ca.certPem);
  assert.match(renewed.subject, /Airlock sandbox CA/);
  assert.ok(Date.parse(renewed.validTo) > Date.now() + 300 * 86400_000);
  assert.equal(fs.readFileSync(ca.certPath, 'utf8'), ca.certPem);
  assert.equal(mode(path.join(dir, 'ca-key.pem')), 0o600);
});

test('a CA whose second rename was interrupted is completed on load', async () => {
  const dir = freshDir();
  await CertificateAuthority.loadOrCreate(dir);
  const next = await CertificateAuthority.loadOrCreate(freshDir());
  // The state between the commit's two renames: new key in place, new cert still ".new".
  fs.copyFileSync(path.join(next.dir, 'ca-key.pem'), path.join(dir, 'ca-key.pem'));
  fs.writeFileSync(path.join(dir, 'ca.pem.new'), next.certPem);
  const ca = await CertificateAuthority.loadOrCreate(dir);
  assert.equal(ca.certPem, next.certPem);
  assert.deepEqual(fs.readdirSync(dir).sort(), ['ca-key.pem', 'ca.pem']);
});

test('concurrent loads of a fresh directory agree on one CA, and a lock left by a dead process is taken over', async () => {
  const dir = freshDir();
  const cas = await Promise.all(Array.from({ length: 5 }, () => CertificateAuthority.loadOrCreate(dir)));
  assert.equal(new Set(cas.map((c) => c.certPem)).size, 1);
  fs.writeFileSync(path.join(dir, 'ca.lock'), '2147483646'); // no such pid
  assert.equal((await CertificateAuthority.loadOrCreate(dir)).certPem, cas[0].certPem);
  assert.ok(!fs.existsSync(path.join(dir, 'ca.lock')));
});

test('bundle.pem holds the system roots followed by this CA, mode 0644', async () => {
  const ca = await CertificateAuthority.loadOrCreate(freshDir());
  const bundlePath = ca.writeBundle();
  assert.equal(bundlePath, path.join(ca.dir, 'bundle.pem'));
  assert.equal(mode(bundlePath), 0o644);
  const bundle = fs.readFileSync(bundlePath, 'utf8');
  assert.ok(bundle.endsWith(ca.certPem), 'this CA comes last');
  const system = SYSTEM_BUNDLES.find((f) => fs.existsSync(f));
  const firstRoot = system ? /-----BEGIN CERTIFICATE-----[^-]+-----END CERTIFICATE-----/.exec(fs.readFileSync(system, 'utf8'))![0]
    : tls.rootCertificates[0];
  assert.ok(bundle.includes(firstRoot), 'a system root is in the bundle');
  assert.ok(bundle.split('BEGIN CERTIFICATE').length > 50, 'all the system roots are');
  assert.equal(ca.writeBundle(), bundlePath, 'writing again replaces the file');
  assert.deepEqual(fs.readdirSync(ca.dir).sort(), ['bundle.pem', 'ca-key.pem', 'ca.pem']);
  const srv = await serve(await ca.secureContext('localhost'));
  try {
    assert.equal(await nodeClient(srv.port, bundle, 'localhost'), 'accepted', 'the bundle trusts intercepted hosts');
  } finally {
    srv.close();
  }
});
