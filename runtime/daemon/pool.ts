/**
 * A warm pool: after a session starts for a workspace, one spare sandbox is prepared
 * for the same workspace and policy, so the next session there starts without waiting
 * for bubblewrap. Isolation stays per session: a spare is a fresh sandbox that has
 * run nothing, taken at most once and never returned.
 *
 * Safety argument: masks and read-only paths are decided when a sandbox is built. A
 * spare is used only if the workspace, scanned again when it is taken, yields the very
 * same plan (a `.env` created since would mask differently: then the spare is
 * discarded and a fresh sandbox built). The policy is part of the key.
 *
 * LIMITATION: a spare's read-only placeholders (`.vscode`, …) exist on the host while
 * it waits, up to SPARE_TTL_MS.
 */
import * as fs from 'node:fs';
import type { Driver } from '../drivers/driver';
import type { Policy } from '../policy/policy';
import type { EgressService } from '../egress/service';
import { planWorkspace, WorkspacePlan } from '../policy/workspace';
import { PreparedSandbox, Session } from '../sessions';

/** How long an unused spare waits before it is discarded. */
export const SPARE_TTL_MS = 120_000;
/** Delay before a spare is built. */
export const REFILL_DELAY_MS = 150;
/** Workspaces with a spare at once. */
export const MAX_SPARES = 4;

/**
 * What must not have changed for a spare to be used. Read-only paths are compared as
 * one set whether present or absent at scan time: the spare's own placeholders make
 * absent ones present on a second scan, and either way they are bound read-only.
 */
function planKey(p: WorkspacePlan): string {
  const ro = [...p.readOnly, ...p.absentReadOnly].map((x) => `${x.dir ? 'd' : 'f'}:${x.host}`).sort();
  return JSON.stringify([p.inside, p.host, p.hostId, p.masks, ro, p.gitEntries]);
}

interface Spare {
  prep: Promise<PreparedSandbox | null>;
  /** Set once prepared: only a ready spare is taken (waiting for one is slower than building). */
  ready: PreparedSandbox | null;
  /** Inode of each placeholder when the spare was ready (see placeholdersIntact). */
  inodes: Map<string, number>;
  timer: NodeJS.Timeout;
}

function inode(p: string): number {
  return fs.statSync(p, { throwIfNoEntry: false })?.ino ?? -1;
}

/**
 * A placeholder removed on the host (rmdir, `git clean`) detaches the read-only mount
 * sitting on it inside the sandbox. A spare whose placeholders are not the very same
 * inodes any more has lost that protection: it is discarded, never used.
 */
function placeholdersIntact(spare: Spare): boolean {
  for (const [p, ino] of spare.inodes) if (ino === -1 || inode(p) !== ino) return false;
  return true;
}

export class WarmPool {
  private readonly spares = new Map<string, Spare>();

  constructor(
    private readonly driver: Driver,
    private readonly enabled: boolean,
    private readonly egress?: EgressService,
  ) {}

  private key(workspace: string, policy: Policy): string {
    return `${workspace}\0${JSON.stringify(policy)}`;
  }

  /** A ready spare for WORKSPACE and POLICY whose plan still matches, if there is one. */
  take(workspace: string, policy: Policy): PreparedSandbox | null {
    const key = this.key(workspace, policy);
    const spare = this.spares.get(key);
    if (!spare?.ready) return null;
    this.spares.delete(key);
    clearTimeout(spare.timer);
    const prep = spare.ready;
    if (!prep.alive) return null;
    let now: WorkspacePlan | null = null;
    try {
      now = planWorkspace(workspace, policy);
    } catch {
      /* the workspace changed so much it is refused now: the fresh path says why */
    }
    if (!now || planKey(now) !== planKey(prep.plan) || !placeholdersIntact(spare)) {
      void prep.discard();
      return null;
    }
    return prep;
  }

  /** Prepares a spare for WORKSPACE and POLICY in the background (one per key). */
  refill(workspace: string, policy: Policy): void {
    if (!this.enabled) return;
    const key = this.key(workspace, policy);
    if (this.spares.has(key)) return;
    if (this.spares.size >= MAX_SPARES) this.drop(this.spares.keys().next().value as string);
    // Built a moment later, so it does not compete for the CPU with the first command of
    // the session that was just started.
    const prep = new Promise<void>((r) => setTimeout(r, REFILL_DELAY_MS).unref()).then(() =>
      Session.prepare({ workspace, policy, driver: this.driver, egress: this.egress }).catch(() => null),
    );
    const timer = setTimeout(() => this.drop(key), SPARE_TTL_MS);
    timer.unref();
    const spare: Spare = { prep, ready: null, timer, inodes: new Map() };
    void prep.then((p) => {
      for (const ph of p?.plan.absentReadOnly ?? []) spare.inodes.set(ph.host, inode(ph.host));
      spare.ready = p;
    });
    this.spares.set(key, spare);
  }

  private drop(key: string): void {
    const spare = this.spares.get(key);
    if (!spare) return;
    this.spares.delete(key);
    clearTimeout(spare.timer);
    void spare.prep.then((p) => p?.discard());
  }

  /** Discards every spare and waits until their sandboxes are gone. */
  async clear(): Promise<void> {
    const all = [...this.spares.values()];
    this.spares.clear();
    await Promise.all(all.map(async (s) => {
      clearTimeout(s.timer);
      await (await s.prep)?.discard();
    }));
  }
}
