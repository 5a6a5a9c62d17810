/**
 * Attacks on the paths the host later executes or trusts (.git/hooks, .git/config,
 * editor and agent configs, .envrc): existing ones cannot be modified, deleted,
 * renamed or filled; absent ones cannot be created, and their placeholders leave no
 * trace on the host afterwards; moving an ancestor out of the way does not help; a
 * read-only path that is a symlink refuses the session; a second session on the same
 * workspace keeps its protection when the first one ends.
 */
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { startSession, TestSession } from '../helpers/sandbox';
import { fakeSecret, HostScratch, hostRead, hostTree, refusedSessionStart, sharedSession } from '../helpers/attack';

const EROFS = 'Read-only file system';
const EBUSY = 'Device or resource busy';

/** Runs each attack as its own shell command and returns what each printed and exited with. */
async function attempt(ts: TestSession, cmds: string[]): Promise<{ cmd: string; rc: number; out: string }[]> {
  const out: { cmd: string; rc: number; out: string }[] = [];
  for (const cmd of cmds) {
    const r = await ts.run(`{ ${cmd}; } 2>&1`); // the braces catch the shell's own redirection errors too
    out.push({ cmd, rc: r.code ?? -1, out: r.stdout });
  }
  return out;
}

function assertAllFail(results: { cmd: string; rc: number; out: string }[], why: RegExp): void {
  for (const r of results) {
    assert.notEqual(r.rc, 0, `${r.cmd} must fail`);
    assert.match(r.out, why, `${r.cmd}: ${r.out.trim()}`);
  }
}

const PROTECTED_FILES: Record<string, string> = {
  '.git/hooks/pre-commit': '#!/bin/sh\nexit 0\n',
  '.git/config': '[core]\n\trepositoryformatversion = 0\n',
  '.vscode/settings.json': '{}\n',
  '.idea/workspace.xml': '<project/>\n',
  '.devcontainer/devcontainer.json': '{}\n',
  '.envrc': 'export A=1\n',
  '.mcp.json': '{"servers":{}}\n',
  '.claude/settings.json': '{}\n',
  '.cursor/rules.md': 'be nice\n',
  '.husky/pre-commit': 'npm test\n',
};
const PROTECTED_DIRS = ['.git/hooks', '.vscode', '.idea', '.devcontainer', '.claude', '.cursor', '.husky'];

describe('existing read-only paths', () => {
  const shared = sharedSession(() => ({ files: { ...PROTECTED_FILES, '.git/HEAD': 'ref: refs/heads/main\n', 'src/main.c': 'int main;\n' } }));
  let before_: string[] = [];
  before(async () => {
    await shared.start();
    before_ = hostTree(shared.get().workspace);
  });
  after(() => shared.close());

  test('their files cannot be modified, truncated, deleted or renamed', async () => {
    const files = Object.keys(PROTECTED_FILES);
    assertAllFail(await attempt(shared.get(), files.map((f) => `echo evil >> ${f}`)), new RegExp(EROFS));
    assertAllFail(await attempt(shared.get(), files.map((f) => `truncate -s 0 ${f}`)), new RegExp(EROFS));
    // A file that is itself the mount point is busy; a file inside a read-only directory is on a read-only fs.
    assertAllFail(await attempt(shared.get(), files.map((f) => `rm -f ${f}`)), new RegExp(`${EROFS}|${EBUSY}`));
    assertAllFail(await attempt(shared.get(), files.map((f) => `mv ${f} ${f}.bak`)), new RegExp(`${EROFS}|${EBUSY}`));
    for (const [f, content] of Object.entries(PROTECTED_FILES)) assert.equal(hostRead(path.join(shared.get().workspace, f)), content, f);
  });

  test('files cannot be created inside them, and the directories cannot be removed or renamed', async () => {
    assertAllFail(await attempt(shared.get(), PROTECTED_DIRS.map((d) => `touch ${d}/new`)), new RegExp(EROFS));
    assertAllFail(await attempt(shared.get(), PROTECTED_DIRS.map((d) => `mkdir ${d}/sub`)), new RegExp(EROFS));
    assertAllFail(await attempt(shared.get(), PROTECTED_DIRS.map((d) => `ln -s /bin/sh ${d}/post-checkout`)), new RegExp(EROFS));
    assertAllFail(await attempt(shared.get(), PROTECTED_DIRS.map((d) => `mv ${d} ${d}.old`)), new RegExp(EBUSY));
    assertAllFail(await attempt(shared.get(), PROTECTED_DIRS.map((d) => `rm -rf ${d}`)), new RegExp(`${EROFS}|${EBUSY}`));
    assert.deepEqual(hostTree(shared.get().workspace), before_, 'the host workspace is unchanged');
  });

  test('moving .git out of the way to plant a fresh .git/hooks or .git/config fails', async () => {
    const r = await shared.get().run('mv .git .git-old 2>&1; echo "rc=$?"; mkdir -p .git/hooks; echo evil > .git/hooks/pre-commit; echo "[core] fsmonitor = evil" > .git/config; true');
    assert.match(r.stdout, new RegExp(`mv: cannot move '.git' to '.git-old': ${EBUSY}\nrc=1`));
    const ws = shared.get().workspace;
    assert.equal(hostRead(path.join(ws, '.git/hooks/pre-commit')), PROTECTED_FILES['.git/hooks/pre-commit']);
    assert.equal(hostRead(path.join(ws, '.git/config')), PROTECTED_FILES['.git/config']);
    assert.equal(fs.existsSync(path.join(ws, '.git-old')), false);
  });

  test('the rest of the workspace and of .git stays writable', async () => {
    const r = await shared.get().run('echo ok > src/new.c && echo ref > .git/ORIG_HEAD && mv src/new.c src/renamed.c && echo done');
    assert.equal(r.stdout, 'done\n', r.stderr);
    assert.equal(hostRead(path.join(shared.get().workspace, '.git/ORIG_HEAD')), 'ref\n');
  });
});

describe('git indirection around the read-only .git/config and .git/hooks', () => {
  const scratch = new HostScratch();
  after(() => scratch.cleanup());

  // Host git takes config and hooks from the directory .git/commondir names, so it is
  // read-only; when absent, its placeholder holds "." (the repository itself).
  test('a sandboxed process cannot point host git at its own config and hooks through .git/commondir', async (t) => {
    if (spawnSync('git', ['--version']).error) {
      t.skip('git is not installed on this host');
      return;
    }
    const ws = scratch.dir('airlock-ws-');
    execFileSync('git', ['init', '-q', ws]);
    const evilHooks = '/tmp/evil-hooks';
    const ts = await startSession({ workspace: ws });
    try {
      await ts.run(`mkdir evil && cp -a .git/. evil/ && printf '[core]\\n\\thooksPath = ${evilHooks}\\n' >> evil/config && echo ../evil > .git/commondir; true`);
    } finally {
      await ts.close();
    }
    const hooksPath = spawnSync('git', ['-C', ws, 'config', '--get', 'core.hooksPath'], { encoding: 'utf8' }).stdout.trim();
    assert.notEqual(hooksPath, evilHooks, 'host git now runs hooks from a directory the sandbox chose');
    assert.equal(fs.existsSync(path.join(ws, '.git/commondir')), false, '.git/commondir was planted');
  });
});

describe('absent read-only paths', () => {
  const scratch = new HostScratch();
  after(() => scratch.cleanup());
  const CREATE_ATTEMPTS = [
    'mkdir .vscode', 'touch .vscode/settings.json', 'echo "{}" > .vscode/tasks.json', 'mkdir -p .idea/runConfigurations',
    'touch .devcontainer/devcontainer.json', 'echo "eval evil" > .envrc', 'echo "{}" > .mcp.json', 'mkdir .claude/commands',
    'touch .cursor/mcp.json', 'touch .husky/pre-commit', 'rm -f .envrc', 'mv .vscode vscode', 'rmdir .claude',
  ];

  test('in a fresh workspace none can be created, and no placeholder is left on the host afterwards', async () => {
    const ws = scratch.dir('airlock-ws-');
    const ts = await startSession({ workspace: ws });
    try {
      const results = await attempt(ts, CREATE_ATTEMPTS);
      assertAllFail(results, new RegExp(`${EROFS}|${EBUSY}|File exists`));
      const check = await ts.run('find . -mindepth 2 | wc -l');
      assert.equal(check.stdout.trim(), '0', 'nothing was created inside a placeholder');
    } finally {
      await ts.close();
    }
    assert.deepEqual(fs.readdirSync(ws), [], 'the host workspace is empty again');
  });

  test('in a repository without .git/hooks, hooks and config cannot be created, and .git is as it was afterwards', async () => {
    const ws = scratch.dir('airlock-ws-');
    fs.mkdirSync(path.join(ws, '.git'));
    fs.writeFileSync(path.join(ws, '.git/HEAD'), 'ref: refs/heads/main\n');
    const ts = await startSession({ workspace: ws });
    try {
      const results = await attempt(ts, [
        'mkdir .git/hooks', 'touch .git/hooks/pre-commit', 'echo "[core] fsmonitor = evil" > .git/config',
        'rm -f .git/config', 'mv .git .git-old', 'rmdir .git/hooks',
      ]);
      assertAllFail(results, new RegExp(`${EROFS}|${EBUSY}|File exists`));
    } finally {
      await ts.close();
    }
    assert.deepEqual(hostTree(ws), ['.git/', '.git/HEAD']);
  });
});

describe('a read-only path that is a symlink', () => {
  const scratch = new HostScratch();
  after(() => scratch.cleanup());

  for (const [name, isDir] of [['.vscode', true], ['.envrc', false]] as const) {
    test(`${name} as a symlink refuses the session with a message naming the path`, async () => {
      const ws = scratch.dir('airlock-ws-');
      const target = path.join(ws, isDir ? 'real-dir' : 'real-file');
      if (isDir) fs.mkdirSync(target);
      else fs.writeFileSync(target, 'x\n');
      fs.symlinkSync(path.basename(target), path.join(ws, name));
      const err = await refusedSessionStart(ws);
      assert.match(err.message, new RegExp(`${ws}/${name.replace('.', '\\.')} must be read-only in the sandbox but is a symlink`));
      assert.match(err.message, new RegExp(`make it a real ${isDir ? 'directory' : 'file'}`));
    });
  }
});

describe('two sessions on one workspace', () => {
  const scratch = new HostScratch();
  after(() => scratch.cleanup());

  test('ending the first session does not lift the protection from the second', async () => {
    const ws = scratch.dir('airlock-ws-');
    const first = await startSession({ workspace: ws });
    const second = await startSession({ workspace: ws });
    let firstOpen = true;
    try {
      await first.close();
      firstOpen = false;
      assert.ok(fs.statSync(path.join(ws, '.vscode')).isDirectory(), 'the placeholder stays while the second session runs');
      const name = fakeSecret('x');
      const r = await attempt(second, [`touch .vscode/${name}`, 'mkdir .vscode', `echo x > .envrc`]);
      assertAllFail(r, new RegExp(`${EROFS}|File exists`));
      assert.equal(fs.existsSync(path.join(ws, '.vscode', name)), false);
    } finally {
      if (firstOpen) await first.close();
      await second.close();
    }
    assert.deepEqual(fs.readdirSync(ws), [], 'the last session removes the placeholders');
  });
});
