/**
 * The one contract between the daemon and its clients (CLI, MCP server, extension):
 * WebSocket at RPC_PATH; JSON-RPC 2.0, one message per text frame; binary frames for
 * process I/O (frames.ts). Every request's params are validated here before use.
 */
import * as path from 'node:path';
import Ajv from 'ajv';
import { runDir } from '../util/paths';
import { ErrorCode, RpcError } from './errors';
import { METHODS, MethodName } from './methods';

export * from './errors';
export * from './frames';
export * from './methods';

export const PROTOCOL_VERSION = 1;
export const RPC_PATH = '/rpc';

/** `$XDG_RUNTIME_DIR/airlock/runtime.sock`, else a private directory under the temp dir. */
export function defaultSocketPath(env: NodeJS.ProcessEnv = process.env): string {
  return path.join(runDir(env), 'runtime.sock');
}

const ajv = new Ajv({ allErrors: false, strict: false });
const validators = new Map(Object.entries(METHODS).map(([name, spec]) => [name, ajv.compile(spec.params)]));

export function isMethod(name: string): name is MethodName {
  return validators.has(name);
}

/** Checks PARAMS against METHOD's schema; throws InvalidParams naming the field. */
export function validateParams(method: MethodName, params: unknown): void {
  const v = validators.get(method)!;
  if (v(params ?? {})) return;
  const err = v.errors?.[0];
  const where = err?.instancePath ? err.instancePath.slice(1).replace(/\//g, '.') : 'params';
  const what = err?.keyword === 'additionalProperties' ? `unknown field ${String(err.params.additionalProperty)}` : err?.keyword === 'required' ? `missing field ${String(err.params.missingProperty)}` : err?.message ?? 'invalid';
  throw new RpcError(ErrorCode.InvalidParams, `${method}: ${where}: ${what}`);
}
