/**
 * The "Airlock: …" commands. Each is a few calls to the runtime; the runtime decides,
 * enforces and records. Secret values are taken from VS Code's SecretStorage (or typed
 * into a password box and stored there), never from settings or files.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as vscode from 'vscode';
import type { SecretMode, SessionInfo } from '../runtime/protocol';
import type { RuntimeLink } from './runtime';
import { isRouted, route, SANDBOX_PROFILE_TITLE, stopRouting, stopUsingSandboxAsDefault, useSandboxAsDefault, writeShim } from './routing';
import { openSandboxTerminal, TerminalStore } from './terminal';
import { auditPages, sessionRecords, timelineMarkdown } from './timeline';
import { Steps } from './steps';
import { netRuleOf, sessionIdOf } from './tree';

export interface CommandDeps {
  context: vscode.ExtensionContext;
  link: RuntimeLink;
  store: TerminalStore;
  log: vscode.OutputChannel;
}

function workspaceFolder(): string | undefined {
  return vscode.workspace.workspaceFolders?.[0]?.uri.fsPath;
}

async function pickSession(deps: CommandDeps, title: string): Promise<SessionInfo | undefined> {
  const c = await deps.link.client();
  const { sessions } = await c.call('session.list', {});
  if (sessions.length === 0) {
    void vscode.window.showInformationMessage('Airlock: no live sessions.');
    return undefined;
  }
  const pick = await vscode.window.showQuickPick(
    sessions.map((s) => ({ label: s.label ? `${s.label} ${s.sessionId}` : s.sessionId, description: s.workspace, detail: `${s.processes.filter((p) => p.running).length} running, ${Math.round(s.lifetimeLeft / 60)} min left`, s })),
    { title, placeHolder: 'Session' },
  );
  return pick?.s;
}

/** Live sessions first, then the ended ones the audit log remembers (newest first). */
async function pickAuditSession(deps: CommandDeps): Promise<string | undefined> {
  const c = await deps.link.client();
  const [{ sessions }, { records }] = await Promise.all([c.call('session.list', {}), c.call('audit.query', { types: ['session.start'], limit: 200 })]);
  const live = new Set(sessions.map((s) => s.sessionId));
  const items = records.reverse().map((r) => ({
    label: r.session,
    description: `${live.has(r.session) ? 'live' : 'ended'}, started ${r.ts}`,
    detail: typeof r.workspace === 'string' ? r.workspace : undefined,
  }));
  if (items.length === 0) {
    void vscode.window.showInformationMessage('Airlock: the audit log holds no sessions yet.');
    return undefined;
  }
  return (await vscode.window.showQuickPick(items, { title: 'Export the audit records of a session', placeHolder: 'Session' }))?.label;
}

/** Runs FN, turning a thrown error into a message (and a log line) instead of a silent failure. */
function guarded(deps: CommandDeps, name: string, fn: (...args: unknown[]) => Promise<unknown>): (...args: unknown[]) => Promise<unknown> {
  return async (...args) => {
    try {
      return await fn(...args);
    } catch (e) {
      const msg = (e as Error).message;
      deps.log.appendLine(`${name} failed: ${msg}`);
      void vscode.window.showErrorMessage(`Airlock: ${msg}`);
      return undefined;
    }
  };
}

/**
 * VS Code's agent terminal tool reads its profile setting when the window loads (a
 * change made later is not used by it: measured in VS Code 1.139), so routing takes
 * effect with a reload: offered at once.
 */
async function offerReload(message: string, warning = false): Promise<void> {
  const show = warning ? vscode.window.showWarningMessage : vscode.window.showInformationMessage;
  if ((await show(message, 'Reload Window')) === 'Reload Window') await vscode.commands.executeCommand('workbench.action.reloadWindow');
}

export function registerCommands(deps: CommandDeps): vscode.Disposable[] {
  const { context, link } = deps;
  const routeScope = (): 'user' | 'workspace' => vscode.workspace.getConfiguration('airlock').get<'user' | 'workspace'>('routeScope', 'user');
  const cmd = (id: string, fn: (...args: unknown[]) => Promise<unknown>): vscode.Disposable => vscode.commands.registerCommand(id, guarded(deps, id, fn));
  return [
    cmd('airlock.newTerminal', async () => {
      const ws = workspaceFolder();
      if (!ws) throw new Error('open a folder first: the sandbox is rooted at the workspace folder');
      return openSandboxTerminal(deps, ws);
    }),
    cmd('airlock.routeAgentTerminals', async () => {
      const shim = writeShim(context);
      await route(context, shim, routeScope());
      deps.log.appendLine(`agent terminals routed into the sandbox (${routeScope()} settings): ${shim}`);
      void offerReload(`Airlock: the agent's terminal commands run inside the sandbox (${routeScope()} setting) from the next window reload on.`);
      return shim;
    }),
    cmd('airlock.stopRoutingAgentTerminals', async () => {
      const was = await stopRouting(context);
      deps.log.appendLine(was ? 'agent terminals no longer routed; the previous setting is restored' : 'agent terminals were not routed by Airlock');
      if (was) void offerReload('Airlock: after the next window reload the agent\'s terminal commands run on your machine again, outside the sandbox.', true);
      return was;
    }),
    cmd('airlock.useSandboxAsDefaultTerminal', async () => {
      await useSandboxAsDefault(context, routeScope());
      deps.log.appendLine(`new terminals open in the sandbox (${routeScope()} settings)`);
      void vscode.window.showInformationMessage(`Airlock: new terminals (Terminal: New Terminal) now open in the sandbox (${routeScope()} setting). "Airlock: Stop Using Sandbox as Default Terminal" puts back the previous profile.`);
      return SANDBOX_PROFILE_TITLE;
    }),
    cmd('airlock.stopUsingSandboxAsDefaultTerminal', async () => {
      const was = await stopUsingSandboxAsDefault(context);
      deps.log.appendLine(was ? 'new terminals use the previous default profile again' : 'the sandbox was not the default terminal');
      return was;
    }),
    cmd('airlock.killSession', async (sessionId?: unknown) => {
      const id = typeof sessionId === 'string' ? sessionId : sessionIdOf(sessionId) ?? (await pickSession(deps, 'Kill an Airlock session'))?.sessionId;
      if (!id) return undefined;
      const c = await link.client();
      return c.call('session.kill', { sessionId: id, reason: 'killed from VS Code' });
    }),
    cmd('airlock.killAllSessions', async () => {
      const c = await link.client();
      const { sessions } = await c.call('session.list', {});
      await Promise.all(sessions.map((s) => c.call('session.kill', { sessionId: s.sessionId, reason: 'Kill All Sessions in VS Code' }).catch(() => undefined)));
      return sessions.length;
    }),
    cmd('airlock.allowHost', async (arg?: unknown) => {
      // From the Sessions tree (a denied connection): that host for 15 minutes, no questions.
      const fromTree = netRuleOf(arg) ? { sessionId: sessionIdOf(arg), rule: netRuleOf(arg), minutes: 15 } : undefined;
      const o = (fromTree ?? (typeof arg === 'object' && arg !== null ? arg : {})) as { sessionId?: string; rule?: string; minutes?: number };
      const [sessionId, rule, minutes] = [o.sessionId, o.rule, o.minutes];
      const id = typeof sessionId === 'string' ? sessionId : (await pickSession(deps, 'Allow a host for a session'))?.sessionId;
      if (!id) return undefined;
      const r = typeof rule === 'string' ? rule : await vscode.window.showInputBox({ title: 'Host to allow', prompt: 'example.com, *.example.com:443, 10.0.0.0/8, 127.0.0.1:8080' });
      if (!r) return undefined;
      const m = typeof minutes === 'number' ? minutes : Number(await vscode.window.showInputBox({ title: 'For how many minutes?', value: '15', validateInput: (v) => (/^\d+$/.test(v) && Number(v) >= 1 && Number(v) <= 10080 ? undefined : 'a whole number of minutes, 1 to 10080') }));
      if (!m) return undefined;
      const c = await link.client();
      return c.call('network.allow', { sessionId: id, rule: r, ttlSeconds: m * 60, by: 'VS Code (Allow Host)' });
    }),
    // Programmatic use passes {sessionId, name, mode, hosts, minutes, value?}: a value given
    // is added to SecretStorage (nothing reads stored values back out of the extension).
    cmd('airlock.grantSecret', async (arg?: unknown) => {
      const o = (sessionIdOf(arg) ? { sessionId: sessionIdOf(arg) } : typeof arg === 'object' && arg !== null ? arg : {}) as { sessionId?: string; name?: string; value?: string; mode?: string; hosts?: string[]; minutes?: number };
      const [sessionId, name, mode, hosts, minutes] = [o.sessionId, o.name, o.mode, o.hosts, o.minutes];
      const id = typeof sessionId === 'string' ? sessionId : (await pickSession(deps, 'Grant a secret to a session'))?.sessionId;
      if (!id) return undefined;
      // One quick input from the first question to the last (see Steps).
      const steps = new Steps();
      try {
        const n = typeof name === 'string' ? name : await steps.input({ title: 'Secret name (the variable name inside)', validate: (v) => (/^[A-Za-z_][A-Za-z0-9_]{0,127}$/.test(v) ? undefined : 'letters, digits and _, not starting with a digit') });
        if (!n) return undefined;
        const key = `airlock.secret.${n}`;
        if (typeof o.value === 'string' && o.value) await context.secrets.store(key, o.value);
        let value = await context.secrets.get(key);
        if (value === undefined) {
          value = await steps.input({ title: `Value of ${n} (kept in VS Code's secret storage)`, password: true });
          if (!value) return undefined;
          await context.secrets.store(key, value);
        }
        const md = (typeof mode === 'string' ? mode : await steps.pick(`How ${n} reaches the sandbox`, ['env', 'file', 'brokered'])) as SecretMode | undefined;
        if (!md) return undefined;
        let hs = Array.isArray(hosts) ? (hosts as string[]) : undefined;
        if (md === 'brokered' && !hs) {
          const text = await steps.input({ title: `Hosts ${n} may be sent to (comma-separated)`, prompt: 'api.github.com, *.example.com:443' });
          if (!text) return undefined;
          hs = text.split(',').map((h) => h.trim()).filter(Boolean);
        }
        const min = typeof minutes === 'number' ? minutes : Number(await steps.input({ title: 'For how many minutes?', value: '60', validate: (v) => (/^\d+$/.test(v) && Number(v) >= 1 ? undefined : 'a whole number of minutes, 1 or more') }));
        if (!min) return undefined;
        const c = await link.client();
        return await c.call('secret.grant', { sessionId: id, name: n, value, mode: md, ...(md === 'brokered' ? { hosts: hs } : {}), ttlSeconds: Math.round(min * 60), by: 'VS Code (Grant Secret)' });
      } finally {
        steps.dispose();
      }
    }),
    cmd('airlock.revokeSecret', async (arg?: unknown) => {
      const o = (typeof arg === 'object' && arg !== null ? arg : {}) as { sessionId?: string; name?: string };
      const [sessionId, name] = [o.sessionId, o.name];
      const id = typeof sessionId === 'string' ? sessionId : (await pickSession(deps, 'Revoke a secret'))?.sessionId;
      if (!id) return undefined;
      const c = await link.client();
      let n = typeof name === 'string' ? name : undefined;
      if (!n) {
        const { secrets } = await c.call('secret.list', { sessionId: id });
        n = (await vscode.window.showQuickPick(secrets.map((s) => ({ label: s.name, description: `${s.mode}, until ${s.expiresAt}` })), { title: 'Secret to revoke' }))?.label;
      }
      if (!n) return undefined;
      return c.call('secret.revoke', { sessionId: id, name: n, by: 'VS Code (Revoke Secret)' });
    }),
    cmd('airlock.showOutput', async () => deps.log.show()),
    cmd('airlock.openPolicy', async () => {
      const ws = workspaceFolder();
      if (!ws) throw new Error('open a folder first: the policy lives in its .vscode/airlock.json');
      const uri = vscode.Uri.file(path.join(ws, '.vscode', 'airlock.json'));
      try {
        await vscode.workspace.fs.stat(uri);
      } catch {
        // A new file: validated against the schema as the user types (contributes.jsonValidation).
        const starter = { version: 1, filesystem: { mask: [] }, network: { deny: [] } };
        await vscode.workspace.fs.writeFile(uri, Buffer.from(JSON.stringify(starter, null, 2) + '\n'));
      }
      return vscode.window.showTextDocument(uri);
    }),
    cmd('airlock.showAuditLog', async (arg?: unknown) => {
      const o = (typeof arg === 'object' && arg !== null ? arg : {}) as { sessionId?: string };
      const c = await link.client();
      const { records } = await c.call('audit.query', { ...(o.sessionId ? { sessionId: o.sessionId } : {}), limit: 2000 });
      const text = records.map((r) => JSON.stringify(r)).join('\n') + '\n';
      const doc = await vscode.workspace.openTextDocument({ language: 'jsonl', content: text });
      return vscode.window.showTextDocument(doc, { preview: true });
    }),
    // Programmatic use passes {sessionId, file}. Live and ended sessions both export.
    cmd('airlock.exportAudit', async (arg?: unknown) => {
      const o = (sessionIdOf(arg) ? { sessionId: sessionIdOf(arg) } : typeof arg === 'object' && arg !== null ? arg : {}) as { sessionId?: string; file?: string };
      const c = await link.client();
      const id = typeof o.sessionId === 'string' ? o.sessionId : await pickAuditSession(deps);
      if (!id) return undefined;
      const target = typeof o.file === 'string' ? o.file : (await vscode.window.showSaveDialog({
        title: `Export the audit records of session ${id}`,
        defaultUri: vscode.Uri.file(path.join(os.homedir(), `airlock-audit-${id}.jsonl`)),
        filters: { 'JSON Lines': ['jsonl'] },
      }))?.fsPath;
      if (!target) return undefined;
      // Written page by page to a private file; the lines are the log's own bytes.
      const fd = fs.openSync(target, 'w', 0o600);
      let records = 0;
      try {
        for await (const page of auditPages(c, id)) {
          fs.writeSync(fd, page.jsonl);
          records += page.records;
        }
      } finally {
        fs.closeSync(fd);
      }
      deps.log.appendLine(`exported ${records} audit records of session ${id} to ${target}`);
      void vscode.window.showInformationMessage(`Airlock: ${records} audit records of session ${id} exported to ${target}.`, 'Open').then((a) => {
        if (a === 'Open') void vscode.window.showTextDocument(vscode.Uri.file(target));
      });
      return { file: target, records };
    }),
    cmd('airlock.showTimeline', async (arg?: unknown) => {
      const o = (sessionIdOf(arg) ? { sessionId: sessionIdOf(arg) } : typeof arg === 'object' && arg !== null ? arg : {}) as { sessionId?: string };
      const id = typeof o.sessionId === 'string' ? o.sessionId : await pickAuditSession(deps);
      if (!id) return undefined;
      const c = await link.client();
      const [records, verify] = await Promise.all([sessionRecords(c, id), c.call('audit.verify', {})]);
      const doc = await vscode.workspace.openTextDocument({ language: 'markdown', content: timelineMarkdown(id, records, verify) });
      const editor = await vscode.window.showTextDocument(doc, { preview: false });
      // Rendered beside its source (which is what Save exports). Safe: every value from
      // the record is escaped to inert text (timeline.ts).
      await vscode.commands.executeCommand('markdown.showPreviewToSide', doc.uri).then(undefined, () => undefined);
      return editor;
    }),
    cmd('airlock.verifyAudit', async () => {
      const c = await link.client();
      const v = await c.call('audit.verify', {});
      const torn = v.torn ? ` (${v.torn} torn line${v.torn === 1 ? '' : 's'} left by a killed writer, each recorded)` : '';
      if (v.ok) {
        deps.log.appendLine(`audit log OK: ${v.records} records in ${v.file}${torn}`);
        void vscode.window.showInformationMessage(`Airlock: the audit log is intact: ${v.records} records, none changed, removed or reordered${torn}.`);
      } else {
        const bad = v.firstBad!;
        const where = `line ${bad.line}${bad.seq !== undefined ? ` (seq ${bad.seq})` : ''}`;
        deps.log.appendLine(`audit log FAILED at ${where} of ${v.file}: ${bad.reason}`);
        void vscode.window.showErrorMessage(`Airlock: the audit log was tampered with or damaged at ${where}: ${bad.reason}. ${v.records} records before it check out. File: ${v.file}`, { modal: false });
      }
      return v;
    }),
    cmd('airlock.runDoctor', async () => {
      const t = vscode.window.createTerminal({ name: 'Airlock Doctor', shellPath: process.execPath, shellArgs: [path.join(context.extensionPath, 'dist', 'airlock.js'), 'doctor'], env: { ELECTRON_RUN_AS_NODE: '1' } });
      t.show();
      return t;
    }),
    cmd('airlock.isRouted', async () => isRouted(writeShim(context))),
  ];
}
