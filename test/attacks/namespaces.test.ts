/**
 * Attacks on the namespaces a session lives in: identity and capabilities, nested
 * user namespaces, the host's processes, hostname, network (host loopback, abstract
 * unix sockets), SysV IPC, and terminal injection (TIOCSTI) through a real PTY.
 * Every "unreachable" check has a host-side control showing the target accepts.
 */
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import { pidNamespaceOf, processesInNamespace } from '../helpers/sandbox';
import { fakeSecret, hostConnect, HostScratch, sharedSession, waitFor } from '../helpers/attack';

const scratch = new HostScratch();
const shared = sharedSession(() => ({}));
const sh = (script: string) => shared.get().run(script);
before(() => shared.start());
after(async () => {
  await shared.close();
  await scratch.cleanup();
});

describe('identity and privileges', () => {
  test('the sandbox user is not root, holds no capabilities, and has no_new_privs and seccomp set', async () => {
    const r = await sh('id -u; grep -E "^(Uid|Cap(Inh|Prm|Eff|Bnd|Amb)|NoNewPrivs|Seccomp):" /proc/self/status');
    const [uid, ...status] = r.stdout.trim().split('\n');
    assert.notEqual(uid, '0');
    const fields = Object.fromEntries(status.map((l) => l.split(/:\s+/)));
    assert.ok(!fields.Uid.split(/\s+/).includes('0'), `no uid is 0: ${fields.Uid}`);
    for (const cap of ['CapInh', 'CapPrm', 'CapEff', 'CapBnd', 'CapAmb']) assert.equal(fields[cap], '0000000000000000', cap);
    assert.equal(fields.NoNewPrivs, '1');
    assert.equal(fields.Seccomp, '2', 'a seccomp filter is installed');
  });

  test('a new user namespace cannot be created (unshare -r, unshare --user)', async () => {
    const r = await sh('unshare -r id -u; echo "r=$?"; unshare --user --map-root-user true; echo "u=$?"; unshare --user true; echo "plain=$?"');
    assert.equal(r.stdout, 'r=1\nu=1\nplain=1\n');
    assert.match(r.stderr, /unshare: unshare failed: Operation not permitted/);
    assert.doesNotMatch(r.stdout, /^0$/m);
  });
});

describe('processes and hostname', () => {
  test('host processes are invisible: ps shows only the sandbox, the runner\'s own pid does not exist inside', async () => {
    const bg = await shared.get().session.spawn({ argv: ['sleep', '30'] });
    try {
      const r = await sh(`ps -eo pid=,comm=; kill -0 ${process.pid} 2>&1; echo "kill=$?"`);
      const rows = r.stdout.trim().split('\n').filter((l) => /^\s*\d+ /.test(l)).map((l) => l.trim().split(/\s+/));
      assert.deepEqual(rows.find(([pid]) => pid === '1'), ['1', 'agent']);
      const comms = rows.map(([, c]) => c).sort();
      const sandboxed = new Set(['agent', 'sleep', 'sh', 'ps']);
      assert.deepEqual(comms.filter((c) => !sandboxed.has(c)), [], `only sandbox processes: ${comms.join(', ')}`);
      assert.ok(!comms.includes('node') && !comms.includes('bwrap'));
      if (process.pid > 10) assert.match(r.stdout, /kill: No such process\n+kill=1\n/);
      // Cross-check from the host: the sandbox's PID namespace holds only the agent and its children.
      const ns = pidNamespaceOf(shared.get().session.sandbox.agentHostPid!);
      assert.notEqual(ns, fs.readlinkSync('/proc/self/ns/pid'), 'the sandbox has its own PID namespace');
      assert.ok(processesInNamespace(ns).length >= 2 && processesInNamespace(ns).length <= 4);
    } finally {
      bg.signal('SIGKILL');
      await bg.exited;
    }
  });

  test('the hostname inside is "airlock", not the host\'s', async () => {
    const r = await sh('hostname; cat /proc/sys/kernel/hostname; uname -n; cat /etc/hostname');
    assert.equal(r.stdout, 'airlock\nairlock\nairlock\nairlock\n');
    if (os.hostname() !== 'airlock') assert.ok(!r.stdout.includes(os.hostname()));
  });
});

describe('network', () => {
  const CONNECT = String.raw`
import socket, sys
kind, where = sys.argv[1], sys.argv[2]
s = socket.socket(socket.AF_INET if kind == 'tcp' else socket.AF_UNIX)
s.settimeout(5)
try:
    s.connect(('127.0.0.1', int(where)) if kind == 'tcp' else '\0' + where)
    print('CONNECTED', s.recv(100))
except OSError as e:
    print(type(e).__name__)
`;

  test('only the loopback interface exists', async () => {
    const r = await sh("tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' '; ip -o link | cut -d: -f2 | tr -d ' '");
    assert.equal(r.stdout, 'lo\nlo\n');
  });

  test('a TCP server on the host loopback accepts on the host but is refused from inside (the sandbox has its own loopback)', async () => {
    const server = await scratch.listen({ port: 0 });
    const port = (server.address() as net.AddressInfo).port;
    assert.equal(await hostConnect({ host: '127.0.0.1', port }), 'hello from the host\n', 'control');
    const r = await shared.get().run(['python3', '-c', CONNECT, 'tcp', String(port)]);
    assert.equal(r.stdout, 'ConnectionRefusedError\n', r.stderr);
  });

  test('a host abstract unix socket accepts on the host but is refused from inside', async () => {
    const name = `airlock-test-${fakeSecret('abs')}`;
    await scratch.listen({ path: `\0${name}` });
    assert.equal(await hostConnect({ path: `\0${name}` }), 'hello from the host\n', 'control');
    const r = await shared.get().run(['python3', '-c', CONNECT, 'unix', name]);
    assert.equal(r.stdout, 'ConnectionRefusedError\n', r.stderr);
  });
});

describe('IPC and the terminal', () => {
  test('a SysV shared memory segment of the host is not visible inside', async (t) => {
    if (spawnSync('ipcmk', ['--help']).error) {
      t.skip('ipcmk (util-linux) is not installed on this host');
      return;
    }
    const made = execFileSync('ipcmk', ['-M', '1024'], { encoding: 'utf8' });
    const id = /Shared memory id: (\d+)/.exec(made)?.[1];
    assert.ok(id, made);
    try {
      const host = execFileSync('ipcs', ['-m'], { encoding: 'utf8' });
      assert.match(host, new RegExp(`^\\S+\\s+${id}\\s`, 'm'), 'control: the host lists the segment');
      const r = await sh(`ipcs -m; ipcs -m -i ${id} 2>&1; true`);
      assert.doesNotMatch(r.stdout, new RegExp(`^\\S+\\s+${id}\\s`, 'm'));
      assert.match(r.stdout, /ipcs: id \d+ not found|Invalid argument/);
    } finally {
      execFileSync('ipcrm', ['-m', id]);
    }
  });

  const TIOCSTI = String.raw`
import fcntl, termios
try:
    fcntl.ioctl(0, termios.TIOCSTI, b'#')
    print('TIOCSTI-OK')
except OSError as e:
    print('TIOCSTI-ERR', e.errno)
`;

  test('ioctl(TIOCSTI) on the session terminal fails with EPERM (a real PTY session)', async () => {
    const r = await shared.get().run(['python3', '-c', TIOCSTI], { pty: true, cols: 80, rows: 24 });
    assert.equal(r.code, 0);
    assert.match(r.stdout, /TIOCSTI-ERR 1\r?\n/);
    assert.doesNotMatch(r.stdout, /TIOCSTI-OK/);
  });

  test('the same TIOCSTI works in a host PTY where the kernel allows it (control)', async (t) => {
    const legacy = fs.existsSync('/proc/sys/dev/tty/legacy_tiocsti') ? fs.readFileSync('/proc/sys/dev/tty/legacy_tiocsti', 'utf8').trim() : '1';
    if (legacy !== '1' && process.getuid?.() !== 0) {
      t.skip('the kernel refuses TIOCSTI to ordinary users here (dev.tty.legacy_tiocsti=0)');
      return;
    }
    const pty = (await import('@lydell/node-pty')) as typeof import('@lydell/node-pty');
    const p = pty.spawn('/usr/bin/python3', ['-c', TIOCSTI], { cols: 80, rows: 24, env: { PATH: '/usr/bin:/bin' } });
    let out = '';
    p.onData((d) => (out += d));
    const exited = new Promise<void>((r) => p.onExit(() => r()));
    const done = await waitFor(() => /TIOCSTI-(OK|ERR)/.test(out), 10_000);
    await Promise.race([exited, new Promise((r) => setTimeout(r, 2000))]);
    assert.ok(done, 'the host probe reported');
    assert.match(out, /TIOCSTI-OK/);
  });
});
