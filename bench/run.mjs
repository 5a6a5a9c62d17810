#!/usr/bin/env node
// Airlock benchmarks. Every figure is a ratio against a baseline measured in the same
// run, interleaved with it, because these machines are noisy and absolute times drift.
//
//   1. session create -> process exit for `true`, inside the runtime (no Node start-up),
//      against bare bubblewrap running `true` (a) with the identical flags, mounts and
//      seccomp filter a session uses, and (b) with just `--unshare-all`.   target <= 1.5x
//   2. PTY throughput: `cat` of a 100 MB file through a session PTY against node-pty
//      running the same `cat` directly on the host, in pairs run back to back: the
//      median of the pairs' ratios.                                        target >= 0.8x
//   3. PTY throughput with redaction on (100 granted secrets + the credential detectors)
//      against the same session path with redaction off, over text output, in pairs run
//      back to back: the median of the pairs' ratios.                      target >= 0.9x
//   4. CLI start-up (`airlock --version`) and `airlock run -- true` end to end, reported.
//   BENCH_ONLY=startup,pty,redact,cli picks a subset; BENCH_ROUNDS, BENCH_PTY_MB and
//   BENCH_PAIRS set sizes.
import { spawn, spawnSync } from 'node:child_process';
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { bigFile, now, ptyDirect } from './common.mjs';

const require = createRequire(import.meta.url);
const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const rt = require(path.join(root, 'dist', 'runtime.js'));

const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 40);
const MB = Number(process.env.BENCH_PTY_MB ?? 100);
/** Baseline/Airlock pairs of the throughput benchmarks (2 and 3). */
const PAIRS = Number(process.env.BENCH_PAIRS ?? 15);

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
};
const fmt = (ms) => `${ms.toFixed(2)} ms`;

const state = fs.mkdtempSync(path.join(os.tmpdir(), 'airlock-bench-state-'));
const ws = fs.mkdtempSync(path.join(os.tmpdir(), 'airlock-bench-ws-'));
fs.writeFileSync(path.join(ws, 'README.md'), '# bench\n');
const audit = rt.AuditLog.open({ file: path.join(state, 'audit.jsonl') });
const driver = new rt.BwrapDriver(process.env);
const policy = rt.resolvePolicy();
const bwrap = rt.findBwrap();
if (!bwrap) {
  console.error("bubblewrap not found: install it with 'apt-get install bubblewrap'");
  process.exit(1);
}

function runBwrap(args, extraStdio = []) {
  return new Promise((resolve, reject) => {
    const c = spawn(bwrap, args, { stdio: ['ignore', 'ignore', 'inherit', ...extraStdio.map(() => 'pipe')], env: {} });
    extraStdio.forEach((buf, i) => c.stdio[3 + i].end(buf));
    c.on('error', reject);
    c.on('close', (code) => (code === 0 ? resolve() : reject(new Error(`bwrap exited ${code}`))));
  });
}

// Baseline (a): the very flags, mounts and seccomp program a session uses (from the
// driver's own builder), with `true` in place of the agent. The read-only placeholders
// a session creates are made before each baseline run and removed after it, untimed.
const plan = rt.planWorkspace(ws, policy);
const identity = rt.sandboxIdentity();
const files = rt.prepareFiles(identity);
const sessionArgs = rt.buildBwrapArgs({ policy, workspace: plan, identity, files, fds: { seccomp: 3, info: 4 } })
  .filter((a, i, all) => !(a === '--info-fd' || all[i - 1] === '--info-fd'));
const filter = rt.buildSeccompFilter();
const placeholders = (make) => {
  for (const p of plan.absentReadOnly) {
    if (make) p.dir ? fs.mkdirSync(p.host) : fs.writeFileSync(p.host, p.content ?? '');
    else fs.rmSync(p.host, { recursive: true, force: true });
  }
};
const equivalentTimed = async () => {
  placeholders(true);
  const t = now();
  await runBwrap([...sessionArgs, '--', '/usr/bin/true'], [filter]);
  const ms = now() - t;
  placeholders(false);
  return ms;
};
// Baseline (b): the reference point.
const minimal = () => runBwrap(['--unshare-all', '--die-with-parent', '--ro-bind', '/usr', '/usr', '--symlink', 'usr/bin', '/bin', '--symlink', 'usr/lib', '/lib', '--symlink', 'usr/lib64', '/lib64', '--proc', '/proc', '--dev', '/dev', '--', '/usr/bin/true']);

async function sessionTrue() {
  const t0 = now();
  const s = await rt.Session.create({ workspace: ws, policy, driver, audit });
  const p = await s.spawn({ argv: ['true'] });
  const e = await p.exited;
  const t1 = now();
  await s.end('exit');
  const t2 = now();
  if (e.code !== 0) throw new Error(`true exited ${e.code}`);
  return [t1 - t0, t2 - t0];
}

async function benchStartup() {
  for (let i = 0; i < 3; i++) {
    await sessionTrue();
    await equivalentTimed();
    await minimal();
  }
  const a = [], b = [], toExit = [], toEnd = [];
  for (let i = 0; i < ROUNDS; i++) {
    a.push(await equivalentTimed());
    let t = now();
    await minimal();
    b.push(now() - t);
    const [x, y] = await sessionTrue();
    toExit.push(x);
    toEnd.push(y);
  }
  return { equivalent: median(a), minimal: median(b), toExit: median(toExit), toEnd: median(toEnd) };
}

async function ptySession(file, expected, redaction) {
  const s = await rt.Session.create({ workspace: ws, policy, driver, audit, redaction });
  const t0 = now();
  const p = await s.spawn({ argv: ['cat', file], pty: true, cols: 200, rows: 50 });
  let got = 0;
  p.on('stdout', (d) => (got += d.length));
  await p.exited;
  const ms = now() - t0;
  await s.end('exit');
  if (got < expected) throw new Error(`session PTY delivered ${got} of ${expected} bytes`);
  return { ms, bytes: got };
}

/**
 * PAIRS runs of BASE and of RUN (each returns milliseconds), back to back in alternating
 * order; each pair gives a throughput ratio base/run, so a drift of the machine's speed
 * between pairs does not enter it. The figure is the median of the pairs' ratios.
 */
async function pairs(base, run) {
  const baseMs = [], runMs = [], ratios = [];
  for (let i = 0; i < PAIRS; i++) {
    let b, r;
    if (i % 2) {
      r = await run();
      b = await base();
    } else {
      b = await base();
      r = await run();
    }
    baseMs.push(b);
    runMs.push(r);
    ratios.push(b / r);
  }
  return { base: median(baseMs), run: median(runMs), ratio: median(ratios), low: Math.min(...ratios), high: Math.max(...ratios) };
}

async function benchPty() {
  const [file, expected] = bigFile(ws, MB);
  const r = await pairs(async () => (await ptyDirect(file, expected)).ms, async () => (await ptySession(file, expected)).ms);
  fs.rmSync(file);
  return { ...r, mb: MB };
}

/**
 * MB MiB of terminal-like text without newlines (a PTY would turn \n into \r\n): words,
 * numbers, paths, base64 and UTF-8, so the redactor's matcher has real work.
 */
function textFile(dir, mb) {
  const file = path.join(dir, 'text.txt');
  const words = ['const', 'function', 'return', 'npm', 'install', 'error:', 'warning', '/usr/lib/node_modules/', 'résumé', '日本語', 'ok', '200', 'GET', 'https://example.com/a?b=c', 'src/index.ts:42:7', '-rw-r--r--', 'drwxr-xr-x', 'README.md', '{"key": "value"}', '\x1b[32mPASS\x1b[0m'];
  let seed = 12345;
  const rnd = () => (seed = (seed * 1103515245 + 12345) & 0x7fffffff);
  const parts = [];
  let size = 0;
  while (size < 1 << 20) {
    const w = rnd() % 7 === 0 ? Buffer.from(String(rnd())).toString('base64') : words[rnd() % words.length];
    parts.push(w);
    size += Buffer.byteLength(w) + 1;
  }
  const chunk = Buffer.from(parts.join(' ')).subarray(0, 1 << 20);
  const fd = fs.openSync(file, 'w');
  for (let i = 0; i < mb; i++) fs.writeSync(fd, chunk);
  fs.closeSync(fd);
  return [file, mb * (1 << 20)];
}

async function benchRedactPty() {
  const [file, expected] = textFile(ws, MB);
  const secrets = Array.from({ length: 100 }, (_, i) => ({ name: `SECRET_${i}`, value: crypto.randomBytes(15 + (i % 10)).toString('base64url') }));
  const runOff = async () => (await ptySession(file, expected, new rt.RedactionSet({ detectors: false }))).ms;
  const runOn = async () => {
    const set = new rt.RedactionSet();
    set.set('bench', secrets);
    return (await ptySession(file, expected, set)).ms;
  };
  const r = await pairs(runOff, runOn);
  fs.rmSync(file);
  return { ...r, mb: MB };
}

function benchCli() {
  const bin = path.join(root, 'bin', 'airlock');
  // Its own runtime dir: `airlock run` starts a daemon there on first use (untimed
  // warm-up below), stopped at the end.
  const rtDir = fs.mkdtempSync(path.join(os.tmpdir(), 'airlock-bench-rt-'));
  const env = { ...process.env, XDG_STATE_HOME: state, XDG_RUNTIME_DIR: rtDir };
  spawnSync(process.execPath, [bin, 'run', '--', 'true'], { cwd: ws, env, stdio: 'ignore' });
  const time = (args) => {
    const xs = [];
    for (let i = 0; i < 10; i++) {
      const t = now();
      const r = spawnSync(process.execPath, args, { cwd: ws, env, stdio: 'ignore' });
      if (r.status !== 0) throw new Error(`${args.join(' ')} exited ${r.status}`);
      xs.push(now() - t);
    }
    return median(xs);
  };
  try {
    return { node: time(['-e', '0']), version: time([bin, '--version']), runTrue: time([bin, 'run', '--', 'true']) };
  } finally {
    try {
      process.kill(Number(fs.readFileSync(path.join(rtDir, 'airlock', 'runtime.sock.pid'), 'utf8')), 'SIGTERM');
    } catch {
      /* no daemon */
    }
    fs.rmSync(rtDir, { recursive: true, force: true });
  }
}

// BENCH_ONLY=startup,pty,redact,cli runs a subset (the others print as skipped).
const only = new Set((process.env.BENCH_ONLY ?? 'startup,pty,redact,cli').split(','));
const s = only.has('startup') ? await benchStartup() : undefined;
const p = only.has('pty') ? await benchPty() : undefined;
const red = only.has('redact') ? await benchRedactPty() : undefined;
const c = only.has('cli') ? benchCli() : undefined;
audit.close();
fs.rmSync(state, { recursive: true, force: true });
fs.rmSync(ws, { recursive: true, force: true });

console.log(`\nAirlock benchmarks (${ROUNDS} rounds, medians; ${os.cpus().length} cores, Node ${process.versions.node})`);
if (s) {
  const r1 = s.toExit / s.equivalent;
  console.log('\nsession create -> `true` exits, inside the runtime');
  console.log(`  bare bwrap, same flags/mounts/seccomp   ${fmt(s.equivalent)}`);
  console.log(`  bare bwrap --unshare-all (reference)     ${fmt(s.minimal)}`);
  console.log(`  airlock session                          ${fmt(s.toExit)}   (until the session is gone: ${fmt(s.toEnd)})`);
  console.log(`  ratio vs same-flags bwrap                ${r1.toFixed(2)}x   target <= 1.50x   ${r1 <= 1.5 ? 'MET' : 'NOT MET'}`);
  console.log(`  ratio vs --unshare-all bwrap             ${(s.toExit / s.minimal).toFixed(2)}x`);
}
/** Prints a pairs() result: both medians, the ratio of the medians, and the figure against TARGET. */
function printPairs(r, baseLabel, runLabel, target) {
  const mbs = (ms) => `(${((r.mb / ms) * 1000).toFixed(0)} MB/s)`;
  console.log(`  ${baseLabel.padEnd(39)}  ${fmt(r.base)}  ${mbs(r.base)}`);
  console.log(`  ${runLabel.padEnd(39)}  ${fmt(r.run)}  ${mbs(r.run)}`);
  console.log(`  ratio of the medians                     ${(r.base / r.run).toFixed(2)}x`);
  console.log(`  throughput ratio (median of the pairs')  ${r.ratio.toFixed(2)}x   target >= ${target.toFixed(2)}x   ${r.ratio >= target ? 'MET' : 'NOT MET'}   (pairs: ${r.low.toFixed(2)}..${r.high.toFixed(2)})`);
}
if (p) {
  console.log(`\nPTY throughput, cat of ${p.mb} MB, ${PAIRS} pairs`);
  printPairs(p, 'node-pty direct on the host', 'through an airlock session', 0.8);
}
if (red) {
  console.log(`\nPTY throughput with redaction, cat of ${red.mb} MB of text, ${PAIRS} pairs`);
  printPairs(red, 'redaction off', 'on: 100 secrets + credential detectors', 0.9);
}
if (c) {
  console.log('\nCLI');
  console.log(`  node -e 0                                ${fmt(c.node)}`);
  console.log(`  airlock --version                        ${fmt(c.version)}   (${(c.version / c.node).toFixed(2)}x node start-up)`);
  console.log(`  airlock run -- true (whole command, daemon running) ${fmt(c.runTrue)}`);
}
