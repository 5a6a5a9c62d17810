/**
 * Syscall number tables used by the seccomp filter (see ./seccomp.ts).
 *
 * Numbers are per architecture ABI and MUST match the kernel's tables:
 *   - x64:   arch/x86/entry/syscalls/syscall_64.tbl
 *            (userspace copy: /usr/include/x86_64-linux-gnu/asm/unistd_64.h)
 *   - arm64: the generic table, include/uapi/asm-generic/unistd.h
 *            (userspace copy: /usr/include/asm-generic/unistd.h)
 *
 * A syscall that is absent from an architecture's table does not exist on that
 * architecture (e.g. iopl/ioperm/uselib are x86-only); the filter builder
 * skips the corresponding rule for that architecture. The unit tests compare
 * these tables against the installed kernel headers when they are present.
 */

/** The architectures the BPF generator supports (Node's `process.arch` names). */
export type SeccompArch = 'x64' | 'arm64';

/** The architectures we can build a filter for, in a stable order (used in error messages). */
export const SUPPORTED_SECCOMP_ARCHES: readonly SeccompArch[] = ['x64', 'arm64'];

/**
 * AUDIT_ARCH_* values as reported in `seccomp_data.arch`
 * (include/uapi/linux/audit.h: EM_* | __AUDIT_ARCH_64BIT | __AUDIT_ARCH_LE).
 */
export const AUDIT_ARCH: Readonly<Record<SeccompArch, number>> = {
  x64: 0xc000003e, // AUDIT_ARCH_X86_64  (EM_X86_64 = 62)
  arm64: 0xc00000b7, // AUDIT_ARCH_AARCH64 (EM_AARCH64 = 183)
};

/** x86_64: syscalls issued through the x32 ABI have this bit set in `nr`. */
export const X32_SYSCALL_BIT = 0x40000000;

const X64: Readonly<Record<string, number>> = {
  // Needed by the argument-inspecting parts of the filter.
  ioctl: 16,
  clone: 56,
  clone3: 435,

  // Deny list.
  ptrace: 101,
  process_vm_readv: 310,
  process_vm_writev: 311,
  pidfd_getfd: 438,
  kcmp: 312,
  mount: 165,
  umount2: 166,
  pivot_root: 155,
  chroot: 161,
  move_mount: 429,
  open_tree: 428,
  fsopen: 430,
  fsconfig: 431,
  fsmount: 432,
  fspick: 433,
  mount_setattr: 442,
  unshare: 272,
  setns: 308,
  keyctl: 250,
  add_key: 248,
  request_key: 249,
  bpf: 321,
  perf_event_open: 298,
  kexec_load: 246,
  kexec_file_load: 320,
  init_module: 175,
  finit_module: 313,
  delete_module: 176,
  userfaultfd: 323,
  io_uring_setup: 425,
  io_uring_enter: 426,
  io_uring_register: 427,
  open_by_handle_at: 304,
  name_to_handle_at: 303,
  acct: 163,
  swapon: 167,
  swapoff: 168,
  reboot: 169,
  settimeofday: 164,
  clock_settime: 227,
  clock_adjtime: 305,
  adjtimex: 159,
  syslog: 103,
  quotactl: 179,
  quotactl_fd: 443,
  lookup_dcookie: 212,
  iopl: 172,
  ioperm: 173,
  vhangup: 153,
  uselib: 134,
  fanotify_init: 300,
  nfsservctl: 180,
  create_module: 174,
  get_kernel_syms: 177,
  query_module: 178,
};

const ARM64: Readonly<Record<string, number>> = {
  ioctl: 29,
  clone: 220,
  clone3: 435,

  ptrace: 117,
  process_vm_readv: 270,
  process_vm_writev: 271,
  pidfd_getfd: 438,
  kcmp: 272,
  mount: 40,
  umount2: 39,
  pivot_root: 41,
  chroot: 51,
  move_mount: 429,
  open_tree: 428,
  fsopen: 430,
  fsconfig: 431,
  fsmount: 432,
  fspick: 433,
  mount_setattr: 442,
  unshare: 97,
  setns: 268,
  keyctl: 219,
  add_key: 217,
  request_key: 218,
  bpf: 280,
  perf_event_open: 241,
  kexec_load: 104,
  kexec_file_load: 294,
  init_module: 105,
  finit_module: 273,
  delete_module: 106,
  userfaultfd: 282,
  io_uring_setup: 425,
  io_uring_enter: 426,
  io_uring_register: 427,
  open_by_handle_at: 265,
  name_to_handle_at: 264,
  acct: 89,
  swapon: 224,
  swapoff: 225,
  reboot: 142,
  settimeofday: 170,
  clock_settime: 112,
  clock_adjtime: 266,
  adjtimex: 171,
  syslog: 116,
  quotactl: 60,
  quotactl_fd: 443,
  lookup_dcookie: 18,
  vhangup: 58,
  fanotify_init: 262,
  // The generic table still reserves 42 for nfsservctl (wired to
  // sys_ni_syscall); denying it costs nothing and keeps the tables symmetric.
  nfsservctl: 42,
  // Not present in the generic table (so skipped on arm64):
  // iopl, ioperm, uselib, create_module, get_kernel_syms, query_module.
};

/** Syscall name → number, per architecture. */
export const SYSCALL_NUMBERS: Readonly<Record<SeccompArch, Readonly<Record<string, number>>>> = {
  x64: X64,
  arm64: ARM64,
};
