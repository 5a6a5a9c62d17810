/**
 * The daemon's sessions: creation from protocol params, lookup with errors that say
 * what happened to an ended session, processes with their hubs, exec, and one event
 * stream for every connection that subscribes.
 */
import { EventEmitter } from 'node:events';
import { AuditLog, readAuditFile, scanAuditFile, verifyAuditFile } from '../audit';
import type { Driver } from '../drivers/driver';
import { DriverError } from '../drivers/driver';
import { loadWorkspacePolicy } from '../policy/load';
import { PolicyDocument, PolicyError, resolvePolicy } from '../policy/policy';
import { WorkspaceError } from '../policy/workspace';
import { Api, ErrorCode, ExecResult, ProcessInfo, RpcError, RuntimeEvent, SessionInfo } from '../protocol';
import { AuditWriteError, SandboxProcess, Session, SessionEndedError, SpawnError } from '../sessions';
import { ProcessHub } from './hub';
import { runExec } from './exec';
import { WarmPool } from './pool';
import { CommandTracker, Osc633Parser } from '../shell';
import type { EgressService, SessionNetwork } from '../egress/service';
import { EgressRuleError } from '../egress/rules';
import { RedactionSet } from '../secrets/redaction';
import { SecretError } from '../secrets/types';
import { AccessRequests } from './access';

/** audit.export page size: a quarter of the protocol's message limit, leaving room for JSON escaping. */
const AUDIT_EXPORT_PAGE_BYTES = 1 << 20;

interface Entry {
  session: Session;
  label?: string;
  hubs: Map<string, ProcessHub>;
}

/** How many ended sessions are remembered, to say when and why they ended. */
const ENDED_MEMORY = 1000;
/**
 * How long the processes of an ended session stay attachable (replay and exit only).
 * A short command started with endsSession may exit, and end its session, before its
 * client's process.attach arrives: without this, its output was lost (`airlock run --
 * echo hi` printed nothing and exited 125 about one run in seven).
 */
const ENDED_HUBS_MS = 60_000;

export class SessionRegistry extends EventEmitter<{ event: [RuntimeEvent]; empty: [] }> {
  private readonly live = new Map<string, Entry>();
  private readonly ended = new Map<string, { at: number; reason: string; detail?: string; hubs?: Map<string, ProcessHub> }>();
  /** Every granted value of every session: redacted from all that leaves the runtime. */
  readonly redaction = new RedactionSet();
  /** Agents' pending requests for more access, for a person to decide (access.*). */
  readonly access = new AccessRequests(this);

  constructor(
    private readonly driver: Driver,
    readonly audit: AuditLog,
    private readonly pool: WarmPool = new WarmPool(driver, false),
    /** The egress proxy; without it sessions have no network at all. */
    private readonly egress?: EgressService,
  ) {
    super();
  }

  get size(): number {
    return this.live.size;
  }

  private emitEvent(sessionId: string, type: RuntimeEvent['type'], fields: Record<string, unknown> = {}): void {
    this.emit('event', { type, ts: new Date().toISOString(), sessionId, ...this.redaction.value(fields) });
  }

  async create(p: Api['session.create'][0], callerEnv: Record<string, string>): Promise<{ sessionId: string }> {
    let session: Session;
    let policyIgnored: string | undefined;
    try {
      const policy = resolvePolicy(loadWorkspacePolicy(p.workspace, (m) => (policyIgnored = m)), p.policy as PolicyDocument | undefined);
      const opts = { workspace: p.workspace, policy, driver: this.driver, audit: this.audit, callerEnv, egress: this.egress, redaction: this.redaction };
      const spare = this.pool.take(p.workspace, policy);
      session = spare ? await Session.begin(spare, opts) : await Session.create(opts);
      this.pool.refill(p.workspace, policy);
    } catch (e) {
      throw toRpcError(e);
    }
    const entry: Entry = { session, label: p.label, hubs: new Map() };
    this.live.set(session.id, entry);
    session.on('notice', (type, fields) => this.emitEvent(session.id, type as RuntimeEvent['type'], fields));
    session.on('end', (reason, detail) => {
      this.live.delete(session.id);
      const gone = { at: Date.now(), reason, detail, hubs: entry.hubs as Map<string, ProcessHub> | undefined };
      this.ended.set(session.id, gone);
      setTimeout(() => delete gone.hubs, ENDED_HUBS_MS).unref();
      if (this.ended.size > ENDED_MEMORY) this.ended.delete(this.ended.keys().next().value as string);
      this.emitEvent(session.id, 'session.end', { reason, ...(detail ? { detail } : {}), warnings: session.warnings });
      this.access.sessionEnded(session.id, reason);
      if (this.live.size === 0) this.emit('empty');
    });
    if (policyIgnored) {
      try {
        this.audit.append(session.id, 'policy.ignored', { message: policyIgnored });
      } catch {
        /* the session.start record holds the policy it runs under; this is a courtesy */
      }
    }
    this.emitEvent(session.id, 'session.start', { workspace: session.plan.inside, driver: session.driverName, label: p.label, ...(policyIgnored ? { policyIgnored } : {}) });
    return { sessionId: session.id };
  }

  /** The live session, or an error that says whether and why it ended. */
  entry(sessionId: string): Entry {
    const e = this.live.get(sessionId);
    if (e) return e;
    const gone = this.ended.get(sessionId);
    if (gone) {
      const ago = Math.round((Date.now() - gone.at) / 1000);
      throw new RpcError(ErrorCode.SessionEnded, `session ${sessionId} has ended (${ago} s ago: ${gone.reason}${gone.detail ? `, ${gone.detail}` : ''})`, { reason: gone.reason });
    }
    throw new RpcError(ErrorCode.SessionNotFound, `session ${sessionId} not found: 'airlock sessions' lists the live ones`);
  }

  list(): SessionInfo[] {
    return [...this.live.values()].map((e) => this.info(e)).reverse();
  }

  info(e: Entry): SessionInfo {
    const s = e.session;
    return {
      sessionId: s.id,
      label: e.label,
      workspace: s.plan.inside,
      driver: s.driverName,
      state: s.state,
      startedAt: new Date(s.startedAt).toISOString(),
      lifetimeLeft: Math.max(0, Math.round(s.policy.limits.lifetimeSeconds - (Date.now() - s.startedAt) / 1000)),
      processes: [...e.hubs.values()].map((h) => processInfo(h)),
      limits: s.limits,
      placeholders: s.placeholders,
    };
  }

  async kill(sessionId: string, reason?: string): Promise<{ warnings: string[] }> {
    const e = this.entry(sessionId);
    await e.session.end('killed', reason);
    return { warnings: e.session.warnings };
  }

  async startProcess(p: Api['process.start'][0], argv: string[], env?: Record<string, string>, shellIntegration = false): Promise<ProcessHub> {
    const e = this.entry(p.sessionId);
    let proc: SandboxProcess;
    try {
      proc = await e.session.spawn({ argv, pty: p.pty ?? false, cols: p.cols, rows: p.rows, cwd: p.cwd, env: { ...(env ?? {}), ...(p.env ?? {}) } });
    } catch (err) {
      throw toRpcError(err);
    }
    // The number is the session's own process number, as in the audit log's `process`.
    const processId = `${p.sessionId}.${proc.id}`;
    const hub = new ProcessHub(processId, p.sessionId, proc, shellIntegration ? this.commandObserver(e.session, processId) : undefined);
    if (p.endsSession) {
      hub.settled = proc.exited.then(async () => {
        await e.session.end('exit', `its main process ${processId} exited`);
        return { warnings: e.session.warnings };
      });
    }
    e.hubs.set(processId, hub);
    this.emitEvent(p.sessionId, 'process.start', { processId, argv, pty: proc.pty });
    void proc.exited.then((x) => this.emitEvent(p.sessionId, 'process.exit', { processId, code: x.code, signal: x.signal, ...(x.reason ? { reason: x.reason } : {}) }));
    return hub;
  }

  /**
   * Turns the OSC 633 sequences an interactive shell writes into command.start and
   * command.end events and audit records. The shell runs inside the sandbox, so what
   * it reports is untrusted: records say `reportedBy: "shell"`.
   */
  private commandObserver(session: Session, processId: string): (d: Buffer) => void {
    const parser = new Osc633Parser();
    const tracker = new CommandTracker();
    // Egress records of processes under this shell name the command it reports running.
    session.commandReporters.set(Number(processId.split('.')[1]), () => tracker.current?.commandLine);
    return (d) => {
      for (const c of tracker.push(parser.push(d))) {
        const { type, ...fields } = c;
        session.recordReported(type, 'shell', { process: processId, ...fields });
        this.emitEvent(session.id, type, { processId, reportedBy: 'shell', ...fields });
      }
    };
  }

  /** The hub of PROCESSID (which names its session: `SESSION.N`), also for a session that ended moments ago. */
  hub(processId: string): ProcessHub {
    const sessionId = processId.split('.')[0];
    const recent = this.live.has(sessionId) ? undefined : this.ended.get(sessionId)?.hubs?.get(processId);
    if (recent) return recent;
    const hub = this.entry(sessionId).hubs.get(processId);
    if (!hub) throw new RpcError(ErrorCode.ProcessNotFound, `process ${processId} not found in session ${sessionId}`);
    return hub;
  }

  async exec(p: Api['exec'][0]): Promise<ExecResult> {
    const e = this.entry(p.sessionId);
    try {
      return await runExec(e.session, p);
    } catch (err) {
      throw toRpcError(err);
    }
  }

  auditQuery(p: Api['audit.query'][0]): Api['audit.query'][1] {
    let records = readAuditFile(this.audit.file).records;
    if (p.sessionId) records = records.filter((r) => r.session === p.sessionId);
    if (p.types?.length) records = records.filter((r) => p.types!.includes(r.type));
    return { records: records.slice(-(p.limit ?? 1000)) };
  }

  /** One page of a session's stored lines; pages stay well under the message limit. */
  auditExport(p: Api['audit.export'][0]): Api['audit.export'][1] {
    const after = p.afterSeq ?? 0;
    const mine = scanAuditFile(this.audit.file).filter((l) => l.kind === 'record' && l.record!.session === p.sessionId);
    if (mine.length === 0) throw new RpcError(ErrorCode.SessionNotFound, `no audit records of session ${p.sessionId} in ${this.audit.file}`);
    const out: string[] = [];
    let bytes = 0;
    let lastSeq = after;
    let done = true;
    for (const l of mine) {
      if (l.record!.seq <= after) continue;
      if (out.length > 0 && bytes + l.bytes + 1 > AUDIT_EXPORT_PAGE_BYTES) {
        done = false;
        break;
      }
      out.push(l.text);
      bytes += l.bytes + 1;
      lastSeq = l.record!.seq;
    }
    return { jsonl: out.length ? out.join('\n') + '\n' : '', records: out.length, lastSeq, done };
  }

  auditVerify(): Api['audit.verify'][1] {
    const v = verifyAuditFile(this.audit.file);
    return { ok: v.ok, file: this.audit.file, records: v.records, ...(v.firstBad ? { firstBad: v.firstBad } : {}), torn: v.torn.length };
  }

  networkAllow(p: Api['network.allow'][0]): Api['network.allow'][1] {
    const nw = this.network(p.sessionId);
    try {
      return nw.allow(p.rule, p.ttlSeconds, p.by ?? 'a client of the control socket');
    } catch (e) {
      if (e instanceof EgressRuleError) throw new RpcError(ErrorCode.InvalidParams, e.message);
      throw toRpcError(e);
    }
  }

  async secretGrant(p: Api['secret.grant'][0]): Promise<Api['secret.grant'][1]> {
    const s = this.entry(p.sessionId).session;
    if (p.mode === 'brokered' && !s.broker) {
      throw new RpcError(ErrorCode.InvalidParams, `session ${p.sessionId} cannot broker ${p.name}: a brokered secret needs the egress proxy (network.mode 'proxy', now '${s.policy.network.mode}') of a runtime with its CA; grant it as env or file, or start a session with network`);
    }
    const { sessionId: _, by, ...grant } = p;
    return s.secrets.grant(grant, by ?? 'a client of the control socket');
  }

  async secretRevoke(p: Api['secret.revoke'][0]): Promise<Api['secret.revoke'][1]> {
    return this.entry(p.sessionId).session.secrets.revoke(p.name, p.by ?? 'a client of the control socket');
  }

  secretList(sessionId: string): Api['secret.list'][1] {
    return { secrets: this.entry(sessionId).session.secrets.list() };
  }

  networkRules(sessionId: string): Api['network.rules'][1] {
    const s = this.entry(sessionId).session;
    const nw = s.network;
    return { mode: s.policy.network.mode, allowAll: nw?.rules.allowAll ?? false, rules: nw?.list() ?? [], activeConnections: nw?.stats.active ?? 0 };
  }

  private network(sessionId: string): SessionNetwork {
    const s = this.entry(sessionId).session;
    if (!s.network) {
      throw new RpcError(ErrorCode.InvalidParams, `session ${sessionId} has no network (network.mode is '${s.policy.network.mode}'${this.egress ? '' : ', and this runtime has no egress proxy'}): start a session with network.mode 'proxy'`);
    }
    return s.network;
  }

  /** Ends every session (the daemon is stopping). */
  async endAll(detail: string): Promise<void> {
    await this.pool.clear();
    await Promise.all([...this.live.values()].map((e) => e.session.end('killed', detail)));
    this.access.dispose();
  }
}

function processInfo(h: ProcessHub): ProcessInfo {
  const x = h.proc.exitInfo;
  return {
    processId: h.processId,
    argv: h.proc.argv,
    pty: h.proc.pty,
    pid: h.proc.pid,
    running: h.proc.running,
    exitCode: x?.code ?? null,
    signal: x?.signal ?? null,
    startedAt: new Date(h.proc.startedAt).toISOString(),
    attached: h.attachedCount,
  };
}

/** Maps runtime errors to stable protocol errors; messages pass through unchanged. */
export function toRpcError(e: unknown): RpcError {
  if (e instanceof RpcError) return e;
  const msg = (e as Error)?.message ?? String(e);
  if (e instanceof PolicyError) return new RpcError(ErrorCode.PolicyInvalid, msg);
  if (e instanceof WorkspaceError) return new RpcError(ErrorCode.WorkspaceInvalid, msg);
  if (e instanceof DriverError) return new RpcError(ErrorCode.SandboxUnavailable, msg);
  if (e instanceof AuditWriteError) return new RpcError(ErrorCode.AuditUnavailable, msg);
  if (e instanceof SpawnError) return new RpcError(ErrorCode.SpawnFailed, msg, { errno: e.errno, notFound: e.notFound });
  if (e instanceof SessionEndedError) return new RpcError(ErrorCode.SessionEnded, msg);
  if (e instanceof SecretError) return new RpcError(ErrorCode.InvalidParams, msg);
  return new RpcError(ErrorCode.InternalError, `internal error: ${msg}`);
}
