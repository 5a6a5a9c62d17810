/**
 * SOCKS5 (RFC 1928) on an egress stream: no-auth greeting, CONNECT only, IPv4, IPv6 and
 * domain addresses. The session is known from the socket, so the "no authentication"
 * method loses nothing.
 *
 * Safety argument: the handshake is parsed from a buffer that never holds more than one
 * greeting and one request (bounded by their length bytes: 257 + 262 bytes) plus the
 * rest of the chunk that completed them, within headerTimeoutMs; anything malformed
 * gets the matching reply when RFC 1928 has one and is closed.
 */
import type * as net from 'node:net';
import type { StreamContext, TunnelReplies } from './proxy';

const enum Reply {
  Succeeded = 0x00,
  GeneralFailure = 0x01,
  NotAllowed = 0x02,
  NetworkUnreachable = 0x03,
  HostUnreachable = 0x04,
  Refused = 0x05,
  CommandNotSupported = 0x07,
  AddressTypeNotSupported = 0x08,
}

/** A reply with BND.ADDR 0.0.0.0:0 (the bound address is the runtime's, of no use inside the sandbox). */
function reply(code: Reply): Buffer {
  return Buffer.from([0x05, code, 0x00, 0x01, 0, 0, 0, 0, 0, 0]);
}

/** Letters, digits, '.', '-', '_': anything else cannot be a DNS name (IDNs travel as punycode). */
const HOST_NAME = /^[A-Za-z0-9._-]{1,255}$/;

type Parsed =
  | { kind: 'more' }
  | { kind: 'close'; reply?: Buffer }
  | { kind: 'request'; host: string; port: number; rest: Buffer };

/** Serves the stream whose first bytes (after the header) are FIRST, starting with 0x05. */
export function serveSocks(sock: net.Socket, first: Buffer, ctx: StreamContext): void {
  let buf = first;
  let greeted = false;
  const timer = setTimeout(() => finish({ kind: 'close' }), ctx.limits.headerTimeoutMs);
  const onData = (chunk: Buffer): void => {
    buf = Buffer.concat([buf, chunk]);
    step();
  };
  const onEnd = (): void => finish({ kind: 'close' });
  const finish = (p: Exclude<Parsed, { kind: 'more' }>): void => {
    clearTimeout(timer);
    sock.off('data', onData);
    sock.off('end', onEnd);
    sock.off('close', onClose);
    if (p.kind === 'close') {
      ctx.close(p.reply);
      return;
    }
    // Paused until the tunnel is open: the client's early bytes wait in the socket.
    sock.pause();
    ctx.tunnel({ protocol: 'socks', host: p.host, port: p.port }, p.rest, SOCKS_REPLIES);
  };
  const onClose = (): void => clearTimeout(timer);
  const step = (): void => {
    if (!greeted) {
      const g = parseGreeting(buf);
      if (g.kind === 'more') return;
      if (g.kind === 'close') return finish(g);
      greeted = true;
      sock.write(Buffer.from([0x05, 0x00]));
      buf = g.rest;
    }
    const r = parseRequest(buf);
    if (r.kind !== 'more') finish(r);
  };
  sock.on('data', onData);
  sock.on('end', onEnd);
  sock.on('close', onClose);
  sock.resume();
  step();
}

/** VER 5, NMETHODS, METHODS: accepts only when "no authentication" (0x00) is offered. */
function parseGreeting(b: Buffer): { kind: 'more' } | { kind: 'close'; reply?: Buffer } | { kind: 'ok'; rest: Buffer } {
  if (b.length < 2) return { kind: 'more' };
  if (b[0] !== 0x05) return { kind: 'close' };
  const end = 2 + b[1]!;
  if (b.length < end) return { kind: 'more' };
  if (!b.subarray(2, end).includes(0x00)) return { kind: 'close', reply: Buffer.from([0x05, 0xff]) };
  return { kind: 'ok', rest: b.subarray(end) };
}

/** VER 5, CMD, RSV, ATYP, DST.ADDR, DST.PORT. RSV is ignored, as clients differ. */
function parseRequest(b: Buffer): Parsed {
  if (b.length < 4) return { kind: 'more' };
  if (b[0] !== 0x05) return { kind: 'close' };
  if (b[1] !== 0x01) return { kind: 'close', reply: reply(Reply.CommandNotSupported) };
  const atyp = b[3];
  let addrEnd: number;
  if (atyp === 0x01) addrEnd = 4 + 4;
  else if (atyp === 0x04) addrEnd = 4 + 16;
  else if (atyp === 0x03) {
    if (b.length < 5) return { kind: 'more' };
    addrEnd = 5 + b[4]!;
  } else return { kind: 'close', reply: reply(Reply.AddressTypeNotSupported) };
  if (b.length < addrEnd + 2) return { kind: 'more' };
  const port = b.readUInt16BE(addrEnd);
  let host: string;
  if (atyp === 0x01) host = Array.from(b.subarray(4, 8)).join('.');
  else if (atyp === 0x04) host = ipv6Text(b.subarray(4, 20));
  else host = b.toString('latin1', 5, addrEnd);
  if (port === 0 || (atyp === 0x03 && !HOST_NAME.test(host))) return { kind: 'close', reply: reply(Reply.GeneralFailure) };
  return { kind: 'request', host, port, rest: b.subarray(addrEnd + 2) };
}

/** RFC 5952 text: lowercase, the longest run of two or more zero groups as '::'. */
function ipv6Text(b: Buffer): string {
  const groups: number[] = [];
  for (let i = 0; i < 16; i += 2) groups.push(b.readUInt16BE(i));
  let best = -1;
  let bestLen = 1;
  for (let i = 0; i < 8;) {
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLen) [best, bestLen] = [i, j - i];
    i = j === i ? i + 1 : j;
  }
  const hex = groups.map((g) => g.toString(16));
  if (best < 0) return hex.join(':');
  return `${hex.slice(0, best).join(':')}::${hex.slice(best + bestLen).join(':')}`;
}

/** Connect errors as SOCKS5 reply codes. */
function replyFor(code: string): Reply {
  switch (code) {
    case 'ECONNREFUSED': return Reply.Refused;
    case 'EHOSTUNREACH': case 'ETIMEDOUT': return Reply.HostUnreachable;
    case 'ENETUNREACH': return Reply.NetworkUnreachable;
    default: return Reply.GeneralFailure;
  }
}

const SOCKS_REPLIES: TunnelReplies = {
  denied: () => reply(Reply.NotAllowed),
  failed: (code) => reply(replyFor(code)),
  opened: reply(Reply.Succeeded),
};
