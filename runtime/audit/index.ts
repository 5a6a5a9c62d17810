/**
 * Tamper-evident, append-only audit log. The writer is in log.ts, the line format
 * and hashing in record.ts, readers and the verifier in read.ts, the head file
 * (truncation detection and its limits) in head.ts, the cross-process lock in lock.ts.
 */
export { AuditLog, defaultAuditFile, LEASE_CHECK_MS, lockFile } from './log';
export type { AuditLogOptions } from './log';
export { NO_SESSION, RESERVED_FIELDS, TORN_TYPE, ZERO_HASH, formatRecord, encodeFields } from './record';
export type { AuditRecord } from './record';
export { readAuditFile, scanAuditFile, sessionRecords, verifyAuditFile } from './read';
export type { AuditLine, ReadResult, VerifyResult } from './read';
export { headFile, readHead } from './head';
export type { AuditHead } from './head';
export { acquireLock, wantFile } from './lock';
export type { LockOptions } from './lock';
