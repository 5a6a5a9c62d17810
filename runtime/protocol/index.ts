/**
 * The one contract between the daemon and its clients (CLI, MCP server, extension):
 * WebSocket at RPC_PATH; JSON-RPC 2.0, one message per text frame; binary frames for
 * process I/O (frames.ts). Every request's params are validated here before use.
 */
import * as path from 'node:path';
import Ajv, { ValidateFunction } from 'ajv';
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

/**
 * Each method's validator is compiled when the method is first called: compiling them
 * all took ~140 ms at load, paid by every CLI command, most of which validate nothing.
 */
let ajv: Ajv | undefined;
const validators = new Map<string, ValidateFunction>();

export function isMethod(name: string): name is MethodName {
  return Object.prototype.hasOwnProperty.call(METHODS, name);
}

/** Checks PARAMS against METHOD's schema; throws InvalidParams naming the field. */
export function validateParams(method: MethodName, params: unknown): void {
  let v = validators.get(method);
  if (!v) {
    ajv ??= new Ajv({ allErrors: false, strict: false });
    v = ajv.compile(METHODS[method].params);
    validators.set(method, v);
  }
  if (v(params ?? {})) return;
  const err = v.errors?.[0];
  const where = err?.instancePath ? err.instancePath.slice(1).replace(/\//g, '.') : 'params';
  const what = err?.keyword === 'additionalProperties' ? `unknown field ${String(err.params.additionalProperty)}` : err?.keyword === 'required' ? `missing field ${String(err.params.missingProperty)}` : err?.message ?? 'invalid';
  throw new RpcError(ErrorCode.InvalidParams, `${method}: ${where}: ${what}`);
}
