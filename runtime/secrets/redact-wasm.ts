/**
 * The automaton's four-chain loop (redact-automaton.ts, runChains) as a WebAssembly
 * function, about 2.5 times as fast as V8's code for the same loop: no bounds checks,
 * and the three later chains read at fixed offsets from one pointer (the part length Q
 * is a constant of the module), so a byte costs a load, an add, a shift and a load.
 * The module is a few hundred bytes assembled here (no toolchain; nothing to download).
 *
 * Memory of one instance (one per automaton; it owns its transition table):
 *   [0, 16)                 the four chains' states when the function returns
 *   [TBASE, input)          the dense transition table (the automaton's Int32Array is a
 *                           view of it), then one DEAD row whose entries lead to itself
 *   [input, input + seg)    the bytes being scanned, copied in a segment at a time. The
 *                           table before it is longer than any pattern, so a chain's
 *                           pointer less its warm-up is never below 0.
 *
 * Where WebAssembly is missing (node --jitless) or a memory cannot be had, the automaton
 * keeps a plain table and runs the same loop in JavaScript.
 */

/** The little of the WebAssembly API used here (the project's TypeScript libs have no DOM). */
declare namespace WebAssembly {
  class Module {
    constructor(bytes: Uint8Array);
  }
  class Memory {
    constructor(d: { initial: number; maximum: number });
    readonly buffer: ArrayBuffer;
  }
  class Instance {
    constructor(m: Module, imports: Record<string, Record<string, unknown>>);
    readonly exports: Record<string, unknown>;
  }
}

/** Where the table starts. */
const TBASE = 64;
const PAGE = 65536;

/** The part length for an automaton whose chains warm up over DEPTH bytes: > depth, a multiple of 1 KiB. */
const wasmPart = (depth: number): number => Math.max(1024, Math.ceil((depth + 256) / 1024) * 1024);

/** Bytes copied into the instance at once: whole blocks of four parts, at least SEGMENT_MIN. */
const SEGMENT_MIN = 64 * 1024;
const segment = (q: number): number => 4 * q * Math.ceil(SEGMENT_MIN / (4 * q));

// --- a minimal WebAssembly assembler: only what the loop needs ---
const uleb = (n: number): number[] => {
  const out: number[] = [];
  do {
    let b = n & 0x7f;
    n >>>= 7;
    if (n) b |= 0x80;
    out.push(b);
  } while (n);
  return out;
};
const sleb = (n: number): number[] => {
  const out: number[] = [];
  for (;;) {
    const b = n & 0x7f;
    n >>= 7;
    if ((n === 0 && !(b & 0x40)) || (n === -1 && b & 0x40)) return [...out, b];
    out.push(b | 0x80);
  }
};
const vec = (items: number[][]): number[] => [...uleb(items.length), ...items.flat()];
const section = (id: number, body: number[]): number[] => [id, ...uleb(body.length), ...body];
const name = (s: string): number[] => [...uleb(s.length), ...Buffer.from(s, 'latin1')];
const I32 = 0x7f;
const op = {
  block: 0x02, loop: 0x03, end: 0x0b, br_if: 0x0d, void: 0x40,
  get: 0x20, set: 0x21, const: 0x41,
  load: 0x28, load8u: 0x2d, store: 0x36,
  lt_s: 0x48, lt_u: 0x49, add: 0x6a, or: 0x72, shl: 0x74,
} as const;

/**
 * The module for part length Q. Two exports run the four chains: chain 0 in row offset
 * v reads the byte at p, chain k (1..3) reads
 *   `chains(p, r, end, v, w, x, y)`: the byte at r + k*Q (a block of whole parts);
 *   `chainsAt(p, b, c, d, end, v, w, x, y)`: the bytes at b, c, d (a shorter last block).
 * All four step and every pointer advances, until a state is negative (an entry leaving
 * the fast states; a chain parked in DEAD never is) or p reaches end. They store the
 * four states at [0, 16) and return p.
 */
function chainsModule(q: number): Uint8Array {
  const loop = (pointers: number, at: (k: number) => [number, number]): number[] => {
    const END = pointers;
    const V = pointers + 1;
    const step = (k: number): number[] => {
      const [local, offset] = at(k);
      return [
        op.get, V + k,
        op.get, local, op.load8u, 0, ...uleb(offset),
        op.add, op.const, 2, op.shl,
        op.load, 2, ...uleb(TBASE),
        op.set, V + k,
      ];
    };
    const body = [
      op.block, op.void, op.loop, op.void,
      ...step(0), ...step(1), ...step(2), ...step(3),
      ...Array.from({ length: pointers }, (_, i) => [op.get, i, op.const, 1, op.add, op.set, i]).flat(),
      // any state negative: out (one test for the four)
      op.get, V, op.get, V + 1, op.or, op.get, V + 2, op.or, op.get, V + 3, op.or, op.const, 0, op.lt_s, op.br_if, 1,
      op.get, 0, op.get, END, op.lt_u, op.br_if, 0,
      op.end, op.end,
      ...[0, 1, 2, 3].flatMap((k) => [op.const, ...sleb(4 * k), op.get, V + k, op.store, 2, 0]),
      op.get, 0,
      op.end,
    ];
    const fn = [0 /* no locals beyond the parameters */, ...body];
    return [...uleb(fn.length), ...fn];
  };
  const params = (n: number): number[] => [0x60, ...vec(Array.from({ length: n }, () => [I32])), 1, I32];
  return new Uint8Array([
    0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00,
    ...section(1, vec([params(7), params(9)])),
    ...section(2, vec([[...name('env'), ...name('mem'), 0x02, 0x00, ...uleb(1)]])),
    ...section(3, vec([[0], [1]])),
    ...section(7, vec([[...name('chains'), 0x00, 0], [...name('chainsAt'), 0x00, 1]])),
    ...section(10, vec([
      loop(2, (k) => (k === 0 ? [0, 0] : [1, k * q])),
      loop(4, (k) => [k, 0]),
    ])),
  ]);
}

/** Compiled modules by part length. */
const modules = new Map<number, WebAssembly.Module>();

type ChainsFn = (p: number, r: number, end: number, v: number, w: number, x: number, y: number) => number;
type ChainsAtFn = (p: number, b: number, c: number, d: number, end: number, v: number, w: number, x: number, y: number) => number;

/** Where the last run stopped, as in redact-automaton.ts: the index after the byte. */
export let wasmStopped = 0;

export class WasmChains {
  private readonly fn: ChainsFn;
  private readonly fnAt: ChainsAtFn;
  private readonly heap: Uint8Array;
  private readonly states: Int32Array;
  /** The row offset of DEAD: a parked chain's state. */
  private readonly dead: number;
  private readonly seg: number;
  /** Where the input segment starts. */
  private readonly input: number;

  private constructor(
    mem: WebAssembly.Memory,
    instance: WebAssembly.Instance,
    /** The dense table, `rows` rows of 256, in the instance's memory. */
    readonly table: Int32Array,
    rows: number,
    /** Part length of whole blocks (a constant of the module). */
    readonly q: number,
    /** Warm-up of chains 1..3: the longest pattern. */
    private readonly depth: number,
  ) {
    this.fn = instance.exports.chains as ChainsFn;
    this.fnAt = instance.exports.chainsAt as ChainsAtFn;
    this.heap = new Uint8Array(mem.buffer);
    this.states = new Int32Array(mem.buffer, 0, 4);
    this.dead = rows << 8;
    this.seg = segment(q);
    this.input = TBASE + ((rows + 1) << 10);
    // DEAD: every byte leads back to DEAD, never negative.
    new Int32Array(mem.buffer, TBASE + (rows << 10), 256).fill(this.dead);
  }

  /**
   * A table of ROWS dense rows in a new instance's memory, for an automaton whose
   * longest pattern is DEPTH bytes; undefined when WebAssembly cannot be used here.
   */
  static create(rows: number, depth: number): WasmChains | undefined {
    if (typeof WebAssembly !== 'object') return undefined;
    try {
      // The table (whose DEAD row alone is 1 KiB) must be longer than the warm-up.
      if (depth >= rows << 10) return undefined;
      const q = wasmPart(depth);
      let mod = modules.get(q);
      if (!mod) modules.set(q, (mod = new WebAssembly.Module(chainsModule(q))));
      const pages = Math.ceil((TBASE + ((rows + 1) << 10) + segment(q)) / PAGE);
      const mem = new WebAssembly.Memory({ initial: pages, maximum: pages });
      const instance = new WebAssembly.Instance(mod, { env: { mem } });
      return new WasmChains(mem, instance, new Int32Array(mem.buffer, TBASE, rows << 8), rows, q, depth);
    } catch {
      return undefined; // out of address space, or WebAssembly disabled: the JavaScript loop
    }
  }

  /**
   * The shortest span run here: four parts, each longer than the warm-up by a margin
   * (below that, the warm-ups are most of the work).
   */
  get minSpan(): number {
    return 4 * (this.depth + 64);
  }

  /**
   * Runs bytes[from, to) from row offset v in blocks of four parts, as runChains does:
   * returns the first negative entry met (wasmStopped just after its byte), else the row
   * offset where it stopped (wasmStopped; the rest, shorter than minSpan, is the caller's).
   * Parts are q long but for a span's last block, which has four shorter parts.
   */
  run(bytes: Uint8Array, from: number, to: number, v: number): number {
    const whole = 4 * this.q;
    const min = this.minSpan;
    while (to - from >= min) {
      // bytes[from, from + n) are in the heap at `addr`
      let addr: number;
      let n: number;
      if (bytes === this.loaded && from >= this.loadedFrom && this.loadedTo - from >= min) {
        addr = this.input + (from - this.loadedFrom);
        n = Math.min(to, this.loadedTo) - from;
      } else {
        n = Math.min(to - from, this.seg);
        this.heap.set(bytes.subarray(from, from + n), this.input);
        this.loaded = bytes;
        this.loadedFrom = from;
        this.loadedTo = from + n;
        addr = this.input;
      }
      let at = 0;
      while (n - at >= min) {
        const q = n - at >= whole ? this.q : (n - at) >> 2;
        v = this.block(addr + at, q, v);
        if (v < 0) {
          wasmStopped = from + (wasmStopped - addr);
          return v;
        }
        at += 4 * q;
      }
      from += at;
    }
    wasmStopped = from;
    return v;
  }

  /** What the input segment holds: bytes[loadedFrom, loadedTo) of `loaded`. */
  private loaded: Uint8Array | undefined;
  private loadedFrom = 0;
  private loadedTo = 0;

  /**
   * The caller's bytes may change between scans (a stream's caller reuses its buffer):
   * Automaton.scan forgets what was loaded when it starts. Within one scan, a run after
   * a stop takes the rest of the segment already loaded without copying it again.
   */
  forget(): void {
    this.loaded = undefined;
  }

  /**
   * One block of four parts of Q bytes at heap offset p0 (see runChains for why it is
   * exact): chain 0 in the true state runs q + depth bytes from p0; chain k runs from p0
   * + k*q - depth in the root state. Returns the first negative entry (wasmStopped after
   * its byte) or the state at p0 + 4q. A later chain that meets a negative entry is
   * parked in DEAD and remembered (the earliest such chain wins; chains after it no
   * longer matter and are parked too).
   */
  private block(p0: number, q: number, v: number): number {
    const { depth, dead, states } = this;
    const fixed = q === this.q;
    const end = p0 + q + depth;
    let p = p0;
    let r = p0 - depth; // chain k is at r + k*q
    let w = 0;
    let x = 0;
    let y = 0;
    let stopChain = 4;
    let stopAt = 0;
    let stopValue = 0;
    while (p < end) {
      const p1 = fixed ? this.fn(p, r, end, v, w, x, y) : this.fnAt(p, r + q, r + 2 * q, r + 3 * q, end, v, w, x, y);
      r += p1 - p;
      p = p1;
      v = states[0];
      if (v < 0) {
        wasmStopped = p;
        return v;
      }
      for (let k = 1; k < stopChain; k++) {
        if (states[k] < 0) {
          stopChain = k;
          stopAt = r + k * q;
          stopValue = states[k];
        }
      }
      w = stopChain <= 1 ? dead : states[1];
      x = stopChain <= 2 ? dead : states[2];
      y = stopChain <= 3 ? dead : states[3];
    }
    if (stopChain < 4) {
      wasmStopped = stopAt;
      return stopValue;
    }
    return y; // the state at p0 + 4q
  }
}
