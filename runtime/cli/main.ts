/**
 * The `airlock` command. Reads its arguments, dispatches to one command, and turns
 * every error into a message that names the thing and the fix, with a stable exit
 * code (2 for usage errors).
 */
import { DriverError } from '../drivers/driver';
import { PolicyError } from '../policy/policy';
import { WorkspaceError } from '../policy/workspace';
import { AuditWriteError } from '../sessions';
import { UsageError } from './args';
import { agentShellCommand } from './commands/agent-shell';
import { auditCommand } from './commands/audit';
import { doctorCommand } from './commands/doctor';
import { runCommand, shellCommand } from './commands/run';
import { serveCommand } from './commands/serve';
import { attachCommand, killCommand, sessionsCommand } from './commands/sessions';
import { allowCommand } from './commands/network';
import { secretCommand } from './commands/secret';
import { approveCommand, denyCommand, requestsCommand } from './commands/requests';
import { RpcError } from '../protocol';
import { processIo } from './io';
import { VERSION } from './version';


const USAGE = `usage: airlock <command> [options]

Runs AI coding agents' commands inside an isolated sandbox: no environment of yours,
no home directory, no sockets, no network but an audited default-deny proxy; secret files in the workspace masked;
files the host later runs read-only; every session recorded in a tamper-evident log.

commands:
  run [--workspace DIR] [--policy FILE] [--timeout S] [--audit-json FILE]
      [--allow HOST[:PORT]]... [--deny HOST]... [--secret NAME]... [--broker NAME=HOST]...
      -- CMD [ARGS...]
                 run CMD in a new sandbox session and exit with its exit code
  shell [--workspace DIR] [--policy FILE]
                 an interactive sandboxed bash (closing the terminal leaves it running)
  agent-shell [--init-file FILE] [-c CMD]
                 VS Code's routed agent terminal: a sandboxed bash that takes bash's
                 arguments and runs VS Code's shell integration (ends with the terminal)
  sessions       list the live sessions
  attach ID      bring a session's terminal back
  kill ID        end a session and everything in it
  allow ID RULE [--ttl S]
                 let a live session reach a host for a while (default 15 minutes)
  secret grant|revoke|list ID ...
                 give a live session a secret (env, file or brokered), take it back
  mcp [--workspace DIR] [--session NAME]
                 an MCP server on stdio whose tools all run inside a sandbox
  requests [ID] [--all]
                 access requests agents made (a host, a secret), waiting for a person
  approve REQ [--ttl S]   deny REQ [--reason TEXT]
                 decide one (a secret's value comes from your shell's variable)
  serve          run the daemon that owns the sessions (started on demand)
  doctor         check that sandboxes can run here and which limits are enforced
  audit verify | tail | export
                 check and read the audit log

'airlock COMMAND --help' describes each command.
`;

const COMMANDS: Record<string, (argv: string[], io: typeof processIo) => Promise<number>> = {
  run: runCommand,
  shell: shellCommand,
  'agent-shell': agentShellCommand,
  sessions: sessionsCommand,
  attach: attachCommand,
  kill: killCommand,
  allow: allowCommand,
  secret: secretCommand,
  requests: requestsCommand,
  approve: approveCommand,
  deny: denyCommand,
  // Loaded when used: the MCP SDK is large and no other command needs it.
  mcp: (argv, io) => import('./commands/mcp').then((m) => m.mcpCommand(argv, io)),
  serve: serveCommand,
  doctor: doctorCommand,
  audit: auditCommand,
};

async function main(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  if (cmd === undefined || cmd === '--help' || cmd === '-h' || cmd === 'help') {
    processIo.out(USAGE);
    return cmd === undefined ? 2 : 0;
  }
  if (cmd === '--version' || cmd === 'version') {
    processIo.out(`airlock ${VERSION}\n`);
    return 0;
  }
  const run = COMMANDS[cmd];
  if (!run) {
    processIo.err(`airlock: unknown command '${cmd}' (commands: ${Object.keys(COMMANDS).join(', ')}; see 'airlock --help')\n`);
    return 2;
  }
  try {
    return await run(rest, processIo);
  } catch (e) {
    if (e instanceof UsageError) {
      processIo.err(`airlock ${e.message}\n`);
      return 2;
    }
    if (e instanceof PolicyError || e instanceof WorkspaceError || e instanceof DriverError || e instanceof AuditWriteError || e instanceof RpcError) {
      processIo.err(`airlock: ${e.message}\n`);
      return 125;
    }
    processIo.err(`airlock: ${(e as Error).stack ?? String(e)}\n`);
    return 125;
  }
}

void main(process.argv.slice(2)).then((code) => {
  // Let stdout drain before exiting: piped output must not be cut short (a closed
  // stdout, as after `| head`, just exits).
  process.stdout.once('error', () => process.exit(code));
  process.stdout.write('', () => process.exit(code));
});
