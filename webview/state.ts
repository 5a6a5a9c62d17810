/**
 * The Airlock panel's model: sessions, their secrets, outbound connections and pending
 * access requests, built from a snapshot (the runtime's lists and the audit log) and
 * kept current by runtime events. Pure (no DOM, no VS Code): the webview renders it,
 * the unit tests drive it.
 *
 * Network rows are the audit log's `net.connect` records (and live `net.connect`
 * events), joined with their `net.close`; nothing is dropped below MAX_NET_ROWS, so the
 * panel's count equals the audit log's. The filtered view is kept incrementally: a new
 * row is tested once, not the whole list again.
 */
import type { AccessRequest, RuntimeEvent, SecretInfo, SessionInfo } from '../runtime/protocol';
import { RecentTimes } from '../extension/recent';

/** Rows kept in memory; beyond it the oldest go (and the panel says how many). */
export const MAX_NET_ROWS = 200_000;

export interface NetRow {
  /** sessionId/conn: unique per attempt. */
  key: string;
  ts: string;
  sessionId: string;
  host: string;
  port: number;
  protocol: string;
  method?: string;
  path?: string;
  decision: 'allow' | 'deny';
  rule: string;
  /** The process that connected, as reported from inside (untrusted). */
  process?: string;
  bytesUp?: number;
  bytesDown?: number;
  durationMs?: number;
  error?: string;
  closed: boolean;
}

export interface SessionRow {
  sessionId: string;
  label?: string;
  workspace: string;
  driver: string;
  startedAt: string;
  /** Epoch ms at which the lifetime limit ends it (from lifetimeLeft at snapshot time). */
  endsAt?: number;
  running: number;
  denied: number;
  connections: number;
  ended?: { reason: string; at: string };
}

export interface SecretRow extends SecretInfo {
  sessionId: string;
}

export interface NetFilter {
  deniedOnly: boolean;
  sessionId?: string;
  /** Substring of host (case-insensitive). */
  host?: string;
}

export interface Snapshot {
  sessions: SessionInfo[];
  secrets: Record<string, SecretInfo[]>;
  requests: AccessRequest[];
  /** net.connect and net.close records (or events), oldest first. */
  net: RuntimeEvent[];
  /** Live time-boxed grants of each session (network.rules, source "grant"). */
  grants?: Record<string, { rule: string; expiresAt: string }[]>;
  /** Epoch ms when the snapshot was taken (lifetimeLeft is relative to it). */
  takenAt: number;
}

/** What an update touched, so the view redraws only that. */
export interface Changes {
  sessions: boolean;
  secrets: boolean;
  requests: boolean;
  net: boolean;
}

const none = (): Changes => ({ sessions: false, secrets: false, requests: false, net: false });

export class PanelModel {
  readonly sessions = new Map<string, SessionRow>();
  readonly secrets = new Map<string, Map<string, SecretRow>>();
  readonly requests = new Map<string, AccessRequest>();
  /** Live time-boxed grants per session: rule text → expiry (ISO). */
  readonly grants = new Map<string, Map<string, string>>();
  private rows: NetRow[] = [];
  private readonly byKey = new Map<string, NetRow>();
  private visible: NetRow[] = [];
  private filter: NetFilter = { deniedOnly: false };
  /** net.connect attempts seen (rows kept plus rows let go). */
  netTotal = 0;
  /** Oldest rows let go past MAX_NET_ROWS. */
  dropped = 0;

  /** Denied attempts by time, for "N denied in the last 10 min" without a scan of the rows. */
  private readonly recentDenials = new RecentTimes();

  constructor(private readonly maxRows = MAX_NET_ROWS) {}

  /** Attempts denied within the last ten minutes (DENIAL_WINDOW_MS), kept rows or not. */
  deniedRecently(now = Date.now()): number {
    return this.recentDenials.count(now);
  }

  load(s: Snapshot): void {
    this.sessions.clear();
    this.secrets.clear();
    this.requests.clear();
    this.rows = [];
    this.byKey.clear();
    this.netTotal = 0;
    this.dropped = 0;
    this.recentDenials.clear();
    for (const info of s.sessions) {
      this.sessions.set(info.sessionId, {
        sessionId: info.sessionId,
        label: info.label,
        workspace: info.workspace,
        driver: info.driver,
        startedAt: info.startedAt,
        endsAt: s.takenAt + info.lifetimeLeft * 1000,
        running: info.processes.filter((p) => p.running).length,
        denied: 0,
        connections: 0,
      });
    }
    for (const [sessionId, list] of Object.entries(s.secrets)) {
      this.secrets.set(sessionId, new Map(list.map((x) => [x.name, { ...x, sessionId }])));
    }
    for (const r of s.requests) if (r.state === 'pending') this.requests.set(r.requestId, r);
    this.grants.clear();
    for (const [sessionId, list] of Object.entries(s.grants ?? {})) this.grants.set(sessionId, new Map(list.map((g) => [g.rule, g.expiresAt])));
    for (const e of s.net) this.applyNet(e);
    this.refilter();
  }

  /** Applies live events (in order); says what changed. */
  apply(events: RuntimeEvent[]): Changes {
    const c = none();
    for (const e of events) {
      const t = e.type;
      if (t === 'net.connect' || t === 'net.close') {
        const row = this.applyNet(e);
        c.net = true;
        if (row && t === 'net.connect' && this.matches(row)) this.visible.push(row);
        if (t === 'net.connect') c.sessions = true;
      } else if (t === 'session.start') {
        this.sessions.set(e.sessionId, {
          sessionId: e.sessionId,
          label: typeof e.label === 'string' ? e.label : undefined,
          workspace: String(e.workspace ?? ''),
          driver: String(e.driver ?? ''),
          startedAt: e.ts,
          running: 0,
          denied: 0,
          connections: 0,
        });
        c.sessions = true;
      } else if (t === 'session.end') {
        // An ended session leaves the list; its rows stay (they are the record).
        this.sessions.delete(e.sessionId);
        this.secrets.delete(e.sessionId);
        this.grants.delete(e.sessionId);
        for (const [id, r] of this.requests) if (r.sessionId === e.sessionId) this.requests.delete(id);
        c.sessions = c.secrets = c.requests = true;
      } else if (t === 'process.start' || t === 'process.exit') {
        const s = this.sessions.get(e.sessionId);
        if (s) s.running = Math.max(0, s.running + (t === 'process.start' ? 1 : -1));
        c.sessions = true;
      } else if (t === 'secret.grant') {
        const m = this.secrets.get(e.sessionId) ?? new Map<string, SecretRow>();
        const name = String(e.name);
        m.set(name, {
          sessionId: e.sessionId,
          name,
          mode: e.mode as SecretRow['mode'],
          ...(Array.isArray(e.hosts) ? { hosts: e.hosts as string[] } : {}),
          ...(typeof e.path === 'string' ? { path: e.path } : {}),
          grantedAt: e.ts,
          expiresAt: String(e.expiresAt),
          by: String(e.by ?? ''),
          uses: 0,
        });
        this.secrets.set(e.sessionId, m);
        c.secrets = true;
      } else if (t === 'secret.revoke' || t === 'secret.expire') {
        const m = this.secrets.get(e.sessionId);
        // A revoke that is the replacement of a live name is followed by its new grant.
        if (m?.delete(String(e.name))) c.secrets = true;
      } else if (t === 'secret.use') {
        const row = this.secrets.get(e.sessionId)?.get(String(e.name));
        if (row) {
          row.uses = typeof e.uses === 'number' ? e.uses : row.uses + 1;
          c.secrets = true;
        }
      } else if (t === 'net.rule-added' && e.effect === 'allow' && typeof e.expiresAt === 'string') {
        const m = this.grants.get(e.sessionId) ?? new Map<string, string>();
        m.set(String(e.rule), e.expiresAt);
        this.grants.set(e.sessionId, m);
        c.net = true;
      } else if (t === 'net.rule-expired') {
        if (this.grants.get(e.sessionId)?.delete(String(e.rule))) c.net = true;
      } else if (t === 'access.request') {
        const id = String(e.requestId);
        this.requests.set(id, {
          requestId: id,
          sessionId: e.sessionId,
          kind: e.kind as AccessRequest['kind'],
          target: String(e.target),
          reason: String(e.reason ?? ''),
          requestedTtlSeconds: Number(e.requestedTtlSeconds ?? 0),
          state: 'pending',
          createdAt: e.ts,
          message: '',
        });
        c.requests = true;
      } else if (t === 'access.decide' || t === 'access.expire') {
        if (this.requests.delete(String(e.requestId))) c.requests = true;
      }
    }
    return c;
  }

  private applyNet(e: RuntimeEvent): NetRow | undefined {
    const key = `${e.sessionId}/${String(e.conn)}`;
    if (e.type === 'net.close') {
      const row = this.byKey.get(key);
      if (!row) return undefined;
      row.bytesUp = num(e.bytesUp);
      row.bytesDown = num(e.bytesDown);
      row.durationMs = num(e.durationMs);
      if (typeof e.error === 'string') row.error = e.error;
      row.closed = true;
      return row;
    }
    // The snapshot and live events can overlap by a moment: an attempt is one row.
    if (this.byKey.has(key)) return undefined;
    const row: NetRow = {
      key,
      ts: e.ts,
      sessionId: e.sessionId,
      host: String(e.host ?? ''),
      port: Number(e.port ?? 0),
      protocol: String(e.protocol ?? ''),
      ...(typeof e.method === 'string' ? { method: e.method } : {}),
      ...(typeof e.path === 'string' ? { path: e.path } : {}),
      decision: e.decision === 'allow' ? 'allow' : 'deny',
      rule: String(e.rule ?? ''),
      ...(typeof e.process === 'string' ? { process: e.process } : {}),
      // A denied attempt never opens: nothing more will come for it.
      closed: e.decision !== 'allow',
    };
    this.netTotal++;
    if (row.decision === 'deny') this.recentDenials.add(Date.parse(row.ts));
    this.rows.push(row);
    this.byKey.set(key, row);
    const s = this.sessions.get(e.sessionId);
    if (s) {
      s.connections++;
      if (row.decision === 'deny') s.denied++;
    }
    // Trimmed in batches (a tenth of the cap) so a flood past the cap costs no copy per row.
    if (this.rows.length > this.maxRows + Math.max(1, Math.floor(this.maxRows / 10))) {
      const gone = this.rows.splice(0, this.rows.length - this.maxRows);
      for (const g of gone) this.byKey.delete(g.key);
      this.dropped += gone.length;
      // The visible rows are a subsequence of the rows: the ones let go are a prefix.
      let i = 0;
      while (i < this.visible.length && !this.byKey.has(this.visible[i].key)) i++;
      this.visible = this.visible.slice(i);
    }
    return row;
  }

  /** When a live grant of exactly `host:port` (or `host`) for the row's session ends, if there is one. */
  grantFor(r: NetRow, now = Date.now()): string | undefined {
    const m = this.grants.get(r.sessionId);
    if (!m) return undefined;
    for (const rule of [`${r.host}:${r.port}`, r.host]) {
      const until = m.get(rule);
      if (until && Date.parse(until) > now) return until;
    }
    return undefined;
  }

  setFilter(f: NetFilter): void {
    this.filter = { ...f, host: f.host?.trim().toLowerCase() || undefined };
    this.refilter();
  }

  get netFilter(): NetFilter {
    return { ...this.filter };
  }

  /** The rows the filter lets through, oldest first. */
  get visibleNet(): readonly NetRow[] {
    return this.visible;
  }

  get allNet(): readonly NetRow[] {
    return this.rows;
  }

  private matches(r: NetRow): boolean {
    const f = this.filter;
    if (f.deniedOnly && r.decision !== 'deny') return false;
    if (f.sessionId && r.sessionId !== f.sessionId) return false;
    if (f.host && !r.host.toLowerCase().includes(f.host)) return false;
    return true;
  }

  private refilter(): void {
    this.visible = this.rows.filter((r) => this.matches(r));
  }
}

function num(v: unknown): number | undefined {
  return typeof v === 'number' ? v : undefined;
}

/** "12 s", "4 min", "2 h 5 min": a countdown or an age. */
export function formatDuration(ms: number): string {
  const s = Math.max(0, Math.round(ms / 1000));
  if (s < 60) return `${s} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min${s % 60 && m < 10 ? ` ${s % 60} s` : ''}`;
  const h = Math.floor(m / 60);
  return `${h} h${m % 60 ? ` ${m % 60} min` : ''}`;
}

/** "1.2 KiB": a byte count for a table cell. */
export function formatBytes(n: number | undefined): string {
  if (n === undefined) return '';
  if (n < 1024) return `${n} B`;
  const units = ['KiB', 'MiB', 'GiB', 'TiB'];
  let v = n / 1024;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${v < 10 ? v.toFixed(1) : Math.round(v)} ${units[i]}`;
}
