/**
 * The Airlock panel inside VS Code: the command opens it, its webview script runs and
 * asks for the snapshot (the extension answers), live events reach it in batches, and
 * a person's click (here: the panel's "allow" message, as the webview sends it) becomes
 * a time-boxed network grant in the runtime, attributed to the panel.
 */
import * as assert from 'node:assert/strict';
import * as vscode from 'vscode';
import { client, EXT, waitFor } from './util';

type Panel = { posted: Record<string, number>; panel: vscode.WebviewPanel };

describe('Airlock panel', function () {
  this.timeout(120_000);

  it('opens, loads its snapshot, receives live network events, and turns an allow click into a 15-minute grant', async () => {
    const api = (await vscode.extensions.getExtension(EXT)!.activate()) as { panel: () => Panel | undefined };
    await vscode.commands.executeCommand('airlock.showPanel');
    const panel = await waitFor('the panel', () => api.panel());
    assert.equal(panel.panel.title, 'Airlock');
    // The webview's script sends 'ready' when it has loaded; the snapshot is the answer.
    await waitFor('the webview to ask for its snapshot', () => (panel.posted.snapshot ?? 0) >= 1, 30_000);
    const c = await client();
    const ws = vscode.workspace.workspaceFolders![0]!.uri.fsPath;
    const { sessionId } = await c.call('session.create', { workspace: ws, label: 'panel-test' });
    try {
      const before = panel.posted.events ?? 0;
      await c.call('exec', { sessionId, argv: ['sh', '-c', 'curl -s -o /dev/null http://blocked.example/ || true'] });
      await waitFor('the net.connect event batch', () => (panel.posted.events ?? 0) > before, 10_000);
      // What the webview sends when "Allow 15 min" is clicked on that row.
      const handler = (panel as unknown as { onMessage(m: unknown): Promise<void> }).onMessage.bind(panel);
      await handler({ type: 'allow', sessionId, rule: 'blocked.example:80', minutes: 15 });
      const { rules } = await c.call('network.rules', { sessionId });
      const grant = rules.find((r: { rule: string; source: string }) => r.rule === 'blocked.example:80' && r.source === 'grant');
      assert.ok(grant, JSON.stringify(rules));
      const left = Date.parse(grant.expiresAt) - Date.now();
      assert.ok(left > 14 * 60_000 && left <= 15 * 60_000, `expires in ${left} ms`);
      const { records } = await c.call('audit.query', { sessionId, types: ['net.rule-added'] });
      assert.equal(records.at(-1)?.by, 'VS Code (Airlock panel)');
    } finally {
      await c.call('session.kill', { sessionId }).catch(() => undefined);
      panel.panel.dispose();
    }
  });
});
