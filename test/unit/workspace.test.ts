/**
 * planWorkspace (runtime/policy/workspace.ts): which folders may be a workspace, and
 * which paths inside one are masked or read-only before the session starts.
 */
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { resolvePolicy } from '../../runtime/policy/policy';
import { planWorkspace, WorkspaceError, WorkspacePlan } from '../../runtime/policy/workspace';

function ws(t: { after: (fn: () => void) => void }, files: Record<string, string | null> = {}): string {
  const d = fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), 'airlock-wsplan-')));
  t.after(() => fs.rmSync(d, { recursive: true, force: true }));
  for (const [rel, content] of Object.entries(files)) {
    const abs = path.join(d, rel);
    if (content === null) fs.mkdirSync(abs, { recursive: true });
    else {
      fs.mkdirSync(path.dirname(abs), { recursive: true });
      fs.writeFileSync(abs, content);
    }
  }
  return d;
}

function refusal(dir: string): string {
  try {
    planWorkspace(dir, resolvePolicy());
  } catch (e) {
    assert.ok(e instanceof WorkspaceError, `expected a WorkspaceError, got ${String(e)}`);
    return e.message;
  }
  assert.fail(`${dir} was accepted as a workspace`);
}

const rels = (plan: WorkspacePlan, list: 'masks' | 'readOnly' | 'absentReadOnly'): string[] =>
  plan[list].map((p) => path.relative(plan.host, p.host) + (p.dir ? '/' : '')).sort();

test('the root directory is refused, with what to do instead', () => {
  const msg = refusal('/');
  assert.match(msg, /^workspace \/ is the root directory: open a project folder instead$/);
});

test('the home directory is refused because it holds credentials', () => {
  const msg = refusal(os.homedir());
  assert.ok(msg.includes(`workspace ${os.homedir()} is your home directory`), msg);
  assert.match(msg, /credentials\): open a project folder inside it instead/);
});

test('a parent of the home directory is refused', () => {
  const parent = path.dirname(os.homedir());
  const msg = refusal(parent);
  assert.ok(msg.startsWith(`workspace ${parent} is `), msg);
  assert.match(msg, /(root directory|a parent of your home directory .*): open a project folder instead$/);
});

test('system directories are refused', () => {
  for (const d of ['/usr', '/etc', '/tmp']) {
    assert.equal(refusal(d), `workspace ${d} is the system directory ${d}: open a project folder instead`);
  }
});

test('a missing directory is refused with how to fix it', (t) => {
  const missing = path.join(ws(t), 'does', 'not', 'exist');
  assert.equal(refusal(missing), `workspace ${missing} does not exist: create it or pass --workspace DIR`);
});

test('a file is refused as a workspace', (t) => {
  const f = path.join(ws(t, { 'a.txt': 'x' }), 'a.txt');
  assert.equal(refusal(f), `workspace ${f} is not a directory`);
});

test('a symlink to a forbidden directory is refused like the directory itself', (t) => {
  const d = ws(t);
  fs.symlinkSync('/usr', path.join(d, 'usr-link'));
  assert.match(refusal(path.join(d, 'usr-link')), /is the system directory \/usr/);
});

test('a project folder is accepted; inside keeps the path as named, host is the real path', (t) => {
  const d = ws(t, { 'src/index.ts': '' });
  fs.symlinkSync(d, d + '-link');
  t.after(() => fs.rmSync(d + '-link', { force: true }));
  const plan = planWorkspace(d + '-link/', resolvePolicy());
  assert.equal(plan.inside, d + '-link');
  assert.equal(plan.host, d);
  assert.deepEqual(plan.masks, []);
});

test('masked files and directories are found at any depth', (t) => {
  const d = ws(t, {
    '.env': 'A=1', 'a/b/c/.env.local': 'B=2', 'deep/x/y/server.pem': 'k', 'svc/credentials-prod.json': '{}',
    'infra/terraform.tfstate.backup': '{}', 'keys/.ssh': null, 'cfg/.aws': null,
    '.env.example': 'A=', 'src/environment.ts': '', 'key.txt': '', 'notes/.ssh': 'a file named .ssh',
  });
  const plan = planWorkspace(d, resolvePolicy());
  assert.deepEqual(rels(plan, 'masks'), [
    '.env', 'a/b/c/.env.local', 'cfg/.aws/', 'deep/x/y/server.pem', 'infra/terraform.tfstate.backup', 'keys/.ssh/', 'svc/credentials-prod.json',
  ].sort());
  const env = plan.masks.find((m) => m.host === path.join(d, '.env'))!;
  assert.equal(env.inside, path.join(d, '.env'));
  assert.equal(env.dir, false);
});

test('the scan does not descend into masked directories', (t) => {
  const d = ws(t, { '.aws/credentials': 'x', '.aws/nested/.env': 'x', '.aws/sub/id_rsa': 'x', 'ok/file': '' });
  const plan = planWorkspace(d, resolvePolicy());
  assert.deepEqual(rels(plan, 'masks'), ['.aws/']);
  assert.equal(plan.scanned, 3, '.aws, ok and ok/file; nothing under .aws');
});

test('policy masks extend the defaults and "!" patterns un-mask', (t) => {
  const d = ws(t, { 'secrets/db.txt': 'x', '.env': 'x', 'local.key': 'x' });
  const plan = planWorkspace(d, resolvePolicy({ filesystem: { mask: ['secrets/', '!local.key'] } }));
  assert.deepEqual(rels(plan, 'masks'), ['.env', 'secrets/']);
});

test('a fresh workspace gets placeholders for absent editor and agent config paths, but not .git/hooks', (t) => {
  const plan = planWorkspace(ws(t), resolvePolicy());
  const absent = rels(plan, 'absentReadOnly');
  for (const want of ['.vscode/', '.idea/', '.devcontainer/', '.envrc', '.mcp.json', '.claude/', '.cursor/', '.husky/']) {
    assert.ok(absent.includes(want), `${want} in ${absent.join(' ')}`);
  }
  assert.ok(!absent.some((a) => a.startsWith('.git')), 'no .git placeholder: it would make a repository appear');
  assert.deepEqual(plan.readOnly, []);
  // Editors parse .mcp.json: its placeholder is valid, empty configuration.
  const mcp = plan.absentReadOnly.find((p) => p.host.endsWith('/.mcp.json'));
  assert.deepEqual(JSON.parse(mcp?.content ?? 'null'), { mcpServers: {} });
});

test('in a repository, absent .git/hooks and .git/config get placeholders and present ones are read-only', (t) => {
  const d = ws(t, { '.git/HEAD': 'ref: refs/heads/main\n', '.git/objects/ab/cdef': 'x' });
  const plan = planWorkspace(d, resolvePolicy());
  const absent = rels(plan, 'absentReadOnly');
  assert.ok(absent.includes('.git/hooks/'), absent.join(' '));
  assert.ok(absent.includes('.git/config'), absent.join(' '));

  fs.mkdirSync(path.join(d, '.git/hooks'));
  fs.writeFileSync(path.join(d, '.git/config'), '[core]\n');
  fs.mkdirSync(path.join(d, '.vscode'));
  const again = planWorkspace(d, resolvePolicy());
  assert.deepEqual(rels(again, 'readOnly'), ['.git/config', '.git/hooks/', '.vscode/']);
  const stillAbsent = rels(again, 'absentReadOnly');
  for (const present of ['.git/hooks/', '.git/config', '.vscode/']) assert.ok(!stillAbsent.includes(present), present);
});

test('git object stores are not scanned', (t) => {
  const d = ws(t, { '.git/objects/ab/.env': 'x', '.git/refs/heads/main': 'x', 'sub/.git/objects/.env': 'x' });
  const plan = planWorkspace(d, resolvePolicy());
  assert.deepEqual(rels(plan, 'masks'), []);
});

test('a symlink to a secret in the workspace masks its target', (t) => {
  const d = ws(t, { 'real/data.txt': 'secret' });
  fs.symlinkSync('real/data.txt', path.join(d, '.env'));
  const plan = planWorkspace(d, resolvePolicy());
  assert.deepEqual(plan.masks.map((m) => m.host), [path.join(d, 'real/data.txt')]);
});

test('a read-only path that is a symlink is refused with the fix', (t) => {
  const d = ws(t, { 'hooks-real': null, '.git/HEAD': 'x' });
  fs.symlinkSync('../hooks-real', path.join(d, '.git/hooks'));
  assert.throws(() => planWorkspace(d, resolvePolicy()), (e: Error) => {
    assert.ok(e instanceof WorkspaceError);
    assert.match(e.message, /\.git\/hooks must be read-only in the sandbox but is a symlink/);
    assert.match(e.message, /make it a real directory, or add "!\.git\/hooks" to filesystem\.readOnly/);
    return true;
  });
});

test('a workspace with more entries than maskScanLimit is refused, naming the setting', (t) => {
  const d = ws(t);
  for (let i = 0; i < 1001; i++) fs.writeFileSync(path.join(d, `f${i}`), '');
  const policy = resolvePolicy({ filesystem: { maskScanLimit: 1000 } });
  assert.throws(() => planWorkspace(d, policy), (e: Error) => {
    assert.ok(e instanceof WorkspaceError);
    assert.ok(e.message.includes(`workspace ${d} has more than 1000 entries`), e.message);
    assert.ok(e.message.includes('raise filesystem.maskScanLimit in the policy'), e.message);
    return true;
  });
  assert.doesNotThrow(() => planWorkspace(d, resolvePolicy({ filesystem: { maskScanLimit: 1001 } })));
});
