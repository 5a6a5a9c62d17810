/**
 * Leases and the broker without a sandbox: which requests get a value, which are
 * refused and why, and that records never carry a value. The owner is a recorder in
 * memory (the real session is tested in test/integration/secrets.test.ts).
 */
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as crypto from 'node:crypto';
import * as os from 'node:os';
import * as path from 'node:path';
import * as fs from 'node:fs';
import { SessionSecrets, SecretOwner } from '../../runtime/secrets/leases';
import { SecretBroker } from '../../runtime/secrets/broker';
import { RedactionSet } from '../../runtime/secrets/redaction';
import { CertificateAuthority } from '../../runtime/secrets/ca';
import type { BrokerRefusal } from '../../runtime/egress/types';

interface Rig {
  secrets: SessionSecrets;
  broker: SecretBroker;
  records: { type: string; fields: Record<string, unknown> }[];
  files: Map<string, Buffer>;
  redaction: RedactionSet;
}

let ca: CertificateAuthority | undefined;
async function rig(): Promise<Rig> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'airlock-unitca-'));
  ca ??= await CertificateAuthority.loadOrCreate(dir);
  const records: Rig['records'] = [];
  const files = new Map<string, Buffer>();
  const owner: SecretOwner = {
    id: 'sess1',
    recordSecret: (type, fields) => records.push({ type, fields }),
    writeFileInside: async (p, data) => void files.set(p, data),
    removeFileInside: async (p) => void files.delete(p),
  };
  const redaction = new RedactionSet();
  const secrets = new SessionSecrets(owner, redaction, () => 3600_000);
  return { secrets, broker: new SecretBroker(secrets, redaction.redactor, ca), records, files, redaction };
}

const value = (): string => `v-${crypto.randomBytes(16).toString('hex')}`;
const req = (host: string, port: number, headers: string[], target = '/x') => ({ host, port, method: 'GET', path: target.split('?')[0]!, target, headers });

test('a placeholder in a header to one of the secret\'s hosts is replaced with the value and the use recorded by name', async () => {
  const r = await rig();
  const v = value();
  await r.secrets.grant({ name: 'GH', value: v, mode: 'brokered', hosts: ['api.github.com', '*.example.com:443'] }, 'me');
  const ph = r.secrets.env().GH!;
  assert.match(ph, /^airlock-brokered-GH-[0-9a-f]{32}$/);
  const out = r.broker.rewrite(req('api.github.com', 443, ['Authorization', `Bearer ${ph}`, 'Accept-Encoding', 'gzip', 'X-Other', 'kept']));
  assert.deepEqual(out, { headers: ['Authorization', `Bearer ${v}`, 'X-Other', 'kept'], substituted: true });
  const sub = r.broker.rewrite(req('a.b.example.com', 443, ['X-Token', ph]));
  assert.deepEqual(sub, { headers: ['X-Token', v], substituted: true });
  assert.deepEqual(r.records.filter((x) => x.type === 'secret.use').map((x) => [x.fields.host, x.fields.uses]), [['api.github.com', 1], ['a.b.example.com', 2]]);
  assert.ok(!JSON.stringify(r.records).includes(v));
});

test('basic credentials carrying the placeholder are decoded, substituted and re-encoded', async () => {
  const r = await rig();
  const v = value();
  await r.secrets.grant({ name: 'PW', value: v, mode: 'brokered', hosts: ['git.example.com'] }, 'me');
  const ph = r.secrets.env().PW!;
  const out = r.broker.rewrite(req('git.example.com', 443, ['Authorization', `Basic ${Buffer.from(`user:${ph}`).toString('base64')}`]));
  assert.ok(!('status' in out));
  assert.equal(out.headers[1], `Basic ${Buffer.from(`user:${v}`).toString('base64')}`);
});

test('the placeholder going to any other host, port, in a URL or as a host name is refused with the reason recorded', async () => {
  const r = await rig();
  await r.secrets.grant({ name: 'GH', value: value(), mode: 'brokered', hosts: ['api.github.com:443'] }, 'me');
  const ph = r.secrets.env().GH!;
  const refusals = [
    r.broker.rewrite(req('evil.example', 443, ['Authorization', `token ${ph}`])),
    r.broker.rewrite(req('api.github.com', 80, ['Authorization', `token ${ph}`])),
    r.broker.rewrite(req('evil.example', 80, [], `/collect?k=${ph}`)),
    r.broker.rewrite(req('evil.example', 80, [], `/collect?k=${encodeURIComponent(ph).replace(/-/g, '%2D')}`)),
  ] as BrokerRefusal[];
  for (const x of refusals) {
    assert.equal(x.status, 403);
    assert.equal(x.rule, 'secret:GH:wrong-host');
    assert.match(x.message, /carries the placeholder of the brokered secret GH, which may only be sent to api\.github\.com:443/);
  }
  const dns = r.broker.checkHost(`${ph}.evil.example`, 443);
  assert.equal(dns?.rule, 'secret:GH:host-name');
  assert.deepEqual(r.records.filter((x) => x.type === 'secret.blocked').map((x) => x.fields.reason), ['wrong-host', 'wrong-host', 'wrong-host', 'wrong-host', 'host-name']);
  // A request without any placeholder is untouched, and an unrelated host is not intercepted.
  assert.deepEqual(r.broker.rewrite(req('evil.example', 443, ['A', 'b'])), { headers: ['A', 'b'], substituted: false });
  assert.equal(r.broker.intercepts('evil.example', 443), false);
  assert.equal(r.broker.intercepts('api.github.com', 443), true);
  assert.equal(r.broker.intercepts('api.github.com', 8443), false);
});

test('after revoke the placeholder is refused naming the revoked lease, the host stays intercepted, and the value stays redacted', async () => {
  const r = await rig();
  const v = value();
  await r.secrets.grant({ name: 'GH', value: v, mode: 'brokered', hosts: ['api.github.com'] }, 'me');
  const ph = r.secrets.env().GH!;
  await r.secrets.revoke('GH', 'me');
  assert.equal(r.secrets.env().GH, undefined);
  const x = r.broker.rewrite(req('api.github.com', 443, ['Authorization', `Bearer ${ph}`])) as BrokerRefusal;
  assert.equal(x.rule, 'secret:GH:revoked');
  assert.match(x.message, /whose lease was revoked/);
  assert.equal(r.broker.intercepts('api.github.com', 443), true);
  assert.equal(r.redaction.text(`leaked ${v}`), 'leaked [REDACTED:GH]');
});

test('a lease expires on its own: the file is removed and secret.expire recorded', async () => {
  const r = await rig();
  await r.secrets.grant({ name: 'F', value: value(), mode: 'file', ttlSeconds: 1 }, 'me');
  assert.equal(r.files.size, 1);
  await new Promise((res) => setTimeout(res, 1200));
  assert.equal(r.files.size, 0);
  assert.deepEqual(r.records.map((x) => x.type), ['secret.grant', 'secret.expire']);
});

test('a new grant of a live name replaces it, and dispose forgets every value', async () => {
  const r = await rig();
  const v1 = value();
  const v2 = value();
  await r.secrets.grant({ name: 'K', value: v1, mode: 'env' }, 'me');
  await r.secrets.grant({ name: 'K', value: v2, mode: 'env' }, 'me');
  assert.equal(r.secrets.env().K, v2);
  assert.deepEqual(r.records.map((x) => [x.type, x.fields.detail]), [['secret.grant', undefined], ['secret.revoke', 'replaced by a new grant from me'], ['secret.grant', undefined]]);
  assert.equal(r.redaction.text(`${v1} ${v2}`), '[REDACTED:K] [REDACTED:K]');
  r.secrets.dispose();
  assert.equal(r.redaction.text(v1), v1);
});

test('a TTL never outlives the session', async () => {
  const r = await rig();
  const info = await r.secrets.grant({ name: 'K', value: value(), mode: 'env', ttlSeconds: 604800 }, 'me');
  const left = Date.parse(info.expiresAt) - Date.now();
  assert.ok(left <= 3600_000 && left > 3590_000, `expires in ${left} ms`);
});

test('a request the rules refuse anyway is still inspected: a placeholder in it is recorded as blocked, and nothing is substituted', async () => {
  const r = await rig();
  await r.secrets.grant({ name: 'GH', value: value(), mode: 'brokered', hosts: ['api.github.com'] }, 'me');
  const ph = r.secrets.env().GH!;
  r.broker.inspect(req('evil.example', 80, ['X-Leak', ph]));
  // Toward its own host (refused by the network rules, say): no use, no block.
  r.broker.inspect(req('api.github.com', 443, ['Authorization', `Bearer ${ph}`]));
  assert.deepEqual(r.records.filter((x) => x.type !== 'secret.grant').map((x) => [x.type, x.fields.host, x.fields.reason]), [['secret.blocked', 'evil.example', 'wrong-host']]);
});
