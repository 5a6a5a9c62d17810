/**
 * `airlock run` and `airlock shell`: one session, one foreground process wired to
 * this terminal (a PTY when stdin is a terminal, pipes otherwise). The session ends
 * when the process exits, so nothing it started outlives it.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { RuntimeClient } from '../../client/client';
import { connectOrStart } from '../../client/daemon';
import { loadPolicyFile, PolicyDocument } from '../../policy/policy';
import { ErrorCode, RpcError } from '../../protocol';
import { signalNumber } from '../../sessions/process';
import { Parsed, parseFlags, positiveInt, UsageError } from '../args';
import { policyFor } from '../context';
import { exitStatus, runForeground } from '../foreground';
import type { Io } from '../io';
import { grantAll, GrantRequest, SECRET_FLAGS, SECRET_SPEC, secretGrants } from './secret';

const NETWORK_FLAGS = `network (the sandbox's only way out is Airlock's egress proxy, default deny; every
attempt is audited; the package registries your npm, pip, cargo and Go use are allowed):
  --allow HOST[:PORT] also allow HOST: example.com, *.example.com (subdomains), 10.0.0.0/8,
                      127.0.0.1:8080 (loopback and private addresses need such an IP rule)
  --deny HOST         never allow HOST (deny wins over allow)
  --allow-all-network allow every public host (flagged in the audit log)
  --no-registries     do not allow the package registries by default
  --no-network        no proxy at all: the sandbox has only its own loopback
`;

export const RUN_USAGE = `usage: airlock run [--workspace DIR] [--policy FILE] [--timeout SECONDS] [--audit-json FILE]
                   [--allow HOST[:PORT]]... [--deny HOST]... [--allow-all-network] [--no-network]
                   [--secret NAME[=@FILE]]... [--broker NAME=HOST[,HOST]]... [--secret-ttl S] -- CMD [ARGS...]

Runs CMD in a new sandbox session rooted at DIR (default: the current directory) and
exits with CMD's exit code (128+N when a signal N killed it, 127 when CMD does not
exist, 124 when --timeout ended it). Uses a terminal when stdin and stdout are
terminals, pipes otherwise (so \`airlock run -- cmd > file\` writes plain output).

  --workspace DIR     the folder the sandbox may read and write (bound at the same path)
  --policy FILE       a policy file (JSON, see airlock.schema.json) on top of the defaults
                      and DIR/.vscode/airlock.json
  --timeout SECONDS   end the session after SECONDS
  --audit-json FILE   append this session's audit records as JSON Lines to FILE at the end
${NETWORK_FLAGS}
${SECRET_FLAGS}`;

export const SHELL_USAGE = `usage: airlock shell [--workspace DIR] [--policy FILE] [--allow HOST[:PORT]]... [--deny HOST]...
                     [--allow-all-network] [--no-network]

Opens an interactive bash inside a new sandbox session rooted at DIR (default: the
current directory). Job control, Ctrl-C, Ctrl-Z and window resizing work as usual.
The session ends when the shell exits.

${NETWORK_FLAGS}
${SECRET_FLAGS}`;


const NETWORK_SPEC = { lists: ['allow', 'deny', ...SECRET_SPEC.lists], booleans: ['allow-all-network', 'no-network', 'no-registries'] };

/** The network part of a policy document from the flags (validated with the policy). */
function networkDoc(p: Parsed, io: Io): PolicyDocument['network'] | undefined {
  const n: NonNullable<PolicyDocument['network']> = {};
  if (p.lists.allow?.length) n.allow = p.lists.allow;
  if (p.lists.deny?.length) n.deny = p.lists.deny;
  if (p.flags['allow-all-network']) {
    n.allowAll = true;
    io.err('airlock: warning: --allow-all-network: this session may reach any public host; the audit log flags it\n');
  }
  if (p.flags['no-registries']) n.registries = false;
  if (p.flags['no-network']) n.mode = 'none';
  return Object.keys(n).length ? n : undefined;
}

export interface RunOptions {
  workspace: string;
  policyFile?: string;
  timeout?: number;
  auditJson?: string;
  network?: PolicyDocument['network'];
  argv?: string[];
  shell?: boolean;
  pty: boolean;
  secrets: GrantRequest[];
  /** The session ends with this client even when it runs a shell (VS Code's agent terminal). */
  ownSession?: boolean;
  label?: string;
  /** Variables for the foreground process only, on top of the session's environment. */
  env?: Record<string, string>;
  /** Its working directory (default: the workspace). */
  cwd?: string;
  /** Host directories shown read-only at the same path (policy filesystem.hostReadOnly). */
  hostReadOnly?: string[];
  /** Runs once the session exists, before the process starts; a failure ends the session. */
  prepare?: (client: RuntimeClient, sessionId: string) => Promise<void>;
}

export async function runCommand(argv: string[], io: Io): Promise<number> {
  const p = parseFlags(argv, { values: ['workspace', 'policy', 'timeout', 'audit-json', ...SECRET_SPEC.values], ...NETWORK_SPEC, stopAtPositional: true }, 'run');
  if (p.help) {
    io.out(RUN_USAGE);
    return 0;
  }
  if (p.rest.length === 0) throw new UsageError("run: no command given: 'airlock run -- CMD [ARGS...]'");
  const pty = process.stdin.isTTY === true && process.stdout.isTTY === true;
  return runInSession(
    { workspace: p.values.workspace ?? process.cwd(), policyFile: p.values.policy, timeout: positiveInt(p.values.timeout, 'timeout', 'run'), auditJson: p.values['audit-json'], network: networkDoc(p, io), argv: p.rest, pty, secrets: secretGrants(p, 'run') },
    io,
  );
}

export async function shellCommand(argv: string[], io: Io): Promise<number> {
  const p = parseFlags(argv, { values: ['workspace', 'policy', ...SECRET_SPEC.values], ...NETWORK_SPEC }, 'shell');
  if (p.help) {
    io.out(SHELL_USAGE);
    return 0;
  }
  if (p.rest.length) throw new UsageError(`shell: unexpected argument ${JSON.stringify(p.rest[0])} (to run a command use 'airlock run -- CMD')`);
  if (!process.stdin.isTTY) throw new UsageError("shell: stdin is not a terminal: use 'airlock run -- CMD' with pipes");
  return runInSession({ workspace: p.values.workspace ?? process.cwd(), policyFile: p.values.policy, network: networkDoc(p, io), shell: true, pty: true, secrets: secretGrants(p, 'shell') }, io);
}

/** The caller's variables a session may copy: terminal, language, time zone, policy env.pass. */
function offeredEnv(pass: string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (v !== undefined && (pass.includes(k) || /^(TERM|COLORTERM|LANG|LANGUAGE|TZ|LC_[A-Z_]+)$/.test(k))) out[k] = v;
  }
  return out;
}

export async function runInSession(o: RunOptions, io: Io): Promise<number> {
  const workspace = path.resolve(o.workspace);
  const fileDoc: PolicyDocument = o.policyFile ? loadPolicyFile(o.policyFile) : {};
  const doc: PolicyDocument = { ...fileDoc };
  // A shell's session outlives its terminal (attach brings it back), unless told otherwise.
  const owned = !o.shell || o.ownSession === true;
  if (o.hostReadOnly?.length) doc.filesystem = { ...fileDoc.filesystem, hostReadOnly: [...new Set([...(fileDoc.filesystem?.hostReadOnly ?? []), ...o.hostReadOnly])] };
  if (o.timeout) doc.limits = { ...fileDoc.limits, lifetimeSeconds: o.timeout };
  // Flags extend the file's lists (resolvePolicy merges network documents the same way).
  if (o.network) doc.network = { ...fileDoc.network, ...o.network, allow: [...(fileDoc.network?.allow ?? []), ...(o.network.allow ?? [])], deny: [...(fileDoc.network?.deny ?? []), ...(o.network.deny ?? [])] };
  // Resolved here too: errors in the workspace's policy file surface before a daemon
  // starts, and env.pass tells which of our variables to offer.
  const policy = policyFor({ workspace, overrides: doc });
  const client = await connectOrStart();
  try {
    // An owned session ends when this client dies (the daemon ends it).
    const { sessionId } = await client.call('session.create', { workspace, policy: doc, env: offeredEnv(policy.env.pass), endOnDisconnect: owned, ...(o.label ? { label: o.label } : {}) });
    if (!owned) io.err(`airlock: session ${sessionId}: closing this terminal leaves it running; 'airlock attach ${sessionId}' brings it back\n`);
    try {
      await grantAll(client, sessionId, o.secrets, io);
    } catch (e) {
      await client.call('session.kill', { sessionId, reason: 'a secret could not be granted' }).catch(() => {});
      throw e;
    }
    try {
      await o.prepare?.(client, sessionId);
    } catch (e) {
      await client.call('session.kill', { sessionId, reason: 'it could not be prepared' }).catch(() => {});
      throw e;
    }
    let started: { processId: string };
    try {
      started = await client.call('process.start', { sessionId, argv: o.argv, shell: o.shell || undefined, pty: o.pty, cols: process.stdout.columns, rows: process.stdout.rows, endsSession: true, ...(o.env ? { env: o.env } : {}), ...(o.cwd ? { cwd: o.cwd } : {}) });
    } catch (e) {
      await client.call('session.kill', { sessionId, reason: 'its command could not start' }).catch(() => {});
      if (e instanceof RpcError && e.code === ErrorCode.SpawnFailed) {
        io.err(`airlock: ${e.message}\n`);
        return e.data?.notFound ? 127 : 126;
      }
      throw e;
    }
    // A terminal that closes under `airlock shell` detaches: the session lives on.
    const stop = (sig: NodeJS.Signals): void => void client.call('session.kill', { sessionId, reason: `airlock received ${sig}` }).catch(() => {});
    if (owned) process.on('SIGTERM', stop);
    const r = await runForeground({ client, processId: started.processId, pty: o.pty });
    process.off('SIGTERM', stop);
    if (r.detached && !owned) return 129;
    // The terminal closed (SIGHUP): an owned session ends now, with the reason on record.
    if (r.detached) await client.call('session.kill', { sessionId, reason: 'its terminal closed' }).catch(() => {});
    for (const w of r.exit?.warnings ?? []) io.err(`airlock: warning: ${w}\n`);
    if (o.auditJson) {
      const { records } = await client.call('audit.query', { sessionId, limit: 100000 });
      // Appended: runs that name the same file keep every session's records (an export
      // that silently dropped the last run's records would be a poor audit trail).
      fs.appendFileSync(o.auditJson, records.map((x) => JSON.stringify(x) + '\n').join(''), { mode: 0o600 });
    }
    if (!r.exit) return 129;
    if (o.timeout && /session ended: lifetime/.test(r.exit.reason ?? '')) {
      io.err(`airlock: timed out after ${o.timeout} s: the session and everything in it were killed\n`);
      return 124;
    }
    if (r.exit.reason) io.err(`airlock: ${r.exit.reason}\n`);
    return exitStatus(r.exit, signalNumber);
  } finally {
    client.close();
  }
}
