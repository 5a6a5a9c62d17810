/**
 * HTTP proxy requests on an egress stream: CONNECT tunnels and absolute-form plain
 * HTTP, parsed by Node's own HTTP parser (a per-stream http.Server that never listens:
 * it answers malformed input with 400 and oversized heads with 431, and never throws).
 *
 * Safety argument: each plain-HTTP request is decided on the host, port and path it
 * will be forwarded to (the URL as Node's WHATWG parser normalizes it, so a path rule
 * sees the same `/a/../b` -> `/b` the destination does), over a connection to the
 * checked address; headers meant for the proxy (Proxy-Authorization, hop-by-hop ones)
 * never reach the destination.
 */
import * as http from 'node:http';
import * as net from 'node:net';
import type { ProxyBroker, Verdict } from './types';
import type { Attempt, StreamContext, TunnelReplies } from './proxy';

/**
 * Never forwarded either way: hop-by-hop headers (RFC 9110 7.6.1), Proxy-Authorization
 * (a credential for a proxy, not for the destination), and the ones this proxy answers
 * or sets itself (Expect: we send 100 Continue only after the allow; Host: see hostHeader).
 */
const HOP_BY_HOP = new Set([
  'connection', 'proxy-connection', 'keep-alive', 'te', 'trailer', 'transfer-encoding', 'upgrade',
  'proxy-authorization', 'proxy-authenticate', 'expect', 'host',
]);

const NOT_A_SERVER =
  "This is Airlock's egress proxy, not a web server: send requests through it in absolute form " +
  '(GET http://host/path), e.g. by setting HTTP_PROXY to the proxy address.';

/**
 * A CONNECT request whose whole head is in FIRST and within the strict grammar below
 * (request line, then `name: value` lines of printable characters): the tunnel's
 * target and the bytes after the head. Anything else, including every malformed or
 * unusual head, goes to Node's parser; what this accepts, Node reads the same way
 * (its headers play no part in a CONNECT). Saves a per-stream HTTP server and parser
 * on the connection latency of every tunnel.
 */
const CONNECT_LINE = /^CONNECT ([\x21-\x7e]{1,300}) HTTP\/1\.[01]\r\n/;
const HEADER_LINE = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+:[\t\x20-\x7e]*$/;

export function plainConnect(first: Buffer, limits: { maxHeaderBytes: number }): { target: { host: string; port: number }; head: Buffer } | undefined {
  if (first.length < 16 || first.toString('latin1', 0, 8) !== 'CONNECT ') return undefined;
  const end = first.indexOf('\r\n\r\n');
  if (end < 0 || end + 4 > limits.maxHeaderBytes) return undefined;
  const text = first.toString('latin1', 0, end + 2);
  const line = CONNECT_LINE.exec(text);
  if (!line) return undefined;
  const fields = text.slice(line[0].length, -2);
  if (fields !== '' && !fields.split('\r\n').every((f) => HEADER_LINE.test(f))) return undefined;
  const target = parseAuthority(line[1]!);
  return target ? { target, head: first.subarray(end + 4) } : undefined;
}

/** Serves HTTP on the stream whose first bytes are FIRST. */
export function serveHttp(sock: net.Socket, first: Buffer, ctx: StreamContext): void {
  const { limits } = ctx;
  const fast = plainConnect(first, limits);
  if (fast) {
    ctx.tunnel({ protocol: 'connect', ...fast.target }, fast.head, connectReplies(fast.target));
    return;
  }
  const server = http.createServer({
    maxHeaderSize: limits.maxHeaderBytes,
    insecureHTTPParser: false,
    // Between requests on a keep-alive connection (Node also advertises it as Keep-Alive: timeout=).
    keepAliveTimeout: limits.headerTimeoutMs,
    // Node enforces headersTimeout/requestTimeout only from a timer that listen() starts;
    // this server never listens, so the head deadline is our own timer (armHead below).
    headersTimeout: limits.headerTimeoutMs,
    requestTimeout: 0,
  });
  // A client that half-closes after its request still gets the response (Node's default
  // ends the socket at once); the connection closes after that response.
  // (httpAllowHalfOpen: an undocumented Server field, present since Node 0.x.)
  (server as http.Server & { httpAllowHalfOpen: boolean }).httpAllowHalfOpen = true;
  let inFlight = 0;
  let headTimer: NodeJS.Timeout | undefined;
  const disarmHead = (): void => clearTimeout(headTimer);
  const armHead = (): void => {
    disarmHead();
    headTimer = setTimeout(() => sock.destroy(), limits.headerTimeoutMs);
  };
  const onRequest = (expectContinue: boolean) => (req: http.IncomingMessage, res: http.ServerResponse): void => {
    disarmHead();
    inFlight++;
    res.once('close', () => {
      if (--inFlight === 0 && !sock.destroyed) armHead();
    });
    handleRequest(req, res, ctx, expectContinue).catch(() => res.destroy());
  };
  server.on('request', onRequest(false));
  // Without this listener Node answers 100 Continue before we decide; with it, a denied
  // client gets its 403 before sending the body.
  server.on('checkContinue', onRequest(true));
  server.on('connect', (req: http.IncomingMessage, _socket: unknown, head: Buffer) => {
    disarmHead();
    // A CONNECT pipelined behind an unfinished request: its reply would interleave.
    if (inFlight > 0) return sock.destroy();
    const target = parseAuthority(req.url ?? '');
    if (!target) {
      ctx.close(textResponse(400, `Airlock's egress proxy expects CONNECT host:port (got ${printable(req.url ?? '')}).`));
      return;
    }
    ctx.tunnel({ protocol: 'connect', ...target }, head, connectReplies(target));
  });
  sock.once('close', disarmHead);
  armHead();
  sock.unshift(first);
  server.emit('connection', sock);
  sock.resume();
}

function connectReplies(target: { host: string; port: number }): TunnelReplies {
  return {
    denied: (verdict) => textResponse(403, denialText(verdict, target), verdict.rule),
    failed: (code) => textResponse(502, `Airlock could not connect to ${target.host}:${target.port}: ${code}.`),
    opened: 'HTTP/1.1 200 Connection Established\r\n\r\n',
  };
}

async function handleRequest(req: http.IncomingMessage, res: http.ServerResponse, ctx: StreamContext, expectContinue: boolean): Promise<void> {
  const target = parseTarget(req.url ?? '');
  if ('status' in target) return sendText(res, target.status, target.message);
  if (req.headers.upgrade !== undefined) {
    return sendText(res, 501, `Airlock's egress proxy does not relay protocol upgrades (${printable(req.headers.upgrade)}) over plain HTTP; ` +
      'use a TLS URL (wss://, https://), which the client tunnels with CONNECT.');
  }
  const run = ctx.begin({ protocol: 'http', host: target.host, port: target.port, method: req.method ?? 'GET', path: target.path });
  try {
    const verdict = await run.decide('parsed');
    if (verdict.decision !== 'allow') {
      // Refused anyway; a placeholder on its way to the wrong host is still recorded
      // as the exfiltration attempt it is (secret.blocked).
      ctx.broker?.inspect({ host: target.host, port: target.port, method: req.method ?? 'GET', path: target.path, target: req.url ?? '', headers: requestHeaders(req, target) });
      sendText(res, 403, denialText(verdict, target), verdict.rule);
      run.end();
      return;
    }
    if (req.socket.destroyed) return run.end('client closed before the request was forwarded');
    const brokered = broker(ctx.broker, req, target);
    if ('status' in brokered) {
      sendText(res, brokered.status, brokered.message, brokered.rule);
      run.end(`refused: ${brokered.rule}`);
      return;
    }
    let up: net.Socket;
    try {
      up = await run.connect('parsed');
    } catch (e) {
      const code = run.fail(e);
      sendText(res, 502, `Airlock could not connect to ${target.host}:${target.port}: ${code}.`);
      run.end(`connect to ${target.host}:${target.port} failed: ${code}`);
      return;
    }
    if (req.socket.destroyed) {
      up.destroy();
      return run.end('client closed before the request was forwarded');
    }
    forward(req, res, { run, up, target, ctx, expectContinue, headers: brokered.headers, redact: brokered.substituted ? ctx.broker : undefined });
  } catch (e) {
    res.destroy();
    run.upstream?.destroy();
    run.end(`internal error: ${run.fail(e)}`);
  }
}

interface Forwarding {
  run: Attempt;
  /** Connected to the checked address (Attempt.connect). */
  up: net.Socket;
  target: Target;
  ctx: StreamContext;
  expectContinue: boolean;
  /** The request headers to send (requestHeaders, after the broker's substitutions). */
  headers: string[];
  /** After a substitution: the response body is redacted of granted values. */
  redact?: ProxyBroker;
}

/** Headers to send for REQ, or the broker's refusal (a placeholder going where it may not). */
export function broker(b: ProxyBroker | undefined, req: http.IncomingMessage, target: Target): { headers: string[]; substituted: boolean } | { status: number; rule: string; message: string } {
  const headers = requestHeaders(req, target);
  if (!b) return { headers, substituted: false };
  return b.rewrite({ host: target.host, port: target.port, method: req.method ?? 'GET', path: target.path, target: req.url ?? '', headers });
}

/** Sends the request over UP and streams the response back; ends the attempt when the client's response closes. */
function forward(req: http.IncomingMessage, res: http.ServerResponse, f: Forwarding): void {
  const { run, up, target } = f;
  const idle = f.ctx.limits.idleTimeoutMs;
  up.setTimeout(idle, () => {
    run.fail(`idle timeout: no bytes either way for ${idle} ms`);
    up.destroy();
  });
  const out = http.request({
    createConnection: () => up,
    method: req.method,
    path: target.originPath,
    headers: f.headers,
    setHost: false,
    maxHeaderSize: f.ctx.limits.maxHeaderBytes,
  });
  out.on('response', (pres) => {
    pres.on('error', (e) => run.fail(e));
    pres.on('close', () => {
      if (pres.complete) return;
      run.fail('destination closed the connection mid-response');
      res.destroy();
    });
    relayResponse(pres, res, { run, target, redact: f.redact });
  });
  let closed = false;
  out.on('error', (e) => {
    // After the client's response closed (we destroyed OUT), errors are our own doing.
    if (closed) return;
    const code = run.fail(e);
    if (res.headersSent) res.destroy();
    else sendText(res, 502, `Airlock reached ${target.host}:${target.port}, but the request failed: ${code}.`);
  });
  const client = req.socket;
  const done = (): void => {
    if (closed) return;
    closed = true;
    client.off('close', done);
    if (!res.writableFinished) run.fail('client closed before the response was complete');
    out.destroy();
    up.destroy();
    run.end();
  };
  res.once('close', done);
  // A pipelined response still queued behind another never emits 'close' if the client leaves.
  client.once('close', done);
  if (f.expectContinue) res.writeContinue();
  req.pipe(out);
}

/** Writes the destination's response to the client (redacting its body after a substitution). */
export function relayResponse(pres: http.IncomingMessage, res: http.ServerResponse, f: { run: Attempt; target: { host: string; port: number }; redact?: ProxyBroker }): void {
  const { run, target } = f;
  let headers = responseHeaders(pres.rawHeaders);
  // A redacted body changes length: Node frames it itself (chunked) instead.
  if (f.redact) headers = headers.filter((_, i, a) => (i % 2 === 0 ? a[i]! : a[i - 1]!).toLowerCase() !== 'content-length');
  try {
    res.sendDate = false;
    res.writeHead(pres.statusCode ?? 502, pres.statusMessage, headers);
  } catch {
    run.fail('the destination sent a response head Node cannot relay');
    pres.destroy();
    return sendText(res, 502, `Airlock reached ${target.host}:${target.port}, but its response head could not be relayed.`);
  }
  if (!f.redact) {
    pres.pipe(res);
    return;
  }
  const rs = f.redact.responseRedactor();
  pres.on('data', (d: Buffer) => {
    const out = rs.push(d);
    if (out.length && !res.write(out)) {
      pres.pause();
      res.once('drain', () => pres.resume());
    }
  });
  pres.on('end', () => res.end(rs.flush()));
}

export interface Target {
  host: string;
  port: number;
  /** For decide(): the path without the query. */
  path: string;
  /** For the destination: path and query. */
  originPath: string;
  url: URL;
}

/** The absolute-form request target, or the 400 to answer. */
export function parseTarget(raw: string): Target | { status: number; message: string } {
  if (raw.startsWith('/') || raw === '*') return { status: 400, message: NOT_A_SERVER };
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    return { status: 400, message: `Airlock's egress proxy could not parse the request URL ${printable(raw)}.` };
  }
  if (url.protocol !== 'http:') {
    return {
      status: 400,
      message: `Airlock's egress proxy forwards only http:// URLs in absolute form (got ${printable(url.protocol)}); ` +
        'for https, the client must tunnel with CONNECT: set HTTPS_PROXY to the proxy address.',
    };
  }
  const host = url.hostname.startsWith('[') ? url.hostname.slice(1, -1) : url.hostname;
  const port = url.port === '' ? 80 : Number(url.port);
  if (host === '' || port === 0) return { status: 400, message: `Airlock's egress proxy needs a host and port in ${printable(raw)}.` };
  return { host, port, path: url.pathname, originPath: url.pathname + url.search, url };
}

/** CONNECT's `host:port` or `[v6]:port`; undefined when malformed. */
function parseAuthority(raw: string): { host: string; port: number } | undefined {
  let host: string;
  let portText: string;
  if (raw.startsWith('[')) {
    const close = raw.indexOf(']');
    if (close < 0 || raw[close + 1] !== ':') return undefined;
    host = raw.slice(1, close);
    portText = raw.slice(close + 2);
    if (!net.isIPv6(host)) return undefined;
  } else {
    const colon = raw.lastIndexOf(':');
    host = raw.slice(0, colon);
    portText = raw.slice(colon + 1);
    // Letters, digits, '.', '-', '_': what DNS names and IPv4 literals are made of.
    if (colon < 0 || !/^[A-Za-z0-9._-]{1,255}$/.test(host)) return undefined;
  }
  if (!/^[0-9]{1,5}$/.test(portText)) return undefined;
  const port = Number(portText);
  return port >= 1 && port <= 65535 ? { host, port } : undefined;
}

/**
 * Host as the client sent it when it names the URL's authority; otherwise the URL's
 * (RFC 9112 3.2.2). Safety argument: the decision was about the URL's host, so a
 * virtual-hosting destination must not be steered to another site by a different Host.
 */
function hostHeader(req: http.IncomingMessage, url: URL): string {
  const sent = req.headers.host?.toLowerCase();
  if (sent !== undefined && (sent === url.host || (url.port === '' && sent === `${url.host}:80`))) return req.headers.host!;
  return url.host;
}

/** Header names listed in a Connection header are hop-by-hop too. */
function connectionTokens(raw: string[]): Set<string> {
  const tokens = new Set<string>();
  for (let i = 0; i < raw.length; i += 2) {
    if (raw[i]!.toLowerCase() !== 'connection') continue;
    for (const t of raw[i + 1]!.split(',')) tokens.add(t.trim().toLowerCase());
  }
  return tokens;
}

function endToEnd(raw: string[], into: string[]): string[] {
  const extra = connectionTokens(raw);
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!.toLowerCase();
    if (!HOP_BY_HOP.has(name) && !extra.has(name)) into.push(raw[i]!, raw[i + 1]!);
  }
  return into;
}

export function requestHeaders(req: http.IncomingMessage, target: Target): string[] {
  const headers = endToEnd(req.rawHeaders, ['Host', hostHeader(req, target.url)]);
  // Node decoded the client's chunked body; re-chunk it toward the destination.
  if (req.headers['transfer-encoding'] !== undefined) headers.push('Transfer-Encoding', 'chunked');
  return headers;
}

/** The destination's headers minus hop-by-hop ones (Node frames the body to the client itself). */
function responseHeaders(raw: string[]): string[] {
  return endToEnd(raw, []);
}

function denialText(verdict: Verdict, target: { host: string; port: number }): string {
  return verdict.message ?? `Airlock blocked ${target.host}:${target.port} (rule ${verdict.rule}).`;
}

/** A header-safe, bounded rendering of text that came from the sandbox or the rules. */
function printable(s: string): string {
  return s.replace(/[^\x20-\x7e]/g, '?').slice(0, 200);
}

function textHeaders(body: string, rule?: string): Record<string, string | number> {
  return {
    'Content-Type': 'text/plain; charset=utf-8',
    ...(rule !== undefined ? { 'X-Airlock-Rule': printable(rule) } : {}),
    'Content-Length': Buffer.byteLength(body),
    Connection: 'close',
  };
}

/** A complete response for the raw CONNECT socket: the connection closes after it. */
function textResponse(status: number, message: string, rule?: string): string {
  const body = `${message}\n`;
  const head = Object.entries(textHeaders(body, rule)).map(([k, v]) => `${k}: ${v}\r\n`).join('');
  return `HTTP/1.1 ${status} ${http.STATUS_CODES[status] ?? ''}\r\n${head}\r\n${body}`;
}

/** The same response through Node's ServerResponse; the connection closes after it. */
export function sendText(res: http.ServerResponse, status: number, message: string, rule?: string): void {
  if (res.headersSent || res.destroyed) return;
  const body = `${message}\n`;
  res.writeHead(status, textHeaders(body, rule));
  res.end(body);
}
