/**
 * The head file: `<log>.head`, holding `{seq, hash}` of the last record at the last
 * sync(). A hash chain shows edits and removals in the middle, but cutting records
 * off the END leaves a shorter chain that is still perfectly valid. The head file is
 * a second witness of how far the log went, so the verifier can say "records were
 * removed from the end".
 *
 * Limits, by design:
 *  - It only covers records up to the last sync(); records appended after it can be
 *    cut off without trace.
 *  - Someone who can write both files (the same user) can rewrite history entirely
 *    and recompute every hash. The chain makes edits EVIDENT to anyone holding an
 *    older copy of a hash (for example a head value shipped elsewhere); it does not
 *    PREVENT them. Preventing them needs a copy out of the user's reach.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';

export interface AuditHead { seq: number; hash: string }

export function headFile(logFile: string): string {
  return `${logFile}.head`;
}

/** Returns null when there is no head file; throws with the file name when it is unreadable. */
export function readHead(logFile: string): AuditHead | null {
  const file = headFile(logFile);
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw e;
  }
  let o: unknown;
  try {
    o = JSON.parse(text);
  } catch {
    o = null;
  }
  const h = o as Partial<AuditHead> | null;
  if (!h || typeof h.seq !== 'number' || !Number.isSafeInteger(h.seq) || typeof h.hash !== 'string' || !/^[0-9a-f]{64}$/.test(h.hash)) {
    throw new Error(`head file ${file} is not {"seq":N,"hash":"<64 hex>"}: it was damaged or edited`);
  }
  return { seq: h.seq, hash: h.hash };
}

/**
 * Replaces the head file atomically (temp file + fsync + rename + directory fsync).
 * Callers fsync the log BEFORE this, so after a crash the head never claims more
 * than the log holds, and they hold the log lock, so heads never go backwards.
 */
export function writeHead(logFile: string, head: AuditHead): void {
  const file = headFile(logFile);
  const tmp = `${file}.${process.pid}.tmp`;
  fs.rmSync(tmp, { force: true }); // a leftover from a crash could have another mode
  const fd = fs.openSync(tmp, 'w', 0o600);
  try {
    fs.writeSync(fd, `${JSON.stringify({ seq: head.seq, hash: head.hash })}\n`);
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
  fs.renameSync(tmp, file);
  try {
    const dfd = fs.openSync(path.dirname(file), 'r');
    try { fs.fsyncSync(dfd); } finally { fs.closeSync(dfd); }
  } catch {
    // Some filesystems refuse fsync on a directory; the rename is still atomic.
  }
}
