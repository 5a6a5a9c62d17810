/**
 * The redactor's Aho-Corasick automaton (runtime/secrets/redact-automaton.ts) against a
 * naive matcher: every literal and trigger ending at every offset, and the state left at
 * the end, over short and long spans (a long span is scanned as two interleaved chains,
 * the second starting in the middle: hits in its warm-up, at the middle and at the end
 * must come out exactly as from one chain).
 */
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { Automaton, Pattern } from '../../runtime/secrets/redact-automaton';

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
  for (let end = 1; end <= bytes.length; end++) {
    let literal = -1;
    let literalLength = 0;
    const triggers: number[] = [];
    for (const p of patterns) {
      const n = p.bytes.length;
      if (n > end || !bytes.subarray(end - n, end).equals(Buffer.from(p.bytes))) continue;
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

test('scan finds what a naive matcher finds, over spans long enough for two chains, dense hits or rare ones', () => {
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

test('a match straddling the middle, or ending in the warm-up or the last byte, is found once, in order', () => {
  // Nothing inside the long literal is a pattern: the first chain meets no output before
  // the middle, so only a second chain in the true state there can find the match.
  const patterns = patternsOf(['xyzxyzw', 'qq', 'qqq']);
  const a = Automaton.build(patterns);
  const n = 4000;
  const mid = (n + 7) >> 1; // where the second chain takes over (longest pattern: 7)
  for (let at = mid - 16; at <= mid + 2; at++) {
    for (const where of [at, 0, n - 7]) {
      const bytes = Buffer.alloc(n, 'a');
      bytes.write('xyzxyzw', where, 'latin1');
      const got = scanned(a, bytes, []);
      assert.deepEqual(got.hits, naive(patterns, bytes), `match at ${where}`);
      assert.deepEqual(got.hits, [{ end: where + 7, literal: 0, literalLength: 7, triggers: [] }], `match at ${where}: found once`);
      assert.equal(got.depth, naiveDepth(patterns, bytes), `match at ${where}: state at the end`);
    }
  }
});
