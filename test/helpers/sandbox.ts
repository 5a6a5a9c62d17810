/**
 * Test helpers that start REAL sandboxes (bubblewrap + airlock-agent), each with its
 * own temporary workspace and audit log. Nothing here is a mock.
 */
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { AuditLog } from '../../runtime/audit';
import { EgressService, EgressServiceOptions } from '../../runtime/egress/service';
import { BwrapDriver } from '../../runtime/drivers/bwrap/driver';
import { PolicyDocument, resolvePolicy } from '../../runtime/policy/policy';
import { Session, SpawnOptions } from '../../runtime/sessions';

/** The repository root (tests run from out/test/...). */
export const REPO = path.resolve(__dirname, '..', '..', '..');
export const AIRLOCK_BIN = path.join(REPO, 'bin', 'airlock');

/** A fresh directory under the system temp dir, removed by the returned cleanup. */
export function tempDir(prefix = 'airlock-test-'): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), prefix));
}

export interface TestSession {
  session: Session;
  workspace: string;
  audit: AuditLog;
  auditFile: string;
  /** Runs ARGV (or `sh -c SCRIPT`) in the session and collects its output. */
  run(cmd: string | string[], opts?: Partial<SpawnOptions> & { input?: string }): Promise<RunResult>;
  /** Ends the session and removes the workspace and the audit log. */
  close(): Promise<void>;
}

export interface RunResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

export interface StartOptions {
  policy?: PolicyDocument;
  /** Files to create in the workspace before the session starts: path → content. */
  files?: Record<string, string>;
  /** Use this workspace instead of a fresh one (not removed on close). */
  workspace?: string;
  callerEnv?: NodeJS.ProcessEnv;
  /**
   * Give the session Airlock's egress proxy (a real EgressService). Registry discovery
   * is off unless the options bring their own cache.
   */
  egress?: Partial<EgressServiceOptions>;
}

export async function startSession(opts: StartOptions = {}): Promise<TestSession> {
  const workspace = opts.workspace ?? tempDir('airlock-ws-');
  for (const [rel, content] of Object.entries(opts.files ?? {})) {
    const abs = path.join(workspace, rel);
    fs.mkdirSync(path.dirname(abs), { recursive: true });
    fs.writeFileSync(abs, content);
  }
  const stateDir = tempDir('airlock-state-');
  const auditFile = path.join(stateDir, 'audit.jsonl');
  const audit = AuditLog.open({ file: auditFile });
  const egress = opts.egress ? new EgressService(opts.egress) : undefined;
  const policy = resolvePolicy(opts.egress && !opts.egress.registries ? { network: { registries: false } } : undefined, opts.policy);
  const session = await Session.create({
    workspace,
    policy,
    driver: new BwrapDriver(process.env),
    audit,
    callerEnv: opts.callerEnv ?? process.env,
    egress,
  });
  const run = async (cmd: string | string[], o: Partial<SpawnOptions> & { input?: string } = {}): Promise<RunResult> => {
    const argv = typeof cmd === 'string' ? ['sh', '-c', cmd] : cmd;
    const p = await session.spawn({ ...o, argv });
    let stdout = '';
    let stderr = '';
    p.on('stdout', (d) => (stdout += d.toString('utf8')));
    p.on('stderr', (d) => (stderr += d.toString('utf8')));
    if (o.input !== undefined) p.write(o.input);
    if (!o.pty) p.end();
    const exit = await p.exited;
    return { code: exit.code, signal: exit.signal, stdout, stderr };
  };
  return {
    session,
    workspace,
    audit,
    auditFile,
    run,
    close: async () => {
      await session.end('exit');
      await egress?.close();
      audit.close();
      fs.rmSync(stateDir, { recursive: true, force: true });
      if (!opts.workspace) fs.rmSync(workspace, { recursive: true, force: true });
    },
  };
}

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Stops the daemon named by SOCKET.pid (SIGTERM) and waits until it has exited. */
export async function stopDaemonAt(socket: string): Promise<void> {
  let pid = 0;
  try {
    pid = Number(fs.readFileSync(socket + '.pid', 'utf8'));
  } catch {
    return;
  }
  try {
    process.kill(pid, 'SIGTERM');
  } catch {
    return;
  }
  for (let i = 0; i < 2000; i++) {
    try {
      process.kill(pid, 0);
    } catch {
      return;
    }
    await new Promise((r) => setTimeout(r, 10));
  }
  throw new Error(`daemon ${pid} did not exit within 20 s of SIGTERM`);
}

/** Stops the daemon a CLI run started under runtime dir RT (the CLI starts one on demand). */
export function stopDaemonIn(rt: string): Promise<void> {
  return stopDaemonAt(path.join(rt, 'airlock', 'runtime.sock'));
}

/** Host pids whose command line (NUL-separated argv) satisfies TEST. */
export function hostPidsWhere(test: (argv: string[]) => boolean): number[] {
  const out: number[] = [];
  for (const d of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(d) || Number(d) === process.pid) continue;
    try {
      if (test(fs.readFileSync(`/proc/${d}/cmdline`, 'utf8').split('\0'))) out.push(Number(d));
    } catch {
      /* gone */
    }
  }
  return out;
}

/**
 * Runs bin/airlock as a user would (pipes, not a terminal), with its own state dir and
 * runtime dir, so its on-demand daemon is its own; that daemon is stopped afterwards.
 */
export function runCli(
  args: string[],
  opts: { cwd?: string; env?: NodeJS.ProcessEnv; input?: string; timeoutMs?: number; /** leave the daemon running (the caller stops it) */ keepDaemon?: boolean } = {},
): Promise<CliResult> {
  const state = tempDir('airlock-clistate-');
  const rt = tempDir('airlock-clirt-');
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [AIRLOCK_BIN, ...args], {
      cwd: opts.cwd ?? REPO,
      env: { ...process.env, XDG_STATE_HOME: state, XDG_RUNTIME_DIR: rt, ...opts.env },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 60_000);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      void (opts.keepDaemon ? Promise.resolve() : stopDaemonIn(opts.env?.XDG_RUNTIME_DIR ?? rt)).then(() => {
        fs.rmSync(state, { recursive: true, force: true });
        fs.rmSync(rt, { recursive: true, force: true });
        resolve({ code, stdout, stderr });
      });
    });
    child.stdin.end(opts.input ?? '');
  });
}

/** The PID namespace of host pid PID (e.g. 'pid:[4026532845]'), read before it exits. */
export function pidNamespaceOf(pid: number): string {
  return fs.readlinkSync(`/proc/${pid}/ns/pid`);
}

/** Host pids of every process, anywhere on the host, in the PID namespace NS. */
export function processesInNamespace(ns: string): number[] {
  const out: number[] = [];
  for (const d of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      if (fs.readlinkSync(`/proc/${d}/ns/pid`) === ns) out.push(Number(d));
    } catch {
      /* exited meanwhile, or not ours to read */
    }
  }
  return out;
}

/** True when this test process runs as root (the suite runs both ways in CI). */
export const IS_ROOT = process.getuid?.() === 0;
