/** Helpers the VS Code tests share: waiting, running a command in a terminal, the runtime client. */
import * as vscode from 'vscode';

export const EXT = 'airlock-dev.airlock';

// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type Client = { call(m: string, p: unknown): Promise<any> };

/** The extension's own connection to the runtime (its exports). */
export const client = async (): Promise<Client> => (vscode.extensions.getExtension(EXT)!.exports as { link: { client(): Promise<Client> } }).link.client();

export async function waitFor<T>(what: string, fn: () => T | undefined | Promise<T | undefined>, ms = 30_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v !== undefined && v !== null && v !== false) return v;
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** Runs COMMAND through TERMINAL's shell integration; its output and exit code. */
export async function runInTerminal(terminal: vscode.Terminal, command: string): Promise<{ output: string; exitCode: number | undefined }> {
  const si = terminal.shellIntegration ?? await within(20_000, `shell integration of terminal "${terminal.name}" (exit status ${JSON.stringify(terminal.exitStatus)})`, new Promise<vscode.TerminalShellIntegration>((resolve) => {
    const d = vscode.window.onDidChangeTerminalShellIntegration((e) => {
      if (e.terminal === terminal) {
        d.dispose();
        resolve(e.shellIntegration);
      }
    });
  }));
  const ended = new Promise<vscode.TerminalShellExecutionEndEvent>((resolve) => {
    const d = vscode.window.onDidEndTerminalShellExecution((e) => {
      if (e.terminal === terminal) {
        d.dispose();
        resolve(e);
      }
    });
  });
  const exec = si.executeCommand(command);
  let output = '';
  await within(30_000, `the output of ${JSON.stringify(command)} (so far: ${JSON.stringify(output.slice(-300))})`, (async () => {
    for await (const chunk of exec.read()) output += chunk;
  })());
  const e = await within(10_000, `the end of ${JSON.stringify(command)}`, ended);
  return { output, exitCode: e.exitCode };
}

export function within<T>(ms: number, what: string, p: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout;
  return Promise.race([p.finally(() => clearTimeout(timer)), new Promise<T>((_, reject) => (timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms)))]);
}

