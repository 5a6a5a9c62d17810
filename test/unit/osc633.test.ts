/**
 * The OSC 633 parser and the command tracker: every sequence, both terminators,
 * sequences split at every byte, escapes, hostile input (random bytes, oversized and
 * unterminated sequences), and how events become commands. Also: the shipped shell
 * scripts parse, and the shell chosen for a sandbox.
 */
import { describe, test } from 'node:test';
import * as assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import {
  capUtf8,
  CommandEvent,
  CommandTracker,
  escapeValue,
  MAX_COMMAND_LINE_BYTES,
  MAX_OSC_BYTES,
  Osc633Parser,
  ShellEvent,
  TRUNCATED_MARKER,
} from '../../runtime/shell/osc633';
import { BASH_RCFILE, interactiveShell, shellFiles, ZSH_ZDOTDIR } from '../../runtime/shell';

const BEL = '\x07';
const ST = '\x1b\\';
const osc = (payload: string, term = BEL): string => `\x1b]633;${payload}${term}`;
const parse = (s: string | Buffer): ShellEvent[] => new Osc633Parser().push(Buffer.isBuffer(s) ? s : Buffer.from(s));

/** Internal buffer size of a parser (what it holds between pushes). */
const held = (p: Osc633Parser): number => (p as unknown as { len: number }).len;

describe('Osc633Parser', () => {
  test('each sequence becomes its event, with BEL or ST as terminator', () => {
    for (const term of [BEL, ST]) {
      const s = [osc('A', term), 'user@host:~$ ', osc('B', term), osc('E;ls -l', term), osc('C', term), 'out\r\n', osc('D;0', term), osc('P;Cwd=/tmp', term)].join('');
      assert.deepEqual(parse(s), [
        { kind: 'promptStart' },
        { kind: 'commandInputStart' },
        { kind: 'commandLine', commandLine: 'ls -l' },
        { kind: 'commandExecuted' },
        { kind: 'commandFinished', exitCode: 0 },
        { kind: 'cwd', cwd: '/tmp' },
      ]);
    }
  });

  test('D without an exit code, with a code, and with a malformed one', () => {
    assert.deepEqual(parse(osc('D') + osc('D;130') + osc('D;') + osc('D;x1') + osc('D;99999999999') + osc('D;-1')), [
      { kind: 'commandFinished', exitCode: null },
      { kind: 'commandFinished', exitCode: 130 },
      { kind: 'commandFinished', exitCode: null },
      { kind: 'commandFinished', exitCode: null },
      { kind: 'commandFinished', exitCode: null },
      { kind: 'commandFinished', exitCode: null },
    ]);
  });

  test('escapes in the command line and the directory are undone: \\\\, \\x3b, control bytes, UTF-8', () => {
    assert.deepEqual(parse(osc('E;echo "a\\x3bb\\\\c"\\x0aecho é\\x7f') + osc('P;Cwd=/tmp/with\\x3bsemi\\\\x')), [
      { kind: 'commandLine', commandLine: 'echo "a;b\\c"\necho é\x7f' },
      { kind: 'cwd', cwd: '/tmp/with;semi\\x' },
    ]);
    // A backslash that starts no escape stays; escaped bytes form UTF-8 together.
    assert.deepEqual(parse(osc('E;a\\qb\\x4\\xZZ\\xc3\\xa9\\')), [{ kind: 'commandLine', commandLine: 'a\\qb\\x4\\xZZé\\' }]);
  });

  test('escapeValue and the parser round-trip any text', () => {
    const samples = ['', 'plain', 'a;b;c', 'back\\slash\\\\', 'line1\nline2\r\t\x1b[31m\x7f', 'ünïcødé ✓ 𝄞', '\\x3b literally'];
    for (const s of samples) {
      const escaped = escapeValue(s);
      assert.doesNotMatch(escaped, /[\x00-\x1f\x7f;]/, 'no raw control byte or ; survives escaping');
      assert.deepEqual(parse(osc(`E;${escaped}`)), [{ kind: 'commandLine', commandLine: s }], JSON.stringify(s));
    }
  });

  test('a nonce after the command line is not part of it', () => {
    assert.deepEqual(parse(osc('E;git commit -m x\\x3by;a1b2c3')), [{ kind: 'commandLine', commandLine: 'git commit -m x;y' }]);
    assert.deepEqual(parse(osc('E')), [{ kind: 'commandLine', commandLine: '' }]);
  });

  test('other OSC codes, other 633 codes and other properties are ignored; the text around them is not an event', () => {
    const s = '\x1b]0;title\x07' + '\x1b]8;;https://x\x1b\\link\x1b]8;;\x1b\\' + '\x1b]6330;A\x07' + '\x1b]63;A\x07' + osc('F') + osc('P;HasRichCommandDetection=True') + osc('P;Cwd') + '\x1b[31mred\x1b[0m' + osc('Ax') + osc('A');
    assert.deepEqual(parse(s), [{ kind: 'promptStart' }]);
  });

  test('every split position of a multi-sequence stream gives the same events', () => {
    const stream = Buffer.from(
      'noise\x1b[1m' + osc('A') + 'airlock@airlock:~$ ' + osc('B', ST) + osc('E;echo \\x3b é\\\\') + osc('C') + 'hi\r\n\x1b]0;t\x07' + osc('D;1', ST) + osc('P;Cwd=/tmp/ü'),
    );
    const expected = parse(stream);
    assert.equal(expected.length, 6);
    for (let i = 0; i <= stream.length; i++) {
      const p = new Osc633Parser();
      const got = [...p.push(stream.subarray(0, i)), ...p.push(stream.subarray(i))];
      assert.deepEqual(got, expected, `split at ${i}`);
    }
    for (let i = 0; i <= stream.length; i += 7) {
      for (let j = i; j <= stream.length; j += 5) {
        const p = new Osc633Parser();
        const got = [...p.push(stream.subarray(0, i)), ...p.push(stream.subarray(i, j)), ...p.push(stream.subarray(j))];
        assert.deepEqual(got, expected, `split at ${i} and ${j}`);
      }
    }
    // One byte at a time.
    const p = new Osc633Parser();
    const got: ShellEvent[] = [];
    for (const b of stream) got.push(...p.push(Buffer.from([b])));
    assert.deepEqual(got, expected);
  });

  test('an interrupted sequence (CAN, SUB, ESC + another byte) is dropped and the parser recovers', () => {
    assert.deepEqual(parse('\x1b]633;E;rm -rf /\x18' + osc('A')), [{ kind: 'promptStart' }]);
    assert.deepEqual(parse('\x1b]633;E;x\x1a' + osc('B')), [{ kind: 'commandInputStart' }]);
    assert.deepEqual(parse('\x1b]633;E;x\x1b[0m' + osc('C')), [{ kind: 'commandExecuted' }]);
    // ESC ] inside an OSC starts a new one.
    assert.deepEqual(parse('\x1b]633;E;x\x1b]633;D;2\x07'), [{ kind: 'commandFinished', exitCode: 2 }]);
    assert.deepEqual(parse('\x1b\x1b]633;A\x07'), [{ kind: 'promptStart' }]);
  });

  test('an oversized OSC is dropped, never buffered past 64 KiB, and the next one is read', () => {
    const p = new Osc633Parser();
    assert.deepEqual(p.push(Buffer.from('\x1b]633;E;')), []);
    const mib = Buffer.alloc(1024 * 1024, 'a');
    for (let i = 0; i < 8; i++) {
      assert.deepEqual(p.push(mib), []);
      assert.ok(held(p) <= MAX_OSC_BYTES, `holds ${held(p)} bytes`);
    }
    assert.deepEqual(p.push(Buffer.from(`${BEL}${osc('A')}`)), [{ kind: 'promptStart' }]);
    // Right at the limit still counts; one byte more does not.
    const atLimit = 'x'.repeat(MAX_OSC_BYTES - '633;E;'.length);
    assert.deepEqual(parse(osc(`E;${atLimit}`)), [{ kind: 'commandLine', commandLine: atLimit }]);
    assert.deepEqual(parse(osc(`E;${atLimit}x`)), []);
  });

  test('other OSCs are skipped without being buffered at all', () => {
    const p = new Osc633Parser();
    p.push(Buffer.from('\x1b]52;c;'));
    p.push(Buffer.alloc(4 * 1024 * 1024, 'Q'));
    assert.equal(held(p), 0);
    assert.deepEqual(p.push(Buffer.from(`\x07${osc('D;3')}`)), [{ kind: 'commandFinished', exitCode: 3 }]);
  });

  test('garbage and 1 MB of random bytes never throw, keep memory bounded, and leave the parser working', () => {
    const garbage = ['\x1b', '\x1b]', '\x1b]633', '\x1b]633;', '\x1b]633;E;\\', '\x1b]633;E;\\x', '\x1b]633;P;Cwd=\\xf', '\x1b\\', '\x07', '\x9d633;A\x9c', '\xff\xfe\x00'];
    for (const g of garbage) {
      const p = new Osc633Parser();
      assert.doesNotThrow(() => p.push(Buffer.from(g, 'latin1')));
      // CAN cancels whatever was open.
      assert.deepEqual(p.push(Buffer.from(`\x18${osc('A')}`)), [{ kind: 'promptStart' }], JSON.stringify(g));
    }
    const p = new Osc633Parser();
    const tracker = new CommandTracker();
    const random = crypto.randomBytes(1024 * 1024);
    // Random bytes rarely form ESC ]: plant many starts so every state is exercised.
    for (let i = 0; i < random.length; i += 997) random.write('\x1b]633;', i, 'latin1');
    for (let off = 0; off < random.length; ) {
      const n = 1 + crypto.randomInt(8192);
      const events = p.push(random.subarray(off, off + n));
      tracker.push(events);
      assert.ok(held(p) <= MAX_OSC_BYTES);
      off += n;
    }
    assert.deepEqual(p.push(Buffer.from(`\x18${osc('C')}`)), [{ kind: 'commandExecuted' }]);
  });

  test('the stream is only observed: push() leaves the chunk unchanged', () => {
    const chunk = Buffer.from(osc('A') + 'prompt' + osc('E;a\\x3bb'));
    const copy = Buffer.from(chunk);
    parse(chunk);
    assert.deepEqual(chunk, copy);
  });
});

describe('CommandTracker', () => {
  function track(s: string, clock = { t: 1000 }): { events: CommandEvent[]; clock: { t: number } } {
    const t = new CommandTracker(() => clock.t);
    return { events: t.push(parse(s)), clock };
  }

  test('a command starts at C with the last E, in the reported directory, and ends at D with its exit code', () => {
    const clock = { t: 1000 };
    const tracker = new CommandTracker(() => clock.t);
    const p = new Osc633Parser();
    const feed = (s: string): CommandEvent[] => tracker.push(p.push(Buffer.from(s)));
    assert.deepEqual(feed(osc('P;Cwd=/w') + osc('A') + '$ ' + osc('B') + osc('E;false') + osc('C')), [{ type: 'command.start', commandLine: 'false', cwd: '/w' }]);
    assert.deepEqual(tracker.current, { commandLine: 'false', cwd: '/w' });
    clock.t += 42;
    assert.deepEqual(feed(osc('D;1') + osc('P;Cwd=/w')), [{ type: 'command.end', commandLine: 'false', exitCode: 1, durationMs: 42, cwd: '/w' }]);
    assert.equal(tracker.current, undefined);
    assert.deepEqual(feed(osc('A') + osc('B') + osc('E;cd /tmp') + osc('C') + osc('D;0') + osc('P;Cwd=/tmp') + osc('A') + osc('B') + osc('E;pwd') + osc('C')), [
      { type: 'command.start', commandLine: 'cd /tmp', cwd: '/w' },
      { type: 'command.end', commandLine: 'cd /tmp', exitCode: 0, durationMs: 0, cwd: '/w' },
      { type: 'command.start', commandLine: 'pwd', cwd: '/tmp' },
    ]);
    assert.deepEqual(feed(osc('D')), [{ type: 'command.end', commandLine: 'pwd', exitCode: null, durationMs: 0, cwd: '/tmp' }]);
  });

  test('D without C is ignored (first prompt, empty line), and so is a second C', () => {
    assert.deepEqual(track(osc('D;0') + osc('A') + osc('B') + osc('D') + osc('D;5')).events, []);
    assert.deepEqual(track(osc('E;a') + osc('C') + osc('E;b') + osc('C') + osc('D;0') + osc('D;1')).events, [
      { type: 'command.start', commandLine: 'a', cwd: null },
      { type: 'command.end', commandLine: 'a', exitCode: 0, durationMs: 0, cwd: null },
    ]);
  });

  test('a C with no E since the prompt is a command with an empty line, not the previous one', () => {
    assert.deepEqual(track(osc('E;old') + osc('A') + osc('B') + osc('C') + osc('D;0')).events, [
      { type: 'command.start', commandLine: '', cwd: null },
      { type: 'command.end', commandLine: '', exitCode: 0, durationMs: 0, cwd: null },
    ]);
  });

  test('an overlong command line is truncated to 8 KiB with a marker, on a character boundary', () => {
    const long = 'é'.repeat(10_000);
    const { events } = track(osc(`E;${escapeValue(long)}`) + osc('C'));
    const line = (events[0] as { commandLine: string }).commandLine;
    assert.ok(line.endsWith(TRUNCATED_MARKER));
    assert.ok(Buffer.byteLength(line) <= MAX_COMMAND_LINE_BYTES, `${Buffer.byteLength(line)} bytes`);
    assert.ok(Buffer.byteLength(line) > MAX_COMMAND_LINE_BYTES - 8);
    assert.ok(!line.includes('\ufffd'), 'no character was split');
    assert.equal(capUtf8('short', MAX_COMMAND_LINE_BYTES), 'short');
    const exact = 'x'.repeat(MAX_COMMAND_LINE_BYTES);
    assert.equal(capUtf8(exact, MAX_COMMAND_LINE_BYTES), exact);
  });
});

describe('shell files and the shell command', () => {
  test('bash is the default, with the integration rcfile; zsh when preferred and present; sh without integration as a last resort', () => {
    const has = (...paths: string[]) => (p: string): boolean => paths.includes(p);
    assert.deepEqual(interactiveShell({ available: has('/bin/bash', '/usr/bin/zsh') }), {
      argv: ['/bin/bash', '--rcfile', '/run/airlock/shell/bash-integration.sh', '-i'],
      env: {},
      shell: 'bash',
      integration: true,
    });
    assert.deepEqual(interactiveShell({ available: has('/bin/bash', '/usr/bin/zsh'), prefer: 'zsh' }), {
      argv: ['/usr/bin/zsh', '-i'],
      env: { ZDOTDIR: '/run/airlock/shell/zsh' },
      shell: 'zsh',
      integration: true,
    });
    assert.equal(interactiveShell({ available: has('/usr/bin/bash'), prefer: 'zsh' }).argv[0], '/usr/bin/bash');
    assert.equal(interactiveShell({ available: has('/bin/zsh') }).shell, 'zsh');
    assert.deepEqual(interactiveShell({ available: has() }), { argv: ['/bin/sh', '-i'], env: {}, shell: 'sh', integration: false });
  });

  test('the shipped files are where the shell command points, and parse (bash -n, zsh -n)', (t) => {
    const files = shellFiles();
    assert.deepEqual(Object.keys(files).sort(), ['bash-integration.sh', 'zsh/.zshrc']);
    assert.equal(`/run/airlock/shell/${'bash-integration.sh'}`, BASH_RCFILE);
    assert.equal(`/run/airlock/shell/zsh`, ZSH_ZDOTDIR);
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'airlock-shell-'));
    t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
    for (const [rel, content] of Object.entries(files)) {
      assert.ok(!content.includes('\\${'), `${rel}: the \\$-brace placeholder was replaced`);
      assert.ok(content.startsWith('# Airlock shell integration'), rel);
      const file = path.join(dir, rel.replace('/', '_'));
      fs.writeFileSync(file, content);
      const shell = rel.endsWith('.sh') ? 'bash' : 'zsh';
      const r = spawnSync(shell, ['-n', file], { encoding: 'utf8' });
      if (r.error && shell === 'zsh') {
        t.diagnostic('zsh is not installed: its syntax check was skipped');
        continue;
      }
      assert.equal(r.status, 0, `${shell} -n ${rel}: ${r.stderr}`);
    }
  });
});
