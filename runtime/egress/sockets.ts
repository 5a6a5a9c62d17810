/** Small socket helpers shared by the proxy's protocol handlers. */
import type * as net from 'node:net';

/** Connect failure or relay error: the code when the error has one ("ECONNREFUSED"), else its message. */
export function describeError(e: unknown): string {
  const err = e as NodeJS.ErrnoException | undefined;
  return err?.code ?? (err instanceof Error ? err.message : String(e));
}

export function codedError(code: string, message: string): NodeJS.ErrnoException {
  return Object.assign(new Error(message), { code });
}

/** Writes a final reply and closes once it is flushed (not waiting for a client that never closes its side). */
export function replyAndClose(sock: net.Socket, reply?: Buffer | string): void {
  if (sock.destroyed) return;
  if (reply === undefined) sock.destroy();
  else sock.end(reply, () => sock.destroy());
}
