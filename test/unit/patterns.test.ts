/**
 * Path patterns (runtime/policy/patterns.ts): gitignore-like semantics, and what the
 * default mask list hides and keeps visible.
 */
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { compilePattern, PatternSet } from '../../runtime/policy/patterns';
import { DEFAULT_MASK, DEFAULT_READ_ONLY } from '../../runtime/policy/policy';

const file = (set: PatternSet, rel: string): boolean => set.matches(rel, false);
const dir = (set: PatternSet, rel: string): boolean => set.matches(rel, true);

test('a pattern without a slash matches an entry name at any depth', () => {
  const s = new PatternSet(['.env']);
  assert.ok(file(s, '.env'));
  assert.ok(file(s, 'a/.env'));
  assert.ok(file(s, 'a/b/c/.env'));
  assert.ok(!file(s, 'a/.env/x'), 'only the entry named .env, not what is below it');
  assert.ok(!file(s, 'x.env'));
  assert.ok(!file(s, '.envrc'));
});

test('a pattern with a slash is anchored at the workspace root', () => {
  const s = new PatternSet(['config/secret.json']);
  assert.ok(file(s, 'config/secret.json'));
  assert.ok(!file(s, 'sub/config/secret.json'));
});

test('a leading slash anchors a single name at the workspace root', () => {
  const lead = new PatternSet(['/top.txt']);
  assert.ok(file(lead, 'top.txt'));
  assert.ok(!file(lead, 'a/top.txt'));
  const path = new PatternSet(['/a/b.txt']);
  assert.ok(file(path, 'a/b.txt'));
  assert.ok(!file(path, 'x/a/b.txt'));
});

test('* and ? stay within one name', () => {
  const s = new PatternSet(['src/*.key', 'log?.txt']);
  assert.ok(file(s, 'src/a.key'));
  assert.ok(file(s, 'src/.key'));
  assert.ok(!file(s, 'src/sub/a.key'));
  assert.ok(file(s, 'log1.txt'));
  assert.ok(file(s, 'deep/dir/logA.txt'));
  assert.ok(!file(s, 'log.txt'));
  assert.ok(!file(s, 'log12.txt'));
  assert.ok(!new PatternSet(['a?b']).matches('a/b', false), '? does not match a slash');
});

test('** spans any number of directories, including none', () => {
  const s = new PatternSet(['a/**/secret']);
  assert.ok(file(s, 'a/secret'));
  assert.ok(file(s, 'a/b/secret'));
  assert.ok(file(s, 'a/b/c/d/secret'));
  assert.ok(!file(s, 'b/a/secret'));
  const lead = new PatternSet(['**/keys/*.json']);
  assert.ok(file(lead, 'keys/x.json'));
  assert.ok(file(lead, 'p/q/keys/x.json'));
  const trail = new PatternSet(['build/**']);
  assert.ok(file(trail, 'build/x'));
  assert.ok(file(trail, 'build/x/y/z'));
  assert.ok(!file(trail, 'other/build/x'));
});

test('[abc] is a character class, [!abc] its complement', () => {
  const s = new PatternSet(['file[abc].txt']);
  assert.ok(file(s, 'filea.txt'));
  assert.ok(file(s, 'x/filec.txt'));
  assert.ok(!file(s, 'filed.txt'));
  const neg = new PatternSet(['file[!abc].txt']);
  assert.ok(file(neg, 'filed.txt'));
  assert.ok(!file(neg, 'filea.txt'));
  const range = new PatternSet(['v[0-9]']);
  assert.ok(file(range, 'v7'));
  assert.ok(!file(range, 'vx'));
});

test('regular expression characters in patterns are literal', () => {
  const s = new PatternSet(['a.b+(c)$']);
  assert.ok(file(s, 'a.b+(c)$'));
  assert.ok(!file(s, 'aXb+(c)$'));
  assert.ok(!file(s, 'a.bb(c)$'));
});

test('a trailing slash matches directories only', () => {
  const s = new PatternSet(['cache/']);
  assert.ok(dir(s, 'cache'));
  assert.ok(dir(s, 'x/cache'));
  assert.ok(!file(s, 'cache'));
  assert.equal(s.patterns[0].dirOnly, true);
});

test('negation un-matches, and the last matching pattern wins', () => {
  const s = new PatternSet(['*.txt', '!keep.txt']);
  assert.ok(file(s, 'a.txt'));
  assert.ok(!file(s, 'keep.txt'));
  assert.ok(!file(s, 'sub/keep.txt'));
  const again = new PatternSet(['*.txt', '!keep.txt', 'keep.txt']);
  assert.ok(file(again, 'keep.txt'), 'a later positive pattern re-selects');
  const first = new PatternSet(['!keep.txt', '*.txt']);
  assert.ok(file(first, 'keep.txt'), 'a negation before the match does not un-match it');
  assert.ok(!file(new PatternSet(['!a.txt']), 'a.txt'), 'a lone negation selects nothing');
});

test('patterns that leave the workspace or are empty are rejected', () => {
  for (const bad of ['..', '../x', 'a/../b', 'a/..', '!../x', '/', '', '!']) {
    assert.throws(() => compilePattern(bad), /invalid path pattern .*must name a path inside the workspace/, bad);
  }
  assert.throws(() => new PatternSet(['ok', '../etc/passwd']), /invalid path pattern/);
  assert.doesNotThrow(() => compilePattern('..foo'), 'a name that only starts with .. is fine');
});

test('compilePattern records literal paths and leaves glob patterns non-literal', () => {
  assert.equal(compilePattern('.git/hooks/').literal, '.git/hooks');
  assert.equal(compilePattern('!.vscode').literal, '.vscode');
  assert.equal(compilePattern('*.pem').literal, null);
  assert.equal(compilePattern('.git/modules/**/hooks/').literal, null);
});

test('literalRootPaths lists literal paths, minus those negated later', () => {
  const s = new PatternSet(['.vscode/', '.envrc', '*.md', '.idea/', '!.idea', '.git/hooks/']);
  assert.deepEqual(s.literalRootPaths(), [
    { rel: '.vscode', dir: true },
    { rel: '.envrc', dir: false },
    { rel: '.git/hooks', dir: true },
  ]);
});

const masks = new PatternSet(DEFAULT_MASK);

test('the default mask list hides env files, keys and credentials at any depth', () => {
  for (const rel of [
    '.env', 'sub/.env', 'sub/.env.local', '.env.production', 'a.pem', 'deep/x/server.key', 'cert.p12', 'cert.pfx',
    'id_rsa', 'id_rsa.pub', '.ssh2/id_ed25519', 'id_ecdsa', 'id_dsa.pub', '.npmrc', 'pkg/.npmrc', '.pypirc', '.netrc', '.git-credentials',
    'credentials.json', 'credentials-prod.json', 'gcp/service-account-ci.json', 'terraform.tfstate', 'terraform.tfstate.backup', 'infra/prod.tfstate',
  ]) {
    assert.ok(file(masks, rel), `${rel} should be masked`);
  }
});

test('the default mask list keeps templates and look-alike names visible', () => {
  for (const rel of [
    '.env.example', '.env.sample', '.env.template', 'config/.env.example', 'environment.ts', 'src/env.ts', 'key.txt', 'keys.json',
    'README.md', 'package.json', 'credentials.yaml', 'my.env', 'pem.txt', 'monkey.ts',
  ]) {
    assert.ok(!file(masks, rel), `${rel} should stay visible`);
  }
});

test('the default mask list hides credential directories, but only directories', () => {
  for (const d of ['.aws', '.ssh', '.kube', '.gnupg', '.docker', 'nested/.aws']) {
    assert.ok(dir(masks, d), `${d}/ should be masked`);
    assert.ok(!file(masks, d), `a file named ${d} is not a credential directory`);
  }
});

test('the default read-only list protects git hooks, config and commondir (root and nested repositories) and editor settings, not the whole .git', () => {
  const ro = new PatternSet(DEFAULT_READ_ONLY);
  assert.ok(dir(ro, '.git/hooks'));
  assert.ok(file(ro, '.git/config'));
  assert.ok(dir(ro, '.git/modules/lib/hooks'));
  assert.ok(dir(ro, '.git/modules/a/b/hooks'));
  assert.ok(file(ro, '.git/modules/lib/config'));
  assert.ok(dir(ro, '.vscode'));
  assert.ok(file(ro, '.envrc'));
  assert.ok(file(ro, '.mcp.json'));
  assert.ok(!dir(ro, '.git'));
  assert.ok(!file(ro, '.git/HEAD'));
  assert.ok(!dir(ro, '.git/objects'));
  assert.ok(file(ro, '.git/commondir'));
  assert.ok(dir(ro, 'sub/.git/hooks'), 'nested repositories are protected too');
  assert.ok(file(ro, 'vendor/lib/.git/config'));
  assert.ok(file(ro, 'a/.git/worktrees/w/commondir'));
  assert.ok(!dir(ro, 'sub/hooks'), 'a hooks directory outside .git is ordinary');
  assert.ok(!file(ro, 'sub/.git/index'));
});
