/**
 * Reads VS Code's shell-integration sequences (OSC 633) out of a terminal's output, and
 * turns them into commands: what ran, where, how it ended.
 *
 * UNTRUSTED INPUT. Every byte parsed here was written by something inside the sandbox:
 * the integration script, but just as well any program that prints `ESC ] 633 ; ...`
 * (a `cat` of a crafted file does). A command line, exit code or directory obtained
 * here is what the shell *reported*, never proof of what ran: the runtime records it as
 * "reported by shell", next to what it knows itself (process start and exit from the
 * agent). Hence the bounds: an unterminated sequence is dropped at 64 KiB instead of
 * buffered, reported strings are capped, and no input makes the parser throw.
 *
 * The parser only observes: it never changes the stream, which goes to the terminal as
 * it is (VS Code reads the same sequences there).
 *
 * Sequences (payload after `ESC ] 633 ;`, ended by BEL or ST = `ESC \`):
 *   A            prompt starts
 *   B            prompt ends, command input starts
 *   E;<line>[;<nonce>]  the command line about to run
 *   C            the command runs: its output starts
 *   D[;<code>]   the command finished (no code: none ran, or unknown)
 *   P;Cwd=<dir>  the current directory
 * In <line> and <dir>, `\\` is a backslash and `\xHH` the byte HH (the shell escapes
 * `;`, bytes below 0x20 and 0x7f so).
 */

export type ShellEvent =
  | { kind: 'promptStart' }
  | { kind: 'commandInputStart' }
  | { kind: 'commandLine'; commandLine: string }
  | { kind: 'commandExecuted' }
  | { kind: 'commandFinished'; exitCode: number | null }
  | { kind: 'cwd'; cwd: string };

/** Longest OSC payload kept; a longer one is dropped whole (the stream itself is untouched). */
export const MAX_OSC_BYTES = 64 * 1024;

const ESC = 0x1b;
const BEL = 0x07;
const CAN = 0x18;
const SUB = 0x1a;
const PREFIX = Buffer.from('633');

const enum State {
  Ground,
  /** after ESC */
  Escape,
  /** inside an OSC whose payload is kept (so far: a prefix of "633;", or 633) */
  Osc,
  /** inside an OSC that is not ours, or too long: skipped up to its end */
  OscIgnore,
  /** ESC inside an OSC: `\` ends it (ST), anything else aborts it */
  OscEscape,
}

/**
 * A streaming parser: push() each chunk of terminal output as it arrives; a sequence
 * split across chunks, anywhere (even between ESC and `]`), is reported once complete.
 * Memory is bounded by MAX_OSC_BYTES whatever the input.
 */
export class Osc633Parser {
  private state = State.Ground;
  /** Whether the OSC being skipped (OscEscape) was kept until then. */
  private escFromKept = false;
  private buf: Buffer | undefined;
  private len = 0;

  push(chunk: Buffer): ShellEvent[] {
    const out: ShellEvent[] = [];
    let i = 0;
    const n = chunk.length;
    while (i < n) {
      switch (this.state) {
        case State.Ground: {
          const at = chunk.indexOf(ESC, i);
          if (at < 0) return out;
          this.state = State.Escape;
          i = at + 1;
          break;
        }
        case State.Escape: {
          const b = chunk[i++];
          if (b === 0x5d /* ] */) {
            this.state = State.Osc;
            this.len = 0;
          } else if (b !== ESC) {
            this.state = State.Ground;
          }
          break;
        }
        case State.Osc:
        case State.OscIgnore: {
          const kept = this.state === State.Osc;
          // Runs of ordinary payload bytes are handled in one step.
          let j = i;
          while (j < n) {
            const b = chunk[j];
            if (b === BEL || b === ESC || b === CAN || b === SUB) break;
            j++;
          }
          if (kept && j > i) this.keep(chunk, i, j);
          i = j;
          if (i >= n) break;
          const b = chunk[i++];
          if (b === BEL) {
            if (this.state === State.Osc) this.finish(out);
            this.state = State.Ground;
          } else if (b === ESC) {
            this.escFromKept = this.state === State.Osc;
            this.state = State.OscEscape;
          } else {
            // CAN and SUB cancel a control sequence.
            this.state = State.Ground;
          }
          break;
        }
        case State.OscEscape: {
          const b = chunk[i];
          if (b === 0x5c /* \ */) {
            i++;
            if (this.escFromKept) this.finish(out);
            this.state = State.Ground;
          } else {
            // ESC followed by anything else aborts the OSC and starts a new escape
            // sequence (this byte is read again as the one after ESC).
            this.state = State.Escape;
          }
          break;
        }
      }
    }
    return out;
  }

  /** Appends payload bytes, leaving the OSC once it is clearly not ours or too long. */
  private keep(chunk: Buffer, from: number, to: number): void {
    // Decide on the prefix as early as possible: other OSCs (titles, hyperlinks,
    // clipboard) are skipped without being buffered at all.
    while (this.len < 4 && from < to) {
      const b = chunk[from++];
      const want = this.len < 3 ? PREFIX[this.len] : 0x3b; /* ; */
      if (b !== want) {
        this.state = State.OscIgnore;
        return;
      }
      this.scratch()[this.len++] = b;
    }
    const count = to - from;
    if (count === 0) return;
    if (this.len + count > MAX_OSC_BYTES) {
      this.state = State.OscIgnore;
      return;
    }
    chunk.copy(this.scratch(), this.len, from, to);
    this.len += count;
  }

  private scratch(): Buffer {
    if (!this.buf) this.buf = Buffer.allocUnsafe(MAX_OSC_BYTES);
    return this.buf;
  }

  private finish(out: ShellEvent[]): void {
    const len = this.len;
    this.len = 0;
    // "633" alone or "633;..." (a partial prefix such as "63" is another code).
    if (len < 4 || !this.buf) return;
    const ev = decode(this.buf.subarray(4, len));
    if (ev) out.push(ev);
  }
}

/** One 633 payload (after "633;") as an event, or undefined for codes not reported. */
function decode(p: Buffer): ShellEvent | undefined {
  if (p.length === 0) return undefined;
  const code = p[0];
  const rest = p.length > 1 && p[1] === 0x3b ? p.subarray(2) : p.subarray(1);
  const bare = p.length === 1;
  // A, B and C take no parameters; any that follow a ';' are ignored.
  const plain = bare || p[1] === 0x3b;
  switch (code) {
    case 0x41 /* A */:
      return plain ? { kind: 'promptStart' } : undefined;
    case 0x42 /* B */:
      return plain ? { kind: 'commandInputStart' } : undefined;
    case 0x43 /* C */:
      return plain ? { kind: 'commandExecuted' } : undefined;
    case 0x44 /* D */: {
      if (bare) return { kind: 'commandFinished', exitCode: null };
      if (p[1] !== 0x3b) return undefined;
      const s = rest.toString('latin1');
      return { kind: 'commandFinished', exitCode: /^\d{1,10}$/.test(s) && Number(s) <= 0x7fffffff ? Number(s) : null };
    }
    case 0x45 /* E */: {
      if (!bare && p[1] !== 0x3b) return undefined;
      // An optional nonce follows the line after a raw ';' (the line's own are escaped).
      const semi = rest.indexOf(0x3b);
      return { kind: 'commandLine', commandLine: unescapeValue(semi < 0 ? rest : rest.subarray(0, semi)) };
    }
    case 0x50 /* P */: {
      if (p[1] !== 0x3b) return undefined;
      const eq = rest.indexOf(0x3d /* = */);
      if (eq < 0 || rest.subarray(0, eq).toString('latin1') !== 'Cwd') return undefined;
      return { kind: 'cwd', cwd: unescapeValue(rest.subarray(eq + 1)) };
    }
    default:
      return undefined;
  }
}

function hexValue(b: number): number {
  if (b >= 0x30 && b <= 0x39) return b - 0x30;
  if (b >= 0x41 && b <= 0x46) return b - 0x41 + 10;
  if (b >= 0x61 && b <= 0x66) return b - 0x61 + 10;
  return -1;
}

/** `\\` → `\`, `\xHH` → byte HH; any other backslash stays as it is. Bytes, then UTF-8. */
export function unescapeValue(s: Buffer): string {
  if (s.indexOf(0x5c) < 0) return s.toString('utf8');
  const out = Buffer.allocUnsafe(s.length);
  let o = 0;
  for (let i = 0; i < s.length; i++) {
    const b = s[i];
    if (b === 0x5c && i + 1 < s.length) {
      if (s[i + 1] === 0x5c) {
        out[o++] = 0x5c;
        i++;
        continue;
      }
      if (s[i + 1] === 0x78 /* x */ && i + 3 < s.length) {
        const hi = hexValue(s[i + 2]);
        const lo = hexValue(s[i + 3]);
        if (hi >= 0 && lo >= 0) {
          out[o++] = hi * 16 + lo;
          i += 3;
          continue;
        }
      }
    }
    out[o++] = b;
  }
  return out.subarray(0, o).toString('utf8');
}

/** The escaping the scripts do, for tests and for anything that writes 633 itself. */
export function escapeValue(s: string): string {
  const bytes = Buffer.from(s, 'utf8');
  let out = '';
  for (const b of bytes) {
    if (b === 0x5c) out += '\\\\';
    else if (b === 0x3b) out += '\\x3b';
    else if (b < 0x20 || b === 0x7f) out += '\\x' + b.toString(16).padStart(2, '0');
    else out += String.fromCharCode(b);
  }
  // Non-ASCII bytes were appended one per char: turn them back into UTF-8 text.
  return Buffer.from(out, 'latin1').toString('utf8');
}

export type CommandEvent =
  | { type: 'command.start'; commandLine: string; cwd: string | null }
  | { type: 'command.end'; commandLine: string; exitCode: number | null; durationMs: number; cwd: string | null };

/** Longest command line reported (UTF-8 bytes, marker included). */
export const MAX_COMMAND_LINE_BYTES = 8 * 1024;
/** Longest directory reported: PATH_MAX. A longer one is not a real directory. */
export const MAX_CWD_BYTES = 4096;
export const TRUNCATED_MARKER = '…[truncated]';

/** STR cut to at most MAX UTF-8 bytes on a character boundary, marked when cut. */
export function capUtf8(str: string, max: number): string {
  if (Buffer.byteLength(str, 'utf8') <= max) return str;
  const room = max - Buffer.byteLength(TRUNCATED_MARKER, 'utf8');
  const bytes = Buffer.from(str, 'utf8');
  let end = Math.max(0, room);
  // Back off continuation bytes (10xxxxxx) so a character is never split.
  while (end > 0 && (bytes[end] & 0xc0) === 0x80) end--;
  return bytes.subarray(0, end).toString('utf8') + TRUNCATED_MARKER;
}

/**
 * Turns shell events into commands. A command starts at C (its line is the E since the
 * last prompt, '' when the shell reported none) in the last reported directory, and ends
 * at D. D without a running command (the first prompt, an empty line) is ignored, as is
 * a second C. Both events carry the directory the command started in. Everything it
 * reports is what the shell said (see the top of this file).
 */
export class CommandTracker {
  private cwd: string | null = null;
  private line: string | undefined;
  private running: { commandLine: string; cwd: string | null; startedAt: number } | undefined;

  constructor(private readonly now: () => number = Date.now) {}

  /** The command that started and has not ended, if any. */
  get current(): { commandLine: string; cwd: string | null } | undefined {
    return this.running && { commandLine: this.running.commandLine, cwd: this.running.cwd };
  }

  push(events: readonly ShellEvent[]): CommandEvent[] {
    const out: CommandEvent[] = [];
    for (const ev of events) {
      switch (ev.kind) {
        case 'promptStart':
          // A line reported before this prompt belongs to no command that will run.
          if (!this.running) this.line = undefined;
          break;
        case 'commandLine':
          if (!this.running) this.line = capUtf8(ev.commandLine, MAX_COMMAND_LINE_BYTES);
          break;
        case 'commandExecuted':
          if (this.running) break;
          this.running = { commandLine: this.line ?? '', cwd: this.cwd, startedAt: this.now() };
          this.line = undefined;
          out.push({ type: 'command.start', commandLine: this.running.commandLine, cwd: this.running.cwd });
          break;
        case 'commandFinished': {
          const r = this.running;
          if (!r) break;
          this.running = undefined;
          out.push({ type: 'command.end', commandLine: r.commandLine, exitCode: ev.exitCode, durationMs: Math.max(0, this.now() - r.startedAt), cwd: r.cwd });
          break;
        }
        case 'cwd':
          this.cwd = capUtf8(ev.cwd, MAX_CWD_BYTES);
          break;
        case 'commandInputStart':
          break;
      }
    }
    return out;
  }
}
