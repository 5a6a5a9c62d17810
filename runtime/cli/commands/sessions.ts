/** `airlock sessions`, `airlock attach ID`, `airlock kill ID`: clients of the daemon. */
import { RuntimeClient } from '../../client/client';
import { ErrorCode, ProcessInfo, RpcError, SessionInfo } from '../../protocol';
import { signalNumber } from '../../sessions/process';
import { parseFlags, UsageError } from '../args';
import { exitStatus, runForeground } from '../foreground';
import type { Io } from '../io';

export const SESSIONS_USAGE = `usage: airlock sessions [--json]

Lists the live sandbox sessions of the running daemon: id, age, lifetime left,
workspace and processes.
`;
export const ATTACH_USAGE = `usage: airlock attach ID

Brings a session's terminal back to this terminal: ID is a session id (its newest
running terminal process) or a process id (SESSION.N). Recent output is replayed
first. Closing this terminal detaches again.
`;
export const KILL_USAGE = `usage: airlock kill ID [--reason TEXT]

Ends a session: every process in it dies, and the audit log records the reason.
`;

/** The daemon, if one runs: these commands never start one. */
export async function connect(): Promise<RuntimeClient> {
  try {
    return await RuntimeClient.connect();
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ECONNREFUSED') throw new UsageError("no Airlock daemon is running, so there are no sessions ('airlock shell' or 'airlock serve' starts one)");
    throw e;
  }
}

function age(iso: string): string {
  const s = Math.round((Date.now() - Date.parse(iso)) / 1000);
  return s < 120 ? `${s}s` : s < 7200 ? `${Math.round(s / 60)}m` : `${Math.round(s / 3600)}h`;
}

export async function sessionsCommand(argv: string[], io: Io): Promise<number> {
  const p = parseFlags(argv, { booleans: ['json'] }, 'sessions');
  if (p.help) {
    io.out(SESSIONS_USAGE);
    return 0;
  }
  const client = await connect();
  try {
    const { sessions } = await client.call('session.list', {});
    if (p.flags.json) {
      io.out(JSON.stringify(sessions, null, 2) + '\n');
      return 0;
    }
    if (!sessions.length) {
      io.out('no live sessions\n');
      return 0;
    }
    io.out('SESSION           AGE   LEFT    PROCESSES  WORKSPACE\n');
    for (const s of sessions) {
      const running = s.processes.filter((x) => x.running);
      const procs = running.length ? running.map((x) => x.argv[0].split('/').pop()).join(',') : '-';
      io.out(`${s.sessionId}  ${age(s.startedAt).padEnd(5)} ${`${Math.round(s.lifetimeLeft / 60)}m`.padEnd(7)} ${procs.padEnd(10)} ${s.workspace}\n`);
    }
    return 0;
  } finally {
    client.close();
  }
}

function pickProcess(s: SessionInfo): ProcessInfo {
  const terminals = s.processes.filter((x) => x.running && x.pty);
  const p = terminals[terminals.length - 1] ?? s.processes.filter((x) => x.running).pop();
  if (!p) throw new UsageError(`attach: session ${s.sessionId} has no running process`);
  return p;
}

export async function attachCommand(argv: string[], io: Io): Promise<number> {
  const p = parseFlags(argv, {}, 'attach');
  if (p.help) {
    io.out(ATTACH_USAGE);
    return 0;
  }
  if (p.rest.length !== 1) throw new UsageError("attach: give one session or process id ('airlock sessions' lists them)");
  const id = p.rest[0];
  const client = await connect();
  try {
    const sessionId = id.split('.')[0];
    const session = await client.call('session.get', { sessionId });
    const proc = id.includes('.') ? session.processes.find((x) => x.processId === id) : pickProcess(session);
    if (!proc) throw new RpcError(ErrorCode.ProcessNotFound, `process ${id} not found in session ${sessionId}`);
    const r = await runForeground({ client, processId: proc.processId, pty: proc.pty && process.stdin.isTTY === true });
    if (!r.exit) return 129;
    for (const w of r.exit.warnings ?? []) io.err(`airlock: warning: ${w}\n`);
    return exitStatus(r.exit, signalNumber);
  } finally {
    client.close();
  }
}

export async function killCommand(argv: string[], io: Io): Promise<number> {
  const p = parseFlags(argv, { values: ['reason'] }, 'kill');
  if (p.help) {
    io.out(KILL_USAGE);
    return 0;
  }
  if (p.rest.length !== 1) throw new UsageError("kill: give one session id ('airlock sessions' lists them)");
  const client = await connect();
  try {
    const r = await client.call('session.kill', { sessionId: p.rest[0], reason: p.values.reason ?? 'killed with airlock kill' });
    for (const w of r.warnings) io.err(`airlock: warning: ${w}\n`);
    io.out(`session ${p.rest[0]} ended\n`);
    return 0;
  } finally {
    client.close();
  }
}
