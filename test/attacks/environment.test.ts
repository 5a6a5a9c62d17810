/**
 * Attacks on the environment promise: the sandbox starts with an empty environment
 * plus an explicit allowlist, so the caller's tokens are not readable inside through
 * `env` nor through any /proc/PID/environ. Secrets here are fake random values; the
 * assertions report variable NAMES only, never values of this machine's environment.
 */
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import { runCli, tempDir } from '../helpers/sandbox';
import { envNames, fakeSecret, sharedSession } from '../helpers/attack';

const ALWAYS = ['PATH', 'HOME'];
/**
 * Set by Airlock when the session has its egress proxy: where the proxy is, and the
 * package registries the user's tools use (URLs without credentials). None comes from
 * the caller's environment.
 */
const EGRESS = /^(HTTP_PROXY|HTTPS_PROXY|ALL_PROXY|http_proxy|https_proxy|all_proxy|npm_config_proxy|npm_config_https_proxy|npm_config_registry|npm_config_@[a-z0-9_.-]+:registry|PIP_INDEX_URL|PIP_EXTRA_INDEX_URL|PIP_TRUSTED_HOST|GOPROXY|GOSUMDB|GONOSUMDB|GOPRIVATE|GONOPROXY|CARGO_REGISTRIES_[A-Z0-9_]+_INDEX|CARGO_REGISTRY_DEFAULT|SSL_CERT_FILE|NODE_EXTRA_CA_CERTS|REQUESTS_CA_BUNDLE|GIT_SSL_CAINFO|CURL_CA_BUNDLE|PIP_CERT)$/;
const FROM_CALLER = /^(TERM|LANG|LANGUAGE|TZ|COLORTERM|LC_[A-Z_]+)$/;
/** Set by the shell itself in the processes it starts, not taken from anywhere. */
const SHELL_MADE = ['PWD', 'OLDPWD', 'SHLVL', '_'];

/** Fake credentials a developer's shell typically holds, plus a random canary. */
function fakeCallerSecrets(): Record<string, string> {
  return {
    [`AIRLOCK_CANARY_${fakeSecret('n').slice(2).toUpperCase()}`]: fakeSecret('canary'),
    AWS_SECRET_ACCESS_KEY: fakeSecret('aws'),
    GITHUB_TOKEN: `ghp_${fakeSecret('gh')}`,
    SSH_AUTH_SOCK: `/tmp/ssh-${fakeSecret('x')}/agent.4242`,
  };
}

/** Names in NAMES that the allowlist does not explain. */
function unexpectedNames(names: string[], extra: string[] = []): string[] {
  return names.filter((n) => !ALWAYS.includes(n) && !FROM_CALLER.test(n) && !EGRESS.test(n) && !extra.includes(n));
}

/** Which of SECRETS' values (by name) occur in TEXT. */
function leakedSecrets(text: string, secrets: Record<string, string>): string[] {
  return Object.entries(secrets).filter(([, v]) => text.includes(v)).map(([k]) => k);
}

// Prints every readable /proc/PID/environ, NUL-separated, one process after another.
const DUMP_ALL_ENVIRON = `
n=0
for f in /proc/[0-9]*/environ /proc/self/environ /proc/thread-self/environ; do
  if cat "$f" 2>/dev/null; then n=$((n+1)); fi
  printf '\\n'
done
echo "readable=$n"`;

describe('the caller environment is not visible inside a session', () => {
  const secrets = fakeCallerSecrets();
  const shared = sharedSession(() => ({ callerEnv: process.env }));

  before(async () => {
    // The secrets go into this process's own environment, as a developer's shell would have them.
    Object.assign(process.env, secrets);
    await shared.start();
  });
  after(async () => {
    for (const k of Object.keys(secrets)) delete process.env[k];
    await shared.close();
  });

  test('the fake secrets really are in the environment the session was started from (control)', () => {
    for (const [k, v] of Object.entries(secrets)) assert.equal(process.env[k], v, `${k} is set in the test process`);
    // A host child inherits them: what the sandbox must prevent would happen here.
    const seen = execFileSync('sh', ['-c', 'env -0'], { encoding: 'utf8' });
    assert.deepEqual(leakedSecrets(seen, secrets), Object.keys(secrets));
  });

  test('a sandboxed process sees only PATH, HOME and the terminal/locale variables in `env`', async () => {
    const r = await shared.get().run(['env', '-0']);
    assert.equal(r.code, 0, r.stderr);
    const names = envNames(r.stdout);
    assert.deepEqual(unexpectedNames(names), [], 'variables beyond the allowlist');
    assert.deepEqual(leakedSecrets(r.stdout, secrets), [], 'caller secrets visible in env');
    for (const k of Object.keys(secrets)) assert.ok(!names.includes(k), `${k} must not be set`);
    assert.match(r.stdout, /(^|\0)HOME=\/home\/airlock\0/);
    assert.match(r.stdout, /(^|\0)PATH=\/usr\/local\/sbin:\/usr\/local\/bin:\/usr\/sbin:\/usr\/bin:\/sbin:\/bin\0/);
  });

  test("a sandboxed process cannot read the caller's environment through /proc/*/environ", async () => {
    // A long-lived second process, so there is more than one environ to read.
    const bg = await shared.get().session.spawn({ argv: ['sleep', '30'] });
    try {
      const r = await shared.get().run(DUMP_ALL_ENVIRON);
      const readable = Number(/readable=(\d+)/.exec(r.stdout)?.[1] ?? 0);
      // Its own environ is readable: the method works, so an empty result is meaningful.
      assert.ok(readable >= 2, `expected to read at least 2 environ files, read ${readable}`);
      assert.match(r.stdout, /PATH=\/usr\/local\/sbin/);
      assert.deepEqual(leakedSecrets(r.stdout, secrets), [], 'caller secrets visible in /proc/*/environ');
      const dumps = r.stdout.replace(/readable=\d+\n?$/, '').replace(/\n/g, '\0');
      assert.deepEqual(unexpectedNames(envNames(dumps), SHELL_MADE), [], 'variables beyond the allowlist in some /proc/*/environ');
    } finally {
      bg.signal('SIGKILL');
      await bg.exited;
    }
  });

  test('the agent (PID 1) starts with no caller variable, and sandboxed processes cannot read it anyway', async () => {
    const r = await shared.get().run('cat /proc/1/environ; echo "rc=$?"');
    assert.match(r.stdout, /rc=1/);
    assert.match(r.stderr, /\/proc\/1\/environ: Permission denied/);
    // From the host (root may read a non-dumpable process's environ): bubblewrap was started with {}.
    const pid = shared.get().session.sandbox.agentHostPid!;
    let hostView: Buffer | null = null;
    try {
      hostView = fs.readFileSync(`/proc/${pid}/environ`);
    } catch {
      /* not ours to read as an ordinary user: the agent is non-dumpable */
    }
    // bubblewrap itself adds PWD (the workspace path) when it changes directory.
    if (hostView !== null) assert.deepEqual(envNames(hostView.toString('utf8')), ['PWD'], 'the agent environment holds only PWD');
  });
});

describe('env.pass and env.set are the only ways in', () => {
  const secrets = fakeCallerSecrets();
  const passName = `AIRLOCK_PASS_${fakeSecret('p').slice(2).toUpperCase()}`;
  const passValue = fakeSecret('passed');
  const setValue = fakeSecret('set');
  const shared = sharedSession(() => ({
    callerEnv: { ...process.env, ...secrets, [passName]: passValue },
    policy: { env: { pass: [passName, 'AIRLOCK_NOT_IN_CALLER_ENV'], set: { AIRLOCK_SET_BY_POLICY: setValue } } },
  }));
  before(() => shared.start());
  after(() => shared.close());

  test('a variable listed in env.pass reaches the sandbox with its value, and env.set adds its own', async () => {
    const r = await shared.get().run(['env', '-0']);
    const vars = r.stdout.split('\0').filter(Boolean);
    assert.ok(vars.includes(`${passName}=${passValue}`), `${passName} was passed`);
    assert.ok(vars.includes(`AIRLOCK_SET_BY_POLICY=${setValue}`), 'AIRLOCK_SET_BY_POLICY was set');
    // Listed but absent from the caller: not invented.
    assert.ok(!envNames(r.stdout).includes('AIRLOCK_NOT_IN_CALLER_ENV'));
    assert.deepEqual(unexpectedNames(envNames(r.stdout), [passName, 'AIRLOCK_SET_BY_POLICY']), []);
    assert.deepEqual(leakedSecrets(r.stdout, secrets), [], 'unlisted caller secrets visible');
  });
});

describe('airlock run (the CLI) does not hand its environment to the sandbox', () => {
  let ws = '';
  before(() => {
    ws = tempDir('airlock-ws-');
  });
  after(() => fs.rmSync(ws, { recursive: true, force: true }));

  test('`airlock run -- env` shows no caller secret and nothing beyond the allowlist', async () => {
    const secrets = fakeCallerSecrets();
    const r = await runCli(['run', '--', 'env', '-0'], { cwd: ws, env: secrets });
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(unexpectedNames(envNames(r.stdout)), [], 'variables beyond the allowlist');
    assert.deepEqual(leakedSecrets(r.stdout + r.stderr, secrets), [], 'caller secrets visible');
  });

  test('`airlock run` leaves no caller secret in any /proc/*/environ inside', async () => {
    const secrets = fakeCallerSecrets();
    const r = await runCli(['run', '--', 'sh', '-c', DUMP_ALL_ENVIRON], { cwd: ws, env: secrets });
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /readable=[1-9]/);
    assert.deepEqual(leakedSecrets(r.stdout + r.stderr, secrets), [], 'caller secrets visible in /proc/*/environ');
  });
});
