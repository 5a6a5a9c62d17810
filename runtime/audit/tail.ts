/**
 * What a writer needs to know before appending: the seq and hash of the last good
 * record, and whether the file ends mid-line. It reads only a chunk from the END of
 * the file (growing it only for unusually long lines), so appending stays cheap no
 * matter how large the log grows.
 */
import * as fs from 'node:fs';
import { checkLine, ZERO_HASH } from './record';

const NL = 0x0a;
const FIRST_CHUNK = 64 * 1024;

export interface TailState {
  /** Seq and hash of the last good record; 0 and 64 zeros for an empty file. */
  seq: number;
  hash: string;
  /**
   * 'none': the file ends with a newline (or is empty).
   * 'newline': the last line is a complete record that only lacks its newline.
   * 'torn': the last line is part of a record left by a writer killed mid-write.
   */
  end: 'none' | 'newline' | 'torn';
  /** Set when end is 'torn': 1-based line number and byte length of the torn line. */
  torn?: { line: number; bytes: number };
}

function readRange(fd: number, start: number, end: number): Buffer {
  const buf = Buffer.alloc(end - start);
  let got = 0;
  while (got < buf.length) {
    const n = fs.readSync(fd, buf, got, buf.length - got, start + got);
    if (n === 0) break;
    got += n;
  }
  return buf.subarray(0, got);
}

/** Index of the last newline strictly before BEFORE, or -1 (Buffer treats negative offsets as from-the-end). */
function lastNewline(buf: Buffer, before: number): number {
  return before <= 0 ? -1 : buf.lastIndexOf(NL, before - 1);
}

/** Counts newlines in the first SIZE bytes. Only used on the rare torn-line path. */
function countNewlines(fd: number, size: number): number {
  const chunk = Buffer.alloc(1024 * 1024);
  let count = 0;
  for (let pos = 0; pos < size;) {
    const n = fs.readSync(fd, chunk, 0, Math.min(chunk.length, size - pos), pos);
    if (n === 0) break;
    for (let i = 0; i < n; i++) if (chunk[i] === NL) count++;
    pos += n;
  }
  return count;
}

function damaged(file: string, offset: number, reason: string): Error {
  return new Error(
    `audit log ${file}: the line at byte ${offset} is not a valid audit record (${reason}), so new records cannot be chained to it. ` +
    `Run "airlock audit verify --file ${file}" to see the damage, then move ${file} and ${file}.head aside to start a new log.`,
  );
}

/** Seq/hash of a complete line that must be a good record, or an Error naming the damage. */
function goodRecord(file: string, raw: Buffer, offset: number): { seq: number; hash: string } {
  const c = checkLine(raw);
  if (!c.ok) throw damaged(file, offset, c.reason);
  return { seq: c.record.seq, hash: c.record.hash };
}

/**
 * Reads the end of the log open on FD (SIZE bytes long). Throws when the last
 * complete line is not a good record: that is damage, not a crash, and chaining
 * onto it would hide it.
 */
export function readTail(fd: number, size: number, file: string): TailState {
  if (size === 0) return { seq: 0, hash: ZERO_HASH, end: 'none' };
  for (let chunk = FIRST_CHUNK; ; chunk *= 4) {
    const start = Math.max(0, size - chunk);
    const buf = readRange(fd, start, size);
    const len = buf.length;
    const more = start > 0; // a newline we did not find may lie before this chunk

    if (buf[len - 1] === NL) {
      const p = lastNewline(buf, len - 1);
      if (p < 0 && more) continue;
      return { ...goodRecord(file, buf.subarray(p + 1, len - 1), start + p + 1), end: 'none' };
    }

    const q = lastNewline(buf, len);
    if (q < 0 && more) continue;
    const last = buf.subarray(q + 1);
    const c = checkLine(last);
    if (c.ok) return { seq: c.record.seq, hash: c.record.hash, end: 'newline' };
    // A prefix of a JSON object is never valid JSON; a parseable line was edited, not torn.
    if (c.parseable) throw damaged(file, start + q + 1, c.reason);

    const torn = { line: countNewlines(fd, size) + 1, bytes: last.length };
    if (q < 0) return { seq: 0, hash: ZERO_HASH, end: 'torn', torn };
    const p = lastNewline(buf, q);
    if (p < 0 && more) continue;
    return { ...goodRecord(file, buf.subarray(p + 1, q), start + p + 1), end: 'torn', torn };
  }
}
