/**
 * `exec`: one command with pipes, its output collected with a cap and a timeout.
 *
 * Results go to agents, whose conversation history keeps whatever they get: each
 * stream keeps its first and last halves of maxOutputBytes (default 64 KiB) with a
 * note of what was left out, and the whole stream is saved inside the sandbox
 * (/tmp/airlock-output/, written by the agent there) where the agent can page through
 * it. Everything was redacted on the way out of the sandbox (SandboxProcess), and is
 * redacted again whole here, so a value written in pieces with pauses is caught too.
 */
import type { Api, ExecResult } from '../protocol';
import type { Session } from '../sessions';

export const DEFAULT_MAX_OUTPUT = 64 * 1024;
const DEFAULT_TIMEOUT_MS = 60_000;
export const SPILL_DIR = '/tmp/airlock-output';

/** One stream: head, a ring of the tail, and (once over the cap) a spill file inside. */
class CappedStream {
  private head: Buffer[] = [];
  private headBytes = 0;
  private tail: Buffer[] = [];
  private tailBytes = 0;
  total = 0;
  /** Writes to the spill file, in order; the first failure stops spilling. */
  private spilling: Promise<void> | undefined;
  spillError: string | undefined;

  constructor(
    private readonly max: number,
    private readonly spillPath: string,
    private readonly write: (data: Buffer, append: boolean) => Promise<void>,
  ) {}

  add(d: Buffer): void {
    this.total += d.length;
    const headRoom = Math.ceil(this.max / 2) - this.headBytes;
    if (headRoom > 0) {
      const take = d.subarray(0, headRoom);
      this.head.push(take);
      this.headBytes += take.length;
      d = d.subarray(take.length);
    }
    if (d.length === 0) return;
    this.tail.push(d);
    this.tailBytes += d.length;
    // Spilled before the ring drops anything, so the spill file starts with byte 0.
    if (this.total > this.max) this.spill(d);
    const keep = Math.floor(this.max / 2);
    while (this.tail.length > 0 && this.tailBytes - this.tail[0]!.length >= keep) this.tailBytes -= this.tail.shift()!.length;
  }

  private spill(latest: Buffer): void {
    if (this.spillError) return;
    if (!this.spilling) {
      // First time over the cap: what came before (head and the tail ring, which still
      // holds everything since the head) goes first.
      const before = Buffer.concat([...this.head, ...this.tail.slice(0, -1)]);
      this.spilling = this.write(before, false);
    }
    this.spilling = this.spilling.then(() => this.write(latest, true)).catch((e: Error) => {
      this.spillError ??= e.message;
    });
  }

  get omitted(): number {
    return Math.max(0, this.total - this.max);
  }

  async done(): Promise<void> {
    await this.spilling;
  }

  text(redact: (s: string) => string): string {
    if (this.total <= this.max) return redact(Buffer.concat([...this.head, ...this.tail]).toString('utf8'));
    const head = Buffer.concat(this.head);
    let tail = Buffer.concat(this.tail);
    tail = tail.subarray(tail.length - Math.floor(this.max / 2));
    const where = this.spillError ? `the full output could not be saved: ${this.spillError}` : `the full output is in ${this.spillPath} inside the sandbox`;
    const note = `\n[airlock: ${this.omitted} byte${this.omitted === 1 ? '' : 's'} left out; ${where}]\n`;
    return redact(utf8Head(head).toString('utf8')) + note + redact(utf8Tail(tail).toString('utf8'));
  }
}

/** HEAD without a trailing partial UTF-8 character. */
function utf8Head(b: Buffer): Buffer {
  let i = b.length;
  let back = 0;
  while (i > 0 && back < 4 && (b[i - 1]! & 0xc0) === 0x80) {
    i--;
    back++;
  }
  if (i > 0 && b[i - 1]! >= 0xc0) {
    const lead = b[i - 1]!;
    const need = lead >= 0xf0 ? 4 : lead >= 0xe0 ? 3 : 2;
    if (back + 1 < need) return b.subarray(0, i - 1);
  }
  return b;
}

/** TAIL without a leading partial UTF-8 character. */
function utf8Tail(b: Buffer): Buffer {
  let i = 0;
  while (i < b.length && i < 3 && (b[i]! & 0xc0) === 0x80) i++;
  return b.subarray(i);
}

export async function runExec(session: Session, p: Api['exec'][0]): Promise<ExecResult> {
  const t0 = Date.now();
  const proc = await session.spawn({ argv: p.argv, cwd: p.cwd, env: p.env, pty: false, closeStdin: !p.stdin });
  const max = p.maxOutputBytes ?? DEFAULT_MAX_OUTPUT;
  const stream = (name: 'stdout' | 'stderr'): CappedStream => {
    const file = `${SPILL_DIR}/exec-${proc.id}.${name}`;
    return new CappedStream(max, file, (data, append) => session.writeFileInside(file, data, { mode: 0o600, append }));
  };
  const out = stream('stdout');
  const err = stream('stderr');
  proc.on('stdout', (d) => out.add(d));
  proc.on('stderr', (d) => err.add(d));
  if (p.stdin) {
    proc.write(p.stdin);
    proc.end();
  }
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    proc.signal('SIGKILL');
  }, p.timeoutMs ?? DEFAULT_TIMEOUT_MS);
  const exit = await proc.exited;
  clearTimeout(timer);
  await Promise.all([out.done(), err.done()]);
  const redact = (s: string): string => session.redaction.text(s);
  const spilled = (s: CappedStream, name: string): string | undefined => (s.omitted > 0 && !s.spillError ? `${SPILL_DIR}/exec-${proc.id}.${name}` : undefined);
  const full = { stdout: spilled(out, 'stdout'), stderr: spilled(err, 'stderr') };
  return {
    exitCode: exit.code,
    signal: exit.signal,
    stdout: out.text(redact),
    stderr: err.text(redact),
    truncated: out.omitted + err.omitted > 0,
    omittedBytes: { stdout: out.omitted, stderr: err.omitted },
    ...(full.stdout || full.stderr ? { fullOutput: JSON.parse(JSON.stringify(full)) as { stdout?: string; stderr?: string } } : {}),
    timedOut,
    durationMs: Date.now() - t0,
  };
}
