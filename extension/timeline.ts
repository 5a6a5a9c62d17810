/**
 * A session's timeline: its audit records in order — commands (as the shell reported
 * them), processes, network calls, grants, secrets and access requests — as one
 * Markdown document headed by the audit chain's verification result. Built from the
 * log's own lines (audit.export) and audit.verify, so it shows what the record holds.
 * Saving the document is its export; "Export Audit" gives the records themselves.
 */
import type { RuntimeClient } from '../runtime/client/client';
import type { AuditRecord } from '../runtime/audit';

/** A session's audit lines exactly as stored, page by page (audit.export), oldest first. */
export async function* auditPages(c: RuntimeClient, sessionId: string): AsyncGenerator<{ jsonl: string; records: number }> {
  for (let after = 0, done = false; !done;) {
    const page = await c.call('audit.export', { sessionId, afterSeq: after });
    yield page;
    after = page.lastSeq;
    done = page.done;
  }
}

/** The session's records, oldest first. */
export async function sessionRecords(c: RuntimeClient, sessionId: string): Promise<AuditRecord[]> {
  const out: AuditRecord[] = [];
  for await (const page of auditPages(c, sessionId)) {
    for (const line of page.jsonl.split('\n')) if (line) out.push(JSON.parse(line) as AuditRecord);
  }
  return out;
}

const flat = (v: unknown): string => String(v ?? '').replace(/[\r\n]+/g, ' ').slice(0, 300);
/**
 * A value as inert Markdown text. Records carry what the sandbox chose (a command line
 * its shell reported, a host it asked for), and a person may open the timeline's
 * preview: an image or HTML there would be fetched by the host, around the proxy. So
 * every character Markdown or HTML acts on is escaped, and "://" too (no clickable
 * URL the sandbox chose; hosts and ports stay as they are).
 */
export const cell = (v: unknown): string => flat(v).replace(/[\\`*_{}[\]()#!<>|~]/g, (c) => `\\${c}`).replace(/&/g, '&amp;').replace(/:\/\//g, '\\://');
/** A value inside a code span (literal there: only backticks and the table's pipes matter). */
const code = (v: unknown): string => flat(v).replace(/`/g, "'").replace(/\|/g, '\\|');

/** One line of prose per record; undefined leaves it out (net.close is folded into its connect). */
function describe(r: AuditRecord, closes: Map<string, AuditRecord>): [string, string] | undefined {
  const f = r as Record<string, unknown>;
  switch (r.type) {
    case 'session.start':
      return ['session', `started in ${cell(f.workspace)} (${cell(f.driver)})`];
    case 'session.end':
      return ['session', `ended: ${cell(f.reason)}${f.detail ? ` (${cell(f.detail)})` : ''}`];
    case 'process.start':
      return ['process', `started ${cell(Array.isArray(f.argv) ? (f.argv as unknown[]).join(' ') : f.argv)}`];
    case 'process.exit':
      return ['process', `exited ${f.signal ? `by ${cell(f.signal)}` : `with ${cell(f.code ?? f.exitCode)}`}`];
    case 'command.start':
      return undefined; // its end says it all; a command that never ended shows below
    case 'command.end':
      return ['command', `\`${code(f.commandLine)}\` → exit ${cell(f.exitCode)} in ${(Number(f.durationMs ?? 0) / 1000).toFixed(1)} s (reported by the shell)`];
    case 'net.connect': {
      const close = closes.get(String(f.conn));
      const what = `${f.method ? `${cell(f.method)} ${cell(f.path)} ` : ''}${cell(f.host)}:${cell(f.port)}`;
      const bytes = close ? `, ${cell(close.bytesUp)} B up / ${cell(close.bytesDown)} B down in ${cell(close.durationMs)} ms` : '';
      return ['network', `**${f.decision === 'allow' ? 'allowed' : 'DENIED'}** ${what} (rule ${cell(f.rule)}${f.process !== undefined ? `, process ${cell(f.process)}` : ''})${bytes}`];
    }
    case 'net.close':
      return undefined;
    case 'net.rule-added':
      return ['grant', `${cell(f.rule)} allowed until ${cell(f.expiresAt)} by ${cell(f.by)}`];
    case 'net.rule-expired':
      return ['grant', `${cell(f.rule)} expired`];
    case 'secret.grant':
      return ['secret', `${cell(f.name)} granted (${cell(f.mode)}${Array.isArray(f.hosts) ? ` for ${cell((f.hosts as unknown[]).join(', '))}` : ''}) until ${cell(f.expiresAt)} by ${cell(f.by)}`];
    case 'secret.use':
      return ['secret', `${cell(f.name)} used for ${cell(f.method)} ${cell(f.host)}${cell(f.path)}`];
    case 'secret.blocked':
      return ['secret', `**${cell(f.name)} BLOCKED** on its way to ${cell(f.host)} (${cell(f.reason)})`];
    case 'secret.revoke':
    case 'secret.expire':
      return ['secret', `${cell(f.name)} ${r.type === 'secret.revoke' ? 'revoked' : 'expired'}`];
    default: {
      const { seq: _s, ts: _t, session: _se, type: _ty, prev: _p, hash: _h, ...rest } = f;
      return [r.type.split('.')[0]!, `${cell(r.type)} ${cell(JSON.stringify(rest))}`];
    }
  }
}

export function timelineMarkdown(sessionId: string, records: AuditRecord[], verify: { ok: boolean; records: number; file: string; firstBad?: { line: number; seq?: number; reason: string } }): string {
  const closes = new Map(records.filter((r) => r.type === 'net.close').map((r) => [String((r as Record<string, unknown>).conn), r]));
  const rows = records.map((r) => [r, describe(r, closes)] as const).filter(([, d]) => d);
  const chain = verify.ok
    ? `verified: the log's ${verify.records} records are unchanged and in order (${verify.file})`
    : `**FAILED** at line ${verify.firstBad?.line}${verify.firstBad?.seq !== undefined ? ` (seq ${verify.firstBad.seq})` : ''}: ${cell(verify.firstBad?.reason)}`;
  const denied = records.filter((r) => r.type === 'net.connect' && (r as Record<string, unknown>).decision === 'deny').length;
  return [
    `# Airlock session ${sessionId}`,
    '',
    `- Audit chain: ${chain}`,
    `- ${records.length} records, ${records.filter((r) => r.type === 'command.end').length} commands, ${records.filter((r) => r.type === 'net.connect').length} connections (${denied} denied)`,
    '- Commands are reported by the shell inside the sandbox: untrusted.',
    '',
    '| time | seq | kind | what |',
    '|---|---|---|---|',
    ...rows.map(([r, d]) => `| ${r.ts} | ${r.seq} | ${d![0]} | ${d![1]} |`),
    '',
  ].join('\n');
}
