/** Small helpers for the integration tests: bounded waits and output collection. */
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { SandboxProcess } from '../../runtime/sessions';
import * as os from 'node:os';
import { AIRLOCK_BIN, stopDaemonIn, tempDir } from './sandbox';

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Polls COND every 10 ms; rejects after MS naming WHAT. Every wait in the tests is bounded. */
export async function until(cond: () => boolean, ms: number, what: string): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for: ${what}`);
    await sleep(10);
  }
}

/** Resolves like P, or rejects naming WHAT after MS; the timer never keeps the process alive. */
export function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for: ${what}`)), ms);
  });
  return Promise.race([p, timeout]).finally(() => clearTimeout(timer));
}

/** Accumulates one output stream of a sandboxed process. */
export function collect(p: SandboxProcess, stream: 'stdout' | 'stderr'): { text(): string } {
  const chunks: Buffer[] = [];
  p.on(stream, (d) => chunks.push(d));
  return { text: () => Buffer.concat(chunks).toString('utf8') };
}

/** Writes FILES (path → content) under DIR, creating parent directories. */
export function writeFiles(dir: string, files: Record<string, string>): void {
  for (const [rel, content] of Object.entries(files)) {
    const abs = path.join(dir, rel);
    fs.mkdirSync(path.dirname(abs), { recursive: true });
    fs.writeFileSync(abs, content);
  }
}

/** A temp dir removed after the test. */
export function tmp(t: { after: (fn: () => void) => void }, prefix?: string): string {
  const d = tempDir(prefix);
  t.after(() => fs.rmSync(d, { recursive: true, force: true }));
  return d;
}

/** Strips terminal escape sequences so output can be matched as text. */
export function plain(s: string): string {
  // eslint-disable-next-line no-control-regex
  return s.replace(/\x1b\][^\x07\x1b]*(\x07|\x1b\\)/g, '').replace(/\x1b\[[0-9;?<>=]*[ -/]*[@-~]/g, '').replace(/\x1b[()][A-Z0-9]|\x1b[=>78cDEHM]/g, '');
}

export interface Terminal {
  /** Everything the terminal printed so far (raw). */
  output(): string;
  /** Output since the last mark(). */
  sinceMark(): string;
  mark(): void;
  write(s: string): void;
  resize(cols: number, rows: number): void;
  /** Waits until the output since the last mark contains TEXT (plain, escapes removed). */
  waitFor(text: string | RegExp, ms?: number): Promise<string>;
  exited: Promise<{ exitCode: number; signal?: number }>;
  readonly done: boolean;
  kill(): void;
}

interface NodePty {
  spawn(file: string, args: string[], opts: { name?: string; cols: number; rows: number; cwd?: string; env: NodeJS.ProcessEnv }): {
    onData(cb: (d: string) => void): void;
    onExit(cb: (e: { exitCode: number; signal?: number }) => void): void;
    write(d: string): void;
    resize(cols: number, rows: number): void;
    kill(sig?: string): void;
  };
}

/** Runs `airlock ARGS` in a real pseudo-terminal (node-pty), as a user at a terminal would. */
export function airlockInTerminal(args: string[], opts: { cwd?: string; env?: NodeJS.ProcessEnv; cols?: number; rows?: number } = {}): Terminal {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const pty = require('@lydell/node-pty') as NodePty;
  // Its own runtime dir (so its own on-demand daemon, stopped when it exits) unless
  // the caller shares one between terminals (detach and attach).
  const ownRt = opts.env?.XDG_RUNTIME_DIR === undefined ? fs.mkdtempSync(path.join(os.tmpdir(), 'airlock-termrt-')) : undefined;
  const term = pty.spawn(process.execPath, [AIRLOCK_BIN, ...args], {
    name: 'xterm-256color',
    cols: opts.cols ?? 100,
    rows: opts.rows ?? 30,
    cwd: opts.cwd,
    env: { ...process.env, TERM: 'xterm-256color', ...(ownRt ? { XDG_RUNTIME_DIR: ownRt } : {}), ...opts.env },
  });
  let out = '';
  let markAt = 0;
  term.onData((d) => (out += d));
  const exited = new Promise<{ exitCode: number; signal?: number }>((r) =>
    term.onExit((e) => {
      if (!ownRt) return r(e);
      void stopDaemonIn(ownRt).then(() => {
        fs.rmSync(ownRt, { recursive: true, force: true });
        r(e);
      });
    }),
  );
  let done = false;
  void exited.then(() => (done = true));
  return {
    output: () => out,
    sinceMark: () => out.slice(markAt),
    mark: () => (markAt = out.length),
    write: (s) => term.write(s),
    resize: (c, r) => term.resize(c, r),
    async waitFor(text, ms = 10_000) {
      const hit = (): boolean => {
        const s = plain(out.slice(markAt));
        return typeof text === 'string' ? s.includes(text) : text.test(s);
      };
      try {
        await until(() => hit() || done, ms, `terminal output ${String(text)}`);
      } catch (e) {
        throw new Error(`${(e as Error).message}\n--- terminal output since mark ---\n${JSON.stringify(plain(out.slice(markAt)).slice(-2000))}`);
      }
      if (!hit()) throw new Error(`airlock exited before printing ${String(text)}: ${JSON.stringify(plain(out).slice(-2000))}`);
      return plain(out.slice(markAt));
    },
    exited,
    get done() {
      return done;
    },
    kill: () => {
      if (!done) term.kill('SIGKILL');
    },
  };
}
