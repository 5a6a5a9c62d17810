/**
 * `airlock audit verify|tail|export`: read-only views of the audit log. Nothing here
 * takes the log lock or writes the log, so it works on a copy and on a log another
 * user handed over for review.
 */
import * as fs from 'node:fs';
import { defaultAuditFile, headFile, readAuditFile, scanAuditFile, verifyAuditFile } from '../../audit';
import type { AuditLine, AuditRecord } from '../../audit';

export interface AuditIo { out: (s: string) => void; err: (s: string) => void }

const FILE_OPT = '  --file FILE     read FILE instead of audit.jsonl in $XDG_STATE_HOME/airlock (default ~/.local/state/airlock)\n';
const HELP_OPT = '  --help          show this help\n';

const USAGE: Record<string, string> = {
  main:
    'Usage: airlock audit <command> [options]\n\n' +
    'Commands:\n' +
    '  verify    check that no record was changed, removed or reordered\n' +
    '  tail      show the last records\n' +
    '  export    write one session\'s records as JSON Lines\n\n' +
    'Run "airlock audit <command> --help" for the options of a command.\n',
  verify:
    'Usage: airlock audit verify [--file FILE]\n\n' +
    'Checks the hash chain of the audit log and the head file. Exit 0 when intact, 1 when not.\n\n' +
    FILE_OPT + HELP_OPT,
  tail:
    'Usage: airlock audit tail [--session ID] [--json] [-n N] [--file FILE]\n\n' +
    'Shows the last N records (default 20), oldest first.\n\n' +
    '  --session ID    only records of session ID\n' +
    '  --json          print the stored JSON lines unchanged\n' +
    '  -n N            how many records\n' +
    FILE_OPT + HELP_OPT,
  export:
    'Usage: airlock audit export --session ID [--out FILE] [--file FILE]\n\n' +
    'Writes the records of session ID, byte for byte as stored, as JSON Lines.\n\n' +
    '  --session ID    the session to export (required)\n' +
    '  --out FILE      write to FILE (mode 0600) instead of standard output\n' +
    FILE_OPT + HELP_OPT,
};

class UsageError extends Error {}

type FlagKind = 'value' | 'bool';
type Flags = Record<string, string | true>;

function parseFlags(cmd: string, argv: string[], spec: Record<string, FlagKind>): Flags {
  const flags: Flags = {};
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    const eq = arg.startsWith('--') ? arg.indexOf('=') : -1;
    const name = eq > 0 ? arg.slice(0, eq) : arg;
    const kind = Object.hasOwn(spec, name) ? spec[name] : undefined;
    if (!kind) {
      throw new UsageError(arg.startsWith('-') ? `unknown option ${arg} for "audit ${cmd}"` : `unexpected argument "${arg}" for "audit ${cmd}"`);
    }
    if (kind === 'bool') {
      if (eq > 0) throw new UsageError(`option ${name} takes no value`);
      flags[name] = true;
      continue;
    }
    const value = eq > 0 ? arg.slice(eq + 1) : argv[++i];
    if (value === undefined || value === '') throw new UsageError(`option ${name} needs a value`);
    flags[name] = value;
  }
  return flags;
}

/** Strings stay bare when that is unambiguous; anything else is JSON so the line stays one line. */
function showValue(v: unknown): string {
  if (typeof v === 'string' && v !== '' && /^[^\s"'=\\\p{C}]+$/u.test(v)) return v;
  return JSON.stringify(v) ?? String(v);
}

const HIDDEN = new Set(['seq', 'ts', 'session', 'type', 'prev', 'hash']);

export function formatRecordLine(r: AuditRecord): string {
  const kv = Object.keys(r).filter((k) => !HIDDEN.has(k)).map((k) => `${k}=${showValue(r[k])}`);
  return [r.ts, r.session.slice(0, 8).padEnd(8), r.type.padEnd(14), ...kv].join('  ').trimEnd();
}

function warnDamage(file: string, io: AuditIo): void {
  const { torn, malformed } = readAuditFile(file);
  if (torn.length + malformed.length > 0) {
    io.err(`warning: ${torn.length + malformed.length} line(s) of ${file} are not intact records; run "airlock audit verify --file ${file}"\n`);
  }
}

function verify(file: string, io: AuditIo): number {
  // A head file without its log means the log was deleted: verifyAuditFile reports that.
  if (!fs.existsSync(file) && !fs.existsSync(headFile(file))) {
    io.out(`no audit log yet at ${file}\n`);
    return 0;
  }
  const v = verifyAuditFile(file);
  for (const t of v.torn) {
    io.err(`warning: line ${t.line} is a torn record (${t.bytes} bytes), left by a writer that was killed mid-write\n`);
  }
  if (v.ok) {
    io.out(`audit log OK: ${v.records} records (${file})\n`);
    return 0;
  }
  const bad = v.firstBad ?? { line: 0, reason: 'unknown failure' };
  io.err(`audit log FAILED at line ${bad.line}${bad.seq !== undefined ? ` (seq ${bad.seq})` : ''}: ${bad.reason}\n`);
  return 1;
}

function intactLines(file: string, session: string | undefined): AuditLine[] {
  return scanAuditFile(file).filter((l) => l.kind === 'record' && (session === undefined || l.record?.session === session));
}

function tail(file: string, flags: Flags, io: AuditIo): number {
  const nText = flags['-n'] as string | undefined;
  if (nText !== undefined && !/^\d+$/.test(nText)) throw new UsageError(`-n needs a whole number, got "${nText}"`);
  const n = nText === undefined ? 20 : Number(nText);
  if (!fs.existsSync(file)) {
    io.out(`no audit log yet at ${file}\n`);
    return 0;
  }
  const session = flags['--session'] as string | undefined;
  const lines = n === 0 ? [] : intactLines(file, session).slice(-n);
  for (const l of lines) io.out(`${flags['--json'] ? l.text : formatRecordLine(l.record as AuditRecord)}\n`);
  warnDamage(file, io);
  return 0;
}

function exportSession(file: string, flags: Flags, io: AuditIo): number {
  const session = flags['--session'];
  if (typeof session !== 'string') throw new UsageError('export needs --session ID');
  const lines = intactLines(file, session);
  if (lines.length === 0) {
    io.err(`no audit records for session ${session} in ${file}\n`);
    return 1;
  }
  const body = lines.map((l) => `${l.text}\n`).join('');
  const out = flags['--out'];
  if (typeof out === 'string') {
    fs.writeFileSync(out, body, { mode: 0o600 });
    io.out(`exported ${lines.length} records of session ${session} to ${out}\n`);
  } else {
    io.out(body);
  }
  warnDamage(file, io);
  return 0;
}

const SPECS: Record<string, Record<string, FlagKind>> = {
  verify: { '--file': 'value', '--help': 'bool' },
  tail: { '--file': 'value', '--help': 'bool', '--session': 'value', '--json': 'bool', '-n': 'value' },
  export: { '--file': 'value', '--help': 'bool', '--session': 'value', '--out': 'value' },
};

/** `airlock audit ...`; ARGV is what follows `audit`. Returns the exit code. */
export async function auditCommand(argv: string[], io: AuditIo): Promise<number> {
  const [cmd, ...rest] = argv;
  if (cmd === '--help' || cmd === '-h' || cmd === 'help') {
    io.out(USAGE.main);
    return 0;
  }
  try {
    if (cmd === undefined) throw new UsageError('missing command');
    const spec = Object.hasOwn(SPECS, cmd) ? SPECS[cmd] : undefined;
    if (!spec) throw new UsageError(`unknown command "${cmd}"`);
    const flags = parseFlags(cmd, rest, spec);
    if (flags['--help']) {
      io.out(USAGE[cmd]);
      return 0;
    }
    const file = typeof flags['--file'] === 'string' ? flags['--file'] : defaultAuditFile();
    if (cmd === 'verify') return verify(file, io);
    if (cmd === 'tail') return tail(file, flags, io);
    return exportSession(file, flags, io);
  } catch (e) {
    if (e instanceof UsageError) {
      const usage = cmd !== undefined && Object.hasOwn(SPECS, cmd) ? USAGE[cmd] : USAGE.main;
      io.err(`airlock audit: ${e.message}\n\n${usage}`);
      return 2;
    }
    io.err(`airlock audit: ${(e as Error).message}\n`);
    return 1;
  }
}
