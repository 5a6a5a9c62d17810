/** What `airlock doctor` checks for the bwrap driver, each with the fix for a failure. */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import type { CgroupSupport } from '../../limits/cgroups';
import type { DriverCheck } from '../driver';
import { findAgent } from './files';

export function checkBwrap(bwrap: string | null, cg: CgroupSupport): DriverCheck[] {
  const out: DriverCheck[] = [];
  if (!bwrap) {
    out.push({ name: 'bubblewrap', ok: false, required: true, detail: 'bubblewrap not found', fix: 'apt-get install bubblewrap' });
  } else {
    const v = spawnSync(bwrap, ['--version'], { encoding: 'utf8', env: {} });
    out.push({ name: 'bubblewrap', ok: v.status === 0, required: true, detail: v.status === 0 ? `${v.stdout.trim()} (${bwrap})` : `${bwrap} --version failed: ${v.stderr || v.error?.message}`, fix: 'apt-get install --reinstall bubblewrap' });
    if (v.status === 0) {
      const t = spawnSync(bwrap, ['--unshare-user', '--unshare-pid', '--unshare-net', '--disable-userns', '--ro-bind', '/usr', '/usr', '--symlink', 'usr/bin', '/bin', '--symlink', 'usr/lib', '/lib', '--symlink', 'usr/lib64', '/lib64', '--proc', '/proc', '--', '/usr/bin/true'], { encoding: 'utf8', env: {} });
      out.push({
        name: 'user namespaces',
        ok: t.status === 0,
        required: true,
        detail: t.status === 0 ? 'unprivileged user, pid and network namespaces work' : `a test sandbox failed: ${(t.stderr || '').trim()}`,
        fix: "enable unprivileged user namespaces: 'sysctl -w kernel.unprivileged_userns_clone=1' (Debian) or 'sysctl -w kernel.apparmor_restrict_unprivileged_userns=0' (Ubuntu 24.04+, or add an AppArmor profile for bwrap)",
      });
    }
  }
  try {
    const agent = findAgent();
    out.push({ name: 'airlock-agent', ok: true, required: true, detail: agent });
  } catch (e) {
    out.push({ name: 'airlock-agent', ok: false, required: true, detail: (e as Error).message, fix: 'npm run build' });
  }
  const seccompOk = process.arch === 'x64' || process.arch === 'arm64';
  out.push({ name: 'seccomp filter', ok: seccompOk, required: true, detail: seccompOk ? `generated for ${process.arch}` : `no syscall table for ${process.arch}`, fix: 'use an x86_64 or arm64 machine' });
  out.push({
    name: 'cgroups',
    ok: cg.mode !== 'none',
    required: false,
    detail: cg.mode === 'none' ? `limits fall back to rlimits: pids (RLIMIT_NPROC), file size; memory NOT enforced, cpu by nice only (${cg.reason})` : `cgroup ${cg.mode}: pids, memory and cpu limits enforced (${Object.values(cg.parents).join(', ')})`,
    fix: cg.mode === 'none' ? 'run as root, or in a delegated cgroup v2 subtree (systemd-run --user --scope -p Delegate=yes)' : undefined,
  });
  let tiocsti = 'unknown';
  try {
    tiocsti = fs.readFileSync('/proc/sys/dev/tty/legacy_tiocsti', 'utf8').trim() === '0' ? 'disabled by the kernel as well' : 'allowed by the kernel';
  } catch {
    /* older kernels have no switch */
  }
  out.push({ name: 'terminal injection (TIOCSTI)', ok: true, required: false, detail: `refused by Airlock's seccomp filter; ${tiocsti}` });
  return out;
}
