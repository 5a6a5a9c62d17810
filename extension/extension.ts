/**
 * The Airlock extension's entry: finds (or starts) the runtime and registers what the
 * user sees. It runs no sandboxed code itself and loads no native module: the runtime
 * daemon owns every sandbox (see docs/design.md).
 */
import * as path from 'node:path';
import * as vscode from 'vscode';
import { registerCommands } from './commands';
import { AirlockPanel, PANEL_VIEW_TYPE } from './panel';
import { PlaceholderDecorations } from './placeholders';
import { SessionsTree } from './tree';
import { route, stopRouting, writeShim, writeUserPolicy } from './routing';
import { RuntimeLink } from './runtime';
import { StatusItem } from './status';
import { openSandboxTerminal, SandboxPty, TerminalStore } from './terminal';

export function activate(context: vscode.ExtensionContext): { link: RuntimeLink; store: TerminalStore; panel: () => AirlockPanel | undefined; tree: SessionsTree } {
  const log = vscode.window.createOutputChannel('Airlock');
  const link = new RuntimeLink(log);
  const store = new TerminalStore(context.workspaceState);
  const deps = { context, link, store, log };
  const tree = new SessionsTree(link);
  context.subscriptions.push(log, link, new StatusItem(link), new PlaceholderDecorations(link), tree, ...registerCommands(deps));
  log.appendLine(`Airlock activated (extension host ${process.version}, ${process.execPath})`);

  context.subscriptions.push(vscode.window.registerTerminalProfileProvider('airlock.sandbox', {
    provideTerminalProfile: () => {
      const ws = vscode.workspace.workspaceFolders?.[0]?.uri.fsPath;
      if (!ws) throw new Error('Airlock: open a folder first: the sandbox is rooted at the workspace folder');
      return new vscode.TerminalProfile({ name: 'Airlock Sandbox', pty: new SandboxPty(link, store, log, { workspace: ws }), iconPath: new vscode.ThemeIcon('shield') });
    },
  }));

  // MCP clients in VS Code (agent mode) find the sandbox's MCP server by themselves.
  const cli = path.join(context.extensionPath, 'dist', 'airlock.js');
  if (vscode.lm?.registerMcpServerDefinitionProvider) {
    context.subscriptions.push(vscode.lm.registerMcpServerDefinitionProvider('airlock', {
      provideMcpServerDefinitions: () => {
        const ws = vscode.workspace.workspaceFolders?.[0]?.uri.fsPath;
        return [new vscode.McpStdioServerDefinition('Airlock sandbox', process.execPath, [cli, 'mcp', '--policy', writeUserPolicy(context), ...(ws ? ['--workspace', ws] : [])], { ELECTRON_RUN_AS_NODE: '1' })];
      },
    }));
  }

  // The shim is rewritten at every start: it names this VS Code's Node, which an update moves.
  try {
    writeShim(context);
  } catch (e) {
    log.appendLine(`cannot write the agent terminal shim: ${(e as Error).message}`);
  }
  // The setting and the commands agree: turning it on routes, off restores.
  const applyRouting = async (): Promise<void> => {
    const on = vscode.workspace.getConfiguration('airlock').get<boolean>('routeAgentTerminals', false);
    if (on) await route(context, writeShim(context), vscode.workspace.getConfiguration('airlock').get<'user' | 'workspace'>('routeScope', 'user'));
    else await stopRouting(context);
  };
  context.subscriptions.push(vscode.workspace.onDidChangeConfiguration((e) => {
    if (e.affectsConfiguration('airlock.routeAgentTerminals') || e.affectsConfiguration('airlock.routeScope')) void applyRouting().catch((err: Error) => log.appendLine(`routing: ${err.message}`));
    if (e.affectsConfiguration('airlock.policy')) {
      try {
        writeUserPolicy(context);
      } catch (err) {
        log.appendLine(`cannot write the policy file: ${(err as Error).message}`);
      }
    }
  }));
  if (vscode.workspace.getConfiguration('airlock').get<boolean>('routeAgentTerminals', false)) void applyRouting().catch((err: Error) => log.appendLine(`routing: ${err.message}`));

  // The Airlock panel: opened by a command, and given back by VS Code after a reload.
  context.subscriptions.push(
    vscode.commands.registerCommand('airlock.showPanel', () => AirlockPanel.show({ context, link })),
    vscode.window.registerWebviewPanelSerializer(PANEL_VIEW_TYPE, {
      deserializeWebviewPanel: async (panel) => {
        AirlockPanel.revive(panel, { context, link });
      },
    }),
    { dispose: () => AirlockPanel.open?.dispose() },
  );

  // A workspace's own policy that tried to loosen the sandbox: say what was ignored.
  context.subscriptions.push(link.onEvent((e) => {
    const ev = e as unknown as { type: string; workspace?: string; policyIgnored?: string };
    const ws = vscode.workspace.workspaceFolders?.[0]?.uri.fsPath;
    if (ev.type !== 'session.start' || !ev.policyIgnored || ev.workspace !== ws) return;
    log.appendLine(ev.policyIgnored);
    void vscode.window.showWarningMessage(`Airlock: ${ev.policyIgnored}`, 'Open Policy').then((a) => {
      if (a === 'Open Policy') void vscode.commands.executeCommand('airlock.openPolicy');
    });
  }));

  // Sandbox terminals that outlived a window reload come back, attached to the same process.
  void reattach(deps).catch((e: Error) => log.appendLine(`reattach: ${e.message}`));
  void link.probe();
  return { link, store, panel: () => AirlockPanel.open, tree };
}

async function reattach(deps: { link: RuntimeLink; store: TerminalStore; log: vscode.OutputChannel }): Promise<void> {
  const saved = deps.store.all();
  const ws = vscode.workspace.workspaceFolders?.[0]?.uri.fsPath;
  if (saved.length === 0 || !ws) return;
  const c = await deps.link.client();
  for (const r of saved) {
    const running = await c.call('session.get', { sessionId: r.sessionId }).then((s) => s.processes.some((p) => p.processId === r.processId && p.running), () => false);
    if (running) openSandboxTerminal(deps, ws, r);
    else await deps.store.remove(r.processId);
  }
}

export function deactivate(): void {}
