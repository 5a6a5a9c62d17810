/**
 * The vocabulary of secrets: what a person grants a session, and what anyone may see
 * about a grant (never its value).
 *
 * Parts: redact.ts (the streaming redactor every byte leaving the runtime passes
 * through), leases.ts (one session's grants: env, file, brokered; expiry; audit),
 * broker.ts (placeholder substitution in the egress proxy), ca.ts (the per-runtime CA
 * for TLS interception of brokered hosts only), redaction.ts (the runtime-wide set of
 * values to redact).
 */

/**
 * - `env`: a variable in processes started after the grant.
 * - `file`: `/run/airlock/secrets/NAME` (0400) on a tmpfs that exists only inside the sandbox.
 * - `brokered`: the sandbox sees a placeholder; the proxy swaps in the value on requests to HOSTS.
 */
import type { SecretInfo, SecretMode } from '../protocol/methods';

export type { SecretInfo, SecretMode };

export const SECRET_MODES: readonly SecretMode[] = ['env', 'file', 'brokered'];

/** A variable name, so the same name works for every mode. */
export const SECRET_NAME = /^[A-Za-z_][A-Za-z0-9_]{0,127}$/;

/** Shorter values would redact ordinary words in every terminal (and are weak secrets). */
export const MIN_VALUE_BYTES = 8;
export const MAX_VALUE_BYTES = 64 * 1024;

/** When a grant names no TTL: short-lived by default. */
export const DEFAULT_SECRET_TTL_SECONDS = 3600;
export const MAX_SECRET_TTL_SECONDS = 7 * 24 * 3600;

/** Where file-mode secrets appear inside the sandbox. */
export const INSIDE_SECRETS_DIR = '/run/airlock/secrets';

export interface SecretGrant {
  name: string;
  value: string;
  mode: SecretMode;
  /** Brokered only (required there): `host`, `*.suffix`, IP, each with an optional `:port`. */
  hosts?: string[];
  /** Default DEFAULT_SECRET_TTL_SECONDS; never longer than the session lives anyway. */
  ttlSeconds?: number;
}


/** A grant that cannot be made; the message names the secret (never its value) and the fix. */
export class SecretError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'SecretError';
  }
}
