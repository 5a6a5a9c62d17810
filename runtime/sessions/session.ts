/**
 * A session: one isolated environment (one sandbox, one agent) holding any number of
 * processes. Starting a process is a request to the agent already running inside,
 * never a new sandbox. The session owns its timers and writes every decision to the
 * audit log.
 */
import * as crypto from 'node:crypto';
import { EventEmitter } from 'node:events';
import * as path from 'node:path';
import { AgentChannel } from '../agent/channel';
import type { EgressEndpoint, EgressService, NetworkOwner, SessionNetwork } from '../egress/service';
import type { AuditLog } from '../audit';
import { DriverError } from '../drivers/driver';
import type { Driver, LimitReport, Sandbox } from '../drivers/driver';
import { Policy, summarizePolicy } from '../policy/policy';
import { describeGitRisk, newGitRisks } from '../policy/git-risk';
import { planWorkspace, WorkspacePlan } from '../policy/workspace';
import { RedactionSet } from '../secrets/redaction';
import { SessionSecrets } from '../secrets/leases';
import { SecretBroker } from '../secrets/broker';
import { buildEnv } from './env';
import { ProcessExit, SandboxProcess, signalName } from './process';

export type EndReason = 'exit' | 'killed' | 'lifetime' | 'idle' | 'error';

export interface SessionOptions {
  workspace: string;
  policy: Policy;
  driver: Driver;
  audit: AuditLog;
  /** The caller's environment, read only for the names policy.env.pass lists. */
  callerEnv?: NodeJS.ProcessEnv;
  /** How long to wait for the agent to report ready. */
  readyTimeoutMs?: number;
  /** The egress proxy; without it (or with network.mode 'none') the sandbox has no way out at all. */
  egress?: EgressService;
  /** The runtime-wide values to redact (the daemon's); a session of its own makes one. */
  redaction?: RedactionSet;
}

export interface SpawnOptions {
  argv: string[];
  /** Absolute, or relative to the workspace. Default: the workspace. */
  cwd?: string;
  /** Extra variables for this process only, named explicitly by the caller. */
  env?: Record<string, string>;
  pty?: boolean;
  cols?: number;
  rows?: number;
  /** Pipe mode: the process reads end of file on stdin from the start (write() and end() do nothing). */
  closeStdin?: boolean;
}

/** A started sandbox with a ready agent that is not a session yet (see Session.prepare). */
export interface PreparedSandbox {
  id: string;
  plan: WorkspacePlan;
  sandbox: Sandbox;
  channel: AgentChannel;
  /** False once taken, discarded, or dead. */
  alive: boolean;
  /** The sandbox's egress endpoint (network.mode 'proxy' with an egress service). */
  egress?: EgressEndpoint;
  discard(): Promise<void>;
}

export class SpawnError extends Error {
  /**
   * @param notFound the command does not exist inside the sandbox. Not simply
   *   errno === ENOENT: a missing cwd fails with ENOENT too, and is not "command not found".
   */
  constructor(message: string, readonly errno: number, readonly notFound = false) {
    super(message);
    this.name = 'SpawnError';
  }
}

/**
 * The audit log could not be written. Airlock does not run what it cannot record:
 * a session that cannot write its start record never starts, and one that loses its
 * log mid-way ends (reason `error`).
 */
export class AuditWriteError extends Error {
  constructor(file: string, cause: unknown, outcome: 'was not started' | 'was stopped' = 'was stopped') {
    const code = (cause as NodeJS.ErrnoException)?.code;
    const why = code === 'ENOSPC' ? 'no space left on the device' : code === 'EACCES' || code === 'EPERM' ? 'permission denied' : (cause as Error)?.message ?? String(cause);
    super(`cannot write the audit log ${file}: ${why}${code ? ` (${code})` : ''}: free space or fix permissions there, or set XDG_STATE_HOME to a writable directory; nothing runs unrecorded, so the session ${outcome}`);
    this.name = 'AuditWriteError';
  }
}

export class SessionEndedError extends Error {
  constructor(id: string, reason: string) {
    super(`session ${id} has ended (${reason})`);
    this.name = 'SessionEndedError';
  }
}

interface SessionEvents {
  end: [reason: EndReason, detail: string | undefined];
  process: [proc: SandboxProcess];
  /** A finding recorded in the audit log that clients may want live (e.g. workspace.git-created). */
  notice: [type: string, fields: Record<string, unknown>];
}

const ENOENT = 2;

export class Session extends EventEmitter<SessionEvents> implements NetworkOwner {
  readonly startedAt = Date.now();
  private readonly procs = new Map<number, SandboxProcess>();
  private readonly pending = new Map<number, { resolve: (p: SandboxProcess) => void; reject: (e: Error) => void; proc: SandboxProcess; cwd: string }>();
  private nextId = 1;
  private ended: { reason: EndReason; detail?: string } | undefined;
  private ending: Promise<void> | undefined;
  private lifetimeTimer: NodeJS.Timeout | undefined;
  private idleTimer: NodeJS.Timeout | undefined;
  private readonly baseEnv: Record<string, string>;
  private egress: EgressEndpoint | undefined;
  /** Rules, grants and counters of the session's egress; undefined when it has no way out. */
  network: SessionNetwork | undefined;
  /** What a person granted this session (see runtime/secrets). */
  readonly secrets: SessionSecrets;
  /** Brokered secrets in the egress proxy (with a network and a runtime CA). */
  broker: SecretBroker | undefined;

  private constructor(
    readonly id: string,
    readonly plan: WorkspacePlan,
    readonly policy: Policy,
    readonly driverName: string,
    readonly sandbox: Sandbox,
    private readonly channel: AgentChannel,
    private readonly audit: AuditLog,
    callerEnv: NodeJS.ProcessEnv,
    readonly redaction: RedactionSet,
  ) {
    super();
    this.baseEnv = buildEnv(policy, callerEnv);
    this.secrets = new SessionSecrets(this, redaction, () => this.policy.limits.lifetimeSeconds * 1000 - (Date.now() - this.startedAt));
  }

  static async create(opts: SessionOptions): Promise<Session> {
    return Session.begin(await Session.prepare(opts), opts);
  }

  /**
   * Builds and starts a sandbox whose agent is ready, without making it a session yet
   * (no audit record, no timers): a warm pool keeps these. Nothing runs in it before
   * begin(), so discarding one records nothing.
   */
  static async prepare(opts: Pick<SessionOptions, 'workspace' | 'policy' | 'driver' | 'readyTimeoutMs' | 'egress'>): Promise<PreparedSandbox> {
    const id = crypto.randomBytes(8).toString('hex');
    const plan = planWorkspace(opts.workspace, opts.policy);
    const egress = opts.egress && opts.policy.network.mode === 'proxy' ? opts.egress.open() : undefined;
    let sandbox: Sandbox;
    try {
      sandbox = await opts.driver.start({ sessionId: id, policy: opts.policy, workspace: plan, egress: egress !== undefined, caBundle: egress ? opts.egress?.caBundle : undefined });
    } catch (e) {
      await egress?.close();
      throw e;
    }
    const channel = new AgentChannel(sandbox.channel);
    if (egress) {
      if (sandbox.egressListener) egress.attach(sandbox.egressListener, (port) => channel.owner(port));
      else {
        await sandbox.destroy();
        await egress.close();
        throw new Error(`the ${opts.driver.name} driver started a sandbox without the egress listener its network policy needs`);
      }
    }
    try {
      await waitReady(channel, sandbox, opts.readyTimeoutMs ?? 10_000);
    } catch (e) {
      await sandbox.destroy();
      await egress?.close();
      throw e;
    }
    const prep: PreparedSandbox = {
      id, plan, sandbox, channel, alive: true, egress,
      discard: async () => {
        prep.alive = false;
        channel.shutdown();
        await sandbox.destroy();
        await egress?.close();
      },
    };
    channel.once('close', () => (prep.alive = false));
    return prep;
  }

  /** Makes a prepared sandbox a session: records its start and starts its timers. */
  static async begin(prep: PreparedSandbox, opts: SessionOptions): Promise<Session> {
    const { id, plan, sandbox, channel } = prep;
    prep.alive = false; // taken: no longer a spare
    const s = new Session(id, plan, opts.policy, opts.driver.name, sandbox, channel, opts.audit, opts.callerEnv ?? process.env, opts.redaction ?? new RedactionSet());
    try {
      opts.audit.append(id, 'session.start', {
        driver: opts.driver.name,
        runtime: process.pid,
        workspace: plan.inside,
        masked: plan.masks.length,
        readOnly: plan.readOnly.length + plan.absentReadOnly.length,
        policy: summarizePolicy(opts.policy),
        limits: sandbox.limits.map((l) => `${l.name}=${l.value} (${l.enforcedBy})`),
      });
    } catch (e) {
      channel.shutdown();
      await sandbox.destroy();
      await prep.egress?.close();
      throw new AuditWriteError(opts.audit.file, e, 'was not started');
    }
    s.egress = prep.egress;
    const ca = opts.egress?.opts.ca;
    if (prep.egress && ca) s.broker = new SecretBroker(s.secrets, s.redaction.redactor, ca, opts.egress?.opts.upstreamCAs);
    s.network = prep.egress?.bind(s);
    s.wire();
    // Flushed to disk right after, without holding the first process up; session.end
    // is flushed before end() resolves.
    void opts.audit.flush();
    s.lifetimeTimer = setTimeout(() => void s.end('lifetime', `lifetime of ${opts.policy.limits.lifetimeSeconds} s reached`), opts.policy.limits.lifetimeSeconds * 1000);
    s.lifetimeTimer.unref();
    s.touch();
    return s;
  }

  get limits(): LimitReport[] {
    return this.sandbox.limits;
  }

  /** Host paths of the placeholders this session's sandbox relies on. */
  get placeholders(): string[] {
    return this.sandbox.placeholders;
  }

  get state(): 'running' | 'ended' {
    return this.ended ? 'ended' : 'running';
  }

  get endReason(): EndReason | undefined {
    return this.ended?.reason;
  }

  processes(): SandboxProcess[] {
    return [...this.procs.values()];
  }

  private wire(): void {
    const ch = this.channel;
    ch.on('spawned', (id, pid) => {
      const p = this.pending.get(id);
      if (!p) return;
      this.pending.delete(id);
      p.proc.pid = pid;
      this.procs.set(id, p.proc);
      this.record('process.start', { process: id, argv: p.proc.argv, cwd: p.cwd, pty: p.proc.pty });
      this.touch();
      this.emit('process', p.proc);
      p.resolve(p.proc);
      // Frames after 'spawned' in this same read are held by the process until the
      // caller resumed from `await spawn()` (microtasks run before setImmediate).
      setImmediate(() => p.proc.release());
    });
    ch.on('spawnFailed', (id, errno, message) => {
      const p = this.pending.get(id);
      if (!p) return;
      this.pending.delete(id);
      this.record('process.error', { process: id, argv: p.proc.argv, errno, message });
      this.emit('notice', 'process.error', { argv: p.proc.argv, errno, message });
      this.touch();
      const notFound = errno === ENOENT && message.startsWith('cannot execute');
      p.reject(new SpawnError(notFound ? `command not found: ${p.proc.argv[0]}` : message, errno, notFound));
    });
    ch.on('stdout', (id, data) => this.procs.get(id)?.deliver('stdout', data));
    ch.on('stderr', (id, data) => this.procs.get(id)?.deliver('stderr', data));
    ch.on('inputAck', (id, bytes) => this.procs.get(id)?.inputTaken(bytes));
    ch.on('exit', (id, code, sig) => {
      const p = this.procs.get(id);
      if (!p) return;
      this.procs.delete(id);
      this.recordExit(p, { code, signal: sig === null ? null : signalName(sig) });
      this.touch();
    });
    ch.on('protocolError', (msg) => void this.end('error', `agent protocol error: ${msg}`));
    ch.on('close', () => void this.end('error', 'the sandbox agent exited unexpectedly'));
    void this.sandbox.exited.then((r) => {
      if (!this.ended) void this.end('error', `sandbox exited unexpectedly (code ${r.code}, signal ${r.signal})${r.stderr ? ': ' + r.stderr : ''}`);
    });
  }

  private recordExit(p: SandboxProcess, exit: ProcessExit): void {
    this.record('process.exit', {
      process: p.id,
      code: exit.code,
      signal: exit.signal,
      durationMs: Date.now() - p.startedAt,
      ...(exit.reason ? { reason: exit.reason } : {}),
    });
    p.finish(exit);
  }

  /** Starts a process in the running sandbox. Rejects with SpawnError when it cannot run. */
  spawn(opts: SpawnOptions): Promise<SandboxProcess> {
    if (this.auditFailure) return Promise.reject(this.auditFailure);
    if (this.ended) return Promise.reject(new SessionEndedError(this.id, this.ended.reason));
    if (!Array.isArray(opts.argv) || opts.argv.length === 0 || opts.argv.some((a) => typeof a !== 'string')) {
      return Promise.reject(new Error('argv must be a non-empty array of strings'));
    }
    const cwd = opts.cwd === undefined ? this.plan.inside : path.resolve(this.plan.inside, opts.cwd);
    const id = this.nextId++;
    const pty = opts.pty ?? false;
    const closeStdin = !pty && opts.closeStdin === true;
    const proc = new SandboxProcess(id, [...opts.argv], pty, this.channel, () => this.touch(), this.redaction.redactor, closeStdin);
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject, proc, cwd });
      const send = (): void => {
        if (!this.pending.has(id)) return; // the session ended meanwhile
        // The proxy and the registries the user's tools use, the secrets granted now
        // (brokered ones as placeholders), then the caller's own variables.
        const env = { ...this.baseEnv, ...(this.network?.env() ?? {}), ...this.secrets.env(), ...(opts.env ?? {}) };
        if (pty && !opts.env?.TERM && !env.TERM) env.TERM = 'xterm-256color';
        try {
          this.channel.spawn(id, { argv: opts.argv, cwd, env, pty, cols: opts.cols, rows: opts.rows, closeStdin });
        } catch (e) {
          this.pending.delete(id);
          reject(e);
        }
      };
      // Registry discovery (cached per workspace) must finish first, so tools inside
      // get the registry variables; usually it already has.
      if (this.network) void this.network.ready.then(send);
      else send();
    });
  }

  /** Resets the idle timer: something happened in the session. */
  private touch(): void {
    if (this.ended) return;
    if (this.idleTimer) clearTimeout(this.idleTimer);
    const ms = this.policy.limits.idleSeconds * 1000;
    this.idleTimer = setTimeout(() => {
      if (this.procs.size === 0 && this.pending.size === 0) void this.end('idle', `idle for ${this.policy.limits.idleSeconds} s`);
      else this.touch(); // a process is running: idle means nothing runs and nobody types
    }, ms);
    this.idleTimer.unref();
  }

  /** Things a person should know once the session is over (printed by the CLI). */
  readonly warnings: string[] = [];
  private auditFailure: AuditWriteError | undefined;

  /**
   * Records something the sandbox reported about itself (shell integration's commands):
   * marked `reportedBy` so no reader mistakes it for what the runtime observed.
   */
  recordReported(type: string, reportedBy: string, fields: Record<string, unknown>): void {
    this.record(type, { reportedBy, ...fields });
  }

  get workspaceHost(): string {
    return this.plan.host;
  }

  /**
   * Per process number, what its interactive shell reports running now (shell
   * integration, untrusted): egress records of its descendants carry it as `command`.
   */
  readonly commandReporters = new Map<number, () => string | undefined>();

  commandOf(process: number): string | undefined {
    return this.commandReporters.get(process)?.();
  }

  /** An egress record (net.*), also told to live clients. */
  recordNetwork(type: string, fields: Record<string, unknown>): boolean {
    return this.recordNotice(type, fields);
  }

  /** A secret record (secret.*: names, modes, hosts, never values), also told to live clients. */
  recordSecret(type: string, fields: Record<string, unknown>): void {
    this.recordNotice(type, fields);
  }

  /** An access-request record (access.*: what an agent asked, what a person decided; never a value), also told to live clients. */
  recordAccess(type: string, fields: Record<string, unknown>): void {
    this.recordNotice(type, fields);
  }

  /** Records and tells live clients; false when nothing could be written (see record). */
  private recordNotice(type: string, fields: Record<string, unknown>): boolean {
    const clean = this.record(type, fields);
    if (clean) this.emit('notice', type, clean);
    return clean !== undefined;
  }

  /**
   * Appends to the audit log; a failure ends the session (nothing runs unrecorded).
   * Every string is redacted first: a command line may carry a granted value. Returns
   * the fields as recorded (redacted, once), or undefined when nothing was written.
   */
  private record(type: string, fields: Record<string, unknown>): Record<string, unknown> | undefined {
    if (this.auditFailure) return undefined;
    const clean = this.redaction.value(fields);
    try {
      this.audit.append(this.id, type, clean);
      return clean;
    } catch (e) {
      this.auditFailure = new AuditWriteError(this.audit.file, e);
      this.warnings.push(this.auditFailure.message);
      void this.end('error', this.auditFailure.message);
      return undefined;
    }
  }

  private checkNewRepositories(): void {
    try {
      for (const r of newGitRisks(this.plan.host, this.plan.gitEntries, this.startedAt)) {
        const fields = { repo: r.repo, hooks: r.hooks, configKeys: r.configKeys, ...(r.gitdir !== undefined ? { gitdir: r.gitdir } : {}) };
        this.record('workspace.git-created', fields);
        this.emit('notice', 'workspace.git-created', fields);
        this.warnings.push(describeGitRisk(r));
      }
    } catch (e) {
      this.warnings.push(`could not check the workspace for new git repositories: ${(e as Error).message}`);
    }
  }

  /** Ends the session: every process in it dies, then the sandbox is removed. */
  end(reason: EndReason, detail?: string): Promise<void> {
    if (this.ending) return this.ending;
    this.ended = { reason, detail };
    this.ending = (async () => {
      clearTimeout(this.lifetimeTimer);
      clearTimeout(this.idleTimer);
      this.channel.shutdown();
      await this.sandbox.destroy();
      await this.egress?.close();
      this.channel.close();
      for (const [id, p] of this.pending) {
        p.reject(new SessionEndedError(this.id, reason));
        this.pending.delete(id);
      }
      for (const p of this.procs.values()) this.recordExit(p, { code: null, signal: 'SIGKILL', reason: `session ended: ${reason}` });
      this.procs.clear();
      this.checkNewRepositories();
      if (this.record('session.end', { reason, ...(detail ? { detail } : {}), durationMs: Date.now() - this.startedAt })) {
        try {
          this.audit.sync();
        } catch (e) {
          this.warnings.push(new AuditWriteError(this.audit.file, e).message);
        }
      }
      this.emit('end', reason, detail);
      this.secrets.dispose();
    })();
    return this.ending;
  }

  /** Writes a file inside the sandbox through its agent (only /run/airlock/secrets/NAME or /tmp/airlock-output/NAME). */
  writeFileInside(path: string, data: Buffer, opts: { mode: number; append?: boolean }): Promise<void> {
    if (this.ended) return Promise.reject(new SessionEndedError(this.id, this.ended.reason));
    // An op cut short by the agent going away (code ECLOSED) failed because the session ended.
    return this.channel.putFile(path, data, opts).catch((e: unknown) => {
      throw this.ended && (e as { code?: unknown } | null)?.code === 'ECLOSED' ? new SessionEndedError(this.id, this.ended.reason) : e;
    });
  }

  /** Removes a file writeFileInside wrote; one already gone is no error. */
  removeFileInside(path: string): Promise<void> {
    if (this.ended) return Promise.reject(new SessionEndedError(this.id, this.ended.reason));
    return this.channel.removeFile(path).catch((e: unknown) => {
      throw this.ended && (e as { code?: unknown } | null)?.code === 'ECLOSED' ? new SessionEndedError(this.id, this.ended.reason) : e;
    });
  }
}

function waitReady(channel: AgentChannel, sandbox: Sandbox, ms: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => fail(new DriverError(`the sandbox agent did not start within ${ms} ms`, "run 'airlock doctor'")), ms);
    const fail = (e: Error): void => {
      clearTimeout(timer);
      reject(e);
    };
    channel.once('ready', () => {
      clearTimeout(timer);
      resolve();
    });
    channel.once('close', () => {
      void sandbox.exited.then((r) => fail(new DriverError(`the sandbox failed to start${r.stderr ? ': ' + r.stderr : ` (bubblewrap exit ${r.code})`}`)));
    });
  });
}
