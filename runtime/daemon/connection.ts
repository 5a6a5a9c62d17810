/**
 * One client connection: its JSON-RPC methods, its attach channels and its event
 * subscription. Everything it holds is released when the socket closes; sessions and
 * processes live on (a disconnect detaches, it never kills).
 */
import type WebSocket from 'ws';
import { ResponseError } from 'vscode-jsonrpc/node';
import {
  Api, decodeFrame, encodeAck, encodeFrame, ErrorCode, FrameKind, isMethod, METHODS, MethodName, RpcError, RuntimeEvent, validateParams,
} from '../protocol';
import { Corkable, rpcOverWebSocket, RpcSocket } from '../protocol/transport';
import type { Attachment, ProcessHub } from './hub';
import { SessionRegistry, toRpcError } from './registry';

/** Attach channels one connection may hold. */
const MAX_CHANNELS = 1024;

export interface ConnectionContext {
  registry: SessionRegistry;
  info: () => Api['runtime.info'][1];
  /** The interactive shell to start for process.start {shell: true}. */
  shell: () => { argv: string[]; env: Record<string, string>; integration?: boolean };
}

interface Channel {
  hub: ProcessHub;
  att: Attachment;
  /** Cancels the process.exit notification (on detach). */
  cancelExit?: () => void;
}

export class ClientConnection {
  private readonly sock: RpcSocket;
  private readonly channels = new Map<number, Channel>();
  private readonly byProcess = new Map<string, number>();
  private nextChannel = 1;
  private filter: RegExp[] | null = null;
  private readonly onEvent = (e: RuntimeEvent): void => {
    if (this.filter && this.filter.some((re) => re.test(e.type))) void this.sock.rpc.sendNotification('event', e);
  };
  /** Malformed binary frames received (dropped). */
  badFrames = 0;
  /** Sessions created with endOnDisconnect: they end when this connection closes. */
  private readonly owned = new Set<string>();
  private disposed = false;

  constructor(
    private readonly ws: WebSocket,
    private readonly ctx: ConnectionContext,
    /** The socket under WS (its messages of one turn then go out in one write). */
    socket?: Corkable,
  ) {
    this.sock = rpcOverWebSocket(ws, (buf) => this.onBinary(buf), socket);
    for (const name of Object.keys(METHODS)) {
      // vscode-jsonrpc passes (params, token), or just (token) when params are absent.
      this.sock.rpc.onRequest(name, async (...args: unknown[]) => {
        const params = args.length > 1 ? args[0] : undefined;
        try {
          if (!isMethod(name)) throw new RpcError(ErrorCode.MethodNotFound, `unknown method ${name}`);
          validateParams(name, params);
          // Results leave the runtime: redacted (an argv, an exec result may carry a granted value).
          return ctx.registry.redaction.value(await this.handle(name, (params ?? {}) as never));
        } catch (e) {
          const r = toRpcError(e);
          return new ResponseError(r.code, ctx.registry.redaction.text(r.message), r.data);
        }
      });
    }
    this.sock.rpc.onRequest((method: string) => new ResponseError(ErrorCode.MethodNotFound, `unknown method ${JSON.stringify(method).slice(0, 200)} (methods: ${Object.keys(METHODS).join(', ')})`));
    ctx.registry.on('event', this.onEvent);
  }

  /** Releases everything this connection holds. Idempotent. */
  dispose(): void {
    this.disposed = true;
    for (const ch of this.channels.values()) {
      ch.hub.detach(ch.att);
      ch.cancelExit?.();
    }
    this.channels.clear();
    this.byProcess.clear();
    this.ctx.registry.off('event', this.onEvent);
    this.sock.dispose();
    for (const id of this.owned) void this.ctx.registry.kill(id, 'its client disconnected').catch(() => {});
    this.owned.clear();
  }

  private async handle<M extends MethodName>(method: M, p: Api[M][0]): Promise<Api[M][1]> {
    const reg = this.ctx.registry;
    const q = p as never;
    switch (method) {
      case 'runtime.info':
        return this.ctx.info() as Api[M][1];
      case 'session.create': {
        const c = q as Api['session.create'][0];
        const r = await reg.create(c, c.env ?? {});
        if (c.endOnDisconnect && this.disposed) {
          // The client left while the sandbox was starting: nobody owns the session.
          void reg.kill(r.sessionId, 'its client disconnected').catch(() => {});
        } else if (c.endOnDisconnect) this.owned.add(r.sessionId);
        return r as Api[M][1];
      }
      case 'session.list':
        return { sessions: reg.list() } as Api[M][1];
      case 'session.get':
        return reg.info(reg.entry((q as Api['session.get'][0]).sessionId)) as Api[M][1];
      case 'session.kill': {
        const k = q as Api['session.kill'][0];
        return (await reg.kill(k.sessionId, k.reason)) as unknown as Api[M][1];
      }
      case 'process.start':
        return this.start(q) as Promise<Api[M][1]>;
      case 'process.attach':
        return this.attach((q as Api['process.attach'][0]).processId) as Api[M][1];
      case 'process.detach':
        this.detach((q as Api['process.detach'][0]).processId);
        return {} as Api[M][1];
      case 'process.input': {
        const i = q as Api['process.input'][0];
        const hub = this.running(i.processId);
        if (i.data) hub.input(null, Buffer.from(i.data, 'utf8'));
        if (i.eof) hub.proc.end();
        return {} as Api[M][1];
      }
      case 'process.resize': {
        const r = q as Api['process.resize'][0];
        const hub = this.running(r.processId);
        if (!hub.proc.pty) throw new RpcError(ErrorCode.InvalidParams, `process ${r.processId} has no terminal to resize (started with pty: false)`);
        hub.proc.resize(r.cols, r.rows);
        return {} as Api[M][1];
      }
      case 'process.signal': {
        const s = q as Api['process.signal'][0];
        try {
          this.running(s.processId).proc.signal(s.signal as NodeJS.Signals);
        } catch (e) {
          if (e instanceof RpcError) throw e;
          throw new RpcError(ErrorCode.InvalidParams, `process.signal: ${(e as Error).message}`);
        }
        return {} as Api[M][1];
      }
      case 'exec':
        return (await reg.exec(q)) as Api[M][1];
      case 'network.allow':
        return reg.networkAllow(q) as Api[M][1];
      case 'network.rules':
        return reg.networkRules((q as Api['network.rules'][0]).sessionId) as Api[M][1];
      case 'secret.grant':
        return (await reg.secretGrant(q)) as Api[M][1];
      case 'secret.revoke':
        return (await reg.secretRevoke(q)) as Api[M][1];
      case 'secret.list':
        return reg.secretList((q as Api['secret.list'][0]).sessionId) as Api[M][1];
      case 'access.request':
        return (await reg.access.request(q)) as Api[M][1];
      case 'access.list':
        return reg.access.list(q) as Api[M][1];
      case 'access.decide':
        return (await reg.access.decide(q)) as Api[M][1];
      case 'events.subscribe': {
        const f = (q as Api['events.subscribe'][0]).filter ?? ['*'];
        this.filter = f.map((pat) => new RegExp('^' + pat.replace(/\./g, '\\.').replace(/\*/g, '[^.]*') + '$'));
        if (f.includes('*')) this.filter.push(/.*/);
        return {} as Api[M][1];
      }
      case 'events.unsubscribe':
        this.filter = null;
        return {} as Api[M][1];
      case 'audit.query':
        return reg.auditQuery(q) as Api[M][1];
      case 'audit.export':
        return reg.auditExport(q as Api['audit.export'][0]) as Api[M][1];
      case 'audit.verify':
        return reg.auditVerify() as Api[M][1];
    }
    throw new RpcError(ErrorCode.MethodNotFound, `unknown method ${String(method)}`);
  }

  private async start(p: Api['process.start'][0]): Promise<Api['process.start'][1]> {
    if (p.shell && p.argv) throw new RpcError(ErrorCode.InvalidParams, 'process.start: give argv or shell: true, not both');
    if (!p.shell && !p.argv) throw new RpcError(ErrorCode.InvalidParams, 'process.start: missing field argv (or shell: true for the interactive shell)');
    const shell = p.shell ? this.ctx.shell() : undefined;
    const hub = await this.ctx.registry.startProcess(p.shell ? { ...p, pty: p.pty ?? true } : p, shell?.argv ?? p.argv!, shell?.env, shell?.integration ?? false);
    return { processId: hub.processId };
  }

  private running(processId: string): ProcessHub {
    const hub = this.ctx.registry.hub(processId);
    if (!hub.proc.running) throw new RpcError(ErrorCode.ProcessNotFound, `process ${processId} has exited (code ${hub.proc.exitInfo?.code}, signal ${hub.proc.exitInfo?.signal})`);
    return hub;
  }

  private attach(processId: string): Api['process.attach'][1] {
    const hub = this.ctx.registry.hub(processId);
    const existing = this.byProcess.get(processId);
    if (existing !== undefined) return { channel: existing, replayBytes: 0, running: hub.proc.running };
    if (this.channels.size >= MAX_CHANNELS) throw new RpcError(ErrorCode.LimitExceeded, `this connection already has ${MAX_CHANNELS} attached processes: detach some first`);
    const channel = this.nextChannel++;
    const att: Attachment = {
      unacked: 0,
      send: (kind, data) => {
        if (this.ws.readyState === this.ws.OPEN) this.ws.send(encodeFrame(kind, channel, data));
      },
      inputTaken: (bytes) => {
        if (this.ws.readyState === this.ws.OPEN) this.ws.send(encodeAck(channel, bytes, FrameKind.InputAck));
      },
    };
    const entry: Channel = { hub, att };
    this.channels.set(channel, entry);
    this.byProcess.set(processId, channel);
    const replayBytes = hub.attach(att);
    const notifyExit = ({ warnings }: { warnings: string[] }): void => {
      const x = hub.proc.exitInfo!;
      if (this.channels.get(channel)?.att === att) {
        void this.sock.rpc.sendNotification('process.exit', { processId, code: x.code, signal: x.signal, ...(x.reason ? { reason: x.reason } : {}), ...(warnings.length ? { warnings } : {}) });
      }
    };
    // After the response: a client learns its channel before the exit of its process.
    setImmediate(() => {
      if (this.channels.get(channel) === entry) entry.cancelExit = hub.whenSettled(notifyExit);
    });
    return { channel, replayBytes, running: hub.proc.running };
  }

  private detach(processId: string): void {
    const channel = this.byProcess.get(processId);
    if (channel === undefined) return;
    const ch = this.channels.get(channel)!;
    ch.hub.detach(ch.att);
    ch.cancelExit?.();
    this.channels.delete(channel);
    this.byProcess.delete(processId);
  }

  private onBinary(buf: Buffer): void {
    const f = decodeFrame(buf);
    const ch = f ? this.channels.get(f.channel) : undefined;
    if (!f || !ch) {
      this.badFrames++;
      return;
    }
    if (f.kind === FrameKind.Input) ch.hub.input(ch.att, f.payload);
    else if (f.kind === FrameKind.Ack && f.payload.length >= 4) ch.hub.ack(ch.att, f.payload.readUInt32LE(0));
    else this.badFrames++;
  }
}
