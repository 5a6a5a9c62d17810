/**
 * `airlock agent-shell`: the executable behind VS Code's routed agent terminal. The
 * extension points `chat.tools.terminal.terminalProfile.linux` at a shim named `bash`
 * that runs this command, so VS Code starts it like bash, in its own PTY, with bash's
 * shell-integration arguments (VS Code 1.139, src/vs/platform/terminal/node/
 * terminalEnvironment.ts: `--init-file <app>/out/vs/workbench/contrib/terminal/common/
 * scripts/shellIntegration-bash.sh`, and VSCODE_INJECTION=1, VSCODE_NONCE, VSCODE_STABLE,
 * VSCODE_SHELL_LOGIN=1 for a login profile). It takes those arguments and opens a
 * sandboxed bash that runs VS Code's own script, so `run_in_terminal` gets the OSC 633
 * command boundaries it waits for, from inside the sandbox.
 *
 * Unlike `airlock shell`, the session is owned by this terminal: it ends when the shell
 * exits or the terminal closes, so agent terminals leave no sessions behind.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { RuntimeClient } from '../../client/client';
import { UsageError } from '../args';
import type { Io } from '../io';
import { runInSession, RunOptions } from './run';

export const AGENT_SHELL_USAGE = `usage: airlock agent-shell [--init-file FILE] [-l] [-i] [-c CMD [NAME [ARGS...]]]

The executable behind VS Code's agent terminal when the Airlock extension routes it
into the sandbox (setting chat.tools.terminal.terminalProfile.linux, pointing at a shim
named 'bash' that runs this). Takes bash's arguments and opens an interactive bash in a
new sandbox session rooted at the current directory ($AIRLOCK_WORKSPACE overrides),
wired to this terminal. The session ends when the shell exits or the terminal closes.

  --init-file FILE, --rcfile FILE
                 VS Code's shell-integration script: the sandbox's bash runs it instead
                 of Airlock's own integration. FILE's directory is shown read-only
                 inside at the same path; under a home directory (which stays hidden)
                 FILE is copied into the sandbox's /tmp instead.
  -l, --login, -i
                 accepted and ignored (VS Code's script does what a login shell would)
  -c CMD [NAME [ARGS...]]
                 run CMD in the sandbox, not interactively, and exit with its status

Of this process's environment only VSCODE_* (not VSCODE_ENV_*, VSCODE_GIT_*,
VSCODE_IPC_*, nor names with TOKEN, SECRET, PASSW, CREDENTIAL, AUTH or KEY),
TERM_PROGRAM, TERM_PROGRAM_VERSION, COLORTERM, TERM, LANG and GIT_PAGER (the agent's
terminal sets it to cat) reach the shell, besides what every session gets (LANG,
LC_*, TZ, the policy's env.pass).
`;

export interface BashArgs {
  initFile?: string;
  /** `-c`: the command string, then $0 and the positional parameters. */
  command?: string[];
  help?: boolean;
}

const UNDERSTOOD = "understood: --init-file FILE, --rcfile FILE, -l, --login, -i, -c CMD; see 'airlock agent-shell --help'";

/** Parses the arguments VS Code (or a person) gives bash. */
export function parseBashArgs(argv: string[]): BashArgs {
  const out: BashArgs = {};
  let wantsCommand = false;
  let i = 0;
  for (; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--') {
      i++;
      break;
    }
    if (a === '--help') out.help = true;
    else if (a === '--init-file' || a === '--rcfile') {
      if (i + 1 >= argv.length) throw new UsageError(`agent-shell: ${a} needs a FILE`);
      out.initFile = argv[++i];
    } else if (a === '--login') continue;
    else if (/^-[ilc]+$/.test(a)) wantsCommand ||= a.includes('c');
    else if (a.startsWith('-') && a !== '-') throw new UsageError(`agent-shell: unknown option ${a} (${UNDERSTOOD})`);
    else break;
  }
  // As in bash: after the options, the first word is -c's command (everything after it
  // is $0 and the positional parameters, dashes and all) or a script file.
  const rest = argv.slice(i);
  if (wantsCommand) {
    if (rest.length === 0) throw new UsageError('agent-shell: -c: option requires an argument');
    out.command = rest;
  } else if (rest.length) {
    throw new UsageError(`agent-shell: unexpected argument ${JSON.stringify(rest[0])}: only -c CMD runs a command (${UNDERSTOOD})`);
  }
  return out;
}

/**
 * VS Code's terminal variables. GIT_PAGER too: the agent's terminal tool sets it to
 * `cat` (toolTerminalCreator.ts) so `git diff` and `git log` do not wait in a pager.
 */
const PASSED = /^(VSCODE_[A-Z0-9_]+|TERM_PROGRAM|TERM_PROGRAM_VERSION|COLORTERM|TERM|LANG|GIT_PAGER)$/;
/**
 * VS Code variables that stay out although they match: VSCODE_ENV_REPLACE/PREPEND/APPEND
 * carry other variables (extensions' environment collections, e.g. values from a .env
 * file) that the integration script would export inside; VSCODE_GIT_* and VSCODE_IPC_*
 * name the host's git credential helper and VS Code's own sockets; and anything named
 * like a credential.
 */
const HELD_BACK = /^VSCODE_(ENV_|GIT_|IPC_)|TOKEN|SECRET|PASSW|CREDENTIAL|AUTH|KEY/;

/** This process's variables the sandboxed shell gets (on top of the session's). */
export function agentShellEnv(env: NodeJS.ProcessEnv): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(env)) {
    if (v !== undefined && PASSED.test(k) && !HELD_BACK.test(k)) out[k] = v;
  }
  return out;
}

/** Where the init file copied into a sandbox goes (the sandbox's own /tmp). */
const COPY_DIR = '/tmp/airlock-vscode';
/** VS Code's script is ~11 KB; a file far larger is not a shell-integration script. */
const MAX_INIT_FILE = 1024 * 1024;

interface InitFile {
  /** The path bash is given inside the sandbox. */
  inside: string;
  /** A host directory to show read-only at the same path. */
  bind?: string;
  /** The script's text, to copy in when its directory cannot be shown. */
  copy?: string;
}

function real(p: string): string {
  try {
    return fs.realpathSync(p);
  } catch {
    return path.resolve(p);
  }
}

const within = (a: string, b: string): boolean => a === b || a.startsWith(b + '/');

/**
 * How FILE reaches the sandbox. Its directory is bound read-only at its real path, but
 * not when that would show a home directory or an ancestor of the workspace: the daemon
 * refuses such filesystem.hostReadOnly entries (runtime/policy/workspace.ts), and the
 * script runs just as well from a copy. Inside the workspace it is visible anyway.
 * Throws when FILE cannot be read.
 */
function planInitFile(file: string, workspace: string): InitFile {
  const abs = path.resolve(file);
  const st = fs.statSync(abs);
  if (!st.isFile()) throw new Error(`${abs} is not a file`);
  if (st.size > MAX_INIT_FILE) throw new Error(`${abs} is larger than ${MAX_INIT_FILE} bytes`);
  const text = fs.readFileSync(abs, 'utf8');
  const dir = real(path.dirname(abs));
  const name = path.basename(abs);
  const ws = real(workspace);
  if (within(dir, ws)) return { inside: path.join(workspace, path.relative(ws, dir), name) };
  const homes = ['/root', '/home', os.homedir(), process.env.HOME ?? ''].filter(Boolean).map(real);
  if (dir === '/' || within(ws, dir) || homes.some((h) => within(dir, h) || within(h, dir))) {
    return { inside: `${COPY_DIR}/${name}`, copy: text };
  }
  return { inside: path.join(dir, name), bind: dir };
}

/** Writes TEXT to FILE inside the session (argv from data; the text goes through stdin). */
async function copyIn(client: RuntimeClient, sessionId: string, file: string, text: string): Promise<void> {
  const r = await client.call('exec', { sessionId, argv: ['sh', '-c', 'mkdir -p -- "${1%/*}" && cat > "$1"', 'sh', file], stdin: text, timeoutMs: 10_000 });
  if (r.exitCode !== 0) throw new Error(`could not copy VS Code's shell integration script to ${file} in the sandbox: ${r.stderr.trim() || `exit ${r.exitCode}`}`);
}

export async function agentShellCommand(argv: string[], io: Io): Promise<number> {
  const a = parseBashArgs(argv);
  if (a.help) {
    io.out(AGENT_SHELL_USAGE);
    return 0;
  }
  try {
    return await start(a, io);
  } catch (e) {
    // This runs as a terminal's shell: say why it did not open, in that terminal.
    io.err(`airlock: ${(e as Error).message}\n`);
    io.err("airlock: this agent terminal could not open its sandbox, so nothing ran; 'airlock doctor' checks this machine\n");
    return 125;
  }
}

async function start(a: BashArgs, io: Io): Promise<number> {
  const workspace = path.resolve(process.env.AIRLOCK_WORKSPACE || process.cwd());
  const cwd = process.cwd();
  const o: RunOptions = {
    workspace,
    pty: process.stdin.isTTY === true && process.stdout.isTTY === true,
    secrets: [],
    ownSession: true,
    label: 'vscode-agent',
    // The person's own policy (VS Code setting airlock.policy), written by the extension.
    ...(process.env.AIRLOCK_POLICY_FILE && fs.existsSync(process.env.AIRLOCK_POLICY_FILE) ? { policyFile: process.env.AIRLOCK_POLICY_FILE } : {}),
    env: agentShellEnv(process.env),
    // A terminal opened in a folder of the workspace starts there.
    ...(cwd !== workspace && cwd.startsWith(workspace + '/') ? { cwd } : {}),
  };
  if (a.command) return runInSession({ ...o, argv: ['bash', '-c', ...a.command] }, io);

  let init: InitFile | undefined;
  if (a.initFile !== undefined) {
    try {
      init = planInitFile(a.initFile, workspace);
    } catch (e) {
      // Still a working terminal, with Airlock's own shell integration.
      io.err(`airlock: warning: --init-file ${a.initFile}: ${(e as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (e as Error).message}; using Airlock's shell integration\n`);
    }
  }
  if (!init) return runInSession({ ...o, shell: true }, io);
  const { inside, bind, copy } = init;
  // VS Code's script emits the OSC 633 sequences, with its nonce: Airlock's own
  // integration is left out (started with argv, not process.start {shell: true}).
  return runInSession(
    {
      ...o,
      argv: ['bash', '--init-file', inside, '-i'],
      ...(bind ? { hostReadOnly: [bind] } : {}),
      ...(copy !== undefined ? { prepare: (c, id) => copyIn(c, id, inside, copy) } : {}),
    },
    io,
  );
}
