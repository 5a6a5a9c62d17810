/**
 * One egress stream from a sandbox, accepted on its listener: the client's own protocol
 * (SOCKS5 in socks.ts, an HTTP proxy request in http.ts), each connection attempt
 * decided by the session's rules and relayed to the checked address. Who connected
 * comes from the sandbox's agent (egress.c), asked as the stream is accepted.
 *
 * Safety argument: everything on the stream comes from inside the sandbox, so it is
 * parsed with bounded buffers and deadlines, a malformed stream is dropped without an
 * exception, and an allowed attempt connects to the IP address the rules checked,
 * never to the requested name (a second lookup could return another address: DNS
 * rebinding past the SSRF guard).
 */
import * as http from 'node:http';
import * as net from 'node:net';
import { Duplex } from 'node:stream';
import { performance } from 'node:perf_hooks';
import { DEFAULT_PROXY_LIMITS } from './types';
import type { Attribution, EgressAttempt, EgressOutcome, EgressRequest, EgressTarget, ProxyBroker, ProxyLimits, Verdict } from './types';
import { serveHttp } from './http';
import { serveSocks } from './socks';
import { intercept } from './intercept';
import { codedError, describeError, replyAndClose } from './sockets';

/** What serveEgressStream reads: a stream accepted on the sandbox's listener. */
export type ProxyStream = net.Socket;

/** Attribution when the agent does not answer (a stream is not held up for it). */
export const UNATTRIBUTED: Attribution = { pid: 0, process: 0 };

/**
 * How a destination socket is read. 'bulk' (tunnels): reads of up to BULK_READ, handed
 * to the client by BulkReader. 'parsed' (plain HTTP, read by Node's HTTP client): reads
 * of up to BULK_READ, handed to the socket's 'data' listeners (see parsedReads).
 * 'stream': Node's own 64 KiB reads (TLS toward intercepted hosts).
 */
export type ReadMode = 'bulk' | 'parsed' | 'stream';

/** SOCKS4 "request rejected or failed": airlock speaks SOCKS5 only. */
const SOCKS4_REJECTED = Buffer.from([0x00, 0x5b, 0, 0, 0, 0, 0, 0]);

/**
 * What http.ts and socks.ts get from the stream they serve. Passed in (they import
 * only types from this file), so the three files have no import cycle.
 */
export interface StreamContext {
  readonly limits: ProxyLimits;
  /** The session's brokered secrets, if it has a broker. */
  readonly broker?: ProxyBroker;
  /** Starts one attempt; call decide() on it, then end() exactly once. */
  begin(target: EgressTarget): Attempt;
  /** Writes a final reply, if any, and closes the stream once it is flushed. */
  close(reply?: Buffer | string): void;
  /**
   * Decides TARGET and, when allowed, connects and relays (HEAD first), answering the
   * client with REPLIES. Ends the attempt in every case; never throws.
   */
  tunnel(target: EgressTarget, head: Buffer, replies: TunnelReplies): void;
}

/** What CONNECT and SOCKS5 answer at each outcome of a tunnel. */
export interface TunnelReplies {
  denied(verdict: Verdict): Buffer | string;
  /** CODE: the connect error's code (ECONNREFUSED, ETIMEDOUT, ENOADDRESS, ...). */
  failed(code: string): Buffer | string;
  opened: Buffer | string;
}

/**
 * Serves one stream until it closes. Never throws: a malformed stream is closed, and
 * every attempt it decides is ended exactly once (see Attempt). ATTRIBUTION (the
 * agent's answer) is awaited by each attempt before it is recorded, for at most
 * headerTimeoutMs; one that fails or is late is UNATTRIBUTED.
 */
export function serveEgressStream(sock: ProxyStream, attempt: () => EgressAttempt, limits: ProxyLimits = DEFAULT_PROXY_LIMITS, broker: ProxyBroker | undefined, attribution: Promise<Attribution>): void {
  // Errors are handled where they matter (the relay records them); this listener only
  // keeps a reset from inside the sandbox from becoming an uncaught exception.
  sock.on('error', noop);
  // Half-close is relayed (a client may shut down its write side and still read the
  // reply); every phase below ends the stream itself, and the relay is bounded by idleTimeoutMs.
  sock.allowHalfOpen = true;
  const who = bounded(attribution, limits.headerTimeoutMs);
  readFirst(sock, limits, (rest) => {
    try {
      const ctx: StreamContext = {
        limits,
        broker,
        begin: (target) => new Attempt(attempt, target, who, limits),
        close: (reply) => replyAndClose(sock, reply),
        tunnel: (target, head, replies) => void openTunnel(sock, ctx.begin(target), head, replies, broker),
      };
      if (rest[0] === 0x05) serveSocks(sock, rest, ctx);
      else if (rest[0] === 0x04) ctx.close(SOCKS4_REJECTED);
      else serveHttp(sock, rest, ctx);
    } catch {
      sock.destroy();
    }
  });
}

/** ATTRIBUTION, or UNATTRIBUTED when it fails or has not come within MS. */
function bounded(attribution: Promise<Attribution>, ms: number): Promise<Attribution> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(UNATTRIBUTED), ms);
    const settle = (a: Attribution): void => {
      clearTimeout(timer);
      resolve(a);
    };
    attribution.then(settle, () => settle(UNATTRIBUTED));
  });
}

/** Waits for the client's first bytes (to pick the protocol), within headerTimeoutMs. */
function readFirst(sock: net.Socket, limits: ProxyLimits, then: (first: Buffer) => void): void {
  const timer = setTimeout(() => drop(), limits.headerTimeoutMs);
  const drop = (): void => {
    cleanup();
    sock.destroy();
  };
  const onData = (chunk: Buffer): void => {
    // Paused so the protocol handler sees the rest of the stream in order, from its
    // start (its end too: a paused stream emits 'end' only once it is read again).
    sock.pause();
    cleanup();
    then(chunk);
  };
  const cleanup = (): void => {
    clearTimeout(timer);
    sock.off('data', onData);
    sock.off('end', drop);
    sock.off('close', cleanup);
  };
  sock.on('data', onData);
  sock.on('end', drop);
  sock.on('close', cleanup);
}

async function openTunnel(sock: net.Socket, run: Attempt, head: Buffer, replies: TunnelReplies, broker?: ProxyBroker): Promise<void> {
  try {
    // A brokered secret names this host: TLS is terminated here so its requests'
    // headers can be rewritten (intercept.ts). Every other tunnel stays end to end.
    const intercepted = broker?.intercepts(run.req.host, run.req.port) ?? false;
    const verdict = await run.decide(intercepted ? 'stream' : 'bulk');
    if (verdict.decision !== 'allow') {
      replyAndClose(sock, replies.denied(verdict));
      run.end();
      return;
    }
    if (sock.destroyed) {
      run.end('client closed before the connection was made');
      return;
    }
    if (intercepted && broker) {
      await intercept({ client: sock, run, head, replies, broker, limits: run.limits });
      return;
    }
    let up: net.Socket;
    try {
      up = await run.connect('bulk');
    } catch (e) {
      const code = run.fail(e);
      replyAndClose(sock, replies.failed(code));
      run.end(`connect to ${run.req.host}:${run.req.port} failed: ${code}`);
      return;
    }
    if (!sock.destroyed) sock.write(replies.opened);
    run.relay(sock, up, head);
  } catch (e) {
    sock.destroy();
    run.upstream?.destroy();
    run.end(`internal error: ${describeError(e)}`);
  }
}

/** Flushes what is queued for this side, then closes it. */
function flushThenClose(sock: net.Socket): void {
  if (sock.destroyed) return;
  if (sock.writableFinished) sock.destroy();
  else sock.end(() => sock.destroy());
}

function noop(): void {}

/**
 * One connection attempt: the caller's attempt() and decide() once, then end() exactly
 * once with the bytes that crossed the destination socket (for plain HTTP, heads
 * included) and the time since the request was parsed. A decide() that throws is a
 * denial (rule `error:decide`, still ended), so a broken rules engine fails closed; an
 * attempt that cannot be recorded is a denial too (`error:audit`): nothing from the
 * sandbox reaches a destination unrecorded.
 */
export class Attempt {
  /** The socket to the destination; its counters become the outcome's bytes. */
  upstream: net.Socket | undefined;
  /** The request; its attribution is filled in by decide(), before the attempt is recorded. */
  readonly req: EgressRequest;
  private hooks: EgressAttempt | undefined;
  private verdict: Verdict | undefined;
  private error: string | undefined;
  private ended = false;
  private readonly started = performance.now();
  /** The destination connection decide() opened ahead (see decide), until connect() takes it. */
  private early: { mode: ReadMode; socket: Promise<net.Socket> } | undefined;

  constructor(private readonly factory: () => EgressAttempt, target: EgressTarget, private readonly attribution: Promise<Attribution>, readonly limits: ProxyLimits) {
    this.req = { ...target, attribution: UNATTRIBUTED };
  }

  /** Further destination sockets of an intercepted tunnel (one per upstream connection): their bytes count too. */
  readonly extraUpstreams: net.Socket[] = [];

  /**
   * Decides the attempt, learns who made it, and records it. PRECONNECT (how the caller
   * will connect(), if allowed): an allowed attempt's destination connection is opened
   * while the attribution and the record are awaited, off the connection's critical
   * path. The destination then sees a TCP handshake before the record exists, never a
   * byte from the sandbox: the relay starts only after decide() has resolved, and an
   * attempt that was not recorded is denied and its connection closed.
   */
  async decide(preconnect?: ReadMode): Promise<Verdict> {
    let verdict: Verdict;
    try {
      this.hooks = this.factory();
      verdict = await this.hooks.decide(this.req);
    } catch (e) {
      verdict = {
        decision: 'deny',
        rule: 'error:decide',
        message: `Airlock could not evaluate the egress rules for ${this.req.host}:${this.req.port} (${describeError(e)}); the connection was refused.`,
      };
    }
    this.verdict = verdict; // open() connects to its checked address
    if (verdict.decision === 'allow' && preconnect) {
      this.early = { mode: preconnect, socket: this.open(preconnect, false) };
      this.early.socket.catch(noop); // connect() reports it
    }
    this.req.attribution = await this.attribution;
    let recorded = false;
    try {
      recorded = this.hooks?.record(this.req, verdict) ?? false;
    } catch (e) {
      process.emitWarning(`egress: recording ${this.req.host}:${this.req.port} threw (${describeError(e)})`);
    }
    if (!recorded && verdict.decision === 'allow') {
      verdict = {
        decision: 'deny',
        rule: 'error:audit',
        message: `Airlock could not record the connection to ${this.req.host}:${this.req.port} in its audit log, so it was refused (see the session's warnings).`,
      };
      this.dropEarly();
    }
    this.verdict = verdict;
    return verdict;
  }

  /** Closes a connection opened ahead that nobody took (open() set it as the upstream). */
  private dropEarly(): void {
    if (!this.early) return;
    this.early = undefined;
    this.upstream?.destroy();
  }

  /** The address the rules checked, or undefined when an allow came without an IP literal (never resolved here). */
  checkedAddress(): { address: string; family: 4 | 6 } | undefined {
    const address = this.verdict?.address;
    const family = address === undefined ? 0 : net.isIP(address);
    if (address === undefined || family === 0) return undefined;
    return { address, family: family as 4 | 6 };
  }

  /** Records the first thing that went wrong after the allow (end() reports it); returns its description. */
  fail(e: unknown): string {
    const text = typeof e === 'string' ? e : describeError(e);
    this.error ??= text;
    return text;
  }

  /** Ends the attempt (only once, and only if it was decided); the caller's end() must not throw into us. */
  end(error?: string): void {
    if (this.ended || this.verdict === undefined || this.hooks === undefined) return;
    this.ended = true;
    this.dropEarly();
    const up = this.upstream;
    const all = [up, ...this.extraUpstreams];
    const outcome: EgressOutcome = {
      bytesUp: all.reduce((n, s) => n + (s?.bytesWritten ?? 0), 0),
      bytesDown: all.reduce((n, s) => n + (s?.bytesRead ?? 0), 0),
      durationMs: performance.now() - this.started,
    };
    const err = error ?? this.error;
    if (err !== undefined) outcome.error = err;
    try {
      this.hooks.end(this.req, this.verdict, outcome);
    } catch (e) {
      process.emitWarning(`egress: the attempt's end() threw (${describeError(e)}); the audit record of ${this.req.host}:${this.req.port} may be missing`);
    }
  }

  /**
   * Connects to the checked address within connectTimeoutMs; rejects with a coded error.
   * MODE: how the destination's bytes are read (see ReadMode).
   */
  connect(mode: ReadMode = 'stream'): Promise<net.Socket> {
    const early = this.early;
    this.early = undefined;
    if (early?.mode === mode) return early.socket;
    if (early) this.upstream?.destroy(); // opened ahead for another use: not this one
    return this.open(mode, false);
  }

  /** Another connection to the checked address (an intercepted tunnel's next upstream); counted in the outcome. */
  connectExtra(): Promise<net.Socket> {
    return this.open('stream', true);
  }

  private open(mode: ReadMode, extra: boolean): Promise<net.Socket> {
    return new Promise((resolve, reject) => {
      const to = this.checkedAddress();
      if (!to) {
        reject(codedError('ENOADDRESS', `the verdict allowing ${this.req.host} carries no checked IP address`));
        return;
      }
      const reader = mode === 'bulk' ? new BulkReader() : undefined;
      const onread = reader?.onread ?? (mode === 'parsed' ? parsedReads(() => up) : undefined);
      const up: net.Socket = net.connect({
        host: to.address, family: to.family, port: this.req.port, allowHalfOpen: true, noDelay: true,
        ...(onread ? { onread } : {}),
      });
      if (reader) this.bulk = reader;
      if (extra) this.extraUpstreams.push(up);
      else this.upstream = up;
      up.on('error', (e) => this.fail(`destination: ${describeError(e)}`));
      const ms = this.limits.connectTimeoutMs;
      const timer = setTimeout(() => up.destroy(codedError('ETIMEDOUT', `connect timed out after ${ms} ms`)), ms);
      const onError = (e: Error): void => {
        clearTimeout(timer);
        up.off('close', onClose);
        reject(e);
      };
      // Closed before it connected (a connection opened ahead, then dropped).
      const onClose = (): void => onError(codedError('ECLOSED', 'closed before it connected'));
      up.once('error', onError);
      up.once('close', onClose);
      up.once('connect', () => {
        clearTimeout(timer);
        up.off('error', onError);
        up.off('close', onClose);
        this.hooks?.opened?.((why) => {
          this.fail(why);
          up.destroy(new Error(why));
        });
        resolve(up);
      });
    });
  }

  /**
   * Relays both ways at pipe() speed until both sides are done, then ends the attempt.
   * HEAD is what the client sent after its request and before the tunnel opened.
   */
  private bulk: BulkReader | undefined;

  relay(client: net.Socket, upstream: net.Socket, head?: Buffer): void {
    if (client.destroyed) {
      upstream.destroy();
      this.end('client closed before the connection was made');
      return;
    }
    const idle = this.limits.idleTimeoutMs;
    // Any byte either way is read from or written to each socket, refreshing its timer.
    const onIdle = (): void => {
      this.fail(`idle timeout: no bytes either way for ${idle} ms`);
      client.destroy();
      upstream.destroy();
    };
    client.setTimeout(idle, onIdle);
    upstream.setTimeout(idle, onIdle);
    client.on('error', (e) => {
      this.fail(`client: ${describeError(e)}`);
      upstream.destroy();
    });
    upstream.on('error', () => client.destroy());
    let open = 2;
    const closed = (other: net.Socket) => (hadError: boolean): void => {
      // One side is gone: the other delivers what it already holds, then closes too.
      if (hadError) other.destroy();
      else flushThenClose(other);
      if (--open === 0) this.end();
    };
    client.once('close', closed(upstream));
    upstream.once('close', closed(client));
    if (head && head.length > 0) upstream.write(head);
    client.pipe(upstream);
    if (this.bulk) this.bulk.to(upstream, client);
    else upstream.pipe(client);
  }
}

/** Bytes a tunnel reads from its destination at once (the download direction). */
const BULK_READ = 1 << 20;
/**
 * One read buffer for every tunnel of the process: a read is copied out before the
 * callback returns, and reads run one at a time on this thread, so sharing is safe.
 * It is never handed to a write or kept past the callback (every socket reading into it
 * holds it for its next read): what must outlive the callback is copied.
 */
let sharedRead: Buffer | undefined;

/**
 * Reads of at least this many bytes are copied into a pooled BULK_READ buffer instead
 * of a new allocation of their size: a fresh megabyte costs page faults and garbage
 * collection, about 8x a copy into memory already in use (measured: 0.21 vs 0.027 ms
 * per MiB). Smaller reads get exact-size copies, so a tunnel trickling bytes pins no
 * megabyte while its client is slow.
 */
const POOLED_MIN = 64 << 10;
/** Pooled buffers kept for reuse while no write holds them; more are allocated when needed and left to the garbage collector. */
const POOL_KEEP = 16;
const pool: Buffer[] = [];

/** A copy of BUF's first N bytes, and what to call once no write holds it any more. */
function copyOut(buf: Buffer, n: number): { chunk: Buffer; release?: () => void } {
  if (n < POOLED_MIN) return { chunk: Buffer.from(buf.subarray(0, n)) };
  const b = pool.pop() ?? Buffer.allocUnsafe(BULK_READ);
  buf.copy(b, 0, 0, n);
  // Called when the socket is done with the chunk: written to the kernel, or failed
  // (a destroyed socket fails its queued and in-flight writes; libuv lets go of the
  // memory before it reports either). Only then may the next read's copy reuse it.
  return { chunk: b.subarray(0, n), release: () => void (pool.length < POOL_KEEP && pool.push(b)) };
}

/**
 * onread for a destination socket read by Node's HTTP client (plain HTTP forwarding):
 * reads of up to BULK_READ go to the socket's 'data' listeners, where the client's
 * parser takes them, instead of Node's 64 KiB reads. The next read into the shared
 * buffer must never overwrite what the parser keeps of a chunk: Node 20 copies each
 * body piece out of what it parses (and keeps nothing else), older versions handed out
 * slices. So a read goes on as the shared buffer itself only once parserCopies() has
 * seen this Node copy; otherwise, and always for bytes that must wait, as its own copy.
 * (200 MB through the proxy: ~420 MB/s with 64 KiB reads, ~570 with copies, ~700 without.)
 * Flow control is the stream's: the client pauses the socket when its response is
 * full, and a paused socket in onread mode stops reading.
 */
function parsedReads(socket: () => net.Socket): { buffer: () => Buffer; callback: (n: number, buf: Buffer) => boolean } {
  const copies = parserCopies();
  return {
    buffer: () => (sharedRead ??= Buffer.allocUnsafe(BULK_READ)),
    callback: (n, buf) => {
      const s = socket();
      // A destination that speaks before the client's parser listens (opened ahead by
      // decide()): its bytes wait in the stream's buffer, which the listener drains.
      if (s.listenerCount('data') === 0) {
        s.unshift(Buffer.from(buf.subarray(0, n)));
        return false;
      }
      s.emit('data', copies.known ? buf.subarray(0, n) : Buffer.from(buf.subarray(0, n)));
      return !s.isPaused();
    },
  };
}

/** What parserCopies' probe found: known is true once this Node's HTTP client was seen to copy the body it hands out. */
let parserProbe: { known: boolean } | undefined;

/**
 * Whether Node's HTTP client copies response body bytes out of the chunk it parses,
 * probed once (asynchronously: until it answers, known stays false and reads are
 * copied): a response parsed from a buffer that is overwritten as its first body piece
 * arrives. The piece still reading "abcd" means it was a copy.
 */
export function parserCopies(): { known: boolean } {
  if (parserProbe) return parserProbe;
  const probe = { known: false };
  parserProbe = probe;
  const raw = Buffer.from('HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nabcd', 'latin1');
  const wire = new Duplex({ read: noop, write: (_c, _e, done) => done() });
  const req = http.request({ createConnection: () => wire as net.Socket, path: '/', headers: { host: 'airlock.invalid' } });
  req.on('error', noop);
  req.on('response', (res) => res.once('data', (piece: Buffer) => {
    raw.fill(0x7a);
    probe.known = piece.toString('latin1') === 'abcd';
    req.destroy();
  }));
  req.on('socket', () => setImmediate(() => wire.emit('data', raw)));
  req.end();
  return probe;
}

/**
 * The download direction of a tunnel at fewer, larger chunks: Node's stream pipe reads
 * sockets 64 KiB at a time, and its per-chunk work, not the copying, was what bounded a
 * tunnel (about 550 MB/s here). Reads go into one 1 MiB buffer and are written on as
 * copies (copyOut); a full client pauses the destination (returning false), its
 * 'drain' resumes it. Bytes that arrive before the relay starts are held, in order.
 */
class BulkReader {
  private target: { up: net.Socket; client: net.Socket } | null = null;
  private held: { chunk: Buffer; release?: () => void }[] = [];

  readonly onread = {
    buffer: (): Buffer => (sharedRead ??= Buffer.allocUnsafe(BULK_READ)),
    callback: (n: number, buf: Buffer): boolean => {
      const c = copyOut(buf, n);
      if (!this.target) {
        this.held.push(c);
        return true;
      }
      return this.target.client.write(c.chunk, c.release);
    },
  };

  to(up: net.Socket, client: net.Socket): void {
    this.target = { up, client };
    for (const c of this.held.splice(0)) client.write(c.chunk, c.release);
    client.on('drain', () => up.resume());
    up.resume(); // flowing, so that the end of stream is emitted ('end')
    // The destination's end of stream ends the client's side, as pipe() would.
    up.once('end', () => client.end());
  }
}
