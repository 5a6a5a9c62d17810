/**
 * The extension's link to the runtime daemon: connects to it, starts it when none
 * runs (detached, so its sessions outlive this window; with VS Code's own Node or
 * Electron-as-Node), and reconnects when it restarts. Everything else in the
 * extension goes through `client()`.
 */
import * as vscode from 'vscode';
import type { RuntimeClient } from '../runtime/client/client';
import { RuntimeClient as Client } from '../runtime/client/client';
import { startDaemon } from '../runtime/client/daemon';
import { defaultSocketPath, RuntimeEvent } from '../runtime/protocol';

export type LinkState = 'connecting' | 'connected' | 'disconnected';

export class RuntimeLink implements vscode.Disposable {
  private current: RuntimeClient | undefined;
  private connecting: Promise<RuntimeClient> | undefined;
  private retry: NodeJS.Timeout | undefined;
  private disposed = false;
  state: LinkState = 'disconnected';
  private readonly changed = new vscode.EventEmitter<LinkState>();
  readonly onDidChangeState = this.changed.event;
  private readonly events = new vscode.EventEmitter<RuntimeEvent>();
  /** Runtime events (sessions, processes, network, secrets), once connected. */
  readonly onEvent = this.events.event;

  constructor(private readonly log: vscode.OutputChannel, readonly socket: string = defaultSocketPath()) {}

  /** The connected client, starting the daemon if none answers. */
  client(): Promise<RuntimeClient> {
    if (this.current) return Promise.resolve(this.current);
    this.connecting ??= this.open(true).finally(() => (this.connecting = undefined));
    return this.connecting;
  }

  /** Connects if a daemon already runs (never starts one): for status at activation. */
  async probe(): Promise<void> {
    if (this.current || this.connecting) return;
    this.connecting = this.open(false).finally(() => (this.connecting = undefined));
    await this.connecting.catch(() => undefined);
  }

  private async open(start: boolean): Promise<RuntimeClient> {
    this.setState('connecting');
    let c: RuntimeClient;
    try {
      c = await Client.connect({ socket: this.socket });
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (!start || (code !== 'ENOENT' && code !== 'ECONNREFUSED')) {
        this.setState('disconnected');
        throw e;
      }
      this.log.appendLine(`no runtime answers on ${this.socket}: starting one (${process.execPath})`);
      try {
        const { pid, log } = await startDaemon(this.socket, [], { ...process.env, ELECTRON_RUN_AS_NODE: '1' });
        this.log.appendLine(`runtime started (pid ${pid}); its log: ${log}`);
      } catch (err) {
        this.setState('disconnected');
        throw err;
      }
      c = await Client.connect({ socket: this.socket });
    }
    if (this.disposed) {
      c.close();
      throw new Error('the Airlock extension is shutting down');
    }
    this.current = c;
    c.on('event', (e) => this.events.fire(e));
    c.on('close', () => {
      if (this.current !== c) return;
      this.current = undefined;
      this.setState('disconnected');
      this.log.appendLine('the connection to the runtime closed; reconnecting when it is back');
      this.scheduleReconnect(1000);
    });
    await c.call('events.subscribe', { filter: ['session.*', 'process.*', 'command.*', 'net.*', 'secret.*', 'access.*'] });
    const info = await c.call('runtime.info', {});
    this.log.appendLine(`connected to the runtime ${info.version} (pid ${info.pid}) on ${this.socket}`);
    this.setState('connected');
    return c;
  }

  private scheduleReconnect(ms: number): void {
    if (this.disposed || this.retry) return;
    this.retry = setTimeout(() => {
      this.retry = undefined;
      this.open(false).catch(() => this.scheduleReconnect(Math.min(ms * 2, 30_000)));
    }, ms);
  }

  private setState(s: LinkState): void {
    if (this.state === s) return;
    this.state = s;
    this.changed.fire(s);
  }

  dispose(): void {
    this.disposed = true;
    clearTimeout(this.retry);
    this.current?.close();
    this.current = undefined;
    this.changed.dispose();
    this.events.dispose();
  }
}
