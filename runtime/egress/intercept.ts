/**
 * TLS interception of a tunnel to a host a brokered secret names: the proxy verifies
 * the destination's certificate itself, answers the client with a leaf certificate of
 * the runtime's CA (trusted inside the sandbox), and serves the decrypted HTTP/1.1
 * requests through the broker, which swaps placeholders for values.
 *
 * Safety argument: only tunnels the broker names are intercepted; every request on
 * one goes to the address the rules checked for the tunnel's host (never to a host a
 * request names), with its Host header forced to that host, over TLS verified against
 * the system's roots (plus CAs the runtime was told to trust): a sandbox cannot steer
 * a value to another virtual host or to a server that merely claims the name.
 */
import * as http from 'node:http';
import * as net from 'node:net';
import * as tls from 'node:tls';
import { relayResponse, broker as brokerHeaders, sendText, Target } from './http';
import type { Attempt, TunnelReplies } from './proxy';
import { describeError, replyAndClose } from './sockets';
import type { ProxyBroker, ProxyLimits } from './types';

export interface Interception {
  client: net.Socket;
  run: Attempt;
  /** What the client sent after its CONNECT (the start of its TLS handshake, usually nothing). */
  head: Buffer;
  replies: TunnelReplies;
  broker: ProxyBroker;
  limits: ProxyLimits;
}

/** Serves an intercepted tunnel until the client leaves; ends the attempt exactly once. */
export async function intercept(x: Interception): Promise<void> {
  const { client, run, broker, limits } = x;
  const host = run.req.host;
  const port = run.req.port;
  let first: tls.TLSSocket;
  try {
    first = await upstreamTls(run, broker, () => run.connect());
  } catch (e) {
    const code = run.fail(e);
    replyAndClose(client, x.replies.failed(code));
    run.end(`TLS to ${host}:${port} failed: ${code}`);
    return;
  }
  if (client.destroyed) {
    first.destroy();
    return run.end('client closed before the connection was made');
  }
  let context: tls.SecureContext;
  try {
    context = await broker.tls.serverContext(host);
  } catch (e) {
    first.destroy();
    replyAndClose(client, x.replies.failed('ECERT'));
    return run.end(`could not issue a certificate for ${host}: ${describeError(e)}`);
  }
  client.write(x.replies.opened);
  if (x.head.length) client.unshift(x.head);
  const secure = new tls.TLSSocket(client, { isServer: true, secureContext: context, ALPNProtocols: ['http/1.1'] });
  secure.on('error', (e) => run.fail(`client TLS: ${describeError(e)}`));

  // Upstream connections: the first, then new ones to the same checked address when
  // the destination closes an idle keep-alive connection.
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  let spare: tls.TLSSocket | undefined = first;
  const upstreams = new Set<tls.TLSSocket>();
  (agent as unknown as { createConnection: unknown }).createConnection = (_opts: unknown, cb: (err: Error | null, s?: net.Socket) => void): void => {
    const ready = spare && !spare.destroyed ? Promise.resolve(spare) : upstreamTls(run, broker, () => run.connectExtra());
    spare = undefined;
    ready.then((s) => {
      upstreams.add(s);
      s.setTimeout(limits.idleTimeoutMs, () => s.destroy());
      cb(null, s);
    }, (e: Error) => cb(e));
  };

  const server = http.createServer({ maxHeaderSize: limits.maxHeaderBytes, keepAliveTimeout: limits.idleTimeoutMs, requestTimeout: 0 });
  server.on('request', (req: http.IncomingMessage, res: http.ServerResponse) => {
    const target = originTarget(req, host, port);
    if ('status' in target) return sendText(res, target.status, target.message);
    const rewritten = brokerHeaders(broker, req, target);
    if ('status' in rewritten) return sendText(res, rewritten.status, rewritten.message, rewritten.rule);
    const out = http.request({ agent, host: host.replace(/^\[|\]$/g, ''), port, method: req.method, path: target.originPath, headers: rewritten.headers, setHost: false, maxHeaderSize: limits.maxHeaderBytes });
    out.on('response', (pres) => relayResponse(pres, res, { run, target, redact: rewritten.substituted ? broker : undefined }));
    out.on('error', (e) => {
      const code = run.fail(e);
      if (res.headersSent) res.destroy();
      else sendText(res, 502, `Airlock reached ${host}:${port}, but the request failed: ${code}.`);
    });
    res.once('close', () => {
      if (!res.writableFinished) out.destroy();
    });
    req.pipe(out);
  });
  let ended = false;
  const done = (): void => {
    if (ended) return;
    ended = true;
    agent.destroy();
    first.destroy();
    for (const s of upstreams) s.destroy();
    run.end();
  };
  secure.setTimeout(limits.idleTimeoutMs, () => {
    run.fail(`idle timeout: no bytes either way for ${limits.idleTimeoutMs} ms`);
    secure.destroy();
  });
  secure.once('close', done);
  client.once('close', done);
  server.emit('connection', secure);
}

/** A TLS connection to the checked address, verified for HOST (a name or an IP literal). */
function upstreamTls(run: Attempt, broker: ProxyBroker, connect: () => Promise<net.Socket>): Promise<tls.TLSSocket> {
  const host = run.req.host;
  const name = host.startsWith('[') ? host.slice(1, -1) : host;
  return connect().then((raw) => new Promise<tls.TLSSocket>((resolve, reject) => {
    const s = tls.connect({
      socket: raw,
      // SNI only for names; an IP literal is verified against the certificate's IP SANs.
      servername: net.isIP(name) ? undefined : name,
      host: name,
      ALPNProtocols: ['http/1.1'],
      ...(broker.tls.upstreamCA ? { ca: broker.tls.upstreamCA } : {}),
    });
    const timer = setTimeout(() => s.destroy(Object.assign(new Error('TLS handshake timed out'), { code: 'ETIMEDOUT' })), run.limits.connectTimeoutMs);
    s.once('secureConnect', () => {
      clearTimeout(timer);
      s.off('error', onError);
      s.on('error', (e) => run.fail(`destination: ${describeError(e)}`));
      resolve(s);
    });
    const onError = (e: Error): void => {
      clearTimeout(timer);
      raw.destroy();
      reject(e);
    };
    s.once('error', onError);
  }));
}

/** The origin-form target of a request inside the tunnel, bound to the tunnel's host. */
function originTarget(req: http.IncomingMessage, host: string, port: number): Target | { status: number; message: string } {
  const raw = req.url ?? '';
  if (!raw.startsWith('/')) return { status: 400, message: `Airlock expects origin-form requests (GET /path) inside a tunnel to ${host}:${port}.` };
  const authority = `${host.includes(':') && !host.startsWith('[') ? `[${host}]` : host}:${port}`;
  let url: URL;
  try {
    url = new URL(`https://${authority}${raw}`);
  } catch {
    return { status: 400, message: `Airlock could not parse the request target inside the tunnel to ${host}:${port}.` };
  }
  return { host, port, path: url.pathname, originPath: url.pathname + url.search, url };
}
