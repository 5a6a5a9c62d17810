/**
 * The redactor's Aho-Corasick automaton (runtime/secrets/redact-automaton.ts) against a
 * naive matcher: every literal and trigger ending at every offset, and the state left at
 * the end, over short and long spans (a long span is scanned in blocks of four
 * interleaved chains, each after the first warming up before its part: hits in a
 * warm-up, at a part's edges, in several parts of one block and at the end must come
 * out exactly as from one chain), with an automaton small enough to be all dense and one
 * too big for that.
 */
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { Automaton, DENSE_ROWS, Pattern } from '../../runtime/secrets/redact-automaton';

let seed = 0x2545f491;
const rand = (n: number): number => {
  seed ^= seed << 13;
  seed ^= seed >>> 17;
  seed ^= seed << 5;
  return (seed >>> 0) % n;
};
const text = (n: number, alphabet: string): Buffer => Buffer.from(Array.from({ length: n }, () => alphabet[rand(alphabet.length)]).join(''), 'latin1');

interface Hit { end: number; literal: number; literalLength: number; triggers: number[] }

/** Every offset where a pattern ends: the longest literal there and all triggers. */
function naive(patterns: Pattern[], bytes: Buffer): Hit[] {
  const hits: Hit[] = [];
  const bufs = patterns.map((p) => Buffer.from(p.bytes));
  for (let end = 1; end <= bytes.length; end++) {
    let literal = -1;
    let literalLength = 0;
    const triggers: number[] = [];
    for (const [k, p] of patterns.entries()) {
      const n = p.bytes.length;
      if (n > end || bytes[end - 1] !== p.bytes[n - 1] || bytes.compare(bufs[k], 0, n, end - n, end) !== 0) continue;
      if (p.literal >= 0 && n > literalLength) [literal, literalLength] = [p.literal, n];
      if (p.trigger >= 0 && !triggers.includes(p.trigger)) triggers.push(p.trigger);
    }
    if (literal >= 0 || triggers.length) hits.push({ end, literal, literalLength, triggers: triggers.sort((a, b) => a - b) });
  }
  return hits;
}

/** Longest suffix of BYTES that is a prefix of a pattern: the automaton's state depth at the end. */
function naiveDepth(patterns: Pattern[], bytes: Buffer): number {
  for (let k = Math.min(bytes.length, Math.max(...patterns.map((p) => p.bytes.length))); k > 0; k--) {
    const tail = bytes.subarray(bytes.length - k);
    if (patterns.some((p) => p.bytes.length >= k && Buffer.from(p.bytes.subarray(0, k)).equals(tail))) return k;
  }
  return 0;
}

function scanned(a: Automaton, bytes: Buffer, cuts: number[]): { hits: Hit[]; depth: number } {
  const hits: Hit[] = [];
  let s = 0;
  let at = 0;
  for (const c of [...cuts, bytes.length]) {
    s = a.scan(bytes, at, c, s, (state, end) => {
      const o = a.output(state)!;
      hits.push({ end, literal: o.literal, literalLength: o.literalLength, triggers: [...o.triggers].sort((x, y) => x - y) });
    });
    at = c;
  }
  return { hits, depth: a.depth[s] };
}

function patternsOf(words: string[]): Pattern[] {
  let lit = 0;
  let trig = 0;
  return words.map((w, k) => (k % 3 === 2 ? { bytes: Buffer.from(w, 'latin1'), literal: -1, trigger: trig++ } : { bytes: Buffer.from(w, 'latin1'), literal: lit++, trigger: -1 }));
}

test('scan finds what a naive matcher finds, over spans long enough for the chains, dense hits or rare ones', () => {
  for (let round = 0; round < 60; round++) {
    const rare = round % 2 === 0;
    const words = Array.from({ length: 1 + rand(12) }, () => (rare ? 'z' : '') + text(1 + rand(rare ? 15 : 6), 'abc').toString('latin1'));
    const patterns = patternsOf(words);
    const a = Automaton.build(patterns);
    const bytes = text(200 + rand(6000), rare ? 'abcdefghij' + (round % 4 === 0 ? 'z' : '') : 'abc');
    const cuts = round % 3 === 0 ? [] : [rand(bytes.length)].sort((x, y) => x - y);
    const got = scanned(a, bytes, cuts);
    assert.deepEqual(got.hits, naive(patterns, bytes), `round ${round}`);
    assert.equal(got.depth, naiveDepth(patterns, bytes), `round ${round}: state at the end`);
  }
});

test('a match anywhere in a long span (warm-ups, the parts\' edges, blocks\' edges, the end) is found once', () => {
  // Nothing inside the literal is a pattern: a chain meets no output before its end, so
  // the match is found only by a chain in the true state there.
  const patterns = patternsOf(['xyzxyzw', 'qq', 'qqq']);
  const a = Automaton.build(patterns);
  const n = 9000; // two blocks of four 1 KiB parts, then a rest run as one chain
  const filler = Buffer.alloc(n, 'a');
  for (let where = 0; where <= n - 7; where++) {
    const bytes = Buffer.from(filler);
    bytes.write('xyzxyzw', where, 'latin1');
    const got = scanned(a, bytes, []);
    assert.deepEqual(got.hits, [{ end: where + 7, literal: 0, literalLength: 7, triggers: [] }], `match at ${where}`);
    assert.equal(got.depth, naiveDepth(patterns, bytes), `match at ${where}: state at the end`);
  }
});

test('two or three matches in different parts of one block are all found, in order', () => {
  const patterns = patternsOf(['xyzxyzw', 'qq', 'qqq']);
  const a = Automaton.build(patterns);
  const n = 6000;
  for (let round = 0; round < 400; round++) {
    const bytes = Buffer.alloc(n, 'a');
    const at = [...new Set(Array.from({ length: 2 + rand(2) }, () => rand(n - 7)))].sort((x, y) => x - y).filter((w, k, xs) => k === 0 || w >= xs[k - 1] + 7);
    for (const w of at) bytes.write(round % 2 ? 'xyzxyzw' : 'qqq', w, 'latin1');
    const got = scanned(a, bytes, round % 3 ? [] : [rand(n)]);
    assert.deepEqual(got.hits, naive(patterns, bytes), `round ${round}: matches at ${at}`);
  }
});

test('an automaton beyond the dense budget (deep states stepped one by one) scans long spans like a naive matcher', () => {
  // 800 patterns of 12 letters from 4: about 7000 states, over the 4096 with a full row;
  // text from the same letters keeps reaching the deep ones and stopping the chains.
  const words = Array.from({ length: 800 }, () => text(12, 'abcd').toString('latin1'));
  const patterns = patternsOf(words);
  const a = Automaton.build(patterns);
  assert.ok(a.depth.length > DENSE_ROWS * 1.5, `${a.depth.length} states: not beyond the dense rows`);
  for (let round = 0; round < 6; round++) {
    const parts: string[] = [];
    while (parts.join('').length < 20_000) parts.push(round % 2 ? words[rand(words.length)] : '', text(50 + rand(round < 4 ? 3000 : 100), round < 2 ? 'abcd' : 'abcdefghijklmnop').toString('latin1'));
    const bytes = Buffer.from(parts.join(''), 'latin1');
    const got = scanned(a, bytes, round % 3 === 2 ? [rand(bytes.length), rand(bytes.length)].sort((x, y) => x - y) : []);
    assert.deepEqual(got.hits, naive(patterns, bytes), `round ${round}`);
    assert.equal(got.depth, naiveDepth(patterns, bytes), `round ${round}: state at the end`);
  }
});

test('a pattern longer than a block (a granted key of kilobytes) does not let a chain warm up outside its span', () => {
  // The warm-up is as long as the longest pattern: with one of 1500 or 3000 bytes it is
  // longer than a block's part, so a part must grow to keep each warm-up inside the span.
  for (const long of [1500, 3000]) {
    const key = text(long, 'abcdefghijklmnopqrstuvwxyz');
    const patterns = patternsOf(['xyzxyzw', 'qqq', key.toString('latin1')]);
    patterns[2] = { bytes: key, literal: 2, trigger: -1 }; // a literal, as a granted value is
    const a = Automaton.build(patterns);
    for (let round = 0; round < 40; round++) {
      const n = 4 * (long + 256) + rand(30_000);
      const bytes = text(n, 'abcdefghijklmnop');
      for (let k = 1 + rand(4); k > 0; k--) bytes.write(round % 3 === 0 ? 'qqq' : 'xyzxyzw', rand(n - 7), 'latin1');
      if (round % 2) key.copy(bytes, rand(n - long));
      const cuts = round % 4 < 2 ? [] : [rand(n >> 1)];
      const got = scanned(a, bytes, cuts);
      assert.deepEqual(got.hits, naive(patterns, bytes), `pattern of ${long}, round ${round}`);
      assert.equal(got.depth, naiveDepth(patterns, bytes), `pattern of ${long}, round ${round}: state at the end`);
    }
  }
});

test('long spans run in WebAssembly on this Node, and come out exactly as in JavaScript', () => {
  // The four-chain loop has two implementations (redact-wasm.ts, and runChains for where
  // WebAssembly is missing); the tests above run the first. Here the two are compared on
  // texts where chains stop often (any chain, several per block, in warm-ups), with short
  // patterns and with one longer than a 1 KiB part.
  for (let round = 0; round < 40; round++) {
    const alphabet = round % 4 === 0 ? 'ab' : round % 4 === 1 ? 'abcd' : 'abcdefghijklmnopqrstuvwxyz';
    const words = Array.from({ length: 1 + rand(40) }, () => text(2 + rand(round % 5 === 4 ? 1500 : 10), alphabet).toString('latin1'));
    const patterns = patternsOf(words);
    const wasm = Automaton.build(patterns);
    const js = Automaton.build(patterns, { wasm: false });
    assert.equal(wasm.vectorized, true, 'WebAssembly is available in Node 20: the fast loop must be in use');
    assert.equal(js.vectorized, false);
    const bytes = text(20_000 + rand(150_000), alphabet.slice(0, 2 + rand(alphabet.length)));
    for (let k = rand(30); k > 0; k--) Buffer.from(words[rand(words.length)], 'latin1').copy(bytes, rand(bytes.length));
    const cuts = [rand(bytes.length), rand(bytes.length)].sort((x, y) => x - y);
    assert.deepEqual(scanned(wasm, bytes, cuts), scanned(js, bytes, cuts), `round ${round}`);
  }
});

test('a buffer scanned again after its caller rewrote it is read anew (nothing stale from the last scan)', () => {
  // A stream's caller may reuse its read buffer: the WebAssembly loop keeps a copy of
  // the bytes it scanned, which must not stand in for the buffer's new content.
  const patterns = patternsOf(['xyzxyzw', 'qq', 'qqq']);
  const a = Automaton.build(patterns);
  const bytes = Buffer.alloc(20_000, 'a');
  assert.deepEqual(scanned(a, bytes, []).hits, []);
  for (const where of [5, 4_000, 12_345, 19_990]) {
    bytes.fill('a');
    bytes.write('xyzxyzw', where, 'latin1');
    assert.deepEqual(scanned(a, bytes, []).hits, [{ end: where + 7, literal: 0, literalLength: 7, triggers: [] }], `match at ${where}`);
  }
});
