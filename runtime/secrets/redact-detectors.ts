/**
 * Detectors: well-known credential shapes redacted even when nobody granted them.
 *
 * Each detector has fixed prefixes ("triggers") that the redactor's automaton finds in
 * the same pass as the granted values; a trigger starts a Run, a small state machine
 * that reads the bytes after it (across chunks) and decides whether they complete a
 * match. Runs only read forward, so their result never depends on how the input was cut.
 *
 * Token detectors match only at a token boundary (the byte before is not one of
 * [A-Za-z0-9_-]) and take the whole token run after the minimum, up to MAX_TOKEN
 * bytes: `disk-usage-...` is not an `sk-` key, and a key followed by more token bytes
 * is not half-redacted.
 */

/** A region to replace, in absolute stream offsets [s, e). */
export interface Candidate {
  s: number;
  e: number;
  name: string;
  /** Lower wins a tie between candidates with the same span (granted names first). */
  prio: number;
}

/** The priority of every detector's candidates: after any granted secret's. */
export const DETECTOR_PRIO = 1e9;

export interface Run {
  /** Earliest offset this run may still ask to redact (Infinity: none yet). */
  readonly holdFrom: number;
  /** Offset of the trigger that made the run. */
  readonly start: number;
  /** Reads its next bytes up to `end` (window byte 0 = offset `base`); true when decided. */
  feed(win: Buffer, base: number, end: number, out: Candidate[]): boolean;
  /** End of input at `end`: decides now. True when the run goes on reading after it. */
  finish(end: number, out: Candidate[]): boolean;
}

export interface Detector {
  name: string;
  triggers: string[];
  /** A run for a trigger at [start, end); `before` is the byte before it (-1: unknown). */
  start(start: number, end: number, before: number): Run | undefined;
}

/** Longest token a detector redacts; the rest of a longer run passes through. */
export const MAX_TOKEN = 8192;
/** A private key block with no END line within this many bytes is redacted up to here. */
export const PRIVATE_KEY_LIMIT = 64 * 1024;

const set = (chars: string): Uint8Array => {
  const t = new Uint8Array(256);
  for (const range of chars.match(/.-.|./gs) ?? []) {
    const lo = range.charCodeAt(0);
    const hi = range.length === 3 ? range.charCodeAt(2) : lo;
    for (let c = lo; c <= hi; c++) t[c] = 1;
  }
  return t;
};
const TOKEN = set('A-Za-z0-9_-');
const ALNUM = set('A-Za-z0-9');
const UPPER_DIGIT = set('A-Z0-9');
const WORD = set('A-Za-z0-9_');
const SLACK = set('A-Za-z0-9-');
/** RFC 3986 userinfo characters other than ':'. */
const USER = set("A-Za-z0-9._~%!$&'()*+,;=-");
/** What may follow `user:` up to the end of the authority: the password, `@`, the host. */
const AUTHORITY = set("A-Za-z0-9._~%!$&'()*+,;=:@[]-");

const atBoundary = (before: number): boolean => before < 0 || !TOKEN[before];

/** A token's shape after its prefix: at least `min` bytes of `body`. */
interface TokenShape {
  name: string;
  body: Uint8Array;
  min: number;
}

/** A prefix, then at least `min` bytes of `body`, then the rest of the token run. */
class TokenRun implements Run {
  private pos: number;
  private count = 0;
  holdFrom: number;
  constructor(readonly start: number, end: number, private readonly shape: TokenShape) {
    this.pos = end;
    this.holdFrom = start;
  }

  feed(win: Buffer, base: number, end: number, out: Candidate[]): boolean {
    const { body, min } = this.shape;
    for (let p = this.pos; p < end; p++) {
      const b = win[p - base];
      if (this.count < min) {
        if (!body[b]) return true;
        this.count++;
      } else if (!TOKEN[b]) {
        return this.decide(p, out);
      }
      if (p + 1 - this.start >= MAX_TOKEN) return this.decide(p + 1, out);
    }
    this.pos = end;
    return false;
  }

  finish(end: number, out: Candidate[]): boolean {
    this.decide(end, out);
    return false;
  }

  private decide(e: number, out: Candidate[]): boolean {
    if (this.count >= this.shape.min) out.push({ s: this.start, e, name: this.shape.name, prio: DETECTOR_PRIO });
    return true;
  }
}

/** `eyJ` header `.` `eyJ` payload `.` signature, all base64url. */
class JwtRun implements Run {
  private pos: number;
  private phase = 0;
  private count = 0;
  holdFrom: number;
  constructor(readonly start: number, end: number) {
    this.pos = end;
    this.holdFrom = start;
  }

  feed(win: Buffer, base: number, end: number, out: Candidate[]): boolean {
    for (let p = this.pos; p < end; p++) {
      const b = win[p - base];
      switch (this.phase) {
        case 0: // header
        case 2: // payload
          if (TOKEN[b]) this.count++;
          else if (b === 0x2e && this.count > 0) { this.phase++; this.count = 0; }
          else return true;
          break;
        case 1: // "eyJ" again
          if (b !== 'eyJ'.charCodeAt(this.count)) return true;
          if (++this.count === 3) { this.phase = 2; this.count = 0; }
          break;
        default: // signature, possibly empty
          if (!TOKEN[b]) return this.decide(p, out);
      }
      if (p + 1 - this.start >= MAX_TOKEN) return this.decide(p + 1, out);
    }
    this.pos = end;
    return false;
  }

  finish(end: number, out: Candidate[]): boolean {
    this.decide(end, out);
    return false;
  }

  private decide(e: number, out: Candidate[]): boolean {
    if (this.phase === 3) out.push({ s: this.start, e, name: 'jwt', prio: DETECTOR_PRIO });
    return true;
  }
}

/**
 * `scheme://user:PASSWORD@host`: only PASSWORD is redacted. The password runs from the
 * first `:` to the last `@` of the authority (as WHATWG URL parsing reads it), so an
 * unescaped `@` inside it does not leave its end visible.
 */
class PasswordRun implements Run {
  private pos: number;
  private passStart = -1;
  private lastAt = -1;
  holdFrom = Infinity;
  constructor(readonly start: number, end: number) {
    this.pos = end;
  }

  feed(win: Buffer, base: number, end: number, out: Candidate[]): boolean {
    for (let p = this.pos; p < end; p++) {
      const b = win[p - base];
      if (this.passStart < 0) {
        if (b === 0x3a) this.holdFrom = this.passStart = p + 1;
        else if (!USER[b] || p - this.start > 256) return true;
      } else if (AUTHORITY[b] && p - this.passStart < 512) {
        if (b === 0x40) this.lastAt = p;
      } else {
        return this.decide(p, out);
      }
    }
    this.pos = end;
    return false;
  }

  finish(end: number, out: Candidate[]): boolean {
    this.decide(end, out);
    return false;
  }

  private decide(e: number, out: Candidate[]): boolean {
    // A non-empty password, and a host after the `@`.
    if (this.passStart >= 0 && this.lastAt > this.passStart && this.lastAt + 1 < e) {
      out.push({ s: this.passStart, e: this.lastAt, name: 'password', prio: DETECTOR_PRIO });
    }
    return true;
  }
}

/**
 * `-----BEGIN <label>PRIVATE KEY-----` through `-----END <same label>-----`, one
 * candidate. Without an END line within PRIVATE_KEY_LIMIT bytes, the block is redacted
 * up to there (cut so as not to split a UTF-8 character) and matching resumes.
 */
class PrivateKeyRun implements Run {
  private pos: number;
  private label = '';
  private dashes = -1;
  private marker: Buffer | undefined;
  /** Start of the region to replace: the BEGIN line, or where a flush left off. */
  private from: number;
  holdFrom: number;
  constructor(readonly start: number, end: number) {
    this.pos = end;
    this.from = this.holdFrom = start;
  }

  feed(win: Buffer, base: number, end: number, out: Candidate[]): boolean {
    let p = this.pos;
    for (; !this.marker && p < end; p++) {
      const b = win[p - base];
      if (this.dashes < 0) {
        if ((b >= 0x41 && b <= 0x5a) || b === 0x20) {
          if ((this.label += String.fromCharCode(b)).length > 64) return true;
        } else if (b === 0x2d) {
          this.dashes = 1;
        } else {
          return true;
        }
      } else if (b !== 0x2d) {
        return true;
      } else if (++this.dashes === 5) {
        if (!/PRIVATE KEY( BLOCK)?$/.test(this.label)) return true;
        this.marker = Buffer.from(`-----END ${this.label}-----`, 'latin1');
      }
    }
    if (!this.marker) {
      this.pos = p;
      return false;
    }
    const limit = this.start + PRIVATE_KEY_LIMIT;
    // The window ends at `end`: indexOf sees no bytes beyond it.
    const at = win.indexOf(this.marker, p - base);
    if (at >= 0 && base + at + this.marker.length <= limit) {
      out.push({ s: this.from, e: base + at + this.marker.length, name: 'private-key', prio: DETECTOR_PRIO });
      return true;
    }
    if (end > limit) {
      let cut = limit;
      while (cut > this.from && (win[cut - base] & 0xc0) === 0x80) cut--;
      out.push({ s: this.from, e: cut, name: 'private-key', prio: DETECTOR_PRIO });
      return true;
    }
    // The next search starts where a marker cut by the window's end would begin.
    this.pos = Math.max(p, end - this.marker.length + 1);
    return false;
  }

  finish(end: number, out: Candidate[]): boolean {
    if (!this.marker) return false;
    if (end > this.from) out.push({ s: this.from, e: end, name: 'private-key', prio: DETECTOR_PRIO });
    // After a flush of an idle stream the key may go on: keep redacting up to its END.
    this.from = this.holdFrom = this.pos = end;
    return true;
  }
}

const token = (name: string, triggers: string[], body: Uint8Array, min: number): Detector => {
  const shape = { name, body, min };
  return { name, triggers, start: (start, end, before) => (atBoundary(before) ? new TokenRun(start, end, shape) : undefined) };
};

export const DETECTORS: Detector[] = [
  { name: 'private-key', triggers: ['-----BEGIN '], start: (start, end) => new PrivateKeyRun(start, end) },
  token('aws-access-key-id', ['AKIA', 'ASIA'], UPPER_DIGIT, 16),
  token('github-token', ['ghp_', 'gho_', 'ghu_', 'ghs_', 'ghr_'], ALNUM, 36),
  token('github-token', ['github_pat_'], WORD, 82),
  token('gitlab-token', ['glpat-'], TOKEN, 20),
  token('slack-token', ['xoxa-', 'xoxb-', 'xoxp-', 'xoxr-', 'xoxs-'], SLACK, 10),
  token('api-key', ['sk-'], TOKEN, 20),
  token('google-api-key', ['AIza'], TOKEN, 35),
  token('npm-token', ['npm_'], ALNUM, 36),
  { name: 'jwt', triggers: ['eyJ'], start: (start, end, before) => (atBoundary(before) ? new JwtRun(start, end) : undefined) },
  { name: 'password', triggers: ['://'], start: (start, end) => new PasswordRun(start, end) },
];
