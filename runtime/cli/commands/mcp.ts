/**
 * `airlock mcp`: serves MCP on stdin/stdout for an agent (Claude Code, Cursor, Codex,
 * VS Code, any MCP client); every tool runs inside a sandbox session of the daemon
 * (started on demand). stdout carries the protocol only: messages go to stderr.
 */
import * as path from 'node:path';
import { StdioServerTransport } from '@modelcontextprotocol/sdk/server/stdio.js';
import { connectOrStart } from '../../client/daemon';
import type { RuntimeClient } from '../../client/client';
import { createMcpServer, DEFAULT_MCP_MAX_OUTPUT } from '../../mcp/server';
import { loadPolicyFile, PolicyDocument } from '../../policy/policy';
import { parseFlags, UsageError } from '../args';
import type { Io } from '../io';

export const MCP_USAGE = `usage: airlock mcp [--workspace DIR] [--session NAME] [--policy FILE] [--allow HOST[:PORT]]... [--max-output BYTES]

Serves the Model Context Protocol on stdin/stdout. Every tool (exec, read_file,
write_file, list_dir, search, python, session_info, request_access) runs inside an
Airlock sandbox rooted at DIR (default: the current directory). Each MCP connection
gets its own session, ended when it closes; --session NAME shares one named session
(kept until it ends by itself or 'airlock kill') between connections.

  --max-output BYTES  cap of each output stream in a tool result (default ${DEFAULT_MCP_MAX_OUTPUT});
                      the whole output is kept in a file inside the sandbox
  --allow HOST        also allow HOST for the session (see 'airlock run --help')

The agent cannot approve its own request_access: a person runs 'airlock requests',
'airlock approve ID' or 'airlock deny ID'.
`;

/** The session this MCP connection works in: a new one, or the live one named NAME. */
async function sessionFor(client: RuntimeClient, workspace: string, name: string | undefined, policy: PolicyDocument): Promise<string> {
  if (name !== undefined) {
    const label = `mcp:${name}`;
    const { sessions } = await client.call('session.list', {});
    const found = sessions.find((s) => s.label === label && s.workspace === workspace);
    if (found) return found.sessionId;
    return (await client.call('session.create', { workspace, policy, label })).sessionId;
  }
  return (await client.call('session.create', { workspace, policy, label: 'mcp', endOnDisconnect: true })).sessionId;
}

export async function mcpCommand(argv: string[], io: Io): Promise<number> {
  const p = parseFlags(argv, { values: ['workspace', 'session', 'policy', 'max-output'], lists: ['allow'] }, 'mcp');
  if (p.help) {
    io.out(MCP_USAGE);
    return 0;
  }
  if (p.rest.length) throw new UsageError(`mcp: unexpected argument ${JSON.stringify(p.rest[0])}`);
  if (p.values.session !== undefined && !/^[A-Za-z0-9._-]{1,64}$/.test(p.values.session)) throw new UsageError('mcp: --session NAME: letters, digits, . _ - (at most 64)');
  const max = p.values['max-output'] === undefined ? DEFAULT_MCP_MAX_OUTPUT : Number(p.values['max-output']);
  if (!Number.isInteger(max) || max < 1024 || max > 16 * 1024 * 1024) throw new UsageError('mcp: --max-output must be a whole number of bytes from 1024 to 16777216');
  const workspace = path.resolve(p.values.workspace ?? process.cwd());
  const policy: PolicyDocument = p.values.policy ? loadPolicyFile(p.values.policy) : {};
  if (p.lists.allow?.length) policy.network = { ...policy.network, allow: [...(policy.network?.allow ?? []), ...p.lists.allow] };

  const client = await connectOrStart();
  const sessionId = await sessionFor(client, workspace, p.values.session, policy);
  io.err(`airlock mcp: session ${sessionId} in ${workspace}\n`);
  const server = createMcpServer({ client, sessionId, maxOutputBytes: max });
  const transport = new StdioServerTransport();
  const closed = new Promise<void>((resolve) => {
    transport.onclose = () => resolve();
    process.stdin.once('end', () => resolve());
  });
  await server.connect(transport);
  await closed;
  await server.close().catch(() => undefined);
  client.close();
  return 0;
}
