/**
 * Builds bubblewrap's argument list from data. The order of mounts matters: later
 * mounts sit on top of earlier ones, so the workspace comes first, read-only paths
 * next, masks last (a mask inside a read-only directory must stay on top).
 */
import type { Policy } from '../../policy/policy';
import { INSIDE_CA_BUNDLE, PROXY_PORT } from '../../egress/types';
import type { ProtectedPath, WorkspacePlan } from '../../policy/workspace';
import { etcMounts, Identity, Mount, systemMounts } from './system';

/** Where the runtime's own files appear inside the sandbox (a tmpfs, read-only). */
export const INSIDE_RUN = '/run/airlock';
export const INSIDE_AGENT = `${INSIDE_RUN}/agent`;
/** Where secrets granted in file mode appear: a private tmpfs of this many bytes. */
export const INSIDE_SECRETS = `${INSIDE_RUN}/secrets`;
export const SECRETS_TMPFS_BYTES = 1024 * 1024;

export interface BwrapFiles {
  /** Host directory bound at /run/airlock: `agent`, `empty`, `empty.d/`, `etc/`, `shell/`, `secrets/` (an empty mount point). */
  dir: string;
  emptyFile: string;
  emptyDir: string;
  /** Names of the generated files in `etc/` (passwd, group, hosts, hostname). */
  etc: string[];
}

export interface BwrapArgsInput {
  policy: Policy;
  workspace: WorkspacePlan;
  identity: Identity;
  files: BwrapFiles;
  /** fds as numbered inside bwrap's own process. */
  fds: { seccomp: number; info: number };
  /** System roots + the runtime's CA (public certificates only; the CA key is never mounted). */
  caBundle?: string;
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
  for (const name of files.etc) a.push('--symlink', `${INSIDE_RUN}/etc/${name}`, `/etc/${name}`);
  a.push('--proc', '/proc', '--dev', '/dev');
  // /dev/shm (POSIX shared memory, semaphores) gets its own bounded tmpfs: /dev itself
  // is made read-only below, like /var and /run (see there).
  a.push('--size', tmpfsBytes, '--perms', '1777', '--tmpfs', '/dev/shm');
  a.push('--size', tmpfsBytes, '--perms', '1777', '--tmpfs', '/tmp');
  a.push('--tmpfs', '/var', '--symlink', '../tmp', '/var/tmp');
  a.push('--size', tmpfsBytes, '--perms', '0700', '--tmpfs', identity.home);
  a.push('--tmpfs', '/run', '--ro-bind', files.dir, INSIDE_RUN);
  // Secrets granted in file mode are written here by the agent (runtime/agent/agent.c):
  // a tmpfs of the sandbox's own, so a secret never touches the host's disk and is gone
  // with the sandbox; bounded, and 0700 so only the sandbox user (the agent) writes it.
  // It must follow the read-only /run/airlock it sits on (the mount point is the empty
  // `secrets/` of files.dir).
  a.push('--size', String(SECRETS_TMPFS_BYTES), '--perms', '0700', '--tmpfs', INSIDE_SECRETS);
  if (input.caBundle) a.push('--ro-bind', input.caBundle, INSIDE_CA_BUNDLE);
  for (const p of policy.filesystem.hostReadOnly) a.push('--ro-bind-try', p, p);

  a.push('--bind', workspace.host, workspace.inside);
  const protectedPaths = [...workspace.readOnly, ...workspace.absentReadOnly];
  for (const d of ancestorsInWorkspace(workspace, protectedPaths)) a.push('--bind', d.host, d.inside);
  for (const p of protectedPaths) a.push('--ro-bind', p.host, p.inside);
  for (const p of workspace.masks) a.push('--ro-bind', p.dir ? files.emptyDir : files.emptyFile, p.inside);

  // The root tmpfs bubblewrap builds is writable by the sandbox user until made read-only.
  a.push('--remount-ro', '/');
  // So are the tmpfs mounts of /dev, /var and /run, and they have no size limit (half the
  // host's RAM each): left writable they would let a sandboxed process fill host memory
  // past limits.tmpfsMiB. Nothing in a sandbox needs to write there (/var/tmp leads to
  // /tmp, /dev/shm and /run/airlock/secrets have their own bounded tmpfs); mounts below
  // them stay as they are (bubblewrap's --remount-ro is not recursive).
  a.push('--remount-ro', '/dev', '--remount-ro', '/var', '--remount-ro', '/run');
  a.push('--chdir', workspace.inside);
  a.push('--seccomp', String(fds.seccomp), '--info-fd', String(fds.info));
  return a;
}

/**
 * Directories between the workspace root and each read-only path (`.git` for
 * `.git/hooks`), shallowest first. Each is bound onto itself, writable, so it becomes
 * a mount point. Safety argument: a mount point cannot be renamed or removed (EBUSY),
 * and a read-only mount moves along with a renamed ancestor; without these binds a
 * sandboxed process could `mv .git .git-old`, create a fresh `.git/hooks/pre-commit`
 * or `.git/config` where the host will look for them, and get code run on the host.
 * Cost: renaming or hard-linking a file across one of these directories' boundaries
 * fails with EXDEV (`mv` falls back to copying).
 */
function ancestorsInWorkspace(ws: WorkspacePlan, paths: ProtectedPath[]): { host: string; inside: string }[] {
  const out = new Map<string, string>();
  for (const p of paths) {
    if (!p.inside.startsWith(ws.inside + '/') || !p.host.startsWith(ws.host + '/')) continue;
    const rel = p.inside.slice(ws.inside.length + 1).split('/').slice(0, -1);
    for (let i = 1; i <= rel.length; i++) {
      const sub = rel.slice(0, i).join('/');
      out.set(`${ws.inside}/${sub}`, `${ws.host}/${sub}`);
    }
  }
  return [...out]
    .map(([inside, host]) => ({ inside, host }))
    .sort((x, y) => x.inside.split('/').length - y.inside.split('/').length);
}

/** Agent arguments that make it hand the proxy's listener (127.0.0.1:PROXY_PORT inside) to the runtime over FD. */
export function egressAgentArgs(fd: number): string[] {
  return ['--egress-fd', String(fd), '--proxy-port', String(PROXY_PORT)];
}

/** The command bubblewrap runs: it must follow the options on the real command line. */
export function agentCommand(agentArgs: string[]): string[] {
  return ['--', INSIDE_AGENT, ...agentArgs];
}
