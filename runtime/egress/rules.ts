/**
 * Allow/deny rules for the egress proxy, as a person writes them in a policy file or
 * on the command line (`--allow example.com`, `--deny 10.0.0.0/8:5432`), and their
 * evaluation in two stages: on the requested name or IP literal before any DNS, then
 * on each resolved address (the SSRF guard).
 *
 * Deny always beats allow, and expired entries never match, so a grant that lapses or
 * a deny added later can only narrow what a sandbox may reach.
 */
import {
  AddressClass, Cidr, EgressAddressError, cidrBounds, cidrContains, classifyAddress, isBlockedClass,
  normalizeHost, parseCidr, parseIpLiteral,
} from './address';

export type Rule = { text: string; port?: number } & (
  | { kind: 'host'; name: string }
  | { kind: 'suffix'; suffix: string }
  | { kind: 'cidr'; family: 4 | 6; address: string; prefix: number }
);

export interface RuleEntry {
  rule: Rule;
  effect: 'allow' | 'deny';
  source: 'policy' | 'cli' | 'registry' | 'grant';
  /** ms since the epoch; the entry stops matching at this instant. */
  expiresAt?: number;
}

export type RequestTarget = { kind: 'name'; name: string } | { kind: 'ip'; family: 4 | 6; address: string };

export interface RequestMatch {
  effect: 'allow' | 'deny';
  entry?: RuleEntry;
  reason: 'rule' | 'allow-all' | 'default-deny';
}

export interface AddressMatch {
  effect: 'allow' | 'deny';
  entry?: RuleEntry;
  reason: 'rule' | 'ssrf' | 'public';
  addressClass: AddressClass;
}

const EXAMPLES = 'examples: example.com, *.example.com:443, 10.0.0.0/8';

/** A rule that cannot be read; `message` names the rule text, the problem and valid examples. */
export class EgressRuleError extends Error {
  constructor(readonly rule: string, reason: string) {
    super(`network rule "${rule}" is not valid: ${reason} (${EXAMPLES})`);
    this.name = 'EgressRuleError';
  }
}

function parsePort(text: string, portText: string): number {
  const port = /^[0-9]{1,5}$/.test(portText) ? Number(portText) : NaN;
  if (!(port >= 1 && port <= 65535)) {
    throw new EgressRuleError(text, `the port "${portText}" must be a number from 1 to 65535`);
  }
  return port;
}

function cidrText(c: Cidr, port: number | undefined): string {
  const full = c.prefix === (c.family === 4 ? 32 : 128);
  const addr = c.family === 6 && (full || port !== undefined) ? `[${c.address}]` : c.address;
  return addr + (full ? '' : `/${c.prefix}`) + (port === undefined ? '' : `:${port}`);
}

function cidrRule(c: Cidr, port: number | undefined): Rule {
  return { kind: 'cidr', family: c.family, address: c.address, prefix: c.prefix, text: cidrText(c, port), ...(port === undefined ? {} : { port }) };
}

/** Splits `ADDR[/PREFIX][:PORT]` where ADDR may be `[v6]`, or an unbracketed v6 before a `/`. */
function splitIpForm(text: string, t: string): { addr: string; prefix?: string; port?: string } | null {
  if (t.startsWith('[')) {
    const close = t.indexOf(']');
    if (close < 0) throw new EgressRuleError(text, 'the "[" has no matching "]"');
    const m = /^(?:\/([^:]*))?(?::(.*))?$/.exec(t.slice(close + 1));
    if (!m) throw new EgressRuleError(text, 'only "/PREFIX" and ":PORT" may follow "]"');
    return { addr: t.slice(0, close + 1), prefix: m[1], port: m[2] };
  }
  const slash = t.indexOf('/');
  if (slash >= 0) {
    const rest = t.slice(slash + 1);
    const colon = rest.indexOf(':');
    return colon < 0
      ? { addr: t.slice(0, slash), prefix: rest }
      : { addr: t.slice(0, slash), prefix: rest.slice(0, colon), port: rest.slice(colon + 1) };
  }
  return null;
}

/**
 * Reads one rule. The returned `text` is canonical (lower-case, punycode, canonical
 * addresses, host bits of a CIDR cleared), so equal rules have equal text.
 */
export function parseRule(text: string): Rule {
  const t = text.trim().toLowerCase();
  if (t === '') throw new EgressRuleError(text, 'the rule is empty');
  if (t === '*' || t.startsWith('*:')) {
    throw new EgressRuleError(text, 'a bare "*" would allow every host; use --allow-all-network (the policy\'s network.allowAll) instead');
  }
  if (t.includes('://')) throw new EgressRuleError(text, 'a rule names a host, not a URL (write example.com, not https://example.com/)');
  const ipForm = splitIpForm(text, t);
  if (ipForm) {
    const port = ipForm.port === undefined ? undefined : parsePort(text, ipForm.port);
    const c = parseCidr(ipForm.prefix === undefined ? ipForm.addr : `${ipForm.addr}/${ipForm.prefix}`);
    if (!c) {
      const bits = ipForm.addr.includes(':') ? 128 : 32;
      if (!ipForm.addr.startsWith('[') && !parseIpLiteral(ipForm.addr) && !ipForm.addr.includes(':')) {
        throw new EgressRuleError(text, `"/" only belongs in a CIDR such as 10.0.0.0/8, and "${ipForm.addr}" is not an IP address`);
      }
      const why = parseIpLiteral(ipForm.addr) ? `the prefix "/${ipForm.prefix}" is not a number from 0 to ${bits}` : `"${ipForm.addr}" is not an IP address`;
      throw new EgressRuleError(text, why);
    }
    return cidrRule(c, port);
  }
  if ((t.match(/:/g) ?? []).length > 1) {
    // `fe80::1:8080` could be an address or an address and a port; brackets decide.
    throw new EgressRuleError(text, 'write an IPv6 address in brackets, as in [::1] or [::1]:8080');
  }
  const colon = t.indexOf(':');
  const hostPart = colon < 0 ? t : t.slice(0, colon);
  const port = colon < 0 ? undefined : parsePort(text, t.slice(colon + 1));
  const wildcard = hostPart.startsWith('*.');
  const namePart = wildcard ? hostPart.slice(2) : hostPart;
  if (namePart.includes('*')) {
    throw new EgressRuleError(text, '"*" is only allowed as a leading "*." (as in *.example.com)');
  }
  let host;
  try {
    host = normalizeHost(namePart);
  } catch (err) {
    if (err instanceof EgressAddressError) throw new EgressRuleError(text, err.reason);
    throw err;
  }
  const suffixPort = port === undefined ? '' : `:${port}`;
  const withPort = port === undefined ? {} : { port };
  if (host.kind === 'ip') {
    if (wildcard) throw new EgressRuleError(text, '"*." must be followed by a name, not an IP address');
    return cidrRule({ ...host, prefix: host.family === 4 ? 32 : 128 }, port);
  }
  if (wildcard) return { kind: 'suffix', suffix: host.name, text: `*.${host.name}${suffixPort}`, ...withPort };
  return { kind: 'host', name: host.name, text: host.name + suffixPort, ...withPort };
}

const canonicalName = (name: string): string => {
  const n = name.toLowerCase();
  return n.endsWith('.') ? n.slice(0, -1) : n;
};

function ruleMatchesName(rule: Rule, name: string): boolean {
  if (rule.kind === 'host') return rule.name === name;
  // The leading dot keeps `*.example.com` from matching `badexample.com`.
  if (rule.kind === 'suffix') return name.endsWith('.' + rule.suffix);
  return false;
}

function ruleMatchesAddress(rule: Rule, address: string, family: 4 | 6): boolean {
  return rule.kind === 'cidr' && cidrContains(rule, address, family);
}

const portMatches = (rule: Rule, port: number): boolean => rule.port === undefined || rule.port === port;
const isLive = (e: RuleEntry, now: number): boolean => e.expiresAt === undefined || e.expiresAt > now;

/**
 * May a CIDR allow rule lift the SSRF guard for an address of class CLS? Only if the
 * whole network has that class: `10.0.0.0/8` lifts it for 10.1.2.3, but `0.0.0.0/0`
 * (meant as "the IPv4 internet") does not open loopback, and `169.254.0.0/16` does
 * not open the metadata address inside it — that takes `169.254.169.254` itself.
 */
function liftsGuard(rule: Rule, cls: AddressClass): boolean {
  if (rule.kind !== 'cidr') return false;
  const { first, last } = cidrBounds(rule);
  return classifyAddress(first, rule.family) === cls && classifyAddress(last, rule.family) === cls;
}

/** The session's rules: policy, CLI, registry and granted entries, plus the allow-all switch. */
export class RuleSet {
  private readonly list: RuleEntry[];

  constructor(entries: RuleEntry[] = [], readonly allowAll: boolean = false) {
    this.list = [...entries];
  }

  add(entry: RuleEntry): void {
    this.list.push(entry);
  }

  /** Drops expired entries (by NOW) and returns the ones dropped, so the caller can audit their expiry. */
  prune(now: number): RuleEntry[] {
    const dropped = this.list.filter((e) => !isLive(e, now));
    const kept = this.list.filter((e) => isLive(e, now));
    this.list.splice(0, this.list.length, ...kept);
    return dropped;
  }

  /** The live entries at NOW. */
  entries(now: number): RuleEntry[] {
    return this.list.filter((e) => isLive(e, now));
  }

  private find(effect: 'allow' | 'deny', now: number, port: number, test: (r: Rule) => boolean): RuleEntry | undefined {
    return this.list.find((e) => e.effect === effect && isLive(e, now) && portMatches(e.rule, port) && test(e.rule));
  }

  /** Stage 1, before any DNS: decides on the requested name or IP literal. */
  matchRequest(target: RequestTarget, port: number, now: number): RequestMatch {
    // Name rules only ever see names and CIDR rules only IP literals, so a name rule
    // can never be satisfied by spelling its address, nor the reverse.
    const test = target.kind === 'name'
      ? ((name) => (r: Rule) => ruleMatchesName(r, name))(canonicalName(target.name))
      : (r: Rule) => ruleMatchesAddress(r, target.address, target.family);
    const deny = this.find('deny', now, port, test);
    if (deny) return { effect: 'deny', entry: deny, reason: 'rule' };
    const allow = this.find('allow', now, port, test);
    if (allow) return { effect: 'allow', entry: allow, reason: 'rule' };
    if (this.allowAll) return { effect: 'allow', reason: 'allow-all' };
    return { effect: 'deny', reason: 'default-deny' };
  }

  /**
   * Stage 2, after resolving on the host: may the proxy connect to ADDRESS? allowAll
   * does not lift the SSRF guard: reaching loopback, private or metadata addresses
   * always takes a CIDR allow rule that names them.
   */
  matchAddress(address: string, family: 4 | 6, port: number, now: number): AddressMatch {
    // Unwrap a mapped address first, so rules and classes see the IPv4 host it reaches.
    const ip = parseIpLiteral(address);
    if (!ip || (ip.family !== family && !(family === 6 && address.includes(':')))) {
      throw new EgressAddressError(address, `it is not an IPv${family} address`);
    }
    const addressClass = classifyAddress(ip.address, ip.family);
    const test = (r: Rule): boolean => ruleMatchesAddress(r, ip.address, ip.family);
    const deny = this.find('deny', now, port, test);
    if (deny) return { effect: 'deny', entry: deny, reason: 'rule', addressClass };
    if (isBlockedClass(addressClass)) {
      const allow = this.find('allow', now, port, (r) => test(r) && liftsGuard(r, addressClass));
      if (allow) return { effect: 'allow', entry: allow, reason: 'rule', addressClass };
      return { effect: 'deny', reason: 'ssrf', addressClass };
    }
    return { effect: 'allow', reason: 'public', addressClass };
  }
}
