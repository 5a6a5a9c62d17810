/**
 * The "Airlock Sessions" tree: a sandbox terminal's session, the commands its shell
 * reported with exit codes, the connections each command made under it, the badge of
 * recent denials, and its context-menu action allowing a denied host for 15 minutes.
 */
import * as assert from 'node:assert/strict';
import * as vscode from 'vscode';
import { client, EXT, runInTerminal, waitFor } from './util';

type Node = { kind: string; info?: { sessionId: string }; command?: { line: string; exitCode?: number | null } };
type Tree = { getChildren(n?: Node): Node[]; getTreeItem(n: Node): vscode.TreeItem; view: vscode.TreeView<Node> };

describe('Airlock Sessions tree', function () {
  this.timeout(120_000);

  it('shows the session, its commands with exit codes and their connections; a denied one can be allowed for 15 minutes', async () => {
    const api = (await vscode.extensions.getExtension(EXT)!.activate()) as { tree: Tree };
    const t = (await vscode.commands.executeCommand<vscode.Terminal>('airlock.newTerminal'))!;
    try {
      const r = await runInTerminal(t, 'curl -s -o /dev/null -w "%{http_code}\\n" http://denied.example/; exit_code_is=3; (exit 3)');
      assert.equal(r.exitCode, 3);
      const c = await client();
      const { sessions } = await c.call('session.list', {});
      const sessionId = sessions.find((s: { label?: string }) => s.label === 'vscode-terminal').sessionId as string;
      const session = await waitFor('the session in the tree', () => api.tree.getChildren().find((n) => n.info?.sessionId === sessionId));
      const cmd = await waitFor('the command with its connection', () => api.tree.getChildren(session).find((n) => n.command?.line.includes('denied.example') && n.command.exitCode === 3 && api.tree.getChildren(n).length > 0))
        .catch((e: Error) => assert.fail(`${e.message}; the session's children: ${JSON.stringify(api.tree.getChildren(session).map((n) => [api.tree.getTreeItem(n).label, api.tree.getTreeItem(n).description]))}`));
      const item = api.tree.getTreeItem(cmd);
      assert.match(String(item.description), /^exit 3 · [\d.]+ s · 1 connection$/);
      const [net] = api.tree.getChildren(cmd);
      const netItem = api.tree.getTreeItem(net!);
      assert.equal(netItem.label, 'denied.example:80');
      assert.equal(netItem.contextValue, 'airlockNetDenied');
      await waitFor('the badge to count the denial', () => (api.tree.view.badge?.value ?? 0) >= 1, 5000);
      // The context-menu action on that row.
      await vscode.commands.executeCommand('airlock.allowHost', net);
      const { rules } = await c.call('network.rules', { sessionId });
      const grant = rules.find((x: { rule: string; source: string }) => x.rule === 'denied.example:80' && x.source === 'grant');
      assert.ok(grant, JSON.stringify(rules));
      assert.ok(Date.parse(grant.expiresAt) - Date.now() > 14 * 60_000);
      // The session's timeline, from the tree's context menu: in order, chain verified.
      const editor = (await vscode.commands.executeCommand<vscode.TextEditor>('airlock.showTimeline', session))!;
      const text = editor.document.getText();
      assert.match(text, new RegExp(`^# Airlock session ${sessionId}`));
      assert.match(text, /Audit chain: verified: the log's \d+ records are unchanged and in order/);
      const order = ['session | started', 'process | started', '**DENIED** GET / denied.example:80', '→ exit 3', 'grant | denied.example:80 allowed until'].map((x) => text.indexOf(x));
      assert.ok(order.every((i) => i > 0), `${JSON.stringify(order)}\n${text}`);
      assert.deepEqual([...order].sort((a, b) => a - b), order, 'in the order it happened');
      await vscode.window.showTextDocument(editor.document);
      await vscode.commands.executeCommand('workbench.action.revertAndCloseActiveEditor');
      await vscode.commands.executeCommand('workbench.action.closeAllEditors');
    } finally {
      t.dispose();
    }
  });
});
