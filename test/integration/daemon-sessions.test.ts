/**
 * Sessions outlive clients: a disconnect detaches, a new client reattaches by id and
 * gets the replay then live output; timers keep running with nobody connected; a
 * session that asked to end with its client (`airlock run`) or with its main process
 * (`endsSession`) does, with the reason recorded. REAL sandboxes, daemon in-process.
 */
import { after, before, test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { ProcessExitNote, RuntimeClient } from '../../runtime/client/client';
import { ErrorCode, FrameKind, RuntimeEvent } from '../../runtime/protocol';
import { InProcessDaemon, rpcFails, startInProcessDaemon } from '../helpers/daemon';
import { sleep, until, within } from '../helpers/integration';

let d: InProcessDaemon;
before(async () => {
  d = await startInProcessDaemon();
}, { timeout: 60_000 });
after(() => d.stop(), { timeout: 60_000 });

async function attachText(client: RuntimeClient, processId: string) {
  let out = '';
  const a = await client.attach(processId, (_k, data) => (out += data.toString('utf8')));
  let atReplayEnd: string | undefined;
  void a.replayDone.then(() => (atReplayEnd = out));
  return { a, out: () => out, replay: () => atReplayEnd };
}

/** Waits until session.get of SESSIONID fails (it ended); returns that error. */
async function ended(client: RuntimeClient, sessionId: string): Promise<void> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    try {
      await client.call('session.get', { sessionId });
    } catch {
      return;
    }
    if (Date.now() > deadline) throw new Error(`session ${sessionId} did not end within 10 s`);
    await sleep(20);
  }
}

test('a session outlives the client that created it; new clients attach by id and get the replay, then live output', { timeout: 90_000 }, async () => {
  const first = await d.client();
  const { sessionId } = await first.call('session.create', { workspace: d.workspace() });
  const { processId } = await first.call('process.start', { sessionId, argv: ['sh', '-c', 'echo before; sleep 0.3; echo after; read x; echo "live:$x"; sleep 100'] });
  await within(new Promise<void>((r) => (first.once('close', r), first.close())), 5000, 'the first client to close');

  // At once: "before" is in the replay, "after" arrives live.
  const second = await d.client();
  const info = await second.call('session.get', { sessionId });
  assert.equal(info.state, 'running');
  assert.equal(info.processes[0].running, true);
  assert.equal(info.processes[0].attached, 0, 'the disconnect detached the first client');
  const early = await attachText(second, processId);
  await within(early.a.replayDone, 5000, 'the replay');
  assert.equal(early.replay(), 'before\n');
  await until(() => early.out() === 'before\nafter\n', 5000, '"after" as live output');

  // Later: both are in the replay of a third client.
  const third = await d.client();
  const late = await attachText(third, processId);
  await within(late.a.replayDone, 5000, 'the replay');
  assert.equal(late.replay(), 'before\nafter\n');
  await third.call('process.input', { processId, data: 'hello\n' });
  await until(() => late.out().endsWith('live:hello\n') && early.out().endsWith('live:hello\n'), 5000, 'live output to both clients');
  second.close();
  third.close();
  const fourth = await d.client();
  assert.ok((await fourth.call('session.list', {})).sessions.some((s) => s.sessionId === sessionId), 'still live with no client connected');
  await fourth.call('session.kill', { sessionId });
});

test('the lifetime limit ends a session while no client is connected', { timeout: 90_000 }, async () => {
  const c = await d.client();
  const { sessionId } = await c.call('session.create', { workspace: d.workspace(), policy: { limits: { lifetimeSeconds: 1 } } });
  await c.call('process.start', { sessionId, argv: ['sleep', '100'] });
  c.close();
  await sleep(1300);
  const later = await d.client();
  await rpcFails(later.call('session.get', { sessionId }), ErrorCode.SessionEnded, /has ended \(\d+ s ago: lifetime, lifetime of 1 s reached\)/);
  later.close();
});

test('a session created with endOnDisconnect ends when its client disconnects', { timeout: 90_000 }, async () => {
  const owner = await d.client();
  const { sessionId } = await owner.call('session.create', { workspace: d.workspace(), endOnDisconnect: true });
  const { processId } = await owner.call('process.start', { sessionId, argv: ['sleep', '100'] });
  const watcher = await d.client();
  const seen: RuntimeEvent[] = [];
  watcher.on('event', (e) => seen.push(e));
  await watcher.call('events.subscribe', { filter: ['session.end'] });
  owner.close();
  await ended(watcher, sessionId);
  await rpcFails(watcher.call('session.get', { sessionId }), ErrorCode.SessionEnded, new RegExp(`^session ${sessionId} has ended \\(\\d+ s ago: killed, its client disconnected\\)$`));
  await until(() => seen.length > 0, 5000, 'the session.end event');
  assert.deepEqual([seen[0].sessionId, seen[0].reason, seen[0].detail], [sessionId, 'killed', 'its client disconnected']);
  const recs = (await watcher.call('audit.query', { sessionId })).records;
  const end = recs.find((r) => r.type === 'session.end')!;
  assert.equal(end.reason, 'killed');
  assert.equal(end.detail, 'its client disconnected');
  const exit = recs.find((r) => r.type === 'process.exit')!;
  assert.deepEqual([exit.signal, exit.reason], ['SIGKILL', 'session ended: killed'], `${processId} died with its session`);
  watcher.close();
});

test('a session without endOnDisconnect is not ended by another client disconnecting', { timeout: 90_000 }, async () => {
  const owner = await d.client();
  const { sessionId } = await owner.call('session.create', { workspace: d.workspace(), endOnDisconnect: true });
  const other = await d.client();
  await other.call('session.get', { sessionId });
  other.close();
  await sleep(200);
  assert.equal((await owner.call('session.get', { sessionId })).state, 'running', 'only the creating connection owns it');
  await owner.call('session.kill', { sessionId });
  owner.close();
});

test('a process started with endsSession ends the session (reason exit) before its process.exit arrives, with warnings about git init', { timeout: 90_000 }, async () => {
  const c = await d.client();
  const ws = d.workspace();
  const { sessionId } = await c.call('session.create', { workspace: ws });
  const order: string[] = [];
  c.on('event', (e) => order.push(`event ${e.type}${e.type === 'session.end' ? ` ${String(e.reason)}` : ''}`));
  await c.call('events.subscribe', { filter: ['session.end'] });
  const { processId } = await c.call('process.start', { sessionId, argv: ['sh', '-c', 'read go; git init -q made-here && echo inited; exit 3'], endsSession: true });
  const t = await attachText(c, processId);
  let endedWhenNoted: string | undefined;
  const noted = new Promise<ProcessExitNote>((resolve) =>
    t.a.once('exit', (x) => {
      order.push('process.exit');
      // Asked the moment the note arrives: the session must already be over.
      void c.call('session.get', { sessionId }).then(
        () => resolve(x),
        (e: Error) => {
          endedWhenNoted = e.message;
          resolve(x);
        },
      );
    }),
  );
  await c.call('process.input', { processId, data: 'go\n' });
  const x = await within(noted, 10_000, 'the process.exit notification');
  assert.equal(x.code, 3);
  assert.equal(t.out(), 'inited\n');
  assert.deepEqual(order, ['event session.end exit', 'process.exit'], 'session.end first');
  assert.match(endedWhenNoted ?? 'still running', new RegExp(`^session ${sessionId} has ended \\(\\d+ s ago: exit, its main process ${processId.replace('.', '\\.')} exited\\)$`));
  assert.equal(x.warnings?.length, 1, JSON.stringify(x));
  assert.match(x.warnings![0], /^the sandbox created a git repository in made-here; /);
  assert.ok(fs.existsSync(path.join(ws, 'made-here', '.git')));
  const recs = (await c.call('audit.query', { sessionId, types: ['workspace.git-created', 'session.end'] })).records;
  assert.deepEqual(recs.map((r) => [r.type, r.reason]), [['workspace.git-created', undefined], ['session.end', 'exit']]);
  c.close();
});

test('a client attached to a pipe process sees stdout and stderr frames apart after reattaching', { timeout: 90_000 }, async () => {
  const c = await d.client();
  const { sessionId } = await c.call('session.create', { workspace: d.workspace() });
  const { processId } = await c.call('process.start', { sessionId, argv: ['sh', '-c', 'echo o1; echo e1 >&2; sleep 100'] });
  c.close();
  const c2 = await d.client();
  const got: [FrameKind, string][] = [];
  await sleep(300); // both lines land in the replay
  const a = await c2.attach(processId, (k, data) => got.push([k, data.toString('utf8')]));
  await within(a.replayDone, 5000, 'the replay');
  assert.deepEqual(got.filter(([k]) => k === FrameKind.Stdout).map(([, s]) => s).join(''), 'o1\n');
  assert.deepEqual(got.filter(([k]) => k === FrameKind.Stderr).map(([, s]) => s).join(''), 'e1\n');
  await c2.call('session.kill', { sessionId });
  c2.close();
});

test('clients that attach to a long-running process and disconnect leave nothing behind in the daemon', { timeout: 90_000 }, async () => {
  const c = await d.client();
  const { sessionId } = await c.call('session.create', { workspace: d.workspace() });
  const { processId } = await c.call('process.start', { sessionId, argv: ['sleep', '1000'] });
  const hub = d.server.registry.hub(processId);
  const listeners = d.server.registry.listenerCount('event');
  for (let i = 0; i < 200; i++) {
    const k = await d.client();
    await k.attach(processId, () => {});
    await k.call('events.subscribe', {});
    await within(new Promise<void>((r) => (k.once('close', r), k.close())), 5000, 'a client to close');
  }
  await until(() => hub.attachedCount === 0 && d.server.registry.listenerCount('event') === listeners, 5000, 'the daemon to release the clients');
  // White-box: no per-client exit watcher (each would keep its connection alive until the process exits).
  assert.equal((hub as unknown as { settleWatchers: Set<unknown> }).settleWatchers.size, 0);
  // And a client attached when the process exits still hears of it.
  const last = await d.client();
  const a = await last.attach(processId, () => {});
  await sleep(50);
  await last.call('process.signal', { processId, signal: 'SIGTERM' });
  assert.deepEqual(await within(a.exited, 5000, 'the exit note'), { processId, code: null, signal: 'SIGTERM' });
  await c.call('session.kill', { sessionId });
  last.close();
});
