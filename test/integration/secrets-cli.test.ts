/**
 * Secrets through the real daemon and the `airlock` CLI as a person uses them: the
 * grant flags of `airlock run`, `airlock secret`, secret.* events, capped exec
 * results, and at the end a search of every file the daemon wrote for the values.
 */
import { after, before, test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as https from 'node:https';
import * as net from 'node:net';
import * as path from 'node:path';
import { runCli, tempDir } from '../helpers/sandbox';
import { DaemonProcess, startDaemonProcess } from '../helpers/daemon';
import { CertificateAuthority } from '../../runtime/secrets/ca';
import type { RuntimeEvent } from '../../runtime/protocol';

const values: string[] = [];
const fakeValue = (prefix: string): string => {
  const v = `${prefix}-${crypto.randomBytes(12).toString('hex')}`;
  values.push(v);
  return v;
};

let d: DaemonProcess;
let rt: string;
let caDir: string;
let service: { port: number; seen: string[]; close(): Promise<void> };

before(async () => {
  caDir = tempDir('airlock-svcca-');
  const serviceCa = await CertificateAuthority.loadOrCreate(caDir);
  const leaf = await serviceCa.leaf('127.0.0.1');
  const seen: string[] = [];
  const server = https.createServer({ key: leaf.key, cert: leaf.cert }, (req, res) => {
    seen.push(req.headers.authorization ?? '');
    res.end('ok\n');
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  service = {
    port: (server.address() as net.AddressInfo).port,
    seen,
    close: () => new Promise<void>((r) => {
      server.closeAllConnections();
      server.close(() => r());
    }),
  };
  d = await startDaemonProcess({ args: ['--idle-exit', '120', '--trust-ca', serviceCa.certPath] });
  rt = path.dirname(path.dirname(d.socket));
});

after(async () => {
  await d.stop();
  await service.close();
  fs.rmSync(caDir, { recursive: true, force: true });
});

const cli = (args: string[], env: NodeJS.ProcessEnv = {}) =>
  runCli(args, { env: { XDG_RUNTIME_DIR: rt, XDG_STATE_HOME: d.state, ...env }, keepDaemon: true, cwd: d.workspace() });

function forms(v: string): string[] {
  const b = Buffer.from(v);
  return [v, b.toString('base64').replace(/=+$/, ''), b.toString('hex')];
}

test('airlock run --secret S -- sh -c \'echo $S; printf %s "$S" | base64\' prints no form of the value', async () => {
  const S = fakeValue('topsecret');
  const r = await cli(['run', '--secret', 'S', '--', 'sh', '-c', 'echo $S; printf %s "$S" | base64'], { S });
  assert.equal(r.code, 0, r.stderr);
  for (const f of forms(S)) assert.ok(!(r.stdout + r.stderr).includes(f), 'a form of the value was printed');
  assert.equal(r.stdout, '[REDACTED:S]\n[REDACTED:S]\n');
  assert.match(r.stderr, /granted S \(env\) until /);
});

test('airlock run --secret NAME=@FILE reads the value from the file, and a missing variable fails before any sandbox starts', async () => {
  const v = fakeValue('fromfile');
  const dir = tempDir();
  fs.writeFileSync(path.join(dir, 'token'), v + '\n', { mode: 0o600 });
  const r = await cli(['run', '--secret', `TOKEN=@${path.join(dir, 'token')}`, '--', 'sh', '-c', 'printf %s "$TOKEN" | wc -c']);
  fs.rmSync(dir, { recursive: true });
  assert.equal(r.stdout.trim(), String(v.length));
  const missing = await cli(['run', '--secret', 'NOT_SET_ANYWHERE', '--', 'true']);
  assert.equal(missing.code, 2);
  assert.match(missing.stderr, /--secret NOT_SET_ANYWHERE: the variable NOT_SET_ANYWHERE is not set in this shell/);
  const inline = await cli(['run', '--secret', 'X=plainvalue', '--', 'true']);
  assert.match(inline.stderr, /takes @FILE \(a value on the command line would be visible/);
});

test('airlock run --broker makes the real header reach the allowed host while env inside shows only the placeholder', async () => {
  const TOK = fakeValue('ghp');
  const url = `https://127.0.0.1:${service.port}/`;
  const r = await cli(
    ['run', '--broker', `TOK=127.0.0.1:${service.port}`, '--allow', `127.0.0.1:${service.port}`, '--', 'sh', '-c', `env | grep '^TOK='; curl -sS --max-time 20 -H "Authorization: token $TOK" ${url}`],
    { TOK },
  );
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /^TOK=airlock-brokered-TOK-[0-9a-f]{32}\nok\n$/);
  assert.equal(service.seen.at(-1), `token ${TOK}`);
});

test('airlock secret grant, list and revoke act on a live session, and clients see secret.* events without values', async () => {
  const client = await d.client();
  const events: RuntimeEvent[] = [];
  client.on('event', (e: RuntimeEvent) => events.push(e));
  await client.call('events.subscribe', { filter: ['secret.*'] });
  const { sessionId } = await client.call('session.create', { workspace: d.workspace() });
  const V = fakeValue('live');
  const g = await cli(['secret', 'grant', sessionId, 'V', '--mode', 'file', '--ttl', '600'], { V });
  assert.equal(g.code, 0, g.stderr);
  const list = await cli(['secret', 'list', sessionId]);
  assert.match(list.stdout, /^V +file +until \S+\n$/);
  const cat = await client.call('exec', { sessionId, argv: ['cat', '/run/airlock/secrets/V'] });
  assert.equal(cat.stdout, '[REDACTED:V]');
  const rv = await cli(['secret', 'revoke', sessionId, 'V']);
  assert.equal(rv.code, 0, rv.stderr);
  const again = await cli(['secret', 'revoke', sessionId, 'V']);
  assert.equal(again.code, 125);
  assert.match(again.stderr, /has no live secret "V" \(it has none\)/);
  for (let i = 0; i < 50 && events.length < 2; i++) await new Promise((r) => setTimeout(r, 20));
  assert.deepEqual(events.map((e) => [e.type, e.name, e.mode]), [['secret.grant', 'V', 'file'], ['secret.revoke', 'V', 'file']]);
  assert.ok(!JSON.stringify(events).includes(V));
  await client.call('session.kill', { sessionId });
});

test('an exec result is capped at 64 KiB with head, tail and a note, and the full output is saved inside the sandbox', async () => {
  const client = await d.client();
  const { sessionId } = await client.call('session.create', { workspace: d.workspace() });
  const r = await client.call('exec', { sessionId, argv: ['seq', '1', '500000'] });
  const full = Array.from({ length: 500000 }, (_, i) => `${i + 1}\n`).join('');
  assert.equal(r.exitCode, 0);
  assert.equal(r.truncated, true);
  assert.equal(r.omittedBytes.stdout, full.length - 65536);
  assert.ok(r.stdout.startsWith('1\n2\n3\n'));
  assert.ok(r.stdout.endsWith('499999\n500000\n'));
  assert.match(r.stdout, new RegExp(`\\[airlock: ${full.length - 65536} bytes left out; the full output is in /tmp/airlock-output/exec-\\d+\\.stdout inside the sandbox\\]`));
  assert.ok(Buffer.byteLength(r.stdout) < 65536 + 200);
  const size = await client.call('exec', { sessionId, argv: ['sh', '-c', `wc -c < ${r.fullOutput!.stdout}; tail -n1 ${r.fullOutput!.stdout}`] });
  assert.equal(size.stdout, `${full.length}\n500000\n`);
  await client.call('session.kill', { sessionId });
});

test('after all of the above, no granted value appears in any file under the daemon\'s state or runtime directories or its log', async () => {
  assert.ok(values.length >= 4);
  const hits: string[] = [];
  const walk = (dir: string): void => {
    for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
      const p = path.join(dir, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.isFile()) {
        let text: string;
        try {
          text = fs.readFileSync(p).toString('latin1');
        } catch (err) {
          // The audit log's lock (and a waiter's .want) come and go while the daemon runs.
          if ((err as NodeJS.ErrnoException).code === 'ENOENT') continue;
          throw err;
        }
        for (const v of values) for (const f of forms(v)) if (text.includes(f)) hits.push(`${p} holds a form of a granted value`);
      }
    }
  };
  walk(d.state);
  walk(rt);
  assert.deepEqual(hits, []);
  // The searched places are not empty: the audit log recorded the grants.
  assert.match(fs.readFileSync(d.auditFile, 'utf8'), /"type":"secret.grant"/);
});
