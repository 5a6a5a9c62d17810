/**
 * Where the terminal escape sequences are in a redacted stream, so that a replacement
 * never lands inside one.
 *
 * Safety argument: `[REDACTED:NAME]` written inside a CSI would end it (`[` is a final
 * byte) and turn the rest into visible text or another command; written over half of
 * an OSC it would leave the terminal inside a string that swallows what follows. So a
 * match whose start or end falls inside a sequence is widened to cover the whole
 * sequence; a sequence no match overlaps is never touched.
 *
 * The sequences are found the way a VT500-style parser finds them: CSI `ESC [` params
 * and intermediates, then a final byte; strings (OSC `ESC ]`, DCS `ESC P`, SOS, PM,
 * APC) up to BEL or ST (`ESC \`); other `ESC` + intermediates + final. C0 controls
 * inside a sequence do not end it (the terminal executes them); CAN, SUB, ESC, any
 * other unexpected byte and the length caps end (abort) it.
 * LIMITATION: past STRING_CAP an unterminated string sequence is no longer tracked, so
 * a match further inside it is replaced in place (still printable text inside the
 * string; the terminal's parser state is unchanged). 8-bit C1 introducers are not
 * sequences here: in UTF-8 those bytes are continuation bytes.
 */

const ESC = 0x1b;
const BEL = 0x07;
const CAN = 0x18;
const SUB = 0x1a;
const CSI_CAP = 64;
const STRING_CAP = 4096;

const enum Mode { Ground, Escape, Intermediate, Csi, Str, StrEscape }

export class EscapeTracker {
  private mode = Mode.Ground;
  /** Absolute offset of the sequence being read (when mode is not Ground). */
  private open = 0;
  /** Closed sequences [start, end) that may still matter: end > the emitted offset. */
  private starts: number[] = [];
  private ends: number[] = [];

  /**
   * Reads bytes[from, to) of a window whose byte 0 is at absolute offset `base`. Only
   * the sequences that matter are read: those around `points` (the boundaries of the
   * matches found, ascending) and all from `tail` on (where a match not found yet may
   * start or end); the rest, most of a chunk in output without secrets, is skipped.
   */
  feed(bytes: Buffer, base: number, from: number, to: number, points: ArrayLike<number>, tail: number): void {
    let i = from;
    let next = 0;
    while (i < to) {
      const b = bytes[i];
      switch (this.mode) {
        case Mode.Ground: {
          if (base + i < tail) {
            while (next < points.length && points[next] <= base + i) next++;
            const target = next < points.length ? Math.min(points[next], tail) : tail;
            i = skip(bytes, i, Math.min(to, target - base));
          }
          const at = bytes.indexOf(ESC, i);
          if (at < 0 || at >= to) return;
          // Fast path for a whole CSI (colours are most sequences); same result as below.
          if (at + 1 < to && bytes[at + 1] === 0x5b) {
            let k = at + 2;
            const cap = Math.min(to, at + CSI_CAP);
            while (k < cap && bytes[k] >= 0x20 && bytes[k] <= 0x3f) k++;
            if (k < cap && bytes[k] >= 0x40 && bytes[k] <= 0x7e) {
              this.record(base + at, base + k + 1);
              i = k + 1;
              continue;
            }
          }
          this.open = base + at;
          this.mode = Mode.Escape;
          i = at + 1;
          continue;
        }
        case Mode.Escape:
        case Mode.Intermediate:
        case Mode.Csi: {
          if (base + i - this.open >= CSI_CAP) { this.close(base + i); continue; }
          // A C0 control (or DEL) inside a sequence is executed by the terminal, not an end.
          if ((b < 0x20 && b !== ESC && b !== CAN && b !== SUB) || b === 0x7f) { i++; continue; }
          if (this.mode === Mode.Escape) {
            if (b === 0x5b) this.mode = Mode.Csi;
            else if (b === 0x5d || b === 0x50 || b === 0x58 || b === 0x5e || b === 0x5f) this.mode = Mode.Str;
            else if (b >= 0x20 && b <= 0x2f) this.mode = Mode.Intermediate;
            else if (b >= 0x30 && b <= 0x7e) { this.close(base + i + 1); i++; continue; }
            else { this.close(base + i); continue; }
            i++;
            continue;
          }
          const csi = this.mode === Mode.Csi;
          if (csi ? b >= 0x40 && b <= 0x7e : b >= 0x30 && b <= 0x7e) { this.close(base + i + 1); i++; continue; }
          // Anything else aborts the sequence and is read as ground (an ESC starts the next one).
          if (!(csi ? b >= 0x20 && b <= 0x3f : b >= 0x20 && b <= 0x2f)) { this.close(base + i); continue; }
          i++;
          continue;
        }
        case Mode.Str:
          if (b === BEL) { this.close(base + i + 1); i++; continue; }
          if (b === ESC) this.mode = Mode.StrEscape;
          // CAN and SUB abort; past the cap the string ends before a character, not inside
          // one (a widened match ends here).
          else if (b === CAN || b === SUB || (base + i - this.open >= STRING_CAP && (b & 0xc0) !== 0x80)) { this.close(base + i); continue; }
          i++;
          continue;
        case Mode.StrEscape:
          if (b === 0x5c) { this.close(base + i + 1); i++; continue; }
          // ESC not followed by `\` aborts the string and starts a new sequence.
          this.close(base + i - 1);
          this.open = base + i - 1;
          this.mode = Mode.Escape;
          continue;
      }
    }
  }

  /** End of input (or a flush): the open sequence counts as ending here; reading goes on. */
  cut(end: number): void {
    if (this.mode === Mode.Ground) return;
    this.record(this.open, end);
    this.open = end;
  }

  /** Forgets the state (the redactor was idle: nothing was tracked). */
  reset(): void {
    this.mode = Mode.Ground;
    this.starts = [];
    this.ends = [];
  }

  /**
   * Reads the whole window again, every sequence (new secrets: a match may now start or
   * end anywhere in it). Its start is never inside a sequence: the emit point never is.
   */
  reread(bytes: Buffer, base: number): void {
    this.reset();
    this.feed(bytes, base, 0, bytes.length, [], -Infinity);
  }

  /** The emit point moved back so that it does not split a sequence (or an open one). */
  holdPoint(h: number): number {
    if (this.mode !== Mode.Ground && this.open < h) h = this.open;
    const k = this.containing(h);
    return k >= 0 ? this.starts[k] : h;
  }

  /** A match start moved back to the start of the sequence it falls inside. */
  widenStart(s: number): number {
    if (this.mode !== Mode.Ground && s > this.open) return this.open;
    const k = this.containing(s);
    return k >= 0 ? this.starts[k] : s;
  }

  /** A match end moved forward to the end of its sequence; Infinity when that is not known yet. */
  widenEnd(e: number): number {
    if (this.mode !== Mode.Ground && e > this.open) return Infinity;
    const k = this.containing(e);
    return k >= 0 ? this.ends[k] : e;
  }

  /** Forgets the sequences that end at or before `h` (emitted). */
  drop(h: number): void {
    const ends = this.ends;
    let k = 0;
    while (k < ends.length && ends[k] <= h) k++;
    if (k === ends.length) {
      if (k > 0) { this.starts = []; this.ends = []; }
    } else if (k > 0) {
      this.starts.splice(0, k);
      ends.splice(0, k);
    }
  }

  private close(end: number): void {
    this.record(this.open, end);
    this.mode = Mode.Ground;
  }

  private record(start: number, end: number): void {
    // A sequence of one byte has no inside.
    if (end - start >= 2) {
      this.starts.push(start);
      this.ends.push(end);
    }
  }

  /** Index of the closed sequence with start < x < end, or -1. */
  private containing(x: number): number {
    const starts = this.starts;
    let lo = 0;
    let hi = starts.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (starts[mid] < x) lo = mid + 1;
      else hi = mid;
    }
    return lo > 0 && this.ends[lo - 1] > x ? lo - 1 : -1;
  }
}

/**
 * Where reading may resume, from ground at i, when nothing before `limit` is kept: at
 * the last ESC before `limit` (every ESC ends the sequence before it and starts a new
 * one, so what follows it does not depend on what came before), or at `limit` when
 * there is no ESC. Except `ESC \`: it may be the ST ending a string that began before
 * it, so reading resumes at an earlier ESC (the string's start), or at i.
 */
function skip(bytes: Buffer, i: number, limit: number): number {
  // Searched in [i, e) only: a search back to the window's start would cost its length.
  const last = (e: number): number => (e > i ? bytes.subarray(i, e).lastIndexOf(ESC) : -1);
  let at = last(limit);
  if (at < 0) return limit;
  while (bytes[i + at + 1] === 0x5c) {
    at = last(i + at);
    if (at < 0) return i;
  }
  return i + at;
}
