/**
 * Who may talk to the daemon: only this user on the unix socket (a private directory,
 * a 0600 socket: another user gets EACCES); on TCP only a client with the bearer
 * token; never a browser (any Origin header is refused, token or not); only at /rpc;
 * TLS when asked. REAL daemons: serve() in this process, and `airlock serve --listen`.
 */
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as path from 'node:path';
import { RuntimeClient } from '../../runtime/client/client';
import { RawClient, startDaemonProcess, startInProcessDaemon, upgradeStatus } from '../helpers/daemon';
import { IS_ROOT, tempDir } from '../helpers/sandbox';

type T = { after: (fn: () => Promise<void> | void) => void; skip: (why: string) => void };

const OTHER_USER = 'airlock-ci2';

function hasCommand(cmd: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${cmd}`]).status === 0;
}

/** Tries to connect to SOCKET as OTHER_USER; returns 'CONNECTED' or the errno code. */
function probeAsOtherUser(socket: string): string {
  const script = "const s=require('net').connect(process.argv[1]);s.on('connect',()=>{console.log('CONNECTED');s.destroy()});s.on('error',(e)=>console.log(e.code))";
  const r = spawnSync('runuser', ['-u', OTHER_USER, '--', process.execPath, '-e', script, socket], { encoding: 'utf8', timeout: 15_000 });
  assert.equal(r.status, 0, `the probe ran: ${r.stderr}`);
  return r.stdout.trim();
}

test('the socket is mode 0600 in a directory of mode 0700, even one that existed with looser modes', { timeout: 90_000 }, async (t: T) => {
  const d = await startInProcessDaemon({ prepare: (dir) => fs.mkdirSync(path.join(dir, 'run'), { mode: 0o755 }) });
  t.after(() => d.stop());
  assert.equal(fs.statSync(path.dirname(d.socket)).mode & 0o777, 0o700);
  const st = fs.statSync(d.socket);
  assert.ok(st.isSocket());
  assert.equal(st.mode & 0o777, 0o600);
  assert.equal(st.uid, process.getuid!());
});

test('another user cannot connect to the unix socket (EACCES), kept out by the directory and by the socket mode alike', { timeout: 90_000 }, async (t: T) => {
  if (!IS_ROOT) return t.skip('needs root to create and switch to a second user');
  if (!hasCommand('runuser') || !hasCommand('useradd')) return t.skip('runuser/useradd not installed');
  if (spawnSync('id', [OTHER_USER]).status !== 0) {
    const r = spawnSync('useradd', ['-m', OTHER_USER], { encoding: 'utf8' });
    assert.equal(r.status, 0, `useradd ${OTHER_USER}: ${r.stderr}`);
  }
  const d = await startInProcessDaemon();
  t.after(() => d.stop());
  const sockDir = path.dirname(d.socket);
  // The temp dir above is only traversable: the daemon's own protections are what is tested.
  fs.chmodSync(d.dir, 0o711);
  assert.equal(probeAsOtherUser(d.socket), 'EACCES', 'the 0700 directory keeps another user out');
  fs.chmodSync(sockDir, 0o711);
  try {
    assert.equal(probeAsOtherUser(d.socket), 'EACCES', 'the 0600 socket keeps another user out');
    // Control: with the modes opened, the same probe connects, so it was the modes.
    fs.chmodSync(d.socket, 0o666);
    assert.equal(probeAsOtherUser(d.socket), 'CONNECTED');
  } finally {
    fs.chmodSync(d.socket, 0o600);
    fs.chmodSync(sockDir, 0o700);
    fs.chmodSync(d.dir, 0o700);
  }
});

test('a browser Origin header is refused with 403 on the unix socket, and a path other than /rpc with 404', { timeout: 90_000 }, async (t: T) => {
  const d = await startInProcessDaemon();
  t.after(() => d.stop());
  await assert.rejects(RawClient.open(d.socket, { headers: { Origin: 'https://evil.example' } }), { status: 403 });
  await assert.rejects(RawClient.open(d.socket, { headers: { Origin: 'null' } }), { status: 403 });
  await assert.rejects(RawClient.open(d.socket, { path: '/' }), { status: 404 });
  await assert.rejects(RawClient.open(d.socket, { path: '/rpc/../admin' }), { status: 404 });
  const ok = await RawClient.open(d.socket, { path: '/rpc?client=test' });
  assert.equal((await ok.call('runtime.info')).pid, process.pid, 'a query string on /rpc is fine');
  ok.close();
});

test('TCP needs the bearer token: none or a wrong one gets 401, the right one works, an Origin gets 403 even with it', { timeout: 90_000 }, async (t: T) => {
  const token = crypto.randomBytes(32).toString('hex');
  const d = await startInProcessDaemon({ tcp: { host: '127.0.0.1', port: 0, token } });
  t.after(() => d.stop());
  const port = d.server.tcpPort!;
  assert.ok(port > 0);
  const url = `ws://127.0.0.1:${port}/rpc`;
  assert.equal(await upgradeStatus(url), 401, 'no Authorization header');
  assert.equal(await upgradeStatus(url, { Authorization: `Bearer ${crypto.randomBytes(32).toString('hex')}` }), 401, 'a wrong token');
  assert.equal(await upgradeStatus(url, { Authorization: `Bearer ${token.slice(0, -1)}` }), 401, 'a prefix of the token');
  assert.equal(await upgradeStatus(url, { Authorization: `Bearer ${token}x` }), 401, 'the token with a byte more');
  assert.equal(await upgradeStatus(url, { Authorization: `Basic ${Buffer.from(`u:${token}`).toString('base64')}` }), 401, 'another scheme');
  assert.equal(await upgradeStatus(url, { Authorization: `Bearer ${token}`, Origin: `http://127.0.0.1:${port}` }), 403, 'a browser origin, even with the token');
  assert.equal(await upgradeStatus(`ws://127.0.0.1:${port}/other`, { Authorization: `Bearer ${token}` }), 404);
  assert.equal(await upgradeStatus(url, { Authorization: `Bearer ${token}` }), 101);
  await assert.rejects(RuntimeClient.connect({ url: `ws://127.0.0.1:${port}`, token: 'wrong' }), /the runtime refused the connection: HTTP 401/);

  const c = await RuntimeClient.connect({ url: `ws://127.0.0.1:${port}`, token });
  t.after(() => c.close());
  assert.equal((await c.call('runtime.info', {})).pid, process.pid);
  const { sessionId } = await c.call('session.create', { workspace: d.workspace() });
  const r = await c.call('exec', { sessionId, argv: ['sh', '-c', 'echo over-tcp'] });
  assert.equal(r.stdout, 'over-tcp\n');
  await c.call('session.kill', { sessionId });

  // A plain HTTP request (no upgrade) is told where to go, and gets nothing else.
  const plain = await new Promise<{ status: number; body: string }>((resolve, reject) => {
    http.get(`http://127.0.0.1:${port}/rpc`, (res) => {
      let body = '';
      res.on('data', (b) => (body += b));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    }).on('error', reject);
  });
  assert.deepEqual(plain, { status: 426, body: 'Airlock runtime: connect a WebSocket to /rpc\n' });
});

test('TCP with TLS: a client trusting the self-signed certificate connects with the token; one that does not is refused', { timeout: 90_000 }, async (t: T) => {
  if (!hasCommand('openssl')) return t.skip('openssl is not installed: cannot make a test certificate');
  const dir = tempDir('airlock-tls-');
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  const cert = path.join(dir, 'cert.pem');
  const key = path.join(dir, 'key.pem');
  const g = spawnSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', key, '-out', cert, '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1', '-days', '1'], { encoding: 'utf8', timeout: 30_000 });
  assert.equal(g.status, 0, g.stderr);
  const token = crypto.randomBytes(32).toString('hex');
  const d = await startInProcessDaemon({ tcp: { host: '127.0.0.1', port: 0, token, tls: { cert: fs.readFileSync(cert), key: fs.readFileSync(key) } } });
  t.after(() => d.stop());
  const port = d.server.tcpPort!;
  const ca = fs.readFileSync(cert);
  const c = await RuntimeClient.connect({ url: `wss://127.0.0.1:${port}`, token, ca });
  t.after(() => c.close());
  assert.equal((await c.call('runtime.info', {})).pid, process.pid);
  await assert.rejects(RuntimeClient.connect({ url: `wss://127.0.0.1:${port}`, token }), /self[- ]signed certificate/);
  assert.equal(await upgradeStatus(`wss://127.0.0.1:${port}/rpc`, { Authorization: 'Bearer nope' }, { ca }), 401);
  assert.equal(await upgradeStatus(`wss://127.0.0.1:${port}/rpc`, { Authorization: `Bearer ${token}`, Origin: 'https://evil.example' }, { ca }), 403);
  await assert.rejects(upgradeStatus(`ws://127.0.0.1:${port}/rpc`, { Authorization: `Bearer ${token}` }), 'plain ws to a TLS port does not open');
});

test('airlock serve --listen creates a 256-bit token stored 0600, prints it once, and TCP clients need it', { timeout: 90_000 }, async (t: T) => {
  const state = tempDir('airlock-state-');
  const first = await startDaemonProcess({ state, args: ['--listen', 'tcp://127.0.0.1:0', '--idle-exit', '60'] });
  let second: Awaited<ReturnType<typeof startDaemonProcess>> | undefined;
  t.after(async () => {
    try {
      await second?.stop();
      await first.stop();
    } finally {
      fs.rmSync(state, { recursive: true, force: true });
    }
  });
  const tokenFile = path.join(first.state, 'airlock', 'token');
  assert.equal(fs.statSync(tokenFile).mode & 0o777, 0o600);
  const token = fs.readFileSync(tokenFile, 'utf8').trim();
  assert.match(token, /^[0-9a-f]{64}$/, '32 random bytes, hex');
  const log = fs.readFileSync(first.log, 'utf8');
  assert.ok(log.includes(`It is shown this once:\n${token}\n`), log);
  const port = Number(/serving .* and ws:\/\/127\.0\.0\.1:(\d+) /.exec(log)?.[1]);
  assert.ok(port > 0, log);
  assert.equal(await upgradeStatus(`ws://127.0.0.1:${port}/rpc`), 401);
  const c = await RuntimeClient.connect({ url: `ws://127.0.0.1:${port}`, token });
  assert.equal((await c.call('runtime.info', {})).pid, first.pid);
  c.close();
  await first.stop();
  // The next daemon on the same state dir reuses the token and does not print it.
  second = await startDaemonProcess({ state, args: ['--listen', 'tcp://127.0.0.1:0', '--idle-exit', '60'] });
  assert.equal(fs.readFileSync(tokenFile, 'utf8').trim(), token);
  assert.ok(!fs.readFileSync(second.log, 'utf8').includes(token), 'the token is printed only when created');
});
