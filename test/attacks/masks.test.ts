/**
 * Attacks on masked secret files in the workspace. For every default mask pattern a
 * matching file (or a directory with a file inside) holds a random secret, at the
 * workspace root and nested; the sandbox then tries to read them directly and through
 * every side door it has: hard links, renames, copies, /proc/self/fd, find/grep,
 * python's os.open, and symlinks. The host copies stay intact (the control: the
 * secrets are really there, readable, at those paths).
 */
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { DEFAULT_MASK } from '../../runtime/policy/policy';
import { PatternSet } from '../../runtime/policy/patterns';
import { fakeSecret, HostScratch, hostRead, sharedSession } from '../helpers/attack';

/** One example per default mask pattern: a file name, or a directory (trailing '/') and a file in it. */
const EXAMPLES: Record<string, string> = {
  '.env': '.env',
  '.env.*': '.env.production',
  '*.pem': 'server.pem',
  '*.key': 'tls.key',
  '*.p12': 'cert.p12',
  '*.pfx': 'cert.pfx',
  'id_rsa*': 'id_rsa',
  'id_ed25519*': 'id_ed25519.pub',
  'id_ecdsa*': 'id_ecdsa',
  'id_dsa*': 'id_dsa',
  '.npmrc': '.npmrc',
  '.pypirc': '.pypirc',
  '.netrc': '.netrc',
  '.git-credentials': '.git-credentials',
  'credentials*.json': 'credentials-prod.json',
  'service-account*.json': 'service-account-ci.json',
  '*.tfstate*': 'terraform.tfstate.backup',
  '.aws/': '.aws/credentials',
  '.ssh/': '.ssh/id_rsa',
  '.kube/': '.kube/config',
  '.gnupg/': '.gnupg/private-keys-v1.d',
  '.docker/': '.docker/config.json',
};
const TEMPLATES = ['.env.example', '.env.sample', '.env.template'];
const NESTED = 'sub/dir';

/** Every secret starts with this, so one `grep -r` finds any of them. */
const MARK = fakeSecret('MASKED');
const files: Record<string, string> = {};
for (const example of Object.values(EXAMPLES)) {
  files[example] = `${MARK}-${fakeSecret('root')}`;
  files[`${NESTED}/${example}`] = `${MARK}-${fakeSecret('nested')}`;
}
const templateValue = fakeSecret('template');
for (const t of TEMPLATES) files[t] = `API_URL=${templateValue}\n`;
files['config/real.txt'] = `${MARK}-${fakeSecret('linked')}`;
files['plain.txt'] = 'not a secret\n';

const scratch = new HostScratch();
let wsDir = '';
// The workspace is built here (not by startSession) because the symlinks must exist
// before the session starts: the workspace plan follows them.
const shared = sharedSession(() => ({ workspace: wsDir }));
const run = (script: string) => shared.get().run(script);

before(async () => {
  const outsideCanary = path.join(scratch.dir('airlock-outside-'), 'outside-secret.txt');
  fs.writeFileSync(outsideCanary, `${MARK}-outside`, { mode: 0o644 });
  wsDir = scratch.dir('airlock-ws-');
  for (const [rel, content] of Object.entries(files)) {
    fs.mkdirSync(path.dirname(path.join(wsDir, rel)), { recursive: true });
    fs.writeFileSync(path.join(wsDir, rel), content);
  }
  fs.symlinkSync(outsideCanary, path.join(wsDir, 'outside-link.txt'));
  fs.symlinkSync('/etc/shadow', path.join(wsDir, 'shadow-link'));
  fs.symlinkSync('.env', path.join(wsDir, 'link.txt'));
  fs.mkdirSync(path.join(wsDir, 'linked'));
  fs.symlinkSync('../config/real.txt', path.join(wsDir, 'linked', '.env'));
  await shared.start();
});
after(async () => {
  await shared.close();
  await scratch.cleanup();
});

describe('every default mask pattern hides its secret', () => {
  test('the examples cover every default mask pattern, and each example matches its pattern', () => {
    const patterns = DEFAULT_MASK.filter((p) => !p.startsWith('!'));
    assert.deepEqual(Object.keys(EXAMPLES).sort(), [...patterns].sort());
    for (const [pattern, example] of Object.entries(EXAMPLES)) {
      const dir = pattern.endsWith('/');
      const rel = dir ? example.split('/')[0] : example;
      assert.ok(new PatternSet([pattern]).matches(rel, dir), `${rel} matches ${pattern}`);
      assert.ok(new PatternSet(DEFAULT_MASK).matches(rel, dir), `${rel} is masked by the defaults`);
    }
  });

  test('the secrets are on the host, readable at those paths (control)', () => {
    for (const [rel, content] of Object.entries(files)) assert.equal(hostRead(path.join(wsDir, rel)), content, rel);
  });

  test('cat of every masked file, at the root and nested, shows nothing; masked directories look empty', async () => {
    for (const [pattern, example] of Object.entries(EXAMPLES)) {
      for (const rel of [example, `${NESTED}/${example}`]) {
        if (pattern.endsWith('/')) {
          const dir = rel.slice(0, rel.lastIndexOf('/'));
          const r = await run(`echo "[$(ls -A '${dir}')]"; cat '${rel}'; echo "rc=$?"`);
          assert.match(r.stdout, /^\[\]\nrc=1\n$/, `${dir} looks empty`);
        } else {
          const r = await run(`wc -c < '${rel}'; cat '${rel}'`);
          assert.equal(r.stdout, '0\n', `${rel} reads as empty`);
        }
      }
    }
  });

  test('find, grep -r and cat of every file in the workspace find no secret', async () => {
    const r = await run(`grep -r '${MARK}' . ; echo "grep=$?"; find . -type f -exec cat {} + 2>/dev/null | grep -c '${MARK}'`);
    assert.equal(r.stdout, 'grep=1\n0\n');
    assert.ok(!r.stderr.includes(MARK));
  });

  test('.env.example, .env.sample and .env.template stay readable', async () => {
    for (const t of TEMPLATES) {
      const r = await run(`cat ${t}`);
      assert.equal(r.stdout, `API_URL=${templateValue}\n`, t);
    }
  });
});

describe('side doors to a masked file', () => {
  test('a hard link, a rename and a copy of .env yield no secret', async () => {
    const r = await run('ln .env hard 2>&1; echo "ln=$?"; mv .env moved 2>&1; echo "mv=$?"; cp .env copied; echo "cp=$?"; cat hard moved copied 2>/dev/null; wc -c < copied');
    assert.match(r.stdout, /ln: failed to create hard link 'hard' => '.env': Invalid cross-device link\nln=1\n/);
    assert.match(r.stdout, /mv: cannot move '.env' to 'moved': Device or resource busy\nmv=1\n/);
    assert.match(r.stdout, /cp=0\n0\n$/);
    assert.ok(!r.stdout.includes(MARK));
    assert.equal(hostRead(path.join(wsDir, '.env')), files['.env'], 'the host .env is untouched');
    assert.equal(hostRead(path.join(wsDir, 'hard')), null);
    await run('rm -f copied');
  });

  test('reading through /proc/self/fd and with python os.open yields nothing', async () => {
    const r = await run(`exec 3< .env; cat /proc/self/fd/3; cat /proc/$$/fd/3; python3 -c "
import os
for p in ['.env', '${NESTED}/.env.production', '.ssh/id_rsa', 'server.pem']:
    try:
        fd = os.open(p, os.O_RDONLY); print(p, len(os.read(fd, 4096))); os.close(fd)
    except OSError as e:
        print(p, type(e).__name__)
"`);
    assert.equal(r.stdout, `.env 0\n${NESTED}/.env.production 0\n.ssh/id_rsa FileNotFoundError\nserver.pem 0\n`);
  });

  test('writing into a masked file or directory does not reach the host file', async () => {
    const r = await run('echo overwrite > .env; echo "w=$?"; touch .ssh/new; echo "t=$?"; rm -f .env; echo "rm=$?"');
    assert.match(r.stdout, /w=[12]\nt=1\nrm=1\n/);
    assert.equal(hostRead(path.join(wsDir, '.env')), files['.env']);
    assert.deepEqual(fs.readdirSync(path.join(wsDir, '.ssh')), ['id_rsa']);
  });
});

describe('symlinks do not lead around a mask', () => {
  test('symlinks to host files outside the workspace do not resolve inside (they do on the host)', async () => {
    assert.equal(fs.readFileSync(path.join(wsDir, 'outside-link.txt'), 'utf8'), `${MARK}-outside`, 'control');
    assert.ok(fs.existsSync('/etc/shadow'), 'control: /etc/shadow exists on the host');
    const r = await run('cat outside-link.txt; cat shadow-link; true');
    assert.equal(r.stdout, '');
    assert.match(r.stderr, /cat: outside-link.txt: No such file or directory\ncat: shadow-link: No such file or directory/);
  });

  test('link.txt -> .env reads the masked (empty) .env', async () => {
    const r = await run('readlink link.txt; wc -c < link.txt');
    assert.equal(r.stdout, '.env\n0\n');
  });

  test('a symlink named .env pointing at config/real.txt masks the target itself', async () => {
    assert.equal(hostRead(path.join(wsDir, 'linked/.env')), files['config/real.txt'], 'control: the link reaches the secret on the host');
    const r = await run('wc -c < linked/.env; wc -c < config/real.txt; cat config/real.txt linked/.env');
    assert.equal(r.stdout, '0\n0\n');
  });
});

describe('policy masks', () => {
  const secret = fakeSecret('custom');
  const custom = sharedSession(() => ({
    policy: { filesystem: { mask: ['secrets/*.txt', '!secrets/public.txt', '!cert-public.pem'] } },
    files: { 'secrets/db.txt': secret, 'secrets/public.txt': 'public\n', 'cert-public.pem': 'PUBLIC CERT\n', 'cert-private.pem': secret, 'other/secrets/x.txt': 'not anchored\n' },
  }));
  before(() => custom.start());
  after(() => custom.close());

  test('a custom mask pattern hides matching files; "!" un-masks both custom and default matches', async () => {
    const r = await custom.get().run('wc -c < secrets/db.txt; cat secrets/public.txt cert-public.pem other/secrets/x.txt; wc -c < cert-private.pem');
    assert.equal(r.stdout, '0\npublic\nPUBLIC CERT\nnot anchored\n0\n');
    assert.equal(hostRead(path.join(custom.get().workspace, 'secrets/db.txt')), secret, 'control');
  });
});
