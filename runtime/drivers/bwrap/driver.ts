/**
 * The `bwrap` driver: one bubblewrap sandbox per session with airlock-agent as its
 * PID 1. Its arguments are an argv array built from data (args.ts), the seccomp
 * program travels over an fd, and bubblewrap itself starts with an empty environment.
 */
import { spawn, ChildProcess, StdioOptions } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import type { Duplex, Readable, Writable } from 'node:stream';
import { detectCgroups, CgroupSupport, SessionCgroup } from '../../limits/cgroups';
import { PROXY_PORT } from '../../egress/types';
import { ensurePrivateDir, runDir } from '../../util/paths';
import { Driver, DriverCheck, DriverError, LimitReport, Sandbox, SandboxStartOptions } from '../driver';
import { agentCommand, buildBwrapArgs, BwrapFiles, egressAgentArgs } from './args';
import { prepareFiles } from './files';
import { acquirePlaceholders, placeholdersInUse, releasePlaceholders } from './placeholders';
import { buildSeccompFilter } from './seccomp';
import { sandboxIdentity } from './system';
import { checkBwrap } from './checks';

export function findBwrap(env: NodeJS.ProcessEnv = process.env): string | null {
  if (env.AIRLOCK_BWRAP !== undefined) return fs.existsSync(env.AIRLOCK_BWRAP) ? env.AIRLOCK_BWRAP : null;
  for (const dir of (env.PATH ?? '/usr/bin:/bin').split(':')) {
    if (!dir) continue;
    const p = path.join(dir, 'bwrap');
    try {
      fs.accessSync(p, fs.constants.X_OK);
      return p;
    } catch {
      /* next */
    }
  }
  return null;
}

/** Bytes of arguments passed on the command line; more go through a file (--args). */
const ARGV_LIMIT = 256 * 1024;

export const BWRAP_MISSING = new DriverError('bubblewrap not found', "install it with 'apt-get install bubblewrap'");

export class BwrapDriver implements Driver {
  readonly name = 'bwrap';
  private cgroups: CgroupSupport | undefined;
  private seccomp: Buffer | undefined;
  private files: BwrapFiles | undefined;

  constructor(private readonly env: NodeJS.ProcessEnv = process.env) {}

  async check(): Promise<DriverCheck[]> {
    return checkBwrap(findBwrap(this.env), this.cgroupSupport());
  }

  /** How each limit of L is enforced on this machine. */
  describeLimits(l: SandboxStartOptions['policy']['limits']): LimitReport[] {
    return limitReport(l, this.cgroupSupport());
  }

  cgroupSupport(): CgroupSupport {
    this.cgroups ??= detectCgroups();
    return this.cgroups;
  }

  async start(opts: SandboxStartOptions): Promise<Sandbox> {
    const bwrap = findBwrap(this.env);
    if (!bwrap) throw BWRAP_MISSING;
    const { policy, workspace, sessionId } = opts;
    const identity = sandboxIdentity();
    this.files ??= prepareFiles(identity);
    const files = this.files;
    this.seccomp ??= buildSeccompFilter();
    const cgSupport = this.cgroupSupport();
    const limits = limitReport(policy.limits, cgSupport);

    const registry = path.join(runDir(), 'placeholders');
    // Read-only paths present only as another live session's placeholders are shared,
    // so they stay until the last session relying on them ends (see placeholdersInUse).
    const shared = placeholdersInUse(registry, workspace.host);
    const relied = [...workspace.absentReadOnly, ...workspace.readOnly.filter((p) => shared.has(p.host))];
    const placeholders = acquirePlaceholders(registry, workspace.host, sessionId, relied);

    const agentArgs = ['--nproc', String(policy.limits.pids), '--fsize', String(policy.limits.fileSizeMiB * 1024 * 1024)];
    if (cgSupport.mode === 'none') agentArgs.push('--nice', '10');
    // fd 3 becomes the agent's channel (a socketpair: Node's 'pipe' stdio), 4 carries
    // the seccomp program, 5 bubblewrap's info JSON (the agent's host pid), 6 (with
    // egress) Node's IPC channel, on which the agent hands over the proxy's listener.
    // Arguments go on the command line (paths, never secrets); a very long list
    // (thousands of masked paths) goes through a file on the next fd instead, past the
    // kernel's argument limits.
    const ipcFd = opts.egress ? 6 : undefined;
    if (ipcFd !== undefined) agentArgs.push(...egressAgentArgs(ipcFd));
    const args = buildBwrapArgs({ policy, workspace, identity, files, fds: { seccomp: 4, info: 5 }, caBundle: opts.caBundle });
    const argBytes = args.reduce((n, x) => n + Buffer.byteLength(x) + 1, 0);
    let argsFd: number | undefined;
    if (argBytes > ARGV_LIMIT) {
      const file = path.join(ensurePrivateDir(runDir()), `args-${sessionId}`);
      fs.writeFileSync(file, args.map((x) => x + '\0').join(''), { mode: 0o600 });
      argsFd = fs.openSync(file, 'r');
      fs.unlinkSync(file);
    }
    const stdio: StdioOptions = ['ignore', 'ignore', 'pipe', 'pipe', 'pipe', 'pipe', ...(ipcFd === undefined ? [] : ['ipc' as const]), ...(argsFd === undefined ? [] : [argsFd])];
    const argsAt = String(stdio.length - 1);
    // With 'ipc', Node adds NODE_CHANNEL_FD (and its serialization mode) to this empty
    // environment; the agent reads neither and gives its processes only their own.
    const child = spawn(bwrap, [...(argsFd === undefined ? args : ['--args', argsAt]), ...agentCommand(agentArgs)], { stdio, env: {}, cwd: '/' });
    if (argsFd !== undefined) fs.closeSync(argsFd);
    const pipes = child.stdio as unknown as [null, null, Readable, Duplex, Writable, Readable];
    let stderr = '';
    pipes[2].setEncoding('utf8');
    pipes[2].on('data', (d: string) => {
      if (stderr.length < 8192) stderr += d;
    });
    // A sandbox that fails to start closes its ends: that shows up as the exit below.
    for (const p of [pipes[3], pipes[4], pipes[5]]) p.on('error', () => {});
    pipes[4].end(this.seccomp);

    const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null; stderr: string }>((resolve) => {
      child.once('close', (code, signal) => resolve({ code, signal, stderr: stderr.trim() }));
      child.once('error', (err) => resolve({ code: null, signal: null, stderr: `cannot run ${bwrap}: ${err.message}` }));
    });

    const listener = ipcFd === undefined ? undefined : receiveListener(child, exited, () => stderr.trim());
    let agentHostPid: number | undefined;
    let cgroup: SessionCgroup | undefined;
    let egressListener: net.Server | undefined;
    try {
      // Made while bubblewrap builds the sandbox. Only the agent joins it: every
      // sandboxed process descends from the agent, and the agent starts none until
      // the session asks, which is after this.
      if (cgSupport.mode !== 'none') cgroup = SessionCgroup.create(cgSupport, sessionId, policy.limits);
      agentHostPid = await readInfo(pipes[5], exited);
      cgroup?.addPid(agentHostPid);
      egressListener = await listener;
    } catch (e) {
      child.kill('SIGKILL');
      await exited;
      void listener?.then((l) => l.close(), () => undefined);
      releasePlaceholders(placeholders);
      await cgroup?.destroy();
      throw e;
    }
    return new BwrapSandbox(child, pipes[3], agentHostPid, egressListener, limits, relied.map((p) => p.host), exited, async () => {
      await cgroup?.destroy();
      releasePlaceholders(placeholders);
    });
  }
}

/**
 * The egress proxy's listener, which the agent creates inside the sandbox's network
 * namespace and sends over Node's IPC channel before it starts anything (egress.c).
 * The agent closes its end right after (before any sandboxed process exists), and
 * only the first message is taken; the listener must be the TCP socket
 * 127.0.0.1:PROXY_PORT, or the sandbox does not start. (Our end is not disconnect()ed:
 * Node then never emits the child's 'close', which the sandbox's exit waits for; the
 * agent's own close ends the channel.)
 */
function receiveListener(child: ChildProcess, exited: Promise<{ stderr: string; code: number | null }>, stderr: () => string): Promise<net.Server> {
  return new Promise((resolve, reject) => {
    const fail = (why: string): void => {
      child.off('message', onMessage);
      reject(new DriverError(`the sandbox's egress listener did not arrive: ${why}`));
    };
    const onMessage = (msg: unknown, handle: unknown): void => {
      child.off('message', onMessage);
      const closeHandle = (): void => (handle as { close?: () => void } | null)?.close?.();
      if ((msg as { airlock?: unknown } | null)?.airlock !== 'egress-listener' || typeof handle !== 'object' || handle === null) {
        closeHandle();
        return fail('the agent sent something else');
      }
      const server = net.createServer();
      try {
        // Node re-listens with this backlog: a burst waits in the kernel's queue.
        server.listen(handle as net.ListenOptions, 4096);
      } catch (e) {
        closeHandle();
        return fail(`it cannot be served (${(e as Error).message})`);
      }
      const a = server.address();
      if (typeof a !== 'object' || a === null || a.address !== '127.0.0.1' || a.port !== PROXY_PORT) {
        server.close();
        return fail(`it is ${JSON.stringify(a)}, not 127.0.0.1:${PROXY_PORT}`);
      }
      resolve(server);
    };
    child.on('message', onMessage);
    child.once('disconnect', () => fail(`the agent closed its channel first${stderr() ? ` (${stderr()})` : ''}`));
    void exited.then((r) => fail(`the sandbox exited (${r.code}): ${r.stderr || 'no error message'}`));
  });
}

async function readInfo(info: Readable, exited: Promise<{ stderr: string; code: number | null }>): Promise<number> {
  let text = '';
  info.setEncoding('utf8');
  const done = new Promise<string>((resolve) => {
    info.on('data', (d: string) => (text += d));
    info.on('end', () => resolve(text));
    info.on('error', () => resolve(text));
  });
  const winner = await Promise.race([done, exited.then((r) => r)]);
  if (typeof winner !== 'string') {
    throw new DriverError(`bubblewrap failed to start the sandbox (exit ${winner.code}): ${winner.stderr || 'no error message'}`);
  }
  const m = /"child-pid"\s*:\s*(\d+)/.exec(winner);
  if (!m) {
    const r = await exited;
    throw new DriverError(`bubblewrap failed to start the sandbox (exit ${r.code}): ${r.stderr || 'no error message'}`);
  }
  return Number(m[1]);
}

class BwrapSandbox implements Sandbox {
  private destroying: Promise<void> | undefined;
  constructor(
    private readonly child: ChildProcess,
    readonly channel: Duplex,
    readonly agentHostPid: number,
    readonly egressListener: net.Server | undefined,
    readonly limits: LimitReport[],
    readonly placeholders: string[],
    readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null; stderr: string }>,
    private readonly release: () => Promise<void>,
  ) {}

  get hostPid(): number {
    return this.child.pid!;
  }

  destroy(): Promise<void> {
    this.destroying ??= (async () => {
      // The session has told the agent (PID 1) to kill everything and exit; the kernel
      // then tears the PID namespace down and bubblewrap exits once it has reaped it.
      // SIGKILL to bubblewrap is the fallback (--die-with-parent takes the agent along).
      const timer = setTimeout(() => this.child.kill('SIGKILL'), 2000);
      await this.exited;
      clearTimeout(timer);
      await waitGone(this.agentHostPid, 3000);
      this.channel.destroy();
      await this.release();
    })();
    return this.destroying;
  }
}

/** Waits until PID no longer exists (it may outlive its reaped parent for a moment). */
async function waitGone(pid: number, ms: number): Promise<void> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    try {
      const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
      if (/^\d+ \(.*\) [ZX] /s.test(stat)) return;
    } catch {
      return;
    }
    await new Promise((r) => setTimeout(r, 5));
  }
}

function limitReport(l: SandboxStartOptions['policy']['limits'], cg: CgroupSupport): LimitReport[] {
  const by = cg.mode === 'v2' ? 'cgroup-v2' : cg.mode === 'v1' ? 'cgroup-v1' : null;
  return [
    { name: 'lifetime', value: `${l.lifetimeSeconds} s`, enforcedBy: 'runtime-timer' },
    { name: 'idle', value: `${l.idleSeconds} s`, enforcedBy: 'runtime-timer' },
    { name: 'pids', value: String(l.pids), enforcedBy: by ?? 'rlimit', note: by ? undefined : 'RLIMIT_NPROC, counted per user namespace' },
    { name: 'memory', value: `${l.memoryMiB} MiB`, enforcedBy: by ?? 'none', note: by ? undefined : `not enforced: ${cg.reason}` },
    { name: 'cpu', value: `${l.cpuPercent}% of a core`, enforcedBy: by ?? 'nice', note: by ? undefined : `nice 10 only: ${cg.reason}` },
    { name: 'tmpfs', value: `${l.tmpfsMiB} MiB each for /tmp, /dev/shm and HOME`, enforcedBy: 'tmpfs-size' },
    { name: 'file size', value: `${l.fileSizeMiB} MiB`, enforcedBy: 'rlimit' },
  ];
}
