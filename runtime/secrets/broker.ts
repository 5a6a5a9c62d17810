/**
 * Brokered credentials: the sandbox holds a random placeholder, and the egress proxy
 * swaps in the real value in request headers (basic auth included) on requests to the
 * secret's hosts, while its lease is valid. A placeholder seen going anywhere else (a
 * header, the URL, a host name) is refused and recorded as `secret.blocked`.
 *
 * Safety argument: the value never enters the sandbox, so nothing inside can print,
 * copy or send it; what leaves is decided per request by the host the proxy connects
 * to (the CONNECT/SOCKS target or the absolute URL's host, both checked by the rules),
 * never by a Host header the sandbox wrote. LIMITATION: a placeholder inside a tunnel
 * that is not intercepted (a host no brokered secret names) cannot be seen; it carries
 * no value, so sending it there reveals nothing.
 */
import type * as tls from 'node:tls';
import type { BrokerRefusal, BrokerRequest, ProxyBroker } from '../egress/types';
import type { CertificateAuthority } from './ca';
import { Lease, SessionSecrets } from './leases';
import type { Redactor } from './redact';

export class SecretBroker implements ProxyBroker {
  readonly tls: ProxyBroker['tls'];

  constructor(
    private readonly secrets: SessionSecrets,
    private readonly redactor: Redactor,
    ca: CertificateAuthority,
    upstreamCA?: string[],
  ) {
    this.tls = { serverContext: (host: string): Promise<tls.SecureContext> => ca.secureContext(host), upstreamCA };
  }

  private leases(): Lease[] {
    const { live, ended } = this.secrets.brokered();
    return [...live, ...ended];
  }

  intercepts(host: string, port: number): boolean {
    return this.leases().some((l) => SessionSecrets.allows(l, host, port));
  }

  checkHost(host: string, port: number): BrokerRefusal | undefined {
    const lease = this.leases().find((l) => host.toLowerCase().includes(l.placeholder!.toLowerCase()));
    if (!lease) return undefined;
    return this.blocked(lease, { host, port, method: 'CONNECT', path: '' }, 'host-name');
  }

  inspect(req: BrokerRequest): void {
    this.rewrite(req, true);
  }

  /** DRY: only find a refusal (and record it), substitute and record nothing else. */
  rewrite(req: BrokerRequest, dry = false): { headers: string[]; substituted: boolean } | BrokerRefusal {
    const leases = this.leases();
    if (leases.length === 0) return { headers: req.headers, substituted: false };
    const headers = [...req.headers];
    const used = new Set<Lease>();
    for (const lease of leases) {
      const ph = lease.placeholder!;
      const inUrl = req.target.includes(ph) || safeDecode(req.target).includes(ph);
      const at: number[] = [];
      for (let i = 1; i < headers.length; i += 2) if (carries(headers[i]!, ph)) at.push(i);
      if (!inUrl && at.length === 0) continue;
      if (lease.ended) return this.blocked(lease, req, lease.ended);
      if (!SessionSecrets.allows(lease, req.host, req.port)) return this.blocked(lease, req, 'wrong-host');
      if (dry) continue;
      for (const i of at) headers[i] = substitute(headers[i]!, ph, lease.value);
      if (at.length) used.add(lease);
    }
    for (const lease of used) {
      lease.uses++;
      this.secrets.record('secret.use', { name: lease.name, host: req.host, port: req.port, method: req.method, path: req.path, uses: lease.uses });
    }
    if (used.size === 0) return { headers, substituted: false };
    // Compressed responses could not be scanned for the value (see responseRedactor).
    const kept: string[] = [];
    for (let i = 0; i < headers.length; i += 2) if (headers[i]!.toLowerCase() !== 'accept-encoding') kept.push(headers[i]!, headers[i + 1]!);
    return { headers: kept, substituted: true };
  }

  responseRedactor(): { push(b: Buffer): Buffer; flush(): Buffer } {
    return this.redactor.stream();
  }

  private blocked(lease: Lease, req: Pick<BrokerRequest, 'host' | 'port' | 'method' | 'path'>, reason: 'expired' | 'revoked' | 'wrong-host' | 'host-name'): BrokerRefusal {
    this.secrets.record('secret.blocked', { name: lease.name, host: req.host, port: req.port, method: req.method, path: req.path, reason });
    const where = `${req.method === 'CONNECT' ? '' : `${req.method} `}${req.host}:${req.port}${req.path}`;
    const lead = `Airlock refused ${where}: it carries the placeholder of the brokered secret ${lease.name}`;
    let message: string;
    if (reason === 'expired') message = `${lead}, whose lease expired at ${new Date(lease.expiresAt).toISOString()}. A person can grant it again (secret.grant).`;
    else if (reason === 'revoked') message = `${lead}, whose lease was revoked. A person can grant it again (secret.grant).`;
    else message = `${lead}, which may only be sent to ${lease.hosts!.join(', ')}. This was recorded as an attempt to send it elsewhere.`;
    return { status: 403, rule: `secret:${lease.name}:${reason}`, message };
  }
}

/** Does a header value carry PH, as is or inside HTTP basic credentials? */
function carries(value: string, ph: string): boolean {
  if (value.includes(ph)) return true;
  const basic = basicCredentials(value);
  return basic !== undefined && basic.includes(ph);
}

function substitute(value: string, ph: string, secret: string): string {
  if (value.includes(ph)) return value.split(ph).join(secret);
  const basic = basicCredentials(value)!;
  const scheme = value.slice(0, value.indexOf(' '));
  return `${scheme} ${Buffer.from(basic.split(ph).join(secret), 'utf8').toString('base64')}`;
}

/** The decoded `user:password` of a `Basic` header value, if it is one. */
function basicCredentials(value: string): string | undefined {
  const m = /^basic\s+([A-Za-z0-9+/=_-]+)\s*$/i.exec(value);
  return m ? Buffer.from(m[1]!, 'base64').toString('utf8') : undefined;
}

function safeDecode(s: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    return s;
  }
}
