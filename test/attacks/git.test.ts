/**
 * Host git runs hooks and honours config (core.fsmonitor runs on every `git status`
 * an editor makes). Repositories that exist when a session starts are protected at
 * any depth; a repository the sandbox creates cannot be, so it is reported.
 */
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readAuditFile } from '../../runtime/audit';
import { HostScratch, refusedSessionStart } from '../helpers/attack';
import { runCli, startSession } from '../helpers/sandbox';

const GIT = ['-c', 'user.name=t', '-c', 'user.email=t@example.invalid', '-c', 'init.defaultBranch=main'];

function gitInit(dir: string): void {
  execFileSync('git', [...GIT, 'init', '-q', dir]);
}

describe('git repositories that exist at start', () => {
  const scratch = new HostScratch();
  after(() => scratch.cleanup());

  test('a nested repository has read-only hooks, config and commondir, like the root one', async () => {
    const ws = scratch.dir('airlock-ws-');
    gitInit(path.join(ws, 'vendor', 'lib'));
    const before = fs.readFileSync(path.join(ws, 'vendor/lib/.git/config'), 'utf8');
    const ts = await startSession({ workspace: ws });
    try {
      const r = await ts.run(
        'cd vendor/lib; echo "[core] fsmonitor = evil" >> .git/config; echo x > .git/hooks/pre-commit; echo ../evil > .git/commondir; echo done',
      );
      assert.match(r.stderr, /\.git\/config: Read-only file system/);
      assert.match(r.stderr, /\.git\/hooks\/pre-commit: Read-only file system/);
      assert.match(r.stdout, /done/);
    } finally {
      await ts.close();
    }
    assert.equal(fs.readFileSync(path.join(ws, 'vendor/lib/.git/config'), 'utf8'), before);
    assert.equal(fs.existsSync(path.join(ws, 'vendor/lib/.git/hooks/pre-commit')), false);
    assert.equal(fs.existsSync(path.join(ws, 'vendor/lib/.git/commondir')), false);
  });

  test('a .git file (submodule or worktree checkout) cannot be pointed at a repository of the sandbox', async () => {
    const ws = scratch.dir('airlock-ws-');
    fs.mkdirSync(path.join(ws, 'sub'));
    fs.writeFileSync(path.join(ws, 'sub', '.git'), 'gitdir: ../.git/modules/sub\n');
    const ts = await startSession({ workspace: ws });
    try {
      const r = await ts.run('echo "gitdir: ../evil" > sub/.git; rm -f sub/.git; echo done');
      assert.match(r.stderr, /sub\/\.git: Read-only file system/);
      assert.match(r.stderr, /cannot remove 'sub\/\.git': (Read-only file system|Device or resource busy)/);
    } finally {
      await ts.close();
    }
    assert.equal(fs.readFileSync(path.join(ws, 'sub', '.git'), 'utf8'), 'gitdir: ../.git/modules/sub\n');
  });

  test('a .git that is a symlink refuses the session, naming it', async () => {
    const ws = scratch.dir('airlock-ws-');
    gitInit(path.join(ws, 'real'));
    fs.renameSync(path.join(ws, 'real', '.git'), path.join(ws, 'gitdir'));
    fs.symlinkSync('gitdir', path.join(ws, '.git'));
    const err = await refusedSessionStart(ws);
    assert.match(err.message, new RegExp(`${ws}/\\.git must be read-only in the sandbox but is a symlink`));
  });

  test('using a pre-existing repository produces no warning', async () => {
    const ws = scratch.dir('airlock-ws-');
    gitInit(ws);
    const r = await runCli(['run', '--workspace', ws, '--', 'git', ...GIT, 'commit', '-q', '--allow-empty', '-m', 'x']);
    assert.equal(r.code, 0, r.stderr);
    assert.doesNotMatch(r.stderr, /warning/);
  });
});

describe('git repositories the sandbox creates', () => {
  const scratch = new HostScratch();
  after(() => scratch.cleanup());

  test('are reported after the session with the hooks and config keys that would run programs', async () => {
    const ws = scratch.dir('airlock-ws-');
    const ts = await startSession({ workspace: ws });
    let warnings: string[];
    try {
      const r = await ts.run(
        `git ${GIT.join(' ')} init -q . && printf '#!/bin/sh\\necho pwned\\n' > .git/hooks/pre-commit && ` +
          `git config core.fsmonitor 'echo pwned' && git config filter.x.smudge 'echo pwned' && git ${GIT.join(' ')} init -q nested && echo ok`,
      );
      assert.equal(r.stdout.trim(), 'ok', r.stderr);
    } finally {
      await ts.session.end('exit');
      warnings = ts.session.warnings;
      const records = readAuditFile(ts.auditFile).records.filter((x) => x.type === 'workspace.git-created');
      assert.deepEqual(records.map((x) => x.repo).sort(), ['.git', 'nested/.git']);
      const root = records.find((x) => x.repo === '.git')!;
      assert.deepEqual(root.hooks, ['pre-commit']);
      assert.deepEqual([...(root.configKeys as string[])].sort(), ['core.fsmonitor', 'filter.x.smudge']);
      await ts.close();
    }
    assert.equal(warnings.length, 2);
    assert.match(warnings.join('\n'), /created a git repository in the workspace root whose hooks pre-commit and config core\.fsmonitor, filter\.x\.smudge would run programs on this machine/);
    assert.match(warnings.join('\n'), /created a git repository in nested; its hooks and config were not protected/);
  });

  test('airlock run prints the warning on stderr', async () => {
    const ws = scratch.dir('airlock-ws-');
    const r = await runCli(['run', '--workspace', ws, '--', 'sh', '-c', `git ${GIT.join(' ')} init -q . && git config core.hooksPath /tmp/x`]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /airlock: warning: the sandbox created a git repository in the workspace root whose config core\.hookspath would run programs/);
  });
});
