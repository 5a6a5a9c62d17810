/**
 * Stable JSON-RPC error codes. Messages name the thing and what to do; `data` may
 * carry details (never secret values). Codes never change meaning once published.
 */
export const ErrorCode = {
  ParseError: -32700,
  InvalidRequest: -32600,
  MethodNotFound: -32601,
  InvalidParams: -32602,
  InternalError: -32603,
  /** No session with that id, live or recently ended. */
  SessionNotFound: -32001,
  /** No process with that id. */
  ProcessNotFound: -32002,
  /** The session has ended (the message says when and why); nothing more can run in it. */
  SessionEnded: -32003,
  /** The command could not be started (data: {errno, notFound}). */
  SpawnFailed: -32004,
  /** The policy document is invalid (the message names the field). */
  PolicyInvalid: -32005,
  /** The workspace is missing, not a directory, or not allowed. */
  WorkspaceInvalid: -32006,
  /** Sandboxes cannot run here (bubblewrap missing, namespaces off, …). */
  SandboxUnavailable: -32007,
  /** The audit log cannot be written: nothing runs unrecorded. */
  AuditUnavailable: -32008,
  /** A limit of the runtime was reached (attach channels per connection). */
  LimitExceeded: -32010,
} as const;

export type ErrorCodeName = keyof typeof ErrorCode;

/** An error the daemon sends as a JSON-RPC error response. */
export class RpcError extends Error {
  constructor(
    readonly code: number,
    message: string,
    readonly data?: Record<string, unknown>,
  ) {
    super(message);
    this.name = 'RpcError';
  }
}
