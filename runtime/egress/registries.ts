/**
 * The package registries the user's own tools are configured to use, so a session can
 * reach them by default without any hard-coded host: private mirrors just work, and
 * a user who set no mirror gets whatever their tools' defaults are (as the tools
 * report them). Each tool is asked itself where it can tell (it knows its precedence
 * rules); cargo's files are read directly (registries-cargo.ts).
 *
 * The sandbox's HOME is empty, so the result also carries environment variables that
 * make the tools inside use the same registries. Credentials never leave this module:
 * URLs lose their user:password@ part, and npm auth keys are never read.
 */
import { spawn } from 'node:child_process';
import * as fs from 'node:fs/promises';
import { existsSync } from 'node:fs';
import * as path from 'node:path';
import { readCargo } from './registries-cargo';

export { CARGO_DEFAULT_REGISTRY_NOTE } from './registries-cargo';

export interface RegistrySource {
  tool: 'npm' | 'pip' | 'cargo' | 'go';
  /** The registry URL, credentials stripped. */
  url: string;
  /** Where it was found, e.g. 'npm user config (registry)', '~/.cargo/config.toml [source.mirror]'. */
  from: string;
}

export interface Registries {
  /** Allow rules, one per host (with port only when the URL has an explicit non-default port). De-duplicated, sorted. */
  rules: string[];
  sources: RegistrySource[];
  /** Variables for processes inside the sandbox so the tools there use the same registries. Never contain credentials. */
  env: Record<string, string>;
  /** Problems worth telling the user (a tool's config could not be read), never values. */
  warnings: string[];
}

export interface DiscoverOptions {
  /** Project config (.npmrc, .cargo/config.toml in the workspace) counts. */
  workspace: string;
  /** The user's home (the daemon's HOME). */
  home: string;
  /** The environment the tools would see (npm_config_*, PIP_*, GOPROXY, CARGO_HOME...). */
  env: NodeJS.ProcessEnv;
  /** Per tool command; default 5000. */
  timeoutMs?: number;
}

/** What one tool's reader found, before credentials are stripped and rules derived. */
export interface ToolFindings {
  sources: RegistrySource[];
  env: Record<string, string>;
  warnings: string[];
}

const DEFAULT_TIMEOUT_MS = 5000;
/** More output than any config listing produces means something else is answering. */
const MAX_OUTPUT = 4 * 1024 * 1024;

type RunResult =
  | { kind: 'ok'; stdout: string }
  | { kind: 'missing' }
  | { kind: 'timeout' }
  | { kind: 'failed'; why: string; stderr: string };

interface Context {
  opts: DiscoverOptions;
  cwd: string;
  run(cmd: string, args: string[], extraEnv?: Record<string, string>): Promise<RunResult>;
}

/**
 * Runs CMD without a shell. The child gets its own process group so a timeout kills
 * whatever it started too (a wrapper script's `sleep` would otherwise hold the pipes
 * open), and the promise settles at the deadline whatever the child does.
 */
function runCommand(cmd: string, args: string[], cwd: string, env: NodeJS.ProcessEnv, timeoutMs: number): Promise<RunResult> {
  return new Promise((resolve) => {
    let settled = false;
    const done = (r: RunResult): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      resolve(r);
    };
    const child = spawn(cmd, args, { cwd, env, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    let size = 0;
    const collect = (into: Buffer[]) => (b: Buffer): void => {
      size += b.length;
      if (size > MAX_OUTPUT) {
        kill();
        done({ kind: 'failed', why: 'printed too much output', stderr: '' });
      } else into.push(b);
    };
    const kill = (): void => {
      try { if (child.pid) process.kill(-child.pid, 'SIGKILL'); } catch { /* already gone */ }
    };
    const timer = setTimeout(() => { kill(); done({ kind: 'timeout' }); }, timeoutMs);
    child.stdout.on('data', collect(out));
    child.stderr.on('data', collect(err));
    child.on('error', (e: NodeJS.ErrnoException) => {
      done(e.code === 'ENOENT' ? { kind: 'missing' } : { kind: 'failed', why: e.code ?? 'could not start', stderr: '' });
    });
    child.on('close', (code, signal) => {
      const stderr = Buffer.concat(err).toString('utf8');
      if (code === 0) done({ kind: 'ok', stdout: Buffer.concat(out).toString('utf8') });
      else done({ kind: 'failed', why: signal ? `killed by ${signal}` : `exit ${code}`, stderr });
    });
  });
}

/** A warning for a command that did not give an answer, naming it and the way out. */
function commandWarning(tool: string, command: string, r: RunResult, ctx: Context): string {
  const what = r.kind === 'timeout'
    ? `did not answer within ${ctx.opts.timeoutMs ?? DEFAULT_TIMEOUT_MS} ms`
    : r.kind === 'failed' ? `failed (${r.why})` : 'printed output that could not be read';
  return `${tool}: \`${command}\` ${what}, so its registries are not allowed. Run it in ${ctx.cwd} to see why, or pass --allow HOST.`;
}

/**
 * `npm config list -l`, not `--json`: the JSON listing silently drops any value npm
 * thinks holds a secret, which includes a registry URL with user:password@ in it. The
 * text listing shows every layer (default, global, user, project, env, cli); the line
 * that is in effect is the one not commented out with "; overridden by".
 */
async function readNpm(ctx: Context): Promise<ToolFindings> {
  const found: ToolFindings = { sources: [], env: {}, warnings: [] };
  const command = 'npm config list -l';
  // No update check (a network request) and no log file written into the user's home.
  const r = await ctx.run('npm', ['config', 'list', '-l', '--no-update-notifier', '--logs-max=0']);
  if (r.kind === 'missing') return found;
  if (r.kind !== 'ok') return { ...found, warnings: [commandWarning('npm', command, r, ctx)] };
  let layer = 'npm';
  for (const line of r.stdout.split('\n')) {
    const section = /^; "([a-z]+)" config from /.exec(line);
    if (section) layer = section[1];
    // Only registry keys are looked at; auth keys (_auth, :_authToken...) never are.
    const m = /^(registry|@[^\s:=]+:registry) = (".*")\s*$/.exec(line);
    if (!m) continue;
    let url: unknown;
    try { url = JSON.parse(m[2]); } catch { continue; }
    if (typeof url !== 'string' || !url) continue;
    const key = m[1];
    const from = `npm ${layer} config (${key})`;
    found.sources.push({ tool: 'npm', url, from });
    const scrubbed = stripCredentials(url);
    if (scrubbed.includes('***')) {
      // npm masks what looks like a token (a UUID, npm_...) even in the path; the host is
      // still right, but the masked URL would not work inside the sandbox.
      found.warnings.push(`npm: ${from} contains a part npm hides as a secret, so it is not passed into the sandbox; set ${key} in the workspace .npmrc instead.`);
    } else if (key !== 'registry' && key.slice(1).includes('_')) {
      // npm reads "_" in npm_config_* names as "-", so this scope cannot travel by env.
      found.warnings.push(`npm: ${from} cannot be passed into the sandbox through the environment (npm reads "_" in variable names as "-"); set it in the workspace .npmrc instead.`);
    } else {
      found.env[`npm_config_${key}`] = url;
    }
  }
  return found;
}

/** Reads a Python string literal as `pip config list` prints it (repr). */
function pythonString(lit: string): string | null {
  const q = lit[0];
  if ((q !== "'" && q !== '"') || lit[lit.length - 1] !== q) return null;
  return lit.slice(1, -1).replace(/\\(x[0-9a-fA-F]{2}|u[0-9a-fA-F]{4}|U[0-9a-fA-F]{8}|.)/g, (_, e: string) => {
    if ('xuU'.includes(e[0]) && e.length > 1) return String.fromCodePoint(parseInt(e.slice(1), 16));
    return ({ n: '\n', t: '\t', r: '\r' } as Record<string, string>)[e] ?? e;
  });
}

/** Asks pip for its own default index, so no index host is written here. */
const PIP_DEFAULT_INDEX = 'from pip._internal.models.index import PyPI; print(PyPI.simple_url); print(PyPI.file_storage_domain)';

async function readPip(ctx: Context): Promise<ToolFindings> {
  const found: ToolFindings = { sources: [], env: {}, warnings: [] };
  const [list, dflt] = await Promise.all([
    ctx.run('python3', ['-m', 'pip', 'config', 'list']),
    ctx.run('python3', ['-c', PIP_DEFAULT_INDEX]),
  ]);
  const pipMissing = list.kind === 'missing' || (list.kind === 'failed' && /No module named pip/.test(list.stderr));
  const conf = new Map<string, string>();
  if (list.kind === 'ok') {
    for (const line of list.stdout.split('\n')) {
      const m = /^([^=\s]+)=(.*)$/.exec(line.trim());
      const v = m && pythonString(m[2]);
      if (m && v !== null) conf.set(m[1], v);
    }
  } else if (!pipMissing) {
    found.warnings.push(commandWarning('pip', 'python3 -m pip config list', list, ctx));
  }
  // pip's own precedence for `pip install`: PIP_* variables, then [install], then [global].
  const setting = (name: string, envName: string): { value: string; from: string } | null => {
    const fromEnv = ctx.opts.env[envName];
    if (fromEnv) return { value: fromEnv, from: envName };
    for (const key of [`:env:.${name}`, `install.${name}`, `global.${name}`]) {
      const value = conf.get(key);
      if (value) return { value, from: key.startsWith(':env:') ? envName : `pip config (${key})` };
    }
    return null;
  };

  const index = setting('index-url', 'PIP_INDEX_URL');
  if (index) {
    found.sources.push({ tool: 'pip', url: index.value.trim(), from: index.from });
    found.env.PIP_INDEX_URL = index.value.trim();
  }
  const extra = setting('extra-index-url', 'PIP_EXTRA_INDEX_URL');
  if (extra) {
    const urls = extra.value.split(/\s+/).filter(Boolean);
    for (const url of urls) found.sources.push({ tool: 'pip', url, from: extra.from });
    if (urls.length) found.env.PIP_EXTRA_INDEX_URL = urls.join(' ');
  }
  const trusted = setting('trusted-host', 'PIP_TRUSTED_HOST');
  if (trusted) found.env.PIP_TRUSTED_HOST = trusted.value.split(/\s+/).filter(Boolean).join(' ');

  const noIndex = /^(1|true|yes|on)$/i.test(setting('no-index', 'PIP_NO_INDEX')?.value ?? '');
  if (!index && !noIndex && !pipMissing && list.kind === 'ok') {
    // pip's default index applies. Installs need both its index host and the separate
    // host its files are served from.
    const lines = dflt.kind === 'ok' ? dflt.stdout.split('\n').map((l) => l.trim()) : [];
    if (lines[0] && lines[1] && /^[a-z0-9.-]+$/i.test(lines[1])) {
      found.sources.push({ tool: 'pip', url: lines[0], from: "pip's built-in default (index)" });
      found.sources.push({ tool: 'pip', url: `https://${lines[1]}/`, from: "pip's built-in default (file host)" });
    } else {
      found.warnings.push(`pip: could not ask pip for its default index (this pip's internals differ), so it is not allowed; set index-url in pip's config or pass --allow HOST for the index and its file host.`);
    }
  }
  return found;
}

const GO_VARS = ['GOPROXY', 'GOSUMDB', 'GONOSUMDB', 'GOPRIVATE', 'GONOPROXY'] as const;

async function readGo(ctx: Context): Promise<ToolFindings> {
  const found: ToolFindings = { sources: [], env: {}, warnings: [] };
  const command = `go env -json ${GO_VARS.join(' ')}`;
  // GOTOOLCHAIN=local: a go.mod asking for a newer Go would otherwise make `go env`
  // download that toolchain first.
  const r = await ctx.run('go', ['env', '-json', ...GO_VARS], { GOTOOLCHAIN: 'local' });
  if (r.kind === 'missing') return found;
  if (r.kind !== 'ok') return { ...found, warnings: [commandWarning('go', command, r, ctx)] };
  let vars: Record<string, unknown>;
  try {
    vars = JSON.parse(r.stdout) as Record<string, unknown>;
  } catch {
    return { ...found, warnings: [commandWarning('go', command, { kind: 'failed', why: 'unreadable output', stderr: '' }, ctx)] };
  }
  const get = (k: string): string => (typeof vars[k] === 'string' ? (vars[k] as string).trim() : '');

  // Entries are tried in order; "direct" means fetching from each module's own VCS host
  // (any host at all), and "off" forbids fetching. Neither names a host to allow: a
  // session that needs direct fetches (GOPRIVATE modules go direct too) needs --allow.
  for (const entry of get('GOPROXY').split(/[,|]/).map((e) => e.trim())) {
    if (!entry || entry === 'direct' || entry === 'off') continue;
    // Go's own rule: a bare host/path that is not an absolute path means https.
    const url = /[.:/]/.test(entry) && !entry.includes(':/') && !path.isAbsolute(entry) ? `https://${entry}` : entry;
    found.sources.push({ tool: 'go', url, from: 'go env GOPROXY' });
  }
  // GOSUMDB is "off", "name", "name+key" or "name+key url"; without a url go contacts
  // https://name, so the name is the host.
  const sumdb = get('GOSUMDB');
  if (sumdb && sumdb !== 'off') {
    const [name, url] = sumdb.split(/\s+/);
    const host = name.split('+')[0];
    if (url) found.sources.push({ tool: 'go', url, from: 'go env GOSUMDB' });
    else if (/^[a-z0-9.-]+(:\d+)?$/i.test(host)) found.sources.push({ tool: 'go', url: `https://${host}`, from: 'go env GOSUMDB' });
    else found.warnings.push('go: GOSUMDB does not name a host, so no checksum database is allowed; fix GOSUMDB or set it to off.');
  }
  for (const k of GO_VARS) {
    if (get(k)) found.env[k] = get(k);
  }
  return found;
}

/**
 * Removes user:password@ from every URL in VALUE (a single URL or a list separated by
 * spaces, commas or pipes). Userinfo ends at the last "@" before the path, so a
 * password containing "@" or "," is removed whole.
 */
export function stripCredentials(value: string): string {
  return value.replace(/([a-z][a-z0-9+.-]*:\/\/)[^\s/?#]*@/gi, '$1');
}

/** The allow rule for URL: host, plus port only when explicit and non-default. */
function ruleFor(src: RegistrySource): { rule: string } | { warning: string } {
  let url: URL;
  try {
    url = new URL(src.url.trim().replace(/^(sparse|registry)\+/i, ''));
  } catch {
    return { warning: `${src.tool}: ${src.from} is not a valid URL, so it is not allowed; fix the setting or pass --allow HOST.` };
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    return { warning: `${src.tool}: ${src.from} is a ${url.protocol} URL, which the egress proxy cannot reach; it is ignored (only http and https registries can be allowed).` };
  }
  if (!url.hostname) return { warning: `${src.tool}: ${src.from} has no host; fix the setting or pass --allow HOST.` };
  return { rule: url.port ? `${url.hostname}:${url.port}` : url.hostname };
}

async function workingDir(opts: DiscoverOptions): Promise<string> {
  try {
    if ((await fs.stat(opts.workspace)).isDirectory()) return path.resolve(opts.workspace);
  } catch {
    // Fall through: a missing cwd would look like a missing tool (spawn reports ENOENT).
  }
  return opts.home;
}

export async function discoverRegistries(opts: DiscoverOptions): Promise<Registries> {
  const cwd = await workingDir(opts);
  const timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  const ctx: Context = {
    opts,
    cwd,
    run: (cmd, args, extraEnv) => runCommand(cmd, args, cwd, { ...opts.env, HOME: opts.home, ...extraEnv }, timeoutMs),
  };
  const guard = (tool: string, p: Promise<ToolFindings>): Promise<ToolFindings> =>
    p.catch(() => ({ sources: [], env: {}, warnings: [`${tool}: registry discovery failed unexpectedly, so its registries are not allowed; pass --allow HOST.`] }));
  const all = await Promise.all([
    guard('npm', readNpm(ctx)),
    guard('pip', readPip(ctx)),
    guard('cargo', readCargo({ workspace: cwd, home: opts.home, env: opts.env })),
    guard('go', readGo(ctx)),
  ]);

  const rules = new Set<string>();
  const result: Registries = { rules: [], sources: [], env: {}, warnings: [] };
  for (const found of all) {
    for (const src of found.sources) {
      const r = ruleFor(src);
      if ('rule' in r) rules.add(r.rule);
      else result.warnings.push(r.warning);
      result.sources.push({ ...src, url: stripCredentials(src.url) });
    }
    for (const [k, v] of Object.entries(found.env)) result.env[k] = stripCredentials(v);
    result.warnings.push(...found.warnings);
  }
  result.rules = [...rules].sort();
  return result;
}

/**
 * Whether WORKSPACE or a folder above it (but HOME) has configuration of its own that changes the
 * registries (an .npmrc, a .cargo/config): only then is it discovered on its own.
 * Every other workspace shares one discovery per home, so fifty sessions in fifty new
 * folders run npm and pip once, not fifty times.
 */
function hasProjectConfig(workspace: string, home: string): boolean {
  for (let dir = path.resolve(workspace); ; dir = path.dirname(dir)) {
    // The home folder's own files are user configuration, part of every discovery.
    const own = dir !== path.resolve(home) && ['.npmrc', '.cargo/config.toml', '.cargo/config'].some((f) => existsSync(path.join(dir, f)));
    if (own) return true;
    if (dir === path.dirname(dir)) return false;
  }
}

interface Entry {
  value?: Registries;
  at: number;
  pending?: Promise<Registries>;
}

/**
 * Caches discoverRegistries per workspace (and home): a result is reused for TTL ms,
 * then returned stale while one refresh runs in the background; concurrent callers
 * share one discovery. Results are shared between callers: treat them as read-only.
 */
export class RegistryCache {
  private readonly entries = new Map<string, Entry>();

  constructor(
    private readonly discover: typeof discoverRegistries = discoverRegistries,
    private readonly ttlMs = 60_000,
    private readonly now: () => number = Date.now,
  ) {}

  get(opts: DiscoverOptions): Promise<Registries> {
    const key = `${hasProjectConfig(opts.workspace, opts.home) ? path.resolve(opts.workspace) : ''}\0${opts.home}`;
    let entry = this.entries.get(key);
    if (!entry) {
      entry = { at: 0 };
      this.entries.set(key, entry);
    }
    if (entry.value && this.now() - entry.at < this.ttlMs) return Promise.resolve(entry.value);
    if (!entry.pending) entry.pending = this.refresh(key, entry, opts);
    // Stale: answer now and let the refresh land for the next caller.
    return entry.value ? Promise.resolve(entry.value) : entry.pending;
  }

  private refresh(key: string, entry: Entry, opts: DiscoverOptions): Promise<Registries> {
    const p = this.discover(opts).then(
      (value) => {
        entry.value = value;
        entry.at = this.now();
        entry.pending = undefined;
        return value;
      },
      (e: unknown) => {
        entry.pending = undefined;
        // Nothing to fall back on: forget the entry so the next caller tries again.
        if (!entry.value) this.entries.delete(key);
        throw e;
      },
    );
    // A background refresh's failure has no caller waiting; keep the stale value.
    if (entry.value) p.catch(() => undefined);
    return p;
  }
}
