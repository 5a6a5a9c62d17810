/**
 * A cross-process lock for the audit log. Node has no flock(), so the lock is a file
 * created with O_EXCL ('wx') next to the log, holding the owner's pid. Everything is
 * synchronous on purpose: the runtime appends audit records from the event loop and
 * they must reach the file in the order they were made.
 */
import * as fs from 'node:fs';
import { pidAlive } from '../util/process';

export interface LockOptions {
  /** Give up after this long (default 10 s); the error says how to clear the lock. */
  timeoutMs?: number;
}

export const DEFAULT_LOCK_TIMEOUT_MS = 10_000;

/**
 * A lock file with no pid in it is normal for the instant between create and write;
 * one that stays empty this long belongs to a process killed in that instant.
 */
const EMPTY_LOCK_STALE_MS = 2_000;

/**
 * Removing a stale lock is itself guarded by `<lock>.takeover` (see takeOver). That
 * critical section lasts microseconds, so a takeover file this old was left by a
 * process killed inside it and can be removed by age alone.
 */
const TAKEOVER_STALE_MS = 5_000;

const sleeper = new Int32Array(new SharedArrayBuffer(4));

/** Blocks the thread for MS milliseconds without spinning the CPU. */
export function sleepSync(ms: number): void {
  Atomics.wait(sleeper, 0, 0, ms);
}

/** True when PID names a running process (EPERM means it exists but is someone else's). */

interface LockState { pid: number | null; mtimeMs: number }

function readLock(lockFile: string): LockState | null {
  try {
    const text = fs.readFileSync(lockFile, 'utf8');
    const st = fs.statSync(lockFile);
    const pid = /^\d+$/.test(text.trim()) ? Number(text.trim()) : null;
    return { pid, mtimeMs: st.mtimeMs };
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null; // released meanwhile
    throw e;
  }
}

function isStale(state: LockState): boolean {
  if (state.pid === null) return Date.now() - state.mtimeMs > EMPTY_LOCK_STALE_MS;
  return state.pid !== process.pid && !pidAlive(state.pid);
}

/**
 * Removes a stale lock. Two waiters that both saw the same dead pid must not both
 * unlink: the second would delete the fresh lock the first one just created. So the
 * removal happens under `<lock>.takeover` (also O_EXCL), and the lock is re-read
 * under it: only a lock that still names the dead owner is removed.
 */
function takeOver(lockFile: string, seen: LockState): boolean {
  const guard = `${lockFile}.takeover`;
  let fd: number;
  try {
    fd = fs.openSync(guard, 'wx', 0o600);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
    try {
      if (Date.now() - fs.statSync(guard).mtimeMs > TAKEOVER_STALE_MS) fs.unlinkSync(guard);
    } catch { /* another waiter removed it first */ }
    return false; // someone else is taking over: wait like for any held lock
  }
  try {
    const now = readLock(lockFile);
    if (now && now.pid === seen.pid && isStale(now)) fs.unlinkSync(lockFile);
    return true;
  } finally {
    fs.closeSync(fd);
    fs.unlinkSync(guard);
  }
}

/**
 * A writer that waits for the lock says so in `<lock>.want` (written again at each
 * retry, so its mtime says the waiter is still there); a writer that keeps the lock
 * while busy (AuditLog's holdLock) checks it and lets go. A want file older than this
 * was left by a waiter that died or gave up, and is ignored.
 */
const WANT_FRESH_MS = 1_000;

export function wantFile(lockFile: string): string {
  return `${lockFile}.want`;
}

/** Whether another writer is waiting for LOCKFILE now (one stat). */
export function lockWanted(lockFile: string): boolean {
  try {
    return Date.now() - fs.statSync(wantFile(lockFile)).mtimeMs < WANT_FRESH_MS;
  } catch {
    return false;
  }
}

function sayWanted(lockFile: string): void {
  try {
    fs.writeFileSync(wantFile(lockFile), `${process.pid}\n`, { mode: 0o600 });
  } catch { /* a holder that does not see it still lets go within LEASE_MAX_MS */ }
}

function unlinkQuietly(file: string): void {
  try {
    fs.unlinkSync(file);
  } catch { /* gone already */ }
}

/**
 * Takes the lock, waiting with short sleeps while another live process holds it.
 * Returns the function that releases it. Limits: pids are compared on this host and
 * in this pid namespace only, and a reused pid makes a stale lock look alive until
 * the timeout, whose error says to delete the lock file.
 */
export function acquireLock(lockFile: string, opts: LockOptions = {}): () => void {
  const timeoutMs = opts.timeoutMs ?? DEFAULT_LOCK_TIMEOUT_MS;
  const deadline = Date.now() + timeoutMs;
  const token = `${process.pid}\n`;
  let delay = 1;
  let holder: LockState | null = null;
  for (;;) {
    try {
      const fd = fs.openSync(lockFile, 'wx', 0o600);
      try {
        fs.writeSync(fd, token);
      } catch (e) {
        fs.closeSync(fd);
        fs.unlinkSync(lockFile);
        throw e;
      }
      if (holder) unlinkQuietly(wantFile(lockFile)); // we waited: the want was (also) ours
      return () => release(lockFile, fd);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') {
        throw new Error(`cannot create the audit log lock ${lockFile}: ${(e as Error).message}`);
      }
    }
    holder = readLock(lockFile);
    if (holder === null) continue; // released between our create and read: try again now
    if (isStale(holder) && takeOver(lockFile, holder)) continue;
    if (Date.now() >= deadline) {
      unlinkQuietly(wantFile(lockFile));
      const who = holder.pid === null ? 'a process that has not written its pid' : `pid ${holder.pid}`;
      throw new Error(
        `timed out after ${Math.round(timeoutMs / 1000)} s waiting for the audit log lock ${lockFile} ` +
        `(held by ${who}). If no airlock process is running, delete ${lockFile} and try again.`,
      );
    }
    sayWanted(lockFile);
    // Jittered backoff: waiters that woke together should not retry together.
    sleepSync(delay + Math.random() * delay);
    delay = Math.min(delay * 2, 20);
  }
}

/**
 * Unlinks the lock only if it is still ours, so a mistaken takeover cannot cascade.
 * Ours means the very file we created: the path still names the inode of our open
 * descriptor (which stays allocated while we hold it, so no new lock file can reuse
 * it); cheaper than reading the pid back (an open, a read and a close per release).
 */
function release(lockFile: string, fd: number): void {
  try {
    const mine = fs.fstatSync(fd);
    const there = fs.statSync(lockFile);
    if (there.ino === mine.ino && there.dev === mine.dev) fs.unlinkSync(lockFile);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
  } finally {
    fs.closeSync(fd);
  }
}
