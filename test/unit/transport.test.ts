/**
 * runtime/protocol/transport.ts over a real loopback WebSocket: the messages one side
 * writes in one event-loop turn leave together (one cork, so one writev) and arrive
 * whole, one per frame, in order.
 */
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as http from 'node:http';
import type * as net from 'node:net';
import WebSocket, { WebSocketServer } from 'ws';
import { NotificationType } from 'vscode-jsonrpc/node';
import { rpcOverWebSocket } from '../../runtime/protocol/transport';

const Tick = new NotificationType<{ i: number }>('tick');

/** The socket's own writes (each a write(2) or writev(2) to the kernel). */
type Writes = { _write: (...a: unknown[]) => void; _writev: (...a: unknown[]) => void };

test('200 notifications written in one turn leave in one socket write and arrive in order, one per frame', async (t) => {
  const server = http.createServer();
  const wss = new WebSocketServer({ noServer: true });
  let writes = 0;
  const sent = new Promise<void>((resolve) => {
    server.on('upgrade', (req, sock: net.Socket, head) => wss.handleUpgrade(req, sock, head, (ws) => {
      const w = sock as unknown as Writes;
      const write = w._write.bind(sock);
      const writev = w._writev.bind(sock);
      w._write = (...a) => { writes++; write(...a); };
      w._writev = (...a) => { writes++; writev(...a); };
      const { rpc } = rpcOverWebSocket(ws, () => undefined, sock);
      for (let i = 0; i < 200; i++) void rpc.sendNotification(Tick, { i });
      assert.equal(sock.writableLength > 0, true, 'held until the end of the turn');
      setImmediate(() => setImmediate(resolve));
    }));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.after(() => { wss.close(); server.close(); });
  const client = new WebSocket(`ws://127.0.0.1:${(server.address() as net.AddressInfo).port}/`);
  t.after(() => client.terminate());
  const got: number[] = [];
  const all = new Promise<void>((resolve) => client.on('message', (data, isBinary) => {
    assert.equal(isBinary, false);
    const m = JSON.parse(String(data)) as { method: string; params: { i: number } };
    assert.equal(m.method, 'tick');
    got.push(m.params.i);
    if (got.length === 200) resolve();
  }));
  await sent;
  await all;
  assert.deepEqual(got, Array.from({ length: 200 }, (_, i) => i));
  assert.equal(writes, 1, 'one write for the turn');
});
