/**
 * `airlock requests`, `airlock approve`, `airlock deny`: a person's side of the access
 * requests an agent makes (a host to reach, a secret). Only a person decides, here or
 * in the VS Code panel; the agent's MCP server has no way to.
 *
 * A request's reason is the agent's text: it is printed with its control characters
 * removed, so it cannot move the cursor, rewrite this terminal's earlier lines or hide
 * behind bidirectional overrides. A secret's value comes from this shell's variable
 * named like the secret (or a file), never from the command line, where every process
 * of the machine could read it, and never from the request.
 */
import * as fs from 'node:fs';
import type { AccessRequest, Api, SecretMode } from '../../protocol';
import { parseFlags, positiveInt, UsageError } from '../args';
import type { Io } from '../io';
import { connect } from './sessions';

export const REQUESTS_USAGE = `usage: airlock requests [SESSION] [--all] [--json]

Lists the access requests agents made (a host to reach, a secret) that wait for a
person: id, session, kind, what is asked, for how long, how long ago, and the
agent's reason (its words, not a fact). They lapse after 15 minutes.
Decide with 'airlock approve ID' or 'airlock deny ID'.

  --all    also the approved, denied and expired ones
  --json   the requests as JSON
`;

export const APPROVE_USAGE = `usage: airlock approve REQUEST [--ttl SECONDS] [--mode env|file|brokered] [--host HOST]... [--from-file FILE]

Approves an agent's access request. A host request lets the session reach the host for
SECONDS (default: what the agent asked). A secret request grants the secret NAME it
names, its value taken from this shell's variable NAME (or FILE), never from the
command line:
  --mode     env (a variable of processes started from now on; the default), file
             (/run/airlock/secrets/NAME inside), brokered (the sandbox sees a
             placeholder; the proxy sends the value in headers to --host hosts only)
  --host     brokered: where the value may be sent (repeatable)
  --from-file FILE  the value is the contents of FILE
`;

export const DENY_USAGE = `usage: airlock deny REQUEST [--reason TEXT]

Denies an agent's access request; the agent is told, with TEXT if given.
`;

const uid = (): string => String(process.getuid?.() ?? '?');

export async function requestsCommand(argv: string[], io: Io): Promise<number> {
  const p = parseFlags(argv, { booleans: ['all', 'json'] }, 'requests');
  if (p.help) {
    io.out(REQUESTS_USAGE);
    return 0;
  }
  if (p.rest.length > 1) throw new UsageError(`requests: unexpected argument ${JSON.stringify(p.rest[1])} (give at most one session id)`);
  const sessionId = p.rest[0];
  const client = await connect();
  try {
    const { requests } = await client.call('access.list', { ...(sessionId ? { sessionId } : {}), ...(p.flags.all ? {} : { state: 'pending' as const }) });
    if (p.flags.json) {
      // Valid JSON still, with nothing a terminal would act on left raw in the agent's text.
      io.out(JSON.stringify(requests, null, 2).replace(INVISIBLE_G, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`) + '\n');
      return 0;
    }
    if (requests.length === 0) {
      io.out(`no ${p.flags.all ? '' : 'pending '}access requests${sessionId ? ` in session ${sessionId}` : ''}\n`);
      return 0;
    }
    io.out(`REQUEST           SESSION           KIND    TARGET                          TTL     AGE   ${p.flags.all ? 'STATE     ' : ''}REASON\n`);
    for (const r of requests) io.out(requestLine(r, p.flags.all) + '\n');
    return 0;
  } finally {
    client.close();
  }
}

export async function approveCommand(argv: string[], io: Io): Promise<number> {
  const p = parseFlags(argv, { values: ['ttl', 'mode', 'from-file'], lists: ['host'] }, 'approve');
  if (p.help) {
    io.out(APPROVE_USAGE);
    return 0;
  }
  const requestId = oneRequest(p.rest, 'approve');
  const ttlSeconds = positiveInt(p.values.ttl, 'ttl', 'approve');
  const by = `airlock approve (uid ${uid()})`;
  const client = await connect();
  try {
    const found = (await client.call('access.list', {})).requests.find((r) => r.requestId === requestId);
    let secret: NonNullable<Api['access.decide'][0]['secret']> | undefined;
    if (found?.kind === 'secret' && found.state === 'pending') {
      const mode = (p.values.mode ?? 'env') as SecretMode;
      if (!['env', 'file', 'brokered'].includes(mode)) throw new UsageError('approve: --mode must be env, file or brokered');
      const value = p.values['from-file'] ? fromFile(p.values['from-file'], mode !== 'file') : fromEnv(found.target);
      secret = { value, mode, ...(p.lists.host?.length ? { hosts: p.lists.host } : {}) };
    } else if (found && (p.values.mode || p.values['from-file'] || p.lists.host)) {
      throw new UsageError(`approve: request ${requestId} asks for a host (${found.target}); --mode, --host and --from-file are for secret requests`);
    }
    // An unknown or already decided request: the daemon's answer says which.
    const r = await client.call('access.decide', { requestId, approve: true, by, ...(ttlSeconds ? { ttlSeconds } : {}), ...(secret ? { secret } : {}) });
    io.out(`approved ${r.requestId} (${r.kind} ${r.target}, session ${r.sessionId}) until ${r.expiresAt}\n`);
    return 0;
  } finally {
    client.close();
  }
}

export async function denyCommand(argv: string[], io: Io): Promise<number> {
  const p = parseFlags(argv, { values: ['reason'] }, 'deny');
  if (p.help) {
    io.out(DENY_USAGE);
    return 0;
  }
  const requestId = oneRequest(p.rest, 'deny');
  const client = await connect();
  try {
    const r = await client.call('access.decide', { requestId, approve: false, by: `airlock deny (uid ${uid()})`, ...(p.values.reason ? { note: p.values.reason } : {}) });
    io.out(`denied ${r.requestId} (${r.kind} ${r.target}, session ${r.sessionId})\n`);
    return 0;
  } finally {
    client.close();
  }
}

function oneRequest(rest: string[], command: string): string {
  if (rest.length !== 1) throw new UsageError(`${command}: give one request id ('airlock requests' lists the pending ones)`);
  return rest[0];
}

function requestLine(r: AccessRequest, withState: boolean): string {
  const cols = [r.requestId.padEnd(16), r.sessionId.padEnd(16), r.kind.padEnd(6), printable(r.target).padEnd(30), `${r.requestedTtlSeconds}s`.padEnd(6), age(r.createdAt).padEnd(4)];
  if (withState) cols.push(r.state.padEnd(8));
  return cols.join('  ') + '  ' + printable(r.reason);
}

/**
 * TEXT without what a terminal would act on: C0 and C1 controls, DEL, and the
 * invisible bidirectional and line-breaking marks that reorder or hide text.
 * Whitespace controls become spaces so the line stays one line.
 */
export function printable(text: string): string {
  return text.replace(/[\t\n\r\v\f]/g, ' ').replace(/[\u0000-\u001f]/g, '').replace(INVISIBLE_G, '');
}

/** Controls JSON.stringify leaves raw: DEL, C1, bidirectional and zero-width marks, line separators. */
const INVISIBLE_G = /[\u007f-\u009f\u061c\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff]/g;

function age(iso: string): string {
  const s = Math.max(0, Math.round((Date.now() - Date.parse(iso)) / 1000));
  return s < 120 ? `${s}s` : s < 7200 ? `${Math.round(s / 60)}m` : `${Math.round(s / 3600)}h`;
}

function fromEnv(name: string): string {
  const v = process.env[name];
  if (v === undefined || v === '') throw new UsageError(`approve: the request asks for the secret ${name}, and the variable ${name} is not set in this shell (export it, or give --from-file FILE)`);
  return v;
}

function fromFile(file: string, trim: boolean): string {
  let value: string;
  try {
    value = fs.readFileSync(file, 'utf8');
  } catch (e) {
    throw new UsageError(`approve: --from-file: cannot read ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  // As `airlock secret grant`: one trailing newline dropped, except for a file secret.
  return trim ? value.replace(/\r?\n$/, '') : value;
}
