/**
 * Shell integration in REAL sandboxes: the interactive shell reports its prompts,
 * command lines, exit codes and directory with OSC 633, keeps the prompt, job control,
 * the user's PROMPT_COMMAND and `set -e` working, and a non-interactive shell reports
 * nothing.
 */
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import { BASH_RCFILE, CommandEvent, CommandTracker, interactiveShell, Osc633Parser, ShellEvent, shellFiles } from '../../runtime/shell';
import type { SandboxProcess } from '../../runtime/sessions';
import { startSession, TestSession } from '../helpers/sandbox';
import { until } from '../helpers/integration';

const OSC633 = '\x1b]633;';
const onHost = (p: string): boolean => fs.existsSync(p);
const ZSH = ['/bin/zsh', '/usr/bin/zsh'].find(onHost);

interface ShellUnderTest {
  s: TestSession;
  proc: SandboxProcess;
  events: ShellEvent[];
  commands: CommandEvent[];
  output(): string;
  /** Waits until COND holds, showing the terminal output when it does not. */
  waitFor(cond: () => boolean, what: string, ms?: number): Promise<void>;
  /** Types LINE, waits for its command.end and the next prompt; returns the end event. */
  run(line: string): Promise<Extract<CommandEvent, { type: 'command.end' }>>;
}

async function openShell(t: { after: (fn: () => Promise<void>) => void }, opts: { prefer?: 'bash' | 'zsh'; setup?: string } = {}): Promise<ShellUnderTest> {
  const s = await startSession();
  t.after(() => s.close());
  if (opts.setup) {
    const r = await s.run(opts.setup);
    assert.equal(r.code, 0, r.stderr);
  }
  const shell = interactiveShell({ available: onHost, prefer: opts.prefer });
  assert.equal(shell.shell, opts.prefer ?? 'bash');
  const proc = await s.session.spawn({ argv: shell.argv, env: shell.env, pty: true, cols: 120, rows: 30 });
  const parser = new Osc633Parser();
  const tracker = new CommandTracker();
  const raw: Buffer[] = [];
  const events: ShellEvent[] = [];
  const commands: CommandEvent[] = [];
  proc.on('stdout', (d) => {
    raw.push(d);
    const ev = parser.push(d);
    events.push(...ev);
    commands.push(...tracker.push(ev));
  });
  const output = (): string => Buffer.concat(raw).toString('utf8');
  const waitFor = async (cond: () => boolean, what: string, ms = 10_000): Promise<void> => {
    try {
      await until(cond, ms, what);
    } catch (e) {
      throw new Error(`${(e as Error).message}\n--- terminal output ---\n${JSON.stringify(output().slice(-3000))}`);
    }
  };
  const prompts = (): number => events.filter((e) => e.kind === 'commandInputStart').length;
  const u: ShellUnderTest = {
    s,
    proc,
    events,
    commands,
    output,
    waitFor,
    async run(line) {
      const before = commands.length;
      const p = prompts();
      proc.write(`${line}\r`);
      await waitFor(() => commands.slice(before).some((c) => c.type === 'command.end') && prompts() > p, `${JSON.stringify(line)} to finish and a new prompt`);
      return commands.slice(before).find((c) => c.type === 'command.end') as Extract<CommandEvent, { type: 'command.end' }>;
    },
  };
  await waitFor(() => prompts() > 0, 'the first prompt');
  return u;
}

/** Polls the sandbox until a process named NAME runs (the shell has started it). */
async function processRuns(sh: ShellUnderTest, name: string): Promise<void> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    const r = await sh.s.run('cat /proc/[0-9]*/comm 2>/dev/null');
    if (r.stdout.split('\n').includes(name)) return;
    if (Date.now() > deadline) throw new Error(`${name} did not start in the sandbox`);
  }
}

test('bash reports each command line, its exit code and the directory; the prompt still reads airlock@airlock', async (t) => {
  const sh = await openShell(t);
  const ws = sh.s.session.plan.inside;
  assert.deepEqual(sh.events.slice(0, 3), [{ kind: 'cwd', cwd: ws }, { kind: 'promptStart' }, { kind: 'commandInputStart' }], 'the first prompt: directory, then A and B around PS1');

  const hi = await sh.run('echo hi');
  assert.deepEqual([hi.commandLine, hi.exitCode, hi.cwd], ['echo hi', 0, ws]);
  assert.ok(hi.durationMs >= 0 && hi.durationMs < 10_000);
  assert.equal((await sh.run('false')).exitCode, 1);
  const cd = await sh.run('cd /tmp');
  assert.deepEqual([cd.commandLine, cd.exitCode, cd.cwd], ['cd /tmp', 0, ws], 'cd ran in the workspace');
  assert.deepEqual(sh.events.filter((e) => e.kind === 'cwd').at(-1), { kind: 'cwd', cwd: '/tmp' });
  const pwd = await sh.run('pwd');
  assert.deepEqual([pwd.commandLine, pwd.exitCode, pwd.cwd], ['pwd', 0, '/tmp']);
  // Separators, backslashes and quotes survive the escaping both ways.
  const tricky = String.raw`echo 'a;b' "c\\d" | tr ';' :`;
  assert.equal((await sh.run(tricky)).commandLine, tricky);
  // An empty line runs nothing: no command is reported for it.
  const before = sh.commands.length;
  const prompts = sh.events.filter((e) => e.kind === 'commandInputStart').length;
  sh.proc.write('\r');
  await sh.waitFor(() => sh.events.filter((e) => e.kind === 'commandInputStart').length > prompts, 'the prompt after an empty line');
  assert.equal(sh.commands.length, before);

  assert.deepEqual(
    sh.commands.map((c) => `${c.type} ${c.commandLine}${c.type === 'command.end' ? ` -> ${c.exitCode}` : ''}`),
    ['echo hi', 'false', 'cd /tmp', 'pwd', tricky].flatMap((l, i) => [`command.start ${l}`, `command.end ${l} -> ${[0, 1, 0, 0, 0][i]}`]),
  );
  const out = sh.output();
  assert.match(out, /\x1b\]633;A\x07airlock@airlock:[^\x07\x1b]*\$ \x1b\]633;B\x07/, 'the prompt is Debian\'s user@host:dir, wrapped in A and B');
  assert.ok(out.includes('\x1b]633;A\x07airlock@airlock:/tmp$ \x1b]633;B\x07'), 'after cd the prompt shows /tmp');
  assert.match(out, /\x1b\]633;E;echo hi\x07\x1b\]633;C\x07hi\r\n\x1b\]633;D;0\x07/, 'E and C come once, right before the output, D right after it');
  assert.equal(out.split(`${OSC633}E;false`).length, 2, 'E is reported once per command line');
});

test('job control still works: Ctrl-C ends the foreground job with 130 and a new prompt follows; Ctrl-Z stops it', async (t) => {
  const sh = await openShell(t);
  const prompts = (): number => sh.events.filter((e) => e.kind === 'commandInputStart').length;

  let p = prompts();
  sh.proc.write('sleep 100\r');
  await sh.waitFor(() => sh.commands.some((c) => c.type === 'command.start' && c.commandLine === 'sleep 100'), 'sleep to start');
  await processRuns(sh, 'sleep');
  sh.proc.write('\x03');
  await sh.waitFor(() => sh.commands.some((c) => c.type === 'command.end') && prompts() > p, 'the interrupted sleep to finish and a new prompt');
  assert.deepEqual(
    sh.commands.filter((c) => c.type === 'command.end').map((c) => [c.commandLine, (c as { exitCode: number | null }).exitCode]),
    [['sleep 100', 130]],
  );

  p = prompts();
  sh.proc.write('sleep 99\r');
  await sh.waitFor(() => sh.commands.some((c) => c.type === 'command.start' && c.commandLine === 'sleep 99'), 'the second sleep to start');
  await processRuns(sh, 'sleep');
  sh.proc.write('\x1a');
  await sh.waitFor(() => sh.commands.filter((c) => c.type === 'command.end').length === 2 && prompts() > p, 'the stopped sleep to be reported');
  assert.equal((sh.commands.at(-1) as { exitCode: number }).exitCode, 148, '128 + SIGTSTP');
  assert.match(sh.output(), /Stopped\s+sleep 99/);
  assert.equal((await sh.run('kill -9 %1')).exitCode, 0);
  assert.equal((await sh.run('echo still here')).exitCode, 0);
  assert.ok(sh.proc.running);
});

test("the user's ~/.bashrc, PROMPT_COMMAND, $? in PS1 and set -e keep working", async (t) => {
  const sh = await openShell(t, {
    setup: String.raw`printf '%s\n' 'PROMPT_COMMAND='"'"'echo "pc-saw=$?"'"'" 'PS1='"'"'[$?] \u@\h\$ '"'" 'alias builtin="echo HIJACKED"' 'alias printf="echo HIJACKED"' > ~/.bashrc`,
  });
  assert.equal((await sh.run('false')).exitCode, 1);
  assert.match(sh.output(), /pc-saw=1\r\n/, "the user's PROMPT_COMMAND still sees the command's status");
  assert.ok(sh.output().includes('\x1b]633;A\x07[1] airlock@airlock$ \x1b]633;B\x07'), "the user's PS1 (with $?) is kept, wrapped in A and B");
  assert.equal((await sh.run('set -e')).exitCode, 0);
  assert.equal((await sh.run('true')).commandLine, 'true', 'aliases from ~/.bashrc do not reach the hooks');
  assert.equal((await sh.run('echo alive')).exitCode, 0);
  assert.ok(sh.proc.running, 'the hooks never fail under set -e');
  assert.doesNotMatch(sh.output(), /HIJACKED/);
});

test('a non-interactive bash emits no OSC 633, with the rcfile, sourcing it, or as BASH_ENV, in a pipe or a terminal', async (t) => {
  const s = await startSession();
  t.after(() => s.close());
  const shell = interactiveShell({ available: onHost });
  const bash = shell.argv[0];
  const rcfile = shell.argv.slice(1, 3);
  assert.deepEqual(rcfile, ['--rcfile', BASH_RCFILE]);
  const installed = await s.run(['cat', BASH_RCFILE]);
  assert.equal(installed.stdout, shellFiles()['bash-integration.sh'], 'the sandbox has the shipped rcfile');
  for (const pty of [false, true]) {
    for (const [argv, env] of [
      [[bash, ...rcfile, '-c', 'echo x'], shell.env],
      [[bash, '-c', `. ${BASH_RCFILE}; echo x`], shell.env],
      [[bash, '-c', 'echo x'], { ...shell.env, BASH_ENV: BASH_RCFILE }],
    ] as [string[], Record<string, string>][]) {
      const r = await s.run(argv, { env, pty });
      assert.equal(r.code, 0, `${argv.join(' ')}: ${r.stderr}`);
      assert.equal(r.stdout.replace(/\r/g, ''), 'x\n', `${argv.join(' ')} (pty: ${pty})`);
      assert.ok(!r.stdout.includes(OSC633) && !r.stderr.includes(OSC633));
    }
  }
});

test('zsh reports the same commands, exit codes and directory', { skip: ZSH ? false : 'zsh is not installed on this host (apt-get install zsh)' }, async (t) => {
  const sh = await openShell(t, { prefer: 'zsh' });
  const ws = sh.s.session.plan.inside;
  const hi = await sh.run('echo hi');
  assert.deepEqual([hi.commandLine, hi.exitCode, hi.cwd], ['echo hi', 0, ws]);
  assert.equal((await sh.run('false')).exitCode, 1);
  assert.equal((await sh.run('cd /tmp')).exitCode, 0);
  assert.deepEqual(sh.events.filter((e) => e.kind === 'cwd').at(-1), { kind: 'cwd', cwd: '/tmp' });
  const tricky = String.raw`echo 'a;b' "c\\d"`;
  const r = await sh.run(tricky);
  assert.deepEqual([r.commandLine, r.cwd], [tricky, '/tmp']);
  assert.ok(sh.output().includes('\x1b]633;A\x07airlock@airlock:/tmp% \x1b]633;B\x07'), 'the prompt reads airlock@airlock, wrapped in A and B');

  const p = sh.events.filter((e) => e.kind === 'commandInputStart').length;
  sh.proc.write('sleep 100\r');
  await processRuns(sh, 'sleep');
  sh.proc.write('\x03');
  await sh.waitFor(() => sh.commands.at(-1)?.type === 'command.end' && sh.events.filter((e) => e.kind === 'commandInputStart').length > p, 'Ctrl-C to end sleep');
  assert.equal((sh.commands.at(-1) as { exitCode: number }).exitCode, 130);
  const plainZsh = await sh.s.run([ZSH as string, '-c', 'echo x'], { env: interactiveShell({ available: onHost, prefer: 'zsh' }).env, pty: true });
  assert.equal(plainZsh.stdout.replace(/\r/g, ''), 'x\n');
  assert.ok(!plainZsh.stdout.includes(OSC633), 'non-interactive zsh reports nothing');
});
