/**
 * `airlock mcp`: a stdio MCP server (the official TypeScript SDK) whose every tool
 * executes inside an Airlock sandbox. It is a client of the runtime daemon like the
 * CLI: one session per MCP connection by default (ended when the connection closes),
 * or a named session shared by several (`--session NAME`).
 *
 * The agent can only ask for more (request_access); nothing here approves, grants or
 * allows: those methods are for a person's client (the CLI, the VS Code panel).
 */
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { z } from 'zod';
import type { RuntimeClient } from '../client/client';
import { RpcError } from '../protocol';
import { VERSION } from '../cli/version';
import { PythonRepl } from './python';
import { execTool, listDirTool, pythonTool, readFileTool, searchTool, sessionInfoTool, ToolContext, ToolText, writeFileTool } from './tools';

export const DEFAULT_MCP_MAX_OUTPUT = 64 * 1024;

const SANDBOX_NOTE =
  'It runs inside an Airlock sandbox: no host home directory, no host environment variables, ' +
  'no network except hosts the session allows (see session_info), and secret files in the workspace appear empty. ' +
  'Output is capped and secret values are redacted. For another host or a secret, call request_access.';

const INSTRUCTIONS =
  'Every tool of this server executes inside an isolated Airlock sandbox on the user\'s machine, rooted at the workspace. ' +
  'Use exec for commands, read_file/write_file/list_dir/search for files, python for a persistent Python REPL. ' +
  'The network is default-deny: session_info lists what is allowed. When you need a host or a credential you do not have, ' +
  'call request_access with a clear reason and wait: only a person can approve it, for a limited time. Never try to work around the sandbox.';

export interface McpOptions {
  client: RuntimeClient;
  sessionId: string;
  maxOutputBytes?: number;
}

function result(t: ToolText): CallToolResult {
  return { content: [{ type: 'text', text: t.text }], isError: t.isError, ...(t.structured ? { structuredContent: t.structured } : {}) };
}

/** Errors of the runtime become tool errors the agent can read (not protocol failures). */
async function guarded(fn: () => Promise<ToolText>): Promise<CallToolResult> {
  try {
    return result(await fn());
  } catch (e) {
    const msg = e instanceof RpcError ? e.message : `internal error: ${(e as Error).message}`;
    return result({ text: msg, isError: true });
  }
}

export function createMcpServer(opts: McpOptions): McpServer {
  const ctx: ToolContext = {
    client: opts.client,
    sessionId: opts.sessionId,
    maxOutputBytes: opts.maxOutputBytes ?? DEFAULT_MCP_MAX_OUTPUT,
    repl: new PythonRepl(opts.client, opts.sessionId),
  };
  const server = new McpServer({ name: 'airlock', version: VERSION }, { instructions: INSTRUCTIONS });
  const path = z.string().min(1).max(4096);

  server.registerTool('exec', {
    title: 'Run a command in the sandbox',
    description: `Runs a command and returns its exit status and output. ${SANDBOX_NOTE} A string is run by bash -c; an array is an argv. ` +
      `Each of stdout and stderr is capped (${ctx.maxOutputBytes} bytes: head and tail are kept, and the note names a file inside the sandbox holding the whole output).`,
    inputSchema: {
      command: z.union([z.string().min(1).max(131072), z.array(z.string().max(131072)).min(1).max(4096)]).describe('a shell command line, or an argv array'),
      cwd: path.optional().describe('working directory: absolute, or relative to the workspace'),
      timeoutSeconds: z.number().int().min(1).max(3600).optional().describe('default 60; the command is killed after it'),
      stdin: z.string().max(8388608).optional().describe('text written to its stdin'),
    },
  }, (a) => guarded(() => execTool(ctx, a)));

  server.registerTool('read_file', {
    title: 'Read a file in the sandbox',
    description: `Reads a text file as the sandbox sees it (masked secret files are empty). Returns at most ${ctx.maxOutputBytes} bytes from offset; the note says how to read on. ${SANDBOX_NOTE}`,
    inputSchema: { path: path.describe('absolute, or relative to the workspace'), offset: z.number().int().min(0).optional(), limit: z.number().int().min(1).max(ctx.maxOutputBytes).optional() },
  }, (a) => guarded(() => readFileTool(ctx, a)));

  server.registerTool('write_file', {
    title: 'Write a file in the sandbox',
    description: `Writes (or appends) text to a file, creating its directories. Paths the host later executes (.git/hooks, .vscode, .envrc, …) are read-only. ${SANDBOX_NOTE}`,
    inputSchema: { path: path.describe('absolute, or relative to the workspace'), content: z.string().max(8388608), append: z.boolean().optional() },
  }, (a) => guarded(() => writeFileTool(ctx, a)));

  server.registerTool('list_dir', {
    title: 'List a directory in the sandbox',
    description: `Lists a directory's entries with their type and size in bytes. ${SANDBOX_NOTE}`,
    inputSchema: { path: path.optional().describe('default: the workspace') },
  }, (a) => guarded(() => listDirTool(ctx, a)));

  server.registerTool('search', {
    title: 'Search text in the workspace',
    description: `Finds lines containing a text (or an extended regex) in files under a path (default the workspace), skipping .git, node_modules and binary files: path:line:text. ${SANDBOX_NOTE}`,
    inputSchema: {
      pattern: z.string().min(1).max(4096),
      path: path.optional(),
      regex: z.boolean().optional().describe('treat pattern as an extended regular expression (default: plain text)'),
      ignoreCase: z.boolean().optional(),
      maxResults: z.number().int().min(1).max(2000).optional().describe('default 200'),
    },
  }, (a) => guarded(() => searchTool(ctx, a)));

  server.registerTool('python', {
    title: 'Run Python in a persistent REPL',
    description: `Runs Python code in one interpreter per session: variables, imports and functions persist between calls. The value of a final expression is shown. ${SANDBOX_NOTE}`,
    inputSchema: { code: z.string().min(1).max(1048576), timeoutSeconds: z.number().int().min(1).max(3600).optional().describe('default 60; then KeyboardInterrupt (state is kept)') },
  }, (a) => guarded(() => pythonTool(ctx, a)));

  server.registerTool('session_info', {
    title: 'What this sandbox allows',
    description: 'The sandbox session: workspace, time left, network mode and allowed hosts (with expiry), and the names of granted secrets with their expiry (never values).',
    inputSchema: {},
  }, () => guarded(() => sessionInfoTool(ctx)));

  server.registerTool('request_access', {
    title: 'Ask a person for a host or a secret',
    description: 'Asks the person supervising this sandbox for access to a network host (kind "host", target like "api.example.com" or "*.example.com:443") ' +
      'or for a secret (kind "secret", target its variable name, like "GITHUB_TOKEN"), with the reason you need it. Only a person can approve it, always for a limited time; ' +
      'you cannot approve it yourself. The call waits up to waitSeconds (default 60) for the decision and returns the request\'s state; if still pending, call session_info later.',
    inputSchema: {
      kind: z.enum(['host', 'secret']),
      target: z.string().min(1).max(300),
      reason: z.string().min(1).max(500),
      ttlSeconds: z.number().int().min(1).max(86400).optional().describe('how long you need it (default 900); the person decides'),
      waitSeconds: z.number().int().min(0).max(300).optional(),
    },
  }, (a) => guarded(async () => {
    const r = await ctx.client.call('access.request', {
      sessionId: ctx.sessionId, kind: a.kind, target: a.target, reason: a.reason,
      ...(a.ttlSeconds ? { ttlSeconds: a.ttlSeconds } : {}), waitMs: (a.waitSeconds ?? 60) * 1000,
    });
    return { text: `request ${r.requestId}: ${r.state}. ${r.message}`, isError: false, structured: { ...r } };
  }));

  return server;
}
