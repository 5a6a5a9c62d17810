/**
 * The "Airlock" webview panel: live sessions, their secrets, every outbound connection
 * and pending access requests. The extension sends a snapshot (the runtime's lists and
 * the audit log's network records) and then runtime events in batches; the webview
 * (webview/main.ts) keeps the model (webview/state.ts) and sends back what a person
 * clicked. Each action is a runtime call made here, on the person's behalf, and
 * audited by the runtime with who made it.
 */
import * as crypto from 'node:crypto';
import * as vscode from 'vscode';
import type { RuntimeEvent } from '../runtime/protocol';
import type { FromPanel, ToPanel } from '../webview/messages';
import type { Snapshot } from '../webview/state';
import type { RuntimeLink } from './runtime';

export const PANEL_VIEW_TYPE = 'airlock.panel';
/** Live events are sent at most this often (a flood of 1 000/s is 10 messages). */
const BATCH_MS = 100;
/** Network records in a snapshot (the model's own cap is higher). */
const SNAPSHOT_NET = 100_000;

export class AirlockPanel implements vscode.Disposable {
  private static current: AirlockPanel | undefined;
  private readonly subs: vscode.Disposable[] = [];
  private queue: RuntimeEvent[] = [];
  private timer: NodeJS.Timeout | undefined;
  /** Events held while a snapshot is being built (sent after it). */
  private holding: RuntimeEvent[] | null = null;
  /** Messages posted, for tests: how many of each type. */
  readonly posted: Record<string, number> = {};

  static show(deps: PanelDeps): AirlockPanel {
    if (AirlockPanel.current) {
      AirlockPanel.current.panel.reveal();
      return AirlockPanel.current;
    }
    const panel = vscode.window.createWebviewPanel(PANEL_VIEW_TYPE, 'Airlock', vscode.ViewColumn.Active, options(deps.context));
    return (AirlockPanel.current = new AirlockPanel(panel, deps));
  }

  /** After a window reload VS Code hands the panel back (registerWebviewPanelSerializer). */
  static revive(panel: vscode.WebviewPanel, deps: PanelDeps): AirlockPanel {
    panel.webview.options = options(deps.context);
    AirlockPanel.current?.dispose();
    return (AirlockPanel.current = new AirlockPanel(panel, deps));
  }

  static get open(): AirlockPanel | undefined {
    return AirlockPanel.current;
  }

  private constructor(readonly panel: vscode.WebviewPanel, private readonly deps: PanelDeps) {
    panel.webview.html = html(panel.webview, deps.context.extensionUri);
    this.subs.push(
      panel.onDidDispose(() => this.dispose()),
      panel.webview.onDidReceiveMessage((m: FromPanel) => void this.onMessage(m).catch((e: Error) => this.post({ type: 'notice', level: 'error', text: e.message }))),
      deps.link.onEvent((e) => this.onEvent(e)),
      deps.link.onDidChangeState((state) => {
        this.post({ type: 'connection', state });
        if (state === 'connected') void this.sendSnapshot().catch(() => undefined);
      }),
    );
  }

  private onEvent(e: RuntimeEvent): void {
    if (this.holding) {
      this.holding.push(e);
      return;
    }
    this.queue.push(e);
    this.timer ??= setTimeout(() => this.flush(), BATCH_MS);
  }

  private flush(): void {
    this.timer = undefined;
    if (this.queue.length === 0) return;
    const events = this.queue;
    this.queue = [];
    this.post({ type: 'events', events });
  }

  private post(m: ToPanel): void {
    this.posted[m.type] = (this.posted[m.type] ?? 0) + 1;
    void this.panel.webview.postMessage(m);
  }

  private snapshotting: Promise<void> | undefined;

  /**
   * The runtime's lists and the audit log's network records, then what came meanwhile.
   * One at a time ('ready' and a reconnect can ask together): a second caller shares
   * the one in flight, so events held for it are never let through before it.
   */
  sendSnapshot(): Promise<void> {
    this.snapshotting ??= this.buildSnapshot().finally(() => (this.snapshotting = undefined));
    return this.snapshotting;
  }

  private async buildSnapshot(): Promise<void> {
    this.holding = [];
    try {
      const c = await this.deps.link.client();
      const takenAt = Date.now();
      const [{ sessions }, { requests }, { records }] = await Promise.all([
        c.call('session.list', {}),
        c.call('access.list', { state: 'pending' }),
        c.call('audit.query', { types: ['net.connect', 'net.close'], limit: SNAPSHOT_NET }),
      ]);
      const secrets: Snapshot['secrets'] = {};
      const grants: NonNullable<Snapshot['grants']> = {};
      await Promise.all(sessions.map(async (s) => {
        secrets[s.sessionId] = (await c.call('secret.list', { sessionId: s.sessionId }).catch(() => ({ secrets: [] }))).secrets;
        const { rules } = await c.call('network.rules', { sessionId: s.sessionId }).catch(() => ({ rules: [] }));
        grants[s.sessionId] = rules.filter((r) => r.source === 'grant' && r.effect === 'allow' && r.expiresAt).map((r) => ({ rule: r.rule, expiresAt: r.expiresAt! }));
      }));
      const net = records.map(({ seq: _s, prev: _p, hash: _h, session, ...rest }) => ({ ...rest, sessionId: session }) as RuntimeEvent);
      this.post({ type: 'snapshot', snapshot: { sessions, secrets, requests, net, grants, takenAt } });
    } finally {
      const held = this.holding ?? [];
      this.holding = null;
      if (held.length) this.post({ type: 'events', events: held });
    }
  }

  private async onMessage(m: FromPanel): Promise<void> {
    const c = await this.deps.link.client();
    switch (m.type) {
      case 'ready':
        this.post({ type: 'connection', state: this.deps.link.state });
        return this.sendSnapshot();
      case 'kill':
        await c.call('session.kill', { sessionId: m.sessionId, reason: 'killed from the Airlock panel' });
        return;
      case 'allow': {
        const minutes = Math.min(Math.max(Math.round(m.minutes), 1), 24 * 60);
        await c.call('network.allow', { sessionId: m.sessionId, rule: m.rule, ttlSeconds: minutes * 60, by: 'VS Code (Airlock panel)' });
        this.post({ type: 'notice', level: 'info', text: `Allowed ${m.rule} for ${minutes} minutes in session ${m.sessionId}.` });
        return;
      }
      case 'grant':
        await vscode.commands.executeCommand('airlock.grantSecret', { sessionId: m.sessionId });
        return;
      case 'revoke':
        await c.call('secret.revoke', { sessionId: m.sessionId, name: m.name, by: 'VS Code (Airlock panel)' });
        return;
      case 'decide':
        await c.call('access.decide', { requestId: m.requestId, approve: m.approve, by: 'VS Code (Airlock panel)', ...(m.approve && m.minutes ? { ttlSeconds: Math.round(m.minutes * 60) } : {}) });
        return;
    }
  }

  dispose(): void {
    if (AirlockPanel.current === this) AirlockPanel.current = undefined;
    clearTimeout(this.timer);
    for (const d of this.subs.splice(0)) d.dispose();
    this.panel.dispose();
  }
}

export interface PanelDeps {
  context: vscode.ExtensionContext;
  link: RuntimeLink;
}

function options(context: vscode.ExtensionContext): vscode.WebviewOptions & vscode.WebviewPanelOptions {
  return {
    enableScripts: true,
    localResourceRoots: [vscode.Uri.joinPath(context.extensionUri, 'dist', 'webview')],
  };
}

/** The page: nothing loads but our script and styles (CSP default-src 'none', a nonce). */
function html(webview: vscode.Webview, root: vscode.Uri): string {
  const nonce = crypto.randomBytes(16).toString('base64');
  const asset = (f: string): string => webview.asWebviewUri(vscode.Uri.joinPath(root, 'dist', 'webview', f)).toString();
  const csp = [
    "default-src 'none'",
    `script-src 'nonce-${nonce}'`,
    `style-src ${webview.cspSource} 'nonce-${nonce}'`,
    `font-src ${webview.cspSource}`,
  ].join('; ');
  return `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="UTF-8">
<meta http-equiv="Content-Security-Policy" content="${csp}">
<meta name="viewport" content="width=device-width, initial-scale=1.0">
<link rel="stylesheet" href="${asset('codicon.css')}" id="vscode-codicon-stylesheet">
<link rel="stylesheet" href="${asset('panel.css')}">
<title>Airlock</title>
</head>
<body>
<main id="app" aria-label="Airlock"></main>
<script nonce="${nonce}" src="${asset('main.js')}"></script>
</body>
</html>`;
}
