/**
 * Builds bubblewrap's argument list from data. The order of mounts matters: later
 * mounts sit on top of earlier ones, so the workspace comes first, read-only paths
 * next, masks last (a mask inside a read-only directory must stay on top).
 */
import type { Policy } from '../../policy/policy';
import type { WorkspacePlan } from '../../policy/workspace';
import { etcMounts, Identity, Mount, systemMounts } from './system';

/** Where the runtime's own files appear inside the sandbox (a tmpfs, read-only). */
export const INSIDE_RUN = '/run/airlock';
export const INSIDE_AGENT = `${INSIDE_RUN}/agent`;

export interface BwrapFiles {
  agent: string;
  emptyFile: string;
  emptyDir: string;
  /** Generated /etc files (passwd, group, hostname, hosts) by name. */
  etc: Record<string, string>;
}

export interface BwrapArgsInput {
  policy: Policy;
  workspace: WorkspacePlan;
  identity: Identity;
  files: BwrapFiles;
  /** fds as numbered inside bwrap's own process. */
  fds: { seccomp: number; info: number };
}

function mountArgs(m: Mount): string[] {
  if (m.kind === 'symlink') return ['--symlink', m.target, m.dest];
  return [m.kind === 'bind' ? '--bind' : '--ro-bind', m.src, m.dest];
}

export function buildBwrapArgs(input: BwrapArgsInput): string[] {
  const { policy, workspace, identity, files, fds } = input;
  const tmpfsBytes = String(policy.limits.tmpfsMiB * 1024 * 1024);
  const a: string[] = [
    // Namespaces: a new user namespace without capabilities that cannot make more,
    // and private pid, ipc, uts, cgroup and network namespaces (loopback only).
    '--unshare-user', '--unshare-pid', '--unshare-ipc', '--unshare-uts', '--unshare-net', '--unshare-cgroup-try',
    '--disable-userns', '--cap-drop', 'ALL',
    '--uid', String(identity.uid), '--gid', String(identity.gid), '--hostname', 'airlock',
    // The agent is PID 1: when it exits the kernel kills every process in the namespace;
    // when the runtime dies bubblewrap and then the agent die with it.
    '--die-with-parent', '--as-pid-1',
  ];
  for (const m of systemMounts()) a.push(...mountArgs(m));
  for (const m of etcMounts()) a.push(...mountArgs(m));
  for (const [name, src] of Object.entries(files.etc)) a.push('--ro-bind', src, `/etc/${name}`);
  a.push('--proc', '/proc', '--dev', '/dev');
  a.push('--size', tmpfsBytes, '--perms', '1777', '--tmpfs', '/tmp');
  a.push('--tmpfs', '/var', '--symlink', '../tmp', '/var/tmp');
  a.push('--size', tmpfsBytes, '--perms', '0700', '--tmpfs', identity.home);
  a.push('--tmpfs', '/run', '--dir', INSIDE_RUN, '--ro-bind', files.agent, INSIDE_AGENT);
  for (const p of policy.filesystem.hostReadOnly) a.push('--ro-bind-try', p, p);

  a.push('--bind', workspace.host, workspace.inside);
  for (const p of [...workspace.readOnly, ...workspace.absentReadOnly]) a.push('--ro-bind', p.host, p.inside);
  for (const p of workspace.masks) a.push('--ro-bind', p.dir ? files.emptyDir : files.emptyFile, p.inside);

  // The root tmpfs bubblewrap builds is writable by the sandbox user until made read-only.
  a.push('--remount-ro', '/');
  a.push('--chdir', workspace.inside);
  a.push('--seccomp', String(fds.seccomp), '--info-fd', String(fds.info));
  return a;
}

/** The command bubblewrap runs: it must follow the options on the real command line. */
export function agentCommand(agentArgs: string[]): string[] {
  return ['--', INSIDE_AGENT, ...agentArgs];
}
