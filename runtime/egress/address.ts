/**
 * Host names and IP literals for the egress proxy, and the address classes the SSRF
 * guard blocks.
 *
 * The safety argument rests on one rule: every spelling of an address that some
 * resolver or socket API on the host would accept must be recognized here as that
 * address. So IPv4 is read the way inet_aton (and the WHATWG URL parser) read it
 * (`2130706433`, `0177.1`, `0x7f.0.0.1` are all 127.0.0.1), and an IPv4-mapped IPv6
 * address is reported as the IPv4 address it carries.
 */
import * as net from 'node:net';
import { domainToASCII } from 'node:url';

export type AddressClass =
  | 'public' | 'loopback' | 'private' | 'link-local' | 'cgnat'
  | 'multicast' | 'unspecified' | 'metadata' | 'reserved';

export type IpLiteral = { family: 4 | 6; address: string };
export type NormalizedHost = { kind: 'ip'; family: 4 | 6; address: string } | { kind: 'name'; name: string };
export type Cidr = { family: 4 | 6; address: string; prefix: number };

/** A host that cannot be a destination; `message` names the host and says why. */
export class EgressAddressError extends Error {
  constructor(readonly host: string, readonly reason: string) {
    super(`host "${host}" is not valid: ${reason}`);
    this.name = 'EgressAddressError';
  }
}

const V4_MAX = 0xffffffffn;
const V6_BITS = 128n;
const MAPPED_PREFIX = 0xffffn << 32n; // ::ffff:0:0/96

/** One inet_aton part: 0x-hex (digits optional, as in WHATWG), 0-octal, or decimal. */
function parseV4Part(part: string): bigint | null {
  if (/^0x[0-9a-f]*$/i.test(part)) return part.length === 2 ? 0n : BigInt(part);
  if (/^0[0-7]+$/.test(part)) return BigInt('0o' + part.slice(1));
  if (/^(0|[1-9][0-9]*)$/.test(part)) return BigInt(part);
  return null;
}

/** inet_aton: 1 to 4 parts; the last part fills all remaining bytes (`127.1`). */
function parseV4(text: string): bigint | null {
  const t = text.endsWith('.') ? text.slice(0, -1) : text;
  const parts = t.split('.');
  if (parts.length > 4 || parts.some((p) => p.length === 0)) return null;
  let value = 0n;
  for (let i = 0; i < parts.length; i++) {
    const n = parseV4Part(parts[i]);
    if (n === null) return null;
    const last = i === parts.length - 1;
    const bits = last ? BigInt(8 * (4 - i)) : 8n;
    if (n >= 1n << bits) return null;
    value = last ? (value << bits) | n : (value << 8n) | n;
  }
  return value;
}

/** Expands a text that net.isIPv6 accepted (no zone id) to its 128-bit value. */
function parseV6(text: string): bigint | null {
  if (text.includes('%') || !net.isIPv6(text)) return null;
  let t = text;
  const v4 = /(\d+\.\d+\.\d+\.\d+)$/.exec(t);
  if (v4) {
    // isIPv6 only accepts a strict dotted quad here, so parseV4 reads it exactly.
    const n = parseV4(v4[1]);
    if (n === null) return null;
    t = t.slice(0, v4.index) + (n >> 16n).toString(16) + ':' + (n & 0xffffn).toString(16);
  }
  const halves = t.split('::');
  const read = (s: string): bigint[] => (s === '' ? [] : s.split(':').map((g) => BigInt('0x' + g)));
  const head = read(halves[0]);
  const rest = halves.length > 1 ? read(halves[1]) : [];
  const fill = 8 - head.length - rest.length;
  if (fill < 0 || (halves.length === 1 && fill !== 0)) return null;
  const groups = [...head, ...Array<bigint>(fill).fill(0n), ...rest];
  return groups.reduce((acc, g) => (acc << 16n) | g, 0n);
}

function v4Text(n: bigint): string {
  return [24n, 16n, 8n, 0n].map((s) => String((n >> s) & 0xffn)).join('.');
}

/** RFC 5952: lower-case hex, no leading zeros, the longest run (>= 2) of zero groups as `::`. */
function v6Text(n: bigint): string {
  const groups = Array.from({ length: 8 }, (_, i) => Number((n >> BigInt(112 - 16 * i)) & 0xffffn));
  let best = -1, bestLen = 1;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== 0) { i++; continue; }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLen) { best = i; bestLen = j - i; }
    i = j;
  }
  const hex = groups.map((g) => g.toString(16));
  if (best < 0) return hex.join(':');
  return hex.slice(0, best).join(':') + '::' + hex.slice(best + bestLen).join(':');
}

/** Value and family of an IP literal, with IPv4-mapped IPv6 unwrapped to IPv4 unless RAW. */
function parseIp(host: string, raw = false): { family: 4 | 6; value: bigint } | null {
  let h = host;
  if (h.startsWith('[') && h.endsWith(']')) h = h.slice(1, -1);
  if (h.includes(':')) {
    const v = parseV6(h);
    if (v === null) return null;
    // A mapped address reaches the IPv4 host, so it is that IPv4 address for every check.
    if (!raw && v >> 32n === 0xffffn) return { family: 4, value: v & V4_MAX };
    return { family: 6, value: v };
  }
  if (h !== host) return null; // brackets only hold IPv6
  const v = parseV4(h);
  return v === null ? null : { family: 4, value: v };
}

const text = (family: 4 | 6, value: bigint): string => (family === 4 ? v4Text(value) : v6Text(value));

/** The canonical address when HOST is an IP literal in any notation, else null. */
export function parseIpLiteral(host: string): IpLiteral | null {
  const ip = parseIp(host);
  return ip && { family: ip.family, address: text(ip.family, ip.value) };
}

/** WHATWG's "ends in a number": a name whose last label is numeric must be an IPv4 address. */
function endsInNumber(name: string): boolean {
  const last = name.split('.').pop() ?? '';
  return /^[0-9]+$/.test(last) || /^0x[0-9a-f]*$/.test(last);
}

/**
 * Lower-cases, strips brackets and one trailing dot, converts IDN to punycode, and
 * reads IP literals in any notation; throws EgressAddressError for what cannot be a
 * host name. IDN conversion runs before the IP check because full-width digits and
 * dots (`１２７。0.0.1`) fold to an IP literal.
 */
export function normalizeHost(host: string): NormalizedHost {
  const fail = (why: string): never => { throw new EgressAddressError(host, why); };
  if (host.includes('%')) fail('"%" is not allowed (no zone ids or percent-encoding)');
  let h = host.toLowerCase();
  if (h.startsWith('[') || h.endsWith(']')) {
    const ip = h.startsWith('[') && h.endsWith(']') ? parseIpLiteral(h) : null;
    if (!ip || !h.includes(':')) fail('brackets must hold an IPv6 address');
    return { kind: 'ip', ...ip! };
  }
  if (h.includes(':')) {
    const ip = parseIpLiteral(h);
    return ip ? { kind: 'ip', ...ip } : fail('it is not a valid IPv6 address');
  }
  if (/[^\x00-\x7f]/.test(h)) {
    const ascii = domainToASCII(h);
    if (!ascii) fail('it is not a valid internationalized domain name');
    h = ascii.toLowerCase();
  }
  if (h.endsWith('.')) h = h.slice(0, -1);
  const ip = parseIpLiteral(h);
  if (ip) return { kind: 'ip', ...ip };
  if (h.length === 0) fail('the name is empty');
  if (h.length > 253) fail('the name is longer than 253 characters');
  if (/[^a-z0-9\-_.]/.test(h)) fail('only letters, digits, "-", "_" and "." are allowed in a name');
  const labels = h.split('.');
  if (labels.some((l) => l.length === 0)) fail('the name has an empty label');
  if (labels.some((l) => l.length > 63)) fail('a label is longer than 63 characters');
  // A name like 256.0.0.1 or 1.2.3.4.5 is a mistyped address, not a name; refusing it
  // (as the WHATWG URL parser does) keeps it from reaching a resolver that reads it otherwise.
  if (endsInNumber(h)) fail('it looks like an IPv4 address but is not a valid one');
  return { kind: 'name', name: h };
}

/** Is VALUE inside NET/PREFIX, for addresses of BITS bits? */
function within(value: bigint, base: bigint, prefix: number, bits: bigint): boolean {
  const shift = bits - BigInt(prefix);
  return value >> shift === base >> shift;
}

const V4_CLASSES: Array<[number, number, number, number, number, AddressClass]> = [
  // Metadata first: it lies inside link-local and needs its own class. 168.63.129.16
  // is Azure's host endpoint (WireServer), a well-known SSRF target in public space.
  [169, 254, 169, 254, 32, 'metadata'],
  [168, 63, 129, 16, 32, 'metadata'],
  [0, 0, 0, 0, 8, 'unspecified'],
  [127, 0, 0, 0, 8, 'loopback'],
  [10, 0, 0, 0, 8, 'private'],
  [172, 16, 0, 0, 12, 'private'],
  [192, 168, 0, 0, 16, 'private'],
  [169, 254, 0, 0, 16, 'link-local'],
  [100, 64, 0, 0, 10, 'cgnat'],
  [224, 0, 0, 0, 4, 'multicast'],
  [240, 0, 0, 0, 4, 'reserved'], // includes 255.255.255.255
  [192, 0, 0, 0, 24, 'reserved'], // IETF protocol assignments
  [192, 88, 99, 0, 24, 'reserved'], // deprecated 6to4 relay anycast
  // Not blocked, on purpose: the documentation ranges (192.0.2/24, 198.51.100/24,
  // 203.0.113/24) and benchmarking (198.18/15) are not internal networks, and real
  // setups route through them: fake-IP DNS resolvers hand out 198.18.x for every
  // name, and gateway-fronted registries sit in 203.0.113/24 (seen on the machines we
  // test on). Blocking them would break reaching allowed hosts and protect nothing
  // the guard is for (loopback, private, link-local, metadata).
];

function classifyV4(v: bigint): AddressClass {
  for (const [a, b, c, d, prefix, cls] of V4_CLASSES) {
    const base = BigInt(((a << 24) | (b << 16) | (c << 8) | d) >>> 0);
    if (within(v, base, prefix, 32n)) return cls;
  }
  return 'public';
}

const v6 = (s: string): bigint => parseV6(s)!;
const V6_METADATA = v6('fd00:ec2::254');

function classifyV6(v: bigint): AddressClass {
  const in6 = (base: string, prefix: number): boolean => within(v, v6(base), prefix, V6_BITS);
  if (v === 0n) return 'unspecified';
  if (v === 1n) return 'loopback';
  // Every prefix that embeds an IPv4 address is judged by that address, so none of
  // them can carry a loopback or metadata address past the guard.
  if (v >> 32n === 0n) return classifyV4(v & V4_MAX); // ::/96 IPv4-compatible
  if (v >> 32n === 0xffffn) return classifyV4(v & V4_MAX); // ::ffff:0:0/96 mapped
  if (v >> 32n === 0xffff0000n) return classifyV4(v & V4_MAX); // ::ffff:0:0:0/96 SIIT
  if (in6('64:ff9b::', 96) || in6('64:ff9b:1::', 48)) return classifyV4(v & V4_MAX); // NAT64
  if (in6('2002::', 16)) return classifyV4((v >> 80n) & V4_MAX); // 6to4
  if (v === V6_METADATA) return 'metadata';
  if (in6('fc00::', 7)) return 'private';
  if (in6('fe80::', 10)) return 'link-local';
  if (in6('fec0::', 10)) return 'private';
  if (in6('ff00::', 8)) return 'multicast';
  if (in6('100::', 64)) return 'reserved'; // discard
  if (in6('2001:db8::', 32) || in6('3fff::', 20)) return 'reserved'; // documentation
  // Teredo tunnels to an IPv4 address hidden in the low bits; no sandbox needs it.
  if (in6('2001::', 32)) return 'reserved';
  // Only 2000::/3 is allocated for global unicast; anything else is not a destination.
  if (!in6('2000::', 3)) return 'reserved';
  return 'public';
}

/**
 * The class of ADDRESS (any notation; an IPv4-mapped IPv6 address is classified as
 * its IPv4 address). Throws EgressAddressError when ADDRESS is not an IP address of
 * FAMILY: a guard that cannot read its input must not let it through.
 */
export function classifyAddress(address: string, family: 4 | 6): AddressClass {
  const ip = parseIp(address);
  if (!ip || (ip.family !== family && !(family === 6 && address.includes(':')))) {
    throw new EgressAddressError(address, `it is not an IPv${family} address`);
  }
  return ip.family === 4 ? classifyV4(ip.value) : classifyV6(ip.value);
}

/** Everything but 'public' is refused unless a CIDR allow rule explicitly names it. */
export function isBlockedClass(c: AddressClass): boolean {
  return c !== 'public';
}

/**
 * `10.0.0.0/8`, `fd00::/8`, `[fd00::]/8`, or a bare address (/32, /128); the address
 * in any notation. Host bits are cleared (`10.1.2.3/8` is `10.0.0.0/8`). A mapped
 * IPv6 network of /96 or longer becomes the IPv4 network it covers, so it matches the
 * unwrapped addresses the guard sees.
 */
export function parseCidr(cidrText: string): Cidr | null {
  const slash = cidrText.lastIndexOf('/');
  const addrText = slash < 0 ? cidrText : cidrText.slice(0, slash);
  const prefixText = slash < 0 ? null : cidrText.slice(slash + 1);
  if (prefixText !== null && !/^(0|[1-9][0-9]{0,2})$/.test(prefixText)) return null;
  const ip = parseIp(addrText);
  if (!ip) return null;
  const isV6Text = addrText.includes(':');
  let family = ip.family;
  let value = ip.value;
  let prefix = prefixText === null ? (isV6Text ? 128 : 32) : Number(prefixText);
  if (isV6Text && family === 4) {
    if (prefix < 96) { family = 6; value = MAPPED_PREFIX | value; } else prefix -= 96;
  }
  const bits = family === 4 ? 32 : 128;
  if (prefix > bits) return null;
  const shift = BigInt(bits - prefix);
  value = (value >> shift) << shift;
  return { family, address: text(family, value), prefix };
}

/** Does CIDR contain ADDRESS? Families never cross (mapped addresses are unwrapped first). */
export function cidrContains(cidr: Cidr, address: string, family: 4 | 6): boolean {
  const ip = parseIp(address);
  const base = parseIp(cidr.family === 6 ? `[${cidr.address}]` : cidr.address, true);
  if (!ip || !base || ip.family !== cidr.family || base.family !== cidr.family) return false;
  if (ip.family !== family && !(family === 6 && address.includes(':'))) return false;
  return within(ip.value, base.value, cidr.prefix, cidr.family === 4 ? 32n : V6_BITS);
}

/** The first and last address of CIDR (a mapped network below /96 stays IPv6). */
export function cidrBounds(cidr: Cidr): { first: string; last: string } {
  const base = parseIp(cidr.family === 6 ? `[${cidr.address}]` : cidr.address, true);
  const bits = cidr.family === 4 ? 32 : 128;
  if (!base || base.family !== cidr.family || cidr.prefix < 0 || cidr.prefix > bits) {
    throw new EgressAddressError(cidr.address, `it is not an IPv${cidr.family} network`);
  }
  const hostMask = (1n << BigInt(bits - cidr.prefix)) - 1n;
  return { first: text(cidr.family, base.value & ~hostMask), last: text(cidr.family, base.value | hostMask) };
}
