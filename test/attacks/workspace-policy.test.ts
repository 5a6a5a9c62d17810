/**
 * A cloned repository ships its own `.vscode/airlock.json`. The attack: that file tries
 * to loosen the sandbox its user will run the repository's code in — pass the user's
 * environment variables in, unmask `.env`, show host directories, allow its own host,
 * lift limits. Each attempt must be ignored (and said so), through the CLI and through
 * the daemon the VS Code extension uses; what only tightens still applies.
 */
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fakeSecret } from '../helpers/attack';
import { startInProcessDaemon } from '../helpers/daemon';
import { tmp, writeFiles } from '../helpers/integration';
import { runCli } from '../helpers/sandbox';
import { readAuditFile } from '../../runtime/audit';

const HOSTILE = {
  version: 1,
  env: { pass: ['AIRLOCK_ATTACK_TOKEN'], set: { FROM_POLICY: 'set-by-workspace' } },
  filesystem: { mask: ['!.env', 'private.txt'], readOnly: ['!.vscode/'], hostReadOnly: ['/etc/ssh'] },
  limits: { lifetimeSeconds: 7 * 24 * 3600, pids: 100 },
  network: { allow: ['attacker.example'], allowAll: true, maxConnections: 1024 },
};

const SCRIPT = [
  'echo "token=${AIRLOCK_ATTACK_TOKEN:-absent} set=${FROM_POLICY:-absent}"',
  'echo "env=$(cat .env 2>&1 | head -c 200)"',
  'echo "private=$(cat private.txt 2>&1 | head -c 200)"',
  'echo "ssh=$(ls /etc/ssh 2>&1 | head -1)"',
  'echo "pids=$(awk \'/^Max processes/ {print $3}\' /proc/self/limits)"',
  'touch .vscode/tasks.json 2>/dev/null && echo "vscode=writable" || echo "vscode=read-only"',
].join('; ');

function hostileWorkspace(t: { after: (fn: () => void) => void }, secret: string): string {
  const ws = tmp(t, 'airlock-hostile-ws-');
  writeFiles(ws, { '.env': `API_KEY=${secret}\n`, 'private.txt': `${secret}\n`, '.vscode/airlock.json': JSON.stringify(HOSTILE) });
  return ws;
}

function assertContained(out: string, secret: string): void {
  assert.ok(!out.includes(secret), `a secret reached the sandbox:\n${out}`);
  assert.match(out, /token=absent set=set-by-workspace/);
  // A masked file reads as empty.
  assert.match(out, /^env=$/m, '.env stays masked');
  assert.match(out, /^private=$/m, 'the tightening mask (private.txt) applies');
  assert.match(out, /^ssh=ls: cannot access '\/etc\/ssh'/m);
  assert.match(out, /^pids=100$/m, 'a lower limit applies');
  assert.match(out, /^vscode=read-only$/m);
}

test('airlock run: a workspace policy cannot pass variables in, unmask .env, show host paths, or widen anything', async (t) => {
  const secret = fakeSecret('ws-policy');
  const ws = hostileWorkspace(t, secret);
  const r = await runCli(['run', '--', 'sh', '-c', `${SCRIPT}; curl -s -o /dev/null -w "curl=%{http_code}\\n" http://attacker.example/ || true`], { cwd: ws, env: { AIRLOCK_ATTACK_TOKEN: secret } });
  assertContained(r.stdout, secret);
  assert.match(r.stdout, /curl=403/, 'network.allow from the workspace was ignored: the proxy refused');
  // The person is told, naming each ignored part.
  for (const part of ['env.pass (AIRLOCK_ATTACK_TOKEN)', 'filesystem.mask exceptions (!.env)', 'filesystem.readOnly exceptions (!.vscode/)', 'filesystem.hostReadOnly (/etc/ssh)', 'limits.lifetimeSeconds above the default', 'network.allow (attacker.example)', 'network.allowAll', 'network.maxConnections above the default']) {
    assert.ok(r.stderr.includes(part), `the warning names ${part}: ${r.stderr}`);
  }
});

test('the daemon (VS Code\'s path): the same workspace policy is restricted, audited as policy.ignored, and shown in session.start', async () => {
  const d = await startInProcessDaemon();
  try {
    const secret = fakeSecret('ws-policy');
    const ws = d.workspace();
    writeFiles(ws, { '.env': `API_KEY=${secret}\n`, 'private.txt': `${secret}\n`, '.vscode/airlock.json': JSON.stringify(HOSTILE) });
    const c = await d.client();
    const events: Record<string, unknown>[] = [];
    c.on('event', (e) => events.push(e as unknown as Record<string, unknown>));
    await c.call('events.subscribe', { filter: ['session.start'] });
    const { sessionId } = await c.call('session.create', { workspace: ws, env: { AIRLOCK_ATTACK_TOKEN: secret } });
    const r = await c.call('exec', { sessionId, argv: ['sh', '-c', SCRIPT] });
    assertContained(r.stdout, secret);
    const start = events.find((e) => e.sessionId === sessionId);
    assert.match(String(start?.policyIgnored), /env\.pass \(AIRLOCK_ATTACK_TOKEN\).*filesystem\.hostReadOnly/);
    const ignored = readAuditFile(d.auditFile).records.filter((x) => x.session === sessionId && x.type === 'policy.ignored');
    assert.equal(ignored.length, 1);
    assert.match(String(ignored[0]!.message), /network\.allow \(attacker\.example\)/);
    const info = await c.call('session.get', { sessionId });
    assert.ok(info.lifetimeLeft <= 8 * 3600, `lifetime stays at most the default: ${info.lifetimeLeft}`);
    assert.ok(fs.existsSync(path.join(ws, '.env')), 'control: .env exists on the host');
  } finally {
    await d.stop();
  }
});
