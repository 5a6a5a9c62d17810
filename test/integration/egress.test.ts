/**
 * The egress proxy with real tools inside real sandboxes and real servers on the
 * host's loopback: curl (HTTP, CONNECT, SOCKS5), Node, git over HTTP and npm against
 * a local registry. Each allowed attempt reaches its server and is audited; each
 * denied one is refused with the rule that decided, audited, and never reaches it.
 */
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { startSession, tempDir } from '../helpers/sandbox';
import { hostHttpServer, netRecords, serveDir } from '../helpers/egress';

const CURL = ['curl', '-sS', '--max-time', '20'];

test('an allowed host is reachable with curl through the proxy, and the attempt is audited as allowed', async (t) => {
  const srv = await hostHttpServer();
  t.after(() => srv.close());
  const s = await startSession({ egress: {}, policy: { network: { allow: [`127.0.0.1:${srv.port}`] } } });
  t.after(() => s.close());
  // The shell prints its pid and becomes curl (exec): the pid the audit must name.
  const r = await s.run(['sh', '-c', `echo $$; exec ${CURL.join(' ')} http://127.0.0.1:${srv.port}/hello?q=1`]);
  const [pid, body] = r.stdout.split('\n');
  assert.equal(body, 'hello from the host', r.stderr);
  assert.equal(srv.requests.length, 1);
  assert.equal(srv.requests[0].url, '/hello?q=1', 'the server sees an origin-form path');
  const rec = netRecords(s.auditFile);
  assert.equal(rec.length, 1);
  assert.equal(rec[0].session, s.session.id);
  assert.equal(rec[0].decision, 'allow');
  assert.equal(rec[0].rule, `127.0.0.1:${srv.port}`);
  assert.equal(rec[0].protocol, 'http');
  assert.equal(rec[0].method, 'GET');
  assert.equal(rec[0].path, '/hello');
  assert.equal(rec[0].address, '127.0.0.1');
  assert.equal(rec[0].pid, Number(pid), 'the agent reports which process connected (its pid inside)');
  assert.equal(rec[0].reportedBy, 'airlock-agent');
  assert.equal(rec[0].process, 1, 'curl descends from the first process of the session');
  const closes = netRecords(s.auditFile, 'net.close');
  assert.equal(closes.length, 1);
  assert.ok((closes[0].bytesDown as number) > 0, 'bytes received are counted');
});

test('a host with no rule is refused with a 403 naming the rule, audited, and the server receives nothing', async (t) => {
  const srv = await hostHttpServer();
  t.after(() => srv.close());
  const s = await startSession({ egress: {} });
  t.after(() => s.close());
  const r = await s.run([...CURL, '-i', `http://127.0.0.1:${srv.port}/`]);
  assert.match(r.stdout, /^HTTP\/1\.1 403/);
  assert.match(r.stdout, /no rule allows it \(default deny\)/);
  assert.match(r.stdout, new RegExp(`--allow 127\\.0\\.0\\.1:${srv.port}`), 'the body says how to allow it');
  assert.equal(srv.connections, 0);
  const rec = netRecords(s.auditFile);
  assert.equal(rec.length, 1);
  assert.equal(rec[0].decision, 'deny');
  assert.equal(rec[0].rule, 'default-deny');
  assert.equal(rec[0].host, '127.0.0.1');
  assert.equal(netRecords(s.auditFile, 'net.close').length, 0);
});

test('CONNECT tunnels and SOCKS5 (with the name resolved by the proxy) reach an allowed host', async (t) => {
  const srv = await hostHttpServer();
  t.after(() => srv.close());
  const s = await startSession({ egress: {}, policy: { network: { allow: [`127.0.0.1:${srv.port}`] } } });
  t.after(() => s.close());
  const tunnel = await s.run([...CURL, '--proxytunnel', `http://127.0.0.1:${srv.port}/tunnel`]);
  assert.equal(tunnel.stdout, 'hello from the host\n', tunnel.stderr);
  const socks = await s.run([...CURL, '--proxy', 'socks5h://127.0.0.1:3128', `http://127.0.0.1:${srv.port}/socks`]);
  assert.equal(socks.stdout, 'hello from the host\n', socks.stderr);
  assert.deepEqual(srv.requests.map((x) => x.url), ['/tunnel', '/socks']);
  assert.deepEqual(netRecords(s.auditFile).map((x) => [x.protocol, x.decision]), [['connect', 'allow'], ['socks', 'allow']]);
});

test('a denied SOCKS5 request gets "not allowed by ruleset" and a denied CONNECT a 403', async (t) => {
  const srv = await hostHttpServer();
  t.after(() => srv.close());
  const s = await startSession({ egress: {} });
  t.after(() => s.close());
  const socks = await s.run([...CURL, '--proxy', 'socks5h://127.0.0.1:3128', `http://127.0.0.1:${srv.port}/`]);
  assert.notEqual(socks.code, 0);
  // curl prints the SOCKS5 reply code: 2 is "connection not allowed by ruleset".
  assert.match(socks.stderr, /SOCKS5 connection to 127\.0\.0\.1\. \(2\)/);
  const tunnel = await s.run([...CURL, '--proxytunnel', `http://127.0.0.1:${srv.port}/`]);
  assert.notEqual(tunnel.code, 0);
  assert.match(tunnel.stderr, /403/);
  assert.equal(srv.connections, 0);
  assert.deepEqual(netRecords(s.auditFile).map((x) => [x.protocol, x.decision]), [['socks', 'deny'], ['connect', 'deny']]);
});

test('Node inside the sandbox reaches an allowed host through the proxy with a proxy agent', async (t) => {
  const srv = await hostHttpServer((_q, res, body) => res.end(`got ${body}`));
  t.after(() => srv.close());
  const s = await startSession({ egress: {}, policy: { network: { allow: [`127.0.0.1:${srv.port}`] } } });
  t.after(() => s.close());
  // A minimal proxy agent: the request goes to HTTP_PROXY with the absolute URL as its path.
  const script = `
    const http = require('http');
    const proxy = new URL(process.env.HTTP_PROXY);
    const req = http.request({ host: proxy.hostname, port: proxy.port, method: 'POST', path: 'http://127.0.0.1:${srv.port}/node', headers: { host: '127.0.0.1:${srv.port}' } }, (res) => {
      let b = ''; res.on('data', (d) => (b += d)); res.on('end', () => console.log(res.statusCode, b));
    });
    req.on('error', (e) => { console.log('error', e.message); process.exit(1); });
    req.end('from node');`;
  const r = await s.run(['node', '-e', script]);
  assert.equal(r.stdout.trim(), '200 got from node', r.stderr);
  assert.equal(srv.requests[0].method, 'POST');
});

test('git clones over HTTP from an allowed local server and is refused by one that is not allowed', async (t) => {
  const host = tempDir('airlock-git-');
  t.after(() => fs.rmSync(host, { recursive: true, force: true }));
  const git = (args: string[], cwd: string): string => execFileSync('git', args, { cwd, env: { ...process.env, GIT_CONFIG_NOSYSTEM: '1', HOME: host }, encoding: 'utf8' });
  fs.mkdirSync(path.join(host, 'src'));
  git(['init', '-q', '-b', 'main'], path.join(host, 'src'));
  fs.writeFileSync(path.join(host, 'src', 'README.md'), 'cloned through airlock\n');
  git(['add', '.'], path.join(host, 'src'));
  git(['-c', 'user.name=t', '-c', 'user.email=t@t', 'commit', '-q', '-m', 'one'], path.join(host, 'src'));
  git(['clone', '-q', '--bare', 'src', 'repo.git'], host);
  git(['update-server-info'], path.join(host, 'repo.git'));
  const srv = await hostHttpServer(serveDir(host));
  t.after(() => srv.close());
  const s = await startSession({ egress: {}, policy: { network: { allow: [`127.0.0.1:${srv.port}`] } } });
  t.after(() => s.close());
  const r = await s.run(['sh', '-c', `git clone -q http://127.0.0.1:${srv.port}/repo.git out && cat out/README.md`]);
  assert.equal(r.stdout, 'cloned through airlock\n', r.stderr);

  const denied = await startSession({ egress: {} });
  t.after(() => denied.close());
  const before = srv.connections;
  const d = await denied.run(['git', 'clone', '-q', `http://127.0.0.1:${srv.port}/repo.git`, 'out']);
  assert.notEqual(d.code, 0);
  assert.match(d.stderr, /403/);
  assert.equal(srv.connections, before);
});

test('airlock run --allow fetches from a host server, the same without --allow is refused, and one --audit-json file holds both decisions', async (t) => {
  const { runCli } = await import('../helpers/sandbox');
  const srv = await hostHttpServer();
  t.after(() => srv.close());
  const dir = tempDir('airlock-cli-net-');
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  const url = `http://127.0.0.1:${srv.port}/`;
  const ok = await runCli(['run', '--workspace', dir, '--no-registries', '--allow', `127.0.0.1:${srv.port}`, '--audit-json', path.join(dir, 'a.jsonl'), '--', 'curl', '-s', url]);
  assert.equal(ok.stdout, 'hello from the host\n', ok.stderr);
  const no = await runCli(['run', '--workspace', dir, '--no-registries', '--audit-json', path.join(dir, 'a.jsonl'), '--', 'curl', '-s', '-o', '/dev/null', '-w', '%{http_code}', url]);
  assert.equal(no.stdout, '403');
  assert.equal(srv.requests.length, 1, 'only the allowed attempt reached the server');
  const read = (f: string): Record<string, unknown>[] => fs.readFileSync(path.join(dir, f), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
  const a = read('a.jsonl').filter((x) => x.type === 'net.connect');
  assert.deepEqual(a.map((x) => [x.host, x.port, x.decision, x.rule]), [
    ['127.0.0.1', srv.port, 'allow', `127.0.0.1:${srv.port}`],
    ['127.0.0.1', srv.port, 'deny', 'default-deny'],
  ]);
  assert.notEqual(a[0]!.session, a[1]!.session, 'two runs, two sessions');
});
