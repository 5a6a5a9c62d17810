/**
 * The runtime's end of the channel to airlock-agent (runtime/agent/agent.c).
 *
 * Frames: u32 len (little-endian, counts what follows), u8 type, u32 id, payload.
 * Safety argument: the agent runs inside the sandbox, so every frame from it is
 * untrusted input. Lengths are bounded, unknown types and ids are dropped, and a
 * malformed stream ends the session instead of being guessed at.
 */
import { EventEmitter } from 'node:events';
import { constants } from 'node:os';
import type { Duplex } from 'node:stream';
import { markHeadroom } from '../protocol/frames';

/**
 * Room allocated in front of a frame assembled from several reads: scratch for whoever
 * takes its output payload (markHeadroom), e.g. a redaction stream's held bytes.
 */
export const FRAME_HEADROOM = 256;

/**
 * Owner = u16 client port (a connection to the egress listener 127.0.0.1:3128 inside);
 * the agent answers OwnerIs = u32 pid, u32 process number (0: unknown) under the
 * query's id, from the kernel's socket table and /proc (egress.c).
 * File frames: FilePut = u32 mode, u8 flags (bit0 append), NUL-terminated path, data;
 * FileRemove = NUL-terminated path; the agent answers each with FileDone = i32 errno
 * (0 on success) under the request's id. Their ids come from the channel's own
 * counter: the agent never looks a process up for them, nor the runtime.
 */
export const enum HostFrame { Spawn = 1, Stdin = 2, StdinEof = 3, Resize = 4, Signal = 5, Ack = 6, Shutdown = 7, FilePut = 8, FileRemove = 9, Owner = 10 }
export const enum AgentFrame {
  Ready = 0x81, Spawned = 0x82, SpawnFailed = 0x83, Stdout = 0x84, Stderr = 0x85, Exit = 0x86, Log = 0x87, InputAck = 0x88,
  FileDone = 0x89, OwnerIs = 0x8a,
}

/** Largest frame either side may send (the agent refuses larger ones too). */
export const MAX_FRAME = 1 << 20;
/** Stdin bytes sent per frame. */
const STDIN_CHUNK = 64 * 1024;
/** Owed output bytes of one process that are acknowledged without waiting for the turn's end. */
const ACK_EAGER = 256 * 1024;
/** How long smaller acks wait to go out together. */
const ACK_DELAY_MS = 5;

export interface SpawnRequest {
  argv: string[];
  cwd: string;
  env: Record<string, string>;
  pty: boolean;
  cols?: number;
  rows?: number;
  /** Pipe mode: stdin is at end of file from the start (sent with the spawn request). */
  closeStdin?: boolean;
}

export interface AgentEvents {
  ready: [agentPid: number];
  spawned: [id: number, pid: number];
  spawnFailed: [id: number, errno: number, message: string];
  stdout: [id: number, data: Buffer];
  stderr: [id: number, data: Buffer];
  exit: [id: number, code: number | null, signal: number | null];
  inputAck: [id: number, bytes: number];
  log: [id: number, message: string];
  protocolError: [message: string];
  close: [];
}

function hasNul(s: string): boolean {
  return s.includes('\0');
}

const ERRNO_NAMES = new Map(Object.entries(constants.errno).map(([name, n]) => [n, name]));
/** Longest path a file op may name (PATH_MAX less its NUL). */
const MAX_PATH = 4095;

/** A file op the agent refused (errno set), or one cut short because the agent is gone (errno null). */
export class AgentFileError extends Error {
  /** The errno name (`EPERM`), or `ECLOSED` when the channel closed first. */
  readonly code: string;
  constructor(verb: 'write' | 'remove', readonly path: string, readonly errno: number | null) {
    const code = errno === null ? 'ECLOSED' : (ERRNO_NAMES.get(errno) ?? `errno ${errno}`);
    const why =
      errno === null ? 'the sandbox agent is gone (the session ended)'
      : code === 'EPERM' ? 'EPERM (only /run/airlock/secrets/NAME and /tmp/airlock-output/NAME may be written, NAME without a leading dot)'
      : code === 'ENOSPC' ? 'ENOSPC (its tmpfs is full)'
      : code === 'EXDEV' ? 'EXDEV (/run/airlock/secrets is not a tmpfs: a secret is never written to a disk)'
      : code;
    super(`cannot ${verb} ${path} inside the sandbox: ${why}`);
    this.name = 'AgentFileError';
    this.code = code;
  }
}

interface FileOp {
  verb: 'write' | 'remove';
  path: string;
  resolve: () => void;
  reject: (e: AgentFileError) => void;
}

export class AgentChannel extends EventEmitter<AgentEvents> {
  private buf: Buffer = Buffer.alloc(0);
  private closed = false;

  constructor(private readonly stream: Duplex) {
    super();
    stream.on('data', (chunk: Buffer) => this.onData(chunk));
    stream.on('close', () => this.onClose());
    stream.on('end', () => this.onClose());
    stream.on('error', () => this.onClose());
  }

  private onClose(): void {
    if (this.closed) return;
    this.closed = true;
    this.emit('close');
    for (const op of this.fileOps.values()) op.reject(new AgentFileError(op.verb, op.path, null));
    this.fileOps.clear();
    for (const resolve of this.owners.values()) resolve({ pid: 0, process: 0 });
    this.owners.clear();
  }

  private readonly owners = new Map<number, (a: { pid: number; process: number }) => void>();
  private nextOwnerId = 1;

  /**
   * Which process inside holds the client end of the egress connection from
   * 127.0.0.1:CLIENT_PORT (as the agent reads it from the kernel; 0s when unknown or
   * the agent is gone). Never rejects.
   */
  owner(clientPort: number): Promise<{ pid: number; process: number }> {
    if (this.closed || this.stream.destroyed) return Promise.resolve({ pid: 0, process: 0 });
    const id = this.nextOwnerId;
    this.nextOwnerId = id >= 0xffffffff ? 1 : id + 1;
    const p = Buffer.alloc(2);
    p.writeUInt16LE(clientPort & 0xffff, 0);
    return new Promise((resolve) => {
      this.owners.set(id, resolve);
      this.send(HostFrame.Owner, id, p);
    });
  }

  private send(type: HostFrame, id: number, payload?: Buffer, then?: Buffer): void {
    if (this.closed || this.stream.destroyed) return;
    const frame = encodeHostFrame(type, id, payload);
    this.stream.write(then ? Buffer.concat([frame, then]) : frame);
  }

  spawn(id: number, req: SpawnRequest): void {
    const strings = [req.cwd, ...req.argv, ...Object.entries(req.env).map(([k, v]) => `${k}=${v}`)];
    if (strings.some(hasNul)) throw new Error('argv, cwd and environment must not contain NUL bytes');
    const head = Buffer.alloc(13);
    head.writeUInt8(req.pty ? 1 : 0, 0);
    head.writeUInt16LE(clampDim(req.cols, 80), 1);
    head.writeUInt16LE(clampDim(req.rows, 24), 3);
    head.writeUInt32LE(req.argv.length, 5);
    head.writeUInt32LE(Object.keys(req.env).length, 9);
    const payload = Buffer.concat([head, ...strings.map((s) => Buffer.from(s + '\0'))]);
    if (payload.length + 5 > MAX_FRAME) throw new Error(`command line and environment are too large (${payload.length} bytes; at most ${MAX_FRAME - 64})`);
    // A closed stdin goes in the same write: the agent ends the input as it starts the
    // process, with no wake-up and round trip of its own.
    this.send(HostFrame.Spawn, id, payload, req.closeStdin && !req.pty ? encodeHostFrame(HostFrame.StdinEof, id) : undefined);
  }

  stdin(id: number, data: Buffer): void {
    for (let off = 0; off < data.length; off += STDIN_CHUNK) this.send(HostFrame.Stdin, id, data.subarray(off, off + STDIN_CHUNK));
  }

  stdinEof(id: number): void {
    this.send(HostFrame.StdinEof, id);
  }

  resize(id: number, cols: number, rows: number): void {
    const p = Buffer.alloc(4);
    p.writeUInt16LE(clampDim(cols, 80), 0);
    p.writeUInt16LE(clampDim(rows, 24), 2);
    this.send(HostFrame.Resize, id, p);
  }

  signal(id: number, signo: number): void {
    const p = Buffer.alloc(4);
    p.writeUInt32LE(signo, 0);
    this.send(HostFrame.Signal, id, p);
  }

  /**
   * Tells the agent the runtime consumed BYTES of this process's output (flow control).
   * Acks go out together, one frame per process, within ACK_DELAY_MS (a flood arrives as
   * many frames; an ack for each cost a write here and a wake-up in the agent), and at
   * once when a quarter of the agent's 1 MiB window is owed, so the process never stalls
   * on them.
   */
  ack(id: number, bytes: number): void {
    const owed = (this.acks.get(id) ?? 0) + bytes;
    if (owed >= ACK_EAGER) {
      this.acks.delete(id);
      this.sendAck(id, owed);
      return;
    }
    this.acks.set(id, owed);
    this.ackTimer ??= setTimeout(() => {
      this.ackTimer = undefined;
      for (const [i, n] of this.acks) this.sendAck(i, n);
      this.acks.clear();
    }, ACK_DELAY_MS);
  }

  private readonly acks = new Map<number, number>();
  private ackTimer: NodeJS.Timeout | undefined;

  private sendAck(id: number, bytes: number): void {
    const p = Buffer.alloc(4);
    p.writeUInt32LE(Math.min(bytes, 0xffffffff), 0);
    this.send(HostFrame.Ack, id, p);
  }

  shutdown(): void {
    this.send(HostFrame.Shutdown, 0);
  }

  private readonly fileOps = new Map<number, FileOp>();
  private nextFileOpId = 1;
  private fileQueue: Promise<void> = Promise.resolve();

  /**
   * Writes DATA to PATH inside the sandbox (replacing it, or appending with
   * opts.append). The agent accepts only /run/airlock/secrets/NAME and
   * /tmp/airlock-output/NAME. Data beyond one frame (about 1 MiB) follows as appends:
   * only what fits the first frame is replaced atomically, and a replacement that fails
   * after its first frame removes the partial file.
   */
  putFile(path: string, data: Buffer, opts: { mode: number; append?: boolean }): Promise<void> {
    return this.serially(async () => {
      const p = encodePath(path);
      if (!Number.isInteger(opts.mode) || opts.mode < 0 || opts.mode > 0o777) throw new Error(`file mode ${opts.mode} is not a permission mode (0..0o777)`);
      const chunk = MAX_FRAME - 5 - 5 - p.length;
      let off = 0;
      do {
        const head = Buffer.alloc(5);
        head.writeUInt32LE(opts.mode, 0);
        head.writeUInt8(off > 0 || opts.append ? 1 : 0, 4);
        const part = data.subarray(off, off + chunk);
        try {
          await this.fileOp('write', path, HostFrame.FilePut, Buffer.concat([head, p, part]));
        } catch (e) {
          if (off > 0 && !opts.append) await this.fileOp('remove', path, HostFrame.FileRemove, p).catch(() => {});
          throw e;
        }
        off += part.length;
      } while (off < data.length);
    });
  }

  /** Removes PATH inside the sandbox (same paths as putFile); a file already gone is no error. */
  removeFile(path: string): Promise<void> {
    return this.serially(async () => {
      try {
        await this.fileOp('remove', path, HostFrame.FileRemove, encodePath(path));
      } catch (e) {
        if (!(e instanceof AgentFileError && e.code === 'ENOENT')) throw e;
      }
    });
  }

  /**
   * File ops run one at a time: the frames of a large put are sent one reply after
   * another (a later append must not land after the put failed), and an op queued
   * behind them (a remove of the same path) must not slip in between.
   */
  private serially(fn: () => Promise<void>): Promise<void> {
    const run = this.fileQueue.then(fn);
    this.fileQueue = run.catch(() => {});
    return run;
  }

  private fileOp(verb: 'write' | 'remove', path: string, type: HostFrame, payload: Buffer): Promise<void> {
    if (this.closed || this.stream.destroyed) return Promise.reject(new AgentFileError(verb, path, null));
    const id = this.nextFileOpId;
    this.nextFileOpId = id >= 0xffffffff ? 1 : id + 1;
    return new Promise((resolve, reject) => {
      this.fileOps.set(id, { verb, path, resolve, reject });
      this.send(type, id, payload);
    });
  }

  private fileDone(id: number, errno: number): void {
    const op = this.fileOps.get(id);
    if (!op) return; // not ours: dropped like any frame for an unknown id
    this.fileOps.delete(id);
    if (errno === 0) op.resolve();
    else op.reject(new AgentFileError(op.verb, op.path, errno));
  }

  /**
   * A frame split across reads is assembled in one buffer of its full size, so each
   * byte is copied once (the agent's 64 KiB frames never fit one 64 KiB socket read;
   * concatenating remainder and read every time copied a flood twice over).
   */
  private partial: { frame: Buffer; filled: number } | null = null;

  private onData(chunk: Buffer): void {
    if (this.partial) {
      const p = this.partial;
      const take = Math.min(chunk.length, p.frame.length - p.filled);
      chunk.copy(p.frame, p.filled, 0, take);
      p.filled += take;
      if (p.filled < p.frame.length) return;
      this.partial = null;
      this.parse(p.frame, FRAME_HEADROOM);
      if (this.closed) return;
      chunk = chunk.subarray(take);
    }
    this.parse(this.buf.length ? Buffer.concat([this.buf, chunk]) : chunk);
  }

  /**
   * Dispatches the whole frames in DATA and keeps the rest for the next read. LEAD bytes
   * before DATA in its memory are scratch nobody else uses (room allocated for a frame).
   */
  private parse(data: Buffer, lead = 0): void {
    let off = 0;
    this.buf = Buffer.alloc(0);
    while (data.length - off >= 9) {
      const len = data.readUInt32LE(off);
      if (len < 5 || len > MAX_FRAME + 16) {
        this.fail(`agent sent a frame of ${len} bytes (limit ${MAX_FRAME})`);
        return;
      }
      if (data.length - off < 4 + len) {
        this.partial = { frame: Buffer.allocUnsafe(FRAME_HEADROOM + 4 + len).subarray(FRAME_HEADROOM), filled: data.length - off };
        data.copy(this.partial.frame, 0, off);
        return;
      }
      const type = data.readUInt8(off + 4);
      const id = data.readUInt32LE(off + 5);
      const payload = data.subarray(off + 9, off + 4 + len);
      // Before the payload: its own header (parsed, never read again), and the room in
      // front of DATA for its first frame; before any later frame are other frames' bytes.
      const scratch = 9 + (off === 0 ? lead : 0);
      off += 4 + len;
      this.dispatch(type, id, payload, scratch);
      if (this.closed) return;
    }
    if (off < data.length) this.buf = Buffer.from(data.subarray(off));
  }

  /** SCRATCH: bytes before P in its memory that the frame's consumer may overwrite. */
  private dispatch(type: number, id: number, p: Buffer, scratch: number): void {
    switch (type) {
      case AgentFrame.Ready:
        if (p.length >= 4) this.emit('ready', p.readUInt32LE(0));
        return;
      case AgentFrame.Spawned:
        if (p.length >= 4) this.emit('spawned', id, p.readUInt32LE(0));
        return;
      case AgentFrame.SpawnFailed:
        if (p.length >= 4) this.emit('spawnFailed', id, p.readInt32LE(0), p.subarray(4, 4 + 1024).toString('utf8'));
        return;
      case AgentFrame.Stdout:
        markHeadroom(p, scratch);
        this.emit('stdout', id, p);
        return;
      case AgentFrame.Stderr:
        markHeadroom(p, scratch);
        this.emit('stderr', id, p);
        return;
      case AgentFrame.Exit:
        if (p.length >= 8) {
          const code = p.readInt32LE(0);
          const sig = p.readInt32LE(4);
          this.emit('exit', id, code >= 0 ? code : null, sig > 0 ? sig : null);
        }
        return;
      case AgentFrame.InputAck:
        if (p.length >= 4) this.emit('inputAck', id, p.readUInt32LE(0));
        return;
      case AgentFrame.Log:
        this.emit('log', id, p.subarray(0, 1024).toString('utf8'));
        return;
      case AgentFrame.FileDone:
        if (p.length >= 4) this.fileDone(id, p.readInt32LE(0));
        return;
      case AgentFrame.OwnerIs: {
        const resolve = this.owners.get(id);
        if (!resolve || p.length < 8) return; // not asked: dropped like any frame for an unknown id
        this.owners.delete(id);
        resolve({ pid: p.readUInt32LE(0), process: p.readUInt32LE(4) });
        return;
      }
      default:
        this.fail(`agent sent an unknown frame type ${type}`);
    }
  }

  private fail(message: string): void {
    this.emit('protocolError', message);
    this.stream.destroy();
    this.onClose();
  }

  close(): void {
    this.stream.destroy();
    this.onClose();
  }
}

/** One frame to the agent: u32 length, u8 type, u32 id, payload. */
function encodeHostFrame(type: HostFrame, id: number, payload?: Buffer): Buffer {
  const n = payload?.length ?? 0;
  const frame = Buffer.allocUnsafe(9 + n);
  frame.writeUInt32LE(5 + n, 0);
  frame.writeUInt8(type, 4);
  frame.writeUInt32LE(id, 5);
  if (n) payload!.copy(frame, 9);
  return frame;
}

/** PATH as the agent reads it: NUL-terminated bytes. */
function encodePath(path: string): Buffer {
  if (typeof path !== 'string' || path === '' || hasNul(path)) throw new Error(`file path ${JSON.stringify(path)} must be a non-empty string without NUL bytes`);
  const b = Buffer.from(path + '\0');
  if (b.length - 1 > MAX_PATH) throw new Error(`file path is too long (${b.length - 1} bytes; at most ${MAX_PATH})`);
  return b;
}

function clampDim(v: number | undefined, dflt: number): number {
  if (v === undefined || !Number.isFinite(v)) return dflt;
  return Math.max(1, Math.min(65535, Math.floor(v)));
}
