/**
 * While a sandbox session runs on a workspace, empty placeholders (`.vscode/`, `.envrc`,
 * `.mcp.json`, …) stand on the host where absent read-only paths are, so nothing inside
 * can create them (host tools would run or trust what it wrote). They appear in the
 * Explorer; this marks each with a badge and a tooltip saying what it is and that it
 * goes away with the last session.
 */
import * as vscode from 'vscode';
import type { RuntimeLink } from './runtime';

export class PlaceholderDecorations implements vscode.FileDecorationProvider, vscode.Disposable {
  private paths = new Set<string>();
  private readonly changed = new vscode.EventEmitter<vscode.Uri[]>();
  readonly onDidChangeFileDecorations = this.changed.event;
  private readonly subs: vscode.Disposable[] = [];
  private timer: NodeJS.Timeout | undefined;

  constructor(private readonly link: RuntimeLink) {
    this.subs.push(vscode.window.registerFileDecorationProvider(this));
    this.subs.push(link.onEvent((e) => {
      if (e.type === 'session.start' || e.type === 'session.end') this.schedule();
    }));
    this.subs.push(link.onDidChangeState(() => this.schedule()));
    this.schedule();
  }

  private schedule(): void {
    clearTimeout(this.timer);
    this.timer = setTimeout(() => void this.refresh().catch(() => undefined), 200);
  }

  private async refresh(): Promise<void> {
    if (this.link.state !== 'connected') return this.set(new Set());
    const c = await this.link.client();
    const { sessions } = await c.call('session.list', {});
    this.set(new Set(sessions.flatMap((s) => s.placeholders ?? [])));
  }

  private set(next: Set<string>): void {
    const touched = [...new Set([...this.paths, ...next])].filter((p) => this.paths.has(p) !== next.has(p));
    this.paths = next;
    if (touched.length) this.changed.fire(touched.map((p) => vscode.Uri.file(p)));
  }

  provideFileDecoration(uri: vscode.Uri): vscode.FileDecoration | undefined {
    if (uri.scheme !== 'file' || !this.paths.has(uri.fsPath)) return undefined;
    return {
      badge: 'RO',
      tooltip: 'Airlock placeholder: keeps sandboxed processes from creating this path (host tools would run or trust it). Removed when the last sandbox session here ends.',
      color: new vscode.ThemeColor('disabledForeground'),
    };
  }

  dispose(): void {
    clearTimeout(this.timer);
    for (const d of this.subs) d.dispose();
    this.changed.dispose();
  }
}
