/**
 * The secret redactor: everything that leaves the runtime toward a client (PTY streams,
 * command output, JSON events, audit records) passes through it, so that granted secret
 * values never reach an AI vendor's conversation history.
 *
 * Each granted value is looked for in every form a program commonly prints it
 * (redact-forms.ts: raw, base64 and base64url at the three byte alignments, hex, URL
 * encoding), and well-known credential shapes are looked for even when nobody granted
 * them (redact-detectors.ts). Each match becomes `[REDACTED:NAME]`; overlapping
 * matches become one, named after the leftmost (then longest).
 *
 * Matching is one Aho-Corasick pass over bytes (redact-automaton.ts) for all forms and
 * all detector prefixes together; the stream (redact-stream.ts) holds back only the
 * tail that could still become a match, and never splits a UTF-8 character or a
 * terminal escape sequence with a replacement (redact-escapes.ts).
 *
 * LIMITATION: only these exact spellings are found. A value the sandbox transforms
 * otherwise (reversed, interleaved with other output, line-wrapped base64 as `base64`
 * prints it without `-w0`, compressed, encrypted, encoded twice) passes through, as
 * does a part of a value or a form shorter than MIN_SECRET_BYTES: the redactor stops
 * accidents, not a program that sets out to exfiltrate. A flush (an idle terminal)
 * emits the part of a value written so far as it is (the rest is still redacted).
 * Detected tokens are redacted up to MAX_TOKEN bytes, private key blocks up to 64 KiB.
 */
import { Automaton, Pattern } from './redact-automaton';
import { DETECTORS } from './redact-detectors';
import { MAX_SECRET_BYTES, secretForms } from './redact-forms';
import { Matcher, RedactionStream, Stream } from './redact-stream';

export { MIN_SECRET_BYTES, MAX_SECRET_BYTES, secretForms } from './redact-forms';
export { MAX_TOKEN, PRIVATE_KEY_LIMIT } from './redact-detectors';
export { MAX_REGION } from './redact-stream';
export type { RedactionStream } from './redact-stream';

export interface RedactionSecret {
  /** [A-Za-z_][A-Za-z0-9_.-]*: it appears in the output as `[REDACTED:name]`. */
  name: string;
  value: string;
}

/** The names detectors redact under, whether or not detectors are on. */
export const DETECTOR_NAMES: readonly string[] = [...new Set(DETECTORS.map((d) => d.name))];

const NAME = /^[A-Za-z_][A-Za-z0-9_.-]*$/;

/**
 * Short strings redactString has answered, until the secrets change: audit records and
 * events repeat the same keys and values (field names, hosts, rules, "allow") thousands
 * of times a second in a flood, and each answer costs a buffer and a matcher pass.
 */
const CACHE_MAX_LENGTH = 256;
const CACHE_ENTRIES = 4096;

export class Redactor {
  private readonly detectors: boolean;
  private matcher: Matcher;
  private readonly answers = new Map<string, string>();

  constructor(opts: { detectors?: boolean } = {}) {
    this.detectors = opts.detectors ?? true;
    this.matcher = compile([], this.detectors);
  }

  /**
   * Replaces the set of granted secrets (grant/revoke/expiry call this). Streams made
   * earlier use the new set from their next push (their held bytes are matched again).
   */
  setSecrets(list: RedactionSecret[]): void {
    for (const s of list) {
      if (typeof s.name !== 'string' || !NAME.test(s.name)) {
        throw new TypeError(`secret name ${JSON.stringify(s.name)} is not valid: use letters, digits, '_', '.', '-', not starting with a digit, '.' or '-'`);
      }
      if (typeof s.value !== 'string') throw new TypeError(`secret ${s.name}: its value must be a string`);
      const bytes = Buffer.byteLength(s.value, 'utf8');
      if (bytes > MAX_SECRET_BYTES) {
        throw new RangeError(`secret ${s.name} is ${bytes} bytes: at most ${MAX_SECRET_BYTES} can be redacted; grant a shorter value (e.g. a token instead of a file)`);
      }
    }
    this.matcher = compile(list, this.detectors);
    this.answers.clear();
  }

  /** True when the redactor has nothing to do (no secrets and detectors off). */
  get idle(): boolean {
    return this.matcher.idle;
  }

  stream(): RedactionStream {
    return new Stream(() => this.matcher);
  }

  redactBuffer(b: Buffer): Buffer {
    return this.redact(b).out;
  }

  redactString(s: string): string {
    if (this.idle || s.length === 0) return s;
    const known = this.answers.get(s);
    if (known !== undefined) return known;
    const { out, replaced } = this.redact(Buffer.from(s, 'utf8'));
    // Unchanged: the string itself (a lone surrogate would not survive UTF-8 and back).
    const answer = replaced ? out.toString('utf8') : s;
    if (s.length <= CACHE_MAX_LENGTH) {
      if (this.answers.size >= CACHE_ENTRIES) this.answers.clear();
      this.answers.set(s, answer);
    }
    return answer;
  }

  /**
   * A copy of a JSON-like value with every string, object keys included, redacted;
   * parts with nothing to redact are shared with the input (the same object when
   * nothing changed). Values that are not JSON-like (a Date, a Buffer) are kept as they are.
   */
  redactValue<T>(v: T): T {
    return this.idle ? v : (this.value(v) as T);
  }

  private value(v: unknown): unknown {
    if (typeof v === 'string') return this.redactString(v);
    if (Array.isArray(v)) {
      let copy: unknown[] | undefined;
      for (let i = 0; i < v.length; i++) {
        const r = this.value(v[i]);
        if (r !== v[i]) (copy ??= v.slice())[i] = r;
      }
      return copy ?? v;
    }
    if (v === null || typeof v !== 'object') return v;
    const proto = Object.getPrototypeOf(v);
    if (proto !== Object.prototype && proto !== null) return v;
    let changed = false;
    const copy: Record<string, unknown> = proto === null ? Object.create(null) : {};
    for (const [k, x] of Object.entries(v)) {
      const rk = this.redactString(k);
      const rx = this.value(x);
      if (rk !== k || rx !== x) changed = true;
      // defineProperty: a key "__proto__" stays a plain key.
      Object.defineProperty(copy, rk, { value: rx, enumerable: true, writable: true, configurable: true });
    }
    return changed ? copy : v;
  }

  private redact(b: Buffer): { out: Buffer; replaced: boolean } {
    if (this.idle) return { out: b, replaced: false };
    const st = new Stream(() => this.matcher);
    const head = st.push(b);
    const tail = st.flush();
    return { out: tail.length === 0 ? head : Buffer.concat([head, tail]), replaced: st.replaced };
  }
}

/**
 * The matcher without granted values (every session's until a grant, ~2 ms to build)
 * is the same for all redactors: built once per detectors setting. Matchers are never
 * changed after they are built, so sharing one is safe.
 */
const withoutSecrets = new Map<boolean, Matcher>();

function compile(list: RedactionSecret[], detectors: boolean): Matcher {
  if (list.length > 0) return build(list, detectors);
  let m = withoutSecrets.get(detectors);
  if (!m) withoutSecrets.set(detectors, (m = build(list, detectors)));
  return m;
}

/** The automaton for the granted values' forms and (when on) the detectors' prefixes. */
function build(list: RedactionSecret[], detectors: boolean): Matcher {
  const patterns: Pattern[] = [];
  const names: string[] = [];
  const prios: number[] = [];
  const seen = new Set<string>();
  list.forEach((secret, index) => {
    for (const form of secretForms(secret.value)) {
      // The same form for two secrets: the first one's name.
      if (seen.has(form)) continue;
      seen.add(form);
      patterns.push({ bytes: Buffer.from(form, 'latin1'), literal: names.length, trigger: -1 });
      names.push(secret.name);
      prios.push(index);
    }
  });
  const triggers: Matcher['triggers'] = [];
  if (detectors) {
    for (const detector of DETECTORS) {
      for (const t of detector.triggers) {
        patterns.push({ bytes: Buffer.from(t, 'latin1'), literal: -1, trigger: triggers.length });
        triggers.push({ detector, length: t.length });
      }
    }
  }
  return { auto: Automaton.build(patterns), names, prios, triggers, idle: patterns.length === 0 };
}

