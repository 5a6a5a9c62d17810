/**
 * The extension inside a real VS Code (code-server's extension host): activation,
 * commands, the sandbox terminal with shell integration, routing VS Code's own agent
 * terminal tool into the sandbox (and proving the difference with routing off),
 * secrets from SecretStorage. The runtime it talks to is real: a daemon it starts.
 *
 * The code-server process was started with AIRLOCK_VSCODE_CANARY in its environment
 * and a canary file in its HOME (test/helpers/code-server.ts): what the host has.
 */
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as vscode from 'vscode';
import { client, EXT, runInTerminal, waitFor } from './util';

const PROFILE = 'chat.tools.terminal.terminalProfile.linux';

const canary = (): string => {
  const v = process.env.AIRLOCK_VSCODE_CANARY;
  assert.ok(v, 'control: the VS Code server process has the canary variable');
  return v;
};
const canaryFile = (): { file: string; content: string } => {
  const file = path.join(process.env.HOME!, 'airlock-canary.txt');
  const content = fs.readFileSync(file, 'utf8').trim();
  assert.ok(content, 'control: the canary file exists in the server\'s HOME');
  return { file, content };
};

describe('Airlock extension in VS Code', function () {
  this.timeout(120_000);

  before(async () => {
    await vscode.extensions.getExtension(EXT)!.activate();
  });

  it('activates and registers its commands', async () => {
    assert.equal(vscode.extensions.getExtension(EXT)!.isActive, true);
    const cmds = (await vscode.commands.getCommands(true)).filter((c) => c.startsWith('airlock.'));
    for (const c of ['airlock.newTerminal', 'airlock.routeAgentTerminals', 'airlock.stopRoutingAgentTerminals', 'airlock.killSession', 'airlock.killAllSessions', 'airlock.grantSecret', 'airlock.revokeSecret', 'airlock.allowHost', 'airlock.runDoctor']) {
      assert.ok(cmds.includes(c), `${c} is registered`);
    }
  });

  it('a sandbox terminal runs commands inside the sandbox, and shell integration reports their exit codes', async () => {
    const t = (await vscode.commands.executeCommand<vscode.Terminal>('airlock.newTerminal'))!;
    const r = await runInTerminal(t, `echo "home=$HOME canary=\${AIRLOCK_VSCODE_CANARY:-absent}"; cat ${canaryFile().file}; false`);
    assert.equal(r.exitCode, 1);
    assert.match(r.output, /home=\/home\/airlock canary=absent/);
    assert.ok(!r.output.includes(canary()), 'the server\'s environment reached the sandbox terminal');
    assert.ok(!r.output.includes(canaryFile().content), 'the server\'s HOME is readable in the sandbox terminal');
    assert.equal((await runInTerminal(t, 'true')).exitCode, 0);
    t.dispose();
  });

  it('grants a secret from SecretStorage to the terminal\'s session and revokes it', async () => {
    const t = (await vscode.commands.executeCommand<vscode.Terminal>('airlock.newTerminal'))!;
    await runInTerminal(t, 'true');
    const c = await client();
    const { sessions } = await c.call('session.list', {});
    const sessionId = sessions.find((s: { label?: string }) => s.label === 'vscode-terminal').sessionId as string;
    const value = `vsc-${Math.random().toString(36).slice(2)}-${Date.now()}`;
    const info = await vscode.commands.executeCommand<{ name: string; mode: string }>('airlock.grantSecret', { sessionId, name: 'VSC_TOKEN', value, mode: 'env', minutes: 5 });
    assert.deepEqual([info?.name, info?.mode], ['VSC_TOKEN', 'env']);
    // An env grant reaches processes started from now on (the terminal's shell started before).
    const shown = await c.call('exec', { sessionId, argv: ['sh', '-c', 'echo "token=$VSC_TOKEN"'] });
    assert.equal(shown.stdout, 'token=[REDACTED:VSC_TOKEN]\n');
    assert.ok(!JSON.stringify(shown).includes(value));
    // A second grant of the same name takes the value from SecretStorage, asking nothing.
    await vscode.commands.executeCommand('airlock.grantSecret', { sessionId, name: 'VSC_TOKEN', mode: 'file', minutes: 5 });
    assert.match((await runInTerminal(t, 'cat /run/airlock/secrets/VSC_TOKEN')).output, /\[REDACTED:VSC_TOKEN\]/);
    await vscode.commands.executeCommand('airlock.revokeSecret', { sessionId, name: 'VSC_TOKEN' });
    assert.deepEqual((await c.call('secret.list', { sessionId })).secrets, []);
    t.dispose();
  });

  it('Route then Stop Routing sets the agent terminal profile to Airlock\'s shell and restores the exact previous value', async () => {
    const config = vscode.workspace.getConfiguration();
    const before = { path: '/bin/sh', args: ['-l'] };
    await config.update(PROFILE, before, vscode.ConfigurationTarget.Global);
    const shim = await vscode.commands.executeCommand<string>('airlock.routeAgentTerminals');
    assert.match(shim!, /\/bin\/bash$/);
    assert.deepEqual(vscode.workspace.getConfiguration().inspect(PROFILE)?.globalValue, { path: shim, args: [] });
    // Routing twice keeps the real previous value.
    await vscode.commands.executeCommand('airlock.routeAgentTerminals');
    await vscode.commands.executeCommand('airlock.stopRoutingAgentTerminals');
    assert.deepEqual(vscode.workspace.getConfiguration().inspect(PROFILE)?.globalValue, before);
    await config.update(PROFILE, undefined, vscode.ConfigurationTarget.Global);
  });

  it('Use Sandbox as Default Terminal: Terminal: New Terminal opens a sandboxed shell; Stop restores the previous default', async () => {
    const DEFAULT = 'terminal.integrated.defaultProfile.linux';
    const config = vscode.workspace.getConfiguration();
    await config.update(DEFAULT, 'bash', vscode.ConfigurationTarget.Global);
    assert.equal(await vscode.commands.executeCommand('airlock.useSandboxAsDefaultTerminal'), 'Airlock Sandbox');
    assert.equal(vscode.workspace.getConfiguration().inspect(DEFAULT)?.globalValue, 'Airlock Sandbox');
    const opened = new Promise<vscode.Terminal>((resolve) => {
      const d = vscode.window.onDidOpenTerminal((t) => {
        d.dispose();
        resolve(t);
      });
    });
    // The terminal service takes the new default a moment after the setting changes
    // (measured in 1.139: a terminal opened at once still got bash).
    await new Promise((r) => setTimeout(r, 2000));
    await vscode.commands.executeCommand('workbench.action.terminal.new');
    const t = await opened;
    try {
      assert.equal(t.name, 'Airlock Sandbox');
      const r = await runInTerminal(t, `echo "home=$HOME canary=\${AIRLOCK_VSCODE_CANARY:-absent}"`);
      assert.match(r.output, /home=\/home\/airlock canary=absent/);
      // Its session reports the placeholders it keeps on the host (the Explorer marks them).
      const c = await client();
      const { sessions } = await c.call('session.list', {});
      const ws = vscode.workspace.workspaceFolders![0]!.uri.fsPath;
      // session.list is newest first: this terminal's session.
      const mine = sessions.find((s: { workspace: string; label?: string }) => s.workspace === ws && s.label === 'vscode-terminal');
      assert.ok(mine.placeholders.includes(path.join(ws, '.envrc')), JSON.stringify(mine.placeholders));
    } finally {
      t.dispose();
      assert.equal(await vscode.commands.executeCommand('airlock.stopUsingSandboxAsDefaultTerminal'), true);
      assert.equal(vscode.workspace.getConfiguration().inspect(DEFAULT)?.globalValue, 'bash');
      await config.update(DEFAULT, undefined, vscode.ConfigurationTarget.Global);
    }
  });

  it('Open Policy creates .vscode/airlock.json from a starter that passes the schema, and Show Audit Log shows the records', async () => {
    const ws = vscode.workspace.workspaceFolders![0]!.uri.fsPath;
    const file = path.join(ws, '.vscode', 'airlock.json');
    assert.equal(fs.existsSync(file), false);
    const editor = await vscode.commands.executeCommand<vscode.TextEditor>('airlock.openPolicy');
    assert.equal(editor?.document.uri.fsPath, file);
    assert.equal(JSON.parse(fs.readFileSync(file, 'utf8')).version, 1);
    // The schema is wired: the JSON language service reports no problem in the starter.
    const diags = await waitFor('the JSON validation of the policy', async () => {
      await new Promise((r) => setTimeout(r, 500));
      return vscode.languages.getDiagnostics(editor!.document.uri);
    }, 10_000);
    assert.deepEqual(diags.map((d) => d.message), []);
    // ... and flags what the schema refuses (proof that it is the schema answering).
    const edit = new vscode.WorkspaceEdit();
    edit.replace(editor!.document.uri, new vscode.Range(0, 0, editor!.document.lineCount, 0), '{ "version": 2, "limits": { "pids": "many" } }\n');
    await vscode.workspace.applyEdit(edit);
    const bad = await waitFor('diagnostics for an invalid policy', () => {
      const d = vscode.languages.getDiagnostics(editor!.document.uri);
      return d.length >= 2 ? d : undefined;
    }, 15_000);
    assert.ok(bad.length >= 2, bad.map((d) => d.message).join('; '));
    // What a workspace's own file may not do is flagged as ignored, as the runtime ignores it.
    const loosen = new vscode.WorkspaceEdit();
    loosen.replace(editor!.document.uri, new vscode.Range(0, 0, editor!.document.lineCount, 0), '{ "version": 1, "env": { "pass": ["SOME_TOKEN"] }, "network": { "allow": ["example.com"] } }\n');
    await vscode.workspace.applyEdit(loosen);
    const flagged = await waitFor('the ignored-field warnings', () => {
      const d = vscode.languages.getDiagnostics(editor!.document.uri).filter((x) => /Ignored in a workspace's own/.test(x.message));
      return d.length >= 2 ? d : undefined;
    }, 15_000);
    assert.equal(flagged.length, 2);
    await vscode.commands.executeCommand('workbench.action.files.revert');
    const c = await client();
    const { sessionId } = await c.call('session.create', { workspace: ws, label: 'audit-view-test' });
    await c.call('session.kill', { sessionId });
    const audit = await vscode.commands.executeCommand<vscode.TextEditor>('airlock.showAuditLog');
    const lines = audit!.document.getText().trim().split('\n').map((l) => JSON.parse(l) as { type: string });
    assert.ok(lines.some((r) => r.type === 'session.start'), 'the audit log view shows session records');
  });

  it('Export Audit writes a session\'s records byte for byte to a private file, and Verify Audit Log checks the chain', async () => {
    const ws = vscode.workspace.workspaceFolders![0]!.uri.fsPath;
    const c = await client();
    const { sessionId } = await c.call('session.create', { workspace: ws, label: 'export-test' });
    await c.call('exec', { sessionId, argv: ['true'] });
    await c.call('session.kill', { sessionId });
    const v = await vscode.commands.executeCommand<{ ok: boolean; file: string; records: number; torn: number }>('airlock.verifyAudit');
    assert.equal(v?.ok, true, JSON.stringify(v));
    // An ended session exports too, exactly the lines the log holds for it.
    const out = path.join(fs.mkdtempSync(path.join(require('node:os').tmpdir(), 'airlock-export-')), 'audit.jsonl');
    const r = await vscode.commands.executeCommand<{ file: string; records: number }>('airlock.exportAudit', { sessionId, file: out });
    const stored = fs.readFileSync(v!.file, 'utf8').split('\n').filter((l) => l.includes(`"session":"${sessionId}"`));
    assert.ok(stored.length >= 4, `session.start, exec, kill, end: ${stored.length} lines`);
    assert.equal(r?.records, stored.length);
    assert.equal(fs.readFileSync(out, 'utf8'), stored.join('\n') + '\n');
    assert.equal(fs.statSync(out).mode & 0o777, 0o600);
    // An unknown session is a clear error, not an empty file.
    await assert.rejects(c.call('audit.export', { sessionId: 'feedfacefeedface' }), /no audit records of session feedfacefeedface/);
  });

  it('MCP: VS Code starts the server the extension provides, lists its tools, and a tool call runs inside the sandbox', async () => {
    // No public API lists MCP servers; starting every known server and waiting for its
    // tools is what agent mode does, and the tools then show in vscode.lm.tools.
    const tools = await waitFor('the Airlock MCP tools in vscode.lm.tools', async () => {
      await vscode.commands.executeCommand('workbench.mcp.startServer', '*', { waitForLiveTools: true });
      const t = vscode.lm.tools.filter((x) => x.name.startsWith('mcp_airlock_'));
      return t.some((x) => x.name === 'mcp_airlock_exec') ? t : undefined;
    }, 60_000);
    assert.deepEqual(tools.map((t) => t.name.replace('mcp_airlock_', '')).sort(), ['exec', 'list_dir', 'python', 'read_file', 'request_access', 'search', 'session_info', 'write_file']);
    const r = await vscode.lm.invokeTool('mcp_airlock_exec', { input: { command: `echo "home=$HOME canary=\${AIRLOCK_VSCODE_CANARY:-absent}"; cat ${canaryFile().file}` }, toolInvocationToken: undefined });
    // VS Code hands the model the structured content (JSON) when a tool returns one.
    const text = r.content.map((p) => (p instanceof vscode.LanguageModelTextPart ? p.value : '')).join('');
    assert.match(text, /home=\/home\/airlock canary=absent/);
    assert.match(text, /"exitCode":1/, 'cat of the server\'s HOME file failed inside');
    assert.ok(!text.includes(canary()) && !text.includes(canaryFile().content), text);
  });

  /** Asks the test fixture's chat participant to run COMMAND with VS Code's own run_in_terminal tool. */
  async function agentRuns(command: string): Promise<string> {
    await vscode.extensions.getExtension('airlock-dev.airlock-test-fixture')!.activate();
    // Chat dispatches only once the (stub) copilot model is known ("Language model unavailable" otherwise).
    await waitFor('the stub copilot model', async () => ((await vscode.lm.selectChatModels({ vendor: 'copilot' })).length ? true : undefined));
    const seen = ((await vscode.commands.executeCommand<unknown[]>('airlockTest.lastToolResult')) ?? []).length;
    await vscode.commands.executeCommand('workbench.action.chat.open', { query: `@airlocktest ${command}` });
    const results = await waitFor('the agent terminal tool\'s result', async () => {
      const r = (await vscode.commands.executeCommand<{ command: string; text: string }[]>('airlockTest.lastToolResult', seen)) ?? [];
      return r.length ? r : undefined;
    }, 90_000);
    return results[0]!.text;
  }

  // The runner runs this twice (scripts/test.sh): once as the rest of the suite (routing
  // off), once with the agent's terminal profile routed into the sandbox when the window
  // loads (--routed: VS Code's tool reads the setting then). Same call, opposite answers.
  const routed = process.env.AIRLOCK_VSCODE_ROUTED === '1';
  it(`VS Code's run_in_terminal ${routed ? 'runs inside the sandbox with routing on: no server variable, no server HOME' : 'sees the server\'s variable and HOME with routing off'}`, async () => {
    const out = await agentRuns(`echo "canary=\${AIRLOCK_VSCODE_CANARY:-absent} home=$HOME"; cat ${canaryFile().file} || echo no-canary-file`);
    if (routed) {
      assert.match(out, /canary=absent home=\/home\/airlock/, out);
      assert.match(out, /no-canary-file/, out);
      assert.ok(!out.includes(canary()) && !out.includes(canaryFile().content), out);
    } else {
      assert.ok(out.includes(`canary=${canary()}`), out);
      assert.ok(out.includes(canaryFile().content), out);
    }
  });
});
