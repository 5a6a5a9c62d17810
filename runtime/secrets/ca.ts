/**
 * The per-runtime certificate authority the egress proxy uses to intercept TLS for the
 * hosts a brokered secret is granted for (and only those): it issues a leaf
 * certificate per host, and writes a CA bundle that sandboxed tools are pointed at.
 *
 * Safety argument: the CA key is the one thing that lets the proxy impersonate any
 * site to the sandbox, so it lives only in the runtime's state directory (0700, key
 * 0600, created with O_EXCL so no one else's file is ever adopted) and is never
 * mounted into a sandbox; only ca.pem / bundle.pem are. A key file that group or
 * others could read is refused, since its secrecy can no longer be assumed. The CA
 * has pathLen 0, so even a leaked leaf key cannot mint further certificates.
 *
 * LIMITATION: the CA is checked for renewal only when it is loaded; a runtime that
 * runs until its CA expires must be restarted. Renewal makes a new CA, so sandboxes
 * given the old bundle stop trusting intercepted hosts until they are restarted.
 */
// tsyringe, @peculiar/x509's internal DI container, throws at load time unless the
// Reflect metadata API exists. The polyfill only adds Reflect.getMetadata & co.
import 'reflect-metadata';
import * as x509 from '@peculiar/x509';
import { createPrivateKey, createPublicKey, randomBytes, webcrypto, type KeyObject } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as tls from 'node:tls';
import { normalizeHost } from '../egress/address';
import { SYSTEM_BUNDLES } from './trust';

type CryptoKey = webcrypto.CryptoKey;

const HOUR = 3600_000;
const DAY = 24 * HOUR;
/** ECDSA P-256: a key pair takes well under a millisecond, so a leaf per host is cheap. */
const KEY_ALG = { name: 'ECDSA', namedCurve: 'P-256' } as const;
const CA_LIFETIME = 365 * DAY;
const CA_RENEW_BEFORE = 30 * DAY;
const LEAF_LIFETIME = 7 * DAY;
const LEAF_RENEW_BEFORE = HOUR;
/** Backdating absorbs clock skew between the host and a sandbox or VM guest. */
const BACKDATE = HOUR;
/** Intercepted hosts are the few with a brokered grant; the cap only bounds memory. */
const LEAF_CACHE_MAX = 256;
const LOCK_WAIT_MS = 10_000;


interface CaMaterial { certPem: string; cert: x509.X509Certificate; signingKey: CryptoKey }
export interface LeafPem { key: string; cert: string }
interface Leaf extends LeafPem { notAfter: number; context?: tls.SecureContext }

export class CertificateAuthority {
  /** DIR/ca.pem: the CA certificate alone, safe to show to (and mount into) a sandbox. */
  readonly certPath: string;
  readonly certPem: string;
  private readonly cert: x509.X509Certificate;
  private readonly signingKey: CryptoKey;
  /** Leaf promises by normalized host, least recently used first. */
  private readonly leaves = new Map<string, Promise<Leaf>>();

  private constructor(readonly dir: string, material: CaMaterial) {
    this.certPath = path.join(dir, 'ca.pem');
    this.certPem = material.certPem;
    this.cert = material.cert;
    this.signingKey = material.signingKey;
  }

  /**
   * Loads DIR/ca.pem + DIR/ca-key.pem, or creates them (DIR 0700, key 0600, cert 0644).
   * Makes a new CA when fewer than 30 days of validity are left. Throws an Error naming
   * the file and the fix for a key readable by group/others, an unparsable file, or a
   * certificate that does not belong to the key.
   */
  static async loadOrCreate(dir: string): Promise<CertificateAuthority> {
    const abs = path.resolve(dir);
    ensurePrivateDir(abs);
    // The lock keeps two runtimes starting at once from each writing half a CA pair.
    return withLock(abs, async () => {
      finishInterruptedCommit(abs);
      const loaded = await load(abs);
      const fresh = loaded && loaded.cert.notAfter.getTime() - Date.now() >= CA_RENEW_BEFORE;
      return new CertificateAuthority(abs, fresh ? loaded : await create(abs));
    });
  }

  /**
   * A TLS server identity for HOST (a DNS name, or an IP literal → IP SAN), in PEM,
   * cached per host and reissued when under an hour is left. HOST is normalized as the
   * egress proxy does it (case, trailing dot, IDN, IPv4-mapped IPv6 → IPv4), and one
   * that cannot be a host is refused with an error naming it.
   */
  async leaf(host: string): Promise<LeafPem> {
    const { key, cert } = await this.issued(host);
    return { key, cert };
  }

  /** A tls.SecureContext serving leaf(HOST), made once per leaf. */
  async secureContext(host: string): Promise<tls.SecureContext> {
    const leaf = await this.issued(host);
    return (leaf.context ??= tls.createSecureContext({ key: leaf.key, cert: leaf.cert }));
  }

  /**
   * Writes DIR/bundle.pem (0644, atomically): the system CA bundle followed by this CA,
   * so tools given it as SSL_CERT_FILE & co. still verify sites that are not intercepted.
   */
  writeBundle(): string {
    let system = tls.rootCertificates.join('\n');
    for (const file of SYSTEM_BUNDLES) {
      try {
        const text = fs.readFileSync(file, 'utf8');
        if (text.includes('-----BEGIN CERTIFICATE-----')) { system = text; break; }
      } catch { /* not on this distribution: try the next */ }
    }
    const bundlePath = path.join(this.dir, 'bundle.pem');
    const label = `# ${this.cert.subject} (Airlock: intercepts only hosts with a brokered secret)\n`;
    const tmp = `${bundlePath}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`;
    writeExclusive(tmp, system.trimEnd() + '\n\n' + label + this.certPem, 0o644);
    fs.renameSync(tmp, bundlePath);
    return bundlePath;
  }

  /**
   * The cached leaf for HOST, issuing one when there is none or it has under an hour
   * left. The promise is cached, so concurrent callers share one generation.
   */
  private async issued(host: string): Promise<Leaf> {
    const h = normalizeHost(host);
    const key = h.kind === 'ip' ? h.address : h.name;
    const cached = this.leaves.get(key);
    if (!cached) return this.issue(key, h.kind === 'ip');
    this.leaves.delete(key); // re-insert: Map order is the LRU order
    this.leaves.set(key, cached);
    const leaf = await cached;
    if (leaf.notAfter - Date.now() >= LEAF_RENEW_BEFORE) return leaf;
    const current = this.leaves.get(key);
    return current && current !== cached ? current : this.issue(key, h.kind === 'ip');
  }

  private issue(host: string, isIp: boolean): Promise<Leaf> {
    const p = this.generateLeaf(host, isIp);
    this.leaves.set(host, p);
    // A failed generation is not cached, so the next call tries again.
    p.catch(() => { if (this.leaves.get(host) === p) this.leaves.delete(host); });
    while (this.leaves.size > LEAF_CACHE_MAX) this.leaves.delete(this.leaves.keys().next().value!);
    return p;
  }

  private async generateLeaf(host: string, isIp: boolean): Promise<Leaf> {
    const now = Date.now();
    const caEnd = this.cert.notAfter.getTime();
    if (caEnd - now < LEAF_RENEW_BEFORE) {
      throw new Error(`the Airlock CA in ${this.dir} expires at ${this.cert.notAfter.toISOString()}: restart the runtime to renew it`);
    }
    const keys = (await webcrypto.subtle.generateKey(KEY_ALG, true, ['sign', 'verify'])) as webcrypto.CryptoKeyPair;
    const caKeyId = this.cert.getExtension(x509.SubjectKeyIdentifierExtension)?.keyId
      ?? (await x509.SubjectKeyIdentifierExtension.create(this.cert.publicKey, false, webcrypto)).keyId;
    const notAfter = Math.min(now + LEAF_LIFETIME, caEnd); // never outlive the issuer
    const cert = await x509.X509CertificateGenerator.create({
      serialNumber: randomSerial(),
      // CN is informational (clients match the SAN) and limited to 64 characters.
      subject: [{ CN: [host.length <= 64 ? host : 'Airlock intercepted host'] }],
      issuer: this.cert.subjectName,
      notBefore: new Date(now - BACKDATE),
      notAfter: new Date(notAfter),
      publicKey: keys.publicKey,
      signingKey: this.signingKey,
      extensions: [
        new x509.BasicConstraintsExtension(false, undefined, true),
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
        new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth], false),
        new x509.SubjectAlternativeNameExtension([{ type: isIp ? 'ip' : 'dns', value: host }], false),
        new x509.AuthorityKeyIdentifierExtension(caKeyId, false),
        await x509.SubjectKeyIdentifierExtension.create(keys.publicKey, false, webcrypto),
      ],
    }, webcrypto);
    const pkcs8 = await webcrypto.subtle.exportKey('pkcs8', keys.privateKey);
    return { key: x509.PemConverter.encode(pkcs8, 'PRIVATE KEY'), cert: cert.toString('pem') + '\n', notAfter };
  }
}

/** 16 random bytes as hex, top bit clear (positive) and first byte non-zero (exactly 16 in DER). */
function randomSerial(): string {
  const b = randomBytes(16);
  b[0] = (b[0] & 0x7f) | 0x01;
  return b.toString('hex');
}

const files = (dir: string) => ({
  cert: path.join(dir, 'ca.pem'),
  key: path.join(dir, 'ca-key.pem'),
  certNew: path.join(dir, 'ca.pem.new'),
  keyNew: path.join(dir, 'ca-key.pem.new'),
  lock: path.join(dir, 'ca.lock'),
});

function myUid(): number { return process.getuid?.() ?? -1; }

/** Makes DIR (0700) or checks that an existing one is a directory of ours, tightening it to 0700. */
function ensurePrivateDir(dir: string): void {
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  const st = fs.lstatSync(dir);
  if (!st.isDirectory()) throw new Error(`${dir} is not a directory: remove it so Airlock can make its CA there`);
  if (st.uid !== myUid()) throw new Error(`${dir} belongs to uid ${st.uid}, not to you: remove it, or use a state directory of your own`);
  if ((st.mode & 0o777) !== 0o700) fs.chmodSync(dir, 0o700); // only ever removes access
}

/** Runs FN holding DIR/ca.lock (O_EXCL); a lock whose process is gone is taken over. */
async function withLock<T>(dir: string, fn: () => Promise<T>): Promise<T> {
  const { lock } = files(dir);
  const deadline = Date.now() + LOCK_WAIT_MS;
  for (;;) {
    try {
      fs.writeFileSync(lock, String(process.pid), { flag: 'wx', mode: 0o600 });
      break;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
    }
    const holder = Number(readOr(lock, ''));
    // LIMITATION: two runtimes finding the same stale lock at the same instant can both
    // take it over; that needs a crash during creation followed by a simultaneous start.
    if (holder > 0 && !processAlive(holder)) { fs.rmSync(lock, { force: true }); continue; }
    if (Date.now() > deadline) {
      throw new Error(`${lock} has been held by pid ${holder || '?'} for over ${LOCK_WAIT_MS / 1000} s: if no Airlock runtime is running, remove ${lock}`);
    }
    await new Promise((r) => setTimeout(r, 20));
  }
  try {
    return await fn();
  } finally {
    fs.rmSync(lock, { force: true });
  }
}

function processAlive(pid: number): boolean {
  try { process.kill(pid, 0); return true; } catch (e) { return (e as NodeJS.ErrnoException).code === 'EPERM'; }
}

function readOr(file: string, fallback: string): string {
  try { return fs.readFileSync(file, 'utf8'); } catch { return fallback; }
}

/**
 * A CA is committed by renaming ca-key.pem.new (written after ca.pem.new) into place,
 * then ca.pem.new. A ca.pem.new left without its key file means the runtime stopped
 * between the two renames: finish the second. Anything else left over is discarded.
 */
function finishInterruptedCommit(dir: string): void {
  const f = files(dir);
  if (fs.existsSync(f.certNew) && !fs.existsSync(f.keyNew)) fs.renameSync(f.certNew, f.cert);
  fs.rmSync(f.keyNew, { force: true });
  fs.rmSync(f.certNew, { force: true });
}

/** Creates FILE with O_EXCL and exactly MODE (umask aside), writes DATA and syncs it. */
function writeExclusive(file: string, data: string, mode: number): void {
  const fd = fs.openSync(file, fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_EXCL, mode);
  try {
    fs.fchmodSync(fd, mode);
    fs.writeSync(fd, data);
    fs.fsyncSync(fd);
  } catch (e) {
    fs.closeSync(fd);
    fs.rmSync(file, { force: true });
    throw e;
  }
  fs.closeSync(fd);
}

const REMAKE = (dir: string) => `remove ${dir} to make a new CA (running sandboxes then need restarting)`;

/** The CA in DIR, or null when there is none yet. */
async function load(dir: string): Promise<CaMaterial | null> {
  const f = files(dir);
  const haveKey = fs.existsSync(f.key);
  const haveCert = fs.existsSync(f.cert);
  if (!haveKey && !haveCert) return null;
  if (!haveKey) throw new Error(`${f.key} is missing but ${f.cert} exists: ${REMAKE(dir)}`);
  if (!haveCert) throw new Error(`${f.cert} is missing but ${f.key} exists: ${REMAKE(dir)}`);

  const keyPem = readPrivateFile(f.key, dir);
  let keyObject: KeyObject;
  try {
    keyObject = createPrivateKey(keyPem);
  } catch (e) {
    throw new Error(`${f.key} is not a readable private key (${(e as Error).message}): ${REMAKE(dir)}`);
  }
  let signingKey: CryptoKey;
  try {
    const der = keyObject.export({ type: 'pkcs8', format: 'der' });
    signingKey = await webcrypto.subtle.importKey('pkcs8', der, KEY_ALG, false, ['sign']);
  } catch (e) {
    throw new Error(`${f.key} is not an ECDSA P-256 key (${(e as Error).message}): ${REMAKE(dir)}`);
  }

  const certPem = fs.readFileSync(f.cert, 'utf8');
  let cert: x509.X509Certificate;
  try {
    cert = new x509.X509Certificate(certPem);
  } catch (e) {
    throw new Error(`${f.cert} is not a readable certificate (${(e as Error).message}): ${REMAKE(dir)}`);
  }
  const certSpki = Buffer.from(cert.publicKey.rawData);
  const keySpki = createPublicKey(keyObject).export({ type: 'spki', format: 'der' });
  if (!certSpki.equals(keySpki)) {
    throw new Error(`${f.cert} does not belong to ${f.key} (their public keys differ): ${REMAKE(dir)}`);
  }
  if (!cert.getExtension(x509.BasicConstraintsExtension)?.ca) {
    throw new Error(`${f.cert} is not a CA certificate: ${REMAKE(dir)}`);
  }
  return { certPem, cert, signingKey };
}

/** Reads the key, refusing one that is not ours or that group/others could open. */
function readPrivateFile(file: string, dir: string): string {
  let fd: number;
  try {
    fd = fs.openSync(file, fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW);
  } catch (e) {
    // ELOOP: a symlink, which Airlock never makes there.
    throw new Error(`${file} cannot be opened (${(e as NodeJS.ErrnoException).code}): ${REMAKE(dir)}`);
  }
  try {
    const st = fs.fstatSync(fd);
    if (st.uid !== myUid()) {
      throw new Error(`${file} belongs to uid ${st.uid}, not to you: ${REMAKE(dir)}`);
    }
    if (st.mode & 0o077) {
      const mode = (st.mode & 0o777).toString(8).padStart(4, '0');
      throw new Error(`${file} is accessible to group or others (mode ${mode}), so the key may have been read: ${REMAKE(dir)}`);
    }
    return fs.readFileSync(fd, 'utf8');
  } finally {
    fs.closeSync(fd);
  }
}

/** Makes a new CA in DIR, replacing any old one (see finishInterruptedCommit for the order). */
async function create(dir: string): Promise<CaMaterial> {
  const f = files(dir);
  const now = Date.now();
  const keys = (await webcrypto.subtle.generateKey(KEY_ALG, true, ['sign', 'verify'])) as webcrypto.CryptoKeyPair;
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: randomSerial(),
    name: [{ CN: [caCommonName()] }, { O: ['Airlock'] }],
    notBefore: new Date(now - BACKDATE),
    notAfter: new Date(now + CA_LIFETIME),
    keys,
    extensions: [
      // pathLen 0: this CA signs leaves only, never another CA.
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey, false, webcrypto),
      await x509.AuthorityKeyIdentifierExtension.create(keys.publicKey, false, webcrypto),
    ],
  }, webcrypto);
  const certPem = cert.toString('pem') + '\n';
  const pkcs8 = await webcrypto.subtle.exportKey('pkcs8', keys.privateKey);
  writeExclusive(f.keyNew, x509.PemConverter.encode(pkcs8, 'PRIVATE KEY') + '\n', 0o600);
  writeExclusive(f.certNew, certPem, 0o644);
  fs.renameSync(f.keyNew, f.key);
  fs.renameSync(f.certNew, f.cert);
  const dirFd = fs.openSync(dir, 'r');
  try { fs.fsyncSync(dirFd); } finally { fs.closeSync(dirFd); }
  const signingKey = await webcrypto.subtle.importKey('pkcs8', pkcs8, KEY_ALG, false, ['sign']);
  return { certPem, cert, signingKey };
}

/** "Airlock sandbox CA (HOST, uid N)", the host shortened to keep CN within 64 characters. */
function caCommonName(): string {
  const tail = `, uid ${myUid()})`;
  const head = 'Airlock sandbox CA (';
  return head + os.hostname().slice(0, 64 - head.length - tail.length) + tail;
}
