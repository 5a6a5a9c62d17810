/**
 * The streaming engine behind Redactor: bytes in, bytes out, never decoded.
 *
 * Correctness argument (streamed output == output on the whole input, for any
 * chunking): every matcher reads the input strictly forward and keeps its state
 * between chunks (the automaton state, each detector Run, the escape tracker), so
 * the set of candidates found does not depend on the cuts. Bytes are emitted only
 * before the hold point h, the lowest offset at which a candidate not yet known could
 * still start:
 *   - the automaton: the current state's depth (a pattern occurrence still to end must
 *     begin within the state's path, by the Aho-Corasick invariant);
 *   - each open Run: its holdFrom; any later trigger starts after the automaton's point;
 *   - escapes: h never splits a sequence, since a later match inside it would widen
 *     back to its start.
 * Replacement regions (candidates widened over the escape sequences they touch, then
 * overlapping ones merged) that end by h are final; a region straddling h is held
 * whole. A granted value's candidates can overlap (forms of two values, or a value and
 * a detector): the union is replaced, named after the leftmost, then longest, one.
 */
import { Automaton } from './redact-automaton';
import { Candidate, Detector, Run } from './redact-detectors';
import { EscapeTracker } from './redact-escapes';

/** What setSecrets compiles: the automaton and what its pattern ids stand for. */
export interface Matcher {
  readonly auto: Automaton;
  /** By literal id: the secret's name and priority (its index in the list). */
  readonly names: string[];
  readonly prios: number[];
  /** By trigger id: the detector whose fixed prefix it is, and its length. */
  readonly triggers: { detector: Detector; length: number }[];
  /** Nothing to match at all. */
  readonly idle: boolean;
}

export interface RedactionStream {
  /**
   * Returns the bytes that are safe to emit now (possibly empty; possibly a view of CHUNK,
   * which the stream does not keep); holds back only the shortest tail that could still
   * become a match. SCRATCH: bytes right before CHUNK in its memory that the caller gives
   * away; when what is held fits there it is put there, and the output is one view of the
   * held bytes and the chunk instead of a copy of both.
   */
  push(chunk: Buffer, scratch?: number): Buffer;
  /** Emits everything held (end of stream, or a caller's flush timer for an idle terminal). */
  flush(): Buffer;
  /** Bytes currently held back. */
  readonly held: number;
}

const EMPTY = Buffer.alloc(0);
/** Longest run of overlapping matches replaced as one; a longer one is replaced in pieces. */
export const MAX_REGION = 64 * 1024;
const replacements = new Map<string, Buffer>();
const replacement = (name: string): Buffer => {
  let r = replacements.get(name);
  if (!r) {
    if (replacements.size >= 1024) replacements.clear();
    replacements.set(name, (r = Buffer.from(`[REDACTED:${name}]`, 'latin1')));
  }
  return r;
};

export class Stream implements RedactionStream {
  private m: Matcher;
  /** Held bytes: input offsets [base, base + win.length), not emitted yet. */
  private win: Buffer = EMPTY;
  /** Whether win is the caller's last chunk itself (not a copy). */
  private aliased = false;
  private base = 0;
  /** The input byte at base - 1 (-1 at the start): a token detector's boundary test. */
  private before = -1;
  private state = 0;
  private runs: Run[] = [];
  private cands: Candidate[] = [];
  private readonly esc = new EscapeTracker();
  /** Whether anything was replaced since the stream was made. */
  replaced = false;

  constructor(private readonly current: () => Matcher) {
    this.m = current();
  }

  get held(): number {
    return this.win.length;
  }

  push(chunk: Buffer, scratch = 0): Buffer {
    this.follow();
    const from = this.win.length;
    // Nothing held, or what is held fits in the scratch before the chunk: the window is
    // the caller's memory (what is emitted of it is a view of it; what stays held is
    // copied in emit, so a caller may reuse its buffer). Else a copy of both.
    if (from === 0) {
      this.win = chunk;
      this.aliased = true;
    } else if (from <= scratch) {
      const win = Buffer.from(chunk.buffer, chunk.byteOffset - from, from + chunk.length);
      this.win.copy(win, 0);
      this.win = win;
      this.aliased = true;
    } else {
      this.win = Buffer.concat([this.win, chunk]);
      this.aliased = false;
    }
    if (this.m.idle) return this.emitAll();
    const end = this.base + this.win.length;
    this.runs = this.runs.filter((r) => !r.feed(this.win, this.base, end, this.cands));
    this.scan(from);
    // The escape sequences that matter: around the matches' ends, and after the hold point.
    const points = new Float64Array(this.cands.length * 2);
    for (let k = 0; k < this.cands.length; k++) {
      points[2 * k] = this.cands[k].s;
      points[2 * k + 1] = this.cands[k].e;
    }
    this.esc.feed(this.win, this.base, from, this.win.length, points.sort(), this.holdPoint());
    return this.emit(false);
  }

  flush(): Buffer {
    this.follow();
    if (this.m.idle) return this.emitAll();
    const end = this.base + this.win.length;
    // Runs decide as at the end of input; a private key block goes on being redacted.
    this.runs = this.runs.filter((r) => r.finish(end, this.cands));
    this.esc.cut(end);
    return this.emit(true);
  }

  /**
   * setSecrets compiled a new matcher: the held bytes are matched again with it (bytes
   * already emitted cannot be). Runs whose trigger was emitted are kept: the rescan
   * cannot find them again.
   */
  private follow(): void {
    const m = this.current();
    if (m === this.m) return;
    this.m = m;
    this.state = 0;
    this.cands = [];
    this.runs = this.runs.filter((r) => r.start < this.base);
    if (m.idle) {
      this.esc.reset();
    } else {
      this.scan(0);
      this.esc.reread(this.win, this.base);
    }
  }

  private scan(from: number): void {
    const { win, base, m } = this;
    const end = base + win.length;
    this.state = m.auto.scan(win, from, win.length, this.state, (state, i) => {
      const o = m.auto.output(state)!;
      const e = base + i;
      if (o.literal >= 0) this.cands.push({ s: e - o.literalLength, e, name: m.names[o.literal], prio: m.prios[o.literal] });
      for (const t of o.triggers) {
        const { detector, length } = m.triggers[t];
        const s = e - length;
        const before = s - 1 >= base ? win[s - 1 - base] : s - 1 === base - 1 ? this.before : -1;
        const run = detector.start(s, e, before);
        if (run && !run.feed(win, base, end, this.cands)) this.runs.push(run);
      }
    });
  }

  private emitAll(): Buffer {
    const out = this.win;
    this.base += out.length;
    if (out.length) this.before = out[out.length - 1];
    this.win = EMPTY;
    this.aliased = false;
    return out;
  }

  /** The lowest offset where a candidate not found yet may start (escapes aside). */
  private holdPoint(): number {
    let h = this.base + this.win.length - this.m.auto.depth[this.state];
    for (const r of this.runs) if (r.holdFrom < h) h = r.holdFrom;
    return h;
  }

  private emit(final: boolean): Buffer {
    const { win, base } = this;
    const end = base + win.length;
    let h = Math.max(this.esc.holdPoint(final ? end : this.holdPoint()), base);
    let out: Buffer;
    if (this.cands.length === 0) out = h === end ? win : win.subarray(0, h - base); // all of it: the caller's own buffer
    else [out, h] = this.replace(h);
    if (h > base) this.before = win[h - base - 1];
    this.win = h === end ? EMPTY : this.aliased ? Buffer.from(win.subarray(h - base)) : win.subarray(h - base);
    this.aliased = false;
    this.base = h;
    this.esc.drop(h);
    return out;
  }

  /** Output up to h with the regions replaced; h moves back before a region not final yet. */
  private replace(h: number): [Buffer, number] {
    const { win, base, esc } = this;
    const regions = this.cands
      .map((c) => ({ s: Math.max(esc.widenStart(Math.max(c.s, base)), base), e: esc.widenEnd(c.e), c }))
      .sort(byStart);
    // What to write: window byte ranges [from, to) as two numbers, replacements as Buffers;
    // copied once at the end (a subarray per piece costs more with thousands of matches).
    const parts: (number | Buffer)[] = [];
    let length = 0;
    const put = (from: number, to: number, r?: Buffer): void => {
      if (to > from) parts.push(from - base, to - base);
      if (r) {
        parts.push(r);
        this.replaced = true;
      }
      length += to - from + (r?.length ?? 0);
    };
    let cursor = base;
    for (let i = 0; i < regions.length; ) {
      const r = regions[i];
      let e = r.e;
      let j = i + 1;
      for (; j < regions.length && regions[j].s < e; j++) e = Math.max(e, regions[j].e);
      if (r.s >= h) break;
      if (e !== Infinity && e - r.s > MAX_REGION) {
        // Overlapping matches that chain on and on: replaced a piece at a time, so that
        // what is held stays bounded. The rest starts at the cut, under the same name;
        // the cut depends only on r.s, known for sure (a later match cannot start before h).
        const cut = r.s + MAX_REGION;
        put(cursor, r.s, replacement(r.c.name));
        cursor = cut;
        const rest = regions.slice(i, j).filter((x) => x.e > cut);
        for (const x of rest) Object.assign(x.c, { s: Math.max(x.c.s, cut), name: r.c.name, prio: r.c.prio });
        for (const x of rest) x.s = Math.max(x.s, cut);
        regions.splice(i, j - i, ...rest.sort(byStart));
        continue;
      }
      if (e > h) {
        // Not final: a later match may still extend it. Its candidates become one (same
        // union, same name: a later match starts after r.s), so a long chain is not
        // sorted again at every push.
        h = r.s;
        const merged: Candidate = { s: r.s, e: r.c.e, name: r.c.name, prio: r.c.prio };
        const group = new Set<Candidate>();
        for (let k = i; k < j; k++) {
          group.add(regions[k].c);
          merged.e = Math.max(merged.e, regions[k].c.e);
        }
        this.cands = [merged, ...this.cands.filter((c) => !group.has(c))];
        break;
      }
      put(cursor, r.s, replacement(r.c.name));
      cursor = e;
      i = j;
    }
    h = Math.max(h, cursor);
    put(cursor, h);
    this.cands = this.cands.filter((c) => c.e > h);
    const out = Buffer.allocUnsafe(length);
    for (let k = 0, at = 0; k < parts.length; ) {
      const p = parts[k];
      if (typeof p === 'number') {
        at += win.copy(out, at, p, parts[k + 1] as number);
        k += 2;
      } else {
        at += p.copy(out, at);
        k += 1;
      }
    }
    return [out, h];
  }
}

/** Leftmost first; at the same start the longest, then the granted name before a detector's. */
const byStart = (a: { s: number; e: number; c: Candidate }, b: { s: number; e: number; c: Candidate }): number =>
  a.s - b.s || b.e - a.e || a.c.prio - b.c.prio;
