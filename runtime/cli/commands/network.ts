/**
 * `airlock allow`: a person's time-boxed network exception for a live session, the
 * narrow alternative to turning the sandbox off. Only a client of the control socket
 * can do this; the sandbox cannot.
 */
import { parseFlags, positiveInt, UsageError } from '../args';
import type { Io } from '../io';
import { connect } from './sessions';

export const ALLOW_USAGE = `usage: airlock allow SESSION RULE [--ttl SECONDS]
       airlock allow SESSION --list

Lets the live session SESSION reach RULE for SECONDS (default 900, i.e. 15 minutes);
the rule then expires by itself. Both the grant and its expiry are audited.
RULE: example.com, *.example.com (subdomains), an optional :PORT, an IP address or
CIDR (127.0.0.1:8080, 10.0.0.0/8, [::1]:3000). Loopback, private and metadata
addresses are reachable only through such an IP rule.

  --ttl SECONDS   how long the rule lasts (at most 604800, a week)
  --list          print the session's rules (policy, registries, grants) and exit
`;

const DEFAULT_TTL = 900;

export async function allowCommand(argv: string[], io: Io): Promise<number> {
  const p = parseFlags(argv, { values: ['ttl'], booleans: ['list'] }, 'allow');
  if (p.help) {
    io.out(ALLOW_USAGE);
    return 0;
  }
  const [sessionId, rule] = p.rest;
  if (!sessionId) throw new UsageError("allow: give a session id ('airlock sessions' lists them) and a rule");
  const client = await connect();
  try {
    if (p.flags.list) {
      const r = await client.call('network.rules', { sessionId });
      if (r.allowAll) io.out('ALL public hosts allowed (--allow-all-network)\n');
      for (const x of r.rules) io.out(`${x.effect.padEnd(5)}  ${x.rule.padEnd(40)}  ${x.source}${x.expiresAt ? `, until ${x.expiresAt}` : ''}\n`);
      io.out(`${r.activeConnections} connection(s) open; network mode ${r.mode}\n`);
      return 0;
    }
    if (!rule || p.rest.length > 2) throw new UsageError('allow: give exactly one rule, e.g. airlock allow SESSION example.com:443');
    const ttl = positiveInt(p.values.ttl, 'ttl', 'allow') ?? DEFAULT_TTL;
    const r = await client.call('network.allow', { sessionId, rule, ttlSeconds: ttl, by: `airlock allow (uid ${process.getuid?.() ?? '?'})` });
    io.out(`session ${sessionId} may reach ${r.rule} until ${r.expiresAt}\n`);
    return 0;
  } finally {
    client.close();
  }
}
