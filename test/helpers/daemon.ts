/**
 * Helpers for the daemon tests: a daemon started in this process (serve() with a real
 * BwrapDriver and a real audit log) or as a real separate process (dist/airlock.js
 * serve --foreground), clients of it (RuntimeClient, or a plain `ws` socket speaking
 * raw JSON text), and readings of a process's memory. Every wait is bounded and every
 * daemon, client and temporary directory is released by the returned stop().
 */
import { ChildProcess, spawn } from 'node:child_process';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import WebSocket from 'ws';
import { AuditLog } from '../../runtime/audit';
import { RuntimeClient } from '../../runtime/client/client';
import { RunningServer, serve, ServeOptions } from '../../runtime/daemon/server';
import { BwrapDriver } from '../../runtime/drivers/bwrap/driver';
import { resolvePolicy } from '../../runtime/policy/policy';
import { MAX_MESSAGE_BYTES, PROTOCOL_VERSION, RPC_PATH, RpcError } from '../../runtime/protocol';
import { sleep, within } from './integration';
import { REPO, tempDir } from './sandbox';

export const CLI_ENTRY = path.join(REPO, 'dist', 'airlock.js');

/** Directories removed and clients closed when the owning daemon stops. */
class Owned {
  private readonly dirs: string[] = [];
  private readonly clients = new Set<RuntimeClient>();
  dir(prefix: string): string {
    const d = tempDir(prefix);
    this.dirs.push(d);
    return d;
  }
  track(c: RuntimeClient): RuntimeClient {
    this.clients.add(c);
    c.once('close', () => this.clients.delete(c));
    return c;
  }
  closeClients(): void {
    for (const c of this.clients) c.close();
    this.clients.clear();
  }
  removeDirs(): void {
    for (const d of this.dirs.splice(0)) fs.rmSync(d, { recursive: true, force: true });
  }
}

export interface TestDaemon {
  /** The unix socket the daemon serves. */
  socket: string;
  auditFile: string;
  /** A new connected client, closed when the daemon stops. */
  client(): Promise<RuntimeClient>;
  /** A fresh empty workspace directory, removed when the daemon stops. */
  workspace(): string;
  /** Stops the daemon (ending its sessions), closes clients, removes its directories. */
  stop(): Promise<void>;
}

export interface InProcessDaemon extends TestDaemon {
  server: RunningServer;
  audit: AuditLog;
  /** The temp directory holding `run/runtime.sock` and `state/audit.jsonl`. */
  dir: string;
}

/** serve() in this process: a real BwrapDriver, a real audit log on a temp file. */
export async function startInProcessDaemon(opts: { tcp?: ServeOptions['tcp']; /** runs before serve() with the temp dir */ prepare?: (dir: string) => void } = {}): Promise<InProcessDaemon> {
  const owned = new Owned();
  const dir = owned.dir('airlock-daemon-');
  const socket = path.join(dir, 'run', 'runtime.sock');
  opts.prepare?.(dir);
  const auditFile = path.join(dir, 'state', 'audit.jsonl');
  const audit = AuditLog.open({ file: auditFile, holdLock: true }); // as `airlock serve` opens it
  const driver = new BwrapDriver(process.env);
  let server: RunningServer;
  try {
    server = await serve({
      socket,
      tcp: opts.tcp,
      idleExitSeconds: 0,
      driver,
      audit,
      log: () => {},
      shell: () => ({ argv: ['/bin/bash', '-i'], env: {} }),
      info: () => ({
        version: 'test',
        protocol: PROTOCOL_VERSION,
        pid: process.pid,
        drivers: [{ name: driver.name, available: true }],
        limits: driver.describeLimits(resolvePolicy().limits),
      }),
    });
  } catch (e) {
    audit.close();
    owned.removeDirs();
    throw e;
  }
  let stopped = false;
  return {
    socket,
    auditFile,
    server,
    audit,
    dir,
    client: async () => owned.track(await RuntimeClient.connect({ socket })),
    workspace: () => owned.dir('airlock-ws-'),
    stop: async () => {
      if (stopped) return;
      stopped = true;
      owned.closeClients();
      try {
        await within(server.close('the test is over'), 20_000, 'the in-process daemon to stop');
      } finally {
        audit.close();
        owned.removeDirs();
      }
    },
  };
}

export interface DaemonProcess extends TestDaemon {
  pid: number;
  /** XDG_STATE_HOME of the daemon (its audit log is STATE/airlock/audit.jsonl). */
  state: string;
  /** Its stdout+stderr. */
  log: string;
  /** Resolves with the exit code once the daemon process exited. */
  exited: Promise<number | null>;
  /** SIGKILLs the daemon (no clean-up by it) and waits until it is gone. */
  kill(): Promise<void>;
}

/**
 * `dist/airlock.js serve --foreground` as a real separate process with its own state
 * dir (or STATE, to restart on the same audit log) and a socket in a private temp dir.
 * Its idle exit (default 120 s) is a safety net should a test die before stopping it.
 */
export async function startDaemonProcess(opts: { state?: string; socket?: string; args?: string[] } = {}): Promise<DaemonProcess> {
  const owned = new Owned();
  const state = opts.state ?? owned.dir('airlock-state-');
  const rt = owned.dir('airlock-rt-');
  const socket = opts.socket ?? path.join(rt, 'airlock', 'runtime.sock');
  const log = path.join(rt, 'daemon.log');
  const fd = fs.openSync(log, 'a', 0o600);
  const env: NodeJS.ProcessEnv = { PATH: process.env.PATH, HOME: process.env.HOME, LANG: 'C.UTF-8', XDG_STATE_HOME: state, XDG_RUNTIME_DIR: rt };
  for (const k of ['AIRLOCK_BWRAP', 'AIRLOCK_AGENT']) if (process.env[k]) env[k] = process.env[k];
  const child: ChildProcess = spawn(process.execPath, [CLI_ENTRY, 'serve', '--foreground', '--socket', socket, ...(opts.args ?? ['--idle-exit', '120'])], {
    stdio: ['ignore', fd, fd],
    env,
    cwd: '/',
  });
  fs.closeSync(fd);
  const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  let done = false;
  let killed = false;
  let stopped = false;
  void exited.then(() => (done = true));
  const deadline = Date.now() + 15_000;
  for (;;) {
    try {
      (await RuntimeClient.connect({ socket })).close();
      break;
    } catch (e) {
      if (done || Date.now() > deadline) {
        if (!done) child.kill('SIGKILL');
        const text = fs.readFileSync(log, 'utf8');
        owned.removeDirs();
        throw new Error(`the daemon process did not start (${(e as Error).message}); its log:\n${text}`);
      }
      await sleep(20);
    }
  }
  const stopWith = async (sig: NodeJS.Signals): Promise<void> => {
    if (!done) child.kill(sig);
    await within(exited, 20_000, `daemon ${child.pid} to exit after ${sig}`).catch(async () => {
      child.kill('SIGKILL');
      await within(exited, 5000, `daemon ${child.pid} to die`);
    });
  };
  return {
    pid: child.pid!,
    socket,
    state,
    auditFile: path.join(state, 'airlock', 'audit.jsonl'),
    log,
    exited,
    client: async () => owned.track(await RuntimeClient.connect({ socket })),
    workspace: () => owned.dir('airlock-ws-'),
    kill: () => {
      killed = true;
      return stopWith('SIGKILL');
    },
    stop: async () => {
      if (stopped) return;
      stopped = true;
      if (done && !killed) {
        // It stopped before being told to: show why before its log is removed.
        console.error(`# daemon ${child.pid} had exited by itself (code ${await exited}); its log:\n${fs.readFileSync(log, 'utf8').slice(-4000)}`);
      }
      owned.closeClients();
      try {
        await stopWith('SIGTERM');
      } finally {
        owned.removeDirs();
      }
    },
  };
}

/** Resident memory of PID in bytes (VmRSS in /proc/PID/status). */
export function rssBytes(pid: number): number {
  const m = /^VmRSS:\s+(\d+)\s+kB$/m.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
  if (!m) throw new Error(`no VmRSS for pid ${pid}`);
  return Number(m[1]) * 1024;
}

/** Host pids of every descendant of PID (children, grandchildren, …). */
export function descendantsOf(pid: number): number[] {
  const children = new Map<number, number[]>();
  for (const d of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const stat = fs.readFileSync(`/proc/${d}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      const list = children.get(ppid) ?? [];
      list.push(Number(d));
      children.set(ppid, list);
    } catch {
      /* exited meanwhile */
    }
  }
  const out: number[] = [];
  const queue = [pid];
  while (queue.length) for (const c of children.get(queue.pop()!) ?? []) out.push(c), queue.push(c);
  return out;
}

/** A JSON-RPC message as received on the wire. */
export type Wire = Record<string, unknown> & { id?: unknown; result?: unknown; error?: { code: number; message: string; data?: Record<string, unknown> } };

/**
 * A plain `ws` client with no JSON-RPC library: it sends text frames it wrote itself
 * and sees the daemon's text and binary frames as they arrive.
 */
export class RawClient {
  readonly texts: Wire[] = [];
  readonly binaries: Buffer[] = [];
  private waiters: (() => void)[] = [];
  private nextId = 1;
  closed: { code: number; reason: string } | undefined;

  private constructor(readonly ws: WebSocket) {
    ws.on('message', (data, isBinary) => {
      const buf = Array.isArray(data) ? Buffer.concat(data) : Buffer.from(data as ArrayBuffer);
      if (isBinary) this.binaries.push(buf);
      else this.texts.push(JSON.parse(buf.toString('utf8')) as Wire);
      this.wake();
    });
    ws.on('close', (code, reason) => {
      this.closed = { code, reason: reason.toString() };
      this.wake();
    });
    ws.on('error', () => {});
  }

  private wake(): void {
    for (const w of this.waiters.splice(0)) w();
  }

  /** Opens `ws+unix://SOCKET:/rpc` (or PATH), with HEADERS. */
  static open(socket: string, opts: { path?: string; headers?: Record<string, string> } = {}): Promise<RawClient> {
    const ws = new WebSocket(`ws+unix://${socket}:${opts.path ?? RPC_PATH}`, { headers: opts.headers ?? {}, maxPayload: MAX_MESSAGE_BYTES * 2 });
    return new Promise((resolve, reject) => {
      ws.once('open', () => resolve(new RawClient(ws)));
      ws.once('unexpected-response', (_req, res) => reject(Object.assign(new Error(`HTTP ${res.statusCode}`), { status: res.statusCode })));
      ws.once('error', reject);
    });
  }

  /** Sends TEXT as one text frame, exactly as given. */
  sendText(text: string): void {
    this.ws.send(text, { binary: false });
  }

  sendBinary(buf: Buffer): void {
    this.ws.send(buf, { binary: true });
  }

  /** Waits (bounded) until COND holds, re-checked on every frame received. */
  async waitUntil<T>(cond: () => T | undefined, ms: number, what: string): Promise<T> {
    const deadline = Date.now() + ms;
    for (;;) {
      const v = cond();
      if (v !== undefined) return v;
      if (this.closed) throw new Error(`the connection closed (${this.closed.code} ${this.closed.reason}) while waiting for ${what}`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
      await new Promise<void>((r) => {
        const t = setTimeout(r, Math.min(left, 100));
        this.waiters.push(() => {
          clearTimeout(t);
          r();
        });
      });
    }
  }

  /** The text message with this ID (a response), waiting for it. */
  response(id: unknown, ms = 10_000): Promise<Wire> {
    return this.waitUntil(() => this.texts.find((m) => m.id === id && ('result' in m || 'error' in m)), ms, `the response to id ${JSON.stringify(id)}`);
  }

  /** Sends {jsonrpc, id, method, params} as raw text and returns the raw response. */
  async request(method: string, params: unknown = {}, ms = 30_000): Promise<Wire> {
    const id = `raw-${this.nextId++}`; // never one a test writes by hand
    this.sendText(JSON.stringify({ jsonrpc: '2.0', id, method, params }));
    return this.response(id, ms);
  }

  /** The result of METHOD, failing with its error when it has one. */
  async call(method: string, params: unknown = {}, ms = 30_000): Promise<Record<string, unknown>> {
    const r = await this.request(method, params, ms);
    if (r.error) throw new Error(`${method} failed: ${r.error.code} ${r.error.message}`);
    return r.result as Record<string, unknown>;
  }

  close(): void {
    this.ws.close();
  }
}

/** The HTTP status a WebSocket upgrade to URL with HEADERS gets (101 when it opens). */
export function upgradeStatus(url: string, headers: Record<string, string> = {}, extra: WebSocket.ClientOptions = {}): Promise<number> {
  const ws = new WebSocket(url, { headers, ...extra });
  return within(
    new Promise<number>((resolve, reject) => {
      ws.once('open', () => {
        ws.close();
        resolve(101);
      });
      ws.once('unexpected-response', (req, res) => {
        res.resume();
        req.destroy();
        resolve(res.statusCode ?? 0);
      });
      ws.once('error', reject);
    }),
    10_000,
    `the upgrade of ${url}`,
  );
}

/** Asserts that P fails with an RpcError of CODE whose message matches RE; returns it. */
export async function rpcFails(p: Promise<unknown>, code: number, re: RegExp): Promise<RpcError> {
  let err: unknown;
  try {
    await p;
  } catch (e) {
    err = e;
  }
  assert.ok(err instanceof RpcError, `expected an RpcError ${code}, got ${err === undefined ? 'success' : String(err)}`);
  assert.equal(err.code, code, err.message);
  assert.match(err.message, re);
  return err;
}
