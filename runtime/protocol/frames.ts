/**
 * Binary WebSocket frames on /rpc: process output and input, never base64 in JSON.
 *
 *   byte 0      kind (FrameKind)
 *   bytes 1..4  channel, u32 little-endian, assigned by process.attach
 *   bytes 5..   payload
 *
 * Flow control: once a client has OUTPUT_WINDOW bytes of a channel unacknowledged,
 * the daemon stops acknowledging that process's output to the sandbox, which pauses
 * the process after its own 1 MiB window: a client that never acknowledges receives
 * at most about OUTPUT_WINDOW + 1 MiB more. A client sends Ack frames (payload: u32
 * bytes consumed) as it consumes. Input: clients keep at most INPUT_WINDOW bytes in
 * flight, counting InputAck frames; the sandbox drops input beyond 8 MiB queued.
 */
export const enum FrameKind {
  /** daemon → client: terminal output, or stdout of a pipe process */
  Stdout = 1,
  /** client → daemon: bytes for the process's stdin or terminal */
  Input = 2,
  /** client → daemon: u32 count of output bytes the client has consumed */
  Ack = 3,
  /** daemon → client: stderr of a pipe process */
  Stderr = 4,
  /** daemon → client: the replay of recent output is complete; live output follows */
  ReplayEnd = 5,
  /** daemon → client: u32 count of input bytes the process has taken (input flow control) */
  InputAck = 6,
}

/** Input bytes a client may have in flight (sent, not yet acknowledged) per channel. */
export const INPUT_WINDOW = 1 << 20;

/** Unacknowledged output bytes per channel before the daemon pauses the process. */
export const OUTPUT_WINDOW = 4 << 20;
/** A client acknowledges output at once when this much is owed (a quarter of the window)... */
export const ACK_BATCH = OUTPUT_WINDOW / 4;
/** ...and otherwise within this many milliseconds. */
export const ACK_DELAY_MS = 10;
/** Largest WebSocket message either side accepts. */
export const MAX_MESSAGE_BYTES = 4 << 20;
/** Largest payload of one output frame. */
export const MAX_FRAME_PAYLOAD = 64 << 10;

export interface Frame {
  kind: FrameKind;
  channel: number;
  payload: Buffer;
}

/**
 * Output payloads with scratch memory right before them (the sandbox channel's own frame
 * header, already parsed, and for a frame assembled from several reads some room
 * allocated in front of it): encodeFrame writes its 5-byte header there instead of
 * copying the payload into a new buffer (a copy of every output byte otherwise), and a
 * redaction stream puts the bytes it held back from the previous chunk there instead of
 * concatenating them with this one. Each mark is used once (takeHeadroom): a second frame
 * of the same payload (another client attached) is copied, since the first may still be
 * queued for writing with its header.
 */
const headroom = new WeakMap<Buffer, number>();

/** Marks the BYTES (at least 5) before PAYLOAD in its memory as the caller's scratch, for one use. */
export function markHeadroom(payload: Buffer, bytes = 5): void {
  if (payload.length > 0 && bytes >= 5 && payload.byteOffset >= bytes) headroom.set(payload, bytes);
}

/** Takes PAYLOAD's mark: how many bytes before it are scratch (0: none, or already used). */
export function takeHeadroom(payload: Buffer): number {
  const n = headroom.get(payload);
  if (n === undefined) return 0;
  headroom.delete(payload);
  return n;
}

export function encodeFrame(kind: FrameKind, channel: number, payload?: Buffer): Buffer {
  if (payload && takeHeadroom(payload) >= 5) {
    const frame = Buffer.from(payload.buffer, payload.byteOffset - 5, payload.length + 5);
    frame.writeUInt8(kind, 0);
    frame.writeUInt32LE(channel >>> 0, 1);
    return frame;
  }
  const head = Buffer.allocUnsafe(5);
  head.writeUInt8(kind, 0);
  head.writeUInt32LE(channel >>> 0, 1);
  return payload && payload.length ? Buffer.concat([head, payload]) : head;
}

export function encodeAck(channel: number, bytes: number, kind: FrameKind.Ack | FrameKind.InputAck = FrameKind.Ack): Buffer {
  const p = Buffer.allocUnsafe(4);
  p.writeUInt32LE(Math.min(bytes, 0xffffffff) >>> 0, 0);
  return encodeFrame(kind, channel, p);
}

/** Parses one binary message; null when it is not a well-formed frame. */
export function decodeFrame(msg: Buffer): Frame | null {
  if (msg.length < 5) return null;
  const kind = msg.readUInt8(0);
  if (kind < FrameKind.Stdout || kind > FrameKind.InputAck) return null;
  return { kind, channel: msg.readUInt32LE(1), payload: msg.subarray(5) };
}
