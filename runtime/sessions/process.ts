/** One process inside a session, as the runtime sees it. */
import { EventEmitter } from 'node:events';
import { constants as osConstants } from 'node:os';
import type { AgentChannel } from '../agent/channel';
import { markHeadroom, takeHeadroom } from '../protocol/frames';
import type { RedactionStream, Redactor } from '../secrets/redact';

export interface ProcessExit {
  code: number | null;
  signal: NodeJS.Signals | null;
  /** Why the process ended when the runtime ended it (the session ended). */
  reason?: string;
}

export interface ProcessEvents {
  stdout: [data: Buffer];
  stderr: [data: Buffer];
  exit: [exit: ProcessExit];
  /** Queued input fell below the high-water mark after write() returned false. */
  drain: [];
  /** The process took BYTES of input (for clients doing their own input flow control). */
  inputTaken: [bytes: number];
}

/** Unwritten stdin bytes (sent but not yet taken by the process) before write() says stop. */
const INPUT_HIGH = 1 << 20;
/**
 * How long output the redactor holds back (a tail that may be the start of a secret or
 * a credential) waits for more before it is let through: a terminal must show its
 * prompt, and echo a keystroke (the first letter of a word can start a token: `s` of
 * `sk-...`) without a delay anyone notices; pipes feed programs and files, and wait
 * longer. LIMITATION: a process that writes a value in pieces separated by longer
 * pauses gets it past the redactor on a live stream (exec results are redacted again
 * whole).
 */
export const REDACT_HOLD_MS = { pty: 10, pipe: 50 };

export function signalName(n: number): NodeJS.Signals | null {
  const entry = Object.entries(osConstants.signals).find(([, v]) => v === n);
  return (entry?.[0] as NodeJS.Signals | undefined) ?? null;
}

export function signalNumber(sig: NodeJS.Signals | number): number {
  const n = typeof sig === 'number' ? sig : osConstants.signals[sig];
  if (!Number.isInteger(n) || n <= 0 || n >= 65) throw new Error(`unknown signal ${String(sig)}`);
  return n;
}

/**
 * Output is flow-controlled: the agent stops reading a process's output once 1 MiB
 * is unacknowledged. By default bytes are acknowledged as soon as they are emitted;
 * a consumer that must not buffer (a terminal, a socket) sets manualAck and calls
 * ack() when it has written them on.
 */
export class SandboxProcess extends EventEmitter<ProcessEvents> {
  pid = 0;
  exitInfo: ProcessExit | undefined;
  readonly startedAt = Date.now();
  readonly exited: Promise<ProcessExit>;
  private resolveExit!: (e: ProcessExit) => void;
  manualAck = false;

  /** Per stream: the redactor's state, and raw bytes it took that no emitted output accounts for yet. */
  private readonly redact: Record<'stdout' | 'stderr', { rs: RedactionStream; raw: number }> | undefined;
  /** Emitted output not yet acknowledged, with the raw bytes it stands for (in emission order). */
  private readonly emitted: { out: number; raw: number }[] = [];
  private holdTimer: NodeJS.Timeout | undefined;

  constructor(
    readonly id: number,
    readonly argv: string[],
    readonly pty: boolean,
    private readonly channel: AgentChannel,
    private readonly onInput: () => void,
    /** Every byte of output passes through it before anyone sees it (see runtime/secrets). */
    redactor?: Redactor,
    /** Stdin was closed with the spawn request: there is no input to send. */
    private readonly stdinClosed = false,
  ) {
    super();
    this.exited = new Promise((r) => (this.resolveExit = r));
    if (redactor) this.redact = { stdout: { rs: redactor.stream(), raw: 0 }, stderr: { rs: redactor.stream(), raw: 0 } };
  }

  get running(): boolean {
    return this.exitInfo === undefined;
  }

  private inFlight = 0;

  /**
   * Sends input. Returns false once 1 MiB is queued and not yet read by the process:
   * pause the source until 'drain' (the agent refuses input beyond 8 MiB).
   */
  write(data: string | Buffer): boolean {
    if (!this.running || this.stdinClosed) return true;
    const buf = typeof data === 'string' ? Buffer.from(data) : data;
    this.onInput();
    this.inFlight += buf.length;
    this.channel.stdin(this.id, buf);
    return this.inFlight < INPUT_HIGH;
  }

  /** @internal the agent wrote BYTES of input to the process */
  inputTaken(bytes: number): void {
    this.emit('inputTaken', bytes);
    const wasBlocked = this.inFlight >= INPUT_HIGH;
    this.inFlight = Math.max(0, this.inFlight - bytes);
    if (wasBlocked && this.inFlight < INPUT_HIGH) this.emit('drain');
  }

  /** Closes stdin (pipe mode) or sends end-of-file (^D) to a terminal. */
  end(): void {
    if (this.running && !this.stdinClosed) this.channel.stdinEof(this.id);
  }

  resize(cols: number, rows: number): void {
    if (this.running && this.pty) this.channel.resize(this.id, cols, rows);
  }

  /** Signals the process group the process leads. */
  signal(sig: NodeJS.Signals | number): void {
    if (this.running) this.channel.signal(this.id, signalNumber(sig));
  }

  /** Acknowledges BYTES of emitted output (the agent counts raw bytes: redaction changes lengths). */
  ack(bytes: number): void {
    if (!this.running || bytes <= 0) return;
    if (!this.redact) return this.channel.ack(this.id, bytes);
    let raw = 0;
    while (bytes > 0 && this.emitted.length) {
      const head = this.emitted[0];
      if (bytes >= head.out) {
        bytes -= head.out;
        raw += head.raw;
        this.emitted.shift();
      } else {
        const part = Math.floor((head.raw * bytes) / head.out);
        head.raw -= part;
        head.out -= bytes;
        raw += part;
        bytes = 0;
      }
    }
    if (raw > 0) this.channel.ack(this.id, raw);
  }

  /**
   * Output and the exit often arrive in the same read from the agent as the 'spawned'
   * frame, i.e. before the caller's `await session.spawn(...)` has resumed and attached
   * its listeners (or set manualAck). They are held until then instead of being
   * emitted to nobody (and, worse, acknowledged unseen).
   */
  private held: (() => void)[] | null = [];

  /** @internal called by the session once the spawn promise's continuations have run */
  release(): void {
    const q = this.held;
    this.held = null;
    q?.forEach((f) => f());
  }

  /** @internal called by the session */
  deliver(stream: 'stdout' | 'stderr', data: Buffer): void {
    if (this.held) {
      this.held.push(() => this.deliver(stream, data));
      return;
    }
    const r = this.redact?.[stream];
    if (!r) {
      this.emit(stream, data);
      if (!this.manualAck) this.channel.ack(this.id, data.length);
      return;
    }
    // The scratch before the output frame (see markHeadroom) takes the bytes the stream
    // held back; what is left of it before the output goes on to encodeFrame.
    const scratch = takeHeadroom(data);
    const out = r.rs.push(data, scratch);
    const start = data.byteOffset - scratch;
    if (out.buffer === data.buffer && out.byteOffset >= start && out.byteOffset <= data.byteOffset) markHeadroom(out, out.byteOffset - start);
    r.raw += data.length;
    this.emitRedacted(stream, out);
    if (r.rs.held > 0 && !this.holdTimer) {
      this.holdTimer = setTimeout(() => {
        this.holdTimer = undefined;
        this.flushHeld();
      }, this.pty ? REDACT_HOLD_MS.pty : REDACT_HOLD_MS.pipe);
    }
  }

  /** Emits OUT, accounting the raw bytes it consumed (all taken so far minus what is still held). */
  private emitRedacted(stream: 'stdout' | 'stderr', out: Buffer): void {
    const r = this.redact![stream];
    const raw = r.raw - r.rs.held;
    r.raw = r.rs.held;
    if (out.length > 0) this.emit(stream, out);
    if (!this.manualAck || out.length === 0) {
      if (raw > 0) this.channel.ack(this.id, raw);
    } else this.emitted.push({ out: out.length, raw });
  }

  private flushHeld(): void {
    clearTimeout(this.holdTimer);
    this.holdTimer = undefined;
    if (!this.redact) return;
    for (const stream of ['stdout', 'stderr'] as const) {
      if (this.redact[stream].rs.held > 0) this.emitRedacted(stream, this.redact[stream].rs.flush());
    }
  }

  /** @internal called by the session */
  finish(exit: ProcessExit): void {
    if (this.held) {
      this.held.push(() => this.finish(exit));
      return;
    }
    if (this.exitInfo) return;
    this.flushHeld();
    this.exitInfo = exit;
    this.emit('exit', exit);
    this.resolveExit(exit);
  }
}
