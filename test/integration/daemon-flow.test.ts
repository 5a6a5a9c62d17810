/**
 * Flow control through the daemon, measured on a REAL daemon process (its RSS read
 * from /proc/PID/status): a `yes` flood to a client that never acknowledges pauses
 * the process instead of growing the daemon; acknowledging resumes it; with nobody
 * attached the process runs on and the daemon keeps only its replay ring.
 */
import { after, before, test } from 'node:test';
import * as assert from 'node:assert/strict';
import type { RuntimeClient } from '../../runtime/client/client';
import { OUTPUT_WINDOW } from '../../runtime/protocol';
import { FIRST_ATTACH_WAIT_MS, REPLAY_BYTES } from '../../runtime/daemon/hub';
import { DaemonProcess, rssBytes, startDaemonProcess } from '../helpers/daemon';
import { sleep, until, within } from '../helpers/integration';

const MiB = 1 << 20;
/** Output the sandbox agent sends unacknowledged before it pauses a process (OUT_HIGH in agent.c). */
const AGENT_WINDOW = MiB;
/**
 * The most a client that never acks may receive: its window, the agent's window in
 * flight when the daemon stops acknowledging, and a replay it was sent on attach.
 */
const PAUSED_MAX = OUTPUT_WINDOW + AGENT_WINDOW + REPLAY_BYTES;
/** The most the daemon may grow while a flood is paused by a client that does not ack. */
const RSS_BUDGET = 32 * MiB;
/**
 * The most it may grow while a flood runs at full speed with nobody attached (~1 GB in
 * 2 s passes through): the replay ring plus garbage V8 has not collected yet (it
 * collects after ~64 MiB of new external Buffer memory), never the output itself.
 */
const RSS_BUDGET_RUNNING = 64 * MiB;

let d: DaemonProcess;
let c: RuntimeClient;
before(async () => {
  d = await startDaemonProcess();
  c = await d.client();
}, { timeout: 60_000 });
after(() => d.stop(), { timeout: 60_000 });

/** Samples the daemon's RSS every 50 ms for MS; returns the peak. */
async function peakRss(ms: number): Promise<number> {
  let peak = rssBytes(d.pid);
  const end = Date.now() + ms;
  while (Date.now() < end) {
    await sleep(50);
    peak = Math.max(peak, rssBytes(d.pid));
  }
  return peak;
}

/** Settles the daemon after session start, then reads its RSS. */
async function baseline(): Promise<number> {
  await sleep(300);
  return rssBytes(d.pid);
}

for (const pty of [true, false]) {
  test(`a yes flood in a ${pty ? 'PTY' : 'pipe'} to a client that never acks pauses the process and keeps the daemon's RSS bounded; acks resume it`, { timeout: 90_000 }, async () => {
    const { sessionId } = await c.call('session.create', { workspace: d.workspace() });
    const rss0 = await baseline();
    const { processId } = await c.call('process.start', { sessionId, argv: ['yes'], pty });
    let received = 0;
    const a = await c.attach(processId, (_k, data) => (received += data.length), { autoAck: false });
    const peak = await peakRss(3000);
    const growth = peak - rss0;
    const atThree = received;
    await sleep(500);
    console.log(`# flow (${pty ? 'pty' : 'pipe'}, no acks for 3 s): daemon RSS ${(rss0 / MiB).toFixed(1)} MiB -> peak ${(peak / MiB).toFixed(1)} MiB (growth ${(growth / MiB).toFixed(1)} MiB); client received ${(received / MiB).toFixed(2)} MiB (window ${OUTPUT_WINDOW / MiB} MiB)`);
    assert.ok(growth < RSS_BUDGET, `daemon RSS grew by ${(growth / MiB).toFixed(1)} MiB (budget ${RSS_BUDGET / MiB} MiB)`);
    assert.ok(received >= OUTPUT_WINDOW, `the client got at least a window (${received} bytes)`);
    assert.ok(received <= PAUSED_MAX, `the process was paused: ${received} bytes received without acks (at most ${PAUSED_MAX})`);
    assert.equal(received, atThree, 'nothing more arrives while unacknowledged');
    const info = await c.call('session.get', { sessionId });
    assert.equal(info.processes[0].running, true, 'paused, not dead');

    // Acknowledge everything: the flood resumes.
    const before = received;
    a.ack(received);
    // Another window's worth (the client's window and the agent's) until it pauses again.
    await until(() => received > before + MiB, 10_000, 'more output after the ack');
    a.autoAck = true;
    a.ack(received - before);
    const resumed = received;
    await until(() => received > resumed + 8 * MiB, 20_000, 'the flood to run on with acks');
    await c.call('session.kill', { sessionId });
    await within(a.exited, 5000, 'the exit note');
  });
}

test('a yes flood with no client attached runs on, once the first-attach wait is over, while the daemon keeps only its replay ring', { timeout: 90_000 }, async () => {
  const { sessionId } = await c.call('session.create', { workspace: d.workspace() });
  const rss0 = await baseline();
  const { processId } = await c.call('process.start', { sessionId, argv: ['yes'] });
  const peak = await peakRss(FIRST_ATTACH_WAIT_MS + 2000);
  const growth = peak - rss0;
  console.log(`# flow (nobody attached, ${(FIRST_ATTACH_WAIT_MS + 2000) / 1000} s): daemon RSS ${(rss0 / MiB).toFixed(1)} MiB -> peak ${(peak / MiB).toFixed(1)} MiB (growth ${(growth / MiB).toFixed(1)} MiB)`);
  assert.ok(growth < RSS_BUDGET_RUNNING, `daemon RSS grew by ${(growth / MiB).toFixed(1)} MiB (budget ${RSS_BUDGET_RUNNING / MiB} MiB)`);
  // Stopped, so that what an attach receives is the replay and nothing live.
  await c.call('process.signal', { processId, signal: 'SIGSTOP' });
  await sleep(300);
  let replay = 0;
  const a = await c.attach(processId, (_k, data) => (replay += data.length), { autoAck: false });
  await within(a.replayDone, 5000, 'the replay');
  await sleep(100);
  assert.equal(replay, REPLAY_BYTES, 'the replay ring is full and no bigger');
  await c.call('session.kill', { sessionId });
});

test('with no client attached a process is never paused: 200 MB pass through the daemon to the end', { timeout: 90_000 }, async () => {
  const { sessionId } = await c.call('session.create', { workspace: d.workspace() });
  const rss0 = await baseline();
  const started = Date.now();
  await c.call('process.start', { sessionId, argv: ['sh', '-c', 'head -c 200000000 /dev/zero; echo done >&2'] });
  let peak = rss0;
  for (;;) {
    peak = Math.max(peak, rssBytes(d.pid));
    const info = await c.call('session.get', { sessionId });
    if (!info.processes[0].running) {
      assert.equal(info.processes[0].exitCode, 0);
      break;
    }
    assert.ok(Date.now() - started < 60_000, 'the unattached flood finished within 60 s');
    await sleep(50);
  }
  const secs = (Date.now() - started) / 1000;
  console.log(`# flow (nobody attached, 200 MB): ${secs.toFixed(2)} s (${(200 / secs).toFixed(0)} MB/s), daemon RSS growth ${((peak - rss0) / MiB).toFixed(1)} MiB`);
  assert.ok(peak - rss0 < RSS_BUDGET_RUNNING, `daemon RSS grew by ${((peak - rss0) / MiB).toFixed(1)} MiB`);
  await c.call('session.kill', { sessionId });
});

test('a client that attaches right after process.start gets all of the output, not only the replay ring', { timeout: 60_000 }, async () => {
  const { sessionId } = await c.call('session.create', { workspace: d.workspace() });
  // ~1.9 MB, far more than the 256 KiB ring, written before anyone attaches.
  const { processId } = await c.call('process.start', { sessionId, argv: ['seq', '1', '300000'] });
  await sleep(300);
  let out = '';
  const a = await c.attach(processId, (_k, data) => (out += data.toString()));
  await within(a.exited, 20_000, 'seq to exit');
  const lines = out.split('\n');
  assert.equal(lines[0], '1', 'the first line is there');
  assert.equal(lines.length - 1, 300000, 'every line is there');
  await c.call('session.kill', { sessionId });
});
