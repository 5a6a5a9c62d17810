/**
 * Ordinary work still succeeds inside a REAL sandbox: a sandbox that breaks git, a
 * compiler, npm or an editor gets switched off, which protects nobody. The terminal
 * tests drive the real `airlock shell` through a pseudo-terminal (node-pty), keys and
 * all, as a person at a terminal would.
 */
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { startSession, StartOptions, tempDir, TestSession } from '../helpers/sandbox';
import { airlockInTerminal, Terminal, within, writeFiles } from '../helpers/integration';

const GIT_ID = ['-c', 'user.name=Airlock Test', '-c', 'user.email=test@airlock.invalid'];

async function open(t: { after: (fn: () => Promise<void>) => void }, opts?: StartOptions): Promise<TestSession> {
  const s = await startSession(opts);
  t.after(() => s.close());
  return s;
}

function ok(r: { code: number | null; stdout: string; stderr: string }, what: string): void {
  assert.equal(r.code, 0, `${what} failed:\n${r.stdout}\n${r.stderr}`);
}

/** Host-side git without the caller's global or system configuration. */
function hostGit(cwd: string, args: string[]): string {
  return execFileSync('git', [...GIT_ID, ...args], {
    cwd,
    encoding: 'utf8',
    env: { PATH: process.env.PATH, HOME: cwd, GIT_CONFIG_NOSYSTEM: '1', GIT_CONFIG_GLOBAL: '/dev/null' },
  });
}

test('git init, add and commit work in a new workspace', async (t) => {
  const s = await open(t, { files: { 'README.md': '# demo\n', 'src/a.txt': 'a\n' } });
  const g = `git ${GIT_ID.map((a) => `'${a}'`).join(' ')}`;
  const r = await s.run(`set -e; git init -q -b main .; git add -A; ${g} commit -q -m 'first commit'; git log --format=%s; git status --porcelain`);
  ok(r, 'git');
  assert.equal(r.stdout, 'first commit\n', 'one commit and a clean tree');
  assert.equal(hostGit(s.workspace, ['log', '--format=%s']), 'first commit\n', 'the host sees the commit');
});

test('git commit works in an existing repository whose hooks and config are read-only', async (t) => {
  const ws = tempDir('airlock-ws-');
  let s: TestSession | undefined;
  t.after(async () => {
    await s?.close(); // the session first: it still has the workspace mounted
    fs.rmSync(ws, { recursive: true, force: true });
  });
  writeFiles(ws, { 'README.md': '# demo\n' });
  hostGit(ws, ['init', '-q', '-b', 'main']);
  hostGit(ws, ['add', '-A']);
  hostGit(ws, ['commit', '-q', '-m', 'from the host']);
  s = await startSession({ workspace: ws });
  const protectedPaths = s.session.plan.readOnly.map((p) => path.relative(ws, p.host)).sort();
  assert.deepEqual(protectedPaths, ['.git/config', '.git/hooks']);

  const g = `git ${GIT_ID.map((a) => `'${a}'`).join(' ')}`;
  const r = await s.run(
    `set -e; echo change >> README.md; echo new > new.txt; git add -A; ${g} commit -q -m 'from the sandbox'; git log --format=%s; ` +
      'if touch .git/hooks/pre-commit 2>/dev/null; then echo HOOK-WRITABLE; fi; if echo x >> .git/config 2>/dev/null; then echo CONFIG-WRITABLE; fi',
  );
  ok(r, 'git in an existing repository');
  assert.equal(r.stdout, 'from the sandbox\nfrom the host\n');
  assert.equal(hostGit(ws, ['log', '--format=%s']), 'from the sandbox\nfrom the host\n');
  assert.equal(hostGit(ws, ['show', 'HEAD:new.txt']), 'new\n');
  assert.ok(!fs.existsSync(path.join(ws, '.git/hooks/pre-commit')));
});

test('a node script and a python3 script run and write to the workspace', async (t) => {
  const s = await open(t, {
    files: {
      'script.js': "const fs = require('fs'); fs.writeFileSync('from-node.txt', String(6 * 7)); console.log('node', process.version, require('os').userInfo().username);\n",
      'script.py': "import json, pathlib\npathlib.Path('from-python.txt').write_text(json.dumps({'sum': sum(range(10))}))\nprint('python ok')\n",
    },
  });
  const n = await s.run(['node', 'script.js']);
  ok(n, 'node');
  assert.match(n.stdout, /^node v\d+\.\d+\.\d+ airlock\n$/);
  const p = await s.run(['python3', 'script.py']);
  ok(p, 'python3');
  assert.equal(p.stdout, 'python ok\n');
  assert.equal(fs.readFileSync(path.join(s.workspace, 'from-node.txt'), 'utf8'), '42');
  assert.deepEqual(JSON.parse(fs.readFileSync(path.join(s.workspace, 'from-python.txt'), 'utf8')), { sum: 45 });
});

test('make builds and runs a small C program with cc', async (t) => {
  const s = await open(t, {
    files: {
      'hello.c': '#include <stdio.h>\nint main(void) { printf("hello from %s\\n", "c"); return 0; }\n',
      Makefile: 'hello: hello.c\n\tcc -O2 -Wall -o hello hello.c\n\nclean:\n\trm -f hello\n',
    },
  });
  const r = await s.run('make && ./hello && make');
  ok(r, 'make');
  assert.match(r.stdout, /cc -O2 -Wall -o hello hello\.c\nhello from c\nmake: 'hello' is up to date\.\n$/);
  assert.ok(fs.statSync(path.join(s.workspace, 'hello')).mode & 0o100, 'the binary is on the host, executable');
});

test('npm test runs a small local project without network access', async (t) => {
  const s = await open(t, {
    files: {
      'package.json': JSON.stringify({ name: 'sandboxed-demo', version: '1.0.0', private: true, scripts: { test: 'node test.js' } }, null, 2),
      'test.js': "const assert = require('assert'); assert.equal(1 + 1, 2); console.log('all 1 tests passed');\n",
    },
  });
  const r = await s.run(['npm', 'test'], { env: { npm_config_cache: '/tmp/npm-cache', npm_config_update_notifier: 'false', npm_config_fund: 'false', npm_config_audit: 'false' } });
  ok(r, 'npm test');
  assert.match(r.stdout, /> sandboxed-demo@1\.0\.0 test\n> node test\.js\n/);
  assert.match(r.stdout, /all 1 tests passed/);
});

// ---- the real CLI in a real terminal ------------------------------------------------

const PROMPT = 'airlock@airlock:';

async function shell(t: { after: (fn: () => Promise<void> | void) => void }, files: Record<string, string> = {}): Promise<{ term: Terminal; ws: string }> {
  const ws = tempDir('airlock-ws-');
  const state = tempDir('airlock-state-');
  writeFiles(ws, files);
  const term = airlockInTerminal(['shell', '--workspace', ws], { cwd: ws, cols: 100, rows: 30, env: { XDG_STATE_HOME: state } });
  t.after(async () => {
    if (!term.done) {
      term.write('exit\r'); // leave like a user; SIGKILL (bubblewrap dies with airlock) if that fails
      await within(term.exited, 5000, 'airlock to exit').catch(() => term.kill());
      await within(term.exited, 5000, 'airlock to die').catch(() => undefined);
    }
    // Only once airlock is gone: its session has the workspace mounted until then.
    fs.rmSync(ws, { recursive: true, force: true });
    fs.rmSync(state, { recursive: true, force: true });
  });
  await term.waitFor(PROMPT, 15_000);
  return { term, ws };
}

/** Types LINE and waits for the prompt to come back. */
async function type(term: Terminal, line: string, expect?: string | RegExp): Promise<string> {
  term.mark();
  term.write(line + '\r');
  if (expect) await term.waitFor(expect);
  return term.waitFor(new RegExp(`${PROMPT}.*\\$ $`));
}

test('vim edits a file through airlock shell', async (t) => {
  const { term, ws } = await shell(t);
  term.mark();
  term.write('vim -u NONE -N file.txt\r');
  await term.waitFor('"file.txt"');
  term.mark();
  term.write('iHELLO\x1b');
  await term.waitFor('HELLO');
  term.write(':wq\r');
  await term.waitFor(PROMPT);
  assert.equal(fs.readFileSync(path.join(ws, 'file.txt'), 'utf8'), 'HELLO\n');
  term.write('exit 0\r');
  assert.equal((await within(term.exited, 10_000, 'airlock to exit')).exitCode, 0);
});

test('less pages a file to the terminal height and quits with q', async (t) => {
  const lines = Array.from({ length: 200 }, (_, i) => `line-${i + 1}`).join('\n') + '\n';
  const { term } = await shell(t, { 'big.txt': lines });
  term.mark();
  term.write('less big.txt\r');
  const screen = await term.waitFor('line-29');
  assert.ok(!screen.includes('line-31'), 'one screen (30 rows) at a time');
  term.mark();
  term.write(' ');
  await term.waitFor('line-58');
  term.mark();
  term.write('q');
  await term.waitFor(PROMPT);
  await type(term, 'echo back-in-$((40 + 2))', 'back-in-42');
});

test('Ctrl-C ends a foreground sleep and returns to the prompt', async (t) => {
  const { term } = await shell(t);
  term.write('sleep 100\r');
  await term.waitFor('sleep 100');
  await new Promise((r) => setTimeout(r, 300));
  term.mark();
  term.write('\x03');
  await term.waitFor(PROMPT, 5000);
  const out = await type(term, 'echo status=$?', 'status=130');
  assert.match(out, /status=130/);
});

test('Ctrl-Z stops a foreground sleep, and kill %1 ends the stopped job', async (t) => {
  const { term } = await shell(t);
  term.write('sleep 100\r');
  await term.waitFor('sleep 100');
  await new Promise((r) => setTimeout(r, 300));
  term.mark();
  term.write('\x1a');
  await term.waitFor(/Stopped\s+sleep 100/, 5000);
  await term.waitFor(PROMPT);
  term.mark();
  term.write('kill %1\r');
  await term.waitFor(new RegExp(`${PROMPT}.*\\$ $`));
  // bash notices the job's end asynchronously: poll until no job and no sleep is left.
  const deadline = Date.now() + 5000;
  for (;;) {
    const out = await type(term, 'jobs > /tmp/jobs; echo "left=$(cat /tmp/jobs /proc/[0-9]*/comm 2>/dev/null | grep -c sleep)"', /left=\d+/);
    if (/left=0/.test(out)) break;
    assert.ok(Date.now() < deadline, `the stopped job is still there: ${out}`);
    await new Promise((r) => setTimeout(r, 100));
  }
});

test('resizing the terminal is seen by stty size inside', async (t) => {
  const { term } = await shell(t);
  await type(term, 'stty size', '30 100');
  term.resize(120, 40);
  await new Promise((r) => setTimeout(r, 200));
  await type(term, 'stty size', '40 120');
});

test('exit 3 in airlock shell makes airlock exit with 3', async (t) => {
  const { term } = await shell(t);
  term.write('exit 3\r');
  const e = await within(term.exited, 10_000, 'airlock to exit');
  assert.equal(e.exitCode, 3);
});
