/**
 * The "Airlock Sandbox" terminal: a Pseudoterminal on a PTY of the runtime. The shell
 * runs inside the sandbox; its shell integration (OSC 633) flows through unchanged, so
 * VS Code shows command decorations. Closing the terminal ends its session; reloading
 * the window does not: the terminal comes back attached to the same process, with its
 * recent output replayed.
 */
import { TextDecoder } from 'node:util';
import * as vscode from 'vscode';
import type { AttachedProcess } from '../runtime/client/client';
import { userPolicy } from './routing';
import type { RuntimeLink } from './runtime';

/** What is remembered per open sandbox terminal, to reattach after a window reload. */
export interface TerminalRecord {
  sessionId: string;
  processId: string;
}

const MEMENTO_KEY = 'airlock.terminals';

export class TerminalStore {
  constructor(private readonly memento: vscode.Memento) {}
  all(): TerminalRecord[] {
    return this.memento.get<TerminalRecord[]>(MEMENTO_KEY, []);
  }
  add(r: TerminalRecord): Thenable<void> {
    return this.memento.update(MEMENTO_KEY, [...this.all().filter((x) => x.processId !== r.processId), r]);
  }
  remove(processId: string): Thenable<void> {
    return this.memento.update(MEMENTO_KEY, this.all().filter((x) => x.processId !== processId));
  }
}

export class SandboxPty implements vscode.Pseudoterminal {
  private readonly writes = new vscode.EventEmitter<string>();
  private readonly closes = new vscode.EventEmitter<number | void>();
  readonly onDidWrite = this.writes.event;
  readonly onDidClose = this.closes.event;
  private proc: AttachedProcess | undefined;
  private record: TerminalRecord | undefined;
  private readonly decoder = new TextDecoder('utf-8');
  private dims: vscode.TerminalDimensions | undefined;
  private userClosed = false;
  /** Input typed (or sent by VS Code) before the process is attached: sent once it is. */
  private pending: Buffer[] = [];

  constructor(
    private readonly link: RuntimeLink,
    private readonly store: TerminalStore,
    private readonly log: vscode.OutputChannel,
    private readonly opts: { workspace: string; reattach?: TerminalRecord },
  ) {}

  /** The session this terminal runs in, once it is open. */
  get sessionId(): string | undefined {
    return this.record?.sessionId;
  }

  open(dims: vscode.TerminalDimensions | undefined): void {
    this.dims = dims;
    void this.start().catch((e: Error) => {
      this.writes.fire(`\r\n\x1b[31mAirlock could not open a sandbox terminal: ${e.message.replace(/\n/g, '\r\n')}\x1b[0m\r\n`);
      this.log.appendLine(`sandbox terminal failed: ${e.message}`);
      this.closes.fire(1);
    });
  }

  private async start(): Promise<void> {
    const c = await this.link.client();
    let rec = this.opts.reattach;
    if (!rec) {
      const { sessionId } = await c.call('session.create', { workspace: this.opts.workspace, label: 'vscode-terminal', env: terminalEnv(), policy: userPolicy() });
      const { processId } = await c.call('process.start', { sessionId, shell: true, pty: true, cols: this.dims?.columns ?? 80, rows: this.dims?.rows ?? 24 });
      rec = { sessionId, processId };
      this.log.appendLine(`sandbox terminal: session ${sessionId}, process ${processId}`);
    } else {
      this.log.appendLine(`sandbox terminal: reattaching to ${rec.processId}`);
    }
    this.record = rec;
    await this.store.add(rec);
    // The replay arrives inside attach(), before it returns: its bytes are acknowledged
    // once the handle exists (the terminal has shown them by then).
    let early = 0;
    const proc = await c.attach(rec.processId, (_kind, data) => {
      this.writes.fire(this.decoder.decode(data, { stream: true }));
      if (this.proc) this.proc.ack(data.length);
      else early += data.length;
    }, { autoAck: false });
    this.proc = proc;
    if (early) proc.ack(early);
    for (const b of this.pending.splice(0)) proc.write(b);
    if (this.opts.reattach && this.dims) void c.call('process.resize', { processId: rec.processId, cols: this.dims.columns, rows: this.dims.rows }).catch(() => undefined);
    void proc.exited.then((x) => {
      void this.store.remove(rec.processId);
      if (this.userClosed) return;
      if (x.reason === 'connection to the runtime closed') {
        this.writes.fire('\r\n\x1b[33m[Airlock: the connection to the runtime closed; reopen the terminal]\x1b[0m\r\n');
      }
      this.closes.fire(x.code ?? undefined);
    });
  }

  handleInput(data: string): void {
    const b = Buffer.from(data, 'utf8');
    if (this.proc) this.proc.write(b);
    else if (!this.userClosed) this.pending.push(b);
  }

  setDimensions(dims: vscode.TerminalDimensions): void {
    this.dims = dims;
    const id = this.record?.processId;
    if (id) void this.link.client().then((c) => c.call('process.resize', { processId: id, cols: dims.columns, rows: dims.rows })).catch(() => undefined);
  }

  /** The person closed the terminal: its session ends (a window reload never calls this). */
  close(): void {
    this.userClosed = true;
    const rec = this.record;
    if (!rec) return;
    void this.store.remove(rec.processId);
    void this.link.client().then((c) => c.call('session.kill', { sessionId: rec.sessionId, reason: 'its VS Code terminal was closed' })).catch(() => undefined);
  }
}

/** What a terminal's shell may take from VS Code's environment: terminal type and language. */
function terminalEnv(): Record<string, string> {
  const env: Record<string, string> = { TERM: 'xterm-256color', COLORTERM: 'truecolor' };
  for (const k of ['LANG', 'LANGUAGE', 'TZ']) if (process.env[k]) env[k] = process.env[k]!;
  return env;
}

/** Opens a sandbox terminal (new, or reattached to a process that outlived a reload). */
export function openSandboxTerminal(deps: { link: RuntimeLink; store: TerminalStore; log: vscode.OutputChannel }, workspace: string, reattach?: TerminalRecord): vscode.Terminal {
  const pty = new SandboxPty(deps.link, deps.store, deps.log, { workspace, reattach });
  const t = vscode.window.createTerminal({ name: 'Airlock Sandbox', pty, iconPath: new vscode.ThemeIcon('shield') });
  t.show();
  return t;
}
