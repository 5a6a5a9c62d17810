/**
 * The runtime's egress service: per sandbox, the proxy's listener on 127.0.0.1:3128
 * inside the sandbox's network namespace (made there by airlock-agent and handed to
 * the runtime, which accepts every connection itself), and per session the rules, caps
 * and audit records of every connection attempt.
 *
 * Safety argument: the sandbox's network namespace has no route out; this listener is
 * its only way out, and it is its own: a connection accepted on it belongs to that
 * session and no other, whatever the bytes on it claim. Names are resolved here, on the host,
 * and the proxy connects to the very address that was checked, so DNS rebinding
 * between check and connect is impossible. The sandbox can read its rules (the 403
 * says which rule decided) but has no way to add one: rules change only through the
 * runtime's control socket, which is not visible inside.
 */
import * as dns from 'node:dns';
import * as net from 'node:net';
import type { Policy } from '../policy/policy';
import { EgressAddressError, normalizeHost, parseIpLiteral } from './address';
import { serveEgressStream } from './proxy';
import { RegistryCache, Registries } from './registries';
import { parseRule, RuleEntry, RuleSet } from './rules';
import { Attribution, DEFAULT_PROXY_LIMITS, EgressAttempt, EgressOutcome, EgressRequest, EgressTarget, INSIDE_CA_BUNDLE, PROXY_PORT, ProxyBroker, ProxyLimits, Verdict } from './types';
import type { CertificateAuthority } from '../secrets/ca';

/** How long a host name lookup may take before the attempt fails. */
const LOOKUP_TIMEOUT_MS = 5000;

export type LookupFn = (name: string) => Promise<{ address: string; family: 4 | 6 }[]>;

const systemLookup: LookupFn = async (name) =>
  (await dns.promises.lookup(name, { all: true, verbatim: true })).map((a) => ({ address: a.address, family: a.family === 6 ? 6 : 4 }));

export interface EgressServiceOptions {
  registries?: RegistryCache;
  /** The user's home and environment, where tools' registry configuration is read. */
  home?: string;
  env?: NodeJS.ProcessEnv;
  lookup?: LookupFn;
  limits?: ProxyLimits;
  /**
   * The runtime's CA: with it, tunnels to hosts a brokered secret names are intercepted
   * (runtime/egress/intercept.ts), and sandboxes trust it (its bundle is mounted inside).
   */
  ca?: CertificateAuthority;
  /** PEM certificates trusted for destinations of intercepted tunnels, besides the system roots. */
  upstreamCAs?: string[];
}

/** What the service needs of a session. */
export interface NetworkOwner {
  readonly id: string;
  readonly policy: Policy;
  /** The workspace on the host (for project registry configuration). */
  readonly workspaceHost: string;
  /** Records an audit record and tells live clients; false when it could not be written (the failure ends the session). */
  recordNetwork(type: string, fields: Record<string, unknown>): boolean;
  /** The command a process's shell reports running now (untrusted), if known. */
  commandOf?(process: number): string | undefined;
  /** The session's brokered secrets (placeholder substitution, TLS interception). */
  readonly broker?: ProxyBroker;
}

/** Variables that point ordinary tools at the proxy inside the sandbox. */
export function proxyEnv(): Record<string, string> {
  const http = `http://127.0.0.1:${PROXY_PORT}`;
  const socks = `socks5h://127.0.0.1:${PROXY_PORT}`;
  return {
    HTTP_PROXY: http, HTTPS_PROXY: http, http_proxy: http, https_proxy: http,
    ALL_PROXY: socks, all_proxy: socks,
    // npm reads its own settings before the standard variables in some versions.
    npm_config_proxy: http, npm_config_https_proxy: http,
  };
}

/**
 * Variables that make ordinary tools trust the bundle mounted at INSIDE_CA_BUNDLE (the
 * system's roots plus the runtime's CA), needed where the proxy intercepts TLS.
 */
export function caEnv(): Record<string, string> {
  const f = INSIDE_CA_BUNDLE;
  return { SSL_CERT_FILE: f, NODE_EXTRA_CA_CERTS: f, REQUESTS_CA_BUNDLE: f, GIT_SSL_CAINFO: f, CURL_CA_BUNDLE: f, PIP_CERT: f };
}

export class EgressService {
  private readonly endpoints = new Set<EgressEndpoint>();
  readonly registries: RegistryCache;
  readonly limits: ProxyLimits;
  readonly lookup: LookupFn;
  /** The host file mounted at INSIDE_CA_BUNDLE in every sandbox (with a CA). */
  readonly caBundle: string | undefined;

  constructor(readonly opts: EgressServiceOptions = {}) {
    this.registries = opts.registries ?? new RegistryCache();
    this.limits = opts.limits ?? DEFAULT_PROXY_LIMITS;
    this.lookup = opts.lookup ?? systemLookup;
    this.caBundle = opts.ca?.writeBundle();
  }

  /** The endpoint of one sandbox: it serves the sandbox's listener once attached, and its session once bound. */
  open(): EgressEndpoint {
    const ep = new EgressEndpoint(this);
    this.endpoints.add(ep);
    void ep.closed.then(() => this.endpoints.delete(ep));
    return ep;
  }

  /** Starts discovering WORKSPACE's registries so the first session there does not wait. */
  warm(workspaceHost: string): void {
    void this.registries.get(this.discoverOptions(workspaceHost)).catch(() => undefined);
  }

  discoverOptions(workspaceHost: string): { workspace: string; home: string; env: NodeJS.ProcessEnv } {
    const env = this.opts.env ?? process.env;
    return { workspace: workspaceHost, home: this.opts.home ?? env.HOME ?? '/', env };
  }

  async close(): Promise<void> {
    await Promise.all([...this.endpoints].map((e) => e.close()));
  }
}

/** Who holds the client end of a connection to the proxy, by the client's port (the agent's answer). */
export type AttributeFn = (clientPort: number) => Promise<Attribution>;

export class EgressEndpoint {
  private server: net.Server | null = null;
  private attribute: AttributeFn | null = null;
  private network: SessionNetwork | null = null;
  private readonly streams = new Set<net.Socket>();
  private closing: Promise<void> | null = null;
  private resolveClosed!: () => void;
  readonly closed = new Promise<void>((r) => (this.resolveClosed = r));

  constructor(private readonly service: EgressService) {}

  /**
   * Serves SERVER, the sandbox's listener (Sandbox.egressListener); ATTRIBUTE asks the
   * sandbox's agent who made each connection. At most limits.maxStreams connections
   * are open at once; Node closes any beyond that as it accepts them, and each is
   * recorded as a denied attempt.
   */
  attach(server: net.Server, attribute: AttributeFn): void {
    if (this.closing) {
      server.close();
      return;
    }
    this.server = server;
    this.attribute = attribute;
    server.maxConnections = this.service.limits.maxStreams;
    server.on('error', () => undefined);
    server.on('connection', (sock: net.Socket) => this.accept(sock));
    server.on('drop', (d?: { remotePort?: number }) => this.network?.dropped(d?.remotePort ?? 0, this.service.limits.maxStreams));
  }

  private accept(sock: net.Socket): void {
    sock.on('error', () => undefined);
    const nw = this.network;
    const attribute = this.attribute;
    // Nothing runs in a sandbox before it becomes a session; a stray stream is dropped.
    if (!nw || !attribute || this.closing) {
      sock.destroy();
      return;
    }
    this.streams.add(sock);
    sock.once('close', () => this.streams.delete(sock));
    serveEgressStream(sock, () => nw.attempt(), this.service.limits, nw.broker, attribute(sock.remotePort ?? 0));
  }

  /** Makes this endpoint serve OWNER's session; returns its network state. */
  bind(owner: NetworkOwner): SessionNetwork {
    this.network = new SessionNetwork(owner, this.service);
    return this.network;
  }

  close(): Promise<void> {
    this.closing ??= (async () => {
      this.network?.dispose();
      for (const s of this.streams) s.destroy();
      const server = this.server;
      if (server?.listening) await new Promise<void>((r) => server.close(() => r()));
      this.resolveClosed();
    })();
    return this.closing;
  }
}

export interface RuleInfo {
  rule: string;
  effect: 'allow' | 'deny';
  source: RuleEntry['source'];
  expiresAt?: string;
}

/** One session's network: rules (policy, registries, live grants), caps, counters. */
export class SessionNetwork {
  readonly rules: RuleSet;
  /** Registries discovered for the workspace (allow rules and tool variables), once known. */
  readonly ready: Promise<void>;
  private registryEnv: Record<string, string> = {};
  private readonly timers = new Set<NodeJS.Timeout>();
  private active = 0;
  private bytes = 0;
  private seq = 0;
  private disposed = false;

  constructor(private readonly owner: NetworkOwner, private readonly service: EgressService) {
    const n = owner.policy.network;
    const entries: RuleEntry[] = [
      ...n.allow.map((t) => ({ rule: parseRule(t), effect: 'allow' as const, source: 'policy' as const })),
      ...n.deny.map((t) => ({ rule: parseRule(t), effect: 'deny' as const, source: 'policy' as const })),
    ];
    this.rules = new RuleSet(entries, n.allowAll);
    if (n.allowAll) {
      owner.recordNetwork('net.allow-all', { warning: 'this session may connect to any public host (--allow-all-network); loopback, private and metadata addresses stay refused without an IP rule' });
    }
    this.ready = n.registries ? this.loadRegistries() : Promise.resolve();
  }

  private async loadRegistries(): Promise<void> {
    let r: Registries;
    try {
      r = await this.service.registries.get(this.service.discoverOptions(this.owner.workspaceHost));
    } catch (e) {
      this.registryRecord = { rules: [], warnings: [`registry discovery failed: ${(e as Error).message}`] };
      return;
    }
    if (this.disposed) return;
    for (const text of r.rules) this.rules.add({ rule: parseRule(text), effect: 'allow', source: 'registry' });
    this.registryEnv = r.env;
    this.registryRecord = { rules: r.rules, sources: r.sources.map((x) => `${x.tool}: ${x.from}`), ...(r.warnings.length ? { warnings: r.warnings } : {}) };
  }

  /**
   * What the registries added, recorded before the session's first egress attempt (a
   * session that never connects anywhere gets no such record: nothing it allowed was used).
   */
  private registryRecord: Record<string, unknown> | null = null;

  private recordRegistries(): void {
    if (!this.registryRecord) return;
    this.owner.recordNetwork('net.registries', this.registryRecord);
    this.registryRecord = null;
  }

  /** Variables for a process started now: the proxy, the registries tools should use, the CA bundle. */
  env(): Record<string, string> {
    return { ...this.registryEnv, ...proxyEnv(), ...(this.service.caBundle ? caEnv() : {}) };
  }

  get broker(): ProxyBroker | undefined {
    return this.owner.broker;
  }

  /** A person's time-boxed exception (network.allow). The sandbox has no way to call this. */
  allow(text: string, ttlSeconds: number, by: string): RuleInfo {
    const rule = parseRule(text);
    const expiresAt = Date.now() + ttlSeconds * 1000;
    const entry: RuleEntry = { rule, effect: 'allow', source: 'grant', expiresAt };
    this.rules.add(entry);
    const at = new Date(expiresAt).toISOString();
    this.owner.recordNetwork('net.rule-added', { rule: rule.text, effect: 'allow', ttlSeconds, expiresAt: at, by });
    const t = setTimeout(() => {
      this.timers.delete(t);
      for (const e of this.rules.prune(Date.now())) {
        this.owner.recordNetwork('net.rule-expired', { rule: e.rule.text, effect: e.effect, source: e.source });
        for (const [abort, g] of this.underGrant) if (g === e) abort(`the grant "${e.rule.text}" that allowed it expired`);
      }
    }, ttlSeconds * 1000 + 5);
    t.unref();
    this.timers.add(t);
    return { rule: rule.text, effect: 'allow', source: 'grant', expiresAt: at };
  }

  list(): RuleInfo[] {
    return this.rules.entries(Date.now()).map((e) => ({
      rule: e.rule.text, effect: e.effect, source: e.source,
      ...(e.expiresAt !== undefined ? { expiresAt: new Date(e.expiresAt).toISOString() } : {}),
    }));
  }

  get stats(): { active: number; bytes: number } {
    return { active: this.active, bytes: this.bytes };
  }

  dispose(): void {
    this.disposed = true;
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
  }

  /**
   * A connection Node closed as it accepted it, because the sandbox already had
   * MAX streams open: recorded as a denied attempt whose destination was never read.
   */
  dropped(clientPort: number, max: number): void {
    if (this.disposed) return;
    this.owner.recordNetwork('net.connect', {
      conn: `${this.owner.id}.n${++this.seq}`, protocol: 'unknown', host: '', port: 0, clientPort, decision: 'deny', rule: 'limit:streams',
      error: `the sandbox already had ${max} connections to the proxy open; this one was closed before its request was read`,
    });
  }

  /** The hooks for one attempt the proxy parsed from this session's listener. */
  attempt(): EgressAttempt {
    const conn = `${this.owner.id}.n${++this.seq}`;
    let counted = false;
    let grant: RuleEntry | undefined;
    // One per destination connection (an intercepted tunnel may open several).
    const aborts: ((why: string) => void)[] = [];
    return {
      decide: async (target) => {
        const { verdict: v, entry } = await this.decide(target);
        if (entry?.expiresAt !== undefined) grant = entry;
        if (v.decision === 'allow') {
          this.active++;
          counted = true;
        }
        return v;
      },
      record: (req, v) => {
        const command = req.attribution.process ? this.owner.commandOf?.(req.attribution.process) : undefined;
        return this.owner.recordNetwork('net.connect', { conn, ...describe(req), ...(command !== undefined ? { command } : {}), ...(v.address ? { address: v.address } : {}), decision: v.decision, rule: v.rule });
      },
      opened: (fn) => {
        if (!grant) return;
        // Decided just before the expiry, connected just after: the timer has fired already.
        if (grant.expiresAt! <= Date.now()) return fn(`the grant "${grant.rule.text}" that allowed it expired`);
        aborts.push(fn);
        this.underGrant.set(fn, grant);
      },
      end: (req: EgressRequest, v: Verdict, out: EgressOutcome) => {
        for (const fn of aborts) this.underGrant.delete(fn);
        if (counted) this.active--;
        counted = false;
        this.bytes += out.bytesUp + out.bytesDown;
        if (v.decision !== 'allow') return;
        this.owner.recordNetwork('net.close', { conn, host: req.host, port: req.port, bytesUp: out.bytesUp, bytesDown: out.bytesDown, durationMs: Math.round(out.durationMs), ...(out.error ? { error: out.error } : {}) });
      },
    };
  }

  /**
   * Open connections that a time-boxed grant allowed, by their abort function: when the
   * grant expires they are ended too, so "for 15 minutes" means the connection as well.
   */
  private readonly underGrant = new Map<(why: string) => void, RuleEntry>();

  /** The verdict, and for an allow the rule entry that gave it. */
  private async decide(req: EgressTarget): Promise<{ verdict: Verdict; entry?: RuleEntry }> {
    const { entry, ...verdict } = await this.check(req);
    return { verdict, entry };
  }

  private async check(req: EgressTarget): Promise<Verdict & { entry?: RuleEntry }> {
    const n = this.owner.policy.network;
    const where = `${req.host}:${req.port}`;
    await this.ready;
    if (this.disposed) return deny('session-ended', `Airlock: the session has ended; ${where} was not contacted.`);
    this.recordRegistries();
    const carried = this.owner.broker?.checkHost(req.host, req.port);
    if (carried) return deny(carried.rule, carried.message);
    if (this.active >= n.maxConnections) {
      return deny('limit:connections', `Airlock blocked ${where}: this session already has ${this.active} connections open (network.maxConnections = ${n.maxConnections}).`);
    }
    if (this.bytes >= n.maxMiB * 1024 * 1024) {
      return deny('limit:bytes', `Airlock blocked ${where}: this session has moved ${n.maxMiB} MiB through the proxy (network.maxMiB); start a new session or raise the limit in the policy.`);
    }
    let target: ReturnType<typeof normalizeHost>;
    try {
      target = normalizeHost(req.host);
    } catch (e) {
      return deny('invalid-host', `Airlock blocked ${where}: ${e instanceof EgressAddressError ? e.message : 'not a valid host name'}.`);
    }
    const now = Date.now();
    const first = this.rules.matchRequest(target, req.port, now);
    const shown = target.kind === 'ip' ? (target.family === 6 ? `[${target.address}]` : target.address) : target.name;
    if (first.effect === 'deny') {
      const rule = first.entry ? first.entry.rule.text : 'default-deny';
      const why = first.entry ? `the rule "${rule}" (${first.entry.source}) denies it` : 'no rule allows it (default deny)';
      return deny(rule, `Airlock blocked ${shown}:${req.port}: ${why}. To allow it for this session, a person runs 'airlock allow ${this.owner.id} ${shown}:${req.port} --ttl 900', or starts the session with --allow ${shown}:${req.port}.`);
    }
    let addrs: { address: string; family: 4 | 6 }[];
    if (target.kind === 'ip') addrs = [{ address: target.address, family: target.family }];
    else {
      try {
        addrs = await withTimeout(this.service.lookup(target.name), LOOKUP_TIMEOUT_MS, `looking up ${target.name} took over ${LOOKUP_TIMEOUT_MS / 1000} s`);
      } catch (e) {
        return deny('dns', `Airlock could not resolve ${target.name}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}.`);
      }
      if (addrs.length === 0) return deny('dns', `Airlock could not resolve ${target.name}: no addresses.`);
    }
    // Every address the name has must pass: a name with one public and one internal
    // address is refused rather than raced.
    addrs = addrs.map(unmapped);
    for (const a of addrs) {
      const m = this.rules.matchAddress(a.address, a.family, req.port, now);
      if (m.effect === 'deny') {
        if (m.reason === 'ssrf') {
          const ip = a.family === 6 ? `[${a.address}]` : a.address;
          return deny(`ssrf:${m.addressClass}`, `Airlock blocked ${shown}:${req.port}: it resolves to ${a.address}, a ${m.addressClass} address, which sandboxes may not reach (SSRF guard). Only an explicit IP rule allows it: --allow ${ip}:${req.port}.`);
        }
        return deny(m.entry?.rule.text ?? 'deny', `Airlock blocked ${shown}:${req.port}: its address ${a.address} is denied by the rule "${m.entry?.rule.text}".`);
      }
    }
    const rule = first.reason === 'allow-all' ? '*' : first.entry!.rule.text;
    return { decision: 'allow', rule, address: addrs[0].address, family: addrs[0].family, entry: first.entry };
  }
}

/** The resolver may answer with an IPv4-mapped IPv6 address: it is checked (and used) as the IPv4 it is. */
function unmapped(a: { address: string; family: 4 | 6 }): { address: string; family: 4 | 6 } {
  return parseIpLiteral(a.address) ?? a;
}

function deny(rule: string, message: string): Verdict {
  return { decision: 'deny', rule, message };
}

function describe(req: EgressRequest): Record<string, unknown> {
  return {
    protocol: req.protocol, host: req.host, port: req.port,
    ...(req.method ? { method: req.method, path: req.path } : {}),
    // Which process asked is what the sandbox's agent reported (see egress.c): kept, marked as reported.
    ...(req.attribution.pid ? { pid: req.attribution.pid, reportedBy: 'airlock-agent' } : {}),
    ...(req.attribution.process ? { process: req.attribution.process } : {}),
  };
}

function withTimeout<T>(p: Promise<T>, ms: number, message: string): Promise<T> {
  let timer: NodeJS.Timeout;
  return Promise.race([
    p.finally(() => clearTimeout(timer)),
    new Promise<T>((_, reject) => (timer = setTimeout(() => reject(new Error(message)), ms))),
  ]);
}
