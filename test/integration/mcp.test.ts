/**
 * `airlock mcp` as an agent's harness uses it: the MCP SDK's own client over real
 * stdio, talking to `dist/airlock.js mcp`, which runs every tool in a real sandbox of
 * a real daemon. Plus one client nobody here wrote: the MCP Inspector's CLI.
 */
import { after, before, test } from 'node:test';
import * as assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import { CLI_ENTRY, DaemonProcess, startDaemonProcess } from '../helpers/daemon';
import { REPO, runCli, tempDir } from '../helpers/sandbox';
import { hostHttpServer } from '../helpers/egress';

let d: DaemonProcess;
let rt: string;
let ws: string;
let client: Client;
let hostDir: string;
const canary = `canary-${crypto.randomBytes(8).toString('hex')}`;
const envSecret = `dotenv-${crypto.randomBytes(8).toString('hex')}`;

interface ToolResult {
  content: { type: string; text: string }[];
  isError?: boolean;
  structuredContent?: Record<string, unknown>;
}

const env = (): Record<string, string> => ({
  PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: process.env.HOME ?? '/', LANG: 'C.UTF-8',
  XDG_RUNTIME_DIR: rt, XDG_STATE_HOME: d.state, AIRLOCK_TEST_CANARY: canary,
});

async function connect(args: string[] = []): Promise<Client> {
  const c = new Client({ name: 'airlock-test', version: '1' });
  await c.connect(new StdioClientTransport({ command: process.execPath, args: [CLI_ENTRY, 'mcp', '--workspace', ws, ...args], env: env(), stderr: 'ignore' }));
  return c;
}

async function call(name: string, args: Record<string, unknown>, c = client): Promise<ToolResult> {
  return (await c.callTool({ name, arguments: args })) as ToolResult;
}
const text = (r: ToolResult): string => r.content.map((x) => x.text).join('');

before(async () => {
  d = await startDaemonProcess();
  rt = path.dirname(path.dirname(d.socket));
  ws = d.workspace();
  fs.writeFileSync(path.join(ws, '.env'), `API_KEY=${envSecret}\n`);
  fs.writeFileSync(path.join(ws, 'notes.md'), 'alpha\nneedle in a haystack\nomega\n');
  hostDir = tempDir('airlock-mcphost-');
  fs.writeFileSync(path.join(hostDir, 'host.txt'), canary);
  fs.symlinkSync(path.join(hostDir, 'host.txt'), path.join(ws, 'link-to-host'));
  client = await connect();
});

after(async () => {
  await client?.close();
  await d.stop();
  fs.rmSync(hostDir, { recursive: true, force: true });
});

test('the server lists its eight tools with schemas and descriptions that say they run in a sandbox', async () => {
  const { tools } = await client.listTools();
  assert.deepEqual(tools.map((t) => t.name).sort(), ['exec', 'list_dir', 'python', 'read_file', 'request_access', 'search', 'session_info', 'write_file']);
  const exec = tools.find((t) => t.name === 'exec')!;
  assert.deepEqual(exec.inputSchema.required, ['command']);
  assert.ok(exec.inputSchema.properties && 'timeoutSeconds' in exec.inputSchema.properties);
  for (const t of tools) if (t.name !== 'session_info') assert.match(t.description ?? '', /sandbox|a person/i, t.name);
  assert.match(client.getInstructions() ?? '', /inside an isolated Airlock sandbox/);
});

test('exec runs inside the sandbox: clean environment, no host home, and its exit code', async () => {
  const r = await call('exec', { command: 'echo hi; env; ls /root 2>&1; exit 3' });
  const out = text(r);
  assert.equal(r.isError, false);
  assert.match(out, /^\[exit code 3\]\nhi\n/);
  assert.match(out, /HOME=\/home\/airlock/);
  assert.ok(!out.includes(canary), 'a variable of the MCP server\'s environment reached the sandbox');
  assert.match(out, /No such file or directory/);
  assert.equal(r.structuredContent?.exitCode, 3);
  // Clients that show only the structured content (VS Code does) get the output too.
  assert.match(String(r.structuredContent?.stdout), /^hi\n[\s\S]*HOME=\/home\/airlock/);
  const argv = await call('exec', { command: ['printf', '%s|', 'a b', '$HOME'] });
  assert.equal(text(argv), '[exit code 0]\na b|$HOME|');
});

test('invalid tool arguments are an MCP error, not a crash, and the server keeps serving', async () => {
  const bad = await client.callTool({ name: 'exec', arguments: { command: 42 } }).then(
    (r) => ({ isError: (r as ToolResult).isError, text: text(r as ToolResult) }),
    (e: Error & { code?: number }) => ({ isError: true, text: `${e.code}: ${e.message}` }),
  );
  assert.equal(bad.isError, true);
  assert.match(bad.text, /command|invalid/i);
  const unknown = await client.callTool({ name: 'no_such_tool', arguments: {} }).then((r) => text(r as ToolResult), (e: Error) => e.message);
  assert.match(unknown, /no_such_tool/);
  assert.match(text(await call('exec', { command: 'echo still here' })), /still here/);
});

test('seq 1 5000000 through exec comes back capped with the omitted-bytes note, and the whole output is in the spill file inside', async () => {
  const r = await call('exec', { command: 'seq 1 5000000' });
  const out = text(r);
  assert.ok(Buffer.byteLength(out) < 64 * 1024 + 400, `${Buffer.byteLength(out)} bytes came back`);
  const m = /\[airlock: (\d+) bytes left out; the full output is in (\/tmp\/airlock-output\/exec-\d+\.stdout) inside the sandbox\]/.exec(out);
  assert.ok(m, out.slice(0, 300));
  assert.ok(out.includes('\n1\n2\n3\n') && out.endsWith('4999999\n5000000\n'));
  assert.ok(Number(m[1]) > 30_000_000);
  const wc = await call('exec', { command: ['wc', '-c', m[2]!] });
  assert.match(text(wc), new RegExp(`^\\[exit code 0\\]\\n${Number(m[1]) + 65536} `));
});

test('a granted secret is redacted in tool results, and read_file of .env does not return its content', async () => {
  const info = await call('session_info', {});
  const sessionId = String(info.structuredContent?.sessionId);
  const value = `tok-${crypto.randomBytes(12).toString('hex')}`;
  const admin = await d.client();
  await admin.call('secret.grant', { sessionId, name: 'TOKEN', value, mode: 'env', by: 'test' });
  const r = await call('exec', { command: 'echo "token is $TOKEN"; printf %s "$TOKEN" | base64' });
  assert.ok(!text(r).includes(value));
  assert.match(text(r), /token is \[REDACTED:TOKEN\]\n\[REDACTED:TOKEN\]/);
  const py = await call('python', { code: 'import os\nos.environ["TOKEN"]' });
  assert.match(text(py), /\[REDACTED:TOKEN\]/);
  assert.ok(!text(py).includes(value));
  const dotenv = await call('read_file', { path: '.env' });
  assert.ok(!text(dotenv).includes(envSecret));
  assert.equal(dotenv.structuredContent?.size, 0);
  assert.match(text(await call('session_info', {})), /Secrets granted: TOKEN \(env, until /);
});

test('a workspace symlink to a host file does not resolve inside', async () => {
  const r = await call('read_file', { path: 'link-to-host' });
  assert.equal(r.isError, true);
  assert.match(text(r), /link-to-host: no such file/);
  assert.ok(!text(r).includes(canary));
});

test('write_file, read_file with offsets, list_dir with sizes and search work on the workspace, and protected paths stay read-only', async () => {
  const w = await call('write_file', { path: 'src/new.txt', content: 'hello from the agent\n' });
  assert.equal(text(w), 'wrote 21 bytes to src/new.txt');
  assert.equal(fs.readFileSync(path.join(ws, 'src', 'new.txt'), 'utf8'), 'hello from the agent\n');
  const part = await call('read_file', { path: 'src/new.txt', offset: 6, limit: 4 });
  assert.equal(text(part), 'from\n[airlock: src/new.txt is 21 bytes; this is bytes 6–10; read on with offset 10]');
  const ls = await call('list_dir', { path: 'src' });
  assert.match(text(ls), /^file +21 +new\.txt$/m);
  const found = await call('search', { pattern: 'needle' });
  assert.equal(text(found), './notes.md:2:needle in a haystack');
  const hook = await call('write_file', { path: '.vscode/settings.json', content: '{}' });
  assert.equal(hook.isError, true);
  assert.match(text(hook), /Read-only file system/);
});

test('the python REPL keeps its state between calls and survives an error and a timeout', async () => {
  assert.equal(text(await call('python', { code: 'x = 41\ndef f(a):\n    return a + 1' })), '(no output)');
  assert.equal(text(await call('python', { code: 'f(x)' })), '42');
  const err = await call('python', { code: '1/0' });
  assert.equal(err.isError, true);
  assert.match(text(err), /ZeroDivisionError/);
  const slow = await call('python', { code: 'import time\ntime.sleep(30)', timeoutSeconds: 1 });
  assert.match(text(slow), /KeyboardInterrupt/);
  assert.equal(text(await call('python', { code: 'print(x * 2)' })), '82');
});

test('10 parallel exec calls all return their own results', async () => {
  const rs = await Promise.all(Array.from({ length: 10 }, (_, i) => call('exec', { command: `sleep 0.$((RANDOM % 3)); echo call-${i}` })));
  rs.forEach((r, i) => assert.equal(text(r), `[exit code 0]\ncall-${i}\n`));
});

test('a second connection gets its own session unless both name a shared one', async () => {
  const other = await connect();
  const a = (await call('session_info', {})).structuredContent?.sessionId;
  const b = (await call('session_info', {}, other)).structuredContent?.sessionId;
  assert.notEqual(a, b);
  await other.close();
  const s1 = await connect(['--session', 'shared']);
  const s2 = await connect(['--session', 'shared']);
  assert.equal((await call('session_info', {}, s1)).structuredContent?.sessionId, (await call('session_info', {}, s2)).structuredContent?.sessionId);
  await call('exec', { command: 'echo kept > /tmp/mark' }, s1);
  assert.equal(text(await call('exec', { command: 'cat /tmp/mark' }, s2)), '[exit code 0]\nkept\n');
  await s1.close();
  await s2.close();
});

test('the MCP Inspector CLI (a client nobody here wrote) lists and calls the tools', async () => {
  // @modelcontextprotocol/inspector, installed by scripts/setup.sh --test-deps in .test-tools/ (its launcher's --cli mode).
  const inspector = path.join(REPO, '.test-tools', 'inspector', 'node_modules', '@modelcontextprotocol', 'inspector', 'clients', 'launcher', 'build', 'index.js');
  assert.ok(fs.existsSync(inspector), `the MCP Inspector is not installed at ${inspector}: run scripts/setup.sh --test-deps`);
  const runInspector = (args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> => new Promise((resolve) => {
    const c = spawn(process.execPath, [inspector, '--cli', process.execPath, CLI_ENTRY, 'mcp', '--workspace', ws, ...args], { env: { ...process.env, ...env() } });
    let stdout = '';
    let stderr = '';
    c.stdout.on('data', (x) => (stdout += x));
    c.stderr.on('data', (x) => (stderr += x));
    c.on('close', (code) => resolve({ code, stdout, stderr }));
  });
  const list = await runInspector(['--method', 'tools/list']);
  assert.equal(list.code, 0, list.stderr);
  const names = (JSON.parse(list.stdout) as { tools: { name: string }[] }).tools.map((t) => t.name);
  assert.ok(names.includes('exec') && names.includes('request_access'), names.join(','));
  const called = await runInspector(['--method', 'tools/call', '--tool-name', 'exec', '--tool-arg', 'command=echo from-the-inspector; cat /proc/1/comm']);
  assert.equal(called.code, 0, called.stderr);
  const res = JSON.parse(called.stdout) as ToolResult;
  assert.equal(text(res), '[exit code 0]\nfrom-the-inspector\nagent\n');
});

test('request_access waits as a pending request that only a person approves (here with the CLI), then the host is reachable until the TTL ends', async () => {
  const srv = await hostHttpServer();
  try {
    const curl = `curl -sS --max-time 10 -o /dev/null -w '%{http_code}' http://127.0.0.1:${srv.port}/`;
    assert.equal(text(await call('exec', { command: curl })), '[exit code 0]\n403');
    const asked = call('request_access', { kind: 'host', target: `127.0.0.1:${srv.port}`, reason: 'run the integration tests against the local API', ttlSeconds: 3, waitSeconds: 60 });
    const admin = await d.client();
    let pending;
    for (let i = 0; i < 200 && !pending; i++) {
      pending = (await admin.call('access.list', {})).requests.find((r) => r.state === 'pending' && r.target === `127.0.0.1:${srv.port}`);
      if (!pending) await new Promise((r) => setTimeout(r, 25));
    }
    assert.ok(pending, 'the request never showed up as pending');
    const listed = await runCli(['requests'], { env: { XDG_RUNTIME_DIR: rt, XDG_STATE_HOME: d.state }, keepDaemon: true });
    assert.match(listed.stdout, new RegExp(`${pending.requestId}.*127\\.0\\.0\\.1:${srv.port}.*run the integration tests`));
    const approved = await runCli(['approve', pending.requestId, '--ttl', '3'], { env: { XDG_RUNTIME_DIR: rt, XDG_STATE_HOME: d.state }, keepDaemon: true });
    assert.equal(approved.code, 0, approved.stderr);
    const answer = await asked;
    assert.match(text(answer), new RegExp(`request ${pending.requestId}: approved`));
    assert.equal(text(await call('exec', { command: curl })), '[exit code 0]\n200');
    await new Promise((r) => setTimeout(r, 3300));
    assert.equal(text(await call('exec', { command: curl })), '[exit code 0]\n403');
    // The agent's own tools offer no way to approve: only request_access asks.
    const names = (await client.listTools()).tools.map((t) => t.name);
    assert.ok(!names.some((n) => /approve|allow|grant/.test(n)));
  } finally {
    await srv.close();
  }
});

test('the error paths of list_dir, search, read_file, python and request_access come back as tool errors the agent can read', async () => {
  const ls = await call('list_dir', { path: 'no/such/dir' });
  assert.equal(ls.isError, true);
  assert.match(text(ls), /no\/such\/dir.*No such file or directory/);
  const grep = await call('search', { pattern: '([unclosed', regex: true });
  assert.equal(grep.isError, true);
  assert.match(text(grep), /grep: .*(Unmatched|unmatched|brack)/i);
  const dir = await call('read_file', { path: '.' });
  assert.equal(dir.isError, true);
  assert.match(text(dir), /^\. is not a regular file$/);
  const badHost = await call('request_access', { kind: 'host', target: 'not a host!', reason: 'test', waitSeconds: 0 });
  assert.equal(badHost.isError, true);
  assert.match(text(badHost), /not a host!/);
  const badKind = await client.callTool({ name: 'request_access', arguments: { kind: 'root', target: 'x', reason: 'y' } }).then(
    (r) => ({ isError: (r as ToolResult).isError, text: text(r as ToolResult) }),
    (e: Error) => ({ isError: true, text: e.message }),
  );
  assert.equal(badKind.isError, true);
  assert.match(badKind.text, /kind/);
  const syntax = await call('python', { code: 'def (' });
  assert.equal(syntax.isError, true);
  assert.match(text(syntax), /SyntaxError/);
  // And the server still answers.
  assert.equal(text(await call('exec', { command: 'echo ok' })), '[exit code 0]\nok\n');
});
