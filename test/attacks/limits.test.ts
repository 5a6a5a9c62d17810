/**
 * Attacks on the machine's capacity: a bounded fork bomb against the pids limit
 * (cgroup pids.max, or RLIMIT_NPROC where cgroups are unavailable), a file larger
 * than the file size limit (RLIMIT_FSIZE), /tmp, HOME and /dev/shm filled past the
 * tmpfs size, and an allocation past the memory limit (cgroups only).
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { BwrapDriver } from '../../runtime/drivers/bwrap/driver';
import { pidNamespaceOf, processesInNamespace } from '../helpers/sandbox';
import { sessionsClosedAfterEach, waitFor } from '../helpers/attack';

const cgroups = new BwrapDriver().cgroupSupport();

const start = sessionsClosedAfterEach();

const FORK_BOMB = String.raw`
import subprocess, sys
ok, failed, errnos, procs = 0, 0, set(), []
for i in range(200):
    try:
        procs.append(subprocess.Popen(['sleep', '20'])); ok += 1
    except OSError as e:
        failed += 1; errnos.add(e.errno)
print('READY', ok, failed, sorted(errnos), flush=True)
sys.stdin.read()
for p in procs: p.kill()
for p in procs: p.wait()
`;

/** Writes MIB mebibytes to PATH, one at a time, and says how far it got. */
const WRITE = String.raw`
import os, sys
path, mib = sys.argv[1], int(sys.argv[2])
written = 0
try:
    with open(path, 'wb') as f:
        for i in range(mib):
            f.write(b'x' * (1 << 20)); f.flush(); written += 1
    print('WROTE', written)
except OSError as e:
    print('ERR', e.errno, e.strerror, 'after', written)
`;

describe('the pids limit', () => {
  test('a bounded fork bomb (200 children) cannot exceed 64 processes, and the host stays usable', async () => {
    const ts = await start({ policy: { limits: { pids: 64 } } });
    const pidsLimit = ts.session.limits.find((l) => l.name === 'pids');
    assert.equal(pidsLimit?.enforcedBy, cgroups.mode === 'none' ? 'rlimit' : `cgroup-${cgroups.mode}`);
    const ns = pidNamespaceOf(ts.session.sandbox.agentHostPid!);
    const p = await ts.session.spawn({ argv: ['python3', '-c', FORK_BOMB] });
    let out = '';
    p.on('stdout', (d) => (out += d.toString()));
    let stderr = '';
    p.on('stderr', (d) => (stderr += d.toString()));
    let most = 0;
    const ready = await waitFor(() => {
      most = Math.max(most, processesInNamespace(ns).length);
      return out.includes('READY') || !p.running;
    }, 30_000);
    assert.ok(ready && out.includes('READY'), `the probe reported: ${out} ${stderr}`);
    most = Math.max(most, processesInNamespace(ns).length);
    p.end();
    await p.exited;

    const [, ok, failed, errnos] = /READY (\d+) (\d+) \[([\d, ]*)\]/.exec(out)!;
    assert.ok(Number(ok) <= 64 - 2, `at most 64 processes with the agent and python: ${ok} children started`);
    assert.ok(Number(failed) >= 200 - 62, `the rest failed: ${failed}`);
    assert.equal(errnos, '11', 'fork failed with EAGAIN');
    assert.ok(most <= 64, `the host saw at most 64 processes in the sandbox, saw ${most}`);
    assert.ok(Number(ok) >= 10, 'ordinary process creation works below the limit');
    // The host is unaffected: it still starts processes, and a new session still works.
    assert.equal(execFileSync('sh', ['-c', 'echo fine'], { encoding: 'utf8' }), 'fine\n');
    assert.equal((await ts.run('echo still-works')).stdout, 'still-works\n');
  });
});

describe('the pids limit, control', () => {
  test('with the default limit (1024) the same probe starts all 200 children', async () => {
    const ts = await start({});
    const r = await ts.run(['python3', '-c', FORK_BOMB]);
    assert.match(r.stdout, /^READY 200 0 \[\]\n$/, r.stderr);
  });
});

describe('the file size limit', () => {
  test('writing 2 MiB under a 1 MiB file size limit fails with EFBIG, in the workspace and in /tmp', async () => {
    const ts = await start({ policy: { limits: { fileSizeMiB: 1 } } });
    assert.equal(ts.session.limits.find((l) => l.name === 'file size')?.enforcedBy, 'rlimit');
    for (const target of ['big.bin', '/tmp/big.bin']) {
      const r = await ts.run(['python3', '-c', WRITE, target, '2']);
      assert.match(r.stdout, /^ERR 27 File too large after 1\n$/, `${target}: ${r.stdout}${r.stderr}`);
    }
    assert.equal(fs.statSync(path.join(ts.workspace, 'big.bin')).size, 1 << 20, 'the host file stopped at the limit');
    // Without python's SIG_IGN, the kernel's SIGXFSZ kills the writer.
    const dd = await ts.run('head -c 2097152 /dev/zero > dd.bin; echo "rc=$?"');
    assert.match(dd.stdout, /rc=153\n/, '128 + SIGXFSZ (25)');
    const control = await ts.run(['python3', '-c', WRITE, 'small.bin', '1']);
    assert.equal(control.stdout, 'WROTE 1\n', 'up to the limit writes work');
  });
});

describe('the tmpfs size limit', () => {
  test('writing 16 MiB into an 8 MiB /tmp, HOME or /dev/shm fails with ENOSPC', async () => {
    const ts = await start({ policy: { limits: { tmpfsMiB: 8 } } });
    for (const target of ['/tmp/fill', '/home/airlock/fill', '/dev/shm/fill']) {
      const r = await ts.run(['python3', '-c', WRITE, target, '16']);
      const m = /^ERR 28 No space left on device after (\d+)\n$/.exec(r.stdout);
      assert.ok(m, `${target}: ${r.stdout}${r.stderr}`);
      assert.ok(Number(m[1]) <= 8, `${target}: at most 8 MiB written`);
      await ts.run(['rm', '-f', target]);
    }
    const df = await ts.run("df -k /tmp | tail -1 | awk '{print $2}'");
    assert.equal(df.stdout, `${8 * 1024}\n`);
  });
});

describe('the memory limit', () => {
  test('allocating 256 MiB under a 64 MiB memory limit gets the process killed', async (t) => {
    if (cgroups.mode === 'none') {
      t.skip(`cgroups are unavailable to this user (${cgroups.reason}): the memory limit is not enforced here, as 'airlock doctor' reports`);
      return;
    }
    const ts = await start({ policy: { limits: { memoryMiB: 64 } } });
    assert.equal(ts.session.limits.find((l) => l.name === 'memory')?.enforcedBy, `cgroup-${cgroups.mode}`);
    const small = await ts.run(['python3', '-c', "b = b'x' * (16 << 20); print('ok', len(b) >> 20)"]);
    assert.equal(small.stdout, 'ok 16\n', 'control: allocations below the limit work');
    const t0 = Date.now();
    const big = await ts.run(['python3', '-c', "b = b'x' * (256 << 20); print('ALLOCATED')"]);
    assert.equal(big.signal, 'SIGKILL', `killed by the OOM killer: ${JSON.stringify(big)}`);
    assert.doesNotMatch(big.stdout, /ALLOCATED/);
    assert.ok(Date.now() - t0 < 20_000);
  });

  test('without cgroups the memory limit is reported as not enforced, never silently', async (t) => {
    if (cgroups.mode !== 'none') {
      t.skip('cgroups are available here: the memory limit is enforced (see the test above)');
      return;
    }
    const ts = await start({});
    const mem = ts.session.limits.find((l) => l.name === 'memory');
    assert.equal(mem?.enforcedBy, 'none');
    assert.match(mem?.note ?? '', /not enforced/);
  });
});
