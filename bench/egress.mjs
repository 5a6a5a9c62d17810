#!/usr/bin/env node
// Egress proxy benchmarks (issue 4), each against a baseline measured in the same run:
//   1. download of 200 MB from a host server on loopback: curl inside a sandbox, through
//      the proxy (plain HTTP; a CONNECT tunnel shown too), vs curl on the host directly.
//      target >= 0.8x. For reference, the same download through the least a relay can
//      be (bench/relay-floor.c: one C process copying bytes, no parsing, no policy).
//      The connect latency is shown against the same floor too (a C CONNECT proxy on
//      the host, the same client script on the host).
//   2. added connect latency: a CONNECT through the proxy to a host server until
//      "200 Connection Established", vs a direct TCP connect to a server on the
//      sandbox's own loopback, both timed by the same Node script inside.  target p50 <= 1 ms
//      Shown twice: for a new runtime's first ROUNDS connections (its code paths not yet
//      optimized by V8), and for ROUNDS more after WARMUP (a daemon that has been serving).
//   3. 500 concurrent CONNECT tunnels, each echoing a message.     target: no errors
import { execFile, spawn } from 'node:child_process';
import { promisify } from 'node:util';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { now } from './common.mjs';

const require = createRequire(import.meta.url);
const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const rt = require(path.join(root, 'dist', 'runtime.js'));

const MB = Number(process.env.BENCH_EGRESS_MB ?? 200);
// Sequential connects per measurement: 40 gave p50s that moved by 0.5 ms between runs here.
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 300);
// Connections between the cold and the warm measurement: the added latency kept falling
// for about the first 1000 connections of a new runtime here (1.2 ms -> 0.6-0.7 ms).
const WARMUP = Number(process.env.BENCH_WARMUP ?? 700);
const CONCURRENT = Number(process.env.BENCH_CONCURRENT ?? 500);
const pct = (xs, p) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(xs.length * p))];
const tmp = (p) => fs.mkdtempSync(path.join(os.tmpdir(), p));

// The servers run in their own process, as a real destination would: in this one they
// would compete with the proxy for one event loop and make it look slower than it is.
const serverSource = `
const http = require('http'), net = require('net');
const MB = ${MB}, chunk = Buffer.alloc(1 << 20, 'x');
const web = http.createServer((req, res) => {
  res.setHeader('content-length', String(MB * chunk.length));
  let left = MB;
  const more = () => { while (left > 0) { left--; if (!res.write(chunk)) return void res.once('drain', more); } res.end(); };
  more();
});
const echo = net.createServer((s) => s.pipe(s));
web.listen(0, '127.0.0.1', () => echo.listen({ port: 0, host: '127.0.0.1', backlog: 1024 }, () => console.log(JSON.stringify([web.address().port, echo.address().port]))));`;
const servers = spawn(process.execPath, ['-e', serverSource], { stdio: ['ignore', 'pipe', 'inherit'] });
const [webPort, echoPort] = await new Promise((resolve) => servers.stdout.once('data', (d) => resolve(JSON.parse(String(d)))));

const state = tmp('airlock-bench-egress-');
const ws = tmp('airlock-bench-ws-');
const audit = rt.AuditLog.open({ file: path.join(state, 'audit.jsonl'), holdLock: true }); // as `airlock serve` opens it
const egress = new rt.EgressService();
const policy = rt.resolvePolicy({ network: { registries: false, allow: [`127.0.0.1:${webPort}`, `127.0.0.1:${echoPort}`], maxConnections: 1024 } });
const session = await rt.Session.create({ workspace: ws, policy, driver: new rt.BwrapDriver(process.env), audit, egress });

async function run(argv) {
  const p = await session.spawn({ argv });
  let out = '', err = '';
  p.on('stdout', (d) => (out += d));
  p.on('stderr', (d) => (err += d));
  p.end();
  const x = await p.exited;
  if (x.code !== 0) throw new Error(`${argv.join(' ')} failed (${x.code}): ${err}`);
  return out;
}

const url = `http://127.0.0.1:${webPort}/big`;
// Asynchronous: the server answering it runs in this process.
async function hostCurl(to = url) {
  const t = now();
  await promisify(execFile)('curl', ['-s', '-o', '/dev/null', '--noproxy', '*', to]);
  return now() - t;
}
// The floor: a minimal C relay on the host between the client and the server.
async function startFloor(target, ...mode) {
  const bin = path.join(state, 'relay-floor');
  if (!fs.existsSync(bin)) await promisify(execFile)('cc', ['-O2', '-pthread', '-o', bin, path.join(root, 'bench', 'relay-floor.c')]);
  const p = spawn(bin, [String(target), ...mode], { stdio: ['ignore', 'pipe', 'inherit'] });
  const port = await new Promise((resolve) => p.stdout.once('data', (d) => resolve(Number(String(d).trim()))));
  return { p, port, url: `http://127.0.0.1:${port}/big` };
}
async function sandboxCurl(extra = []) {
  const t = now();
  await run(['curl', '-s', '-o', '/dev/null', ...extra, url]);
  return now() - t;
}

// Runs inside the sandbox: sequential connect timings, then CONCURRENT tunnels at once.
const script = `
const net = require('net');
const { performance } = require('perf_hooks');
const PROXY = Number(process.env.PROXY_PORT || 3128), ECHO = ${echoPort}, N = ${ROUNDS}, W = Number(process.env.WARMUP ?? ${WARMUP}), C = Number(process.env.CONCURRENT ?? ${CONCURRENT});
const local = net.createServer((s) => s.end());
function connectDirect(port) { return new Promise((res, rej) => { const t = performance.now(); const c = net.connect(port, '127.0.0.1', () => { const ms = performance.now() - t; c.destroy(); res(ms); }); c.on('error', rej); }); }
function tunnel(msg) {
  return new Promise((res, rej) => {
    const t = performance.now();
    const c = net.connect(PROXY, '127.0.0.1', () => c.write('CONNECT 127.0.0.1:' + ECHO + ' HTTP/1.1\\r\\nHost: 127.0.0.1:' + ECHO + '\\r\\n\\r\\n'));
    let buf = '', ms = -1;
    c.on('data', (d) => {
      buf += d;
      if (ms < 0) {
        const i = buf.indexOf('\\r\\n\\r\\n');
        if (i < 0) return;
        if (!buf.startsWith('HTTP/1.1 200')) return rej(new Error(buf.split('\\r\\n')[0]));
        ms = performance.now() - t; buf = buf.slice(i + 4);
        if (msg === undefined) { c.destroy(); return res(ms); }
        c.write(msg);
      }
      if (buf === msg) { c.destroy(); res(ms); }
    });
    c.on('error', rej);
  });
}
local.listen(0, '127.0.0.1', async () => {
  const port = local.address().port;
  // n rounds of a direct connect then a tunnel; their times go into d and p.
  const rounds = async (n, d = [], p = []) => { for (let i = 0; i < n; i++) { d.push(await connectDirect(port)); p.push(await tunnel()); } };
  const direct = [], proxied = [], coldDirect = [], coldProxied = [];
  await rounds(5);
  await rounds(N, coldDirect, coldProxied);
  await rounds(W);
  await rounds(N, direct, proxied);
  const results = await Promise.allSettled(Array.from({ length: C }, (_, i) => tunnel('hello ' + i)));
  const errors = results.filter((r) => r.status === 'rejected').map((r) => r.reason.message);
  console.log(JSON.stringify({ direct, proxied, coldDirect, coldProxied, ok: results.length - errors.length, errors: errors.slice(0, 3), errorCount: errors.length }));
  local.close();
});`;

try {
  const d = [], s = [], f = [];
  const floor = await startFloor(webPort);
  await hostCurl();
  await sandboxCurl();
  await hostCurl(floor.url);
  await sandboxCurl(['--proxytunnel']);
  // Interleaved, so that each path sees the machine in the same moods (runs here vary 2x).
  const tun = [];
  for (let i = 0; i < 3; i++) {
    d.push(await hostCurl());
    s.push(await sandboxCurl());
    tun.push(await sandboxCurl(['--proxytunnel']));
    f.push(await hostCurl(floor.url));
  }
  floor.p.kill();
  const lat = JSON.parse(await run(['node', '-e', script]));
  const floorProxy = await startFloor(echoPort, 'connect');
  const floorLat = JSON.parse((await promisify(execFile)(process.execPath, ['-e', script], { env: { ...process.env, PROXY_PORT: String(floorProxy.port), CONCURRENT: '0', WARMUP: '0' } })).stdout);
  floorProxy.p.kill();
  const floorAdded = pct(floorLat.proxied, 0.5) - pct(floorLat.direct, 0.5);
  const dl = pct(d, 0.5), sl = pct(s, 0.5);
  const ratio = dl / sl;
  const added = pct(lat.proxied, 0.5) - pct(lat.direct, 0.5);
  const coldAdded = pct(lat.coldProxied, 0.5) - pct(lat.coldDirect, 0.5);
  console.log(`\nAirlock egress benchmarks (${os.cpus().length} cores, Node ${process.versions.node})\n`);
  console.log(`download of ${MB} MB from a host server on loopback (curl, median of 3)`);
  console.log(`  directly on the host                         ${dl.toFixed(0)} ms  (${(MB / dl * 1000).toFixed(0)} MB/s)`);
  console.log(`  inside a sandbox, through the proxy          ${sl.toFixed(0)} ms  (${(MB / sl * 1000).toFixed(0)} MB/s)`);
  const tl = pct(tun, 0.5), tratio = dl / tl;
  console.log(`  the same through a CONNECT tunnel            ${tl.toFixed(0)} ms  (${(MB / tl * 1000).toFixed(0)} MB/s; how https:// and git/npm over TLS go)`);
  console.log(`  throughput ratio, plain HTTP through the proxy   ${ratio.toFixed(2)}x   target >= 0.80x   ${ratio >= 0.8 ? 'MET' : 'NOT MET'}`);
  console.log(`  throughput ratio, CONNECT tunnel                 ${tratio.toFixed(2)}x   target >= 0.80x   ${tratio >= 0.8 ? 'MET' : 'NOT MET'}`);
  const fl = pct(f, 0.5);
  console.log(`  reference: through a minimal C relay on the host ${fl.toFixed(0)} ms  (${(MB / fl * 1000).toFixed(0)} MB/s, ${(dl / fl).toFixed(2)}x of direct: one copying hop, nothing else)`);
  console.log(`\nconnect latency (${ROUNDS} sequential, inside a sandbox; a new runtime's first ${ROUNDS}, then ${ROUNDS} after ${WARMUP} more)`);
  console.log(`  direct TCP connect on the sandbox loopback   p50 ${pct(lat.direct, 0.5).toFixed(3)} ms  (first ${ROUNDS}: ${pct(lat.coldDirect, 0.5).toFixed(3)} ms)`);
  console.log(`  CONNECT through the proxy to the host        p50 ${pct(lat.proxied, 0.5).toFixed(3)} ms  p90 ${pct(lat.proxied, 0.9).toFixed(3)} ms  (first ${ROUNDS}: p50 ${pct(lat.coldProxied, 0.5).toFixed(3)} ms)`);
  console.log(`  added by the proxy, warm (a serving daemon)  p50 ${added.toFixed(3)} ms   target <= 1 ms   ${added <= 1 ? 'MET' : 'NOT MET'}`);
  console.log(`  added by the proxy, a new runtime's first ${ROUNDS}  p50 ${coldAdded.toFixed(3)} ms   ${coldAdded <= 1 ? 'also within' : 'over'} 1 ms`);
  console.log(`  reference: added by a minimal C CONNECT proxy on the host   p50 ${floorAdded.toFixed(3)} ms (direct ${pct(floorLat.direct, 0.5).toFixed(3)}, via it ${pct(floorLat.proxied, 0.5).toFixed(3)})`);
  console.log(`\n${CONCURRENT} concurrent tunnels, each echoing a message: ${lat.ok} ok, ${lat.errorCount} errors${lat.errorCount ? ' (' + lat.errors.join('; ') + ')' : ''}   ${lat.errorCount === 0 ? 'MET' : 'NOT MET'}`);
} finally {
  await session.end('exit');
  await egress.close();
  audit.close();
  servers.kill();
  for (const dir of [state, ws]) fs.rmSync(dir, { recursive: true, force: true });
}
