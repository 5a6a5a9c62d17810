/**
 * `airlock run` and `airlock shell`: one session, one foreground process wired to
 * this terminal (a PTY when stdin is a terminal, pipes otherwise). The session ends
 * when the process exits, so nothing it started outlives it.
 */
import * as fs from 'node:fs';
import { sessionRecords } from '../../audit';
import { PolicyDocument } from '../../policy/policy';
import { SandboxProcess, Session, SpawnError, signalNumber } from '../../sessions';
import { parseFlags, positiveInt, UsageError } from '../args';
import { defaultDriver, openAudit, policyFor } from '../context';
import type { Io } from '../io';

export const RUN_USAGE = `usage: airlock run [--workspace DIR] [--policy FILE] [--timeout SECONDS] [--audit-json FILE] -- CMD [ARGS...]

Runs CMD in a new sandbox session rooted at DIR (default: the current directory) and
exits with CMD's exit code (128+N when a signal N killed it, 127 when CMD does not
exist, 124 when --timeout ended it). Uses a terminal when stdin and stdout are
terminals, pipes otherwise (so \`airlock run -- cmd > file\` writes plain output).

  --workspace DIR     the folder the sandbox may read and write (bound at the same path)
  --policy FILE       a policy file (JSON, see airlock.schema.json) on top of the defaults
                      and DIR/.vscode/airlock.json
  --timeout SECONDS   end the session after SECONDS
  --audit-json FILE   write this session's audit records as JSON Lines to FILE at the end
`;

export const SHELL_USAGE = `usage: airlock shell [--workspace DIR] [--policy FILE]

Opens an interactive bash inside a new sandbox session rooted at DIR (default: the
current directory). Job control, Ctrl-C, Ctrl-Z and window resizing work as usual.
The session ends when the shell exits.
`;

interface RunOptions {
  workspace: string;
  policyFile?: string;
  timeout?: number;
  auditJson?: string;
  argv: string[];
  pty: boolean;
}

export async function runCommand(argv: string[], io: Io): Promise<number> {
  const p = parseFlags(argv, { values: ['workspace', 'policy', 'timeout', 'audit-json'], stopAtPositional: true }, 'run');
  if (p.help) {
    io.out(RUN_USAGE);
    return 0;
  }
  if (p.rest.length === 0) throw new UsageError("run: no command given: 'airlock run -- CMD [ARGS...]'");
  return runInSession(
    { workspace: p.values.workspace ?? process.cwd(), policyFile: p.values.policy, timeout: positiveInt(p.values.timeout, 'timeout', 'run'), auditJson: p.values['audit-json'], argv: p.rest, pty: process.stdin.isTTY === true && process.stdout.isTTY === true },
    io,
  );
}

export async function shellCommand(argv: string[], io: Io): Promise<number> {
  const p = parseFlags(argv, { values: ['workspace', 'policy'] }, 'shell');
  if (p.help) {
    io.out(SHELL_USAGE);
    return 0;
  }
  if (p.rest.length) throw new UsageError(`shell: unexpected argument ${JSON.stringify(p.rest[0])} (to run a command use 'airlock run -- CMD')`);
  if (!process.stdin.isTTY) throw new UsageError("shell: stdin is not a terminal: use 'airlock run -- CMD' with pipes");
  return runInSession({ workspace: p.values.workspace ?? process.cwd(), policyFile: p.values.policy, argv: ['/bin/bash', '-i'], pty: true }, io);
}

async function runInSession(o: RunOptions, io: Io): Promise<number> {
  const overrides: PolicyDocument | undefined = o.timeout ? { limits: { lifetimeSeconds: o.timeout } } : undefined;
  const policy = policyFor({ workspace: o.workspace, policyFile: o.policyFile, overrides });
  const audit = openAudit();
  const session = await Session.create({ workspace: o.workspace, policy, driver: defaultDriver(), audit });
  const stop = (sig: NodeJS.Signals): void => void session.end('killed', `airlock received ${sig}`);
  process.on('SIGTERM', stop);
  process.on('SIGHUP', stop);
  let code: number;
  try {
    code = await runForeground(session, o, io);
  } finally {
    process.off('SIGTERM', stop);
    process.off('SIGHUP', stop);
  }
  const reason = session.endReason;
  if (reason === 'lifetime' && o.timeout) {
    io.err(`airlock: timed out after ${o.timeout} s: the session and everything in it were killed\n`);
    code = 124;
  } else if (reason && reason !== 'exit') {
    io.err(`airlock: session ended (${reason})\n`);
  }
  await session.end('exit');
  for (const w of session.warnings) io.err(`airlock: warning: ${w}\n`);
  if (o.auditJson) {
    const lines = sessionRecords(audit.file, session.id).map((r) => JSON.stringify(r) + '\n');
    fs.writeFileSync(o.auditJson, lines.join(''), { mode: 0o600 });
  }
  audit.close();
  return code;
}

async function runForeground(session: Session, o: RunOptions, io: Io): Promise<number> {
  const out = process.stdout;
  let proc: SandboxProcess;
  try {
    proc = await session.spawn({ argv: o.argv, pty: o.pty, cols: out.columns, rows: out.rows });
  } catch (e) {
    if (e instanceof SpawnError) {
      io.err(`airlock: ${e.message}\n`);
      return e.notFound ? 127 : 126;
    }
    throw e;
  }
  proc.manualAck = true;
  // Output is acknowledged once this terminal took it: a flood pauses the process
  // instead of filling this process's memory. When the reader goes away (`| head`),
  // the process gets SIGPIPE, as it would writing to that pipe itself.
  const closed = new Set<NodeJS.WriteStream>();
  const forward = (stream: NodeJS.WriteStream) => (d: Buffer): void => {
    if (closed.has(stream)) return proc.ack(d.length);
    stream.write(d, () => proc.ack(d.length));
  };
  for (const stream of [out, process.stderr]) {
    stream.on('error', () => {
      if (closed.has(stream)) return;
      closed.add(stream);
      proc.signal('SIGPIPE');
    });
  }
  proc.on('stdout', forward(out));
  proc.on('stderr', forward(process.stderr));
  const detach = o.pty ? attachTerminal(proc) : attachPipes(proc);
  const ended = new Promise<null>((r) => session.once('end', () => r(null)));
  const exit = await Promise.race([proc.exited, ended]);
  detach();
  if (!closed.has(out)) await new Promise<void>((r) => out.write('', () => r()));
  if (!exit) return proc.exitInfo?.code ?? 137;
  if (exit.signal) return 128 + signalNumber(exit.signal);
  return exit.code ?? 1;
}

function attachTerminal(proc: SandboxProcess): () => void {
  const stdin = process.stdin;
  stdin.setRawMode(true);
  const onData = (d: Buffer): void => void proc.write(d);
  const onResize = (): void => proc.resize(process.stdout.columns, process.stdout.rows);
  stdin.on('data', onData);
  process.stdout.on('resize', onResize);
  stdin.resume();
  return () => {
    stdin.off('data', onData);
    process.stdout.off('resize', onResize);
    stdin.setRawMode(false);
    stdin.pause();
  };
}

function attachPipes(proc: SandboxProcess): () => void {
  const stdin = process.stdin;
  const onData = (d: Buffer): void => {
    if (!proc.write(d)) {
      stdin.pause();
      proc.once('drain', () => stdin.resume());
    }
  };
  const onEnd = (): void => proc.end();
  // Ctrl-C at the caller's terminal reaches the sandboxed process group, as it would locally.
  const forward = (sig: NodeJS.Signals): void => proc.signal(sig);
  stdin.on('data', onData);
  stdin.on('end', onEnd);
  stdin.on('error', onEnd);
  process.on('SIGINT', forward);
  process.on('SIGQUIT', forward);
  return () => {
    stdin.off('data', onData);
    stdin.off('end', onEnd);
    process.off('SIGINT', forward);
    process.off('SIGQUIT', forward);
    stdin.pause();
    stdin.destroy();
  };
}
