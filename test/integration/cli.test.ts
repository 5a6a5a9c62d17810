/**
 * The `airlock` command as a user or a script runs it (pipes, not a terminal), with
 * REAL sandboxes: exit statuses, stdin, the audit export, and error messages that name
 * the thing that is wrong and the fix.
 */
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { spawn } from 'node:child_process';
import { AIRLOCK_BIN, runCli, stopDaemonIn } from '../helpers/sandbox';
import { tmp, writeFiles } from '../helpers/integration';

type T = { after: (fn: () => void) => void };

/** `airlock run` in a fresh workspace (the default workspace is the current directory). */
async function run(t: T, cmd: string[], opts: { input?: string; env?: NodeJS.ProcessEnv; files?: Record<string, string>; flags?: string[] } = {}) {
  const ws = tmp(t, 'airlock-ws-');
  writeFiles(ws, opts.files ?? {});
  const r = await runCli(['run', ...(opts.flags ?? []), '--', ...cmd], { cwd: ws, input: opts.input, env: opts.env });
  return { ...r, ws };
}

test('run exits with the command\'s exit code', async (t) => {
  const r = await run(t, ['sh', '-c', 'echo out; echo err >&2; exit 42']);
  assert.equal(r.code, 42);
  assert.equal(r.stdout, 'out\n');
  assert.equal(r.stderr, 'err\n');
});

test('run of a command that does not exist exits 127 and names the command', async (t) => {
  const r = await run(t, ['nonexistent-xyz']);
  assert.equal(r.code, 127);
  assert.equal(r.stderr, 'airlock: command not found: nonexistent-xyz\n');
});

test('run gives the command SIGPIPE (exit 141) when the reader of its output goes away, without a crash', async (t) => {
  const ws = tmp(t, 'airlock-ws-');
  const rt = tmp(t, 'airlock-rt-');
  const env = { ...process.env, XDG_STATE_HOME: tmp(t, 'airlock-state-'), XDG_RUNTIME_DIR: rt };
  const r = await new Promise<{ out: string; err: string }>((resolve) => {
    const c = spawn('bash', ['-c', `'${process.execPath}' '${AIRLOCK_BIN}' run -- yes | head -n 2; echo "status=\${PIPESTATUS[0]}"`], { cwd: ws, env });
    let out = '';
    let err = '';
    c.stdout.on('data', (d) => (out += d));
    c.stderr.on('data', (d) => (err += d));
    c.on('close', () => resolve({ out, err }));
  });
  await stopDaemonIn(rt);
  assert.equal(r.out, 'y\ny\nstatus=141\n', r.err);
  assert.doesNotMatch(r.err, /EPIPE|Unhandled/);
});

test('run exits 128+N when signal N killed the command', async (t) => {
  assert.equal((await run(t, ['sh', '-c', 'kill -TERM $$'])).code, 143);
  assert.equal((await run(t, ['sh', '-c', 'kill -KILL $$'])).code, 137);
});

test('stdin piped into run reaches the command', async (t) => {
  const r = await run(t, ['tr', 'a-z', 'A-Z'], { input: 'hello\nsandbox\n' });
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stdout, 'HELLO\nSANDBOX\n');
});

test('large output and large input pass through run\'s pipes exactly', async (t) => {
  const out = await run(t, ['sh', '-c', 'head -c 30000000 /dev/zero | tr "\\0" x']);
  assert.equal(out.code, 0, out.stderr);
  assert.equal(out.stdout.length, 30_000_000);
  assert.ok(/^x+$/.test(out.stdout));
  const input = await run(t, ['wc', '-c'], { input: 'y'.repeat(20_000_000) });
  assert.equal(input.code, 0, input.stderr);
  assert.equal(input.stdout.trim(), '20000000');
});

test('run --timeout ends the session and exits 124', async (t) => {
  const started = Date.now();
  const r = await run(t, ['sleep', '30'], { flags: ['--timeout', '1'] });
  assert.equal(r.code, 124);
  assert.match(r.stderr, /timed out after 1 s: the session and everything in it were killed/);
  assert.ok(Date.now() - started < 10_000);
});

test('--audit-json appends the JSON lines of exactly this session', async (t) => {
  const out = path.join(tmp(t), 'session.jsonl');
  const state = tmp(t, 'airlock-state-');
  // Another session first: the export must not include it.
  await run(t, ['true'], { env: { XDG_STATE_HOME: state } });
  const r = await run(t, ['sh', '-c', 'exit 4'], { flags: ['--audit-json', out], env: { XDG_STATE_HOME: state } });
  assert.equal(r.code, 4);
  assert.equal(fs.statSync(out).mode & 0o777, 0o600);
  const recs = fs.readFileSync(out, 'utf8').trimEnd().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
  assert.deepEqual(recs.map((x) => x.type), ['session.start', 'process.start', 'process.exit', 'session.end']);
  assert.equal(new Set(recs.map((x) => x.session)).size, 1, 'one session id');
  assert.deepEqual(recs[1].argv, ['sh', '-c', 'exit 4']);
  assert.equal(recs[1].cwd, r.ws);
  assert.equal(recs[2].code, 4);
  assert.equal(recs[3].reason, 'exit');
  const all = fs.readFileSync(path.join(state, 'airlock', 'audit.jsonl'), 'utf8').trimEnd().split('\n');
  assert.equal(all.length, 8, 'the log itself holds both sessions');
  // A second run naming the same file adds its session after the first one's.
  await run(t, ['true'], { flags: ['--audit-json', out], env: { XDG_STATE_HOME: state } });
  const both = fs.readFileSync(out, 'utf8').trimEnd().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
  assert.equal(both.length, 8);
  assert.deepEqual(both.slice(0, 4), recs, 'the first session is kept as it was');
  assert.equal(new Set(both.map((x) => x.session)).size, 2, 'two sessions, one after the other');
});

test('audit verify after a run says the log is OK', async (t) => {
  const state = tmp(t, 'airlock-state-');
  assert.equal((await run(t, ['true'], { env: { XDG_STATE_HOME: state } })).code, 0);
  const v = await runCli(['audit', 'verify'], { env: { XDG_STATE_HOME: state } });
  assert.equal(v.code, 0, v.stderr);
  assert.match(v.stdout, /^audit log OK: 4 records /);
});

test('--workspace naming a missing directory fails and names it', async (t) => {
  const missing = path.join(tmp(t), 'missing-dir');
  const r = await runCli(['run', '--workspace', missing, '--', 'true']);
  assert.equal(r.code, 125);
  assert.equal(r.stderr, `airlock: workspace ${missing} does not exist: create it or pass --workspace DIR\n`);
});

test('--policy with an invalid field exits 125 and names the field', async (t) => {
  const file = path.join(tmp(t), 'bad.json');
  fs.writeFileSync(file, JSON.stringify({ limits: { pids: 'many' } }));
  const r = await run(t, ['true'], { flags: ['--policy', file] });
  assert.equal(r.code, 125);
  assert.match(r.stderr, /^airlock: invalid policy .*bad\.json: limits\.pids: must be integer\n$/);
});

test('a workspace policy file with an unknown field is refused too', async (t) => {
  const r = await run(t, ['true'], { files: { '.vscode/airlock.json': JSON.stringify({ limitz: {} }) } });
  assert.equal(r.code, 125);
  assert.match(r.stderr, /airlock\.json: limitz: unknown field/);
});

test('an unknown flag exits 2 and names the flag', async () => {
  const r = await runCli(['run', '--bogus', '--', 'true']);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /unknown option --bogus/);
  const d = await runCli(['doctor', '--frobnicate']);
  assert.equal(d.code, 2);
  assert.match(d.stderr, /unknown option --frobnicate/);
});

test('run without a command, and an unknown command, exit 2 with usage help', async () => {
  const r = await runCli(['run']);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /no command given: 'airlock run -- CMD \[ARGS\.\.\.\]'/);
  const u = await runCli(['frobnicate']);
  assert.equal(u.code, 2);
  assert.match(u.stderr, /unknown command 'frobnicate'/);
  const none = await runCli([]);
  assert.equal(none.code, 2);
  assert.match(none.stdout, /^usage: airlock/);
});

test('shell refuses to start without a terminal and says what to use instead', async () => {
  const r = await runCli(['shell']);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /stdin is not a terminal: use 'airlock run -- CMD'/);
});

test('--help works for airlock and each command', async () => {
  for (const args of [['--help'], ['run', '--help'], ['shell', '--help'], ['doctor', '--help'], ['audit', '--help']]) {
    const r = await runCli(args);
    assert.equal(r.code, 0, `${args.join(' ')}: ${r.stderr}`);
    assert.match(r.stdout, /usage: airlock/i, args.join(' '));
  }
});

test('without bubblewrap, run says how to install it and doctor fails with the fix', async (t) => {
  const env = { AIRLOCK_BWRAP: '/nonexistent/bwrap' };
  const r = await run(t, ['true'], { env });
  assert.equal(r.code, 125);
  assert.equal(r.stderr, "airlock: bubblewrap not found: install it with 'apt-get install bubblewrap'\n");
  const d = await runCli(['doctor'], { env });
  assert.equal(d.code, 1);
  assert.match(d.stdout, /^FAIL bubblewrap: bubblewrap not found\n\s+fix: apt-get install bubblewrap$/m);
  assert.match(d.stdout, /sandboxes cannot run here: bubblewrap/);
  assert.doesNotMatch(d.stdout, /test sandbox/, 'no test sandbox is attempted');
});

test('doctor exits 0 and says sandboxes can run here', async () => {
  const d = await runCli(['doctor']);
  assert.equal(d.code, 0, d.stdout + d.stderr);
  assert.match(d.stdout, /^ok {3}test sandbox: started, ran 'true'/m);
  assert.match(d.stdout, /\nAirlock can run sandboxes here\.\n$/);
});

test('acceptance: no caller environment, an empty home, no /root and no .env content inside', async (t) => {
  const secret = `fake-secret-${crypto.randomBytes(12).toString('hex')}`;
  const canaryName = `AIRLOCK_CANARY_${crypto.randomBytes(4).toString('hex').toUpperCase()}`;
  const canaryValue = `fake-canary-${crypto.randomBytes(12).toString('hex')}`;
  const r = await run(t, ['sh', '-c', 'env; ls -la ~ /root /home; cat .env'], {
    files: { '.env': `API_KEY=${secret}\n`, 'README.md': 'visible\n' },
    env: { [canaryName]: canaryValue },
  });
  const all = r.stdout + r.stderr;
  assert.ok(!all.includes(canaryValue) && !all.includes(canaryName), 'the caller\'s variables are not inside');
  assert.ok(!all.includes(secret), '.env content is not readable');
  assert.match(r.stdout, /^HOME=\/home\/airlock$/m);
  assert.equal(r.code, 0, 'cat .env succeeds: the file is there, and empty');
  const home = r.stdout.split('/home/airlock:\n')[1].split('\n\n')[0].trimEnd().split('\n');
  assert.equal(home[0], 'total 0');
  assert.deepEqual(home.slice(1).map((l) => l.split(/\s+/).pop()), ['.', '..'], 'the home directory is empty');
  assert.match(r.stdout, /^\/home:\n(?:total \d+\n)(?:.*\s\.{1,2}\n){2}.*\sairlock\n/m, '/home holds only the sandbox user');
  assert.match(r.stderr, /ls: cannot access '\/root': No such file or directory/);
  assert.equal(fs.readFileSync(path.join(r.ws, '.env'), 'utf8'), `API_KEY=${secret}\n`, 'the host file is untouched');
});
