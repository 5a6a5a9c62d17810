/**
 * One process as the daemon serves it: a bounded replay of its recent output, the
 * connections attached to it, and flow control between them and the sandbox.
 *
 * Output bytes are acknowledged to the sandbox (which pauses the process when 1 MiB
 * is unacknowledged) only while every attached client has less than OUTPUT_WINDOW
 * bytes unacknowledged. A slow client thus pauses the process instead of growing the
 * daemon's memory; with nobody attached the process runs on and only the replay
 * buffer keeps its most recent output.
 */
import { FrameKind, OUTPUT_WINDOW, MAX_FRAME_PAYLOAD } from '../protocol/frames';
import type { SandboxProcess } from '../sessions';

/** Recent output kept for reattaching clients, per process. */
export const REPLAY_BYTES = 256 * 1024;

export interface Attachment {
  /** Sends an output frame to the client. */
  send(kind: FrameKind, data: Buffer): void;
  /** Tells the client the process took BYTES of its input. */
  inputTaken(bytes: number): void;
  unacked: number;
}

class Replay {
  private chunks: { kind: FrameKind; data: Buffer }[] = [];
  private size = 0;

  push(kind: FrameKind, data: Buffer): void {
    this.chunks.push({ kind, data });
    this.size += data.length;
    while (this.size > REPLAY_BYTES && this.chunks.length) {
      const over = this.size - REPLAY_BYTES;
      const first = this.chunks[0];
      if (first.data.length <= over) {
        this.chunks.shift();
        this.size -= first.data.length;
      } else {
        first.data = first.data.subarray(over);
        this.size -= over;
      }
    }
  }

  get bytes(): number {
    return this.size;
  }

  frames(): Generator<{ kind: FrameKind; data: Buffer }> {
    return chunked(this.chunks);
  }
}

/** How long output waits, unacknowledged, for the first client to attach. */
export const FIRST_ATTACH_WAIT_MS = 5000;

function* chunked(list: { kind: FrameKind; data: Buffer }[]): Generator<{ kind: FrameKind; data: Buffer }> {
  for (const c of list) {
    for (let off = 0; off < c.data.length; off += MAX_FRAME_PAYLOAD) yield { kind: c.kind, data: c.data.subarray(off, off + MAX_FRAME_PAYLOAD) };
  }
}

export class ProcessHub {
  private readonly replay = new Replay();
  private readonly attachments = new Set<Attachment>();
  /** Output received from the sandbox and not yet acknowledged to it. */
  private owed = 0;
  /**
   * Everything the process wrote before its first client attached, kept whole and
   * unacknowledged (so the sandbox pauses the process after its 1 MiB window) until that
   * attach or FIRST_ATTACH_WAIT_MS: a client that starts a process and then attaches gets
   * all of its output, not just the replay ring's last 256 KiB. Null once over.
   */
  private beforeFirstAttach: { kind: FrameKind; data: Buffer }[] | null = [];
  /** Who sent the input the process has not taken yet, in order (null: process.input). */
  private readonly inputQueue: { from: Attachment | null; bytes: number }[] = [];

  /** Resolves after the process exited and, for a process that ends its session, the session ended. */
  settled: Promise<{ warnings: string[] }>;

  constructor(
    readonly processId: string,
    readonly sessionId: string,
    readonly proc: SandboxProcess,
    /** Observes terminal output (shell integration); must not throw. */
    observe?: (data: Buffer) => void,
  ) {
    this.settled = proc.exited.then(() => ({ warnings: [] }));
    proc.manualAck = true;
    proc.on('stdout', (d) => {
      observe?.(d);
      this.deliver(FrameKind.Stdout, d);
    });
    proc.on('stderr', (d) => this.deliver(FrameKind.Stderr, d));
    proc.on('inputTaken', (n) => this.inputTaken(n));
    setTimeout(() => this.endFirstAttachWait(), FIRST_ATTACH_WAIT_MS).unref();
  }

  /** Nobody attached in time (or someone did): output is acknowledged as usual from now on. */
  private endFirstAttachWait(): void {
    if (this.beforeFirstAttach === null) return;
    this.beforeFirstAttach = null;
    this.settle();
  }

  /** Input from FROM (an attachment, or null for the process.input method). */
  input(from: Attachment | null, data: Buffer): void {
    if (!this.proc.running || data.length === 0) return;
    this.inputQueue.push({ from, bytes: data.length });
    this.proc.write(data);
  }

  private inputTaken(n: number): void {
    while (n > 0 && this.inputQueue.length) {
      const head = this.inputQueue[0];
      const take = Math.min(n, head.bytes);
      head.bytes -= take;
      n -= take;
      if (head.from && this.attachments.has(head.from)) head.from.inputTaken(take);
      if (head.bytes === 0) this.inputQueue.shift();
    }
  }

  get attachedCount(): number {
    return this.attachments.size;
  }

  private deliver(kind: FrameKind, data: Buffer): void {
    this.replay.push(kind, data);
    this.beforeFirstAttach?.push({ kind, data });
    this.owed += data.length;
    for (const a of this.attachments) {
      if (data.length <= MAX_FRAME_PAYLOAD) a.send(kind, data); // itself: its frame header may fit before it
      else for (let off = 0; off < data.length; off += MAX_FRAME_PAYLOAD) a.send(kind, data.subarray(off, off + MAX_FRAME_PAYLOAD));
      a.unacked += data.length;
    }
    this.settle();
  }

  /** Acknowledges to the sandbox what every attached client has room for. */
  private settle(): void {
    if (this.beforeFirstAttach !== null) return;
    for (const a of this.attachments) if (a.unacked >= OUTPUT_WINDOW) return;
    if (this.owed > 0) {
      this.proc.ack(this.owed);
      this.owed = 0;
    }
  }

  /** Sends the replay, then ReplayEnd; live output follows. Returns the replayed byte count. */
  attach(a: Attachment): number {
    let n = 0;
    const first = this.beforeFirstAttach;
    for (const f of first ? chunked(first) : this.replay.frames()) {
      a.send(f.kind, f.data);
      n += f.data.length;
    }
    this.beforeFirstAttach = null;
    a.unacked += n;
    a.send(FrameKind.ReplayEnd, Buffer.alloc(0));
    this.attachments.add(a);
    this.settle();
    return n;
  }

  private readonly settleWatchers = new Set<(v: { warnings: string[] }) => void>();
  private settledWith: { warnings: string[] } | undefined;
  private watching = false;

  /**
   * Calls FN once the process has settled (at once if it has); the returned function
   * cancels that, for a client that detaches first. One promise reaction per hub: a
   * reaction per attach would keep every client that ever attached (its connection,
   * socket and buffers) alive until the process exits, hours for a shell.
   */
  whenSettled(fn: (v: { warnings: string[] }) => void): () => void {
    if (this.settledWith) {
      fn(this.settledWith);
      return () => {};
    }
    this.settleWatchers.add(fn);
    if (!this.watching) {
      this.watching = true;
      void this.settled.then((v) => {
        this.settledWith = v;
        for (const w of this.settleWatchers) w(v);
        this.settleWatchers.clear();
      });
    }
    return () => this.settleWatchers.delete(fn);
  }

  detach(a: Attachment): void {
    if (this.attachments.delete(a)) this.settle();
  }

  ack(a: Attachment, bytes: number): void {
    a.unacked = Math.max(0, a.unacked - bytes);
    this.settle();
  }
}
