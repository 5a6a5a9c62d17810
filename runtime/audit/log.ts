/**
 * The writer of the tamper-evident, append-only audit log (JSON Lines).
 *
 * Several `airlock run` processes may append to the same file at once. Under the lock
 * file, each append re-reads the last record from the end of the file and chains to
 * it, so all processes form ONE chain; each record (plus any repair of a torn line)
 * goes out in a single write(2) on an O_APPEND descriptor, so records never
 * interleave. A writer killed mid-write leaves at most a torn last line; the next
 * writer terminates it and records an `audit.torn` entry so the chain continues and
 * the damage stays visible. See head.ts for what the head file adds and its limits.
 *
 * A busy writer (the daemon: two records per outbound connection, a thousand a second in
 * a flood) may keep the lock while it is busy (`holdLock`): the first append takes the
 * lock and reads the tail, later ones chain to the record they just wrote, and the
 * lock goes once a check (every LEASE_CHECK_MS) finds no append since the last one,
 * finds that another writer is waiting (it touches `<lock>.want`, see lock.ts), or
 * the lease is LEASE_MAX_MS old. Each record is still its own write(2); no other
 * process can write in between, so the chain is the same; what goes is a dozen lock
 * and tail syscalls per record (a quarter of a millisecond on each outbound
 * connection's path here). While another writer is waiting, the lease lasts only to
 * the end of the event-loop turn, so it gets in between two turns.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { ensurePrivateDir, stateDir } from '../util/paths';
import { readHead, writeHead } from './head';
import { acquireLock, DEFAULT_LOCK_TIMEOUT_MS, lockWanted } from './lock';
import { AuditRecord, encodeFields, formatRecord, NO_SESSION, TORN_TYPE } from './record';
import { readTail, TailState } from './tail';

export interface AuditLogOptions {
  /** Default: `stateDir()/audit.jsonl`. */
  file?: string;
  /** How long to wait for another process's lock before failing (default 10 s). */
  lockTimeoutMs?: number;
  /**
   * Keep the lock while appends keep coming (see the file's comment), and chain them
   * without re-reading the file. For a long-lived process that appends from the event
   * loop (the daemon); a process that appends in a long synchronous loop would keep
   * other writers out for all of it.
   */
  holdLock?: boolean;
}

/** How often a held lock is checked for idleness and waiting writers. */
export const LEASE_CHECK_MS = 4;
/** A held lock is let go after this long even while busy; the next append then checks the file at the path again. */
const LEASE_MAX_MS = 200;

/**
 * The AuditLog holding each lock file's lease in this process. Another AuditLog of the
 * same file in this process ends that lease before it locks: it would otherwise wait
 * for a lock that only its own (blocked) event loop can release.
 */
const leaseHolders = new Map<string, AuditLog>();

/** Where the audit log lives unless told otherwise. */
export function defaultAuditFile(env: NodeJS.ProcessEnv = process.env): string {
  return path.join(stateDir(env), 'audit.jsonl');
}

export function lockFile(logFile: string): string {
  return `${logFile}.lock`;
}

function openLogFd(file: string): number {
  const fd = fs.openSync(file, 'a+', 0o600); // O_APPEND for writes; read for the tail
  // A log created by hand or by an older version may be group/world readable.
  if ((fs.fstatSync(fd).mode & 0o077) !== 0) fs.fchmodSync(fd, 0o600);
  return fd;
}

export class AuditLog {
  readonly file: string;
  private fd: number | null;
  private readonly lockTimeoutMs: number;
  private readonly holdLock: boolean;
  /** Set while this log holds the lock between appends (holdLock). */
  private lease: { release: () => void; since: number; busy: boolean; timer: NodeJS.Timeout | null } | null = null;
  /** The last record this process wrote under the current lease: the next one chains to it. */
  private leaseTail: { seq: number; hash: string } | null = null;
  private releaseError: Error | null = null;
  /**
   * Where this process's last record ended, and the record. While the file is still that
   * file, that long, and ends with those bytes, nobody has appended since (every writer
   * appends under the lock) nor edited it: the next append chains to it after reading
   * just that line back (readTail reads 64 KiB, parses and hashes the last line).
   */
  private lastWrite: { ino: number; dev: number; size: number; seq: number; hash: string; line: Buffer } | null = null;

  private constructor(file: string, fd: number, lockTimeoutMs: number, holdLock: boolean) {
    this.file = file;
    this.fd = fd;
    this.lockTimeoutMs = lockTimeoutMs;
    this.holdLock = holdLock;
  }

  static open(opts: AuditLogOptions = {}): AuditLog {
    let file: string;
    if (opts.file === undefined) {
      file = defaultAuditFile();
      ensurePrivateDir(path.dirname(file));
    } else {
      // A caller-chosen directory is created private but never chmod-ed: it may be theirs.
      file = path.resolve(opts.file);
      fs.mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
    }
    return new AuditLog(file, openLogFd(file), opts.lockTimeoutMs ?? DEFAULT_LOCK_TIMEOUT_MS, opts.holdLock ?? false);
  }

  /**
   * Appends one record and returns it as written. SESSION is a session id or "-";
   * TYPE is e.g. `process.start`; FIELDS must not use the reserved names.
   */
  append(session: string, type: string, fields?: Record<string, unknown>): AuditRecord {
    if (typeof session !== 'string' || session === '') {
      throw new Error(`audit record "${type}": session must be a session id or "${NO_SESSION}", got ${JSON.stringify(session)}`);
    }
    if (typeof type !== 'string' || type === '') throw new Error('audit record type must be a non-empty string such as "session.start"');
    if (type.startsWith('audit.')) {
      throw new Error(`audit record type "${type}" is reserved: types starting with "audit." are written by the log itself`);
    }
    const encoded = encodeFields(type, fields); // validate before taking the lock
    return this.locked(() => {
      let seq: number;
      let hash: string;
      let out = '';
      let fd: number;
      /** The file as it was before this append (unknown under a lease: then only ours grew it). */
      let st: fs.Stats | null = null;
      if (this.leaseTail) {
        // Under the lease nobody else has written since our last record.
        fd = this.fd as number;
        ({ seq, hash } = this.leaseTail);
      } else {
        ({ fd, st } = this.current());
        const k = this.lastWrite;
        const tail: TailState = k && k.ino === st.ino && k.dev === st.dev && k.size === st.size && endsWith(fd, st.size, k.line)
          ? { seq: k.seq, hash: k.hash, end: 'none' } // still ends with our last record, unedited
          : readTail(fd, st.size, this.file);
        ({ seq, hash } = tail);
        out = repairPrefix(tail);
        if (tail.end === 'torn' && tail.torn) {
          // The torn line is skipped by the chain: audit.torn links to the last GOOD record.
          const t = formatRecord({
            seq: seq + 1, ts: new Date().toISOString(), session: NO_SESSION, type: TORN_TYPE,
            fields: encodeFields(TORN_TYPE, { line: tail.torn.line, bytes: tail.torn.bytes }), prev: hash,
          });
          out += `${t.line}\n`;
          seq += 1;
          hash = t.hash;
        }
      }
      // ts is taken under the lock so that timestamps follow seq order across processes.
      const rec = formatRecord({ seq: seq + 1, ts: new Date().toISOString(), session, type, fields: encoded, prev: hash });
      out += `${rec.line}\n`;
      const bytes = Buffer.from(out, 'utf8');
      const known = st ?? this.lastWrite;
      this.lastWrite = null;
      try {
        writeAll(fd, bytes);
      } catch (e) {
        this.leaseTail = null; // the file may end mid-record now: the next append reads it
        throw e;
      }
      if (this.lease) this.leaseTail = { seq: seq + 1, hash: rec.hash };
      if (known) {
        const line = Buffer.from(`${rec.line}\n`, 'utf8');
        this.lastWrite = { ino: known.ino, dev: known.dev, size: known.size + bytes.length, seq: seq + 1, hash: rec.hash, line };
      }
      return JSON.parse(rec.line) as AuditRecord;
    });
  }

  /**
   * Flushes the log to disk, then records the last record's seq/hash in the head file
   * (see head.ts). Called by the runtime at session start and end.
   */
  sync(): void {
    this.locked(() => {
      const fd = this.currentFd();
      fs.fsyncSync(fd); // before the head: the head must never claim more than is on disk
      const tail = readTail(fd, fs.fstatSync(fd).size, this.file);
      if (tail.seq > 0) writeHead(this.file, { seq: tail.seq, hash: tail.hash });
    });
  }

  /**
   * sync() without blocking the event loop: the fsync runs on libuv's thread pool,
   * then the head file is updated as sync() does. Used at session start, where a
   * blocking fsync would delay the session's first process by a millisecond or two.
   */
  flush(): Promise<void> {
    if (this.fd === null) return Promise.resolve();
    // The head may only claim what this fsync covers: take the tail before it starts.
    const { fd, tail } = this.locked(() => {
      const cur = this.currentFd();
      return { fd: cur, tail: readTail(cur, fs.fstatSync(cur).size, this.file) };
    });
    return new Promise((resolve) => {
      fs.fsync(fd, (err) => {
        try {
          if (!err && this.fd === fd && tail.seq > 0) {
            this.locked(() => {
              if ((readHead(this.file)?.seq ?? 0) < tail.seq) writeHead(this.file, { seq: tail.seq, hash: tail.hash });
            });
          }
        } catch {
          /* the next sync() reports it */
        }
        resolve();
      });
    });
  }

  close(): void {
    this.endLease();
    if (this.fd !== null) {
      fs.closeSync(this.fd);
      this.fd = null;
    }
  }

  private locked<T>(fn: () => T): T {
    if (this.fd === null) throw new Error(`audit log ${this.file} is closed: open a new AuditLog to write to it`);
    if (this.lease) {
      this.lease.busy = true;
      return fn();
    }
    if (this.releaseError) {
      const e = this.releaseError;
      this.releaseError = null;
      throw new Error(`audit log ${this.file}: releasing its lock failed: ${e.message}`);
    }
    const lock = lockFile(this.file);
    leaseHolders.get(lock)?.endLease();
    const release = acquireLock(lock, { timeoutMs: this.lockTimeoutMs });
    if (!this.holdLock) {
      try {
        return fn();
      } finally {
        release();
      }
    }
    const lease = { release, since: Date.now(), busy: true, timer: null as NodeJS.Timeout | null };
    this.lease = lease;
    leaseHolders.set(lock, this);
    if (lockWanted(lock)) setImmediate(() => this.lease === lease && this.endLease()); // someone waits: this turn only
    else lease.timer = setInterval(() => this.checkLease(lock), LEASE_CHECK_MS);
    return fn();
  }

  /** Ends the lease when no append came since the last check, someone waits for the lock, or it is LEASE_MAX_MS old. */
  private checkLease(lock: string): void {
    const lease = this.lease;
    if (!lease) return;
    if (!lease.busy || Date.now() - lease.since >= LEASE_MAX_MS || lockWanted(lock)) this.endLease();
    else lease.busy = false;
  }

  private endLease(): void {
    const lease = this.lease;
    if (!lease) return;
    this.lease = null;
    this.leaseTail = null;
    if (lease.timer) clearInterval(lease.timer);
    const lock = lockFile(this.file);
    if (leaseHolders.get(lock) === this) leaseHolders.delete(lock);
    try {
      lease.release();
    } catch (e) {
      this.releaseError = e as Error; // in a timer there is no caller: the next append reports it
    }
  }

  /**
   * The descriptor for the file now at this.file. If the log was moved aside or
   * deleted (for example to start a new log after damage), later records go to a new
   * file at the path instead of silently into the old one.
   */
  private currentFd(): number {
    return this.current().fd;
  }

  /** currentFd(), with that descriptor's fstat. */
  private current(): { fd: number; st: fs.Stats } {
    const fd = this.fd as number;
    const mine = fs.fstatSync(fd);
    let there: fs.Stats | null = null;
    try {
      there = fs.statSync(this.file);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
    }
    if (there && there.ino === mine.ino && there.dev === mine.dev) return { fd, st: mine };
    fs.closeSync(fd);
    this.fd = null;
    this.fd = openLogFd(this.file);
    return { fd: this.fd, st: fs.fstatSync(this.fd) };
  }
}

/** Whether the SIZE-byte file open on FD ends with exactly LINE. */
function endsWith(fd: number, size: number, line: Buffer): boolean {
  if (size < line.length) return false;
  const buf = Buffer.allocUnsafe(line.length);
  return fs.readSync(fd, buf, 0, line.length, size - line.length) === line.length && buf.equals(line);
}

/** Bytes that make the file end on a line boundary before new records go out. */
function repairPrefix(tail: TailState): string {
  return tail.end === 'none' ? '' : '\n';
}

/**
 * One write(2) for everything. A regular file on a local filesystem takes it whole;
 * if the kernel ever returns short, the rest is written while we still hold the lock,
 * so other writers still cannot get in between.
 */
function writeAll(fd: number, buf: Buffer): void {
  let off = 0;
  while (off < buf.length) off += fs.writeSync(fd, buf, off, buf.length - off);
}
