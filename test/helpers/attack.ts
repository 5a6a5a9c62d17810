/**
 * Shared bits of the attack battery (test/attacks): fake secrets, host-side temp
 * files that are always cleaned up, bounded polling, and a way to start a session
 * that is expected to be refused. Real sandboxes only, through test/helpers/sandbox.
 */
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { AuditLog } from '../../runtime/audit';
import { BwrapDriver } from '../../runtime/drivers/bwrap/driver';
import { PolicyDocument, resolvePolicy } from '../../runtime/policy/policy';
import { Session } from '../../runtime/sessions';
import { afterEach } from 'node:test';
import { startSession, StartOptions, TestSession } from './sandbox';

/** A random value no real machine holds: fake secrets and canary names. */
export function fakeSecret(label = 'secret'): string {
  return `${label}-${crypto.randomBytes(12).toString('hex')}`;
}

/** Host directories and sockets made by a test, removed by cleanup(). */
export class HostScratch {
  private readonly dirs: string[] = [];
  private readonly files: string[] = [];
  private readonly servers: net.Server[] = [];

  dir(prefix = 'airlock-attack-'): string {
    const d = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
    fs.chmodSync(d, 0o755);
    this.dirs.push(d);
    return d;
  }

  /** Remembers a file outside dir() to remove at cleanup. */
  file(p: string): string {
    this.files.push(p);
    return p;
  }

  /** A listening server (TCP port 0 on 127.0.0.1, a unix path or an abstract '\0name'). */
  async listen(where: { port: 0 } | { path: string }): Promise<net.Server> {
    const server = net.createServer((c) => c.end('hello from the host\n'));
    this.servers.push(server);
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      if ('port' in where) server.listen(0, '127.0.0.1', resolve);
      else server.listen(where.path, resolve);
    });
    return server;
  }

  async cleanup(): Promise<void> {
    await Promise.all(this.servers.map((s) => new Promise<void>((r) => s.close(() => r()))));
    for (const f of this.files) fs.rmSync(f, { force: true });
    for (const d of this.dirs) fs.rmSync(d, { recursive: true, force: true });
  }
}

/** Connects from the host: the control that proves a listener really accepts. */
export function hostConnect(where: { port: number; host: string } | { path: string }): Promise<string> {
  return new Promise((resolve, reject) => {
    const c = net.connect(where as net.NetConnectOpts);
    let data = '';
    const timer = setTimeout(() => {
      c.destroy();
      reject(new Error('host connect timed out'));
    }, 5000);
    c.setEncoding('utf8');
    c.on('data', (d: string) => (data += d));
    c.on('end', () => {
      clearTimeout(timer);
      resolve(data);
    });
    c.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
  });
}

/** Polls FN every 20 ms until it returns true or MS pass; returns its last answer. */
export async function waitFor(fn: () => boolean, ms: number): Promise<boolean> {
  const deadline = Date.now() + ms;
  for (;;) {
    if (fn()) return true;
    if (Date.now() > deadline) return false;
    await new Promise((r) => setTimeout(r, 20));
  }
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Names (never values) of the variables in `env -0` output. */
export function envNames(nulSeparated: string): string[] {
  return nulSeparated.split('\0').filter(Boolean).map((kv) => kv.slice(0, kv.indexOf('=')));
}

/**
 * Starts a session that is expected to be refused and returns the error. Nothing is
 * left behind: the audit log lives in a temp dir removed here; a session that does
 * start (the attack worked) is ended before the error is thrown.
 */
export async function refusedSessionStart(workspace: string, policy?: PolicyDocument): Promise<Error> {
  const state = fs.mkdtempSync(path.join(os.tmpdir(), 'airlock-state-'));
  const audit = AuditLog.open({ file: path.join(state, 'audit.jsonl') });
  try {
    const s = await Session.create({ workspace, policy: resolvePolicy(policy), driver: new BwrapDriver(process.env), audit, callerEnv: {} });
    await s.end('exit');
  } catch (e) {
    return e as Error;
  } finally {
    audit.close();
    fs.rmSync(state, { recursive: true, force: true });
  }
  throw new Error(`a session started in ${workspace} although it should have been refused`);
}

/** Starts a session for a describe block; `close` is safe to call when start failed. */
export function sharedSession(opts: () => StartOptions): { get(): TestSession; start(): Promise<void>; close(): Promise<void> } {
  let ts: TestSession | undefined;
  return {
    get: () => {
      if (!ts) throw new Error('the shared session did not start');
      return ts;
    },
    start: async () => {
      ts = await startSession(opts());
    },
    close: async () => {
      await ts?.close();
      ts = undefined;
    },
  };
}

/** Host-side view of a file: its content, or null when it does not exist. */
export function hostRead(p: string): string | null {
  try {
    return fs.readFileSync(p, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw e;
  }
}

/** Workspace entries on the host, recursively (relative paths, sorted). */
export function hostTree(root: string): string[] {
  const out: string[] = [];
  const walk = (rel: string): void => {
    for (const e of fs.readdirSync(path.join(root, rel), { withFileTypes: true })) {
      const r = rel ? `${rel}/${e.name}` : e.name;
      out.push(e.isDirectory() ? r + '/' : r);
      if (e.isDirectory()) walk(r);
    }
  };
  walk('');
  return out.sort();
}

/**
 * A `start(opts)` for a test file whose sessions are all closed after each test.
 * Call it at the top level of the file (it registers an afterEach hook).
 */
export function sessionsClosedAfterEach(): (opts?: StartOptions) => Promise<TestSession> {
  let open: TestSession[] = [];
  afterEach(async () => {
    for (const ts of open) await ts.close();
    open = [];
  });
  return async (opts: StartOptions = {}) => {
    const ts = await startSession(opts);
    open.push(ts);
    return ts;
  };
}
