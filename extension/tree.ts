/**
 * The "Airlock Sessions" tree (its own activity-bar container): live sessions → the
 * commands their shells reported (command line, exit code, duration; reported from
 * inside, so untrusted) → the outbound connections made while each command ran. Built
 * from the audit log when it opens and kept current by runtime events. The container's
 * badge counts connections denied in the last 10 minutes.
 */
import * as vscode from 'vscode';
import type { RuntimeEvent, SessionInfo } from '../runtime/protocol';
import { DENIAL_WINDOW_MS, RecentTimes } from './recent';
import type { RuntimeLink } from './runtime';

/** Connections kept under one command (the latest): the panel holds them all. */
export const NET_PER_NODE = 500;

interface Net {
  ts: number;
  sessionId: string;
  host: string;
  port: number;
  decision: string;
  rule: string;
  request: string;
}

/** A node's connections: the latest NET_PER_NODE, and how many there were in all. */
interface NetList {
  items: Net[];
  total: number;
}

interface Command {
  sessionId: string;
  line: string;
  start: number;
  end?: number;
  exitCode?: number | null;
  net: NetList;
}

function addNet(list: NetList, n: Net): void {
  list.total++;
  list.items.push(n);
  // Trimmed in batches, so a flood costs no copy per connection.
  if (list.items.length > NET_PER_NODE * 2) list.items = list.items.slice(-NET_PER_NODE);
}

function latest(list: NetList): Net[] {
  return list.items.length > NET_PER_NODE ? list.items.slice(-NET_PER_NODE) : list.items;
}

function netCount(list: NetList): string {
  const shown = Math.min(list.total, NET_PER_NODE);
  return `${list.total} connection${list.total === 1 ? '' : 's'}${shown < list.total ? ` (the latest ${shown} here; all in the Airlock panel)` : ''}`;
}

/** The last command of LIST (in start order) that was running at AT, without copying. */
function runningAt(list: Command[] | undefined, at: number, open?: boolean): Command | undefined {
  for (let i = (list?.length ?? 0) - 1; i >= 0; i--) {
    const c = list![i]!;
    if (open ? c.end === undefined : c.start <= at && (c.end === undefined || c.end >= at)) return c;
  }
  return undefined;
}

type Node =
  | { kind: 'session'; info: SessionInfo }
  | { kind: 'command'; command: Command }
  | { kind: 'other'; sessionId: string; net: NetList }
  | { kind: 'net'; net: Net };

export class SessionsTree implements vscode.TreeDataProvider<Node>, vscode.Disposable {
  private sessions: SessionInfo[] = [];
  private readonly commands = new Map<string, Command[]>();
  /** Connections outside any reported command (exec, MCP tools, agent terminals without integration). */
  private readonly loose = new Map<string, NetList>();
  private readonly denials = new RecentTimes();
  private readonly changed = new vscode.EventEmitter<Node | undefined>();
  readonly onDidChangeTreeData = this.changed.event;
  readonly view: vscode.TreeView<Node>;
  private readonly subs: vscode.Disposable[] = [];
  private timer: NodeJS.Timeout | undefined;
  private relist = false;

  constructor(private readonly link: RuntimeLink) {
    this.view = vscode.window.createTreeView('airlock.sessions', { treeDataProvider: this, showCollapseAll: true });
    this.subs.push(this.view, link.onEvent((e) => this.onEvent(e)), link.onDidChangeState((s) => s === 'connected' && this.reload()));
    const tick = setInterval(() => this.updateBadge(), 30_000);
    this.subs.push({ dispose: () => clearInterval(tick) });
    void this.reload();
  }

  /** Everything again from the runtime: its sessions and what the audit log holds of them. */
  async reload(): Promise<void> {
    if (this.link.state !== 'connected') return;
    const c = await this.link.client();
    const { sessions } = await c.call('session.list', {});
    this.sessions = sessions;
    this.commands.clear();
    this.loose.clear();
    this.denials.clear();
    const ids = new Set(sessions.map((s) => s.sessionId));
    const { records } = await c.call('audit.query', { types: ['command.start', 'command.end', 'net.connect'], limit: 20_000 });
    for (const { session, seq: _s, prev: _p, hash: _h, ...rest } of records) {
      if (ids.has(session)) this.apply({ ...rest, sessionId: session } as RuntimeEvent, false);
    }
    this.changed.fire(undefined);
    this.updateBadge();
  }

  private onEvent(e: RuntimeEvent): void {
    if (e.type === 'session.start' || e.type === 'session.end') {
      this.schedule(true);
      return;
    }
    if (this.apply(e, true)) this.schedule(false);
  }

  /** A burst of events redraws the tree once; only session changes ask the runtime again. */
  private schedule(sessionsChanged: boolean): void {
    this.relist ||= sessionsChanged;
    this.timer ??= setTimeout(() => {
      this.timer = undefined;
      const relist = this.relist;
      this.relist = false;
      if (relist) return void this.refreshSessions().catch(() => undefined);
      this.changed.fire(undefined);
      this.updateBadge();
    }, 200);
  }

  private async refreshSessions(): Promise<void> {
    if (this.link.state === 'connected') {
      const { sessions } = await (await this.link.client()).call('session.list', {});
      this.sessions = sessions;
      const live = new Set(sessions.map((s) => s.sessionId));
      for (const id of [...this.commands.keys(), ...this.loose.keys()]) if (!live.has(id)) (this.commands.delete(id), this.loose.delete(id));
    }
    this.changed.fire(undefined);
    this.updateBadge();
  }

  private apply(e: RuntimeEvent, live: boolean): boolean {
    const at = Date.parse(e.ts);
    if (e.type === 'command.start') {
      const list = this.commands.get(e.sessionId) ?? [];
      list.push({ sessionId: e.sessionId, line: String(e.commandLine ?? ''), start: at, net: { items: [], total: 0 } });
      this.commands.set(e.sessionId, list);
      return true;
    }
    if (e.type === 'command.end') {
      const open = runningAt(this.commands.get(e.sessionId), at, true);
      if (open) {
        open.end = at;
        open.exitCode = typeof e.exitCode === 'number' ? e.exitCode : null;
      }
      return true;
    }
    if (e.type === 'net.connect') {
      const n: Net = { ts: at, sessionId: e.sessionId, host: String(e.host ?? ''), port: Number(e.port ?? 0), decision: String(e.decision), rule: String(e.rule ?? ''), request: typeof e.method === 'string' ? `${e.method} ${String(e.path ?? '')}` : String(e.protocol ?? '') };
      if (n.decision === 'deny' && (live || Date.now() - at < DENIAL_WINDOW_MS)) this.denials.add(live ? Date.now() : at);
      // The command that was running in that session then (shell integration's report).
      const cmd = runningAt(this.commands.get(e.sessionId), at);
      if (cmd) addNet(cmd.net, n);
      else {
        const list = this.loose.get(e.sessionId) ?? { items: [], total: 0 };
        addNet(list, n);
        this.loose.set(e.sessionId, list);
      }
      return true;
    }
    return false;
  }

  private updateBadge(): void {
    const n = this.denials.count();
    this.view.badge = n ? { value: n, tooltip: `${n} connection${n === 1 ? '' : 's'} denied in the last 10 minutes` } : undefined;
  }

  getChildren(node?: Node): Node[] {
    if (!node) return this.sessions.map((info) => ({ kind: 'session', info }));
    if (node.kind === 'session') {
      const id = node.info.sessionId;
      const out: Node[] = (this.commands.get(id) ?? []).map((command) => ({ kind: 'command', command }));
      const loose = this.loose.get(id);
      if (loose?.total) out.push({ kind: 'other', sessionId: id, net: loose });
      return out;
    }
    if (node.kind === 'command') return latest(node.command.net).map((net) => ({ kind: 'net', net }));
    if (node.kind === 'other') return latest(node.net).map((net) => ({ kind: 'net', net }));
    return [];
  }

  getTreeItem(node: Node): vscode.TreeItem {
    if (node.kind === 'session') {
      const s = node.info;
      const item = new vscode.TreeItem(`${s.label ?? 'session'} ${s.sessionId.slice(0, 8)}`, vscode.TreeItemCollapsibleState.Expanded);
      item.description = s.workspace;
      item.tooltip = `${s.sessionId}\n${s.workspace}\n${s.processes.filter((p) => p.running).length} running, ${Math.round(s.lifetimeLeft / 60)} min left`;
      item.iconPath = new vscode.ThemeIcon('vm');
      item.contextValue = 'airlockSession';
      item.id = `s:${s.sessionId}`;
      return item;
    }
    if (node.kind === 'command') {
      const c = node.command;
      const running = c.end === undefined;
      const item = new vscode.TreeItem(c.line || '(empty command)', c.net.total ? vscode.TreeItemCollapsibleState.Collapsed : vscode.TreeItemCollapsibleState.None);
      item.description = `${running ? 'running' : `exit ${c.exitCode ?? '?'} · ${((c.end! - c.start) / 1000).toFixed(1)} s`}${c.net.total ? ` · ${netCount(c.net)}` : ''}`;
      item.tooltip = `${c.line}\nreported by the shell inside the sandbox (untrusted)\nstarted ${new Date(c.start).toLocaleTimeString()}`;
      item.iconPath = new vscode.ThemeIcon(running ? 'loading~spin' : c.exitCode === 0 ? 'pass' : 'error', running ? undefined : new vscode.ThemeColor(c.exitCode === 0 ? 'testing.iconPassed' : 'testing.iconFailed'));
      item.id = `c:${c.sessionId}:${c.start}:${c.line}`;
      return item;
    }
    if (node.kind === 'other') {
      const item = new vscode.TreeItem('Other connections', vscode.TreeItemCollapsibleState.Collapsed);
      item.description = `${netCount(node.net)} outside a reported command`;
      item.iconPath = new vscode.ThemeIcon('globe');
      item.id = `o:${node.sessionId}`;
      return item;
    }
    const n = node.net;
    const item = new vscode.TreeItem(`${n.host}:${n.port}`, vscode.TreeItemCollapsibleState.None);
    item.description = `${n.decision === 'allow' ? 'allowed' : 'denied'} · ${n.request} · ${n.rule}`;
    item.iconPath = new vscode.ThemeIcon(n.decision === 'allow' ? 'pass' : 'circle-slash', new vscode.ThemeColor(n.decision === 'allow' ? 'testing.iconPassed' : 'testing.iconFailed'));
    item.contextValue = n.decision === 'allow' ? 'airlockNetAllowed' : 'airlockNetDenied';
    item.tooltip = `${new Date(n.ts).toLocaleTimeString()} ${n.request} ${n.host}:${n.port}: ${n.decision} (${n.rule})`;
    return item;
  }

  dispose(): void {
    clearTimeout(this.timer);
    for (const d of this.subs.splice(0)) d.dispose();
    this.changed.dispose();
  }
}

/** What the tree's context menu hands a command. */
export function sessionIdOf(node: unknown): string | undefined {
  const n = node as Node | undefined;
  if (n?.kind === 'session') return n.info.sessionId;
  if (n?.kind === 'net') return n.net.sessionId;
  return undefined;
}

export function netRuleOf(node: unknown): string | undefined {
  const n = node as Node | undefined;
  return n?.kind === 'net' ? `${n.net.host}:${n.net.port}` : undefined;
}
