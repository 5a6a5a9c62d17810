/**
 * Files the runtime writes inside a REAL sandbox through its agent: secrets granted in
 * file mode (a private 1 MiB tmpfs at /run/airlock/secrets, never the host's disk) and
 * spilled command output (/tmp/airlock-output). The agent writes nowhere else, and
 * symlinks the sandbox plants first do not redirect its writes.
 */
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { SessionEndedError } from '../../runtime/sessions';
import { runDir } from '../../runtime/util/paths';
import { startSession, TestSession } from '../helpers/sandbox';

async function open(t: { after: (fn: () => Promise<void>) => void }): Promise<TestSession> {
  const s = await startSession();
  t.after(() => s.close());
  return s;
}

const fakeValue = (label: string): string => `${label}-${crypto.randomBytes(12).toString('hex')}`;
const sha256 = (b: Buffer): string => crypto.createHash('sha256').update(b).digest('hex');

/** Every host file under DIR whose content includes NEEDLE. */
function hostFilesContaining(dir: string, needle: string): string[] {
  const out: string[] = [];
  const walk = (d: string): void => {
    for (const e of fs.readdirSync(d, { withFileTypes: true })) {
      const abs = path.join(d, e.name);
      if (e.isDirectory()) walk(abs);
      else if (e.isFile() && fs.readFileSync(abs).includes(needle)) out.push(abs);
    }
  };
  walk(dir);
  return out;
}

test('a secret written to /run/airlock/secrets is readable inside with mode 400, and is gone after removal', async (t) => {
  const s = await open(t);
  const value = fakeValue('token');
  await s.session.writeFileInside('/run/airlock/secrets/TOKEN', Buffer.from(value), { mode: 0o400 });
  const r = await s.run('cat /run/airlock/secrets/TOKEN; echo; stat -c "%a %u" /run/airlock/secrets/TOKEN; id -u; ls -A /run/airlock/secrets');
  assert.equal(r.code, 0, r.stderr);
  const [content, stat, uid, listing] = r.stdout.split('\n');
  assert.equal(content, value);
  assert.equal(stat, `400 ${uid}`, 'mode 0400, owned by the sandbox user');
  assert.equal(listing, 'TOKEN', 'no temporary file is left behind');

  const hostDir = path.join(runDir(), 'files');
  assert.deepEqual(hostFilesContaining(hostDir, value), [], 'the secret is not in the host directory bound at /run/airlock');
  assert.deepEqual(fs.readdirSync(path.join(hostDir, 'secrets')), [], 'the host mount point stays empty');

  await s.session.removeFileInside('/run/airlock/secrets/TOKEN');
  const gone = await s.run('test -e /run/airlock/secrets/TOKEN');
  assert.equal(gone.code, 1, 'the secret file is gone');
  await s.session.removeFileInside('/run/airlock/secrets/TOKEN'); // already gone: no error
});

test('writing a secret again replaces it whole', async (t) => {
  const s = await open(t);
  await s.session.writeFileInside('/run/airlock/secrets/KEY', Buffer.from('first-value-that-is-longer'), { mode: 0o400 });
  await s.session.writeFileInside('/run/airlock/secrets/KEY', Buffer.from('second'), { mode: 0o400 });
  const r = await s.run(['cat', '/run/airlock/secrets/KEY']);
  assert.equal(r.stdout, 'second');
});

test('/run/airlock/secrets is a private tmpfs, writable by the sandbox user while /run and /run/airlock stay read-only', async (t) => {
  const s = await open(t);
  const r = await s.run('cat /proc/self/mountinfo');
  assert.equal(r.code, 0, r.stderr);
  // mountinfo: id parent major:minor root mountpoint options ... - fstype source superoptions
  const mounts = r.stdout.trim().split('\n').map((l) => {
    const [pre, post] = l.split(' - ');
    const f = pre.split(' ');
    const [fstype, , superOpts] = post.split(' ');
    return { point: f[4], opts: f[5], fstype, superOpts };
  });
  const at = (p: string) => mounts.filter((m) => m.point === p).pop();
  const secrets = at('/run/airlock/secrets');
  assert.ok(secrets, 'a mount at /run/airlock/secrets');
  assert.equal(secrets.fstype, 'tmpfs');
  assert.match(secrets.opts, /^rw\b/, 'writable');
  assert.match(secrets.superOpts, /size=1024k/, 'bounded to 1 MiB');
  assert.match(secrets.superOpts, /mode=700/);
  assert.match(at('/run')!.opts, /^ro\b/, '/run is read-only');
  assert.match(at('/run/airlock')!.opts, /^ro\b/, '/run/airlock is read-only');

  const w = await s.run('echo x > /run/airlock/secrets/probe && echo ok; stat -c %a /run/airlock/secrets; { touch /run/airlock/probe; touch /run/probe; } 2>&1');
  const lines = w.stdout.trim().split('\n');
  assert.equal(lines[0], 'ok', 'the sandbox user (so its agent) can write there');
  assert.equal(lines[1], '700');
  assert.equal(lines.filter((l) => /Read-only file system/.test(l)).length, 2, w.stdout);
});

test('paths outside the two allowed directories are refused with EPERM, and nothing is created', async (t) => {
  const s = await open(t);
  const value = fakeValue('stray');
  const refused = [
    '/tmp/x',
    '/run/airlock/secrets/../x',
    '/run/airlock/secrets/a/b',
    '/run/airlock/secrets/',
    '/run/airlock/secrets',
    '/run/airlock/secretsX',
    '/run/airlock/secrets/.hidden',
    '/tmp/airlock-output/../x',
    '/tmp/airlock-output/sub/x',
    '/home/airlock/.bashrc',
    'run/airlock/secrets/x',
    `${s.session.plan.inside}/leak`,
  ];
  for (const p of refused) {
    const err = await s.session.writeFileInside(p, Buffer.from(value), { mode: 0o600 }).then(() => null, (e: Error) => e);
    assert.ok(err, `${p} must be refused`);
    assert.ok(err.message.startsWith(`cannot write ${p} inside the sandbox: EPERM`), err.message);
    await assert.rejects(s.session.removeFileInside(p), { message: new RegExp(`^cannot remove .* inside the sandbox: EPERM`) }, p);
  }
  const r = await s.run(`grep -rlF ${value} /tmp /run /home "${s.session.plan.inside}" 2>/dev/null; test -e /tmp/x || test -e /x || echo none`);
  assert.equal(r.stdout, 'none\n');
  assert.deepEqual(hostFilesContaining(s.workspace, value), []);
});

test('appends to /tmp/airlock-output accumulate across calls (200 KiB each), in a 0700 directory', async (t) => {
  const s = await open(t);
  const a = crypto.randomBytes(200 * 1024);
  const b = crypto.randomBytes(200 * 1024);
  await s.session.writeFileInside('/tmp/airlock-output/out.txt', a, { mode: 0o600, append: true });
  await s.session.writeFileInside('/tmp/airlock-output/out.txt', b, { mode: 0o600, append: true });
  const r = await s.run('sha256sum < /tmp/airlock-output/out.txt; stat -c "%s %a" /tmp/airlock-output/out.txt; stat -c %a /tmp/airlock-output');
  assert.equal(r.code, 0, r.stderr);
  const [sum, stat, dirMode] = r.stdout.split('\n');
  assert.equal(sum.split(' ')[0], sha256(Buffer.concat([a, b])));
  assert.equal(stat, `${400 * 1024} 600`);
  assert.equal(dirMode, '700');
  await s.session.removeFileInside('/tmp/airlock-output/out.txt');
  assert.equal((await s.run('test -e /tmp/airlock-output/out.txt')).code, 1);
});

test('a secret beyond the 1 MiB tmpfs is refused with ENOSPC, leaves no partial file, and spares the others', async (t) => {
  const s = await open(t);
  const small = fakeValue('small');
  await s.session.writeFileInside('/run/airlock/secrets/SMALL', Buffer.from(small), { mode: 0o400 });
  await assert.rejects(
    s.session.writeFileInside('/run/airlock/secrets/BIG', Buffer.alloc(2 * 1024 * 1024, 'x'), { mode: 0o400 }),
    { message: /^cannot write \/run\/airlock\/secrets\/BIG inside the sandbox: ENOSPC/ },
  );
  const r = await s.run('ls -A /run/airlock/secrets; cat /run/airlock/secrets/SMALL');
  assert.equal(r.stdout, `SMALL\n${small}`);
});

test('symlinks planted by the sandbox do not redirect writes out of the allowed directories', async (t) => {
  const s = await open(t);
  const ws = s.session.plan.inside;
  // The sandbox (same uid as its agent) plants links before the runtime writes.
  const plant = await s.run(`ln -s "${ws}/via-secret" /run/airlock/secrets/TOKEN && ln -s "${ws}" /tmp/airlock-output && echo planted`);
  assert.equal(plant.stdout, 'planted\n', plant.stderr);
  const value = fakeValue('token');
  await s.session.writeFileInside('/run/airlock/secrets/TOKEN', Buffer.from(value), { mode: 0o400 });
  await assert.rejects(
    s.session.writeFileInside('/tmp/airlock-output/out.txt', Buffer.from(value), { mode: 0o600, append: true }),
    { message: /^cannot write \/tmp\/airlock-output\/out\.txt inside the sandbox: (ELOOP|ENOTDIR)/ },
  );
  const r = await s.run('test -L /run/airlock/secrets/TOKEN && echo still-a-link; cat /run/airlock/secrets/TOKEN');
  assert.equal(r.stdout, value, 'the link was replaced by the file, not followed');
  assert.deepEqual(hostFilesContaining(s.workspace, value), [], 'nothing reached the workspace on the host');
  assert.ok(!fs.existsSync(path.join(s.workspace, 'via-secret')) && !fs.existsSync(path.join(s.workspace, 'out.txt')));

  const fix = await s.run(`rm /tmp/airlock-output && mkdir /tmp/airlock-output && ln -s "${ws}/via-output" /tmp/airlock-output/out.txt && echo planted`);
  assert.equal(fix.stdout, 'planted\n', fix.stderr);
  await assert.rejects(
    s.session.writeFileInside('/tmp/airlock-output/out.txt', Buffer.from(value), { mode: 0o600, append: true }),
    { message: /^cannot write \/tmp\/airlock-output\/out\.txt inside the sandbox: ELOOP/ },
  );
  assert.deepEqual(hostFilesContaining(s.workspace, value), [], 'nothing reached the workspace on the host');
  assert.ok(!fs.existsSync(path.join(s.workspace, 'via-output')));
});

test('file ops on an ended session reject with SessionEndedError', async (t) => {
  const s = await open(t);
  await s.session.end('exit');
  await assert.rejects(s.session.writeFileInside('/run/airlock/secrets/X', Buffer.from('x'), { mode: 0o400 }), SessionEndedError);
  await assert.rejects(s.session.removeFileInside('/run/airlock/secrets/X'), SessionEndedError);
});

test('a file op in flight when the session ends rejects with SessionEndedError', async (t) => {
  const s = await open(t);
  const op = s.session.writeFileInside('/tmp/airlock-output/late', Buffer.alloc(4 * 1024 * 1024, 'x'), { mode: 0o600 });
  void s.session.end('killed');
  await assert.rejects(op, SessionEndedError);
});
