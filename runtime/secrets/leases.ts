/**
 * One session's secret leases: what a person granted it, until when, and in which
 * mode. Values live only here, in runtime memory: never on disk, in the audit log, in
 * events or in error messages (records carry names, modes, hosts and times).
 *
 * Safety argument: a lease ends by revoke or expiry, whichever comes first, and its end
 * is immediate for what the runtime controls (file removed, placeholder no longer
 * swapped, variable not given to new processes). A process that already read an `env`
 * value keeps its copy until it exits: that cannot be taken back, so its value stays in
 * the redaction set until the session ends.
 */
import * as crypto from 'node:crypto';
import { normalizeHost } from '../egress/address';
import { parseRule, RuleSet } from '../egress/rules';
import type { RedactionSet } from './redaction';
import {
  DEFAULT_SECRET_TTL_SECONDS, INSIDE_SECRETS_DIR, MAX_SECRET_TTL_SECONDS, MAX_VALUE_BYTES, MIN_VALUE_BYTES,
  SECRET_MODES, SECRET_NAME, SecretError, SecretGrant, SecretInfo, SecretMode,
} from './types';

/** What leases need of their session. */
export interface SecretOwner {
  readonly id: string;
  /** Records an audit record and tells live clients. */
  recordSecret(type: string, fields: Record<string, unknown>): void;
  writeFileInside(path: string, data: Buffer, opts: { mode: number }): Promise<void>;
  removeFileInside(path: string): Promise<void>;
}

export interface Lease {
  name: string;
  value: string;
  mode: SecretMode;
  hosts?: string[];
  /** Brokered: what the sandbox sees instead of the value. */
  placeholder?: string;
  /** Brokered: where the value may go. */
  rules?: RuleSet;
  grantedAt: number;
  expiresAt: number;
  by: string;
  uses: number;
  /** Set once revoked or expired; an ended lease is kept to explain refusals. */
  ended?: 'revoked' | 'expired';
  timer?: NodeJS.Timeout;
}

/** How many ended leases a session remembers (to name them in refusals). */
const ENDED_MEMORY = 256;

export class SessionSecrets {
  private readonly live = new Map<string, Lease>();
  private readonly ended: Lease[] = [];
  private disposed = false;

  constructor(
    private readonly owner: SecretOwner,
    private readonly redaction: RedactionSet,
    /** The session's remaining lifetime caps every TTL. */
    private readonly lifetimeLeftMs: () => number,
  ) {}

  /** A person's grant (secret.grant, --secret). Replaces a live lease of the same name. */
  async grant(g: SecretGrant, by: string): Promise<SecretInfo> {
    const { name, mode } = checkGrant(g);
    const ttl = g.ttlSeconds ?? DEFAULT_SECRET_TTL_SECONDS;
    const now = Date.now();
    const lease: Lease = {
      name, value: g.value, mode, grantedAt: now, by, uses: 0,
      expiresAt: now + Math.min(ttl * 1000, Math.max(0, this.lifetimeLeftMs())),
    };
    if (mode === 'brokered') {
      lease.hosts = g.hosts!.map((h) => parseRule(h).text);
      lease.rules = new RuleSet(lease.hosts.map((h) => ({ rule: parseRule(h), effect: 'allow' as const, source: 'grant' as const })));
      lease.placeholder = `airlock-brokered-${name}-${crypto.randomBytes(16).toString('hex')}`;
    }
    if (this.live.has(name)) await this.end(name, 'revoked', `replaced by a new grant from ${by}`);
    // Redacted from before the value can first appear anywhere.
    this.live.set(name, lease);
    this.syncRedaction();
    if (mode === 'file') {
      try {
        await this.owner.writeFileInside(filePath(name), Buffer.from(g.value, 'utf8'), { mode: 0o400 });
      } catch (e) {
        this.live.delete(name);
        this.remember(lease);
        throw new SecretError(`cannot grant secret ${name} as a file: ${(e as Error).message}`);
      }
    }
    lease.timer = setTimeout(() => void this.end(name, 'expired'), lease.expiresAt - now);
    lease.timer.unref();
    this.owner.recordSecret('secret.grant', { ...describe(lease), ttlSeconds: Math.round((lease.expiresAt - now) / 1000) });
    return info(lease);
  }

  /** A person's revoke: immediate. Unknown names are an error that lists the live ones. */
  async revoke(name: string, by: string): Promise<SecretInfo> {
    const lease = this.live.get(name);
    if (!lease) {
      const names = [...this.live.keys()];
      throw new SecretError(`session ${this.owner.id} has no live secret ${JSON.stringify(name).slice(0, 140)}` + (names.length ? ` (live: ${names.join(', ')})` : ' (it has none)'));
    }
    await this.end(name, 'revoked', `by ${by}`);
    return info(lease);
  }

  list(): SecretInfo[] {
    return [...this.live.values()].map(info);
  }

  /** Variables for a process started now: env values, and placeholders of brokered secrets. */
  env(): Record<string, string> {
    const env: Record<string, string> = {};
    for (const l of this.live.values()) {
      if (l.mode === 'env') env[l.name] = l.value;
      else if (l.mode === 'brokered') env[l.name] = l.placeholder!;
    }
    return env;
  }

  /** Live brokered leases, and ended ones still remembered (the broker names them in refusals). */
  brokered(): { live: Lease[]; ended: Lease[] } {
    return { live: [...this.live.values()].filter((l) => l.mode === 'brokered'), ended: this.ended.filter((l) => l.mode === 'brokered') };
  }

  /** Does a brokered lease allow its value to go to HOST:PORT? */
  static allows(lease: Lease, host: string, port: number): boolean {
    try {
      return lease.rules!.matchRequest(normalizeHost(host), port, Date.now()).reason === 'rule';
    } catch {
      return false;
    }
  }

  /** Records a use or a refusal the broker made. */
  record(type: 'secret.use' | 'secret.blocked', fields: Record<string, unknown>): void {
    this.owner.recordSecret(type, fields);
  }

  /** The session ended: timers stop, values leave memory and the redaction set. */
  dispose(): void {
    this.disposed = true;
    for (const l of this.live.values()) clearTimeout(l.timer);
    for (const l of [...this.live.values(), ...this.ended]) l.value = '';
    this.live.clear();
    this.ended.length = 0;
    this.redaction.delete(this.owner.id);
  }

  private async end(name: string, how: 'revoked' | 'expired', detail?: string): Promise<void> {
    const lease = this.live.get(name);
    if (!lease || this.disposed) return;
    clearTimeout(lease.timer);
    this.live.delete(name);
    lease.ended = how;
    this.remember(lease);
    let warning: string | undefined;
    if (lease.mode === 'file') {
      try {
        await this.owner.removeFileInside(filePath(name));
      } catch (e) {
        warning = `could not remove ${filePath(name)}: ${(e as Error).message}`;
      }
    }
    this.owner.recordSecret(how === 'expired' ? 'secret.expire' : 'secret.revoke', {
      name, mode: lease.mode, ...(detail ? { detail } : {}), ...(warning ? { warning } : {}),
      ...(lease.mode === 'brokered' ? { uses: lease.uses } : {}),
    });
  }

  /** Ended leases stay redacted (a process may still hold an env copy) and named in refusals. */
  private remember(lease: Lease): void {
    this.ended.push(lease);
    if (this.ended.length > ENDED_MEMORY) this.ended.shift();
    this.syncRedaction();
  }

  private syncRedaction(): void {
    const values = [...this.live.values(), ...this.ended].map((l) => ({ name: l.name, value: l.value }));
    this.redaction.set(this.owner.id, values);
  }
}

function filePath(name: string): string {
  return `${INSIDE_SECRETS_DIR}/${name}`;
}

function checkGrant(g: SecretGrant): { name: string; mode: SecretMode } {
  const shown = JSON.stringify(String(g.name ?? '')).slice(0, 140);
  if (typeof g.name !== 'string' || !SECRET_NAME.test(g.name)) {
    throw new SecretError(`invalid secret name ${shown}: use letters, digits and _ (not starting with a digit), like GITHUB_TOKEN`);
  }
  if (!SECRET_MODES.includes(g.mode)) throw new SecretError(`secret ${g.name}: mode must be one of ${SECRET_MODES.join(', ')}`);
  const bytes = Buffer.byteLength(g.value ?? '', 'utf8');
  if (typeof g.value !== 'string' || bytes < MIN_VALUE_BYTES) {
    throw new SecretError(`secret ${g.name}: its value is ${bytes} bytes; Airlock needs at least ${MIN_VALUE_BYTES} (shorter values cannot be redacted without redacting ordinary text)`);
  }
  if (bytes > MAX_VALUE_BYTES) throw new SecretError(`secret ${g.name}: its value is ${bytes} bytes; the largest Airlock takes is ${MAX_VALUE_BYTES}`);
  if (g.value.includes('\0')) throw new SecretError(`secret ${g.name}: its value contains a NUL byte, which no environment variable or header can carry`);
  if (g.mode === 'brokered' && /[\r\n]/.test(g.value)) throw new SecretError(`secret ${g.name}: a brokered value goes into HTTP headers and must not contain line breaks`);
  if (g.ttlSeconds !== undefined && !(Number.isInteger(g.ttlSeconds) && g.ttlSeconds >= 1 && g.ttlSeconds <= MAX_SECRET_TTL_SECONDS)) {
    throw new SecretError(`secret ${g.name}: ttlSeconds must be a whole number from 1 to ${MAX_SECRET_TTL_SECONDS}`);
  }
  if (g.mode === 'brokered') {
    if (!Array.isArray(g.hosts) || g.hosts.length === 0) {
      throw new SecretError(`secret ${g.name}: a brokered secret needs the hosts it may be sent to (e.g. api.github.com, *.example.com:443)`);
    }
    for (const h of g.hosts) {
      try {
        parseRule(h);
      } catch (e) {
        throw new SecretError(`secret ${g.name}: ${(e as Error).message}`);
      }
    }
  } else if (g.hosts?.length) {
    throw new SecretError(`secret ${g.name}: hosts apply only to brokered secrets (mode ${g.mode} hands the value itself to the sandbox)`);
  }
  return { name: g.name, mode: g.mode };
}

function describe(l: Lease): Record<string, unknown> {
  return {
    name: l.name, mode: l.mode, by: l.by, expiresAt: new Date(l.expiresAt).toISOString(),
    ...(l.hosts ? { hosts: l.hosts } : {}), ...(l.mode === 'file' ? { path: filePath(l.name) } : {}),
  };
}

function info(l: Lease): SecretInfo {
  return {
    name: l.name, mode: l.mode, ...(l.hosts ? { hosts: l.hosts } : {}), grantedAt: new Date(l.grantedAt).toISOString(),
    expiresAt: new Date(l.expiresAt).toISOString(), by: l.by, uses: l.uses, ...(l.mode === 'file' ? { path: filePath(l.name) } : {}),
  };
}
