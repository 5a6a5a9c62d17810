#!/usr/bin/env node
// Daemon benchmarks (issue 3), each against a baseline measured in the same run:
//   1. new session -> first output byte through the daemon, vs bare bubblewrap (same
//      flags, mounts, seccomp) running the same `echo` to its first output byte; cold
//      (a daemon without the warm pool) and warm (a spare sandbox ready).
//      targets: p50 <= 20 ms and <= 1.3x the baseline
//   2. exec round trip of `true` in a live session.                 target: p50 <= 5 ms
//   3. keystroke echo through the daemon (a PTY running cat).        target: p50 <= 1 ms
//   4. PTY throughput to a client (cat of 100 MB) vs node-pty direct. target >= 0.8x
//   5. 200 idle sessions: no failure, daemon RSS growth per session. target <= 5 MB
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { bigFile, now, ptyDirect } from './common.mjs';

const require = createRequire(import.meta.url);
const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const rt = require(path.join(root, 'dist', 'runtime.js'));

const N = Number(process.env.BENCH_ROUNDS ?? 40);
const MB = Number(process.env.BENCH_PTY_MB ?? 100);
const IDLE = Number(process.env.BENCH_IDLE_SESSIONS ?? 200);
const PTY_ROUNDS = Number(process.env.BENCH_PTY_ROUNDS ?? 5);
const pct = (xs, p) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(xs.length * p))];
const fmt = (ms) => `${ms.toFixed(2)} ms`;
const STDOUT = 1, INPUT = 2;

const tmp = (p) => fs.mkdtempSync(path.join(os.tmpdir(), p));
const runDir = tmp('airlock-bench-rt-');
const stateDir = tmp('airlock-bench-state-');
const ws = tmp('airlock-bench-ws-');
fs.writeFileSync(path.join(ws, 'README.md'), '# bench\n');
const socket = path.join(runDir, 'airlock', 'runtime.sock');
const env = { ...process.env, XDG_RUNTIME_DIR: runDir, XDG_STATE_HOME: stateDir };
const { pid } = await rt.startDaemon(socket, ['--idle-exit', '0'], env);
const rss = () => Number(/VmRSS:\s+(\d+)/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))[1]) / 1024;
const client = await rt.RuntimeClient.connect({ socket });
// A second daemon without the warm pool: every session is built from scratch.
const coldSocket = path.join(runDir, 'cold', 'runtime.sock');
const cold = await rt.startDaemon(coldSocket, ['--idle-exit', '0', '--no-warm-pool'], env);
const coldClient = await rt.RuntimeClient.connect({ socket: coldSocket });

/** First output byte of a new session's `echo`, through the daemon. */
async function sessionFirstByte(client) {
  const t0 = now();
  const { sessionId } = await client.call('session.create', { workspace: ws });
  const { processId } = await client.call('process.start', { sessionId, argv: ['echo', 'x'] });
  let first;
  const got = new Promise((r) => (first = r));
  await client.attach(processId, () => first(now()));
  const t1 = await got;
  await client.call('session.kill', { sessionId });
  return t1 - t0;
}

// The baseline: the same bubblewrap invocation a session uses, running `echo x`.
const policy = rt.resolvePolicy();
const plan = rt.planWorkspace(ws, policy);
const identity = rt.sandboxIdentity();
const files = rt.prepareFiles(identity);
const args = rt.buildBwrapArgs({ policy, workspace: plan, identity, files, fds: { seccomp: 3, info: 4 } }).filter((a, i, all) => !(a === '--info-fd' || all[i - 1] === '--info-fd'));
const filter = rt.buildSeccompFilter();
function bwrapFirstByte() {
  for (const p of plan.absentReadOnly) p.dir ? fs.mkdirSync(p.host, { recursive: true }) : fs.writeFileSync(p.host, p.content ?? '');
  return new Promise((resolve, reject) => {
    const t0 = now();
    let t1;
    const c = spawn(rt.findBwrap(), [...args, '--', '/usr/bin/echo', 'x'], { stdio: ['ignore', 'pipe', 'inherit', 'pipe'], env: {} });
    c.stdio[3].end(filter);
    c.stdout.once('data', () => (t1 = now()));
    c.on('error', reject);
    c.on('close', () => {
      for (const p of plan.absentReadOnly) fs.rmSync(p.host, { recursive: true, force: true });
      resolve(t1 - t0);
    });
  });
}

async function benchFirstByte() {
  const a = [], w = [], b = [];
  for (let i = 0; i < 3; i++) { await sessionFirstByte(coldClient); await bwrapFirstByte(); }
  for (let i = 0; i < N; i++) {
    b.push(await bwrapFirstByte());
    a.push(await sessionFirstByte(coldClient));
    // Warm: the spare the previous session's start left behind has had time to get ready.
    await new Promise((r) => setTimeout(r, 400));
    w.push(await sessionFirstByte(client));
  }
  return { daemon: pct(a, 0.5), daemonP90: pct(a, 0.9), warm: pct(w, 0.5), warmP90: pct(w, 0.9), bwrap: pct(b, 0.5) };
}

async function benchExec() {
  const { sessionId } = await client.call('session.create', { workspace: ws });
  const xs = [];
  for (let i = 0; i < N + 5; i++) {
    const t = now();
    const r = await client.call('exec', { sessionId, argv: ['true'] });
    if (r.exitCode !== 0) throw new Error('true failed');
    if (i >= 5) xs.push(now() - t);
  }
  await client.call('session.kill', { sessionId });
  return { p50: pct(xs, 0.5), p90: pct(xs, 0.9) };
}

async function benchKeystroke() {
  const { sessionId } = await client.call('session.create', { workspace: ws });
  const { processId } = await client.call('process.start', { sessionId, argv: ['cat'], pty: true });
  let waiting;
  const a = await client.attach(processId, (_k, d) => waiting && d.includes(0x61) && waiting());
  await a.replayDone;
  const xs = [];
  for (let i = 0; i < N * 5; i++) {
    const t = now();
    await new Promise((r) => { waiting = r; a.write(Buffer.from('a')); });
    waiting = null;
    xs.push(now() - t);
    if (i % 50 === 49) { a.write(Buffer.from('\r')); await new Promise((r) => setTimeout(r, 5)); }
  }
  await client.call('session.kill', { sessionId });
  return { p50: pct(xs, 0.5), p90: pct(xs, 0.9) };
}

/** [ms on a CPU, ms runnable but waiting for one] of PID so far (/proc/PID/schedstat), or null. */
function schedstat(pid) {
  try {
    const [run, wait] = fs.readFileSync(`/proc/${pid}/schedstat`, 'utf8').split(' ').map(Number);
    return [run / 1e6, wait / 1e6];
  } catch {
    return null;
  }
}

/** The host pid of the process whose command line is exactly ARGV, or 0. */
function pidOf(argv) {
  const want = argv.join('\0') + '\0';
  for (const d of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      if (fs.readFileSync(`/proc/${d}/cmdline`, 'utf8') === want) return Number(d);
    } catch { /* gone */ }
  }
  return 0;
}

const ppid = (pid) => Number(/PPid:\s+(\d+)/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))[1]);

/**
 * One round through the daemon. Also returns, per process of the path (cat, the sandbox
 * agent reading its PTY, the daemon, this client), its CPU time and its time runnable
 * but waiting for a CPU during the round: where the wall time goes.
 */
async function ptyDaemon(file, expected) {
  const { sessionId } = await client.call('session.create', { workspace: ws });
  const self = [schedstat(pid), schedstat(process.pid)];
  const t0 = now();
  const { processId } = await client.call('process.start', { sessionId, argv: ['cat', file], pty: true, cols: 200, rows: 50 });
  let got = 0;
  let done;
  const finished = new Promise((r) => (done = r));
  // cat's figures are read until it is gone: the last reading is its total.
  let cat = 0, agent = 0, agent0 = null, catLast = null, agentLast = null;
  const watch = setInterval(() => {
    if (!cat && (cat = pidOf(['cat', file]))) agent0 = schedstat((agent = ppid(cat)));
    if (cat) catLast = schedstat(cat) ?? catLast;
    if (agent) agentLast = schedstat(agent) ?? agentLast;
  }, 5);
  await client.attach(processId, (_k, d) => { got += d.length; if (got >= expected) done(now() - t0); });
  const ms = await finished;
  clearInterval(watch);
  const diff = (a, b) => (a && b ? [a[0] - b[0], a[1] - b[1]] : null);
  const where = { cat: catLast, agent: diff(agentLast, agent0), daemon: diff(schedstat(pid), self[0]), client: diff(schedstat(process.pid), self[1]) };
  await client.call('session.kill', { sessionId });
  return { ms, where };
}

async function benchPty() {
  const [file, expected] = bigFile(ws, MB);
  const d = [], s = [];
  // One round of each first, not counted: the daemon is long-lived, so what counts is its
  // steady state, not the first pass through code the JIT has not compiled yet (that
  // round took ~2x as long as the later ones).
  await ptyDirect(file, expected);
  await ptyDaemon(file, expected);
  for (let i = 0; i < PTY_ROUNDS; i++) { d.push((await ptyDirect(file, expected)).ms); s.push(await ptyDaemon(file, expected)); }
  fs.rmSync(file);
  const median = [...s].sort((a, b) => a.ms - b.ms)[s.length >> 1];
  return { direct: pct(d, 0.5), daemon: median.ms, where: median.where };
}

async function benchIdle() {
  const before = rss();
  const ids = [];
  let failed = 0;
  for (let i = 0; i < IDLE; i++) {
    try {
      ids.push((await client.call('session.create', { workspace: ws })).sessionId);
    } catch (e) {
      failed++;
      if (failed === 1) console.error(`session ${i} failed: ${e.message}`);
    }
  }
  await new Promise((r) => setTimeout(r, 500));
  const after = rss();
  const list = (await client.call('session.list', {})).sessions.length;
  for (const id of ids) await client.call('session.kill', { sessionId: id });
  return { created: ids.length, failed, listed: list, before, after, perSession: (after - before) / Math.max(1, ids.length) };
}

try {
  const fb = await benchFirstByte();
  const ex = await benchExec();
  const ks = await benchKeystroke();
  const pt = await benchPty();
  const idle = await benchIdle();
  const r1 = fb.daemon / fb.bwrap;
  const r4 = pt.direct / pt.daemon;
  console.log(`\nAirlock daemon benchmarks (${N} rounds; ${os.cpus().length} cores, Node ${process.versions.node})\n`);
  console.log('new session -> first output byte (echo), through the daemon');
  console.log(`  bare bwrap, same flags/mounts/seccomp, to first byte   p50 ${fmt(fb.bwrap)}`);
  console.log(`  airlock, cold (no spare: a sandbox built per session)  p50 ${fmt(fb.daemon)}  p90 ${fmt(fb.daemonP90)}   ratio ${r1.toFixed(2)}x`);
  console.log(`  airlock, warm pool (a spare ready for the workspace)   p50 ${fmt(fb.warm)}  p90 ${fmt(fb.warmP90)}   ratio ${(fb.warm / fb.bwrap).toFixed(2)}x`);
  console.log(`  targets p50 <= 20 ms and <= 1.30x:  warm ${fb.warm <= 20 && fb.warm / fb.bwrap <= 1.3 ? 'MET' : 'NOT MET'}, cold ${fb.daemon <= 20 && r1 <= 1.3 ? 'MET' : 'NOT MET'}`);
  console.log(`\nexec round trip of \`true\` in a live session              p50 ${fmt(ex.p50)}  p90 ${fmt(ex.p90)}   target p50 <= 5 ms   ${ex.p50 <= 5 ? 'MET' : 'NOT MET'}`);
  console.log(`keystroke echo through the daemon (PTY, cat)            p50 ${fmt(ks.p50)}  p90 ${fmt(ks.p90)}   target p50 <= 1 ms   ${ks.p50 <= 1 ? 'MET' : 'NOT MET'}`);
  console.log(`\nPTY throughput to a client, cat of ${MB} MB (median of ${PTY_ROUNDS} alternating rounds after one warm-up round of each)`);
  console.log(`  node-pty direct                                        ${fmt(pt.direct)}  (${(MB / pt.direct * 1000).toFixed(0)} MB/s)`);
  console.log(`  through the daemon to a client                         ${fmt(pt.daemon)}  (${(MB / pt.daemon * 1000).toFixed(0)} MB/s)`);
  console.log(`  throughput ratio                                       ${r4.toFixed(2)}x   target >= 0.80x   ${r4 >= 0.8 ? 'MET' : 'NOT MET'}`);
  const cell = (x) => (x ? `${x[0].toFixed(0)} / ${x[1].toFixed(0)}` : 'n/a');
  console.log(`  where the median round went, ms on a CPU / ms waiting for one: cat ${cell(pt.where.cat)}, agent ${cell(pt.where.agent)}, daemon ${cell(pt.where.daemon)}, client ${cell(pt.where.client)}`);
  console.log(`\n${IDLE} idle sessions: ${idle.created} created, ${idle.failed} failed, ${idle.listed} listed; daemon RSS ${idle.before.toFixed(1)} -> ${idle.after.toFixed(1)} MB`);
  console.log(`  RSS growth per session                                 ${idle.perSession.toFixed(2)} MB   target <= 5 MB   ${idle.perSession <= 5 && idle.failed === 0 ? 'MET' : 'NOT MET'}`);
} finally {
  client.close();
  coldClient.close();
  process.kill(pid, 'SIGTERM');
  process.kill(cold.pid, 'SIGTERM');
  await new Promise((r) => setTimeout(r, 500));
  for (const d of [runDir, stateDir, ws]) fs.rmSync(d, { recursive: true, force: true });
}
