/**
 * A client of the runtime daemon: typed JSON-RPC calls and attach channels with flow
 * control both ways. Used by the CLI, the MCP server and the VS Code extension.
 */
import { EventEmitter } from 'node:events';
import { ResponseError } from 'vscode-jsonrpc/node';
import WebSocket from 'ws';
import {
  ACK_BATCH, ACK_DELAY_MS, Api, decodeFrame, defaultSocketPath, encodeAck, encodeFrame, FrameKind, INPUT_WINDOW, MAX_FRAME_PAYLOAD, MAX_MESSAGE_BYTES, MethodName, RPC_PATH, RpcError, RuntimeEvent,
} from '../protocol';
import { rpcOverWebSocket, RpcSocket } from '../protocol/transport';

export interface ClientOptions {
  /** Unix socket of the daemon (default: defaultSocketPath()). */
  socket?: string;
  /** Or a TCP URL (ws:// or wss://) with its bearer token. */
  url?: string;
  token?: string;
  /** Extra CA for wss:// (a self-signed daemon certificate). */
  ca?: Buffer;
}

export interface ProcessExitNote {
  processId: string;
  code: number | null;
  signal: string | null;
  reason?: string;
  warnings?: string[];
}

interface ClientEvents {
  event: [RuntimeEvent];
  close: [];
}

export class RuntimeClient extends EventEmitter<ClientEvents> {
  private readonly sock: RpcSocket;
  private readonly attached = new Map<number, AttachedProcess>();
  private readonly byProcess = new Map<string, AttachedProcess>();
  private readonly exits = new Map<string, ProcessExitNote>();

  private constructor(private readonly ws: WebSocket) {
    super();
    this.sock = rpcOverWebSocket(ws, (buf) => this.onBinary(buf));
    this.sock.rpc.onNotification('event', (e: RuntimeEvent) => this.emit('event', e));
    this.sock.rpc.onNotification('process.exit', (x: ProcessExitNote) => {
      const a = this.byProcess.get(x.processId);
      if (a) a.finish(x);
      else this.exits.set(x.processId, x);
    });
    ws.on('close', () => {
      this.sock.dispose();
      for (const a of this.attached.values()) a.finish({ processId: a.processId, code: null, signal: null, reason: 'connection to the runtime closed' });
      this.emit('close');
    });
  }

  static connect(opts: ClientOptions = {}): Promise<RuntimeClient> {
    const url = opts.url ? opts.url.replace(/\/?$/, '') + RPC_PATH : `ws+unix://${opts.socket ?? defaultSocketPath()}:${RPC_PATH}`;
    const ws = new WebSocket(url, {
      maxPayload: MAX_MESSAGE_BYTES,
      headers: opts.token ? { Authorization: `Bearer ${opts.token}` } : {},
      ...(opts.ca ? { ca: opts.ca } : {}),
    });
    return new Promise((resolve, reject) => {
      ws.once('open', () => resolve(new RuntimeClient(ws)));
      ws.once('unexpected-response', (_req, res) => reject(new Error(`the runtime refused the connection: HTTP ${res.statusCode}`)));
      ws.once('error', (e) => reject(e));
    });
  }

  async call<M extends MethodName>(method: M, params: Api[M][0]): Promise<Api[M][1]> {
    try {
      return (await this.sock.rpc.sendRequest(method, params)) as Api[M][1];
    } catch (e) {
      if (e instanceof ResponseError) throw new RpcError(e.code, e.message, e.data as Record<string, unknown> | undefined);
      throw e;
    }
  }

  /**
   * Attaches to a process: the replay of its recent output, then live output. With
   * autoAck false the caller acks what it consumed, from the first replayed byte on
   * (setting it on the result would be too late: the replay is delivered before).
   */
  async attach(processId: string, onOutput: (kind: FrameKind.Stdout | FrameKind.Stderr, data: Buffer) => void, opts: { autoAck?: boolean } = {}): Promise<AttachedProcess> {
    const a = new AttachedProcess(processId, this.ws, onOutput);
    a.autoAck = opts.autoAck ?? true;
    this.byProcess.set(processId, a);
    try {
      const r = await this.call('process.attach', { processId });
      a.channel = r.channel;
      this.attached.set(r.channel, a);
      for (const f of this.unclaimed.get(r.channel) ?? []) {
        this.unclaimedBytes -= f.payload.length;
        this.dispatch(a, f.kind, f.payload);
      }
      this.unclaimed.delete(r.channel);
      const early = this.exits.get(processId);
      if (early) a.finish(early);
      return a;
    } catch (e) {
      this.byProcess.delete(processId);
      throw e;
    }
  }

  /** Frames that arrived before the attach response naming their channel. */
  private readonly unclaimed = new Map<number, { kind: FrameKind; payload: Buffer }[]>();
  private unclaimedBytes = 0;

  private onBinary(buf: Buffer): void {
    const f = decodeFrame(buf);
    if (!f) return;
    const a = this.attached.get(f.channel);
    if (a) {
      this.dispatch(a, f.kind, f.payload);
    } else if (this.unclaimedBytes < MAX_MESSAGE_BYTES * 4) {
      const list = this.unclaimed.get(f.channel) ?? [];
      list.push(f);
      this.unclaimed.set(f.channel, list);
      this.unclaimedBytes += f.payload.length;
    }
  }

  private dispatch(a: AttachedProcess, kind: FrameKind, payload: Buffer): void {
    if (kind === FrameKind.Stdout || kind === FrameKind.Stderr) a.output(kind, payload);
    else if (kind === FrameKind.ReplayEnd) a.replayEnded();
    else if (kind === FrameKind.InputAck && payload.length >= 4) a.inputTaken(payload.readUInt32LE(0));
  }

  close(): void {
    this.ws.close();
  }
}

export class AttachedProcess extends EventEmitter<{ drain: []; exit: [ProcessExitNote] }> {
  channel = 0;
  /** When false, call ack() after consuming output (a terminal, a pipe). */
  autoAck = true;
  private inFlight = 0;
  private replayDoneResolve!: () => void;
  readonly replayDone = new Promise<void>((r) => (this.replayDoneResolve = r));
  private exitResolve!: (x: ProcessExitNote) => void;
  readonly exited = new Promise<ProcessExitNote>((r) => (this.exitResolve = r));
  private done = false;

  constructor(
    readonly processId: string,
    private readonly ws: WebSocket,
    private readonly onOutput: (kind: FrameKind.Stdout | FrameKind.Stderr, data: Buffer) => void,
  ) {
    super();
  }

  /** @internal */
  output(kind: FrameKind.Stdout | FrameKind.Stderr, data: Buffer): void {
    this.onOutput(kind, data);
    if (this.autoAck) this.ack(data.length);
  }

  private pendingAck = 0;

  /** @internal */
  replayEnded(): void {
    this.replayDoneResolve();
  }

  /** @internal */
  inputTaken(bytes: number): void {
    const blocked = this.inFlight >= INPUT_WINDOW;
    this.inFlight = Math.max(0, this.inFlight - bytes);
    if (blocked && this.inFlight < INPUT_WINDOW) this.emit('drain');
  }

  /** @internal */
  finish(x: ProcessExitNote): void {
    if (this.done) return;
    this.done = true;
    this.exitResolve(x);
    this.emit('exit', x);
  }

  private ackTimer: NodeJS.Timeout | undefined;

  /**
   * Acknowledges consumed output. Acks are batched: sent at once when ACK_BATCH bytes are
   * owed, else within ACK_DELAY_MS (a flood costs the client and the daemon a frame per
   * ACK_BATCH, not one per read; the window is four times the batch, so output never
   * waits for them).
   */
  ack(bytes: number): void {
    if (bytes <= 0) return;
    this.pendingAck += bytes;
    if (this.pendingAck >= ACK_BATCH) this.flushAck();
    else this.ackTimer ??= setTimeout(() => this.flushAck(), ACK_DELAY_MS).unref();
  }

  private flushAck(): void {
    clearTimeout(this.ackTimer);
    this.ackTimer = undefined;
    const n = this.pendingAck;
    this.pendingAck = 0;
    if (n > 0 && this.ws.readyState === this.ws.OPEN) this.ws.send(encodeAck(this.channel, n));
  }

  /** Sends input; false once INPUT_WINDOW bytes are in flight: wait for 'drain'. */
  write(data: Buffer): boolean {
    for (let off = 0; off < data.length; off += MAX_FRAME_PAYLOAD) {
      if (this.ws.readyState === this.ws.OPEN) this.ws.send(encodeFrame(FrameKind.Input, this.channel, data.subarray(off, off + MAX_FRAME_PAYLOAD)));
    }
    this.inFlight += data.length;
    return this.inFlight < INPUT_WINDOW;
  }
}
