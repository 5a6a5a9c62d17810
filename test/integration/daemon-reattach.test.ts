/**
 * Reattaching through the real CLI in real terminals (node-pty): `airlock shell`,
 * its terminal killed, then `airlock attach ID` brings back the same shell (same
 * variables, recent output replayed). The CLI's own on-demand daemon serves both.
 */
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import { RuntimeClient } from '../../runtime/client/client';
import { ErrorCode } from '../../runtime/protocol';
import { rpcFails } from '../helpers/daemon';
import { airlockInTerminal, sleep, Terminal, within } from '../helpers/integration';
import { runCli, stopDaemonIn, tempDir } from '../helpers/sandbox';

const PROMPT = 'airlock@airlock:';

test('a killed terminal leaves airlock shell\'s session running, and airlock attach brings back the same shell', { timeout: 90_000 }, async (t) => {
  const rt = tempDir('airlock-rt-');
  const st = tempDir('airlock-state-');
  const ws = tempDir('airlock-ws-');
  const terms: Terminal[] = [];
  t.after(async () => {
    for (const term of terms) term.kill();
    await stopDaemonIn(rt);
    for (const dir of [rt, st, ws]) fs.rmSync(dir, { recursive: true, force: true });
  });
  const env = { XDG_RUNTIME_DIR: rt, XDG_STATE_HOME: st };
  const shell = airlockInTerminal(['shell', '--workspace', ws], { cwd: ws, env });
  terms.push(shell);
  await shell.waitFor(PROMPT, 20_000);
  const announced = /airlock: session ([0-9a-f]{16}): closing this terminal leaves it running; 'airlock attach \1' brings it back/.exec(shell.output());
  assert.ok(announced, 'airlock shell names its session and how to come back');
  shell.mark();
  shell.write('echo marker-1; export KEEP=yes\r');
  await shell.waitFor(/^marker-1\r?$/m);
  await shell.waitFor(PROMPT);

  const listed = await runCli(['sessions', '--json'], { env, keepDaemon: true });
  assert.equal(listed.code, 0, listed.stderr);
  const sessions = JSON.parse(listed.stdout) as { sessionId: string; processes: { processId: string; running: boolean; pty: boolean }[] }[];
  assert.equal(sessions.length, 1);
  const sessionId = sessions[0].sessionId;
  assert.equal(sessionId, announced[1]);
  const processId = sessions[0].processes[0].processId;

  shell.kill(); // SIGKILL to the CLI: no goodbye to the daemon
  await within(shell.exited, 10_000, 'the killed CLI to exit');
  const c = await RuntimeClient.connect({ socket: `${rt}/airlock/runtime.sock` });
  t.after(() => c.close());
  const deadline = Date.now() + 5000;
  let info = await c.call('session.get', { sessionId });
  while (info.processes[0].attached > 0 && Date.now() < deadline) {
    await sleep(20);
    info = await c.call('session.get', { sessionId });
  }
  assert.equal(info.state, 'running', 'the session lives on');
  assert.deepEqual([info.processes[0].processId, info.processes[0].running, info.processes[0].attached], [processId, true, 0], 'its shell runs, detached');

  const attach = airlockInTerminal(['attach', sessionId], { cwd: ws, env });
  terms.push(attach);
  await attach.waitFor('marker-1', 15_000); // the replay of recent output
  await sleep(200);
  attach.mark();
  attach.write('echo $KEEP\r');
  await attach.waitFor(/^yes\r?$/m); // the same shell: its variables are still set
  await attach.waitFor(PROMPT);
  attach.write('exit 5\r');
  const e = await within(attach.exited, 10_000, 'airlock attach to exit');
  assert.equal(e.exitCode, 5, 'attach exits with the shell\'s status');
  await rpcFails(c.call('session.get', { sessionId }), ErrorCode.SessionEnded, new RegExp(`has ended \\(\\d+ s ago: exit, its main process ${processId.replace('.', '\\.')} exited\\)`));
  const after = await runCli(['sessions'], { env, keepDaemon: true });
  assert.equal(after.stdout, 'no live sessions\n');
});

test('airlock attach of an unknown session fails and says so', { timeout: 90_000 }, async (t) => {
  const rt = tempDir('airlock-rt-');
  const st = tempDir('airlock-state-');
  t.after(async () => {
    await stopDaemonIn(rt);
    for (const dir of [rt, st]) fs.rmSync(dir, { recursive: true, force: true });
  });
  const env = { XDG_RUNTIME_DIR: rt, XDG_STATE_HOME: st };
  const none = await runCli(['attach', 'feedfacefeedface'], { env, keepDaemon: true });
  assert.equal(none.code, 2);
  assert.match(none.stderr, /no Airlock daemon is running, so there are no sessions/);
  const started = await runCli(['serve', '--idle-exit', '60'], { env, keepDaemon: true });
  assert.equal(started.code, 0, started.stderr);
  const r = await runCli(['attach', 'feedfacefeedface'], { env, keepDaemon: true });
  assert.equal(r.code, 125);
  assert.match(r.stderr, /^airlock: session feedfacefeedface not found: 'airlock sessions' lists the live ones/);
});
