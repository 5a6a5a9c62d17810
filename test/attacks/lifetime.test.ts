/**
 * Attacks on "everything in a session dies with it": daemons, setsid, nohup and
 * signal-ignoring processes are counted from the HOST's process table (by PID
 * namespace) before and after the session ends; the lifetime cap and the idle timeout
 * end sessions by themselves; killing bubblewrap takes the sandbox with it; and the
 * CLI's --timeout ends a runaway command.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import { readAuditFile } from '../../runtime/audit';
import type { EndReason } from '../../runtime/sessions';
import { AIRLOCK_BIN, hostPidsWhere, pidNamespaceOf, processesInNamespace, runCli, stopDaemonIn, TestSession, tempDir } from '../helpers/sandbox';
import * as path from 'node:path';
import { spawn } from 'node:child_process';
import { sessionsClosedAfterEach, sleep, waitFor } from '../helpers/attack';

const start = sessionsClosedAfterEach();

/** Resolves with the session's end reason, or null if it has not ended within MS. */
function endedWithin(ts: TestSession, ms: number): Promise<EndReason | null> {
  if (ts.session.state === 'ended') return Promise.resolve(ts.session.endReason ?? null);
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(null), ms);
    ts.session.once('end', (reason) => {
      clearTimeout(timer);
      resolve(reason);
    });
  });
}

function cmdline(pid: number): string {
  try {
    return fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').replace(/\0/g, ' ').trim();
  } catch {
    return '';
  }
}

describe('ending a session', () => {
  test('kills every process in it: setsid, double-fork daemons, nohup and SIGTERM-ignoring ones, seen from the host', async () => {
    const ts = await start();
    const escapes = [
      ['sh', '-c', 'setsid sleep 1000 &'],
      ['sh', '-c', '(sleep 1000 &) &'],
      ['sh', '-c', 'nohup sleep 1000 >/dev/null 2>&1 &'],
      ['sh', '-c', 'trap "" TERM HUP; sleep 1000'],
      ['python3', '-c', 'import signal, time\nfor s in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT): signal.signal(s, signal.SIG_IGN)\ntime.sleep(1000)'],
    ];
    for (const argv of escapes) await ts.session.spawn({ argv }); // not awaited to exit
    const ns = pidNamespaceOf(ts.session.sandbox.agentHostPid!);
    // agent + 3 orphaned sleeps + (sh + sleep) + python. Counted once each has exec'd:
    // a process just forked still shows its parent's command line for a moment.
    const running = (): boolean => {
      const cmds = processesInNamespace(ns).map(cmdline);
      return cmds.length >= 7 && cmds.filter((c) => c === 'sleep 1000').length >= 4 && cmds.some((c) => c.startsWith('python3 -c import signal'));
    };
    assert.ok(await waitFor(running, 5000), `the escapes really run on the host: saw ${processesInNamespace(ns).map(cmdline).join(', ')}`);
    const pids = processesInNamespace(ns);

    await ts.session.end('killed');
    assert.deepEqual(processesInNamespace(ns), [], 'nothing of the session is left in the host process table');
    for (const p of pids) assert.equal(cmdline(p), '', `host pid ${p} is gone`);

    const records = readAuditFile(ts.auditFile).records.filter((r) => r.session === ts.session.id);
    const end = records.find((r) => r.type === 'session.end');
    assert.equal(end?.reason, 'killed');
    const exits = records.filter((r) => r.type === 'process.exit');
    assert.equal(exits.length, escapes.length, 'one process.exit per process started');
    const killed = exits.filter((r) => r.reason === 'session ended: killed');
    assert.ok(killed.length >= 2, 'the two that never exited are recorded as killed by the session end');
    for (const r of killed) assert.equal(r.signal, 'SIGKILL');
  });

  test('killing bubblewrap from the host takes every sandboxed process with it and ends the session with reason "error"', async () => {
    const ts = await start();
    await ts.session.spawn({ argv: ['sh', '-c', 'setsid sleep 1000 & trap "" TERM; sleep 1000'] });
    const ns = pidNamespaceOf(ts.session.sandbox.agentHostPid!);
    assert.ok(await waitFor(() => processesInNamespace(ns).length >= 4, 5000));
    process.kill(ts.session.sandbox.hostPid, 'SIGKILL');
    assert.ok(await waitFor(() => processesInNamespace(ns).length === 0, 5000), `left: ${processesInNamespace(ns).map(cmdline).join(', ')}`);
    assert.equal(await endedWithin(ts, 5000), 'error');
    const end = readAuditFile(ts.auditFile).records.find((r) => r.session === ts.session.id && r.type === 'session.end');
    assert.equal(end?.reason, 'error');
  });
});

describe('limits in time', () => {
  test('the lifetime limit ends the session by itself and kills a running sleep 1000', async () => {
    const ts = await start({ policy: { limits: { lifetimeSeconds: 1 } } });
    const t0 = Date.now();
    const p = await ts.session.spawn({ argv: ['sleep', '1000'] });
    const ns = pidNamespaceOf(ts.session.sandbox.agentHostPid!);
    assert.equal(await endedWithin(ts, 6000), 'lifetime');
    assert.ok(Date.now() - t0 >= 900, 'not before the limit');
    const exit = await p.exited;
    assert.equal(exit.signal, 'SIGKILL');
    assert.equal(exit.reason, 'session ended: lifetime');
    assert.deepEqual(processesInNamespace(ns), []);
  });

  test('the idle timeout ends a session in which nothing runs', async () => {
    const ts = await start({ policy: { limits: { idleSeconds: 1 } } });
    assert.equal(await endedWithin(ts, 5000), 'idle');
    const end = readAuditFile(ts.auditFile).records.find((r) => r.session === ts.session.id && r.type === 'session.end');
    assert.equal(end?.reason, 'idle');
  });

  test('the idle timeout does not end a session while a process runs, and does once it has exited', async () => {
    const ts = await start({ policy: { limits: { idleSeconds: 1 } } });
    const p = await ts.session.spawn({ argv: ['sleep', '2.5'] });
    await sleep(2000); // twice the idle timeout, with no output and no input
    assert.equal(ts.session.state, 'running', 'a running process keeps the session alive');
    assert.equal((await p.exited).code, 0, 'the process ran to its end');
    assert.equal(await endedWithin(ts, 4000), 'idle');
  });

  test('`airlock run --timeout 1 -- sleep 100` exits 124 within seconds and says why', async () => {
    const ws = tempDir('airlock-ws-');
    try {
      const t0 = Date.now();
      const r = await runCli(['run', '--timeout', '1', '--', 'sleep', '100'], { cwd: ws, timeoutMs: 20_000 });
      assert.equal(r.code, 124, r.stderr);
      assert.ok(Date.now() - t0 < 8000, `took ${Date.now() - t0} ms`);
      assert.match(r.stderr, /airlock: timed out after 1 s: the session and everything in it were killed/);
    } finally {
      fs.rmSync(ws, { recursive: true, force: true });
    }
  });

  // `airlock run` is a client of the daemon, which owns the sandbox. Killing the client
  // ends its session (it owns it); killing the daemon takes every sandbox with it.
  for (const victim of ['the airlock run client', 'the runtime daemon'] as const) {
    test(`when ${victim} is killed with SIGKILL, every process of its sandbox dies too`, async () => {
      const ws = tempDir('airlock-ws-');
      const rt = tempDir('airlock-rt-');
      const marker = `airlock-orphan-${process.pid}-${Date.now()}`;
      const child = spawn(process.execPath, [AIRLOCK_BIN, 'run', '--', 'bash', '-c', `setsid sleep 1000 & (sleep 1000 &) ; exec -a ${marker} sleep 1000`], {
        cwd: ws,
        env: { ...process.env, XDG_STATE_HOME: ws + '-state', XDG_RUNTIME_DIR: rt },
        stdio: 'ignore',
      });
      try {
        const byMarker = (): number[] => hostPidsWhere((argv) => argv[0] === marker);
        assert.ok(await waitFor(() => byMarker().length === 1, 10_000), 'the sandboxed process started');
        const ns = pidNamespaceOf(byMarker()[0]);
        assert.ok(await waitFor(() => processesInNamespace(ns).length >= 4, 5000), 'the agent and three sleeps (one is bash, exec-ed) run in the sandbox');
        if (victim === 'the airlock run client') child.kill('SIGKILL');
        else process.kill(Number(fs.readFileSync(path.join(rt, 'airlock', 'runtime.sock.pid'), 'utf8')), 'SIGKILL');
        assert.ok(await waitFor(() => processesInNamespace(ns).length === 0, 5000), `left behind: ${processesInNamespace(ns).join(', ')}`);
        assert.deepEqual(byMarker(), []);
      } finally {
        child.kill('SIGKILL');
        await stopDaemonIn(rt);
        for (const d of [ws, ws + '-state', rt]) fs.rmSync(d, { recursive: true, force: true });
      }
    });
  }
});
