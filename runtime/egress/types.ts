/**
 * The shared vocabulary of the egress proxy: what a sandbox asked to reach, what the
 * session's rules decided, and what the audit log records about each attempt.
 *
 * Parts: address.ts (IP literal normalization, address classes for the SSRF guard),
 * rules.ts (allow/deny rules and their evaluation), registries.ts (package
 * registries the user's tools are configured to use), proxy.ts (HTTP and SOCKS5 on
 * one stream), service.ts (per-sandbox sockets, per-session state, DNS, audit).
 */

/** Where sandboxed tools find the proxy (inside the sandbox's own network namespace). */
export const PROXY_PORT = 3128;
/** Where the driver mounts the CA bundle (system roots + the runtime's CA) inside. */
export const INSIDE_CA_BUNDLE = '/run/airlock-ca.pem';

/** How the sandbox asked: plain HTTP (absolute-form), HTTP CONNECT, or SOCKS5 CONNECT. */
export type EgressProtocol = 'http' | 'connect' | 'socks';

/**
 * Who asked, as reported by airlock-agent inside the sandbox (its answer to an Owner
 * query: the holder of the client's socket, from the kernel's socket table and /proc).
 * The session is known for certain (each sandbox has its own listener); the process is
 * recorded as reported, since the agent runs inside the sandbox.
 */
export interface Attribution {
  /** The connecting process's pid inside the sandbox (0: unknown). */
  pid: number;
  /** The session's process number (process.start) it descends from (0: unknown). */
  process: number;
}

/** One attempt to reach HOST:PORT, as parsed from the sandbox's request, with who made it. */
export interface EgressRequest extends EgressTarget {
  attribution: Attribution;
}

/** What the sandbox's request asked for. */
export interface EgressTarget {
  protocol: EgressProtocol;
  /** The host exactly as requested (a name or an IP literal, unnormalized). */
  host: string;
  port: number;
  /** Plain HTTP only: request method and path (without the query string). */
  method?: string;
  path?: string;
}

export type Decision = 'allow' | 'deny';

/** The session's answer to a request. */
export interface Verdict {
  decision: Decision;
  /**
   * The rule that decided, as written (`*.example.com:443`, `10.0.0.0/8`), or a
   * built-in reason: `default-deny`, `ssrf:loopback`, `limit:connections`, ...
   */
  rule: string;
  /** For a denial: a sentence naming the rule and how to allow the host. */
  message?: string;
  /** For an allow: the address that was checked, which the proxy must connect to (no second lookup). */
  address?: string;
  family?: 4 | 6;
}

/** What the proxy reports when an attempt ends (denied at once, or closed after relaying). */
export interface EgressOutcome {
  /** Bytes sent toward the destination and received from it (0 for a denial). */
  bytesUp: number;
  bytesDown: number;
  durationMs: number;
  /** Why the attempt failed after it was allowed (connect refused, timeout, limit). */
  error?: string;
}

/** One connection attempt as the proxy handles it: decided once, recorded once, ended once. */
export interface EgressAttempt {
  /** Called once per attempt with the parsed request; resolves with the verdict (who asked may not be known yet). */
  decide(target: EgressTarget): Promise<Verdict>;
  /**
   * Called once per attempt, after decide(), with who asked: records the attempt and its
   * verdict. False when it could not be recorded; an allowed attempt is then refused.
   */
  record(req: EgressRequest, verdict: Verdict): boolean;
  /** Called exactly once per decided attempt, when it ends. */
  end(req: EgressRequest, verdict: Verdict, outcome: EgressOutcome): void;
  /**
   * Called once the destination connection of an allowed attempt is open. ABORT ends
   * it (with WHY as its error): a time-boxed grant that allowed it has expired.
   */
  opened?(abort: (why: string) => void): void;
}

/** Limits the proxy enforces per connection; per-session caps live in the service. */
export interface ProxyLimits {
  /** No byte either way for this long ends the connection. */
  idleTimeoutMs: number;
  /** A request (HTTP head, SOCKS greeting) not complete within this ends the connection. */
  headerTimeoutMs: number;
  /** Connecting to the destination takes longer than this: the attempt fails. */
  connectTimeoutMs: number;
  /** Largest HTTP request head accepted. */
  maxHeaderBytes: number;
  /**
   * Connections from one sandbox open at once, decided or not (the proxy's own fds and
   * memory): more are closed as they are accepted, each recorded as denied
   * (`limit:streams`). The default equals the listener's queue (4096), so a burst that
   * waited there is taken whole; a sandbox holding that many open is cut off. The
   * policy's network.maxConnections caps allowed ones below it.
   */
  maxStreams: number;
}

export const DEFAULT_PROXY_LIMITS: ProxyLimits = {
  idleTimeoutMs: 300_000,
  headerTimeoutMs: 30_000,
  maxStreams: 4096,
  connectTimeoutMs: 10_000,
  maxHeaderBytes: 64 * 1024,
};

/** A request the broker refuses (a placeholder going where its secret may not go). */
export interface BrokerRefusal {
  status: number;
  /** For the audit's `rule` and the X-Airlock-Rule header, e.g. `secret:GITHUB_TOKEN:wrong-host`. */
  rule: string;
  /** Names the secret and what to do; never contains a value. */
  message: string;
}

/** One HTTP request as the broker sees it: plain HTTP, or inside an intercepted tunnel. */
export interface BrokerRequest {
  host: string;
  port: number;
  method: string;
  /** Path without the query (for records). */
  path: string;
  /** The request target as sent (path and query; absolute-form for plain HTTP). */
  target: string;
  /** Raw header name/value pairs, end-to-end ones only. */
  headers: string[];
}

/**
 * Brokered secrets as the proxy sees them (runtime/secrets/broker.ts). The proxy
 * intercepts TLS only for tunnels intercepts() names; every other tunnel stays end to
 * end, its bytes never decrypted.
 */
export interface ProxyBroker {
  /** Does a brokered secret (live, or ended and remembered) name HOST:PORT? */
  intercepts(host: string, port: number): boolean;
  /** A CONNECT/SOCKS host name carrying a placeholder: the refusal (the name would carry it out, e.g. by DNS). */
  checkHost(host: string, port: number): BrokerRefusal | undefined;
  /** For a request refused anyway: records a placeholder in it going where it may not (no substitution). */
  inspect(req: BrokerRequest): void;
  /** Swaps placeholders for values where allowed; refuses a request carrying one anywhere else. */
  rewrite(req: BrokerRequest): { headers: string[]; substituted: boolean } | BrokerRefusal;
  /** Redacts granted values from a response body after a substitution (an echo service would return them). */
  responseRedactor(): { push(b: Buffer): Buffer; flush(): Buffer };
  /** TLS for intercepted tunnels: our leaf for HOST, and what upstream certificates are trusted. */
  tls: { serverContext(host: string): Promise<import('node:tls').SecureContext>; upstreamCA?: string[] };
}
