/**
 * Access requests: an agent (through the MCP server) asks for a host to reach or a
 * secret, and the request waits, pending, until a person approves or denies it, or its
 * time runs out. Pending requests are bounded per session and always expire.
 *
 * Safety argument: nothing here grants anything by itself. access.request only records
 * what was asked, and its params have no field that could approve. A grant happens only
 * in decide(), through the very paths a person's `airlock allow` and `airlock secret
 * grant` take (network.allow, secret.grant), with a secret's value supplied by the
 * deciding client, never by the requester; the value is handed to secret.grant and kept
 * nowhere here, so it cannot reach a record, an event, an error or a result.
 * LIMITATION: the control socket cannot tell a person's client from the MCP server (both
 * are this user's processes), so what keeps an agent from deciding its own requests is
 * that the sandbox cannot reach the socket and the MCP server offers no tool for
 * access.decide.
 */
import * as crypto from 'node:crypto';
import { EgressRuleError, parseRule } from '../egress/rules';
import { AccessRequest, Api, ErrorCode, RpcError, SecretInfo } from '../protocol';
import { SECRET_NAME } from '../secrets/types';

/** How long a request nobody decides stays pending. */
export const DEFAULT_PENDING_MS = 15 * 60_000;
/** Pending requests one session may have: an agent cannot flood a person with them. */
export const MAX_PENDING_PER_SESSION = 32;
/** What a request asks for when it names no TTL. */
export const DEFAULT_REQUEST_TTL_SECONDS = 900;
/** Requests no longer pending that access.list still shows. */
const HISTORY = 1000;
const DEFAULT_BY = 'a client of the control socket';

export interface AccessOptions {
  /** How long a request stays pending (default DEFAULT_PENDING_MS). */
  pendingMs?: number;
  /** Pending requests per session (default MAX_PENDING_PER_SESSION). */
  maxPending?: number;
  /** Requests no longer pending that are remembered (default 1000). */
  history?: number;
}

/** What the store needs of a session (a Session). */
export interface AccessSession {
  readonly id: string;
  /** Undefined when the session has no egress. */
  readonly network: unknown;
  readonly policy: { network: { mode: string } };
  /** An audit record, also told to live clients as an event. */
  recordAccess(type: string, fields: Record<string, unknown>): void;
}

/** What the store needs of the daemon's sessions (the SessionRegistry). */
export interface AccessOwner {
  /** The live session; throws SessionNotFound or SessionEnded otherwise. */
  entry(sessionId: string): { session: AccessSession };
  networkAllow(p: Api['network.allow'][0]): Api['network.allow'][1];
  secretGrant(p: Api['secret.grant'][0]): Promise<Api['secret.grant'][1]>;
}

interface Item {
  req: AccessRequest;
  /** Creation order (newest first in lists). */
  seq: number;
  /** Expires the request when nobody decides it. */
  timer?: NodeJS.Timeout;
  /** Callers of access.request waiting (waitMs) for it to leave pending. */
  waiters: Set<() => void>;
  /** A decision is being carried out (a grant is in progress). */
  deciding: boolean;
  /** Its time ran out while a decision was being carried out. */
  lapsed: boolean;
}

export class AccessRequests {
  private readonly items = new Map<string, Item>();
  /** Ids of requests no longer pending, oldest first. */
  private readonly done: string[] = [];
  private seq = 0;
  private readonly pendingMs: number;
  private readonly maxPending: number;
  private readonly history: number;

  constructor(private readonly owner: AccessOwner, opts: AccessOptions = {}) {
    this.pendingMs = opts.pendingMs ?? DEFAULT_PENDING_MS;
    this.maxPending = opts.maxPending ?? MAX_PENDING_PER_SESSION;
    this.history = opts.history ?? HISTORY;
  }

  /** access.request: a new pending request (or the pending one asking the same), after waiting up to waitMs for a decision. */
  async request(p: Api['access.request'][0]): Promise<AccessRequest> {
    const s = this.owner.entry(p.sessionId).session;
    const target = checkTarget(p.kind, p.target, s);
    const pending = this.pendingOf(s.id);
    let item = pending.find((i) => i.req.kind === p.kind && i.req.target === target);
    if (!item) {
      if (pending.length >= this.maxPending) {
        throw new RpcError(ErrorCode.LimitExceeded, `session ${s.id} already has ${this.maxPending} pending access requests: a person must decide some first ('airlock requests ${s.id}'), or they expire ${duration(this.pendingMs)} after they were made`);
      }
      item = this.add(s, p, target);
    }
    if (p.waitMs) await this.wait(item, p.waitMs);
    return { ...item.req };
  }

  /** access.list: pending first, newest first. */
  list(p: Api['access.list'][0]): Api['access.list'][1] {
    let all = [...this.items.values()];
    if (p.sessionId !== undefined) {
      all = all.filter((i) => i.req.sessionId === p.sessionId);
      // Nothing remembered: say whether the session exists at all.
      if (all.length === 0) this.owner.entry(p.sessionId);
    }
    if (p.state) all = all.filter((i) => i.req.state === p.state);
    all.sort((a, b) => Number(b.req.state === 'pending') - Number(a.req.state === 'pending') || b.seq - a.seq);
    return { requests: all.map((i) => ({ ...i.req })) };
  }

  /** access.decide: a person's approval (the grant happens here) or denial. */
  async decide(p: Api['access.decide'][0]): Promise<AccessRequest> {
    const item = this.items.get(p.requestId);
    if (!item) throw new RpcError(ErrorCode.InvalidParams, `access request ${p.requestId} not found: 'airlock requests --all' lists the ones this runtime remembers`);
    const r = item.req;
    if (r.state !== 'pending') {
      throw new RpcError(ErrorCode.InvalidParams, `access request ${r.requestId} is already ${r.state} (${r.decidedBy ? `by ${r.decidedBy}, ` : ''}${r.decidedAt}): only a pending request can be decided; the agent may ask again`);
    }
    if (item.deciding) throw new RpcError(ErrorCode.InvalidParams, `access request ${r.requestId} is being decided by another client right now`);
    if (!p.approve && (p.secret || p.ttlSeconds !== undefined)) throw new RpcError(ErrorCode.InvalidParams, `access.decide: denying request ${r.requestId} takes no secret and no ttlSeconds`);
    if (p.approve && r.kind === 'host' && p.secret) throw new RpcError(ErrorCode.InvalidParams, `access request ${r.requestId} asks for a host (${r.target}), not a secret: send no secret to approve it`);
    if (p.approve && r.kind === 'secret' && !p.secret) {
      throw new RpcError(ErrorCode.InvalidParams, `access request ${r.requestId} asks for the secret ${r.target}: approving it needs the value from the person's client (secret: {value, mode}); 'airlock approve ${r.requestId}' reads it from the variable ${r.target} of the person's shell`);
    }
    const session = this.owner.entry(r.sessionId).session;
    const by = p.by ?? DEFAULT_BY;
    const note = p.note ? { note: p.note } : {};
    if (!p.approve) {
      Object.assign(r, decided('denied', by, p.note), {
        message: `denied by ${by}${p.note ? ` ("${p.note}")` : ''}: nothing was granted; carry on without it, or explain to the person why it is needed`,
      });
      session.recordAccess('access.decide', { requestId: r.requestId, kind: r.kind, target: r.target, approve: false, by, ...note });
      this.settle(item);
      return { ...r };
    }
    item.deciding = true;
    let granted: Required<Pick<AccessRequest, 'ttlSeconds' | 'expiresAt' | 'message'>>;
    try {
      granted = await this.grant(r, p, by);
    } catch (e) {
      item.deciding = false;
      if (item.lapsed) this.lapse(item);
      throw e;
    }
    item.deciding = false;
    // The session ended while the grant was under way: its end already settled the request.
    if (r.state !== 'pending') return { ...r };
    Object.assign(r, decided('approved', by, p.note), granted);
    session.recordAccess('access.decide', {
      requestId: r.requestId, kind: r.kind, target: r.target, approve: true, by, ttlSeconds: granted.ttlSeconds, expiresAt: granted.expiresAt,
      ...(p.secret ? { mode: p.secret.mode } : {}), ...note,
    });
    this.settle(item);
    return { ...r };
  }

  /** The session ended: its pending requests end with it (no record: its session.end says why). */
  sessionEnded(sessionId: string, reason: string): void {
    for (const item of this.pendingOf(sessionId)) {
      this.finish(item, `the session ended (${reason}) before a person decided: nothing was granted`);
    }
  }

  /** The daemon stops: every pending request ends, every timer and waiter is released. */
  dispose(): void {
    for (const item of [...this.items.values()].filter((i) => i.req.state === 'pending')) {
      this.finish(item, 'the runtime stopped before a person decided: nothing was granted');
    }
  }

  private add(s: AccessSession, p: Api['access.request'][0], target: string): Item {
    let requestId: string;
    do requestId = crypto.randomBytes(8).toString('hex');
    while (this.items.has(requestId));
    const now = Date.now();
    const req: AccessRequest = {
      requestId, sessionId: s.id, kind: p.kind, target, reason: p.reason, requestedTtlSeconds: p.ttlSeconds ?? DEFAULT_REQUEST_TTL_SECONDS,
      state: 'pending', createdAt: iso(now),
      message: `waiting for a person: they can run 'airlock approve ${requestId}' (or 'airlock deny ${requestId}'); nothing is granted before that, and the request lapses at ${iso(now + this.pendingMs)} if nobody decides`,
    };
    const item: Item = { req, seq: ++this.seq, waiters: new Set(), deciding: false, lapsed: false };
    this.items.set(requestId, item);
    item.timer = setTimeout(() => this.lapse(item), this.pendingMs);
    item.timer.unref();
    s.recordAccess('access.request', { requestId, kind: req.kind, target, reason: req.reason, requestedTtlSeconds: req.requestedTtlSeconds });
    return item;
  }

  /** The request's time is up: it expires, unless a decision is being carried out (then it expires if that fails). */
  private lapse(item: Item): void {
    if (item.req.state !== 'pending') return;
    if (item.deciding) {
      item.lapsed = true;
      return;
    }
    const r = item.req;
    this.finish(item, `nobody decided within ${duration(this.pendingMs)}: nothing was granted; ask again if it is still needed`);
    let session: AccessSession | undefined;
    try {
      session = this.owner.entry(r.sessionId).session;
    } catch {
      return; // ended meanwhile: its end settled everything
    }
    session.recordAccess('access.expire', { requestId: r.requestId, kind: r.kind, target: r.target });
  }

  private async grant(r: AccessRequest, p: Api['access.decide'][0], by: string): Promise<Required<Pick<AccessRequest, 'ttlSeconds' | 'expiresAt' | 'message'>>> {
    const ttlSeconds = p.ttlSeconds ?? r.requestedTtlSeconds;
    // The grant's own record names the approver and the request it came from.
    const grantBy = `${by} (access request ${r.requestId})`;
    if (r.kind === 'host') {
      const rule = this.owner.networkAllow({ sessionId: r.sessionId, rule: r.target, ttlSeconds, by: grantBy });
      return { ttlSeconds, expiresAt: rule.expiresAt!, message: `approved by ${by}: ${rule.rule} is reachable until ${rule.expiresAt}` };
    }
    const s = p.secret!;
    const info = await this.owner.secretGrant({ sessionId: r.sessionId, name: r.target, value: s.value, mode: s.mode, ...(s.hosts ? { hosts: s.hosts } : {}), ttlSeconds, by: grantBy });
    // The session's remaining lifetime may have shortened it.
    const granted = Math.round((Date.parse(info.expiresAt) - Date.parse(info.grantedAt)) / 1000);
    return { ttlSeconds: granted, expiresAt: info.expiresAt, message: `approved by ${by}: ${secretWhere(info)} until ${info.expiresAt}` };
  }

  /** Ends a pending request as expired with MESSAGE. */
  private finish(item: Item, message: string): void {
    Object.assign(item.req, { state: 'expired', decidedAt: iso(Date.now()), message } satisfies Partial<AccessRequest>);
    this.settle(item);
  }

  /** It left pending: its timer stops, its waiters return, it joins the bounded history. */
  private settle(item: Item): void {
    clearTimeout(item.timer);
    item.timer = undefined;
    for (const w of [...item.waiters]) w();
    item.waiters.clear();
    this.done.push(item.req.requestId);
    while (this.done.length > this.history) this.items.delete(this.done.shift()!);
  }

  private wait(item: Item, ms: number): Promise<void> {
    if (item.req.state !== 'pending') return Promise.resolve();
    return new Promise((resolve) => {
      const done = (): void => {
        clearTimeout(t);
        item.waiters.delete(done);
        resolve();
      };
      const t = setTimeout(done, ms);
      t.unref();
      item.waiters.add(done);
    });
  }

  private pendingOf(sessionId: string): Item[] {
    return [...this.items.values()].filter((i) => i.req.sessionId === sessionId && i.req.state === 'pending');
  }

  /** Timers of pending requests and waiters still held (tests check that none leak). */
  get held(): { timers: number; waiters: number } {
    let timers = 0;
    let waiters = 0;
    for (const i of this.items.values()) {
      if (i.timer) timers++;
      waiters += i.waiters.size;
    }
    return { timers, waiters };
  }
}

/** The canonical target, or InvalidParams naming what is wrong with it. */
function checkTarget(kind: AccessRequest['kind'], target: string, s: AccessSession): string {
  if (kind === 'secret') {
    if (!SECRET_NAME.test(target)) {
      throw new RpcError(ErrorCode.InvalidParams, `access.request: target: invalid secret name ${JSON.stringify(target).slice(0, 140)}: use letters, digits and _ (not starting with a digit), like GITHUB_TOKEN`);
    }
    return target;
  }
  let text: string;
  try {
    text = parseRule(target).text;
  } catch (e) {
    if (e instanceof EgressRuleError) throw new RpcError(ErrorCode.InvalidParams, `access.request: target: ${e.message}`);
    throw e;
  }
  if (!s.network) {
    throw new RpcError(ErrorCode.InvalidParams, `access.request: session ${s.id} has no network (network.mode is '${s.policy.network.mode}'), so no host can be allowed in it; a person would have to start a session with network.mode 'proxy'`);
  }
  return text;
}

function decided(state: 'approved' | 'denied', by: string, note: string | undefined): Partial<AccessRequest> {
  return { state, decidedAt: iso(Date.now()), decidedBy: by, ...(note ? { note } : {}) };
}

function secretWhere(info: SecretInfo): string {
  if (info.mode === 'file') return `the secret ${info.name} is the file ${info.path} inside the sandbox`;
  if (info.mode === 'brokered') {
    return `processes started from now on see a placeholder in ${info.name}, which the proxy replaces with the value in requests to ${info.hosts!.join(', ')} only (those hosts still need a network rule)`;
  }
  return `the secret ${info.name} is in the environment of processes started from now on (not of those already running)`;
}

function duration(ms: number): string {
  if (ms % 60_000 === 0) return `${ms / 60_000} minute${ms === 60_000 ? '' : 's'}`;
  return ms % 1000 === 0 ? `${ms / 1000} s` : `${ms} ms`;
}

const iso = (ms: number): string => new Date(ms).toISOString();
