/**
 * A runtime that dies takes its sandboxes with it (--die-with-parent), but cannot
 * write their session.end. The next daemon does: each session whose start record
 * names a runtime pid that no longer exists, and that has no end record, is ended
 * with reason `runtime-lost`.
 */
import { AuditLog, readAuditFile } from '../audit';
import { pidAlive } from '../util/process';

export function recoverLostSessions(audit: AuditLog): string[] {
  const open = new Map<string, number>();
  for (const r of readAuditFile(audit.file).records) {
    if (r.type === 'session.start' && typeof r.runtime === 'number') open.set(r.session, r.runtime);
    else if (r.type === 'session.end') open.delete(r.session);
  }
  const lost: string[] = [];
  for (const [session, pid] of open) {
    if (pid === process.pid || pidAlive(pid)) continue;
    audit.append(session, 'session.end', { reason: 'runtime-lost', detail: `the runtime (pid ${pid}) stopped without ending the session; its processes died with it` });
    lost.push(session);
  }
  if (lost.length) audit.sync();
  return lost;
}
