/**
 * `airlock agent-shell`, the executable behind VS Code's routed agent terminal, with
 * REAL sandboxes in a real PTY: it keeps the host environment out, runs the shell-
 * integration script VS Code hands it (`--init-file`) inside, passes VS Code's own
 * variables and nothing else, behaves like bash for -c and unknown options, and ends
 * its session when the terminal closes.
 */
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { RuntimeClient } from '../../runtime/client/client';
import { airlockInTerminal, sleep, Terminal, tmp, until, within } from '../helpers/integration';
import { AIRLOCK_BIN, hostPidsWhere, runCli, stopDaemonIn, tempDir } from '../helpers/sandbox';

type T = { after: (fn: () => void | Promise<void>) => void };

const PROMPT = 'airlock@airlock:';
const hex = (): string => crypto.randomBytes(6).toString('hex');

interface AgentTerminal {
  term: Terminal;
  rt: string;
  ws: string;
  /** Types LINE and waits for the output line `<tag>-42` it prints last (the echoed command reads `$((6*7))`). */
  run(line: string, tag?: string): Promise<string>;
}

/** `airlock agent-shell ARGS` in a PTY, in a fresh workspace, with its own daemon (stopped afterwards). */
function agentShell(t: T, args: string[], env: NodeJS.ProcessEnv = {}): AgentTerminal {
  const rt = tempDir('airlock-rt-');
  const st = tempDir('airlock-state-');
  const ws = tempDir('airlock-ws-');
  const term = airlockInTerminal(['agent-shell', ...args], { cwd: ws, env: { XDG_RUNTIME_DIR: rt, XDG_STATE_HOME: st, ...env } });
  t.after(async () => {
    term.kill();
    await stopDaemonIn(rt);
    for (const d of [rt, st, ws]) fs.rmSync(d, { recursive: true, force: true });
  });
  return {
    term,
    rt,
    ws,
    async run(line, tag = 'DONE') {
      term.mark();
      term.write(`${line}; echo ${tag}-$((6*7))\r`);
      return term.waitFor(new RegExp(`^${tag}-42\\r?$`, 'm'), 15_000);
    },
  };
}

/** The pid of the `airlock agent-shell` whose daemon lives under runtime dir RT. */
function agentShellPid(rt: string): number {
  const pids = hostPidsWhere((a) => a[1] === AIRLOCK_BIN && a[2] === 'agent-shell').filter((pid) => {
    try {
      return fs.readFileSync(`/proc/${pid}/environ`, 'utf8').split('\0').includes(`XDG_RUNTIME_DIR=${rt}`);
    } catch {
      return false;
    }
  });
  assert.equal(pids.length, 1, `one agent-shell process for ${rt}`);
  return pids[0];
}

test('agent-shell keeps the host environment and home directory out of the sandboxed shell', { timeout: 90_000 }, async (t) => {
  const canaryName = `AIRLOCK_CANARY_${hex().toUpperCase()}`;
  const canaryValue = `fake-canary-${hex()}`;
  const homeFile = path.join(os.homedir(), `.airlock-canary-${hex()}`);
  fs.writeFileSync(homeFile, `${canaryValue}-in-home\n`);
  t.after(() => fs.rmSync(homeFile, { force: true }));
  const s = agentShell(t, [], { [canaryName]: canaryValue });
  await s.term.waitFor(PROMPT, 30_000);
  const out = await s.run(`env; cat ${homeFile} || echo CAT-FAILED-$((1+1))`);
  assert.ok(!s.term.output().includes(canaryValue), 'neither the variable\'s value nor the home file\'s content is inside');
  assert.ok(!out.includes(canaryName), 'the variable is not inside');
  assert.match(out, /^HOME=\/home\/airlock\r?$/m);
  assert.match(out, /^CAT-FAILED-2\r?$/m);
  assert.match(out, /No such file or directory/);
  assert.doesNotMatch(s.term.output(), /closing this terminal leaves it running/, 'an agent terminal does not announce a lasting session');
});

test('agent-shell --init-file runs that script inside instead of Airlock\'s integration, from a read-only directory at the same path', { timeout: 90_000 }, async (t) => {
  const dir = tmp(t, 'airlock-vscode-scripts-');
  const file = path.join(dir, 'shellIntegration-bash.sh');
  // A stand-in for VS Code's shellIntegration-bash.sh: a marker, then OSC 633 D (with
  // the exit status) and A before each prompt, C before each command's output.
  fs.writeFileSync(file, [
    'echo "fake-integration-loaded-$((40+2)) nonce=${VSCODE_NONCE:-none}"',
    "__fake_prompt() { local s=$?; builtin printf '\\e]633;D;%s\\a\\e]633;A\\a' \"$s\"; }",
    'PROMPT_COMMAND=__fake_prompt',
    "PS0='\\e]633;C\\a'",
    "PS1='fake$ '",
    '',
  ].join('\n'));
  const s = agentShell(t, ['--init-file', file], { VSCODE_NONCE: 'n0nce-for-test', VSCODE_INJECTION: '1' });
  await s.term.waitFor('fake-integration-loaded-42 nonce=n0nce-for-test', 30_000);
  await s.term.waitFor('fake$ ');
  s.term.write('false\r');
  await until(() => s.term.output().includes('\x1b]633;D;1\x07'), 15_000, 'OSC 633 D;1 after `false`');
  await s.run('true');
  const raw = s.term.output();
  assert.ok(raw.includes('\x1b]633;C\x07') && raw.includes('\x1b]633;A\x07'), 'the script\'s A and C reach the terminal');
  assert.ok(!raw.includes('\x1b]633;E') && !raw.includes('\x1b]633;B') && !raw.includes('\x1b]633;P'), 'Airlock\'s own integration (E, B, P) is not running too');

  const ro = await s.run(`cat ${file} | head -n 1; touch ${dir}/written 2>&1; echo touch=$?`);
  assert.match(ro, /fake-integration-loaded/, 'the script is at the same path inside');
  assert.match(ro, /Read-only file system/);
  assert.match(ro, /^touch=1\r?$/m);
  assert.ok(!fs.existsSync(path.join(dir, 'written')), 'nothing was written on the host');
});

test('agent-shell copies an --init-file under the home directory in, and the home directory stays hidden', { timeout: 90_000 }, async (t) => {
  const dir = fs.mkdtempSync(path.join(os.homedir(), '.airlock-test-vscode-'));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  const file = path.join(dir, 'shellIntegration-bash.sh');
  fs.writeFileSync(file, "echo \"copied-integration-$((40+2))\"\nPS1='copied$ '\n");
  const s = agentShell(t, ['--init-file', file]);
  await s.term.waitFor('copied-integration-42', 30_000);
  await s.term.waitFor('copied$ ');
  const out = await s.run(`ls ${dir} 2>&1`);
  assert.match(out, /No such file or directory/, 'the host home directory is not shown');
});

test('VS Code\'s variables given to agent-shell reach the sandboxed shell; others, and the ones carrying other variables, do not', { timeout: 90_000 }, async (t) => {
  const unrelated = `unrelated-${hex()}`;
  const carried = `carried-${hex()}`;
  const s = agentShell(t, [], {
    VSCODE_NONCE: 'nonce-1234',
    VSCODE_STABLE: '1',
    TERM_PROGRAM: 'vscode',
    TERM_PROGRAM_VERSION: '1.139.0',
    GIT_PAGER: 'cat',
    UNRELATED_HOST_VARIABLE: unrelated,
    VSCODE_ENV_REPLACE: `CARRIED=${carried}`,
    VSCODE_GIT_IPC_HANDLE: `/run/user/0/vscode-git-${hex()}.sock`,
    VSCODE_API_TOKEN: `token-${hex()}`,
  });
  await s.term.waitFor(PROMPT, 30_000);
  const out = await s.run('env | sort');
  assert.match(out, /^VSCODE_NONCE=nonce-1234\r?$/m);
  assert.match(out, /^VSCODE_STABLE=1\r?$/m);
  assert.match(out, /^TERM_PROGRAM=vscode\r?$/m);
  assert.match(out, /^TERM_PROGRAM_VERSION=1\.139\.0\r?$/m);
  assert.match(out, /^GIT_PAGER=cat\r?$/m, 'the agent terminal\'s GIT_PAGER=cat keeps git from paging');
  assert.ok(!out.includes(unrelated) && !out.includes('UNRELATED_HOST_VARIABLE'), 'an unrelated variable stays out');
  assert.ok(!out.includes(carried) && !out.includes('VSCODE_ENV_REPLACE'), 'VSCODE_ENV_REPLACE (other variables in disguise) stays out');
  assert.doesNotMatch(out, /VSCODE_GIT_IPC_HANDLE|VSCODE_API_TOKEN/);
});

test('agent-shell -c runs the command and exits with its status; unknown options exit 2 and name the option', { timeout: 90_000 }, async (t) => {
  const ws = tmp(t, 'airlock-ws-');
  const seven = await runCli(['agent-shell', '-c', 'exit 7'], { cwd: ws });
  assert.equal(seven.code, 7, seven.stderr);
  const args = await runCli(['agent-shell', '-l', '-c', 'echo "$0 $1 $(pwd)"', 'name', '-x'], { cwd: ws });
  assert.equal(args.code, 0, args.stderr);
  assert.equal(args.stdout, `name -x ${ws}\n`);
  fs.mkdirSync(path.join(ws, 'sub'));
  const inSub = await runCli(['agent-shell', '-c', 'pwd'], { cwd: path.join(ws, 'sub'), env: { AIRLOCK_WORKSPACE: ws } });
  assert.equal(inSub.stdout, `${ws}/sub\n`, 'AIRLOCK_WORKSPACE roots the session; the shell starts in the terminal\'s folder');
  const unknown = await runCli(['agent-shell', '--frobnicate'], { cwd: ws });
  assert.equal(unknown.code, 2);
  assert.match(unknown.stderr, /^airlock agent-shell: unknown option --frobnicate \(understood: --init-file FILE/);
  const noCmd = await runCli(['agent-shell', '-c'], { cwd: ws });
  assert.equal(noCmd.code, 2);
  assert.match(noCmd.stderr, /-c: option requires an argument/);
  const help = await runCli(['agent-shell', '--help']);
  assert.equal(help.code, 0);
  assert.match(help.stdout, /^usage: airlock agent-shell /);
});

test('agent-shell says in its terminal why the sandbox did not open, and exits non-zero', { timeout: 60_000 }, async (t) => {
  const r = await runCli(['agent-shell', '-c', 'true'], { cwd: tmp(t, 'airlock-ws-'), env: { AIRLOCK_BWRAP: '/nonexistent/bwrap' } });
  assert.equal(r.code, 125);
  assert.equal(
    r.stderr,
    "airlock: bubblewrap not found: install it with 'apt-get install bubblewrap'\n" +
      "airlock: this agent terminal could not open its sandbox, so nothing ran; 'airlock doctor' checks this machine\n",
  );
});

for (const how of ['SIGHUP', 'SIGKILL'] as const) {
  test(`closing agent-shell's terminal (${how}) ends its session`, { timeout: 90_000 }, async (t) => {
    const s = agentShell(t, []);
    await s.term.waitFor(PROMPT, 30_000);
    const c = await RuntimeClient.connect({ socket: path.join(s.rt, 'airlock', 'runtime.sock') });
    t.after(() => c.close());
    const before = (await c.call('session.list', {})).sessions;
    assert.deepEqual(before.map((x) => [x.label, x.workspace]), [['vscode-agent', s.ws]]);
    // SIGHUP is what the kernel sends when the terminal's master side closes; SIGKILL
    // leaves only the connection closing behind.
    process.kill(agentShellPid(s.rt), how);
    await within(s.term.exited, 10_000, 'agent-shell to exit');
    let live = before.length;
    for (const deadline = Date.now() + 5_000; Date.now() < deadline && live > 0; await sleep(50)) live = (await c.call('session.list', {})).sessions.length;
    assert.equal(live, 0, 'no session is left behind');
    const why = how === 'SIGHUP' ? 'its terminal closed' : 'its client disconnected';
    await assert.rejects(c.call('session.get', { sessionId: before[0].sessionId }), new RegExp(`has ended \\(\\d+ s ago: killed, ${why}\\)`));
  });
}
