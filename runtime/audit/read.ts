/**
 * Readers and the verifier. They never write: reading an audit log must not need
 * write access to it, and must not repair what it is supposed to report.
 *
 * A line is "torn" (left by a writer killed mid-write) when it is not JSON and either
 * is the unterminated last line of the file, or is immediately followed by the
 * `audit.torn` record that names it (line number and byte length). Torn lines are
 * reported but are not failures; every other broken line is.
 *
 * Note that a verifier racing a live writer may see that writer's half-written last
 * line and report it as torn; running it again after the writer is done settles it.
 */
import * as fs from 'node:fs';
import { readHead } from './head';
import { AuditRecord, checkLine, TORN_TYPE, ZERO_HASH } from './record';

export interface AuditLine {
  /** 1-based line number in the file. */
  line: number;
  /** Length in bytes, without the newline. */
  bytes: number;
  /** The line exactly as stored (UTF-8 decoded), without the newline. */
  text: string;
  kind: 'record' | 'torn' | 'malformed';
  record?: AuditRecord;
  /** For malformed lines whose seq could still be read. */
  seq?: number;
  reason?: string;
}

export interface ReadResult {
  /** Every line that is an intact record (its own hash checks out); not chain-checked. */
  records: AuditRecord[];
  torn: { line: number; bytes: number }[];
  malformed: { line: number; reason: string }[];
}

export interface VerifyResult {
  ok: boolean;
  /** Records verified in chain order (all of them when ok; those before the failure otherwise). */
  records: number;
  firstBad?: { line: number; seq?: number; reason: string };
  torn: { line: number; bytes: number }[];
}

/** Reads FILE whole and classifies each line. A missing file reads as empty. */
export function scanAuditFile(file: string): AuditLine[] {
  let buf: Buffer;
  try {
    buf = fs.readFileSync(file);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw e;
  }
  const raws: Buffer[] = [];
  for (let start = 0; start < buf.length;) {
    const nl = buf.indexOf(0x0a, start);
    const end = nl < 0 ? buf.length : nl;
    raws.push(buf.subarray(start, end));
    start = end + 1;
  }
  const unterminated = buf.length > 0 && buf[buf.length - 1] !== 0x0a;
  const checks = raws.map((raw) => checkLine(raw));

  return raws.map((raw, i): AuditLine => {
    const base = { line: i + 1, bytes: raw.length, text: raw.toString('utf8') };
    const c = checks[i];
    if (c.ok) return { ...base, kind: 'record', record: c.record };
    if (!c.parseable) {
      const isLast = i === raws.length - 1;
      const next = checks[i + 1];
      const namedByNext = next !== undefined && next.ok && next.record.type === TORN_TYPE &&
        next.record.line === base.line && next.record.bytes === base.bytes;
      if ((isLast && unterminated) || namedByNext) return { ...base, kind: 'torn' };
    }
    return { ...base, kind: 'malformed', seq: c.seq, reason: c.reason };
  });
}

export function readAuditFile(file: string): ReadResult {
  const result: ReadResult = { records: [], torn: [], malformed: [] };
  for (const l of scanAuditFile(file)) {
    if (l.kind === 'record') result.records.push(l.record as AuditRecord);
    else if (l.kind === 'torn') result.torn.push({ line: l.line, bytes: l.bytes });
    else result.malformed.push({ line: l.line, reason: l.reason as string });
  }
  return result;
}

/** Records of one session, in file order. */
export function sessionRecords(file: string, session: string): AuditRecord[] {
  return readAuditFile(file).records.filter((r) => r.session === session);
}

/**
 * Checks every line's hash, the chain (each prev is the previous record's hash, seq
 * goes up by one), torn-line bookkeeping, and the head file. Stops at the first
 * problem and names its line, seq and cause.
 */
export function verifyAuditFile(file: string): VerifyResult {
  // Head first: it is written only after the log is fsynced, so a head read before
  // the log can never be ahead of the log we then read, even with live writers.
  let head: ReturnType<typeof readHead>;
  let headError: string | null = null;
  try {
    head = readHead(file);
  } catch (e) {
    head = null;
    headError = (e as Error).message;
  }
  const lines = scanAuditFile(file);
  const torn = lines.filter((l) => l.kind === 'torn').map((l) => ({ line: l.line, bytes: l.bytes }));
  const hashes = new Map<number, string>();
  let prevSeq = 0;
  let prevHash = ZERO_HASH;
  const fail = (line: number, seq: number | undefined, reason: string): VerifyResult =>
    ({ ok: false, records: hashes.size, firstBad: { line, seq, reason }, torn });

  for (let i = 0; i < lines.length; i++) {
    const l = lines[i];
    if (l.kind === 'torn') continue;
    if (l.kind === 'malformed') {
      const reason = l.reason ?? 'not an audit record';
      return fail(l.line, l.seq, i === lines.length - 1 || !reason.startsWith('not valid JSON')
        ? reason
        : `${reason}: a line in the middle of the log is broken and no audit.torn record explains it`);
    }
    const r = l.record as AuditRecord;
    if (r.prev !== prevHash) {
      return fail(l.line, r.seq, prevSeq === 0
        ? 'prev is not 64 zeros although this is the first record: records were removed from the start'
        : `prev does not match the hash of seq ${prevSeq}: a record was removed or reordered`);
    }
    if (r.seq !== prevSeq + 1) {
      return fail(l.line, r.seq, `seq ${r.seq} follows seq ${prevSeq} (expected ${prevSeq + 1}): records were renumbered`);
    }
    if (r.type === TORN_TYPE) {
      const before = lines[i - 1];
      if (!before || before.kind !== 'torn' || before.line !== r.line || before.bytes !== r.bytes) {
        return fail(l.line, r.seq, `audit.torn record names line ${String(r.line)} (${String(r.bytes)} bytes), which is not the torn line before it: the log was edited`);
      }
    }
    hashes.set(r.seq, r.hash);
    prevSeq = r.seq;
    prevHash = r.hash;
  }

  const after = lines.length + 1;
  if (headError) return fail(after, undefined, headError);
  if (head && head.seq > prevSeq) {
    return fail(after, prevSeq + 1, `log ends at seq ${prevSeq} but the head file records seq ${head.seq}: records were removed from the end`);
  }
  if (head && head.seq > 0 && hashes.get(head.seq) !== head.hash) {
    const headSeq = head.seq;
    const line = lines.find((l) => l.record?.seq === headSeq)?.line ?? after;
    return fail(line, headSeq, `hash of seq ${head.seq} differs from the head file: the log was rewritten after it was synced`);
  }
  return { ok: true, records: hashes.size, torn };
}
