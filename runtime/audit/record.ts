/**
 * The byte format of one audit record and the check of one line. Both the writer and
 * the readers use this file, so what is hashed and what is verified cannot drift.
 *
 * A line is `JSON.stringify(recordWithoutHash)` with `,"hash":"<sha256>"` inserted
 * before the final `}`. The hash is over the exact UTF-8 bytes of the line without
 * the hash, and the verifier recomputes it from the raw bytes on disk (not from a
 * re-serialised object), so any changed byte is caught.
 */
import * as crypto from 'node:crypto';

export interface AuditRecord {
  seq: number;
  ts: string;
  session: string;
  type: string;
  prev: string;
  hash: string;
  [field: string]: unknown;
}

/** `prev` of the first record in a file. */
export const ZERO_HASH = '0'.repeat(64);
/** `session` of records that belong to no session. */
export const NO_SESSION = '-';
/** Written by the log itself after a line torn by a killed writer. */
export const TORN_TYPE = 'audit.torn';
/** Caller fields may not use these names: they would forge the chain. */
export const RESERVED_FIELDS: readonly string[] = ['seq', 'ts', 'session', 'type', 'prev', 'hash'];

const HEX64 = /^[0-9a-f]{64}$/;
/** `,"hash":"` + 64 hex digits + `"}` */
const HASH_SUFFIX_BYTES = 9 + 64 + 2;

export function sha256Hex(data: Buffer | string): string {
  return crypto.createHash('sha256').update(data).digest('hex');
}

/**
 * Serialises caller fields to the text that goes between `type` and `prev` (without
 * the braces; '' when there are none). Refuses reserved names, including ones that
 * only appear after a toJSON(), since what matters is what lands in the file.
 */
export function encodeFields(type: string, fields: Record<string, unknown> | undefined): string {
  if (fields === undefined) return '';
  if (fields === null || typeof fields !== 'object' || Array.isArray(fields)) {
    throw new Error(`audit fields for "${type}" must be a plain object, got ${Array.isArray(fields) ? 'an array' : typeof fields}`);
  }
  let json: string | undefined;
  try {
    json = JSON.stringify(fields) as string | undefined;
  } catch (e) {
    throw new Error(`audit fields for "${type}" cannot be written as JSON: ${(e as Error).message}`);
  }
  const back: unknown = json === undefined ? undefined : JSON.parse(json);
  if (json === undefined || back === null || typeof back !== 'object' || Array.isArray(back)) {
    throw new Error(`audit fields for "${type}" must serialise to a JSON object`);
  }
  for (const key of Object.keys(back)) {
    if (RESERVED_FIELDS.includes(key)) {
      throw new Error(
        `audit field "${key}" in a "${type}" record is reserved (${RESERVED_FIELDS.join(', ')} are set by the log): rename the field`,
      );
    }
  }
  return json.slice(1, -1);
}

export interface RecordParts {
  seq: number;
  ts: string;
  session: string;
  type: string;
  /** Output of encodeFields. */
  fields: string;
  prev: string;
}

/**
 * Builds the line (without its newline). The string is assembled by hand rather than
 * with JSON.stringify(object) because JS objects move integer-like keys ("0", "42")
 * to the front; this way the documented key order holds for any field name. For all
 * other keys the result is byte-identical to JSON.stringify of the record.
 */
export function formatRecord(p: RecordParts): { line: string; hash: string } {
  const body =
    `{"seq":${p.seq},"ts":${JSON.stringify(p.ts)},"session":${JSON.stringify(p.session)},` +
    `"type":${JSON.stringify(p.type)}${p.fields ? ',' + p.fields : ''},"prev":"${p.prev}"}`;
  const hash = sha256Hex(Buffer.from(body, 'utf8'));
  return { line: `${body.slice(0, -1)},"hash":"${hash}"}`, hash };
}

export type LineCheck =
  | { ok: true; record: AuditRecord }
  /** parseable: the bytes are JSON. A line torn by a killed writer never is. */
  | { ok: false; parseable: boolean; seq?: number; reason: string };

function shapeProblem(o: Record<string, unknown>): string | null {
  if (typeof o.seq !== 'number' || !Number.isSafeInteger(o.seq) || o.seq < 1) return 'field "seq" is missing or not a positive integer';
  for (const k of ['ts', 'session', 'type'] as const) {
    if (typeof o[k] !== 'string') return `field "${k}" is missing or not a string`;
  }
  for (const k of ['prev', 'hash'] as const) {
    if (typeof o[k] !== 'string' || !HEX64.test(o[k] as string)) return `field "${k}" is missing or not 64 lowercase hex digits`;
  }
  return null;
}

/** Checks one line (without its newline): JSON, shape, and the hash over its raw bytes. */
export function checkLine(raw: Buffer): LineCheck {
  let parsed: unknown;
  try {
    parsed = JSON.parse(raw.toString('utf8'));
  } catch (e) {
    return { ok: false, parseable: false, reason: `not valid JSON (${(e as Error).message})` };
  }
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) {
    return { ok: false, parseable: true, reason: 'not a JSON object' };
  }
  const o = parsed as Record<string, unknown>;
  const seq = typeof o.seq === 'number' ? o.seq : undefined;
  const problem = shapeProblem(o);
  if (problem) return { ok: false, parseable: true, seq, reason: `not an audit record: ${problem}` };
  const suffix = Buffer.from(`,"hash":"${o.hash as string}"}`, 'utf8');
  if (raw.length < HASH_SUFFIX_BYTES || !raw.subarray(raw.length - HASH_SUFFIX_BYTES).equals(suffix)) {
    return { ok: false, parseable: true, seq, reason: '"hash" is not the last field: the line was rewritten after it was written' };
  }
  const body = Buffer.concat([raw.subarray(0, raw.length - HASH_SUFFIX_BYTES), Buffer.from('}')]);
  if (sha256Hex(body) !== o.hash) {
    return { ok: false, parseable: true, seq, reason: 'hash mismatch: the record was modified after it was written' };
  }
  return { ok: true, record: o as AuditRecord };
}
