/**
 * Seccomp filter for the bubblewrap driver.
 *
 * We generate a classic BPF (cBPF) program ourselves instead of depending on
 * libseccomp: the program is small, its logic is easy to audit, and it keeps
 * the runtime free of native code. The result is handed to `bwrap --seccomp FD`,
 * which reads the raw `struct sock_filter[]` from the fd, sets no_new_privs and
 * installs it with prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER) right before it
 * execs the sandboxed command.
 *
 * The policy is a deny list on top of the namespace/capability isolation that
 * bwrap already provides: it removes kernel attack surface (bpf, io_uring,
 * userfaultfd, keyrings, perf...) and closes escape hatches that do not depend
 * on capabilities (TIOCSTI terminal injection, nested namespaces, ptrace of
 * sibling processes). Everything else is allowed.
 *
 * Program layout (every instruction is `struct sock_filter`, 8 bytes LE):
 *
 *   ld   [arch]                      ; seccomp_data.arch
 *   jeq  AUDIT_ARCH, +1, +0
 *   ret  KILL_PROCESS                ; foreign ABI (e.g. i386 `int 0x80`)
 *   ld   [nr]                        ; seccomp_data.nr
 *   jge  X32_BIT, +0, +1             ; x64 only
 *   ret  ERRNO|EPERM                 ; x32 ABI syscall
 *   jeq  NR_rule, +0, +1             ; one pair per deny rule...
 *   ret  ERRNO|errno
 *   ...
 *   jeq  NR_ioctl, +0, +5            ; ioctl: inspect the request code
 *   ld   [args[1] low]
 *   jeq  TIOCSTI, +2, +0
 *   jeq  TIOCLINUX, +1, +0
 *   ret  ALLOW
 *   ret  ERRNO|EPERM
 *   jeq  NR_clone, +0, +3            ; clone: inspect the flags
 *   ld   [args[0] low]
 *   jset NAMESPACE_FLAGS, +0, +1
 *   ret  ERRNO|EPERM
 *   ret  ALLOW
 *
 * Every conditional jump is a short forward hop (at most 5), so the 8-bit
 * jt/jf limit of cBPF can never be hit no matter how long the deny list grows.
 */

import {
  AUDIT_ARCH,
  SUPPORTED_SECCOMP_ARCHES,
  SYSCALL_NUMBERS,
  X32_SYSCALL_BIT,
  type SeccompArch,
} from './seccomp-syscalls';

export type { SeccompArch } from './seccomp-syscalls';
export { SUPPORTED_SECCOMP_ARCHES, SYSCALL_NUMBERS } from './seccomp-syscalls';

export interface SeccompRule {
  syscall: string;
  action: 'EPERM' | 'ENOSYS';
  why: string;
}

/**
 * The documented deny list: one entry per syscall. Rules whose syscall does not
 * exist on the target architecture are skipped for that architecture.
 *
 * Deliberately NOT here: `personality` (allowed; needed by e.g. setarch and
 * some build tools, and READ_IMPLIES_EXEC-style flags are harmless under
 * no_new_privs), `ioctl` and `clone` (filtered by argument, see below).
 */
const RULES: SeccompRule[] = [
  // --- Inspecting or tampering with other processes --------------------------
  { syscall: 'ptrace', action: 'EPERM', why: 'Tracing lets one sandboxed process read and rewrite the memory and registers of another, defeating any per-process policy and exposing a large, historically buggy kernel surface.' },
  { syscall: 'process_vm_readv', action: 'EPERM', why: 'Reads another process\'s memory directly, which is ptrace-equivalent access that the sandbox has no legitimate need for.' },
  { syscall: 'process_vm_writev', action: 'EPERM', why: 'Writes another process\'s memory directly, which is ptrace-equivalent code injection.' },
  { syscall: 'pidfd_getfd', action: 'EPERM', why: 'Steals a duplicate of another process\'s file descriptor, which could hand the agent sockets or files it was never given.' },
  { syscall: 'kcmp', action: 'EPERM', why: 'Compares kernel objects across processes, leaking kernel pointer ordering and cross-process resource identity.' },

  // --- Mount table / filesystem view ------------------------------------------
  { syscall: 'mount', action: 'EPERM', why: 'Changing the mount table could hide, replace or re-expose the filesystem view bwrap constructed.' },
  { syscall: 'umount2', action: 'EPERM', why: 'Unmounting could reveal paths bwrap masked with overlay mounts (e.g. tmpfs over secrets).' },
  { syscall: 'pivot_root', action: 'EPERM', why: 'Swapping the root filesystem is only useful for building a new container and could be combined with other mounts to escape the view.' },
  { syscall: 'chroot', action: 'EPERM', why: 'Chroot is a classic building block for escaping path-based confinement and the sandbox never needs it.' },
  { syscall: 'move_mount', action: 'EPERM', why: 'Part of the new mount API and can attach or relocate mounts just like mount(2).' },
  { syscall: 'open_tree', action: 'EPERM', why: 'Part of the new mount API; with OPEN_TREE_CLONE it detaches copies of mount trees that can later be attached elsewhere.' },
  { syscall: 'fsopen', action: 'EPERM', why: 'Part of the new mount API; creates filesystem contexts and exposes filesystem parameter parsers to the agent.' },
  { syscall: 'fsconfig', action: 'EPERM', why: 'Part of the new mount API; configures filesystem contexts and has had exploitable parser bugs (e.g. CVE-2022-0185).' },
  { syscall: 'fsmount', action: 'EPERM', why: 'Part of the new mount API; turns a filesystem context into a mount that can then be attached.' },
  { syscall: 'fspick', action: 'EPERM', why: 'Part of the new mount API; reopens an existing superblock for reconfiguration.' },
  { syscall: 'mount_setattr', action: 'EPERM', why: 'Changes mount attributes such as read-only or idmapping and could make bwrap\'s read-only binds writable.' },

  // --- Namespaces -------------------------------------------------------------
  { syscall: 'unshare', action: 'EPERM', why: 'New namespaces (especially user namespaces) grant fresh capabilities over a large kernel surface and are a common step in kernel exploits.' },
  { syscall: 'setns', action: 'EPERM', why: 'Joining another namespace through an inherited fd could move the process out of the sandbox\'s namespaces.' },

  // --- Kernel keyrings (not namespaced) ---------------------------------------
  { syscall: 'keyctl', action: 'EPERM', why: 'Kernel keyrings are not namespaced, so the agent could read or plant keys (e.g. credentials cached by the host user) outside the sandbox.' },
  { syscall: 'add_key', action: 'EPERM', why: 'Adding keys to keyrings that are shared with the host breaks isolation and the keyring code has a history of vulnerabilities.' },
  { syscall: 'request_key', action: 'EPERM', why: 'Requesting keys can invoke the host\'s /sbin/request-key upcall outside the sandbox.' },

  // --- Large kernel attack surfaces -------------------------------------------
  { syscall: 'bpf', action: 'EPERM', why: 'eBPF exposes the verifier and JIT, one of the largest sources of local privilege escalation bugs.' },
  { syscall: 'perf_event_open', action: 'EPERM', why: 'Perf events leak kernel addresses and side-channel information and have repeatedly been used for privilege escalation.' },
  { syscall: 'userfaultfd', action: 'EPERM', why: 'userfaultfd lets an attacker pause the kernel mid-copy, which makes kernel race conditions reliably exploitable.' },
  { syscall: 'io_uring_setup', action: 'EPERM', why: 'io_uring is a large, fast-moving kernel surface with many privilege escalation bugs, and its operations bypass seccomp inspection of the syscalls they perform.' },
  { syscall: 'io_uring_enter', action: 'EPERM', why: 'Submits io_uring work, whose operations are not checked by seccomp; blocked together with io_uring_setup.' },
  { syscall: 'io_uring_register', action: 'EPERM', why: 'Registers resources with an io_uring instance; blocked together with io_uring_setup.' },

  // --- Kernel modules and kexec ------------------------------------------------
  { syscall: 'kexec_load', action: 'EPERM', why: 'Loading a new kernel for kexec would replace the whole machine\'s kernel.' },
  { syscall: 'kexec_file_load', action: 'EPERM', why: 'Loading a new kernel for kexec would replace the whole machine\'s kernel.' },
  { syscall: 'init_module', action: 'EPERM', why: 'Loading a kernel module runs arbitrary code in the host kernel.' },
  { syscall: 'finit_module', action: 'EPERM', why: 'Loading a kernel module from an fd runs arbitrary code in the host kernel.' },
  { syscall: 'delete_module', action: 'EPERM', why: 'Unloading kernel modules could disable host security or networking features.' },

  // --- File handles -----------------------------------------------------------
  { syscall: 'open_by_handle_at', action: 'EPERM', why: 'Opening files by handle bypasses path lookup and was used to escape containers (the "shocker" exploit).' },
  { syscall: 'name_to_handle_at', action: 'EPERM', why: 'Produces the file handles that open_by_handle_at consumes and leaks inode identities of host files.' },

  // --- Host-global administration ---------------------------------------------
  { syscall: 'acct', action: 'EPERM', why: 'Process accounting is host-global and could be pointed at a file to fill disks or record other users\' processes.' },
  { syscall: 'swapon', action: 'EPERM', why: 'Enabling swap is host-global and can be used to write kernel memory to an attacker-chosen file.' },
  { syscall: 'swapoff', action: 'EPERM', why: 'Disabling swap is host-global and can exhaust host memory.' },
  { syscall: 'reboot', action: 'EPERM', why: 'Rebooting or halting affects the whole host (or kills the PID namespace), which is a denial of service.' },
  { syscall: 'settimeofday', action: 'EPERM', why: 'The clock is host-global; changing it breaks TLS validation, logs and audit timestamps outside the sandbox.' },
  { syscall: 'clock_settime', action: 'EPERM', why: 'The clock is host-global; changing it breaks TLS validation, logs and audit timestamps outside the sandbox.' },
  { syscall: 'clock_adjtime', action: 'EPERM', why: 'Adjusting a clock is host-global and could skew time for every process on the machine.' },
  { syscall: 'adjtimex', action: 'EPERM', why: 'Adjusting the kernel clock is host-global and could skew time for every process on the machine.' },
  { syscall: 'syslog', action: 'EPERM', why: 'The kernel log buffer is host-global and leaks kernel addresses and other users\' activity.' },
  { syscall: 'quotactl', action: 'EPERM', why: 'Disk quota administration acts on host filesystems and exposes quota parsing code.' },
  { syscall: 'quotactl_fd', action: 'EPERM', why: 'Disk quota administration acts on host filesystems and exposes quota parsing code.' },
  { syscall: 'lookup_dcookie', action: 'EPERM', why: 'An obsolete profiling interface that returns host paths for kernel cookies and has no legitimate use here.' },
  { syscall: 'iopl', action: 'EPERM', why: 'Raising the I/O privilege level gives direct access to hardware I/O ports.' },
  { syscall: 'ioperm', action: 'EPERM', why: 'Grants direct access to hardware I/O ports.' },
  { syscall: 'vhangup', action: 'EPERM', why: 'Hanging up the controlling terminal would disrupt the host terminal the agent shares with the user.' },
  { syscall: 'uselib', action: 'EPERM', why: 'An obsolete a.out library loader with a history of vulnerabilities and no modern use.' },
  { syscall: 'fanotify_init', action: 'EPERM', why: 'Filesystem-wide notification marks can observe (or, with permission events, block) file access far beyond the sandbox.' },
  { syscall: 'nfsservctl', action: 'EPERM', why: 'The removed kernel NFS server control interface; nothing legitimate calls it.' },
  { syscall: 'create_module', action: 'EPERM', why: 'An obsolete module-loading interface that no supported kernel implements.' },
  { syscall: 'get_kernel_syms', action: 'EPERM', why: 'An obsolete interface for reading kernel symbols that no supported kernel implements.' },
  { syscall: 'query_module', action: 'EPERM', why: 'An obsolete module-inspection interface that no supported kernel implements.' },

  // --- clone3 ---------------------------------------------------------------
  { syscall: 'clone3', action: 'ENOSYS', why: 'clone3 passes its flags in a struct that seccomp cannot read, so namespace flags could not be filtered; ENOSYS makes glibc fall back to clone, whose flags we do check.' },
];

export const SECCOMP_RULES: readonly SeccompRule[] = Object.freeze(RULES.map((r) => Object.freeze({ ...r })));

// ---------------------------------------------------------------------------
// cBPF encoding
// ---------------------------------------------------------------------------

// Opcodes (include/uapi/linux/filter.h, bpf_common.h).
const BPF_LD_W_ABS = 0x20; // BPF_LD | BPF_W | BPF_ABS
const BPF_JMP_JEQ_K = 0x15; // BPF_JMP | BPF_JEQ | BPF_K
const BPF_JMP_JGE_K = 0x35; // BPF_JMP | BPF_JGE | BPF_K
const BPF_JMP_JSET_K = 0x45; // BPF_JMP | BPF_JSET | BPF_K
const BPF_RET_K = 0x06; // BPF_RET | BPF_K
const BPF_CLASS_JMP = 0x05;

// Return values (include/uapi/linux/seccomp.h).
const SECCOMP_RET_KILL_PROCESS = 0x80000000;
const SECCOMP_RET_ERRNO = 0x00050000;
const SECCOMP_RET_ALLOW = 0x7fff0000;

const ERRNO: Readonly<Record<SeccompRule['action'], number>> = { EPERM: 1, ENOSYS: 38 };

// struct seccomp_data offsets. Both supported arches are little-endian, so the
// low 32 bits of a 64-bit argument come first.
const OFF_NR = 0;
const OFF_ARCH = 4;
const offArgLow = (i: number): number => 16 + 8 * i;

// ioctl request codes (asm-generic/ioctls.h; x86 and arm64 use the generic values).
const TIOCSTI = 0x5412; // push a byte into the tty input queue: terminal input injection
const TIOCLINUX = 0x541c; // VT console ops, incl. selection paste: input injection on VTs

// clone(2) flags that create namespaces. CLONE_NEWTIME (0x80) overlaps the
// exit-signal byte (CSIGNAL) in clone(2) and the kernel only honours it via
// clone3/unshare; no valid exit signal has that bit, so denying it is harmless.
const CLONE_NAMESPACE_FLAGS =
  0x00020000 | // CLONE_NEWNS
  0x02000000 | // CLONE_NEWCGROUP
  0x04000000 | // CLONE_NEWUTS
  0x08000000 | // CLONE_NEWIPC
  0x10000000 | // CLONE_NEWUSER
  0x20000000 | // CLONE_NEWPID
  0x40000000 | // CLONE_NEWNET
  0x00000080; // CLONE_NEWTIME

interface Insn {
  code: number;
  jt: number;
  jf: number;
  k: number;
}

const stmt = (code: number, k: number): Insn => ({ code, jt: 0, jf: 0, k });
const jump = (code: number, k: number, jt: number, jf: number): Insn => ({ code, jt, jf, k });
const ret = (k: number): Insn => stmt(BPF_RET_K, k);
const retErrno = (errno: number): Insn => ret(SECCOMP_RET_ERRNO | errno);

/** BPF_MAXINSNS: the kernel rejects longer classic BPF programs. */
const BPF_MAXINSNS = 4096;

function isSupportedArch(arch: string): arch is SeccompArch {
  return (SUPPORTED_SECCOMP_ARCHES as readonly string[]).includes(arch);
}

/**
 * Build the seccomp program for `arch` (default: the running process's arch).
 * Returns the raw `struct sock_filter[]` bytes for `bwrap --seccomp FD`.
 */
export function buildSeccompFilter(arch: SeccompArch = process.arch as SeccompArch): Buffer {
  if (!isSupportedArch(arch)) {
    throw new Error(
      `Airlock seccomp: unsupported architecture '${String(arch)}'; ` +
        `supported architectures are: ${SUPPORTED_SECCOMP_ARCHES.join(', ')}`,
    );
  }
  const nrs = SYSCALL_NUMBERS[arch];
  const nrOf = (name: string): number => {
    const nr = nrs[name];
    if (nr === undefined) throw new Error(`Airlock seccomp: no syscall number for '${name}' on ${arch}`);
    return nr;
  };

  const prog: Insn[] = [];

  // 1. Arch check. Syscall numbers are only meaningful for one ABI: an x86_64
  //    process can still enter the kernel through the i386 `int 0x80` path,
  //    where e.g. 101 is not ptrace. Anything but the expected ABI is killed.
  prog.push(stmt(BPF_LD_W_ABS, OFF_ARCH));
  prog.push(jump(BPF_JMP_JEQ_K, AUDIT_ARCH[arch], 1, 0));
  prog.push(ret(SECCOMP_RET_KILL_PROCESS));

  // 2. Load the syscall number; A holds it for every rule below.
  prog.push(stmt(BPF_LD_W_ABS, OFF_NR));

  //    x32 ABI syscalls share AUDIT_ARCH_X86_64 but set bit 30 of nr, so
  //    `0x40000000 | N` would dodge an exact `nr == N` match. Refuse them all.
  if (arch === 'x64') {
    prog.push(jump(BPF_JMP_JGE_K, X32_SYSCALL_BIT, 0, 1));
    prog.push(retErrno(ERRNO.EPERM));
  }

  // 3. The deny list: `jeq nr; ret errno` pairs, so every jump is +0/+1.
  for (const rule of SECCOMP_RULES) {
    const nr = nrs[rule.syscall];
    if (nr === undefined) continue; // syscall does not exist on this arch
    prog.push(jump(BPF_JMP_JEQ_K, nr, 0, 1));
    prog.push(retErrno(ERRNO[rule.action]));
  }

  // 4. ioctl: refuse terminal input injection. The kernel truncates `cmd` to
  //    unsigned int, so comparing only the low 32 bits of args[1] also catches
  //    requests with junk in the upper half.
  prog.push(jump(BPF_JMP_JEQ_K, nrOf('ioctl'), 0, 5));
  prog.push(stmt(BPF_LD_W_ABS, offArgLow(1)));
  prog.push(jump(BPF_JMP_JEQ_K, TIOCSTI, 2, 0));
  prog.push(jump(BPF_JMP_JEQ_K, TIOCLINUX, 1, 0));
  prog.push(ret(SECCOMP_RET_ALLOW));
  prog.push(retErrno(ERRNO.EPERM));

  // 5. clone: allow fork/threads but refuse any namespace-creating flag
  //    (clone flags are an unsigned long, but all of them live in the low 32
  //    bits). clone3 was already answered with ENOSYS above.
  prog.push(jump(BPF_JMP_JEQ_K, nrOf('clone'), 0, 3));
  prog.push(stmt(BPF_LD_W_ABS, offArgLow(0)));
  prog.push(jump(BPF_JMP_JSET_K, CLONE_NAMESPACE_FLAGS, 0, 1));
  prog.push(retErrno(ERRNO.EPERM));

  // 6. Everything else is allowed.
  prog.push(ret(SECCOMP_RET_ALLOW));

  return encode(prog);
}

function encode(prog: readonly Insn[]): Buffer {
  if (prog.length > BPF_MAXINSNS) {
    throw new Error(`Airlock seccomp: program has ${prog.length} instructions (max ${BPF_MAXINSNS})`);
  }
  const buf = Buffer.alloc(prog.length * 8);
  prog.forEach((insn, i) => {
    // Guard the 8-bit jump fields and make sure every jump lands inside the program.
    const isJump = (insn.code & 0x07) === BPF_CLASS_JMP;
    if (isJump && (insn.jt > 255 || insn.jf > 255 || i + 1 + Math.max(insn.jt, insn.jf) >= prog.length)) {
      throw new Error(`Airlock seccomp: jump out of range at instruction ${i}`);
    }
    const o = i * 8;
    buf.writeUInt16LE(insn.code, o);
    buf.writeUInt8(insn.jt, o + 2);
    buf.writeUInt8(insn.jf, o + 3);
    buf.writeUInt32LE(insn.k >>> 0, o + 4);
  });
  return buf;
}
