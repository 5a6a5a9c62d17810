/**
 * `airlock serve`: the daemon's entry. Reads its flags, wires the driver, audit log
 * and server, and stops cleanly on SIGTERM/SIGINT (ending every session it owns).
 */
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { RuntimeClient } from '../../client/client';
import { startDaemon } from '../../client/daemon';
import { AlreadyRunningError, serve } from '../../daemon/server';
import { resolvePolicy } from '../../policy/policy';
import { interactiveShell } from '../../shell';
import { defaultSocketPath, PROTOCOL_VERSION } from '../../protocol';
import { ensurePrivateDir, stateDir } from '../../util/paths';
import { upstreamTrust } from '../../secrets/trust';
import { parseFlags, positiveInt, UsageError } from '../args';
import { defaultDriver, openAudit } from '../context';
import type { Io } from '../io';
import { VERSION } from '../version';

export const SERVE_USAGE = `usage: airlock serve [--socket PATH] [--listen tcp://HOST:PORT [--tls-cert FILE --tls-key FILE]]
                    [--idle-exit SECONDS] [--trust-ca FILE]... [--foreground]

Runs the Airlock daemon, which owns every sandbox session of this user. Clients (the
CLI, MCP clients, VS Code) connect to its unix socket (default: ${'$'}XDG_RUNTIME_DIR/airlock/runtime.sock)
with a WebSocket at /rpc. Sessions outlive clients; the daemon exits by itself after
--idle-exit seconds (default 600; 0: never) with no sessions and no clients.

  --socket PATH          the unix socket (its directory is made private, mode 0700)
  --listen tcp://H:P     also listen on TCP for a remote runtime: clients need the bearer
                         token in ${'$'}XDG_STATE_HOME/airlock/token (created 0600 and printed once)
  --tls-cert/--tls-key   serve that TCP listener over TLS
  --trust-ca FILE        also trust this PEM CA when verifying hosts the proxy intercepts
                         for brokered secrets (private services); repeatable. The runtime's
                         own CA lives in ${'$'}XDG_STATE_HOME/airlock/ca (key 0600, never mounted)
  --foreground           stay in this terminal and log to stderr (default: start detached)
  --no-warm-pool         do not keep a spare sandbox ready for recently used workspaces
                         (a spare makes the next session start in a few milliseconds;
                         its empty read-only placeholders stay visible meanwhile)
`;

/** The bearer token for TCP clients: 256 random bits, created once, stored 0600. */
function loadOrCreateToken(io: Io): string {
  const file = path.join(ensurePrivateDir(stateDir()), 'token');
  if (fs.existsSync(file)) return fs.readFileSync(file, 'utf8').trim();
  const token = crypto.randomBytes(32).toString('hex');
  fs.writeFileSync(file, token + '\n', { mode: 0o600, flag: 'wx' });
  io.err(`airlock: created the token for TCP clients in ${file} (mode 0600). It is shown this once:\n${token}\n`);
  return token;
}

function parseListen(v: string): { host: string; port: number } {
  const m = /^tcp:\/\/(\[[^\]]+\]|[^:/]+):(\d{1,5})$/.exec(v);
  if (!m || Number(m[2]) > 65535) throw new UsageError(`serve: --listen must look like tcp://127.0.0.1:7070, got ${JSON.stringify(v)}`);
  return { host: m[1].replace(/^\[|\]$/g, ''), port: Number(m[2]) };
}

export async function serveCommand(argv: string[], io: Io): Promise<number> {
  const p = parseFlags(argv, { values: ['socket', 'listen', 'tls-cert', 'tls-key', 'idle-exit'], lists: ['trust-ca'], booleans: ['foreground', 'no-warm-pool'] }, 'serve');
  if (p.help) {
    io.out(SERVE_USAGE);
    return 0;
  }
  if (p.rest.length) throw new UsageError(`serve: unexpected argument ${JSON.stringify(p.rest[0])}`);
  const socket = path.resolve(p.values.socket ?? defaultSocketPath());
  const idle = p.values['idle-exit'] === '0' ? 0 : positiveInt(p.values['idle-exit'], 'idle-exit', 'serve') ?? 600;
  if (Boolean(p.values['tls-cert']) !== Boolean(p.values['tls-key'])) throw new UsageError('serve: --tls-cert and --tls-key go together');
  if (p.values['tls-cert'] && !p.values.listen) throw new UsageError('serve: --tls-cert needs --listen tcp://HOST:PORT');

  // The token is made (and shown once) here, in the person's terminal, not in a log.
  const token = p.values.listen ? loadOrCreateToken(io) : undefined;
  if (!p.flags.foreground) {
    // A live daemon: say so and exit 1, as --foreground does (a child would only refuse).
    const live = await RuntimeClient.connect({ socket }).then(
      (c) => c.call('runtime.info', {}).then((i) => i.pid, () => 0).finally(() => c.close()),
      () => null,
    );
    if (live !== null) {
      io.err(`airlock: an Airlock daemon already serves ${socket}${live ? ` (pid ${live}): use it, or stop it with 'kill ${live}'` : ''}\n`);
      return 1;
    }
    // The detached daemon runs in /: file arguments must be absolute.
    const abs = (k: string, v: string): string => (k.startsWith('tls-') ? path.resolve(v) : v);
    const args = (['listen', 'tls-cert', 'tls-key', 'idle-exit'] as const).flatMap((k) => (p.values[k] !== undefined ? [`--${k}`, abs(k, p.values[k]!)] : []));
    if (p.flags['no-warm-pool']) args.push('--no-warm-pool');
    for (const f of p.lists['trust-ca'] ?? []) args.push('--trust-ca', path.resolve(f));
    const { pid, log } = await startDaemon(socket, args);
    io.out(`airlock daemon running (pid ${pid}) on ${socket}; log: ${log}\n`);
    return 0;
  }

  const driver = defaultDriver();
  const upstreamCAs = upstreamTrust(p.lists['trust-ca']);
  // Loaded here only: the X.509 library is large, and no other command needs it.
  const { CertificateAuthority } = await import('../../secrets/ca');
  const ca = await CertificateAuthority.loadOrCreate(path.join(stateDir(), 'ca'));
  // The daemon appends from its event loop, often many records a turn (see AuditLog).
  const audit = openAudit({ holdLock: true });
  const tcp = p.values.listen
    ? {
        ...parseListen(p.values.listen),
        token: token!,
        tls: p.values['tls-cert'] ? { cert: fs.readFileSync(p.values['tls-cert']), key: fs.readFileSync(p.values['tls-key']!) } : undefined,
      }
    : undefined;
  const log = (line: string): void => io.err(`${new Date().toISOString()} airlock[${process.pid}]: ${line}\n`);
  const checks = await driver.check();
  let server;
  try {
    server = await serve({
      socket,
      tcp,
      idleExitSeconds: idle,
      warmPool: !p.flags['no-warm-pool'],
      ca,
      upstreamCAs,
      driver,
      audit,
      log,
      // Paths inside the sandbox are the host's /usr (read-only), so the host can tell.
      shell: () => interactiveShell({ available: (p) => fs.existsSync(p) }),
      info: () => ({
        version: VERSION,
        protocol: PROTOCOL_VERSION,
        pid: process.pid,
        drivers: [{ name: driver.name, available: checks.every((c) => c.ok || !c.required) }],
        limits: driver.describeLimits(resolvePolicy().limits),
      }),
    });
  } catch (e) {
    if (e instanceof AlreadyRunningError) {
      io.err(`airlock: ${e.message}\n`);
      return 1;
    }
    throw e;
  }
  log(`serving ${socket}${tcp ? ` and ${tcp.tls ? 'wss' : 'ws'}://${tcp.host}:${server.tcpPort}` : ''} (idle exit ${idle ? idle + ' s' : 'off'})`);
  for (const sig of ['SIGTERM', 'SIGINT', 'SIGHUP'] as const) process.on(sig, () => void server.close(`received ${sig}`));
  await server.stopped;
  audit.close();
  return 0;
}
