/**
 * What each MCP tool does. Every one runs *inside* the sandbox (through the runtime's
 * `exec`, or the session's REPL process), never on the host: masks, read-only paths,
 * symlinks and the network behave exactly as in the sandbox's terminal. Results are
 * the runtime's, so they are capped and redacted before they get here.
 */
import type { RuntimeClient } from '../client/client';
import type { ExecResult } from '../protocol';
import { PythonRepl } from './python';

export interface ToolText {
  text: string;
  isError: boolean;
  /**
   * The same result as data. Some clients show only this when it is present (VS Code
   * 1.139 gives the model the structured content and drops the text), so it carries
   * everything the text does: output included.
   */
  structured?: Record<string, unknown>;
}

export interface ToolContext {
  client: RuntimeClient;
  sessionId: string;
  /** Cap of each output stream of a result (bytes). */
  maxOutputBytes: number;
  repl: PythonRepl;
}

const MAX_TIMEOUT_S = 3600;

async function run(ctx: ToolContext, argv: string[], opts: { cwd?: string; stdin?: string; timeoutSeconds?: number; maxOutputBytes?: number } = {}): Promise<ExecResult> {
  return ctx.client.call('exec', {
    sessionId: ctx.sessionId,
    argv,
    ...(opts.cwd ? { cwd: opts.cwd } : {}),
    ...(opts.stdin !== undefined ? { stdin: opts.stdin } : {}),
    timeoutMs: Math.min(opts.timeoutSeconds ?? 60, MAX_TIMEOUT_S) * 1000,
    maxOutputBytes: opts.maxOutputBytes ?? ctx.maxOutputBytes,
  });
}

function describeExit(r: ExecResult): string {
  if (r.timedOut) return `timed out and was killed (SIGKILL)`;
  return r.signal ? `killed by ${r.signal}` : `exit code ${r.exitCode}`;
}

export async function execTool(ctx: ToolContext, a: { command: string | string[]; cwd?: string; timeoutSeconds?: number; stdin?: string }): Promise<ToolText> {
  // A string is a shell command line (bash, as an agent expects); an array runs as is.
  const argv = typeof a.command === 'string' ? ['bash', '-c', a.command] : a.command;
  if (argv.length === 0) return { text: 'command is empty: give a shell command line or a non-empty argv array', isError: true };
  const r = await run(ctx, argv, { cwd: a.cwd, stdin: a.stdin, timeoutSeconds: a.timeoutSeconds });
  const parts = [`[${describeExit(r)}]`];
  if (r.stdout) parts.push(r.stdout);
  if (r.stderr) parts.push(`[stderr]\n${r.stderr}`);
  return {
    text: parts.join('\n'),
    isError: r.timedOut,
    structured: { exitCode: r.exitCode, signal: r.signal, stdout: r.stdout, stderr: r.stderr, timedOut: r.timedOut, truncated: r.truncated, omittedBytes: r.omittedBytes, ...(r.fullOutput ? { fullOutput: r.fullOutput } : {}), durationMs: r.durationMs },
  };
}

/** Reads up to LIMIT bytes from OFFSET; says how big the file is and how to read on. */
export async function readFileTool(ctx: ToolContext, a: { path: string; offset?: number; limit?: number }): Promise<ToolText> {
  const offset = a.offset ?? 0;
  const limit = Math.min(a.limit ?? ctx.maxOutputBytes, ctx.maxOutputBytes);
  const script = 'f=$1; [ -f "$f" ] || { [ -e "$f" ] && echo "$f is not a regular file" >&2 || echo "$f: no such file" >&2; exit 2; }; ' +
    'stat -c %s -- "$f" >&2 && tail -c +"$2" -- "$f" | head -c "$3"';
  const r = await run(ctx, ['sh', '-c', script, 'read_file', a.path, String(offset + 1), String(limit)], { maxOutputBytes: limit });
  if (r.exitCode !== 0) return { text: r.stderr.trim() || `cannot read ${a.path} (${describeExit(r)})`, isError: true };
  const size = Number(r.stderr.trim().split('\n').pop());
  const shown = Buffer.byteLength(r.stdout);
  const more = offset + shown < size ? `\n[airlock: ${a.path} is ${size} bytes; this is bytes ${offset}–${offset + shown}; read on with offset ${offset + shown}]` : '';
  if (r.stdout.includes('\u0000')) return { text: `${a.path} is a binary file of ${size} bytes`, isError: false, structured: { size, binary: true } };
  return { text: r.stdout + more, isError: false, structured: { size, offset, bytes: shown, content: r.stdout } };
}

export async function writeFileTool(ctx: ToolContext, a: { path: string; content: string; append?: boolean }): Promise<ToolText> {
  const script = `mkdir -p -- "$(dirname -- "$1")" && cat ${a.append ? '>>' : '>'} "$1"`;
  const r = await run(ctx, ['sh', '-c', script, 'write_file', a.path], { stdin: a.content });
  if (r.exitCode !== 0) return { text: `cannot write ${a.path}: ${r.stderr.trim() || describeExit(r)}`, isError: true };
  return { text: `${a.append ? 'appended' : 'wrote'} ${Buffer.byteLength(a.content)} bytes to ${a.path}`, isError: false };
}

export async function listDirTool(ctx: ToolContext, a: { path?: string }): Promise<ToolText> {
  const dir = a.path ?? '.';
  const r = await run(ctx, ['find', dir, '-mindepth', '1', '-maxdepth', '1', '-printf', '%y\t%s\t%f\n']);
  if (r.exitCode !== 0) return { text: r.stderr.trim() || `cannot list ${dir}`, isError: true };
  const rows = r.stdout.split('\n').filter(Boolean).map((l) => l.split('\t')).sort((x, y) => (x[2] ?? '').localeCompare(y[2] ?? ''));
  const text = rows.map(([t, size, name]) => (t === 'd' ? `dir   ${''.padStart(10)}  ${name}/` : `${t === 'l' ? 'link' : 'file'}  ${size!.padStart(10)}  ${name}`)).join('\n');
  return { text: text || `${dir} is empty`, isError: false, structured: { entries: rows.map(([t, size, name]) => ({ name, type: t === 'd' ? 'dir' : t === 'l' ? 'link' : 'file', size: Number(size) })) } };
}

export async function searchTool(ctx: ToolContext, a: { pattern: string; path?: string; regex?: boolean; ignoreCase?: boolean; maxResults?: number }): Promise<ToolText> {
  const max = Math.min(a.maxResults ?? 200, 2000);
  const argv = ['grep', '-rnI', '--exclude-dir=.git', '--exclude-dir=node_modules', a.regex ? '-E' : '-F', ...(a.ignoreCase ? ['-i'] : []), '-e', a.pattern, '--', a.path ?? '.'];
  const r = await run(ctx, ['sh', '-c', '"$@" | head -n "$0"', String(max + 1), ...argv]);
  const lines = r.stdout.split('\n').filter(Boolean);
  if (lines.length === 0) return { text: r.stderr.trim() ? r.stderr.trim() : `no match for ${JSON.stringify(a.pattern)}`, isError: Boolean(r.stderr.trim()) };
  const more = lines.length > max ? `\n[airlock: more than ${max} matches; narrow the pattern or the path]` : '';
  return { text: lines.slice(0, max).join('\n') + more, isError: false, structured: { matches: lines.slice(0, max), more: lines.length > max } };
}

export async function pythonTool(ctx: ToolContext, a: { code: string; timeoutSeconds?: number }): Promise<ToolText> {
  let r;
  try {
    r = await ctx.repl.run(a.code, Math.min(a.timeoutSeconds ?? 60, MAX_TIMEOUT_S) * 1000);
  } catch (e) {
    const msg = (e as Error).message;
    return { text: /not found: python3/.test(msg) ? 'python3 is not installed in the sandbox (it uses the host\'s /usr read-only)' : `the Python REPL could not start: ${msg}`, isError: true };
  }
  const parts: string[] = [];
  if (r.stdout) parts.push(r.stdout.replace(/\n$/, ''));
  if (r.value !== null) parts.push(r.value);
  if (r.stderr) parts.push(`[stderr]\n${r.stderr.replace(/\n$/, '')}`);
  return { text: parts.join('\n') || '(no output)', isError: !r.ok, structured: { ok: r.ok, timedOut: r.timedOut, stdout: r.stdout, value: r.value, stderr: r.stderr } };
}

export async function sessionInfoTool(ctx: ToolContext): Promise<ToolText> {
  const s = await ctx.client.call('session.get', { sessionId: ctx.sessionId });
  const net = await ctx.client.call('network.rules', { sessionId: ctx.sessionId });
  const { secrets } = await ctx.client.call('secret.list', { sessionId: ctx.sessionId });
  const allowed = net.rules.filter((r) => r.effect === 'allow').map((r) => `${r.rule} (${r.source}${r.expiresAt ? `, until ${r.expiresAt}` : ''})`);
  const denied = net.rules.filter((r) => r.effect === 'deny').map((r) => r.rule);
  const lines = [
    `You run inside an Airlock sandbox (session ${s.sessionId}, driver ${s.driver}), workspace ${s.workspace}.`,
    `It ends in ${s.lifetimeLeft} s. No host home, no host environment, no sockets of the host.`,
    `Network: ${net.mode === 'none' ? 'none at all' : `only through Airlock's proxy; ${net.allowAll ? 'every public host' : 'default deny'}.`}`,
    `Allowed hosts: ${allowed.length ? allowed.join('; ') : 'none'}`,
    ...(denied.length ? [`Denied: ${denied.join(', ')}`] : []),
    `Secrets granted: ${secrets.length ? secrets.map((x) => `${x.name} (${x.mode}${x.hosts ? ` for ${x.hosts.join(', ')}` : ''}, until ${x.expiresAt})`).join('; ') : 'none'}`,
    'Need another host or a secret? Call request_access with a reason: a person decides.',
  ];
  return {
    text: lines.join('\n'),
    isError: false,
    structured: { summary: lines.join('\n'), sessionId: s.sessionId, workspace: s.workspace, lifetimeLeft: s.lifetimeLeft, network: { mode: net.mode, allowAll: net.allowAll, rules: net.rules }, secrets, limits: s.limits },
  };
}
