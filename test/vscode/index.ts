/**
 * The test entry VS Code loads in the real extension host (the payload's
 * extensionTestsPath, see scripts/test-vscode.mjs): runs mocha over every
 * out/test/vscode/*.test.js and writes the results, as JSON and as TAP, where the
 * runner waits for them. run() resolves once they are written, failures or not: the
 * results file is the verdict, not the extension host's exit.
 *
 * Where: $AIRLOCK_VSCODE_RESULTS (a .json path; the TAP goes beside it as .tap), or
 * else airlock-vscode-results.json in the first workspace folder.
 * Tests titled "[after reload]" run after a window reload a test asked for (stage.ts).
 * Options: $AIRLOCK_VSCODE_GREP (only tests whose full title matches), and
 * $AIRLOCK_VSCODE_TIMEOUT_MS (per test, default 60000).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import Mocha from 'mocha';
import * as vscode from 'vscode';
import { AFTER_RELOAD, readStage, setReloadState, stageFile, takeReloadRequest } from './stage';

export interface TestResult {
  /** The full title: describe titles and the test's, joined by spaces. */
  title: string;
  state: 'passed' | 'failed' | 'skipped';
  durationMs: number;
  error?: string;
}

export interface Results {
  vscode: string;
  node: string;
  execPath: string;
  durationMs: number;
  tests: TestResult[];
  /** What the tests wrote with console.* (the browser's copy of it is partial). */
  output: string[];
}

const MAX_OUTPUT_LINES = 2000;

export function resultsFile(): string {
  const fromEnv = process.env.AIRLOCK_VSCODE_RESULTS;
  if (fromEnv) return fromEnv;
  const folder = vscode.workspace.workspaceFolders?.[0]?.uri.fsPath;
  if (!folder) throw new Error('no results file: set AIRLOCK_VSCODE_RESULTS or open a workspace folder');
  return path.join(folder, 'airlock-vscode-results.json');
}

export async function run(): Promise<void> {
  const file = resultsFile();
  // Stage 1 is this entry loaded again after a window reload that stage 0 asked for.
  const before = readStage(file);
  const started = before?.startedAt ?? Date.now();
  const tests = (before?.tests ?? []) as TestResult[];
  const output: string[] = before?.output ?? [];
  setReloadState(before?.state);
  const restoreConsole = teeConsole(output);
  try {
    await runMocha(tests, before ? 1 : 0);
  } catch (e) {
    tests.push({ title: 'the VS Code test files load and run', state: 'failed', durationMs: 0, error: describeError(e) });
  } finally {
    restoreConsole();
  }
  const reload = before ? undefined : takeReloadRequest();
  if (reload) {
    // The runner keeps waiting for the results file; the next extension host writes it.
    fs.mkdirSync(path.dirname(file), { recursive: true });
    writeAtomically(stageFile(file), JSON.stringify({ tests, output, state: reload, startedAt: started }));
    output.push('(reloading the window)');
    await vscode.commands.executeCommand('workbench.action.reloadWindow');
    return;
  }
  const results: Results = {
    vscode: vscode.version,
    node: process.version,
    execPath: process.execPath,
    durationMs: Date.now() - started,
    tests,
    output,
  };
  fs.mkdirSync(path.dirname(file), { recursive: true });
  // TAP first and the JSON last, each renamed into place: the JSON appearing whole is
  // the runner's signal that everything is written.
  writeAtomically(file.replace(/\.json$/, '') + '.tap', toTap(results));
  writeAtomically(file, JSON.stringify(results, null, 2));
}

/** Stage 0: every test but the "[after reload]" ones; stage 1: only those. */
function stageGrep(stage: 0 | 1): RegExp {
  const user = process.env.AIRLOCK_VSCODE_GREP ? `(?=.*(?:${process.env.AIRLOCK_VSCODE_GREP}))` : '';
  const mark = AFTER_RELOAD.replace(/[[\]]/g, '\\$&');
  return new RegExp(`^${stage === 0 ? `(?!.*${mark})` : `(?=.*${mark})`}${user}`);
}

function runMocha(tests: TestResult[], stage: 0 | 1): Promise<void> {
  const mocha = new Mocha({ ui: 'bdd', color: false, timeout: Number(process.env.AIRLOCK_VSCODE_TIMEOUT_MS) || 60_000 });
  mocha.grep(stageGrep(stage));
  for (const f of fs.readdirSync(__dirname).filter((f) => f.endsWith('.test.js')).sort()) mocha.addFile(path.join(__dirname, f));
  return new Promise((resolve, reject) => {
    try {
      const runner = mocha.run(() => resolve());
      runner.on('pass', (t) => tests.push({ title: t.fullTitle(), state: 'passed', durationMs: t.duration ?? 0 }));
      runner.on('pending', (t) => tests.push({ title: t.fullTitle(), state: 'skipped', durationMs: 0 }));
      // Also fires for a failing hook: its title names the hook, and it counts as a failure.
      runner.on('fail', (t, err) => tests.push({ title: t.fullTitle(), state: 'failed', durationMs: t.duration ?? 0, error: describeError(err) }));
    } catch (e) {
      // A test file that throws while loading (syntax, a missing module) lands here.
      reject(e);
    }
  });
}

function describeError(e: unknown): string {
  if (e instanceof Error) return e.stack ?? `${e.name}: ${e.message}`;
  return String(e);
}

/**
 * Copies console.* lines into OUT while the tests run; returns the undo. The extension
 * host defines console's methods as accessors (its setters ignore plain assignment),
 * so each is redefined and its original descriptor put back afterwards.
 */
function teeConsole(out: string[]): () => void {
  const methods = ['log', 'info', 'warn', 'error', 'debug'] as const;
  const saved = methods.map((m) => [m, Object.getOwnPropertyDescriptor(console, m)] as const);
  for (const [m, desc] of saved) {
    if (desc && !desc.configurable) continue;
    const original = console[m];
    Object.defineProperty(console, m, {
      configurable: true,
      writable: true,
      value: (...args: unknown[]) => {
        if (out.length < MAX_OUTPUT_LINES) out.push(args.map((a) => (typeof a === 'string' ? a : safeInspect(a))).join(' '));
        original.apply(console, args);
      },
    });
  }
  return () => {
    for (const [m, desc] of saved) {
      if (!desc) delete (console as unknown as Record<string, unknown>)[m];
      else if (desc.configurable) Object.defineProperty(console, m, desc);
    }
  };
}

function safeInspect(a: unknown): string {
  try {
    return JSON.stringify(a) ?? String(a);
  } catch {
    return String(a);
  }
}

/** TAP 13 with the summary comments scripts/test.sh sums (# pass, # fail, # skipped). */
export function toTap(r: Results): string {
  const lines = ['TAP version 13'];
  r.tests.forEach((t, i) => {
    const title = t.title.replace(/#/g, '\\#');
    lines.push(`${t.state === 'failed' ? 'not ok' : 'ok'} ${i + 1} - ${title}${t.state === 'skipped' ? ' # SKIP' : ''}`);
    lines.push('  ---', `  duration_ms: ${t.durationMs}`);
    if (t.error) lines.push('  error: |-', ...t.error.split('\n').map((l) => `    ${l}`));
    lines.push('  ...');
  });
  const count = (s: TestResult['state']): number => r.tests.filter((t) => t.state === s).length;
  lines.push(`1..${r.tests.length}`, `# tests ${r.tests.length}`, `# pass ${count('passed')}`, `# fail ${count('failed')}`, `# skipped ${count('skipped')}`, `# duration_ms ${r.durationMs}`);
  return lines.join('\n') + '\n';
}

function writeAtomically(file: string, text: string): void {
  const tmp = `${file}.${process.pid}.tmp`;
  fs.writeFileSync(tmp, text);
  fs.renameSync(tmp, file);
}
