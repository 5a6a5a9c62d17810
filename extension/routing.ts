/**
 * Routing VS Code's agent terminal tool (`run_in_terminal`) into the sandbox: the
 * setting `chat.tools.terminal.terminalProfile.linux` names an executable the agent's
 * terminal starts instead of the user's shell. Ours is a shim named `bash` (so VS Code
 * hands it its shell-integration `--init-file`), running `airlock agent-shell`: a
 * sandboxed bash bridged to that terminal. Stopping restores the exact previous value
 * in the exact scope it was in.
 *
 * Scope: "user" (the default) routes the agent in every window of this user;
 * "workspace" only in this workspace (written to its .vscode/settings.json).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as vscode from 'vscode';

export const PROFILE_SETTING = 'chat.tools.terminal.terminalProfile.linux';
const SAVED_KEY = 'airlock.routing.previous';

interface Saved {
  scope: 'user' | 'workspace';
  /** The value that scope held before routing; absent when it held none. */
  value?: unknown;
  had: boolean;
}

/** The person's own policy (setting airlock.policy), as a file the CLI reads: GLOBALSTORAGE/policy.json. */
export function userPolicy(): Record<string, unknown> {
  return vscode.workspace.getConfiguration('airlock').get<Record<string, unknown>>('policy', {}) ?? {};
}

export function writeUserPolicy(context: vscode.ExtensionContext): string {
  fs.mkdirSync(context.globalStorageUri.fsPath, { recursive: true, mode: 0o700 });
  const file = path.join(context.globalStorageUri.fsPath, 'policy.json');
  const tmp = `${file}.${process.pid}.tmp`;
  fs.writeFileSync(tmp, JSON.stringify(userPolicy(), null, 2) + '\n', { mode: 0o600 });
  fs.renameSync(tmp, file);
  return file;
}

/** Writes GLOBALSTORAGE/bin/bash: runs this extension's CLI with VS Code's own Node. */
export function writeShim(context: vscode.ExtensionContext): string {
  const dir = path.join(context.globalStorageUri.fsPath, 'bin');
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  const file = path.join(dir, 'bash');
  const q = (s: string): string => `'${s.replace(/'/g, `'\\''`)}'`;
  const cli = path.join(context.extensionPath, 'dist', 'airlock.js');
  // ELECTRON_RUN_AS_NODE: in desktop VS Code, process.execPath is Electron.
  const policy = writeUserPolicy(context);
  const text = `#!/bin/sh\n# Written by the Airlock extension: VS Code's agent terminal runs this instead of bash.\nAIRLOCK_POLICY_FILE=${q(policy)} ELECTRON_RUN_AS_NODE=1 exec ${q(process.execPath)} ${q(cli)} agent-shell "$@"\n`;
  const tmp = `${file}.${process.pid}.tmp`;
  fs.writeFileSync(tmp, text, { mode: 0o755 });
  fs.renameSync(tmp, file);
  return file;
}

function target(scope: 'user' | 'workspace'): vscode.ConfigurationTarget {
  return scope === 'workspace' ? vscode.ConfigurationTarget.Workspace : vscode.ConfigurationTarget.Global;
}

export function isRouted(shim: string): boolean {
  const v = vscode.workspace.getConfiguration().get<{ path?: string }>(PROFILE_SETTING);
  return v?.path === shim;
}

/** Points the agent's terminal at the shim, remembering what the scope held before. */
export async function route(context: vscode.ExtensionContext, shim: string, scope: 'user' | 'workspace'): Promise<void> {
  const info = vscode.workspace.getConfiguration().inspect(PROFILE_SETTING);
  const current = scope === 'workspace' ? info?.workspaceValue : info?.globalValue;
  const already = context.globalState.get<Saved>(SAVED_KEY);
  // Routing twice must not overwrite the real previous value with our own.
  if (!already || already.scope !== scope) {
    await context.globalState.update(SAVED_KEY, { scope, had: current !== undefined, ...(current !== undefined ? { value: current } : {}) } satisfies Saved);
  }
  await vscode.workspace.getConfiguration().update(PROFILE_SETTING, { path: shim, args: [] }, target(scope));
}

/** Restores what the scope held before route(); false when nothing was routed. */
export async function stopRouting(context: vscode.ExtensionContext): Promise<boolean> {
  const saved = context.globalState.get<Saved>(SAVED_KEY);
  if (!saved) return false;
  await vscode.workspace.getConfiguration().update(PROFILE_SETTING, saved.had ? saved.value : undefined, target(saved.scope));
  await context.globalState.update(SAVED_KEY, undefined);
  return true;
}
