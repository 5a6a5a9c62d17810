/**
 * The status bar item: whether the runtime is reachable, how many sessions live, and
 * how many connections were denied in the last ten minutes (a click shows the log).
 */
import * as vscode from 'vscode';
import { RecentTimes } from './recent';
import type { RuntimeLink } from './runtime';

export class StatusItem implements vscode.Disposable {
  private readonly item = vscode.window.createStatusBarItem('airlock.status', vscode.StatusBarAlignment.Left, 100);
  private readonly subs: vscode.Disposable[] = [];
  private sessions = new Set<string>();
  private readonly denials = new RecentTimes();
  private timer: NodeJS.Timeout;
  /** Redraws wait this long, so a flood of events costs one status-bar update. */
  private pending: NodeJS.Timeout | undefined;

  constructor(private readonly link: RuntimeLink) {
    this.item.name = 'Airlock';
    this.item.command = 'airlock.showOutput';
    this.subs.push(link.onDidChangeState(() => void this.refresh()));
    this.subs.push(link.onEvent((e) => {
      if (e.type === 'session.start') this.sessions.add(e.sessionId);
      else if (e.type === 'session.end') this.sessions.delete(e.sessionId);
      else if (e.type === 'net.connect' && e.decision === 'deny') this.denials.add(Date.now());
      else return;
      this.pending ??= setTimeout(() => {
        this.pending = undefined;
        this.render();
      }, 250);
    }));
    this.timer = setInterval(() => this.render(), 30_000);
    this.render();
    this.item.show();
  }

  private async refresh(): Promise<void> {
    if (this.link.state === 'connected') {
      const c = await this.link.client();
      const { sessions } = await c.call('session.list', {});
      this.sessions = new Set(sessions.map((s) => s.sessionId));
    }
    this.render();
  }

  private render(): void {
    const state = this.link.state;
    const n = this.sessions.size;
    const denied = this.denials.count();
    this.item.text = state === 'connected'
      ? `$(shield) Airlock ${n}${denied ? `  $(circle-slash) ${denied}` : ''}`
      : state === 'connecting' ? '$(sync~spin) Airlock' : '$(shield) Airlock (off)';
    this.item.tooltip = state === 'connected'
      ? `Airlock: ${n} live session${n === 1 ? '' : 's'}; ${denied} connection${denied === 1 ? '' : 's'} denied in the last 10 minutes`
      : state === 'connecting' ? 'Airlock: connecting to the runtime' : 'Airlock: the runtime is not running (it starts with the first sandbox terminal)';
    this.item.backgroundColor = denied ? new vscode.ThemeColor('statusBarItem.warningBackground') : undefined;
  }

  dispose(): void {
    clearInterval(this.timer);
    clearTimeout(this.pending);
    for (const s of this.subs) s.dispose();
    this.item.dispose();
  }
}
