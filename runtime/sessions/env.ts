/**
 * The environment of sandboxed processes: empty except an explicit allowlist. Nothing
 * else of the caller's environment (tokens, SSH_AUTH_SOCK, cloud credentials) is
 * copied, so it is not readable inside via `env` or any /proc/PID/environ.
 */
import type { Policy } from '../policy/policy';

/** A PATH of system directories only: the caller's PATH may point into a home directory. */
export const SANDBOX_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';
export const SANDBOX_HOME = '/home/airlock';

/** Caller variables that are copied when set: terminal type, language and time zone. */
function allowedFromCaller(name: string): boolean {
  return name === 'TERM' || name === 'LANG' || name === 'LANGUAGE' || name === 'TZ' || name === 'COLORTERM' || /^LC_[A-Z_]+$/.test(name);
}

export function buildEnv(policy: Policy, callerEnv: NodeJS.ProcessEnv): Record<string, string> {
  const env: Record<string, string> = { PATH: SANDBOX_PATH, HOME: SANDBOX_HOME };
  for (const [k, v] of Object.entries(callerEnv)) {
    if (v !== undefined && allowedFromCaller(k)) env[k] = v;
  }
  for (const k of policy.env.pass) {
    const v = callerEnv[k];
    if (v !== undefined) env[k] = v;
  }
  Object.assign(env, policy.env.set);
  return env;
}
