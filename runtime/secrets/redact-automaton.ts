/**
 * Aho-Corasick over bytes, for the redactor: every secret form and every detector's
 * fixed prefix, found in one pass whatever their number.
 *
 * Layout, chosen for speed with ~1000 patterns in at most 4 MB:
 * - states are numbered breadth-first, so shallow states come first. The first
 *   `nDense` of them (a memory budget, not a depth) have a full 256-entry transition
 *   row in `table`; deeper states, rare in text without secrets, follow their trie
 *   children and failure links at run time. With 100 secrets (~740 forms) the budget
 *   covers the states three bytes deep: random base64 output, whose every 3 bytes begin
 *   some base64 form with a chance of ~0.3%, stops the fast loop that often with a
 *   budget of 1024 rows (measured: 64 KiB chunks of typical output redacted at ~450 MB/s
 *   with 1024 rows, ~700 MB/s with 4096);
 * - a table entry is `next * 256` (a row offset) when the next state is dense and has
 *   no output, else `~next` (negative): the hot loop is one load and one sign test a
 *   byte. (Measured in JavaScript: byte classes or 16-bit entries were not faster; what
 *   costs is the latency of the dependent loads, so long spans are run as
 *   four independent chains whose loads overlap: see runChains.)
 * - the table lives in a WebAssembly memory where it can (redact-wasm.ts): spans of four
 *   parts and more are run there by the same four-chain loop, ~2.5x as fast as here.
 */
import { WasmChains, wasmStopped } from './redact-wasm';

/** A pattern: exactly one of `literal` and `trigger` is a non-negative id. */
export interface Pattern {
  bytes: Uint8Array;
  literal: number;
  trigger: number;
}

/** What a state reports: the longest literal ending there, and the triggers ending there. */
export interface StateOutput {
  /** Length of the longest literal that is a suffix of the state's path; 0 when none. */
  literalLength: number;
  /** Its id, -1 when none. */
  literal: number;
  /** Ids of the triggers that are suffixes of the state's path. */
  triggers: number[];
}

/** States with a full row at most: 4096 rows of 256 Int32 = 4 MB. */
export const DENSE_ROWS = 4096;

/**
 * Bytes each of runChains' four chains runs in one block after its warm-up; more when the
 * longest pattern is longer, so that a part is always longer than a warm-up.
 */
const BLOCK = 1024;

export class Automaton {
  private constructor(
    private readonly nDense: number,
    private readonly table: Int32Array,
    private readonly fail: Int32Array,
    /** Children of state s are the states childStart[s] .. childStart[s+1]-1 (BFS order). */
    private readonly childStart: Int32Array,
    /** The byte that leads to each state from its parent. */
    private readonly inByte: Uint8Array,
    /** Length of the state's path: the bytes a stream must hold back in this state. */
    readonly depth: Int32Array,
    private readonly outIndex: Int32Array,
    private readonly outs: StateOutput[],
    /** The four-chain loop in WebAssembly, owning `table`; undefined: JavaScript only. */
    private readonly wasm: WasmChains | undefined,
  ) {
    // Chains pay off once each has well over its warm-up (the longest pattern) to run. They
    // start in the root state, which must have no output (an empty pattern) to be dense.
    this.maxDepth = depth[depth.length - 1]; // states are numbered breadth-first
    this.chained = outIndex[0] < 0 ? chainedSpan(this.maxDepth) : Infinity;
    this.long = outIndex[0] < 0 ? Math.min(this.chained, wasm?.minSpan ?? Infinity) : Infinity;
  }

  /** The longest pattern. */
  private readonly maxDepth: number;

  /** Spans at least this long are run as four chains (see runChains). */
  private readonly chained: number;

  /** Spans at least this long go to chains(): as four chains here or in WebAssembly. */
  private readonly long: number;

  /** Whether long spans run in WebAssembly (else in JavaScript: same results). */
  get vectorized(): boolean {
    return this.wasm !== undefined;
  }

  /** A literal given twice keeps its first id. `wasm: false`: JavaScript only (for tests). */
  static build(patterns: Pattern[], opts: { wasm?: boolean } = {}): Automaton {
    // The trie, in insertion order: children as linked lists.
    const firstChild: number[] = [-1];
    const nextSibling: number[] = [-1];
    const edge: number[] = [0];
    const termLiteral: number[] = [-1];
    const termTriggers: (number[] | undefined)[] = [undefined];
    for (const p of patterns) {
      let node = 0;
      for (const b of p.bytes) {
        let child = firstChild[node];
        while (child >= 0 && edge[child] !== b) child = nextSibling[child];
        if (child < 0) {
          child = edge.length;
          edge.push(b);
          firstChild.push(-1);
          nextSibling.push(firstChild[node]);
          termLiteral.push(-1);
          termTriggers.push(undefined);
          firstChild[node] = child;
        }
        node = child;
      }
      if (p.literal >= 0 && termLiteral[node] < 0) termLiteral[node] = p.literal;
      if (p.trigger >= 0) (termTriggers[node] ??= []).push(p.trigger);
    }

    // Breadth-first renumbering: the children of each state become a contiguous range.
    const n = edge.length;
    const order = new Int32Array(n);
    const childStart = new Int32Array(n + 1);
    const inByte = new Uint8Array(n);
    const parent = new Int32Array(n);
    const depth = new Int32Array(n);
    let tail = 1;
    for (let s = 0; s < n; s++) {
      childStart[s] = tail;
      for (let t = firstChild[order[s]]; t >= 0; t = nextSibling[t]) {
        order[tail] = t;
        inByte[tail] = edge[t];
        parent[tail] = s;
        depth[tail] = depth[s] + 1;
        tail++;
      }
    }
    childStart[n] = n;
    const child = (s: number, b: number): number => {
      for (let t = childStart[s], e = childStart[s + 1]; t < e; t++) if (inByte[t] === b) return t;
      return -1;
    };

    // Failure links and outputs, parents before children.
    const fail = new Int32Array(n);
    const outIndex = new Int32Array(n).fill(-1);
    const outs: StateOutput[] = [];
    for (let s = 1; s < n; s++) {
      let f = 0;
      if (parent[s] !== 0) {
        for (f = fail[parent[s]]; ; f = fail[f]) {
          const t = child(f, inByte[s]);
          if (t >= 0) { f = t; break; }
          if (f === 0) break;
        }
      }
      fail[s] = f;
      const own = termLiteral[order[s]];
      const inherited = outIndex[f] >= 0 ? outs[outIndex[f]] : undefined;
      const triggers = [...(termTriggers[order[s]] ?? []), ...(inherited?.triggers ?? [])];
      if (own >= 0 || inherited || triggers.length > 0) {
        outIndex[s] = outs.length;
        outs.push(own >= 0
          ? { literalLength: depth[s], literal: own, triggers }
          : { literalLength: inherited?.literalLength ?? 0, literal: inherited?.literal ?? -1, triggers });
      }
    }

    // Dense rows: a row is its failure state's row with its own children written over
    // (the failure state is shallower, so its row is already complete).
    const nDense = Math.max(1, Math.min(n, DENSE_ROWS));
    const wasm = opts.wasm === false ? undefined : WasmChains.create(nDense, depth[n - 1]);
    const table = wasm?.table ?? new Int32Array(nDense << 8);
    for (let s = 0; s < nDense; s++) {
      if (s > 0) table.copyWithin(s << 8, fail[s] << 8, (fail[s] + 1) << 8);
      for (let t = childStart[s], e = childStart[s + 1]; t < e; t++) table[(s << 8) | inByte[t]] = t;
    }
    for (let i = 0; i < table.length; i++) {
      const t = table[i];
      table[i] = t < nDense && outIndex[t] < 0 ? t << 8 : ~t;
    }
    return new Automaton(nDense, table, fail, childStart, inByte, depth, outIndex, outs, wasm);
  }

  /** What state `s` reports, or undefined when nothing. */
  output(s: number): StateOutput | undefined {
    const i = this.outIndex[s];
    return i >= 0 ? this.outs[i] : undefined;
  }

  /**
   * Runs bytes[from, to) from state `s`; calls `hit(state, i)` after each byte i-1 that
   * leads to a state with output. Returns the state after the last byte.
   */
  scan(bytes: Uint8Array, from: number, to: number, s: number, hit: (state: number, end: number) => void): number {
    const { nDense, outIndex, long } = this;
    this.wasm?.forget();
    let i = from;
    while (i < to) {
      if (s < nDense && outIndex[s] < 0) {
        const v = to - i >= long ? this.chains(bytes, i, to, s << 8) : run(this.table, bytes, i, to, s << 8);
        i = stopped;
        if (v >= 0) return v >> 8;
        s = ~v;
      } else {
        s = this.step(s, bytes[i++]);
      }
      if (outIndex[s] >= 0) hit(s, i);
    }
    return s;
  }

  /** runChains, whole blocks of it in WebAssembly where there is one. */
  private chains(bytes: Uint8Array, from: number, to: number, v: number): number {
    const w = this.wasm;
    if (w && to - from >= w.minSpan) {
      v = w.run(bytes, from, to, v);
      if (v < 0 || wasmStopped >= to) {
        stopped = wasmStopped;
        return v;
      }
      from = wasmStopped;
    }
    return to - from >= this.chained ? runChains(this.table, bytes, from, to, v, this.maxDepth) : run(this.table, bytes, from, to, v);
  }

  /** The transition from any state, dense or not. */
  private step(s: number, b: number): number {
    for (;;) {
      if (s < this.nDense) {
        const v = this.table[(s << 8) | b];
        return v >= 0 ? v >> 8 : ~v;
      }
      for (let t = this.childStart[s], e = this.childStart[s + 1]; t < e; t++) if (this.inByte[t] === b) return t;
      s = this.fail[s];
    }
  }
}

/** Where the last run() stopped: the index after the byte that left the fast states. */
let stopped = 0;

/**
 * The hot loop, kept alone in a small function (V8 compiles it to a handful of
 * instructions a byte): from row offset `v`, reads bytes until one leads to a negative
 * entry (returned; `stopped` is just after its byte) or until `to`.
 */
function run(table: Int32Array, bytes: Uint8Array, from: number, to: number, v: number): number {
  let i = from;
  while (i < to) {
    v = table[v + bytes[i++]];
    if (v < 0) break;
  }
  stopped = i;
  return v;
}

/** The shortest span runChains takes: four chains each well over its warm-up of DEPTH bytes. */
const chainedSpan = (depth: number): number => 4 * (depth + 256);

/**
 * run() over a long span as four interleaved chains, about twice as fast as one on text
 * without matches: the loads of one chain wait on each other, four chains' loads overlap.
 * The span is taken a block at a time: four parts of q > depth bytes. The first chain
 * runs from `from` in state `v`, the true state. Chain k runs from `depth` bytes (the
 * longest pattern) before its part, in the root state: an Aho-Corasick state is the longest
 * suffix of the text read that is a pattern prefix, so after that warm-up it is in the
 * true state for the rest of its part.
 *
 * A chain that meets a negative entry stops there; the others go on. A chain's state is
 * always a suffix of the true state (shorter or equal), so a negative entry it meets is
 * one the true run meets at the same byte: the true next state is at least as deep, so
 * numbered after it (breadth-first) and not dense either, and a pattern ending there
 * ends in the true next state too. Hence the true run's first negative entry is the
 * first chain's, else that of the first chain (in order) that stopped: every byte before
 * it was run by the chains before it, or by it after its warm-up (a stop in its warm-up
 * is in the part of the chain before it, which stops there too, or earlier, before its
 * q + depth steps are up). When none stopped, the block is done in the
 * last chain's state. Same result and `stopped` as run(); never slower than one chain
 * by more than the work thrown away after a stop, and at least a part done per block.
 */
function runChains(table: Int32Array, bytes: Uint8Array, from: number, to: number, v: number, depth: number): number {
  for (;;) {
    const span = to - from;
    if (span < chainedSpan(depth)) return run(table, bytes, from, to, v);
    // A part is longer than the warm-up (a pattern of kilobytes: a granted key), so each
    // chain starts inside the span, after `from`, and warms up over the part before its own.
    const q = Math.min(span >> 2, Math.max(BLOCK, depth + 256));
    let a = from;
    let b = from + q - depth;
    let c = b + q;
    let d = c + q;
    const end = from + q + depth; // every chain takes q + depth steps (the first goes past its part)
    let w = 0;
    let x = 0;
    let y = 0;
    while (a < end) {
      v = table[v + bytes[a++]];
      if (v < 0) {
        stopped = a;
        return v;
      }
      if (w >= 0) w = table[w + bytes[b++]];
      if (x >= 0) x = table[x + bytes[c++]];
      if (y >= 0) y = table[y + bytes[d++]];
    }
    if (w < 0) {
      stopped = b;
      return w;
    }
    if (x < 0) {
      stopped = c;
      return x;
    }
    if (y < 0) {
      stopped = d;
      return y;
    }
    from = d; // = from + 4q, in the true state y
    v = y;
  }
}
