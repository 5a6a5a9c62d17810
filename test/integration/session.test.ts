/**
 * Sessions in REAL sandboxes: one sandbox holds many processes; pipes, terminals,
 * signals, exit statuses, spawn errors, flow control in both directions, and the
 * audit records a session leaves.
 */
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { readAuditFile, verifyAuditFile } from '../../runtime/audit';
import { SessionEndedError, SpawnError } from '../../runtime/sessions';
import { pidNamespaceOf, processesInNamespace, startSession, StartOptions, TestSession } from '../helpers/sandbox';
import { collect, sleep, until } from '../helpers/integration';

async function open(t: { after: (fn: () => Promise<void>) => void }, opts?: StartOptions): Promise<TestSession> {
  const s = await startSession(opts);
  t.after(() => s.close());
  return s;
}

test('several processes in one session share one sandbox: one agent, one PID namespace, one /tmp', async (t) => {
  const s = await open(t);
  const { sandbox } = s.session;
  const { hostPid, agentHostPid } = sandbox;
  assert.ok(agentHostPid, 'the driver knows the agent host pid');
  const ns = pidNamespaceOf(agentHostPid);

  const sleeper = await s.session.spawn({ argv: ['sleep', '30'] });
  const a = await s.run('readlink /proc/self/ns/pid; tr "\\0" " " < /proc/1/cmdline; echo; echo written-by-a > /tmp/shared.txt');
  const b = await s.run(`readlink /proc/self/ns/pid; cat /tmp/shared.txt; kill -0 ${sleeper.pid} && echo sleeper-visible`);
  assert.equal(a.code, 0, a.stderr);
  assert.equal(b.code, 0, b.stderr);
  const [nsA, agentCmd] = a.stdout.split('\n');
  const [nsB, shared, visible] = b.stdout.split('\n');
  assert.equal(nsA, ns, 'process A runs in the agent\'s PID namespace');
  assert.equal(nsB, ns, 'process B runs in the agent\'s PID namespace');
  assert.match(agentCmd, /^\/run\/airlock\/agent /, 'PID 1 is the agent');
  assert.equal(shared, 'written-by-a');
  assert.equal(visible, 'sleeper-visible');

  const inNs = processesInNamespace(ns);
  assert.ok(inNs.includes(agentHostPid), 'the agent is in the namespace');
  assert.ok(inNs.length >= 2, `the sleeper is in the same namespace (${inNs.join(',')})`);
  assert.equal(s.session.sandbox.hostPid, hostPid, 'no second sandbox was started');
  assert.equal(s.session.sandbox.agentHostPid, agentHostPid, 'the same agent serves every process');
  assert.deepEqual(s.session.processes().map((p) => p.argv[0]), ['sleep']);
  sleeper.signal('SIGKILL');
  assert.deepEqual(await sleeper.exited, { code: null, signal: 'SIGKILL' });
});

test('pipe mode keeps stdout and stderr apart', async (t) => {
  const s = await open(t);
  const r = await s.run('echo to-out; echo to-err >&2; echo more-out');
  assert.deepEqual(r, { code: 0, signal: null, stdout: 'to-out\nmore-out\n', stderr: 'to-err\n' });
});

test('pipe mode delivers stdin as it is written and end() closes it', async (t) => {
  const s = await open(t);
  const p = await s.session.spawn({ argv: ['sh', '-c', 'read first; echo "got:$first"; cat; echo eof'] });
  const out = collect(p, 'stdout');
  p.write('line one\n');
  await until(() => out.text().includes('got:line one\n'), 5000, 'the first line reached the process');
  assert.equal(p.running, true, 'the process waits for more input');
  p.write('rest');
  p.end();
  assert.deepEqual(await p.exited, { code: 0, signal: null });
  assert.equal(out.text(), 'got:line one\nresteof\n');
});

test('closeStdin: the process reads end of file at once, without end()', async (t) => {
  const s = await open(t);
  const p = await s.session.spawn({ argv: ['sh', '-c', 'cat; echo "cat exited $?"'], closeStdin: true });
  const out = collect(p, 'stdout');
  const exit = await Promise.race([p.exited, sleep(10_000).then(() => 'still reading stdin after 10 s')]);
  assert.deepEqual(exit, { code: 0, signal: null });
  assert.equal(out.text(), 'cat exited 0\n');
});

test('a terminal process sees a /dev/pts terminal of the requested size', async (t) => {
  const s = await open(t);
  const r = await s.run('tty; stty size; test -t 0 && test -t 1 && test -t 2 && echo all-tty', { pty: true, cols: 100, rows: 30 });
  assert.equal(r.code, 0);
  assert.equal(r.stderr, '', 'a terminal has one output stream');
  const lines = r.stdout.split('\r\n');
  assert.match(lines[0], /^\/dev\/pts\/\d+$/);
  assert.equal(lines[1], '30 100');
  assert.equal(lines[2], 'all-tty');
});

test('resize() changes the terminal size a running process sees', async (t) => {
  const s = await open(t);
  const p = await s.session.spawn({ argv: ['sh'], pty: true, cols: 100, rows: 30, env: { PS1: '$ ' } });
  const out = collect(p, 'stdout');
  p.write('stty size\n');
  await until(() => out.text().includes('30 100'), 5000, 'first stty size');
  p.resize(120, 40);
  p.write('stty size\n');
  await until(() => out.text().includes('40 120'), 5000, 'stty size after resize');
  p.write('exit 5\n');
  assert.deepEqual(await p.exited, { code: 5, signal: null });
});

test('end() on a terminal sends end-of-file, and the process exits normally every time', async (t) => {
  const s = await open(t);
  // 20 rounds: the agent once hung the terminal up while cat was exiting (SIGHUP, ~1 in 10).
  for (let i = 0; i < 20; i++) {
    const p = await s.session.spawn({ argv: ['cat'], pty: true });
    const out = collect(p, 'stdout');
    p.write('typed\n');
    await until(() => out.text().includes('typed\r\ntyped\r\n'), 5000, 'echo and cat output');
    p.end();
    assert.deepEqual(await p.exited, { code: 0, signal: null }, `round ${i}`);
  }
});

test('a terminal process that closes its terminal keeps running until it exits', async (t) => {
  const s = await open(t);
  const p = await s.session.spawn({ argv: ['sh', '-c', 'echo before; exec </dev/null >/dev/null 2>&1; sleep 0.3; exit 4'], pty: true });
  const out = collect(p, 'stdout');
  assert.deepEqual(await p.exited, { code: 4, signal: null });
  assert.equal(out.text(), 'before\r\n');
});

test('signal(SIGINT) ends a sleeping process, reported as SIGINT', async (t) => {
  const s = await open(t);
  const p = await s.session.spawn({ argv: ['sleep', '100'] });
  await sleep(50);
  p.signal('SIGINT');
  assert.deepEqual(await p.exited, { code: null, signal: 'SIGINT' });
});

test('exit codes and killing signals are reported as they are', async (t) => {
  const s = await open(t);
  assert.equal((await s.run('exit 0')).code, 0);
  assert.equal((await s.run('exit 7')).code, 7);
  assert.equal((await s.run('exit 255')).code, 255);
  assert.deepEqual(await s.run('kill -TERM $$'), { code: null, signal: 'SIGTERM', stdout: '', stderr: '' });
  assert.deepEqual(await s.run('kill -KILL $$'), { code: null, signal: 'SIGKILL', stdout: '', stderr: '' });
});

test('spawning a command that does not exist rejects with SpawnError notFound', async (t) => {
  const s = await open(t);
  await assert.rejects(s.session.spawn({ argv: ['nonexistent-xyz'] }), (e: Error) => {
    assert.ok(e instanceof SpawnError);
    assert.equal(e.notFound, true);
    assert.equal(e.message, 'command not found: nonexistent-xyz');
    return true;
  });
  assert.equal((await s.run('echo still-fine')).stdout, 'still-fine\n', 'the session still works');
});

test('a command is looked up in the PATH the request gives, a script without #! runs with sh, and the agent\'s own PATH is left as it was', async (t) => {
  const s = await open(t, { files: { 'bin/hello-airlock': '#!/bin/sh\necho hello "$@"\n', 'bin/no-shebang': 'echo plain script\n' } });
  fs.chmodSync(path.join(s.workspace, 'bin/hello-airlock'), 0o755);
  fs.chmodSync(path.join(s.workspace, 'bin/no-shebang'), 0o755);
  const env = { PATH: `${s.workspace}/bin:/usr/bin:/bin` };
  for (let i = 0; i < 20; i++) {
    assert.equal((await s.run(['hello-airlock', String(i)], { env })).stdout, `hello ${i}\n`);
  }
  assert.equal((await s.run(['no-shebang'], { env })).stdout, 'plain script\n');
  // Without the request's PATH the command is not found: the lookup did not use a PATH
  // left behind by the previous spawn.
  await assert.rejects(s.session.spawn({ argv: ['hello-airlock'] }), (e: Error) => e instanceof SpawnError && e.notFound);
  assert.equal((await s.run(['hello-airlock', 'again'], { env })).stdout, 'hello again\n');
});

test('spawning a file that is not executable rejects without notFound', async (t) => {
  const s = await open(t, { files: { 'script.sh': 'echo hi\n' } });
  await assert.rejects(s.session.spawn({ argv: ['./script.sh'] }), (e: Error) => {
    assert.ok(e instanceof SpawnError);
    assert.equal(e.notFound, false);
    assert.match(e.message, /cannot execute \.\/script\.sh: Permission denied/);
    return true;
  });
});

test('a bad cwd rejects with a message naming the cwd, and is not "command not found"', async (t) => {
  const s = await open(t);
  await assert.rejects(s.session.spawn({ argv: ['true'], cwd: '/no/such/dir' }), (e: Error) => {
    assert.ok(e instanceof SpawnError);
    assert.equal(e.message, 'cannot chdir to /no/such/dir: No such file or directory');
    assert.equal(e.notFound, false);
    return true;
  });
  const rel = await s.run('pwd', { cwd: '.' });
  assert.equal(rel.stdout, `${s.workspace}\n`, 'a relative cwd is resolved in the workspace');
});

test('a process writing 50 MB delivers exactly 50,000,000 bytes', async (t) => {
  const s = await open(t);
  const p = await s.session.spawn({ argv: ['head', '-c', '50000000', '/dev/zero'] });
  let bytes = 0;
  let nonzero = false;
  p.on('stdout', (d) => {
    bytes += d.length;
    if (!nonzero && d.some((b) => b !== 0)) nonzero = true;
  });
  p.end();
  assert.deepEqual(await p.exited, { code: 0, signal: null });
  assert.equal(bytes, 50_000_000);
  assert.equal(nonzero, false);
});

test('with manualAck and no acks the process is paused at about 1 MiB, and resumes when acked', async (t) => {
  const s = await open(t);
  const p = await s.session.spawn({ argv: ['head', '-c', '50000000', '/dev/zero'] });
  p.manualAck = true;
  let bytes = 0;
  let acked = false;
  p.on('stdout', (d) => {
    bytes += d.length;
    if (acked) p.ack(d.length);
  });
  p.end();
  await sleep(250);
  const early = bytes;
  await sleep(250);
  assert.equal(p.running, true, 'still running after 500 ms: blocked, not finished');
  assert.equal(bytes, early, 'no output arrives while nothing is acknowledged');
  assert.ok(bytes >= 1 << 20 && bytes < (1 << 20) + 64 * 1024, `stopped after ~1 MiB unacknowledged (got ${bytes})`);
  acked = true;
  p.ack(bytes);
  assert.deepEqual(await p.exited, { code: 0, signal: null });
  assert.equal(bytes, 50_000_000);
});

test('20 MB of stdin through wc -c counts exactly, respecting write() and drain', async (t) => {
  const s = await open(t);
  const p = await s.session.spawn({ argv: ['wc', '-c'] });
  const out = collect(p, 'stdout');
  const total = 20_000_000;
  const chunk = Buffer.alloc(64 * 1024, 'x');
  let sent = 0;
  let waits = 0;
  while (sent < total) {
    const piece = chunk.subarray(0, Math.min(chunk.length, total - sent));
    sent += piece.length;
    if (!p.write(piece)) {
      waits++;
      await new Promise<void>((r) => p.once('drain', () => r()));
    }
  }
  p.end();
  assert.deepEqual(await p.exited, { code: 0, signal: null });
  assert.equal(out.text().trim(), String(total));
  assert.ok(waits > 0, 'write() returned false at least once (back-pressure was exercised)');
});

test('ending a session kills its processes, and spawning afterwards is refused', async (t) => {
  const s = await open(t);
  const p = await s.session.spawn({ argv: ['sleep', '100'] });
  await s.session.end('killed', 'test');
  assert.deepEqual(await p.exited, { code: null, signal: 'SIGKILL', reason: 'session ended: killed' });
  assert.equal(s.session.state, 'ended');
  await assert.rejects(s.session.spawn({ argv: ['true'] }), SessionEndedError);
});

test('the audit log records the session, each process and its exit, and the chain verifies', async (t) => {
  const s = await open(t);
  const ok = await s.run('exit 3');
  assert.equal(ok.code, 3);
  await s.run(['sh', '-c', 'echo hi'], { pty: true, cwd: '/tmp' });
  await assert.rejects(s.session.spawn({ argv: ['nonexistent-xyz'] }));
  await s.session.end('exit');

  const recs = readAuditFile(s.auditFile).records;
  assert.deepEqual(recs.map((r) => r.type), ['session.start', 'process.start', 'process.exit', 'process.start', 'process.exit', 'process.error', 'session.end']);
  assert.ok(recs.every((r) => r.session === s.session.id), 'every record names this session');
  const [start, p1, e1, p2, e2, err, end] = recs.map((r) => r as unknown as Record<string, unknown>);
  const pick = (r: Record<string, unknown>, keys: string[]): Record<string, unknown> => Object.fromEntries(keys.map((k) => [k, r[k]]));
  assert.equal(start.driver, 'bwrap');
  assert.equal(start.workspace, s.workspace);
  assert.deepEqual(pick(p1, ['process', 'argv', 'cwd', 'pty']), { process: 1, argv: ['sh', '-c', 'exit 3'], cwd: s.workspace, pty: false });
  assert.deepEqual(pick(e1, ['process', 'code', 'signal']), { process: 1, code: 3, signal: null });
  assert.equal(typeof e1.durationMs, 'number');
  assert.deepEqual(pick(p2, ['process', 'argv', 'cwd', 'pty']), { process: 2, argv: ['sh', '-c', 'echo hi'], cwd: '/tmp', pty: true });
  assert.deepEqual(pick(e2, ['process', 'code']), { process: 2, code: 0 });
  assert.deepEqual(pick(err, ['argv', 'errno']), { argv: ['nonexistent-xyz'], errno: 2 });
  assert.equal(end.reason, 'exit');
  assert.equal(typeof end.durationMs, 'number');
  const v = verifyAuditFile(s.auditFile);
  assert.equal(v.ok, true, JSON.stringify(v.firstBad));
  assert.equal(v.records, 7);
});
