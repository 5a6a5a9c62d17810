import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';

import {
  buildSeccompFilter,
  SECCOMP_RULES,
  SYSCALL_NUMBERS,
  type SeccompArch,
} from '../../runtime/drivers/bwrap/seccomp';

// --- constants (independent of the implementation on purpose) ---------------
const RET_KILL_PROCESS = 0x80000000;
const RET_ALLOW = 0x7fff0000;
const RET_ERRNO = 0x00050000;
const EPERM = 1;
const ENOSYS = 38;
const AUDIT_ARCH_X86_64 = 0xc000003e;
const AUDIT_ARCH_AARCH64 = 0xc00000b7;
const AUDIT_ARCH_I386 = 0x40000003;
const AUDIT: Record<SeccompArch, number> = { x64: AUDIT_ARCH_X86_64, arm64: AUDIT_ARCH_AARCH64 };
const TIOCSTI = 0x5412;
const TIOCLINUX = 0x541c;
const TIOCGWINSZ = 0x5413;
const FORK_FLAGS = 0x01200011; // CLONE_CHILD_SETTID | CLONE_CHILD_CLEARTID | SIGCHLD
const CLONE_NEWUSER = 0x10000000;

// Hand-copied from the kernel tables, as a second source for the critical ones.
const NR: Record<SeccompArch, Record<string, number>> = {
  x64: { ioctl: 16, clone: 56, clone3: 435, getpid: 39, ptrace: 101, mount: 165, unshare: 272, bpf: 321, keyctl: 250, io_uring_setup: 425 },
  arm64: { ioctl: 29, clone: 220, clone3: 435, getpid: 172, ptrace: 117, mount: 40, unshare: 97, bpf: 280, keyctl: 219, io_uring_setup: 425 },
};
const X64_ONLY = new Set(['iopl', 'ioperm', 'uselib', 'create_module', 'get_kernel_syms', 'query_module']);
const ARCHES: SeccompArch[] = ['x64', 'arm64'];

// --- a tiny classic-BPF interpreter (the subset seccomp filters use) --------
interface Insn { code: number; jt: number; jf: number; k: number }

function decode(buf: Buffer): Insn[] {
  const out: Insn[] = [];
  for (let o = 0; o < buf.length; o += 8) {
    out.push({ code: buf.readUInt16LE(o), jt: buf.readUInt8(o + 2), jf: buf.readUInt8(o + 3), k: buf.readUInt32LE(o + 4) });
  }
  return out;
}

interface SeccompData { nr: number; arch: number; ip?: bigint; args?: bigint[] }

/** struct seccomp_data, little-endian, 64 bytes. */
function seccompData(d: SeccompData): Buffer {
  const b = Buffer.alloc(64);
  b.writeInt32LE(d.nr, 0);
  b.writeUInt32LE(d.arch >>> 0, 4);
  b.writeBigUInt64LE(d.ip ?? 0n, 8);
  (d.args ?? []).forEach((a, i) => b.writeBigUInt64LE(BigInt.asUintN(64, a), 16 + 8 * i));
  return b;
}

function run(prog: Buffer, d: SeccompData): number {
  const insns = decode(prog);
  const data = seccompData(d);
  let A = 0;
  let X = 0;
  for (let pc = 0, steps = 0; steps < 10_000; steps++) {
    const i = insns[pc];
    if (i === undefined) throw new Error(`fell off the program at pc=${pc}`);
    const cls = i.code & 0x07;
    const op = i.code & 0xf0;
    const src = i.code & 0x08;
    switch (cls) {
      case 0x00: // BPF_LD
        if (i.code !== 0x20) throw new Error(`unsupported LD 0x${i.code.toString(16)}`);
        if (i.k % 4 !== 0 || i.k + 4 > data.length) throw new Error(`bad load offset ${i.k}`);
        A = data.readUInt32LE(i.k);
        pc++;
        break;
      case 0x01: // BPF_LDX (imm only)
        if (i.code !== 0x01) throw new Error(`unsupported LDX 0x${i.code.toString(16)}`);
        X = i.k;
        pc++;
        break;
      case 0x04: { // BPF_ALU with K or X
        const v = src ? X : i.k;
        if (op === 0x50) A = (A & v) >>> 0; // AND
        else if (op === 0x40) A = (A | v) >>> 0; // OR
        else throw new Error(`unsupported ALU 0x${i.code.toString(16)}`);
        pc++;
        break;
      }
      case 0x05: { // BPF_JMP
        if (op === 0x00) { pc += 1 + i.k; break; } // JA
        const v = src ? X : i.k;
        let cond: boolean;
        if (op === 0x10) cond = A === v; // JEQ
        else if (op === 0x20) cond = A > v; // JGT
        else if (op === 0x30) cond = A >= v; // JGE
        else if (op === 0x40) cond = (A & v) !== 0; // JSET
        else throw new Error(`unsupported JMP 0x${i.code.toString(16)}`);
        pc += 1 + (cond ? i.jt : i.jf);
        break;
      }
      case 0x06: // BPF_RET
        if (src) throw new Error('RET A is not used by our filters');
        return i.k >>> 0;
      default:
        throw new Error(`unsupported instruction class ${cls}`);
    }
  }
  throw new Error('program did not terminate');
}

const filters: Record<SeccompArch, Buffer> = { x64: buildSeccompFilter('x64'), arm64: buildSeccompFilter('arm64') };
const call = (arch: SeccompArch, nr: number, args: bigint[] = []): number =>
  run(filters[arch], { nr, arch: AUDIT[arch], ip: 0x401000n, args });

// --- structure -------------------------------------------------------------
describe('seccomp filter structure', () => {
  test('defaults to the running architecture', () => {
    if (process.arch === 'x64' || process.arch === 'arm64') {
      assert.deepEqual(buildSeccompFilter(), filters[process.arch]);
    } else {
      assert.throws(() => buildSeccompFilter(), /unsupported architecture/);
    }
  });

  for (const arch of ARCHES) {
    test(`${arch}: program is a whole number of 8-byte sock_filter instructions within BPF_MAXINSNS`, () => {
      const prog = filters[arch];
      assert.ok(prog.length > 0);
      assert.equal(prog.length % 8, 0);
      assert.ok(prog.length / 8 <= 4096);
    });

    test(`${arch}: the first instructions check seccomp_data.arch and kill on mismatch`, () => {
      const [ld, jeq, kill] = decode(filters[arch]);
      assert.deepEqual(ld, { code: 0x20, jt: 0, jf: 0, k: 4 }); // ld [4] (arch)
      assert.equal(jeq!.code, 0x15); // jeq #AUDIT_ARCH
      assert.equal(jeq!.k, AUDIT[arch]);
      assert.equal(jeq!.jt, 1); // match: skip the kill
      assert.equal(jeq!.jf, 0); // mismatch: fall into the kill
      assert.deepEqual(kill, { code: 0x06, jt: 0, jf: 0, k: RET_KILL_PROCESS });
    });

    test(`${arch}: every jump lands inside the program and the program ends with RET`, () => {
      const insns = decode(filters[arch]);
      insns.forEach((i, pc) => {
        if ((i.code & 0x07) === 0x05) {
          assert.ok(pc + 1 + Math.max(i.jt, i.jf) < insns.length, `jump at ${pc} escapes`);
        }
      });
      assert.equal(insns[insns.length - 1]!.code, 0x06);
    });

    test(`${arch}: every applicable rule's syscall number is matched and answered with its errno`, () => {
      const insns = decode(filters[arch]);
      for (const rule of SECCOMP_RULES) {
        const nr = SYSCALL_NUMBERS[arch][rule.syscall];
        if (arch === 'arm64' && X64_ONLY.has(rule.syscall)) {
          assert.equal(nr, undefined, `${rule.syscall} should not exist on arm64`);
          continue;
        }
        assert.equal(typeof nr, 'number', `${rule.syscall} has no number on ${arch}`);
        const errno = rule.action === 'EPERM' ? EPERM : ENOSYS;
        const at = insns.findIndex((i) => i.code === 0x15 && i.k === nr);
        assert.ok(at >= 0, `no jeq for ${rule.syscall} (${nr}) on ${arch}`);
        assert.deepEqual(insns[at + 1], { code: 0x06, jt: 0, jf: 0, k: RET_ERRNO | errno });
        assert.equal(call(arch, nr!), RET_ERRNO | errno, `${rule.syscall} on ${arch}`);
      }
    });

    test(`${arch}: spot-checked syscall numbers agree with the kernel table`, () => {
      for (const [name, nr] of Object.entries(NR[arch])) {
        if (name === 'getpid') continue;
        assert.equal(SYSCALL_NUMBERS[arch][name], nr, `${arch} ${name}`);
      }
    });
  }

  test('the deny list is documented: one rule per syscall, each with a one-sentence reason', () => {
    const names = SECCOMP_RULES.map((r) => r.syscall);
    assert.equal(new Set(names).size, names.length, 'duplicate rule');
    for (const r of SECCOMP_RULES) {
      assert.ok(r.why.length > 20 && r.why.trim().endsWith('.'), `why for ${r.syscall}`);
      assert.ok(r.action === 'EPERM' || r.action === 'ENOSYS');
    }
    assert.ok(!names.includes('personality'), 'personality stays allowed');
    assert.equal(SECCOMP_RULES.find((r) => r.syscall === 'clone3')?.action, 'ENOSYS');
    for (const must of ['ptrace', 'mount', 'unshare', 'setns', 'keyctl', 'bpf', 'userfaultfd', 'io_uring_setup', 'open_by_handle_at']) {
      assert.ok(names.includes(must), must);
    }
  });

  test('an unsupported architecture is refused with a message naming the supported ones', () => {
    for (const bad of ['ia32', 'arm', 'riscv64', 's390x']) {
      assert.throws(
        () => buildSeccompFilter(bad as SeccompArch),
        (e: unknown) => e instanceof Error && e.message.includes(`'${bad}'`) && /x64/.test(e.message) && /arm64/.test(e.message),
      );
    }
  });

  // Cross-check the whole tables against the installed kernel headers when present.
  const headers: Array<[SeccompArch, string]> = [
    ['x64', '/usr/include/x86_64-linux-gnu/asm/unistd_64.h'],
    ['arm64', '/usr/include/asm-generic/unistd.h'],
  ];
  for (const [arch, file] of headers) {
    test(`${arch}: syscall table matches ${file}`, { skip: !fs.existsSync(file) && `${file} not installed` }, () => {
      const text = fs.readFileSync(file, 'utf8');
      const fromHeader = new Map<string, number>();
      for (const m of text.matchAll(/^#define __NR_(\w+)\s+(\d+)\s*$/gm)) fromHeader.set(m[1]!, Number(m[2]));
      for (const [name, nr] of Object.entries(SYSCALL_NUMBERS[arch])) {
        assert.equal(fromHeader.get(name), nr, `${arch} ${name}`);
      }
      for (const x of X64_ONLY) {
        if (arch === 'arm64') assert.equal(fromHeader.get(x), undefined, `${x} unexpectedly in the generic table`);
      }
    });
  }
});

// --- behaviour (interpreted) ------------------------------------------------
describe('seccomp filter behaviour (BPF interpreter)', () => {
  for (const arch of ARCHES) {
    const n = NR[arch];
    test(`${arch}: a denied syscall returns ERRNO|EPERM`, () => {
      assert.equal(call(arch, n.ptrace!), RET_ERRNO | EPERM);
      assert.equal(call(arch, n.bpf!), RET_ERRNO | EPERM);
    });
    test(`${arch}: clone3 returns ERRNO|ENOSYS`, () => {
      assert.equal(call(arch, n.clone3!), RET_ERRNO | ENOSYS);
    });
    test(`${arch}: ioctl TIOCSTI and TIOCLINUX are refused, even with junk in the upper 32 bits`, () => {
      assert.equal(call(arch, n.ioctl!, [0n, BigInt(TIOCSTI)]), RET_ERRNO | EPERM);
      assert.equal(call(arch, n.ioctl!, [0n, BigInt(TIOCLINUX)]), RET_ERRNO | EPERM);
      assert.equal(call(arch, n.ioctl!, [3n, 0xdeadbeef00000000n | BigInt(TIOCSTI)]), RET_ERRNO | EPERM);
    });
    test(`${arch}: ioctl TIOCGWINSZ is allowed`, () => {
      assert.equal(call(arch, n.ioctl!, [0n, BigInt(TIOCGWINSZ)]), RET_ALLOW);
      // TIOCSTI's value in another argument slot is irrelevant.
      assert.equal(call(arch, n.ioctl!, [BigInt(TIOCSTI), BigInt(TIOCGWINSZ)]), RET_ALLOW);
    });
    test(`${arch}: clone with CLONE_NEWUSER (or any namespace flag) is refused`, () => {
      assert.equal(call(arch, n.clone!, [BigInt(FORK_FLAGS | CLONE_NEWUSER)]), RET_ERRNO | EPERM);
      for (const f of [0x20000, 0x02000000, 0x04000000, 0x08000000, 0x20000000, 0x40000000, 0x80]) {
        assert.equal(call(arch, n.clone!, [BigInt(FORK_FLAGS | f)]), RET_ERRNO | EPERM, `flag 0x${f.toString(16)}`);
      }
    });
    test(`${arch}: plain clone (fork flags) and thread-style clone are allowed`, () => {
      assert.equal(call(arch, n.clone!, [BigInt(FORK_FLAGS)]), RET_ALLOW);
      assert.equal(call(arch, n.clone!, [0x3d0f00n]), RET_ALLOW); // glibc pthread_create flags
    });
    test(`${arch}: a foreign architecture is killed`, () => {
      const other = arch === 'x64' ? AUDIT_ARCH_AARCH64 : AUDIT_ARCH_X86_64;
      assert.equal(run(filters[arch], { nr: n.getpid!, arch: other }), RET_KILL_PROCESS);
      assert.equal(run(filters[arch], { nr: 20, arch: AUDIT_ARCH_I386 }), RET_KILL_PROCESS);
    });
    test(`${arch}: getpid is allowed`, () => {
      assert.equal(call(arch, n.getpid!), RET_ALLOW);
    });
  }

  test('x64: x32-ABI syscall numbers are refused with EPERM', () => {
    assert.equal(call('x64', 0x40000000 + NR.x64.getpid!), RET_ERRNO | EPERM);
    assert.equal(call('x64', 0x40000000 + NR.x64.ptrace!), RET_ERRNO | EPERM);
    assert.equal(call('x64', 0x40000000 + 512), RET_ERRNO | EPERM); // x32 ioctl
  });

  test('arm64: large syscall numbers are not treated as x32', () => {
    // No x32 ABI on arm64: unknown numbers simply fall through to ALLOW (the kernel returns ENOSYS).
    assert.equal(call('arm64', 0x40000000 + 172), RET_ALLOW);
  });
});
