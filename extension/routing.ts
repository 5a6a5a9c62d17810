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

/** A setting Airlock points at itself, remembering what it held to put it back exactly. */
interface Swap {
  setting: string;
  savedKey: string;
}

const AGENT_TERMINAL: Swap = { setting: PROFILE_SETTING, savedKey: SAVED_KEY };
/** The profile people's own new terminals use ("Offer the same profile as the default"). */
export const DEFAULT_PROFILE_SETTING = 'terminal.integrated.defaultProfile.linux';
const DEFAULT_TERMINAL: Swap = { setting: DEFAULT_PROFILE_SETTING, savedKey: 'airlock.defaultProfile.previous' };
/** The title of the contributed profile (package.json), which is what the default names. */
export const SANDBOX_PROFILE_TITLE = 'Airlock Sandbox';

async function swapIn(context: vscode.ExtensionContext, swap: Swap, value: unknown, scope: 'user' | 'workspace'): Promise<void> {
  const info = vscode.workspace.getConfiguration().inspect(swap.setting);
  const current = scope === 'workspace' ? info?.workspaceValue : info?.globalValue;
  const already = context.globalState.get<Saved>(swap.savedKey);
  // Doing it twice must not overwrite the real previous value with our own.
  if (!already || already.scope !== scope) {
    await context.globalState.update(swap.savedKey, { scope, had: current !== undefined, ...(current !== undefined ? { value: current } : {}) } satisfies Saved);
  }
  await vscode.workspace.getConfiguration().update(swap.setting, value, target(scope));
}

/** Restores what the scope held before swapIn(); false when nothing was swapped in. */
async function swapOut(context: vscode.ExtensionContext, swap: Swap): Promise<boolean> {
  const saved = context.globalState.get<Saved>(swap.savedKey);
  if (!saved) return false;
  await vscode.workspace.getConfiguration().update(swap.setting, saved.had ? saved.value : undefined, target(saved.scope));
  await context.globalState.update(swap.savedKey, undefined);
  return true;
}

/** Points the agent's terminal at the shim, remembering what the scope held before. */
export function route(context: vscode.ExtensionContext, shim: string, scope: 'user' | 'workspace'): Promise<void> {
  return swapIn(context, AGENT_TERMINAL, { path: shim, args: [] }, scope);
}

/** Restores what the scope held before route(); false when nothing was routed. */
export function stopRouting(context: vscode.ExtensionContext): Promise<boolean> {
  return swapOut(context, AGENT_TERMINAL);
}

/** Makes "Airlock Sandbox" the profile of new terminals (Terminal: New Terminal, Ctrl+`). */
export function useSandboxAsDefault(context: vscode.ExtensionContext, scope: 'user' | 'workspace'): Promise<void> {
  return swapIn(context, DEFAULT_TERMINAL, SANDBOX_PROFILE_TITLE, scope);
}

export function stopUsingSandboxAsDefault(context: vscode.ExtensionContext): Promise<boolean> {
  return swapOut(context, DEFAULT_TERMINAL);
}
