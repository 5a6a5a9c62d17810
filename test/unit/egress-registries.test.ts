/**
 * Registry discovery (runtime/egress/registries.ts): which hosts a session may reach by
 * default, read from the user's own npm, pip, cargo and go configuration, and what the
 * sandbox's tools are told. Every host here is made up (*.airlock-test.invalid); tools
 * run against a temporary HOME and a PATH holding only what the test puts there.
 */
import { test, after } from 'node:test';
import * as assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { discoverRegistries, RegistryCache, Registries, DiscoverOptions, stripCredentials } from '../../runtime/egress/registries';
import { readTomlStrings } from '../../runtime/egress/registries-cargo';

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'airlock-registries-'));
after(() => fs.rmSync(root, { recursive: true, force: true }));

let counter = 0;
/** A fresh HOME, workspace (with package.json so npm treats it as the project) and PATH dir. */
function setup(): { home: string; ws: string; bin: string; env: NodeJS.ProcessEnv } {
  const dir = path.join(root, String(++counter));
  const home = path.join(dir, 'home');
  const ws = path.join(dir, 'ws');
  const bin = path.join(dir, 'bin');
  for (const d of [home, ws, bin]) fs.mkdirSync(d, { recursive: true });
  fs.writeFileSync(path.join(ws, 'package.json'), '{}\n');
  fs.writeFileSync(path.join(dir, 'empty-npmrc'), '');
  const env: NodeJS.ProcessEnv = {
    PATH: bin,
    HOME: home,
    // Keep the machine's own npm and pip config out of the result.
    npm_config_userconfig: path.join(home, '.npmrc'),
    npm_config_globalconfig: path.join(dir, 'empty-npmrc'),
    PIP_CONFIG_FILE: os.devNull,
  };
  return { home, ws, bin, env };
}

function script(bin: string, name: string, body: string): void {
  fs.writeFileSync(path.join(bin, name), `#!/bin/sh\nPATH=/usr/bin:/bin\n${body}\n`, { mode: 0o755 });
}

function onMachinePath(name: string): string | null {
  for (const dir of (process.env.PATH ?? '').split(path.delimiter)) {
    const p = path.join(dir, name);
    try {
      fs.accessSync(p, fs.constants.X_OK);
      return fs.realpathSync(p);
    } catch {
      // Not here.
    }
  }
  return null;
}

/** Puts the real npm (and the node running these tests) on the test's PATH. */
function linkNpm(bin: string): boolean {
  const npm = onMachinePath('npm');
  if (!npm) return false;
  fs.symlinkSync(npm, path.join(bin, 'npm'));
  fs.symlinkSync(process.execPath, path.join(bin, 'node'));
  return true;
}

/** Puts the real python3 on the test's PATH (its binary, not a version-manager shim). */
function linkPython(bin: string): boolean {
  try {
    const exe = execFileSync('python3', ['-c', 'import sys, pip; print(sys.executable)'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
    fs.symlinkSync(fs.realpathSync(exe), path.join(bin, 'python3'));
    return true;
  } catch {
    return false;
  }
}

const discover = (s: { home: string; ws: string; env: NodeJS.ProcessEnv }, extra: Partial<DiscoverOptions> = {}): Promise<Registries> =>
  discoverRegistries({ workspace: s.ws, home: s.home, env: s.env, ...extra });

const noSecret = (r: Registries): void => assert.ok(!JSON.stringify(r).includes('secret'), 'no credential anywhere in the result');

test('npm registries from the user .npmrc become rules and sandbox variables, without credentials', async (t) => {
  const s = setup();
  if (!linkNpm(s.bin)) return t.skip('npm is not installed');
  fs.writeFileSync(path.join(s.home, '.npmrc'), [
    'registry=https://user:secret@registry.airlock-test.invalid/',
    '@acme:registry=https://mirror.airlock-test.invalid:8443/npm/',
    '//registry.airlock-test.invalid/:_authToken=secret-token',
    '',
  ].join('\n'));
  const r = await discover(s);
  assert.deepEqual(r.rules, ['mirror.airlock-test.invalid:8443', 'registry.airlock-test.invalid']);
  assert.deepEqual(r.env, {
    npm_config_registry: 'https://registry.airlock-test.invalid/',
    'npm_config_@acme:registry': 'https://mirror.airlock-test.invalid:8443/npm/',
  });
  assert.deepEqual(r.sources, [
    { tool: 'npm', url: 'https://mirror.airlock-test.invalid:8443/npm/', from: 'npm user config (@acme:registry)' },
    { tool: 'npm', url: 'https://registry.airlock-test.invalid/', from: 'npm user config (registry)' },
  ]);
  assert.deepEqual(r.warnings, []);
  noSecret(r);
});

test('a workspace .npmrc overrides the user one', async (t) => {
  const s = setup();
  if (!linkNpm(s.bin)) return t.skip('npm is not installed');
  fs.writeFileSync(path.join(s.home, '.npmrc'), 'registry=https://registry.airlock-test.invalid/\n');
  fs.writeFileSync(path.join(s.ws, '.npmrc'), 'registry=https://project.airlock-test.invalid/\n');
  const r = await discover(s);
  assert.deepEqual(r.rules, ['project.airlock-test.invalid']);
  assert.equal(r.env.npm_config_registry, 'https://project.airlock-test.invalid/');
  assert.deepEqual(r.sources.map((x) => x.from), ['npm project config (registry)']);
});

test('pip indexes from PIP_INDEX_URL and PIP_EXTRA_INDEX_URL are used, without credentials', async (t) => {
  const s = setup();
  if (!linkPython(s.bin)) return t.skip('python3 with pip is not installed');
  s.env.PIP_INDEX_URL = 'https://user:secret@pypi.airlock-test.invalid/simple';
  s.env.PIP_EXTRA_INDEX_URL = 'https://extra.airlock-test.invalid/simple https://mirror.airlock-test.invalid:8443/simple/';
  const r = await discover(s);
  assert.deepEqual(r.rules, ['extra.airlock-test.invalid', 'mirror.airlock-test.invalid:8443', 'pypi.airlock-test.invalid']);
  assert.deepEqual(r.env, {
    PIP_INDEX_URL: 'https://pypi.airlock-test.invalid/simple',
    PIP_EXTRA_INDEX_URL: 'https://extra.airlock-test.invalid/simple https://mirror.airlock-test.invalid:8443/simple/',
  });
  assert.deepEqual(r.sources.map((x) => x.from), ['PIP_INDEX_URL', 'PIP_EXTRA_INDEX_URL', 'PIP_EXTRA_INDEX_URL']);
  assert.deepEqual(r.warnings, []);
  noSecret(r);
});

test("with no index configured, the real pip names its default index and file host", async (t) => {
  const s = setup();
  if (!linkPython(s.bin)) return t.skip('python3 with pip is not installed');
  const r = await discover(s);
  assert.deepEqual(r.warnings, []);
  assert.deepEqual(r.sources.map((x) => x.from), ["pip's built-in default (index)", "pip's built-in default (file host)"]);
  assert.equal(r.rules.length, 2, 'two distinct hosts');
  assert.deepEqual(r.env, {}, "the sandbox's pip has the same default");
});

test('pip config follows pip precedence (variables, then [install], then [global]) and keeps trusted hosts', async () => {
  const s = setup();
  // A stand-in pip: `pip config list` prints Python reprs, one setting a line.
  script(s.bin, 'python3', [
    'if [ "$1" = "-c" ]; then exit 1; fi',
    "cat <<'EOF'",
    "global.index-url='https://u:secret@global.airlock-test.invalid/simple'",
    "install.index-url='https://install.airlock-test.invalid/simple'",
    "global.extra-index-url='\\nhttps://extra.airlock-test.invalid/simple\\nhttps://mirror.airlock-test.invalid:8443/simple'",
    "global.trusted-host='mirror.airlock-test.invalid:8443'",
    'EOF',
  ].join('\n'));
  const r = await discover(s);
  assert.deepEqual(r.rules, ['extra.airlock-test.invalid', 'install.airlock-test.invalid', 'mirror.airlock-test.invalid:8443']);
  assert.deepEqual(r.env, {
    PIP_INDEX_URL: 'https://install.airlock-test.invalid/simple',
    PIP_EXTRA_INDEX_URL: 'https://extra.airlock-test.invalid/simple https://mirror.airlock-test.invalid:8443/simple',
    PIP_TRUSTED_HOST: 'mirror.airlock-test.invalid:8443',
  });
  assert.equal(r.sources[0].from, 'pip config (install.index-url)');
  assert.deepEqual(r.warnings, [], "pip's default is not needed, so its failing query is no problem");
  noSecret(r);

  s.env.PIP_INDEX_URL = 'https://env.airlock-test.invalid/simple';
  const overridden = await discover(s);
  assert.equal(overridden.env.PIP_INDEX_URL, 'https://env.airlock-test.invalid/simple');
  assert.ok(!overridden.rules.includes('install.airlock-test.invalid'));
});

test("pip's default index is asked from pip, and a pip that cannot say gives a warning", async () => {
  const s = setup();
  script(s.bin, 'python3', 'if [ "$1" = "-c" ]; then echo https://index.airlock-test.invalid/simple/; echo files.airlock-test.invalid; fi');
  const r = await discover(s);
  assert.deepEqual(r.rules, ['files.airlock-test.invalid', 'index.airlock-test.invalid']);
  assert.deepEqual(r.warnings, []);

  script(s.bin, 'python3', 'if [ "$1" = "-c" ]; then echo "ModuleNotFoundError" >&2; exit 1; fi');
  const broken = await discover(s);
  assert.deepEqual(broken.rules, []);
  assert.equal(broken.warnings.length, 1);
  assert.match(broken.warnings[0], /^pip: could not ask pip for its default index.*--allow HOST/);
});

test('cargo source replacement, named registries and registry variables are followed, without credentials', async () => {
  const s = setup();
  fs.mkdirSync(path.join(s.home, '.cargo'));
  fs.writeFileSync(path.join(s.home, '.cargo', 'config.toml'), [
    '[source.crates-io]',
    'replace-with = "mirror"  # every download goes through the mirror',
    '',
    '[source.mirror]',
    'registry = "sparse+https://mirror.airlock-test.invalid:8443/index/"',
    '',
    '[registries]',
    'acme = { index = "https://user:secret@git.airlock-test.invalid/index.git", token = "secret-token" }',
    'old = { index = "https://old.airlock-test.invalid/index" }',
    '',
    '[registry]',
    'default = "acme"',
    'token = "secret-token"',
  ].join('\n'));
  // The workspace's config wins over the home one.
  fs.mkdirSync(path.join(s.ws, '.cargo'));
  fs.writeFileSync(path.join(s.ws, '.cargo', 'config.toml'), '[registries.acme]\nindex = "sparse+https://acme.airlock-test.invalid/"\n');
  s.env.CARGO_REGISTRIES_OLD_INDEX = 'https://new.airlock-test.invalid/index';

  const r = await discover(s);
  assert.deepEqual(r.rules, ['acme.airlock-test.invalid', 'mirror.airlock-test.invalid:8443', 'new.airlock-test.invalid']);
  assert.deepEqual(r.env, {
    CARGO_REGISTRIES_ACME_INDEX: 'sparse+https://acme.airlock-test.invalid/',
    CARGO_REGISTRIES_OLD_INDEX: 'https://new.airlock-test.invalid/index',
    CARGO_REGISTRY_DEFAULT: 'acme',
  });
  assert.deepEqual(r.sources, [
    { tool: 'cargo', url: 'sparse+https://mirror.airlock-test.invalid:8443/index/', from: '~/.cargo/config.toml [source.mirror]' },
    { tool: 'cargo', url: 'sparse+https://acme.airlock-test.invalid/', from: `${path.join(s.ws, '.cargo', 'config.toml')} [registries.acme]` },
    { tool: 'cargo', url: 'https://new.airlock-test.invalid/index', from: 'CARGO_REGISTRIES_OLD_INDEX' },
  ]);
  assert.deepEqual(r.warnings, []);
  noSecret(r);
});

test('the TOML reader finds registry strings through quoting, inline tables, arrays and multi-line strings', () => {
  const found = readTomlStrings([
    '# comment [source.no]',
    '[build]',
    'rustflags = [',
    '  "-C", "link-arg=]", # a bracket inside a string',
    '  "[source.fake]",',
    ']',
    'note = """',
    '[source.fake]',
    'registry = "https://fake.airlock-test.invalid/"',
    '"""',
    '[source."my.mirror"]',
    "registry = 'https://literal.airlock-test.invalid/\\n'",
    'source.dotted.registry = "https://dotted.airlock-test.invalid/\\u0041"',
    '[[bin]]',
    'index = "https://array-of-tables.airlock-test.invalid/"',
    '[registries.x]',
    'token = "secret"',
  ].join('\n'));
  assert.deepEqual(found, [
    { path: ['source', 'my.mirror', 'registry'], value: 'https://literal.airlock-test.invalid/\\n' },
    { path: ['source', 'my.mirror', 'source', 'dotted', 'registry'], value: 'https://dotted.airlock-test.invalid/A' },
  ]);
});

test('go proxies and the checksum database come from go env; direct and off name no host', async () => {
  const s = setup();
  const json = JSON.stringify({
    GOPROXY: 'https://user:secret@goproxy.airlock-test.invalid/mod|mirror.airlock-test.invalid:8443,direct',
    GOSUMDB: 'sumdb.airlock-test.invalid+033de0ae+Ac4zctda0e5eza+HJyk9SxEdh+s3Ux18htTTAD8OuAn8 https://sum-mirror.airlock-test.invalid/',
    GONOSUMDB: '',
    GOPRIVATE: 'corp.airlock-test.invalid/*',
    GONOPROXY: '',
  });
  script(s.bin, 'go', `[ "$GOTOOLCHAIN" = local ] || exit 3\ncat <<'EOF'\n${json}\nEOF`);
  const r = await discover(s);
  assert.deepEqual(r.rules, ['goproxy.airlock-test.invalid', 'mirror.airlock-test.invalid:8443', 'sum-mirror.airlock-test.invalid']);
  assert.deepEqual(r.env, {
    GOPROXY: 'https://goproxy.airlock-test.invalid/mod|mirror.airlock-test.invalid:8443,direct',
    GOSUMDB: 'sumdb.airlock-test.invalid+033de0ae+Ac4zctda0e5eza+HJyk9SxEdh+s3Ux18htTTAD8OuAn8 https://sum-mirror.airlock-test.invalid/',
    GOPRIVATE: 'corp.airlock-test.invalid/*',
  });
  assert.deepEqual(r.warnings, []);
  noSecret(r);

  script(s.bin, 'go', `echo '${JSON.stringify({ GOPROXY: 'file:///srv/goproxy,off', GOSUMDB: 'sumdb.airlock-test.invalid+033de0ae' })}'`);
  const local = await discover(s);
  assert.deepEqual(local.rules, ['sumdb.airlock-test.invalid'], 'a GOSUMDB without a URL is reached at its name');
  assert.equal(local.warnings.length, 1);
  assert.match(local.warnings[0], /^go: go env GOPROXY is a file: URL.*ignored/);
});

test('a tool missing from PATH is skipped without a warning', async () => {
  const s = setup();
  const r = await discover(s);
  assert.deepEqual(r, { rules: [], sources: [], env: {}, warnings: [] });
});

test('a tool that does not answer in time gives a warning, and what it started is killed', async () => {
  const s = setup();
  const pidFile = path.join(s.home, 'child.pid');
  script(s.bin, 'npm', `sleep 30 &\necho $! > ${pidFile}\nwait`);
  const started = Date.now();
  const r = await discover(s, { timeoutMs: 300 });
  assert.ok(Date.now() - started < 3000, 'discovery ends at the deadline');
  assert.deepEqual(r.warnings, [`npm: \`npm config list -l\` did not answer within 300 ms, so its registries are not allowed. Run it in ${s.ws} to see why, or pass --allow HOST.`]);
  const child = Number(fs.readFileSync(pidFile, 'utf8'));
  await new Promise((res) => setTimeout(res, 100));
  // Gone, or a zombie waiting for a reaper (the test's own container may have none).
  let state = 'gone';
  try {
    state = fs.readFileSync(`/proc/${child}/stat`, 'utf8').replace(/^.*\) /s, '')[0];
  } catch {
    // No such process.
  }
  assert.ok(state === 'gone' || state === 'Z', `the tool's own child is killed too (state ${state})`);
});

test('a failing tool gives a warning, and a registry that is not http(s) is ignored with one', async () => {
  const s = setup();
  script(s.bin, 'npm', 'exit 2');
  const failed = await discover(s);
  assert.deepEqual(failed.rules, []);
  assert.match(failed.warnings.join('\n'), /^npm: `npm config list -l` failed \(exit 2\)/);

  script(s.bin, 'npm', `echo '; "user" config from /x/.npmrc'\necho 'registry = "file:///srv/registry/"'`);
  const local = await discover(s);
  assert.deepEqual(local.rules, []);
  assert.deepEqual(local.warnings, ['npm: npm user config (registry) is a file: URL, which the egress proxy cannot reach; it is ignored (only http and https registries can be allowed).']);
});

test('tools are asked in parallel, so discovery takes as long as the slowest one', async () => {
  const s = setup();
  script(s.bin, 'npm', `sleep 0.8\necho 'registry = "https://registry.airlock-test.invalid/"'`);
  script(s.bin, 'go', `sleep 0.8\necho '{"GOPROXY":"https://goproxy.airlock-test.invalid"}'`);
  const started = Date.now();
  const r = await discover(s);
  assert.ok(Date.now() - started < 1500, `took ${Date.now() - started} ms`);
  assert.deepEqual(r.rules, ['goproxy.airlock-test.invalid', 'registry.airlock-test.invalid']);
});

test('credential stripping removes the whole user:password part from every URL in a list', () => {
  assert.equal(stripCredentials('https://u:p@ss,w@a.airlock-test.invalid/x|https://v:q@b.airlock-test.invalid,direct'),
    'https://a.airlock-test.invalid/x|https://b.airlock-test.invalid,direct');
  assert.equal(stripCredentials('sparse+https://tok@c.airlock-test.invalid/?q=a@b'), 'sparse+https://c.airlock-test.invalid/?q=a@b');
});

// ------------------------------------------------------------------------ cache

function fakeDiscovery(): { calls: DiscoverOptions[]; release: (i: number) => void; fn: typeof discoverRegistries } {
  const calls: DiscoverOptions[] = [];
  const waiting: Array<() => void> = [];
  return {
    calls,
    release: (i) => waiting[i](),
    fn: (opts) => {
      const n = calls.push(opts);
      return new Promise((res) => {
        waiting.push(() => res({ rules: [`r${n}`], sources: [], env: {}, warnings: [] }));
      });
    },
  };
}

const opts = (workspace: string): DiscoverOptions => ({ workspace, home: '/h', env: {} });

test('concurrent callers share one discovery, and a result is reused within the TTL', async () => {
  let clock = 0;
  const d = fakeDiscovery();
  const cache = new RegistryCache(d.fn, 60_000, () => clock);
  const a = cache.get(opts('/ws'));
  const b = cache.get(opts('/ws'));
  d.release(0);
  assert.deepEqual((await a).rules, ['r1']);
  assert.equal(await a, await b);
  clock = 59_999;
  assert.deepEqual((await cache.get(opts('/ws'))).rules, ['r1']);
  assert.equal(d.calls.length, 1);
});

test('after the TTL the old result is returned at once while one refresh runs in the background', async () => {
  let clock = 0;
  const d = fakeDiscovery();
  const cache = new RegistryCache(d.fn, 60_000, () => clock);
  const first = cache.get(opts('/ws'));
  d.release(0);
  await first;
  clock = 60_000;
  assert.deepEqual((await cache.get(opts('/ws'))).rules, ['r1'], 'stale answer, no waiting');
  assert.deepEqual((await cache.get(opts('/ws'))).rules, ['r1']);
  assert.equal(d.calls.length, 2, 'one refresh for both stale callers');
  d.release(1);
  await new Promise((res) => setImmediate(res));
  assert.deepEqual((await cache.get(opts('/ws'))).rules, ['r2']);
  assert.equal(d.calls.length, 2);
});

test('a workspace with its own .npmrc is discovered on its own, and a failed discovery is not cached', async (t) => {
  const a = fs.mkdtempSync(path.join(os.tmpdir(), 'airlock-reg-a-'));
  t.after(() => fs.rmSync(a, { recursive: true, force: true }));
  fs.writeFileSync(path.join(a, '.npmrc'), 'registry=http://mirror.airlock-test.invalid/\n');
  let fail = true;
  let calls = 0;
  const cache = new RegistryCache(async (o) => {
    calls++;
    if (fail) throw new Error('boom');
    return { rules: [o.workspace], sources: [], env: {}, warnings: [] };
  });
  await assert.rejects(cache.get(opts(a)), /boom/);
  fail = false;
  assert.deepEqual((await cache.get(opts(a))).rules, [a]);
  assert.deepEqual((await cache.get(opts('/b'))).rules, ['/b']);
  assert.equal(calls, 3);
});

test('workspaces without configuration of their own share one discovery per home', async () => {
  let calls = 0;
  const cache = new RegistryCache(async (o) => {
    calls++;
    return { rules: [o.home], sources: [], env: {}, warnings: [] };
  });
  await Promise.all(['/x', '/y', '/z'].map((w) => cache.get(opts(w))));
  assert.equal(calls, 1);
  await cache.get({ ...opts('/x'), home: '/other' });
  assert.equal(calls, 2, 'another home is another discovery');
});
