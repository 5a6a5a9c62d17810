/**
 * Attack tests for the seccomp filter, run under real bubblewrap.
 *
 * A Python probe runs inside the sandbox and tries each denied syscall (with
 * harmless arguments) plus a few targeted attacks, then prints a JSON report.
 * The same probe is also run WITHOUT the filter, to prove that the filter is
 * what blocks (i.e. that these tests can fail).
 *
 * Works as root and as an unprivileged user: temp files are world-readable and
 * nothing outside os.tmpdir() is written.
 */
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import { buildSeccompFilter, SECCOMP_RULES, SYSCALL_NUMBERS, type SeccompArch } from '../../runtime/drivers/bwrap/seccomp';

const BWRAP = '/usr/bin/bwrap';
const PYTHON = '/usr/bin/python3';
const EPERM = 1;
const ENOSYS = 38;
const SIGSYS = 31;
const SIGSEGV = 11;

const arch: SeccompArch | undefined = process.arch === 'x64' || process.arch === 'arm64' ? process.arch : undefined;
const skip =
  process.platform !== 'linux' ? 'Linux only'
  : arch === undefined ? `no seccomp filter for ${process.arch}`
  : !fs.existsSync(BWRAP) ? `${BWRAP} not installed`
  : !fs.existsSync(PYTHON) ? `${PYTHON} not installed`
  : false;

/** Harmless arguments per syscall (default: all zeros). */
function probeArgs(name: string): number[] {
  switch (name) {
    // ptrace(0, ...) is PTRACE_TRACEME, which would succeed without the filter
    // and leave the probe traced; PEEKDATA on a non-existent pid is inert (ESRCH).
    case 'ptrace': return [2, 0x3fffffff, 0, 0];
    default: return [0, 0, 0, 0, 0, 0];
  }
}

const PROBE = String.raw`
import ctypes, json, os, sys, platform, threading, subprocess, mmap
cfg = json.loads(sys.argv[1])
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long

def sc(nr, *args):
    """Raw syscall; returns (ret, errno) with errno 0 on success."""
    ctypes.set_errno(0)
    r = libc.syscall(ctypes.c_long(nr), *[ctypes.c_long(a) for a in args])
    return (r, ctypes.get_errno() if r == -1 else 0)

out = {'syscalls': {}}

# 1. Every deny-list syscall, with harmless arguments.
for nr, args in cfg['probes']:
    out['syscalls'][str(nr)] = sc(nr, *args)[1]

# 2. Ordinary process and thread creation must keep working.
pid = os.fork()
if pid == 0:
    os._exit(7)
_, st = os.waitpid(pid, 0)
out['fork_exit'] = os.WEXITSTATUS(st) if os.WIFEXITED(st) else -1
box = []
t = threading.Thread(target=lambda: box.append(1)); t.start(); t.join()
out['thread_ok'] = box == [1]
out['subprocess_rc'] = subprocess.run(['/usr/bin/true']).returncode

# 3. Namespace creation.
CLONE_NEWUSER, SIGCHLD = 0x10000000, 17
out['unshare_newuser'] = sc(cfg['nr']['unshare'], CLONE_NEWUSER)[1]
r, e = sc(cfg['nr']['clone'], CLONE_NEWUSER | SIGCHLD, 0, 0, 0, 0)
if r == 0:
    os._exit(0)          # we are an escaped child: leave at once
if r > 0:
    os.waitpid(r, 0)
out['clone_newuser'] = e
out['clone3'] = sc(cfg['nr']['clone3'], 0, 0)[1]

# 4. Terminal input injection on a private pty made our controlling terminal.
TIOCSTI, TIOCGWINSZ, TIOCLINUX, TIOCSCTTY = 0x5412, 0x5413, 0x541C, 0x540E
m, s = os.openpty()
rfd, wfd = os.pipe()
pid = os.fork()
if pid == 0:
    res = {}
    try:
        os.close(rfd)
        os.setsid()
        res['sctty'] = sc(cfg['nr']['ioctl'], s, TIOCSCTTY, 0)[1]
        ch = ctypes.c_char(b'x')
        res['tiocsti'] = sc(cfg['nr']['ioctl'], s, TIOCSTI, ctypes.addressof(ch))[1]
        # The kernel truncates cmd to 32 bits: junk in the upper half must not help.
        res['tiocsti_hi'] = sc(cfg['nr']['ioctl'], s, (0x7eadbeef << 32) | TIOCSTI, ctypes.addressof(ch))[1]
        res['tioclinux'] = sc(cfg['nr']['ioctl'], s, TIOCLINUX, ctypes.addressof(ch))[1]
        ws = ctypes.create_string_buffer(8)
        res['tiocgwinsz'] = sc(cfg['nr']['ioctl'], s, TIOCGWINSZ, ctypes.addressof(ws))[1]
    except Exception as ex:
        res['error'] = repr(ex)
    os.write(wfd, json.dumps(res).encode())
    os._exit(0)
os.close(wfd)
data = b''
while True:
    chunk = os.read(rfd, 4096)
    if not chunk:
        break
    data += chunk
os.waitpid(pid, 0)
out['tty'] = json.loads(data or b'{}')

# 5. ABI confusion (x86_64 only): x32 numbers and i386 int 0x80.
if platform.machine() == 'x86_64':
    out['x32_getpid'] = sc(0x40000000 + 39)[1]
    pid = os.fork()
    if pid == 0:
        code = b'\xb8\x14\x00\x00\x00\xcd\x80\xc3'   # mov eax, 20 (i386 getpid); int 0x80; ret
        mem = mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
        mem.write(code)
        fn = ctypes.CFUNCTYPE(ctypes.c_int)(ctypes.addressof(ctypes.c_char.from_buffer(mem)))
        os._exit(0 if fn() > 0 else 1)
    _, st = os.waitpid(pid, 0)
    out['int80'] = {'signal': os.WTERMSIG(st) if os.WIFSIGNALED(st) else None,
                    'exit': os.WEXITSTATUS(st) if os.WIFEXITED(st) else None}

print(json.dumps(out))
`;

interface ProbeReport {
  syscalls: Record<string, number>;
  fork_exit: number;
  thread_ok: boolean;
  subprocess_rc: number;
  unshare_newuser: number;
  clone_newuser: number;
  clone3: number;
  tty: { sctty?: number; tiocsti?: number; tiocsti_hi?: number; tioclinux?: number; tiocgwinsz?: number; error?: string };
  x32_getpid?: number;
  int80?: { signal: number | null; exit: number | null };
}

const bwrapBase = [
  '--unshare-all', '--unshare-user', '--disable-userns', '--cap-drop', 'ALL', '--die-with-parent',
  '--ro-bind', '/usr', '/usr',
  '--symlink', 'usr/lib', '/lib', '--symlink', 'usr/lib64', '/lib64', '--symlink', 'usr/bin', '/bin',
  '--proc', '/proc', '--dev', '/dev',
];

function runProbe(filterFile: string | undefined): Promise<ProbeReport> {
  const nrs = SYSCALL_NUMBERS[arch!];
  const probes = SECCOMP_RULES.filter((r) => nrs[r.syscall] !== undefined).map((r) => [nrs[r.syscall], probeArgs(r.syscall)]);
  const cfg = JSON.stringify({ probes, nr: { unshare: nrs.unshare, clone: nrs.clone, clone3: nrs.clone3, ioctl: nrs.ioctl } });
  const args = [...bwrapBase, ...(filterFile ? ['--seccomp', '3'] : []), '--', PYTHON, '-c', PROBE, cfg];

  return new Promise((resolve, reject) => {
    const fd = filterFile ? fs.openSync(filterFile, 'r') : undefined;
    // detached: the sandbox gets its own session, so nothing in it can reach
    // the terminal the tests were started from.
    const child = spawn(BWRAP, args, {
      stdio: ['ignore', 'pipe', 'pipe', ...(fd === undefined ? [] : [fd])],
      env: { PATH: '/usr/bin:/bin', LANG: 'C.UTF-8' },
      detached: true,
    });
    if (fd !== undefined) fs.closeSync(fd);
    let stdout = '';
    let stderr = '';
    child.stdout!.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
    child.on('error', (e) => { clearTimeout(timer); reject(e); });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      if (code !== 0) {
        reject(new Error(`bwrap probe failed (code ${code}, signal ${signal}):\n${stderr}\n${stdout}`));
        return;
      }
      try {
        resolve(JSON.parse(stdout.trim().split('\n').pop()!) as ProbeReport);
      } catch (e) {
        reject(new Error(`unparsable probe output: ${String(e)}\n${stdout}\n${stderr}`));
      }
    });
  });
}

describe('seccomp filter under bubblewrap', { skip }, () => {
  let dir = '';
  let filtered!: ProbeReport;
  let unfiltered!: ProbeReport;

  before(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'airlock-seccomp-'));
    fs.chmodSync(dir, 0o755);
    const file = path.join(dir, 'filter.bpf');
    fs.writeFileSync(file, buildSeccompFilter(arch), { mode: 0o644 });
    fs.chmodSync(file, 0o644);
    [filtered, unfiltered] = await Promise.all([runProbe(file), runProbe(undefined)]);
  });

  after(() => {
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  const nrs = arch ? SYSCALL_NUMBERS[arch] : {};
  for (const rule of SECCOMP_RULES) {
    const nr = nrs[rule.syscall];
    if (nr === undefined || rule.action !== 'EPERM') continue;
    test(`a sandboxed process cannot ${rule.syscall} (EPERM)`, () => {
      assert.equal(filtered.syscalls[String(nr)], EPERM, `${rule.syscall} (${nr}) → errno ${filtered.syscalls[String(nr)]}`);
    });
  }

  test('a sandboxed process sees clone3 as unimplemented (ENOSYS), so libc falls back to clone', () => {
    assert.equal(filtered.syscalls[String(nrs.clone3)], ENOSYS);
    assert.equal(filtered.clone3, ENOSYS);
  });

  test('a sandboxed process can still fork, start threads and run subprocesses', () => {
    assert.equal(filtered.fork_exit, 7);
    assert.equal(filtered.thread_ok, true);
    assert.equal(filtered.subprocess_rc, 0);
  });

  test('a sandboxed process cannot create a user namespace with unshare', () => {
    assert.equal(filtered.unshare_newuser, EPERM);
  });

  test('a sandboxed process cannot create a user namespace with clone flags', () => {
    assert.equal(filtered.clone_newuser, EPERM);
  });

  test('a sandboxed process cannot inject terminal input with TIOCSTI', () => {
    assert.equal(filtered.tty.error, undefined);
    assert.equal(filtered.tty.sctty, 0, 'the pty should have become the controlling terminal');
    assert.equal(filtered.tty.tiocsti, EPERM);
    assert.equal(filtered.tty.tiocsti_hi, EPERM, 'junk in the upper 32 bits of cmd must not bypass the check');
    assert.equal(filtered.tty.tioclinux, EPERM);
  });

  test('a sandboxed process can still query its terminal size (TIOCGWINSZ)', () => {
    assert.equal(filtered.tty.tiocgwinsz, 0);
  });

  test('a sandboxed process cannot use x32-ABI syscall numbers', { skip: arch !== 'x64' && 'x86_64 only' }, () => {
    assert.equal(filtered.x32_getpid, EPERM);
  });

  test('a sandboxed process is killed (SIGSYS) for making i386 int 0x80 syscalls', { skip: arch !== 'x64' && 'x86_64 only' }, (t) => {
    // A kernel built without IA32 emulation (or booted with ia32_emulation=0) has no
    // i386 syscall path at all: int 0x80 is a general-protection fault (SIGSEGV) with or
    // without the filter. Then the exact outcome is that SIGSEGV, and nothing ran.
    if (unfiltered.int80?.signal === SIGSEGV) {
      t.diagnostic('this kernel has no i386 syscall emulation: int 0x80 faults (SIGSEGV) before any filter');
      assert.deepEqual(filtered.int80, { signal: SIGSEGV, exit: null });
      return;
    }
    assert.deepEqual(filtered.int80, { signal: SIGSYS, exit: null });
  });

  test('without the filter the same probes behave differently (the filter is what blocks)', (t) => {
    assert.equal(unfiltered.fork_exit, 7);
    const differs: string[] = [];
    if (unfiltered.syscalls[String(nrs.keyctl)] !== EPERM) differs.push('keyctl');
    if (unfiltered.tty.tiocsti !== EPERM) differs.push('ioctl TIOCSTI');
    if (unfiltered.clone_newuser !== EPERM) differs.push('clone(CLONE_NEWUSER)');
    if (unfiltered.clone3 !== ENOSYS) differs.push('clone3');
    assert.ok(
      differs.includes('keyctl') || differs.includes('ioctl TIOCSTI'),
      `keyctl and TIOCSTI were already refused without the filter: ${JSON.stringify(unfiltered)}`,
    );
    // Report which deny-list entries the kernel/bwrap already refused on their own.
    const already = SECCOMP_RULES.filter((r) => nrs[r.syscall] !== undefined && unfiltered.syscalls[String(nrs[r.syscall])] === EPERM)
      .map((r) => r.syscall);
    const other = SECCOMP_RULES.filter((r) => nrs[r.syscall] !== undefined && unfiltered.syscalls[String(nrs[r.syscall])] !== EPERM)
      .map((r) => `${r.syscall}=${unfiltered.syscalls[String(nrs[r.syscall])]}`);
    t.diagnostic(`differs without filter: ${differs.join(', ')}`);
    t.diagnostic(`already EPERM without filter: ${already.join(' ')}`);
    t.diagnostic(`without filter (errno): ${other.join(' ')}`);
    t.diagnostic(`without filter: tty=${JSON.stringify(unfiltered.tty)} x32=${unfiltered.x32_getpid} int80=${JSON.stringify(unfiltered.int80)} unshare=${unfiltered.unshare_newuser} clone_newuser=${unfiltered.clone_newuser}`);
  });
});
