/**
 * Tests that span a window reload. The suite runs in stages: stage 0 runs every test
 * but those titled "[after reload]"; a test that calls requestReload() makes the entry
 * (index.ts) keep stage 0's results, reload the window (Developer: Reload Window), and,
 * when VS Code loads the test entry again in the new extension host, run stage 1: the
 * "[after reload]" tests, which read what stage 0 left with reloadState().
 */
import * as fs from 'node:fs';
import * as path from 'node:path';

export const AFTER_RELOAD = '[after reload]';

/** Beside the results file: where stage 0 leaves its results and the tests' state. */
export function stageFile(resultsFile: string): string {
  return path.join(path.dirname(resultsFile), 'stage.json');
}

let requested: Record<string, unknown> | undefined;

/** Asks for a window reload after this stage, handing STATE to the tests after it. */
export function requestReload(state: Record<string, unknown>): void {
  requested = { ...(requested ?? {}), ...state };
}

export function takeReloadRequest(): Record<string, unknown> | undefined {
  const r = requested;
  requested = undefined;
  return r;
}

let loaded: Record<string, unknown> | undefined;

export function setReloadState(s: Record<string, unknown> | undefined): void {
  loaded = s;
}

/** What the tests before the reload handed over (undefined when there was no reload). */
export function reloadState<T = Record<string, unknown>>(): T | undefined {
  return loaded as T | undefined;
}

export function readStage(resultsFile: string): { tests: unknown[]; output: string[]; state: Record<string, unknown>; startedAt: number } | undefined {
  try {
    return JSON.parse(fs.readFileSync(stageFile(resultsFile), 'utf8'));
  } catch {
    return undefined;
  }
}
