/**
 * Policy documents: defaults, how documents combine, and error messages that name
 * the field and the problem (a person reads them and fixes the file).
 */
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import {
  DEFAULT_LIMITS, DEFAULT_MASK, DEFAULT_READ_ONLY, loadPolicyFile, PolicyError, resolvePolicy, summarizePolicy, validatePolicyDocument,
} from '../../runtime/policy/policy';
import { loadWorkspacePolicy, WORKSPACE_POLICY } from '../../runtime/policy/load';

function tmp(t: { after: (fn: () => void) => void }): string {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), 'airlock-policy-'));
  t.after(() => fs.rmSync(d, { recursive: true, force: true }));
  return d;
}

/** The PolicyError message thrown by FN (fails the test when nothing is thrown). */
function errorOf(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    assert.ok(e instanceof PolicyError, `expected a PolicyError, got ${String(e)}`);
    return e.message;
  }
  assert.fail('expected an error');
}

test('resolvePolicy without documents gives the secure defaults', () => {
  const p = resolvePolicy();
  assert.deepEqual(p.env, { pass: [], set: {} });
  assert.deepEqual(p.filesystem.mask, [...DEFAULT_MASK]);
  assert.deepEqual(p.filesystem.readOnly, [...DEFAULT_READ_ONLY]);
  assert.deepEqual(p.filesystem.hostReadOnly, []);
  assert.equal(p.filesystem.maskScanLimit, 500_000);
  assert.deepEqual(p.limits, { ...DEFAULT_LIMITS });
  assert.deepEqual(p.network, { mode: 'proxy', allow: [], deny: [], allowAll: false, registries: true, maxConnections: 512, maxMiB: 16384 }, 'default deny through the proxy');
  assert.ok(p.filesystem.mask.includes('.env'));
  assert.ok(p.filesystem.readOnly.includes('.git/hooks/'));
});

test('resolvePolicy returns a fresh object each time, so one session cannot change another\'s policy', () => {
  const a = resolvePolicy();
  a.filesystem.mask.push('x');
  a.limits.pids = 9;
  const b = resolvePolicy();
  assert.ok(!b.filesystem.mask.includes('x'));
  assert.equal(b.limits.pids, DEFAULT_LIMITS.pids);
  assert.ok(!DEFAULT_MASK.includes('x'));
});

test('lists extend the defaults and earlier documents; scalars override them', () => {
  const p = resolvePolicy(
    { env: { pass: ['FOO'], set: { A: '1', B: '2' } }, filesystem: { mask: ['secret.txt'], readOnly: ['Makefile'] }, limits: { pids: 64, memoryMiB: 512 } },
    undefined,
    { env: { pass: ['BAR', 'FOO'], set: { B: '3' } }, filesystem: { mask: ['!secret.txt'], hostReadOnly: ['/opt'], maskScanLimit: 2000 }, limits: { pids: 128 } },
  );
  assert.deepEqual(p.env.pass, ['FOO', 'BAR'], 'pass lists are merged without duplicates');
  assert.deepEqual(p.env.set, { A: '1', B: '3' });
  assert.deepEqual(p.filesystem.mask, [...DEFAULT_MASK, 'secret.txt', '!secret.txt']);
  assert.deepEqual(p.filesystem.readOnly, [...DEFAULT_READ_ONLY, 'Makefile']);
  assert.deepEqual(p.filesystem.hostReadOnly, ['/opt']);
  assert.equal(p.filesystem.maskScanLimit, 2000);
  assert.equal(p.limits.pids, 128);
  assert.equal(p.limits.memoryMiB, 512);
  assert.equal(p.limits.lifetimeSeconds, DEFAULT_LIMITS.lifetimeSeconds);
});

test('a document cannot remove a default mask by listing fewer patterns', () => {
  const p = resolvePolicy({ filesystem: { mask: [] } });
  assert.deepEqual(p.filesystem.mask, [...DEFAULT_MASK]);
});

test('resolvePolicy validates each document it is given', () => {
  const msg = errorOf(() => resolvePolicy({ limits: { pids: 'many' } } as never));
  assert.match(msg, /limits\.pids: must be integer/);
});

test('a wrongly typed field is named with its path and the expected type', () => {
  const msg = errorOf(() => validatePolicyDocument({ limits: { pids: 'many' } }, 'p.json'));
  assert.ok(msg.includes('limits.pids'), msg);
  assert.ok(msg.includes('must be integer'), msg);
  assert.ok(msg.includes('p.json'), msg);
});

test('an unknown top-level field is named and the allowed fields are listed', () => {
  const msg = errorOf(() => validatePolicyDocument({ limitz: {} }));
  assert.ok(msg.includes('limitz: unknown field'), msg);
  assert.match(msg, /allowed: .*limits/);
});

test('an unknown nested field is named with its full path', () => {
  const msg = errorOf(() => validatePolicyDocument({ filesystem: { masks: ['.env'] } }));
  assert.ok(msg.includes('filesystem.masks: unknown field'), msg);
  assert.match(msg, /allowed: mask, readOnly, hostReadOnly, maskScanLimit/);
});

test('network.mode other than proxy or none names the field and the allowed values', () => {
  const msg = errorOf(() => validatePolicyDocument({ network: { mode: 'open' } as never }));
  assert.ok(msg.includes('network.mode'), msg);
  assert.ok(msg.includes('must be one of "proxy", "none"'), msg);
});

test('a malformed network rule is refused naming the list, the rule and a valid example', () => {
  const msg = errorOf(() => validatePolicyDocument({ network: { allow: ['exa mple.com'] } }, 'test.json'));
  assert.match(msg, /invalid policy test\.json: network\.allow: network rule "exa mple\.com" is not valid: .*examples: example\.com/);
  assert.match(errorOf(() => validatePolicyDocument({ network: { deny: ['*'] } })), /network\.deny: .*--allow-all-network/);
});

test('network allow and deny lists extend across documents and keep each rule once', () => {
  const p = resolvePolicy({ network: { allow: ['a.example', 'b.example'] } }, { network: { allow: ['a.example'], deny: ['c.example'], maxConnections: 10 } });
  assert.deepEqual(p.network.allow, ['a.example', 'b.example']);
  assert.deepEqual(p.network.deny, ['c.example']);
  assert.equal(p.network.maxConnections, 10);
});

test('out-of-range limits, bad variable names and a wrong version are each reported', () => {
  assert.match(errorOf(() => validatePolicyDocument({ limits: { pids: 1 } })), /limits\.pids: must be >= 8/);
  assert.match(errorOf(() => validatePolicyDocument({ filesystem: { maskScanLimit: 10 } })), /filesystem\.maskScanLimit: must be >= 1000/);
  assert.match(errorOf(() => validatePolicyDocument({ env: { pass: ['NOT-A-NAME'] } })), /env\.pass\.0: must match pattern/);
  assert.match(errorOf(() => validatePolicyDocument({ version: 2 })), /version: must be 1/);
  assert.match(errorOf(() => validatePolicyDocument({ filesystem: { hostReadOnly: ['opt'] } })), /filesystem\.hostReadOnly\.0: must match pattern/);
});

test('every problem of a document is reported at once', () => {
  const msg = errorOf(() => validatePolicyDocument({ limits: { pids: 'x', memoryMiB: -1 }, extra: 1 }));
  assert.ok(msg.includes('limits.pids'), msg);
  assert.ok(msg.includes('limits.memoryMiB'), msg);
  assert.ok(msg.includes('extra: unknown field'), msg);
});

test('a document that is not an object is refused', () => {
  assert.match(errorOf(() => validatePolicyDocument([])), /\(top level\): must be object/);
  assert.match(errorOf(() => validatePolicyDocument('x')), /must be object/);
});

test('a valid document passes through unchanged', () => {
  const doc = { $schema: './airlock.schema.json', version: 1 as const, env: { pass: ['CI'] }, limits: { idleSeconds: 60 } };
  assert.equal(validatePolicyDocument(doc), doc);
});

test('loadPolicyFile reads and validates a file', (t) => {
  const file = path.join(tmp(t), 'airlock.json');
  fs.writeFileSync(file, JSON.stringify({ limits: { pids: 100 } }));
  assert.deepEqual(loadPolicyFile(file), { limits: { pids: 100 } });
});

test('loadPolicyFile names the file and the field of an invalid document', (t) => {
  const file = path.join(tmp(t), 'bad.json');
  fs.writeFileSync(file, JSON.stringify({ limits: { pids: 'many' } }));
  const msg = errorOf(() => loadPolicyFile(file));
  assert.ok(msg.includes(file), msg);
  assert.ok(msg.includes('limits.pids') && msg.includes('must be integer'), msg);
});

test('loadPolicyFile says a file with broken JSON is not valid JSON', (t) => {
  const file = path.join(tmp(t), 'broken.json');
  fs.writeFileSync(file, '{ "limits": { "pids": 10, } ');
  const msg = errorOf(() => loadPolicyFile(file));
  assert.ok(msg.includes(`${file} is not valid JSON`), msg);
});

test('loadPolicyFile says a missing file is not found', (t) => {
  const file = path.join(tmp(t), 'nope.json');
  const msg = errorOf(() => loadPolicyFile(file));
  assert.ok(msg.includes(file) && msg.includes('not found'), msg);
});

test('loadPolicyFile reports a path it cannot read as a file (a directory)', (t) => {
  const dir = tmp(t);
  const msg = errorOf(() => loadPolicyFile(dir));
  assert.ok(msg.includes(`cannot read policy file ${dir}`), msg);
});

test('summarizePolicy records names and sizes but no variable values', () => {
  const s = summarizePolicy(resolvePolicy({ env: { pass: ['CI'], set: { TOKEN_LIKE: 'fake-value-123' } } }));
  assert.deepEqual(s.envPass, ['CI']);
  assert.deepEqual(s.envSet, ['TOKEN_LIKE']);
  assert.ok(!JSON.stringify(s).includes('fake-value-123'));
  assert.deepEqual(s.network, { mode: 'proxy', allow: [], deny: [], registries: true });
});

test("a workspace's own policy file cannot widen egress: its allow rules, allowAll and raised caps are dropped, its deny rules kept", (t) => {
  const ws = tmp(t);
  fs.mkdirSync(path.join(ws, '.vscode'));
  fs.writeFileSync(path.join(ws, WORKSPACE_POLICY), JSON.stringify({ network: { allow: ['attacker.example'], allowAll: true, deny: ['prod.example'], maxConnections: 1024, maxMiB: 10 } }));
  const doc = loadWorkspacePolicy(ws)!;
  assert.deepEqual(doc.network, { deny: ['prod.example'], maxMiB: 10 });
  const p = resolvePolicy(doc);
  assert.deepEqual([p.network.allow, p.network.allowAll, p.network.deny, p.network.maxConnections], [[], false, ['prod.example'], 512]);
});
