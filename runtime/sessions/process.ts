/** One process inside a session, as the runtime sees it. */
import { EventEmitter } from 'node:events';
import { constants as osConstants } from 'node:os';
import type { AgentChannel } from '../agent/channel';

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

  constructor(
    readonly id: number,
    readonly argv: string[],
    readonly pty: boolean,
    private readonly channel: AgentChannel,
    private readonly onInput: () => void,
  ) {
    super();
    this.exited = new Promise((r) => (this.resolveExit = r));
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
    if (!this.running) return true;
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
    if (this.running) this.channel.stdinEof(this.id);
  }

  resize(cols: number, rows: number): void {
    if (this.running && this.pty) this.channel.resize(this.id, cols, rows);
  }

  /** Signals the process group the process leads. */
  signal(sig: NodeJS.Signals | number): void {
    if (this.running) this.channel.signal(this.id, signalNumber(sig));
  }

  ack(bytes: number): void {
    if (this.running && bytes > 0) this.channel.ack(this.id, bytes);
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
    this.emit(stream, data);
    if (!this.manualAck) this.channel.ack(this.id, data.length);
  }

  /** @internal called by the session */
  finish(exit: ProcessExit): void {
    if (this.held) {
      this.held.push(() => this.finish(exit));
      return;
    }
    if (this.exitInfo) return;
    this.exitInfo = exit;
    this.emit('exit', exit);
    this.resolveExit(exit);
  }
}
