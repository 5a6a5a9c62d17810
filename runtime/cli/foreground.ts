/**
 * Wires one sandboxed process to this terminal through the daemon: output to
 * stdout/stderr (acknowledged once written, so a flood pauses the process), input
 * from stdin (raw for a PTY, with flow control for pipes), window size, signals.
 */
import type { AttachedProcess, RuntimeClient, ProcessExitNote } from '../client/client';
import { FrameKind } from '../protocol';

export interface ForegroundOptions {
  client: RuntimeClient;
  processId: string;
  pty: boolean;
  /** Called when this terminal goes away (SIGHUP): detach instead of waiting. */
  onHangup?: () => void;
}

export interface ForegroundResult {
  exit: ProcessExitNote | null;
  /** True when we left because the terminal closed, with the process still running. */
  detached: boolean;
}

export async function runForeground(o: ForegroundOptions): Promise<ForegroundResult> {
  const out = process.stdout;
  const err = process.stderr;
  const closed = new Set<NodeJS.WriteStream>();
  let attached: AttachedProcess | undefined;
  const write = (stream: NodeJS.WriteStream, d: Buffer): void => {
    if (closed.has(stream)) return attached?.ack(d.length);
    stream.write(d, () => attached?.ack(d.length));
  };
  // Acked once written (write() above), replay included: auto-acking too would count
  // the replay twice and let the daemon run that far past its window.
  attached = await o.client.attach(o.processId, (kind, d) => write(kind === FrameKind.Stderr ? err : out, d), { autoAck: false });
  const a = attached;
  for (const stream of [out, err]) {
    stream.on('error', () => {
      if (closed.has(stream)) return;
      closed.add(stream);
      // The reader went away (`| head`): the process gets SIGPIPE, as it would itself.
      void o.client.call('process.signal', { processId: o.processId, signal: 'SIGPIPE' }).catch(() => {});
    });
  }
  const cleanups: (() => void)[] = [];
  let hungUp!: () => void;
  const hangup = new Promise<null>((r) => (hungUp = () => r(null)));
  const onHup = (): void => hungUp();
  process.on('SIGHUP', onHup);
  cleanups.push(() => process.off('SIGHUP', onHup));

  const stdin = process.stdin;
  if (o.pty && stdin.isTTY) {
    stdin.setRawMode(true);
    const resize = (): void => void o.client.call('process.resize', { processId: o.processId, cols: out.columns, rows: out.rows }).catch(() => {});
    out.on('resize', resize);
    resize();
    cleanups.push(() => {
      out.off('resize', resize);
      stdin.setRawMode(false);
    });
  } else {
    // Ctrl-C at the caller's terminal reaches the sandboxed process group, as it would locally.
    const forward = (sig: NodeJS.Signals): void => void o.client.call('process.signal', { processId: o.processId, signal: sig }).catch(() => {});
    process.on('SIGINT', forward);
    process.on('SIGQUIT', forward);
    cleanups.push(() => {
      process.off('SIGINT', forward);
      process.off('SIGQUIT', forward);
    });
    stdin.on('end', () => void o.client.call('process.input', { processId: o.processId, eof: true }).catch(() => {}));
  }
  const onData = (d: Buffer): void => {
    if (!a.write(d)) {
      stdin.pause();
      a.once('drain', () => stdin.resume());
    }
  };
  stdin.on('data', onData);
  stdin.on('error', () => {});
  stdin.resume();
  cleanups.push(() => {
    stdin.off('data', onData);
    stdin.pause();
  });

  const exit = await Promise.race([a.exited, hangup]);
  for (const c of cleanups) c();
  if (exit === null) {
    o.onHangup?.();
    return { exit: null, detached: true };
  }
  if (!closed.has(out)) await new Promise<void>((r) => out.write('', () => r()));
  return { exit, detached: false };
}

/** The exit status a shell would report: the code, or 128+N for signal N. */
export function exitStatus(x: ProcessExitNote, signalNumber: (s: NodeJS.Signals) => number): number {
  if (x.signal) return 128 + signalNumber(x.signal as NodeJS.Signals);
  return x.code ?? 1;
}
