#!/usr/bin/env node
// Runs test/vscode/*.test.ts inside a real VS Code: starts code-server on a temporary
// workspace, opens the workbench in headless Chromium with a payload naming the
// extension under development (this repository) and the tests' entry
// (out/test/vscode/index.js), waits for the results file that entry writes, prints
// them, and stops everything. Builds nothing: run `npm run build` and
// `npx tsc -p tsconfig.json` first (scripts/test.sh does), and `scripts/code-server.sh`
// once. Exits non-zero on any failure, or when no test ran.
//
//   node scripts/test-vscode.mjs [--tap FILE] [--grep PATTERN] [--timeout SECONDS]
//                                [--extension DIR]...   (more extensions under development)
import { createRequire } from 'node:module';
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { parseArgs } from 'node:util';

const root = path.resolve(import.meta.dirname ?? path.dirname(new URL(import.meta.url).pathname), '..');
const require = createRequire(import.meta.url);

const { values: opts } = parseArgs({
  options: {
    tap: { type: 'string' },
    grep: { type: 'string' },
    timeout: { type: 'string', default: '600' },
    extension: { type: 'string', multiple: true, default: [] },
    // The agent terminal routed into the sandbox when the window loads (the profile
    // setting pointing at the shim the extension writes), as after Route + reload.
    routed: { type: 'boolean', default: false },
  },
});
const timeoutMs = Number(opts.timeout) * 1000;
if (!(timeoutMs > 0)) fail(`--timeout must be a number of seconds, got '${opts.timeout}'`);

const testsEntry = path.join(root, 'out', 'test', 'vscode', 'index.js');
const helpers = path.join(root, 'out', 'test', 'helpers', 'code-server.js');
for (const [file, fix] of [
  [testsEntry, "compile the tests: 'npx tsc -p tsconfig.json'"],
  [helpers, "compile the tests: 'npx tsc -p tsconfig.json'"],
  [path.join(root, 'dist', 'extension.js'), "build the extension: 'npm run build'"],
]) {
  if (!fs.existsSync(file)) fail(`${path.relative(root, file)} is missing: ${fix}`);
}
const { startCodeServer, openBrowser, tail } = require(helpers);

const started = Date.now();
const scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'airlock-vscode-test-'));
const workspace = path.join(scratch, 'workspace');
fs.mkdirSync(workspace);
const resultsFile = path.join(scratch, 'results', 'results.json');

let server;
let browser;
let results;
let problem;
let cleaned;
/** Closes the browser and stops code-server. On a signal the helper does it, and exits. */
const cleanup = () => (cleaned ??= (async () => {
  await browser?.close().catch((e) => console.error(`closing the browser: ${e.message}`));
  await server?.stop().catch((e) => console.error(`stopping code-server: ${e.message}`));
})());
process.on('exit', () => fs.rmSync(scratch, { recursive: true, force: true }));
try {
  // What the host has and a sandbox must not: a variable in the server's environment
  // and a file in its HOME (test/vscode/extension.test.ts looks for both). Fake values.
  const canary = `canary-${crypto.randomBytes(12).toString('hex')}`;
  const env = { AIRLOCK_VSCODE_RESULTS: resultsFile, AIRLOCK_VSCODE_CANARY: canary, ...(opts.routed ? { AIRLOCK_VSCODE_ROUTED: '1' } : {}) };
  if (opts.grep) env.AIRLOCK_VSCODE_GREP = opts.grep;
  // The agent terminal tool runs without asking (there is no person to click "Allow").
  server = await startCodeServer({ workspace, env, settings: { 'chat.permissions.default': 'autoApprove' } });
  fs.writeFileSync(path.join(server.home, 'airlock-canary.txt'), `file-${canary}\n`, { mode: 0o600 });
  if (opts.routed) {
    // Before the workbench loads (it reads this setting once): the path writeShim() uses.
    const settingsFile = path.join(server.userDataDir, 'User', 'settings.json');
    const settings = JSON.parse(fs.readFileSync(settingsFile, 'utf8'));
    settings['chat.tools.terminal.terminalProfile.linux'] = { path: path.join(server.userDataDir, 'User', 'globalStorage', 'airlock-dev.airlock', 'bin', 'bash'), args: [] };
    fs.writeFileSync(settingsFile, JSON.stringify(settings, null, 2));
  }
  console.log(`code-server on port ${server.port} (${elapsed()})`);
  // The extension host starts only when a workbench connects: the browser is that client.
  // The test fixture (a chat participant driving run_in_terminal) is installed as an
  // ordinary extension: the workbench honours only one extensionDevelopmentPath.
  fs.cpSync(path.join(root, 'test', 'vscode', 'fixture'), path.join(server.extensionsDir, 'airlock-dev.airlock-test-fixture-0.0.1'), { recursive: true });
  const extensionDevelopmentPath = [root, ...opts.extension.map((d) => path.resolve(d))];
  browser = await openBrowser(server.testUrl({ extensionDevelopmentPath, extensionTestsPath: testsEntry }));
  console.log(`workbench loading in headless Chromium (${elapsed()})`);
  results = await waitForResults(server, timeoutMs);
  console.log(`results after ${elapsed()}`);
} catch (e) {
  problem = e instanceof Error ? e.message : String(e);
  if (server) {
    const parts = [`code-server's output (last 40 lines):\n${tail(server.logs(), 40)}`];
    for (const f of server.logFiles().filter((f) => /exthost|remoteagent|server/i.test(path.basename(f)))) {
      parts.push(`${path.relative(server.userDataDir, f)} (last 40 lines):\n${tail(fs.readFileSync(f, 'utf8'), 40)}`);
    }
    if (browser) parts.push(`browser console (last 40 lines):\n${browser.consoleLines().slice(-40).join('\n')}`);
    problem += '\n\n' + parts.join('\n\n');
  }
} finally {
  await cleanup();
}

let passed = 0;
let failed = 0;
let skipped = 0;
if (results) {
  console.log(`VS Code ${results.vscode}, extension host ${results.execPath} ${results.node}`);
  for (const t of results.tests) {
    const mark = { passed: 'ok  ', failed: 'FAIL', skipped: 'skip' }[t.state];
    console.log(`  ${mark} ${t.title} (${t.durationMs} ms)`);
    if (t.error) console.log(t.error.split('\n').map((l) => `         ${l}`).join('\n'));
  }
  if (results.output.length) console.log(`extension host console:\n${results.output.map((l) => `  | ${l}`).join('\n')}`);
  passed = results.tests.filter((t) => t.state === 'passed').length;
  failed = results.tests.filter((t) => t.state === 'failed').length;
  skipped = results.tests.filter((t) => t.state === 'skipped').length;
  if (passed + failed === 0) problem = 'no test ran (is there a test/vscode/*.test.ts, and does --grep match one?)';
}
if (problem) {
  console.error(`VS Code tests: ${problem}`);
  failed += 1;
}
if (opts.tap) {
  const tap = results && !problem
    ? fs.readFileSync(resultsFile.replace(/\.json$/, '.tap'), 'utf8')
    : `TAP version 13\nnot ok 1 - the VS Code tests ran and reported\n  ---\n  error: ${JSON.stringify(problem.split('\n')[0])}\n  ...\n1..1\n# tests ${passed + failed + skipped}\n# pass ${passed}\n# fail ${failed}\n# skipped ${skipped}\n`;
  fs.mkdirSync(path.dirname(path.resolve(opts.tap)), { recursive: true });
  fs.writeFileSync(opts.tap, tap);
}
console.log(`(${elapsed()} in all)`);
console.log(`vscode: ${passed} passed, ${failed} failed, ${skipped} skipped`);
process.exit(failed > 0 ? 1 : 0);

/** Polls for the results JSON; fails early if code-server exits. */
async function waitForResults(server, ms) {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (fs.existsSync(resultsFile)) return JSON.parse(fs.readFileSync(resultsFile, 'utf8'));
    if (server.exitStatus()) throw new Error(`code-server ${server.exitStatus()} before the tests reported`);
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`timed out after ${ms / 1000} s waiting for ${resultsFile}, which out/test/vscode/index.js writes in the extension host when the tests end (did the extension host start? see the logs below)`);
}

function elapsed() {
  return `${((Date.now() - started) / 1000).toFixed(1)} s`;
}

function fail(message) {
  console.error(`test-vscode: ${message}`);
  process.exit(1);
}
