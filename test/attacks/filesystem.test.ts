/**
 * Attacks on the host filesystem as a sandbox sees it: no home directory, no host
 * /tmp or /run (so no host unix sockets), a read-only system, no secret system files,
 * a private /tmp, the workspace at its own path and writable, and a /proc that shows
 * only the sandbox. Each "absent" check has a host-side control showing the thing is
 * really there to steal.
 */
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fakeSecret, hostConnect, HostScratch, hostRead, sharedSession } from '../helpers/attack';
import { IS_ROOT } from '../helpers/sandbox';

const scratch = new HostScratch();
const secret = fakeSecret('tmp-canary');
let canaryFile = '';
let tmpSock = '';
let sshSock = '';
let runSock: string | null = null;

const shared = sharedSession(() => ({ callerEnv: { ...process.env, SSH_AUTH_SOCK: sshSock } }));

before(async () => {
  const dir = scratch.dir('airlock-canary-');
  canaryFile = path.join(dir, 'secret.txt');
  fs.writeFileSync(canaryFile, secret, { mode: 0o644 });
  tmpSock = path.join(dir, 'agent.sock');
  await scratch.listen({ path: tmpSock });
  // ssh-agent's own layout: /tmp/ssh-XXXXXX/agent.<pid>, exported as SSH_AUTH_SOCK.
  sshSock = path.join(scratch.dir('ssh-'), `agent.${process.pid}`);
  await scratch.listen({ path: sshSock });
  try {
    runSock = scratch.file(`/run/airlock-test-${fakeSecret('s')}.sock`);
    await scratch.listen({ path: runSock });
  } catch {
    runSock = null; // an ordinary user cannot write /run: the `ls /run` check below still covers it
  }
  await shared.start();
});
after(async () => {
  await shared.close();
  await scratch.cleanup();
});

/** `sh -c SCRIPT` in the shared session. */
const sh = (script: string) => shared.get().run(script);

describe('host directories are not visible', () => {
  test('no host home is visible: /root and every /home/<user> are absent, /home holds only the empty, writable sandbox home', async () => {
    const hostUsers = fs.readdirSync('/home').filter((u) => u !== 'airlock');
    const checks = ['/root', ...hostUsers.map((u) => `/home/${u}`)].map((p) => `test -e '${p}' && echo "VISIBLE ${p}"`).join('; ');
    const r = await sh(`${checks}; echo "home=[$(ls -A /home)]"; echo "mine=[$(ls -A ~)]"; touch ~/.written && echo wrote-home; cd ~ && pwd`);
    assert.doesNotMatch(r.stdout, /VISIBLE/);
    assert.match(r.stdout, /home=\[airlock\]/);
    assert.match(r.stdout, /mine=\[\]/);
    assert.match(r.stdout, /wrote-home\n\/home\/airlock\n/);
  });

  test('a canary file in the host /tmp is not visible (and is readable on the host)', async () => {
    assert.equal(hostRead(canaryFile), secret, 'control: the canary exists on the host');
    const r = await sh(`cat '${canaryFile}'; echo "rc=$?"; ls '${path.dirname(canaryFile)}'`);
    assert.match(r.stdout, /rc=1/);
    assert.match(r.stderr, new RegExp(`cat: ${canaryFile}: No such file or directory`));
    assert.ok(!r.stdout.includes(secret) && !r.stderr.includes(secret));
  });

  test('the host /run is not visible: /run holds only the read-only runtime files (agent, generated /etc, mask sources)', async () => {
    const r = await sh('echo "run=[$(ls -A /run)]"; echo "airlock=[$(ls -A /run/airlock | tr \'\\n\' \' \')]"; echo "etc=[$(ls -A /run/airlock/etc | tr \'\\n\' \' \')]"; echo "emptyd=[$(ls -A /run/airlock/empty.d)]"; echo "secrets=[$(ls -A /run/airlock/secrets)] $(stat -f -c %T /run/airlock/secrets)"; touch /run/airlock/x 2>&1; echo "var=[$(ls -A /var)]"; test -e /var/run/docker.sock || echo no-docker-sock');
    assert.match(r.stdout, /run=\[airlock\]/);
    assert.match(r.stdout, /airlock=\[agent empty empty\.d etc secrets shell \]/);
    // The mount point of the sandbox's own secrets tmpfs: empty until a file secret is granted.
    assert.match(r.stdout, /secrets=\[\] tmpfs/);
    assert.match(r.stdout, /etc=\[group hostname hosts passwd \]/);
    assert.match(r.stdout, /emptyd=\[\]/);
    assert.match(r.stdout, /touch: cannot touch '\/run\/airlock\/x': Read-only file system/);
    assert.match(r.stdout, /var=\[tmp\]/);
    assert.match(r.stdout, /no-docker-sock/);
  });
});

describe('host unix sockets are unreachable', () => {
  const CONNECT = String.raw`
import socket, sys
for p in sys.argv[1:]:
    s = socket.socket(socket.AF_UNIX)
    try:
        s.connect(p); print('CONNECTED', p)
    except OSError as e:
        print('REFUSED', type(e).__name__, p)
`;
  test('sockets in the host /tmp, /run and the ssh-agent socket accept on the host (control)', async () => {
    for (const p of [tmpSock, sshSock, ...(runSock ? [runSock] : [])]) {
      assert.equal(await hostConnect({ path: p }), 'hello from the host\n', p);
    }
  });

  test('a sandboxed process cannot connect to host unix sockets by path, nor learn SSH_AUTH_SOCK', async () => {
    const socks = [tmpSock, sshSock, ...(runSock ? [runSock] : [])];
    const r = await shared.get().run(['python3', '-c', CONNECT, ...socks]);
    assert.equal(r.code, 0, r.stderr);
    assert.doesNotMatch(r.stdout, /CONNECTED/);
    for (const p of socks) assert.ok(r.stdout.includes(`REFUSED FileNotFoundError ${p}`), `${p} must not exist inside`);
    const env = await shared.get().run(['sh', '-c', 'echo "sock=[${SSH_AUTH_SOCK:-}]"']);
    assert.match(env.stdout, /sock=\[\]/);
  });
});

describe('the system is read-only and holds no secrets', () => {
  test('/usr, /etc and / are read-only: creating, truncating and linking fail with EROFS', async () => {
    // Creating or truncating asks for write access to the mount before any permission
    // check, so EROFS is what everyone gets. Appending to an existing host file checks
    // permissions first: as root the sandbox user maps to the host's root and owns the
    // file, so only the read-only mount refuses (EROFS); an ordinary user gets EACCES.
    const hostOwned = IS_ROOT ? 'Read-only file system' : 'Permission denied';
    const r = await sh(
      'for p in /usr/x /usr/bin/x /etc/x /x; do touch "$p"; done; mkdir /newdir; echo hacked >> /etc/profile; ' +
        'echo hacked >> /etc/passwd; echo evil > /usr/bin/env; ln -s /x /etc/evil; true',
    );
    for (const p of ['/usr/x', '/usr/bin/x', '/etc/x', '/x']) assert.match(r.stderr, new RegExp(`touch: cannot touch '${p}': Read-only file system`));
    assert.match(r.stderr, /mkdir: cannot create directory .\/newdir.: Read-only file system/);
    assert.match(r.stderr, new RegExp(`/etc/profile: ${hostOwned}`));
    assert.match(r.stderr, /\/etc\/passwd: (Permission denied|Read-only file system)/); // generated, mode 0444
    assert.match(r.stderr, /\/usr\/bin\/env: Read-only file system/);
    assert.match(r.stderr, /ln: failed to create symbolic link .\/etc\/evil.: Read-only file system/);
    const after = await sh('grep -c hacked /etc/profile /etc/passwd; test -e /x || echo no-x; test -e /usr/x || echo no-usr-x');
    assert.equal(after.stdout, '/etc/profile:0\n/etc/passwd:0\nno-x\nno-usr-x\n');
  });

  test('/dev, /var and /run are read-only too (their tmpfs has no size limit), /dev/shm is a bounded tmpfs', async () => {
    const r = await sh('for d in /dev /var /run /run/airlock; do touch $d/x; done; echo x > /dev/shm/ok && echo shm-ok; df -k /dev/shm | tail -1');
    for (const d of ['/dev', '/var', '/run', '/run/airlock']) {
      assert.match(r.stderr, new RegExp(`touch: cannot touch '${d}/x': Read-only file system`));
    }
    assert.match(r.stdout, /shm-ok/);
    const sizeKiB = Number(/^\S+\s+(\d+)/m.exec(r.stdout.split('\n').at(-2) ?? '')?.[1]);
    assert.equal(sizeKiB, 1024 * 1024, '/dev/shm is limited to limits.tmpfsMiB (1024 MiB by default)');
  });

  test('/etc/shadow, /etc/gshadow, /etc/ssh, /etc/ssl/private and /etc/sudoers are absent', async () => {
    const secretFiles = ['/etc/shadow', '/etc/gshadow', '/etc/ssh', '/etc/ssl/private', '/etc/sudoers', '/etc/sudoers.d'];
    // Control: the attack has targets on this host.
    assert.ok(fs.existsSync('/etc/shadow'), 'control: the host has /etc/shadow');
    const r = await sh(secretFiles.map((p) => `test -e ${p} && echo "PRESENT ${p}"`).join('; ') + '; echo "ssl=[$(ls -A /etc/ssl | tr "\\n" " ")]"');
    assert.doesNotMatch(r.stdout, /PRESENT/);
    assert.match(r.stdout, /ssl=\[(certs openssl\.cnf|certs|openssl\.cnf) ?\]/);
  });
});

describe('the workspace and the private /tmp', () => {
  test('the workspace is at the same absolute path inside and writes reach the host', async () => {
    const { workspace } = shared.get();
    const content = fakeSecret('written');
    const r = await sh(`pwd; printf %s '${content}' > from-inside.txt && echo ok`);
    assert.equal(r.stdout, `${workspace}\nok\n`);
    assert.equal(hostRead(path.join(workspace, 'from-inside.txt')), content);
  });

  test('/tmp inside is private: empty at start (but for the path to the workspace), and files written there never reach the host', async () => {
    const { workspace } = shared.get();
    // The workspace itself lives under the host /tmp in these tests: only its path leads through.
    const expected = workspace.startsWith('/tmp/') ? workspace.split('/')[2] : '';
    const name = `inside-${fakeSecret('t')}`;
    const r = await sh(`echo "tmp=[$(ls -A /tmp)]"; echo x > /tmp/${name} && echo wrote; ls /tmp/${name}`);
    assert.match(r.stdout, new RegExp(`tmp=\\[${expected}\\]\nwrote\n/tmp/${name}\n`));
    assert.equal(fs.existsSync(path.join('/tmp', name)), false, 'a file written in /tmp inside is not on the host');
  });

  test('/proc shows only the sandbox processes, with the agent as PID 1', async () => {
    const r = await sh('for d in /proc/[0-9]*; do printf "%s %s\\n" "${d#/proc/}" "$(cat $d/comm 2>/dev/null)"; done; echo "self=$$"');
    const lines = r.stdout.trim().split('\n').filter((l) => !l.startsWith('self='));
    const comms = new Map(lines.map((l) => [Number(l.split(' ')[0]), l.split(' ')[1]]));
    assert.equal(comms.get(1), 'agent', 'PID 1 is the agent');
    assert.ok(comms.size <= 4, `only the agent, this shell and its children are visible (saw ${[...comms.values()].join(', ')})`);
    assert.ok(![...comms.values()].some((c) => c === 'node' || c === 'bwrap'), 'no host process is visible');
    // The test runner's own pid means nothing inside (only a handful of small pids exist).
    if (process.pid > 10) {
      const me = await sh(`test -e /proc/${process.pid} && echo VISIBLE || echo absent`);
      assert.equal(me.stdout, 'absent\n');
    }
  });
});
