#!/usr/bin/env node
// Secret redactor benchmark: throughput of a redaction stream over realistic terminal
// output (seq lines, source code, `ls -l` lines, base64, UTF-8 text, SGR colours) in
// 64 KiB chunks, with 100 granted secrets (random 20-40 chars) plus the detectors,
// against baselines measured in the same run:
//   copy      Buffer.from(chunk): the least any stage that returns new bytes costs
//   indexOf   chunk.indexOf of one literal: a native scan of every byte
// target: >= 200 MB/s on output without secrets; "with matches" adds some to each chunk;
// "on every line" (informative, no target) is `yes $TOKEN`.
// Run `npx tsc -p tsconfig.json` first (it reads out/). BENCH_REDACT_MB sets the size.
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { now } from './common.mjs';

const require = createRequire(import.meta.url);
const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
// The bundle `npm run build` makes (npm run bench builds it first).
const { Redactor } = require(path.join(root, 'dist', 'runtime.js'));

const MB = Number(process.env.BENCH_REDACT_MB ?? 64);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const CHUNK = 64 * 1024;
const TARGET = 200;

// A seeded PRNG (mulberry32): the same input on every run.
let seed = 0x5eed;
const rand = () => {
  seed = (seed + 0x6d2b79f5) | 0;
  let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
  t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
};
const pick = (xs) => xs[Math.floor(rand() * xs.length)];
const int = (n) => Math.floor(rand() * n);

const sources = [];
for (const dir of ['runtime/egress', 'runtime/sessions', 'runtime/audit', 'runtime/policy']) {
  for (const f of fs.readdirSync(path.join(root, dir))) if (f.endsWith('.ts')) sources.push(fs.readFileSync(path.join(root, dir, f), 'latin1'));
}
const text = ['naïve café, déjà vu — «quoted»', '日本語のテキストと絵文字 🎉🚀', 'Ελληνικά και русский текст', 'emoji: 👩‍💻 ✅ ❌ ⚠️'];
const words = ['node_modules', 'package.json', 'README.md', 'src', 'index.ts', 'build.log', 'out', 'test', '.git'];

/** One piece of typical terminal output, latin1 (one char per byte). */
function piece(line) {
  switch (int(6)) {
    case 0: { // seq
      let s = '';
      for (let i = 0; i < 200; i++) s += `${line + i}\n`;
      return s;
    }
    case 1: { // source code
      const src = pick(sources);
      const at = int(Math.max(1, src.length - 3000));
      return src.slice(at, at + 3000);
    }
    case 2: { // ls -l --color
      let s = '';
      for (let i = 0; i < 40; i++) {
        const w = pick(words);
        s += `-rw-r--r-- 1 dev dev ${int(1e6).toString().padStart(7)} Jan ${1 + int(28)} 1${int(10)}:${10 + int(50)} \x1b[01;34m${w}${i}\x1b[0m\n`;
      }
      return s;
    }
    case 3: // base64, wrapped at 76 like `base64`
      return crypto.randomBytes(1500).toString('base64').replace(/.{76}/g, '$&\n') + '\n';
    case 4: { // UTF-8 prose
      let s = '';
      for (let i = 0; i < 20; i++) s += Buffer.from(pick(text) + '\n').toString('latin1');
      return s;
    }
    default: // a compiler-ish log with colours
      return Array.from({ length: 30 }, (_, i) => `\x1b[32m✓\x1b[0m test ${line + i} passes (${int(100)} ms)\n`).join('');
  }
}

function corpus(mb, sprinkle) {
  const chunks = [];
  let line = 1;
  let buf = '';
  while (chunks.length < (mb * (1 << 20)) / CHUNK) {
    while (buf.length < CHUNK) {
      buf += piece(line);
      line += 200;
    }
    let c = buf.slice(0, CHUNK);
    buf = buf.slice(CHUNK);
    if (sprinkle) {
      // A few matches in each chunk: a granted value raw and in base64, and a detector.
      for (const m of sprinkle()) {
        const at = int(CHUNK - m.length);
        c = c.slice(0, at) + ' ' + m + ' ' + c.slice(at + m.length + 2);
      }
      c = c.slice(0, CHUNK);
    }
    chunks.push(Buffer.from(c, 'latin1'));
  }
  return chunks;
}

const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.!@#%^&*+=';
const secrets = Array.from({ length: 100 }, (_, i) => ({
  name: `SECRET_${i}`,
  value: Array.from({ length: 20 + int(21) }, () => pick(alphabet)).join(''),
}));

function measure(chunks, fn) {
  let best = Infinity;
  let bytes = 0;
  for (let r = 0; r < ROUNDS; r++) {
    const t = now();
    bytes = fn(chunks);
    best = Math.min(best, now() - t);
  }
  const total = chunks.length * CHUNK;
  return { mbs: total / (1 << 20) / (best / 1000), bytes };
}

const plain = corpus(MB, undefined);
const sprinkled = corpus(MB, () => [
  pick(secrets).value,
  Buffer.from(pick(secrets).value).toString('base64'),
  'AKIA' + crypto.randomBytes(8).toString('hex').toUpperCase(),
]);

// The worst realistic case: a granted value on every line (`yes $TOKEN`).
const flood = (() => {
  const line = Buffer.from(`${secrets[0].value}\n`);
  const chunk = Buffer.alloc(CHUNK);
  for (let at = 0; at < CHUNK; at += line.length) line.copy(chunk, at);
  return Array.from({ length: Math.max(1, MB >> 2) * 16 }, () => chunk);
})();

const redactor = new Redactor();
let t = now();
redactor.setSecrets(secrets);
const setMs = now() - t;
const viaStream = (chunks) => {
  const st = redactor.stream();
  let n = 0;
  for (const c of chunks) n += st.push(c).length;
  return n + st.flush().length;
};

const copy = measure(plain, (chunks) => chunks.reduce((n, c) => n + Buffer.from(c).length, 0));
const index = measure(plain, (chunks) => chunks.reduce((n, c) => n + c.indexOf('AKIA'), 0));
const clean = measure(plain, viaStream);
const dirty = measure(sprinkled, viaStream);
const flooded = measure(flood, viaStream);
const detectorsOnly = new Redactor();
const detOnly = measure(plain, (chunks) => {
  const st = detectorsOnly.stream();
  let n = 0;
  for (const c of chunks) n += st.push(c).length;
  return n + st.flush().length;
});

const row = (label, m, extra = '') => console.log(`  ${label.padEnd(46)} ${m.mbs.toFixed(0).padStart(6)} MB/s${extra}`);
console.log(`\nAirlock secret redactor benchmark (${os.cpus()[0]?.model ?? '?'}, ${os.cpus().length} cores, Node ${process.versions.node})`);
console.log(`${MB} MiB of terminal output in 64 KiB chunks, best of ${ROUNDS}; setSecrets(100 secrets) took ${setMs.toFixed(1)} ms\n`);
row('baseline: Buffer.from(chunk)', copy);
row('baseline: chunk.indexOf("AKIA")', index);
row('detectors only, no secrets granted', detOnly);
row('100 secrets + detectors, no secret in output', clean, `   ${(clean.mbs / copy.mbs).toFixed(2)}x copy`);
row('100 secrets + detectors, 3 matches per chunk', dirty, `   ${(dirty.mbs / copy.mbs).toFixed(2)}x copy`);
row(`a granted value on every line (${flood.length * CHUNK >> 20} MiB)`, flooded);
console.log(`\ntarget >= ${TARGET} MB/s without secrets in the output: ${clean.mbs >= TARGET ? 'MET' : 'NOT MET'}; with matches: ${dirty.mbs >= TARGET ? 'MET' : 'NOT MET'}`);
if (clean.bytes !== plain.length * CHUNK) throw new Error(`output without secrets changed length: ${clean.bytes} != ${plain.length * CHUNK}`);
