/**
 * Session resource limits through cgroups where this user may create them: cgroup v2
 * in a delegated subtree (the usual case on systemd machines), or cgroup v1 as root
 * (hybrid layouts). Elsewhere the limits fall back to rlimits, and `airlock doctor`
 * says which limits are actually enforced.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Limits } from '../policy/policy';

const ROOT = '/sys/fs/cgroup';
const V1_CONTROLLERS = ['pids', 'memory', 'cpu'] as const;

export type CgroupMode = 'v2' | 'v1' | 'none';

export interface CgroupSupport {
  mode: CgroupMode;
  /** Why cgroups cannot be used, when mode is 'none'. */
  reason: string;
  /** v2: the directory new session cgroups go under; v1: one per controller. */
  parents: Record<string, string>;
}

function ownCgroups(): Map<string, string> {
  const out = new Map<string, string>();
  let text = '';
  try {
    text = fs.readFileSync('/proc/self/cgroup', 'utf8');
  } catch {
    return out;
  }
  for (const line of text.trim().split('\n')) {
    const m = /^\d+:([^:]*):(.*)$/.exec(line);
    if (!m) continue;
    const [, ctrls, p] = m;
    for (const c of ctrls === '' ? ['(v2)'] : ctrls.split(',')) out.set(c, p);
  }
  return out;
}

function writable(dir: string): boolean {
  try {
    fs.accessSync(dir, fs.constants.W_OK);
    return true;
  } catch {
    return false;
  }
}

function readTrim(file: string): string {
  try {
    return fs.readFileSync(file, 'utf8').trim();
  } catch {
    return '';
  }
}

/** Finds out, without changing anything that matters, how limits can be enforced. */
export function detectCgroups(): CgroupSupport {
  const own = ownCgroups();
  const pureV2 = fs.existsSync(path.join(ROOT, 'cgroup.controllers'));
  if (pureV2) {
    const parent = path.join(ROOT, own.get('(v2)') ?? '/');
    const needed = ['pids', 'memory', 'cpu'];
    const enabled = readTrim(path.join(parent, 'cgroup.subtree_control')).split(/\s+/);
    const available = readTrim(path.join(parent, 'cgroup.controllers')).split(/\s+/);
    const missing = needed.filter((c) => !available.includes(c));
    if (missing.length) return { mode: 'none', reason: `cgroup v2 controllers ${missing.join(', ')} are not delegated to ${parent}`, parents: {} };
    if (!writable(parent)) return { mode: 'none', reason: `cgroup ${parent} is not writable by this user (no delegation)`, parents: {} };
    if (!needed.every((c) => enabled.includes(c))) {
      try {
        fs.writeFileSync(path.join(parent, 'cgroup.subtree_control'), needed.map((c) => '+' + c).join(' '));
      } catch (e) {
        return { mode: 'none', reason: `cannot enable controllers under ${parent} (${(e as NodeJS.ErrnoException).code}): run Airlock in a delegated cgroup, e.g. 'systemd-run --user --scope -p Delegate=yes airlock …'`, parents: {} };
      }
    }
    return { mode: 'v2', reason: '', parents: { v2: parent } };
  }
  const parents: Record<string, string> = {};
  for (const c of V1_CONTROLLERS) {
    const mount = path.join(ROOT, c);
    if (!fs.existsSync(path.join(mount, 'tasks'))) return { mode: 'none', reason: `cgroup v1 controller ${c} is not mounted at ${mount}`, parents: {} };
    const dir = path.join(mount, own.get(c) ?? '/');
    if (!writable(dir)) return { mode: 'none', reason: `cgroup v1 ${dir} is not writable (cgroup v1 needs root; rlimits are used instead)`, parents: {} };
    parents[c] = dir;
  }
  return { mode: 'v1', reason: '', parents };
}

/** One session's cgroup(s). Processes added here and all their children are limited. */
export class SessionCgroup {
  private constructor(readonly mode: 'v1' | 'v2', private readonly dirs: string[]) {}

  static create(support: CgroupSupport, sessionId: string, limits: Limits): SessionCgroup {
    const name = `airlock-${sessionId}`;
    const period = 100_000;
    const quota = Math.round((limits.cpuPercent / 100) * period);
    const mem = limits.memoryMiB * 1024 * 1024;
    if (support.mode === 'v2') {
      const dir = path.join(support.parents.v2, name);
      fs.mkdirSync(dir);
      const cg = new SessionCgroup('v2', [dir]);
      try {
        fs.writeFileSync(path.join(dir, 'pids.max'), String(limits.pids));
        fs.writeFileSync(path.join(dir, 'memory.max'), String(mem));
        if (fs.existsSync(path.join(dir, 'memory.swap.max'))) fs.writeFileSync(path.join(dir, 'memory.swap.max'), '0');
        fs.writeFileSync(path.join(dir, 'cpu.max'), `${quota} ${period}`);
      } catch (e) {
        cg.destroySync();
        throw e;
      }
      return cg;
    }
    if (support.mode !== 'v1') throw new Error(`cgroups unavailable: ${support.reason}`);
    const dirs = V1_CONTROLLERS.map((c) => path.join(support.parents[c], name));
    const cg = new SessionCgroup('v1', []);
    try {
      for (const d of dirs) {
        fs.mkdirSync(d);
        cg.dirs.push(d);
      }
      fs.writeFileSync(path.join(dirs[0], 'pids.max'), String(limits.pids));
      fs.writeFileSync(path.join(dirs[1], 'memory.limit_in_bytes'), String(mem));
      fs.writeFileSync(path.join(dirs[2], 'cpu.cfs_period_us'), String(period));
      fs.writeFileSync(path.join(dirs[2], 'cpu.cfs_quota_us'), String(quota));
    } catch (e) {
      cg.destroySync();
      throw e;
    }
    return cg;
  }

  addPid(pid: number): void {
    for (const d of this.dirs) fs.writeFileSync(path.join(d, 'cgroup.procs'), String(pid));
  }

  /** Live process count (for tests and doctor). */
  pids(): number[] {
    const t = readTrim(path.join(this.dirs[0], 'cgroup.procs'));
    return t ? t.split('\n').map(Number) : [];
  }

  /** Kills whatever is left (v2 has cgroup.kill) and removes the cgroup, retrying while processes exit. */
  async destroy(): Promise<void> {
    if (this.mode === 'v2') {
      try {
        fs.writeFileSync(path.join(this.dirs[0], 'cgroup.kill'), '1');
      } catch {
        /* older kernels: the PID namespace teardown kills them anyway */
      }
    }
    for (let i = 0; i < 50 && this.dirs.length; i++) {
      if (this.destroySync()) return;
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  private destroySync(): boolean {
    for (const d of [...this.dirs]) {
      try {
        fs.rmdirSync(d);
        this.dirs.splice(this.dirs.indexOf(d), 1);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code === 'ENOENT') this.dirs.splice(this.dirs.indexOf(d), 1);
      }
    }
    return this.dirs.length === 0;
  }
}
