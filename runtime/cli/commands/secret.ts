/**
 * Secrets on the command line: the grant flags of `airlock run/shell`, and `airlock
 * secret` for live sessions. Values come only from places the person names explicitly
 * (an environment variable of this process, a file) and go straight to the runtime;
 * nothing here prints or logs them.
 */
import * as fs from 'node:fs';
import type { Api, SecretMode } from '../../protocol';
import type { RuntimeClient } from '../../client/client';
import { Parsed, parseFlags, positiveInt, UsageError } from '../args';
import type { Io } from '../io';
import { connect } from './sessions';

export const SECRET_FLAGS = `secrets (granted to the session before CMD starts; values never leave the runtime's
memory, and every form of them is redacted from output, events and the audit log):
  --secret NAME       NAME=value of this shell's variable NAME, in the sandbox's environment
  --secret NAME=@FILE the contents of FILE (one trailing newline dropped) as variable NAME
  --secret-file NAME[=@FILE]  the value as the file /run/airlock/secrets/NAME (0400) instead
  --broker NAME=HOST[:PORT][,HOST...]  the sandbox sees only a placeholder in NAME; the
                      proxy puts the real value (this shell's variable NAME) into request
                      headers to those hosts only (HTTPS to them is intercepted with the
                      runtime's CA; the hosts still need --allow)
  --secret-ttl SECONDS how long the grants last (default 3600)
`;

export const SECRET_SPEC = { lists: ['secret', 'secret-file', 'broker'], values: ['secret-ttl'] };

export type GrantRequest = Omit<Api['secret.grant'][0], 'sessionId'>;

/** The grants the flags ask for, with their values read now (so a typo fails before any sandbox starts). */
export function secretGrants(p: Parsed, command: string, env: NodeJS.ProcessEnv = process.env): GrantRequest[] {
  const ttlSeconds = positiveInt(p.values['secret-ttl'], 'secret-ttl', command);
  const by = `airlock ${command} (uid ${process.getuid?.() ?? '?'})`;
  const grants: GrantRequest[] = [];
  const add = (g: Omit<GrantRequest, 'by' | 'ttlSeconds'>): void => {
    if (grants.some((x) => x.name === g.name)) throw new UsageError(`${command}: secret ${g.name} is given twice`);
    grants.push({ ...g, by, ...(ttlSeconds ? { ttlSeconds } : {}) });
  };
  for (const spec of p.lists.secret ?? []) add({ ...nameAndValue(spec, '--secret', command, env, true), mode: 'env' });
  for (const spec of p.lists['secret-file'] ?? []) add({ ...nameAndValue(spec, '--secret-file', command, env, false), mode: 'file' });
  for (const spec of p.lists.broker ?? []) {
    const eq = spec.indexOf('=');
    if (eq < 1) throw new UsageError(`${command}: --broker needs NAME=HOST[,HOST...], e.g. --broker GITHUB_TOKEN=api.github.com`);
    const name = spec.slice(0, eq);
    const hosts = spec.slice(eq + 1).split(',').map((h) => h.trim()).filter(Boolean);
    if (hosts.length === 0) throw new UsageError(`${command}: --broker ${name}= names no host`);
    add({ name, value: fromEnv(name, '--broker', command, env), mode: 'brokered', hosts });
  }
  return grants;
}

function nameAndValue(spec: string, flag: string, command: string, env: NodeJS.ProcessEnv, trim: boolean): { name: string; value: string } {
  const eq = spec.indexOf('=');
  if (eq < 0) return { name: spec, value: fromEnv(spec, flag, command, env) };
  const name = spec.slice(0, eq);
  const src = spec.slice(eq + 1);
  if (!src.startsWith('@') || src.length < 2) {
    throw new UsageError(`${command}: ${flag} ${name}=... takes @FILE (a value on the command line would be visible to every process of this machine)`);
  }
  let value: string;
  try {
    value = fs.readFileSync(src.slice(1), 'utf8');
  } catch (e) {
    throw new UsageError(`${command}: ${flag} ${name}: cannot read ${src.slice(1)}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  return { name, value: trim ? value.replace(/\r?\n$/, '') : value };
}

function fromEnv(name: string, flag: string, command: string, env: NodeJS.ProcessEnv): string {
  const v = env[name];
  if (v === undefined || v === '') throw new UsageError(`${command}: ${flag} ${name}: the variable ${name} is not set in this shell (export it, or use ${name}=@FILE)`);
  return v;
}

/** Grants each to SESSIONID; reports by name only. */
export async function grantAll(client: RuntimeClient, sessionId: string, grants: GrantRequest[], io: Io): Promise<void> {
  for (const g of grants) {
    const r = await client.call('secret.grant', { sessionId, ...g });
    io.err(`airlock: granted ${r.name} (${r.mode}${r.hosts ? ` for ${r.hosts.join(', ')}` : ''}${r.path ? ` at ${r.path}` : ''}) until ${r.expiresAt}\n`);
  }
}

export const SECRET_USAGE = `usage: airlock secret grant SESSION NAME [--mode env|file|brokered] [--host HOST]... [--from-file FILE] [--ttl SECONDS]
       airlock secret revoke SESSION NAME
       airlock secret list SESSION

grant: gives the live session SESSION the secret NAME, its value taken from this shell's
variable NAME (or FILE), for SECONDS (default 3600). Modes: env (a variable of processes
started from now on), file (/run/airlock/secrets/NAME inside), brokered (the sandbox sees a
placeholder; the proxy sends the value in headers to --host hosts only).
revoke: ends the lease at once (file removed, placeholder refused from then on).
list: names, modes, hosts and expiry of the live leases (never values).
`;

export async function secretCommand(argv: string[], io: Io): Promise<number> {
  const p = parseFlags(argv, { values: ['mode', 'from-file', 'ttl'], lists: ['host'] }, 'secret');
  if (p.help || p.rest.length === 0) {
    io.out(SECRET_USAGE);
    return p.help ? 0 : 2;
  }
  const [verb, sessionId, name, ...extra] = p.rest;
  if (!sessionId) throw new UsageError(`secret ${verb}: give a session id ('airlock sessions' lists them)`);
  if (extra.length) throw new UsageError(`secret: unexpected argument ${JSON.stringify(extra[0])}`);
  const by = `airlock secret (uid ${process.getuid?.() ?? '?'})`;
  const client = await connect();
  try {
    if (verb === 'list') {
      const { secrets } = await client.call('secret.list', { sessionId });
      if (secrets.length === 0) io.out(`session ${sessionId} has no live secrets\n`);
      for (const s of secrets) io.out(`${s.name.padEnd(24)} ${s.mode.padEnd(9)} until ${s.expiresAt}${s.hosts ? `  hosts ${s.hosts.join(', ')}` : ''}${s.mode === 'brokered' ? `  used ${s.uses}x` : ''}\n`);
      return 0;
    }
    if (!name) throw new UsageError(`secret ${verb}: give the secret's NAME`);
    if (verb === 'revoke') {
      await client.call('secret.revoke', { sessionId, name, by });
      io.out(`revoked ${name} in session ${sessionId}\n`);
      return 0;
    }
    if (verb !== 'grant') throw new UsageError(`secret: unknown action ${JSON.stringify(verb)} (grant, revoke, list)`);
    const mode = (p.values.mode ?? 'env') as SecretMode;
    if (!['env', 'file', 'brokered'].includes(mode)) throw new UsageError(`secret grant: --mode must be env, file or brokered`);
    const { value } = p.values['from-file'] ? nameAndValue(`${name}=@${p.values['from-file']}`, '--from-file', 'secret grant', process.env, mode !== 'file') : { value: fromEnv(name, 'NAME', 'secret grant', process.env) };
    const hosts = p.lists.host;
    const r = await client.call('secret.grant', { sessionId, name, value, mode, ...(hosts?.length ? { hosts } : {}), ...(p.values.ttl ? { ttlSeconds: positiveInt(p.values.ttl, 'ttl', 'secret grant') } : {}), by });
    io.out(`granted ${r.name} (${r.mode}) to session ${sessionId} until ${r.expiresAt}\n`);
    return 0;
  } finally {
    client.close();
  }
}
