/**
 * JSON-RPC 2.0 over a WebSocket through vscode-jsonrpc: one message per text frame,
 * plain JSON, no headers. Binary frames (process I/O) are not JSON-RPC and are
 * handed to the owner of the socket. Used by the daemon and by every client.
 */
import {
  AbstractMessageReader,
  AbstractMessageWriter,
  createMessageConnection,
  DataCallback,
  Disposable,
  Logger,
  Message,
  MessageConnection,
  MessageWriter,
} from 'vscode-jsonrpc/node';
import type WebSocket from 'ws';
import { ErrorCode } from './errors';

class WsReader extends AbstractMessageReader {
  private callback: DataCallback | undefined;
  listen(callback: DataCallback): Disposable {
    this.callback = callback;
    return Disposable.create(() => (this.callback = undefined));
  }
  deliver(msg: Message): void {
    this.callback?.(msg);
  }
  close(): void {
    this.fireClose();
  }
}

/** What can hold writes back and let them go together (a net, TLS or other Writable socket). */
export interface Corkable {
  cork(): void;
  uncork(): void;
}

class WsWriter extends AbstractMessageWriter implements MessageWriter {
  private corked = false;
  constructor(private readonly ws: WebSocket, private readonly socket?: Corkable) {
    super();
  }
  write(msg: Message): Promise<void> {
    if (this.ws.readyState !== this.ws.OPEN) return Promise.resolve();
    this.holdForTurn();
    return new Promise((resolve) => this.ws.send(JSON.stringify(msg), () => resolve()));
  }
  /**
   * Messages written in one event-loop turn leave in one writev(2) at setImmediate: in a
   * flood the daemon sends two events per connection, and a syscall for each took a
   * fifth of its time. Still one message per frame; at most one turn later.
   */
  private holdForTurn(): void {
    if (!this.socket || this.corked) return;
    this.corked = true;
    this.socket.cork();
    setImmediate(() => {
      this.corked = false;
      this.socket!.uncork();
    });
  }
  end(): void {}
}

const quiet: Logger = { error: () => {}, warn: () => {}, info: () => {}, log: () => {} };

export interface RpcSocket {
  rpc: MessageConnection;
  /** Stops reading and releases the connection (the socket is closed by its owner). */
  dispose(): void;
}

function errorResponse(id: unknown, code: number, message: string): string {
  const okId = typeof id === 'string' || typeof id === 'number' ? id : null;
  return JSON.stringify({ jsonrpc: '2.0', id: okId, error: { code, message } });
}

/**
 * Wraps WS. Text frames that are not JSON, or not JSON-RPC 2.0 messages, are
 * answered with ParseError / InvalidRequest here, before vscode-jsonrpc sees them;
 * binary frames go to onBinary. SOCKET, the stream under WS when the caller has it,
 * lets a turn's messages go out in one write.
 */
export function rpcOverWebSocket(ws: WebSocket, onBinary: (data: Buffer) => void, socket?: Corkable): RpcSocket {
  const reader = new WsReader();
  const writer = new WsWriter(ws, socket);
  const rpc = createMessageConnection(reader, writer, quiet);
  const onMessage = (data: WebSocket.RawData, isBinary: boolean): void => {
    const buf = Buffer.isBuffer(data) ? data : Array.isArray(data) ? Buffer.concat(data) : Buffer.from(data);
    if (isBinary) {
      onBinary(buf);
      return;
    }
    let msg: unknown;
    try {
      msg = JSON.parse(buf.toString('utf8'));
    } catch (e) {
      ws.send(errorResponse(null, ErrorCode.ParseError, `parse error: not JSON (${(e as Error).message})`));
      return;
    }
    const m = msg as Record<string, unknown> | null;
    const isRequestish = m !== null && typeof m === 'object' && !Array.isArray(m) && m.jsonrpc === '2.0';
    const hasMethod = isRequestish && typeof m.method === 'string';
    const isResponse = isRequestish && 'id' in m && ('result' in m || 'error' in m) && !('method' in m);
    const idOk = !isRequestish || !('id' in m) || typeof m.id === 'string' || typeof m.id === 'number' || m.id === null;
    if (hasMethod && 'params' in m && Array.isArray(m.params)) {
      ws.send(errorResponse(m.id, ErrorCode.InvalidParams, 'invalid params: Airlock methods take named params (an object), not an array'));
      return;
    }
    if (hasMethod && 'id' in m && m.id === null) {
      ws.send(errorResponse(null, ErrorCode.InvalidRequest, 'invalid request: id must be a string or a number (null ids cannot be answered unambiguously)'));
      return;
    }
    if (!(hasMethod || isResponse) || !idOk || (hasMethod && 'params' in m && (typeof m.params !== 'object' || m.params === null))) {
      ws.send(errorResponse(m && typeof m === 'object' ? (m as Record<string, unknown>).id : null, ErrorCode.InvalidRequest, 'invalid request: expected a JSON-RPC 2.0 message with "jsonrpc":"2.0", a "method" string and object or array "params"'));
      return;
    }
    // vscode-jsonrpc reads `params.id` of a `$/cancelRequest` notification unchecked and
    // throws from inside this handler: one such frame from any client stopped the whole
    // daemon (found by test/integration/daemon-fuzz). A cancel naming no request is dropped.
    if (m.method === '$/cancelRequest' && m.id === undefined) {
      const p = m.params as Record<string, unknown> | undefined;
      if (!p || Array.isArray(p) || (typeof p.id !== 'string' && typeof p.id !== 'number')) return;
    }
    try {
      reader.deliver(m as unknown as Message);
    } catch (e) {
      // Whatever else the library may throw on a hostile message stays with that message.
      if (hasMethod && (typeof m.id === 'string' || typeof m.id === 'number')) ws.send(errorResponse(m.id, ErrorCode.InternalError, `internal error: ${(e as Error).message}`));
    }
  };
  ws.on('message', onMessage);
  rpc.listen();
  return {
    rpc,
    dispose: () => {
      ws.off('message', onMessage);
      reader.close();
      rpc.dispose();
    },
  };
}
