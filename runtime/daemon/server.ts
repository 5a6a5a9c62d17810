/**
 * `airlock serve`: one daemon per user owning every sandbox. It listens on a unix
 * socket in a 0700 directory (only this user can connect), optionally on TCP with a
 * bearer token and TLS, refuses browser origins, and exits by itself when it has had
 * no sessions and no clients for a while.
 */
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as https from 'node:https';
import * as net from 'node:net';
import * as path from 'node:path';
import { WebSocketServer } from 'ws';
import { AuditLog } from '../audit';
import type { Driver } from '../drivers/driver';
import { MAX_MESSAGE_BYTES, RPC_PATH } from '../protocol';
import { ensurePrivateDir } from '../util/paths';
import { ClientConnection, ConnectionContext } from './connection';
import { SessionRegistry } from './registry';
import { WarmPool } from './pool';
import { EgressService } from '../egress/service';
import type { CertificateAuthority } from '../secrets/ca';
import { recoverLostSessions } from './recover';

export interface ServeOptions {
  socket: string;
  /** Also listen on TCP (token required). */
  tcp?: { host: string; port: number; token: string; tls?: { cert: Buffer; key: Buffer } };
  /** Exit after this long with no sessions and no clients (0: never). */
  idleExitSeconds: number;
  /** Keep a warm spare sandbox per recently used workspace (see pool.ts). */
  warmPool?: boolean;
  /** false: no egress proxy at all (sessions have no network whatever their policy). */
  egress?: false;
  /** The runtime's CA (TLS interception for brokered secrets) and upstream trust for it. */
  ca?: CertificateAuthority;
  upstreamCAs?: string[];
  driver: Driver;
  audit: AuditLog;
  shell: ConnectionContext['shell'];
  info: ConnectionContext['info'];
  log: (line: string) => void;
}

export interface RunningServer {
  registry: SessionRegistry;
  /** The TCP port actually bound (when tcp.port was 0). */
  tcpPort?: number;
  /** Resolves when the daemon has stopped (idle exit, socket replaced, or close()). */
  stopped: Promise<string>;
  close(why?: string): Promise<void>;
}

export class AlreadyRunningError extends Error {}

/** Temporary socket names of this process (tests serve several daemons in one process). */
let bindSeq = 0;

/** Refuses a live daemon's socket; removes a stale one (nothing accepts on it). */
async function claimSocket(socket: string): Promise<void> {
  ensurePrivateDir(path.dirname(socket));
  if (!fs.existsSync(socket)) return;
  const live = await new Promise<boolean>((resolve) => {
    const c = net.connect(socket);
    c.once('connect', () => {
      c.destroy();
      resolve(true);
    });
    c.once('error', () => resolve(false));
  });
  if (live) {
    let pid = '';
    try {
      pid = ` (pid ${fs.readFileSync(socket + '.pid', 'utf8').trim()})`;
    } catch {
      /* no pid file */
    }
    throw new AlreadyRunningError(`an Airlock daemon already serves ${socket}${pid}: use it, or stop it with 'kill${pid ? ' ' + pid.replace(/\D/g, '') : ''}'`);
  }
  fs.rmSync(socket, { force: true });
}

function tokenMatches(header: string | undefined, token: string): boolean {
  const m = /^Bearer\s+(\S+)$/.exec(header ?? '');
  if (!m) return false;
  const a = Buffer.from(m[1]);
  const b = Buffer.from(token);
  return a.length === b.length && crypto.timingSafeEqual(a, b);
}

export async function serve(opts: ServeOptions): Promise<RunningServer> {
  await claimSocket(opts.socket);
  // Earlier builds kept a unix socket per sandbox in egress/ here: left by a dead daemon, removed.
  fs.rmSync(path.join(path.dirname(opts.socket), 'egress'), { recursive: true, force: true });
  const egress = opts.egress === false ? undefined : new EgressService({ ca: opts.ca, upstreamCAs: opts.upstreamCAs });
  const registry = new SessionRegistry(opts.driver, opts.audit, new WarmPool(opts.driver, opts.warmPool ?? false, egress), egress);
  const lost = recoverLostSessions(opts.audit);
  if (lost.length) opts.log(`recorded ${lost.length} session(s) of a runtime that stopped without ending them: ${lost.join(', ')}`);
  const ctx: ConnectionContext = { registry, info: opts.info, shell: opts.shell };
  const wss = new WebSocketServer({ noServer: true, maxPayload: MAX_MESSAGE_BYTES });
  const connections = new Set<ClientConnection>();
  let resolveStopped!: (why: string) => void;
  const stopped = new Promise<string>((r) => (resolveStopped = r));

  const upgrade = (needToken: string | null) => (req: http.IncomingMessage, sock: net.Socket | import('node:stream').Duplex, head: Buffer): void => {
    const deny = (code: number, why: string): void => {
      sock.end(`HTTP/1.1 ${code} ${http.STATUS_CODES[code]}\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\n${why}\n`);
    };
    // Browsers send Origin on every WebSocket: a page must never drive the runtime.
    if (req.headers.origin !== undefined) return deny(403, 'browser origins are refused (cross-site WebSocket hijacking)');
    if ((req.url ?? '').split('?')[0] !== RPC_PATH) return deny(404, `the runtime answers WebSockets at ${RPC_PATH} only`);
    if (needToken !== null && !tokenMatches(req.headers.authorization, needToken)) return deny(401, 'a valid bearer token is required (Authorization: Bearer <token>)');
    wss.handleUpgrade(req, sock, head, (ws) => {
      const c = new ClientConnection(ws, ctx, sock);
      connections.add(c);
      touch();
      ws.on('close', () => {
        c.dispose();
        connections.delete(c);
        touch();
      });
      ws.on('error', () => ws.terminate());
    });
  };
  const plain = (_req: http.IncomingMessage, res: http.ServerResponse): void => {
    res.writeHead(426, { 'Content-Type': 'text/plain' }).end(`Airlock runtime: connect a WebSocket to ${RPC_PATH}\n`);
  };

  const unixServer = http.createServer(plain);
  unixServer.on('upgrade', upgrade(null));
  // Bound under a temporary name, then linked into place. Node (libuv) unlinks a unix
  // server's bound path BY NAME when it closes: bound at SOCKET, a daemon stopping
  // because its socket was replaced would delete its successor's socket. link() also
  // fails when another daemon claimed SOCKET meanwhile (as listen() did), and the
  // socket appears with mode 0600 already set.
  const bound = path.join(path.dirname(opts.socket), `.${process.pid}.${bindSeq++}`); // short: unix socket paths are limited to 107 bytes
  fs.rmSync(bound, { force: true });
  await new Promise<void>((resolve, reject) => {
    unixServer.once('error', reject);
    unixServer.listen(bound, () => resolve());
  });
  fs.chmodSync(bound, 0o600);
  try {
    fs.linkSync(bound, opts.socket);
    fs.rmSync(bound, { force: true });
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'EEXIST') {
      unixServer.close();
      throw new AlreadyRunningError(`an Airlock daemon already serves ${opts.socket}: it started at the same time as this one`);
    }
    fs.renameSync(bound, opts.socket); // a file system without hard links
  }
  fs.writeFileSync(opts.socket + '.pid', `${process.pid}\n`, { mode: 0o600 });
  const socketIno = fs.statSync(opts.socket).ino;

  let tcpServer: http.Server | https.Server | undefined;
  let tcpPort: number | undefined;
  if (opts.tcp) {
    tcpServer = opts.tcp.tls ? https.createServer({ cert: opts.tcp.tls.cert, key: opts.tcp.tls.key }, plain) : http.createServer(plain);
    tcpServer.on('upgrade', upgrade(opts.tcp.token));
    await new Promise<void>((resolve, reject) => {
      tcpServer!.once('error', reject);
      tcpServer!.listen(opts.tcp!.port, opts.tcp!.host, () => resolve());
    });
    tcpPort = (tcpServer.address() as net.AddressInfo).port;
  }

  let idleTimer: NodeJS.Timeout | undefined;
  function touch(): void {
    if (idleTimer) clearTimeout(idleTimer);
    idleTimer = undefined;
    if (opts.idleExitSeconds > 0 && registry.size === 0 && connections.size === 0) {
      idleTimer = setTimeout(() => void close(`idle for ${opts.idleExitSeconds} s with no sessions and no clients`), opts.idleExitSeconds * 1000);
    }
  }
  registry.on('empty', touch);
  registry.on('event', (e) => e.type === 'session.start' && touch());
  touch();

  // A daemon whose socket was removed or replaced can no longer be reached: it stops.
  const watch = setInterval(() => {
    const st = fs.statSync(opts.socket, { throwIfNoEntry: false });
    if (!st || st.ino !== socketIno) void close(`its socket ${opts.socket} was removed or replaced`);
  }, 2000);
  watch.unref();

  let closing: Promise<void> | undefined;
  function close(why = 'stopped'): Promise<void> {
    closing ??= (async () => {
      clearInterval(watch);
      if (idleTimer) clearTimeout(idleTimer);
      opts.log(`stopping: ${why}`);
      unixServer.close();
      tcpServer?.close();
      await registry.endAll(`the runtime stopped: ${why}`);
      await egress?.close();
      for (const c of connections) c.dispose();
      for (const ws of wss.clients) ws.terminate();
      const st = fs.statSync(opts.socket, { throwIfNoEntry: false });
      if (st && st.ino === socketIno) fs.rmSync(opts.socket, { force: true });
      // The pid file only while it names this process: a successor may own it now
      // (removed with the socket, a lost socket left it behind, naming a pid to reuse).
      let pidFile = '';
      try {
        pidFile = fs.readFileSync(opts.socket + '.pid', 'utf8').trim();
      } catch {
        /* already gone */
      }
      if (pidFile === String(process.pid)) fs.rmSync(opts.socket + '.pid', { force: true });
      resolveStopped(why);
    })();
    return closing;
  }
  return { registry, tcpPort, stopped, close };
}
