/**
 * A driver turns a policy into a running isolated environment with airlock-agent
 * inside, and hands the session a channel to that agent. Everything above the
 * driver (sessions, audit, limits bookkeeping) is the same for every driver.
 */
import type { Server } from 'node:net';
import type { Duplex } from 'node:stream';
import type { Policy } from '../policy/policy';
import type { WorkspacePlan } from '../policy/workspace';

export interface SandboxStartOptions {
  sessionId: string;
  policy: Policy;
  workspace: WorkspacePlan;
  /**
   * Give the sandbox its only way out: the agent listens on 127.0.0.1:PROXY_PORT inside
   * and hands that listener to the runtime (Sandbox.egressListener), whose proxy accepts
   * every connection itself.
   */
  egress?: boolean;
  /** A host file mounted read-only at INSIDE_CA_BUNDLE (runtime/egress/types.ts). */
  caBundle?: string;
}

/** One limit and how (or whether) it is enforced on this machine. */
export interface LimitReport {
  name: string;
  value: string;
  enforcedBy: 'cgroup-v2' | 'cgroup-v1' | 'rlimit' | 'tmpfs-size' | 'nice' | 'runtime-timer' | 'none';
  note?: string;
}

export interface Sandbox {
  /** Host pid of the sandbox's outermost process (e.g. bwrap). */
  readonly hostPid: number;
  /** Host pid of the agent (PID 1 inside), when the driver can know it. */
  readonly agentHostPid: number | undefined;
  /** The channel to airlock-agent. */
  readonly channel: Duplex;
  /** With `egress`: the listener on 127.0.0.1:PROXY_PORT inside the sandbox's network namespace, not yet accepting. */
  readonly egressListener?: Server;
  readonly limits: LimitReport[];
  /** Host paths of the placeholders this sandbox relies on (empty stand-ins for absent read-only paths). */
  readonly placeholders: string[];
  /** Resolves when the sandbox is gone (all its processes dead). */
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null; stderr: string }>;
  /** Kills everything in the sandbox and releases what the driver set up. Idempotent. */
  destroy(): Promise<void>;
}

export interface DriverCheck {
  name: string;
  ok: boolean;
  detail: string;
  /** The exact command or change that fixes a failed check. */
  fix?: string;
  /** A failed required check means sandboxes cannot run. */
  required: boolean;
}

export interface Driver {
  readonly name: string;
  /** What this machine offers and lacks, for `airlock doctor`. */
  check(): Promise<DriverCheck[]>;
  start(opts: SandboxStartOptions): Promise<Sandbox>;
}

export class DriverError extends Error {
  constructor(message: string, readonly fix?: string) {
    super(fix ? `${message}: ${fix}` : message);
    this.name = 'DriverError';
  }
}
