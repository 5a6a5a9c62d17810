/**
 * 100 000 random and mutated frames against a REAL daemon process, from several
 * connections at once: random text, random bytes as text and as binary frames,
 * valid JSON-RPC requests with mutated fields and types, huge ids, deep nesting,
 * binary frames with random kinds and channels (some hitting a real attachment), and
 * oversized messages on throwaway connections. Meanwhile a well-behaved client runs
 * `exec` and streams through an attached process. The daemon must stay up and keep
 * answering, the well-behaved client must get exactly the right results, and the
 * audit log must verify afterwards. Seeded: AIRLOCK_FUZZ_SEED=N reproduces a run.
 */
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import WebSocket from 'ws';
import { verifyAuditFile } from '../../runtime/audit';
import { MAX_MESSAGE_BYTES, METHODS, RPC_PATH } from '../../runtime/protocol';
import { rssBytes, startDaemonProcess } from '../helpers/daemon';
import { until, within } from '../helpers/integration';
import { tempDir } from '../helpers/sandbox';

const TOTAL_FRAMES = 100_000;
const CONNECTIONS = 4;
/** Frames a connection sends before it waits for the daemon to answer a sync request. */
const BATCH = 200;

/** mulberry32: a small seeded PRNG, so a failing run can be replayed. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

class Gen {
  constructor(readonly rnd: () => number) {}
  int(n: number): number {
    return Math.floor(this.rnd() * n);
  }
  pick<T>(xs: readonly T[]): T {
    return xs[this.int(xs.length)];
  }
  chance(p: number): boolean {
    return this.rnd() < p;
  }
  bytes(n: number): Buffer {
    const b = Buffer.allocUnsafe(n);
    for (let i = 0; i < n; i++) b[i] = this.int(256);
    return b;
  }
  /** Random text of valid UTF-16 (so it encodes as valid UTF-8): ASCII, controls, BMP, astral. */
  text(max: number): string {
    const n = this.int(max + 1);
    let s = '';
    for (let i = 0; i < n; i++) {
      const r = this.rnd();
      if (r < 0.6) s += String.fromCharCode(32 + this.int(95));
      else if (r < 0.7) s += String.fromCharCode(this.int(32));
      else if (r < 0.9) s += String.fromCharCode(0xa0 + this.int(0xd7ff - 0xa0));
      else s += String.fromCodePoint(0x10000 + this.int(0x10ffff - 0x10000));
    }
    return s;
  }
}

const FIELDS = ['sessionId', 'argv', 'shell', 'pty', 'cols', 'rows', 'cwd', 'env', 'endsSession', 'processId', 'data', 'eof', 'signal', 'timeoutMs', 'maxOutputBytes', 'stdin', 'filter', 'types', 'limit', 'workspace', 'policy', 'label', 'endOnDisconnect', 'reason', '__proto__', 'constructor'];
const METHOD_NAMES = [...Object.keys(METHODS), '$/cancelRequest', '$/setTrace', '$/logTrace', '$/progress', '__proto__', 'constructor', 'toString', 'hasOwnProperty', 'rpc.discover', '', 'event', 'process.exit'];

interface Targets {
  sessionId: string;
  processId: string;
}

class Fuzzer {
  constructor(
    private readonly g: Gen,
    private readonly targets: Targets,
  ) {}

  /** A random JSON value, nested up to DEPTH. */
  value(depth = 3): unknown {
    const g = this.g;
    switch (g.int(depth > 0 ? 12 : 9)) {
      case 0: return null;
      case 1: return g.chance(0.5);
      case 2: return g.pick([0, -1, 1, 1.5, -0.0001, 2 ** 31, 2 ** 32, 2 ** 53 + 1, 1e308, -1e308, 65535, 65536, 86400001]);
      case 3: return g.text(20);
      case 4: return g.pick(['', '/', '/nonexistent-fuzz', '../../etc/passwd', 'SIGKILLX', 'SIGCONT', '*', 'session.*', '\u0000', 'x'.repeat(g.int(5000))]);
      case 5: return this.targets.sessionId;
      case 6: return this.targets.processId;
      case 7: return g.pick([['true'], ['sh', '-c', 'exit 3'], ['no-such-cmd'], [], [1, 2], ['echo', 'fuzz']]);
      case 8: return g.int(100000);
      case 9: return Array.from({ length: g.int(5) }, () => this.value(depth - 1));
      case 10: {
        const o: Record<string, unknown> = {};
        for (let i = g.int(5); i > 0; i--) o[g.chance(0.5) ? g.pick(FIELDS) : g.text(8)] = this.value(depth - 1);
        return o;
      }
      default: return this.deep(1 + g.int(200));
    }
  }

  deep(n: number): unknown {
    let v: unknown = this.g.chance(0.5) ? 1 : 'leaf';
    for (let i = 0; i < n; i++) v = this.g.chance(0.5) ? [v] : { a: v };
    return v;
  }

  template(): Record<string, unknown> {
    const { sessionId, processId } = this.targets;
    const g = this.g;
    const t: [string, Record<string, unknown>][] = [
      ['runtime.info', {}],
      ['session.list', {}],
      ['session.get', { sessionId }],
      ['session.get', { sessionId: 'deadbeefdeadbeef' }],
      ['session.create', { workspace: '/nonexistent-fuzz', label: 'fuzz', policy: { limits: { pids: 64 } } }],
      ['session.kill', { sessionId: '0123456789abcdef', reason: 'fuzz' }],
      ['process.attach', { processId }],
      ['process.detach', { processId }],
      ['process.input', { processId, data: g.text(50) }],
      ['process.resize', { processId, cols: 80, rows: 24 }],
      ['process.signal', { processId, signal: 'SIGCONT' }],
      ['events.subscribe', { filter: ['session.*'] }],
      ['events.unsubscribe', {}],
      ['audit.query', { limit: 3 }],
    ];
    // Requests that start real processes, rarer: each one costs a spawn in the sandbox.
    if (g.chance(0.05)) t.push(['process.start', { sessionId, argv: ['true'] }], ['exec', { sessionId, argv: ['true'], timeoutMs: 2000 }]);
    const [method, params] = g.pick(t);
    return { jsonrpc: '2.0', id: g.int(1e6), method, params: { ...params } };
  }

  mutate(m: Record<string, unknown>): Record<string, unknown> {
    const g = this.g;
    for (let k = 1 + g.int(3); k > 0; k--) {
      switch (g.int(9)) {
        case 0: m.jsonrpc = g.pick(['1.0', 2, null, '2.0 ', undefined]); break;
        case 1: m.id = g.pick([0, -1, 1.5, 2 ** 53, 2 ** 64, 1e308, -1e308, '', 'x'.repeat(g.int(100_000)), null, true, {}, [], undefined, '9'.repeat(400)]); break;
        case 2: m.method = g.chance(0.5) ? g.pick(METHOD_NAMES) : g.text(30); break;
        case 3: m.params = g.pick([null, 1, 'params', [], [1, 'two'], true, undefined]); break;
        case 4:
        case 5:
        case 6: {
          const p = (typeof m.params === 'object' && m.params !== null ? m.params : {}) as Record<string, unknown>;
          const keys = Object.keys(p);
          const key = keys.length && g.chance(0.6) ? g.pick(keys) : g.pick(FIELDS);
          if (g.chance(0.2)) delete p[key];
          else p[key] = this.value();
          m.params = p;
          break;
        }
        case 7: m[g.pick(['result', 'error', 'extra', 'params'])] = this.value(); break;
        default: delete m[g.pick(['id', 'method', 'params', 'jsonrpc'])];
      }
    }
    return m;
  }

  /** One frame: [payload, isBinary], or 'bad-utf8' for a text frame of random bytes. */
  frame(): [string | Buffer, boolean] | 'bad-utf8' {
    const g = this.g;
    const r = g.rnd();
    if (r < 0.15) return [g.text(200), false];
    if (r < 0.17) return [g.pick(['null', 'true', '42', '"str"', '[]', '{}', '[1,2', '{"jsonrpc":"2.0"}', '{"jsonrpc":"2.0","id":1}', '\ufeff{}']), false];
    if (r < 0.18) return 'bad-utf8';
    if (r < 0.33) return [g.bytes(g.int(80)), true];
    if (r < 0.45) {
      const head = Buffer.alloc(5);
      head[0] = g.chance(0.8) ? 1 + g.int(6) : g.int(256);
      head.writeUInt32LE(g.pick([0, 1, 1, 1, 2, 0xffffffff, g.int(2 ** 32)]), 1);
      const payload = g.chance(0.3) ? Buffer.from([g.int(256), g.int(256), g.int(256), g.int(256)]) : g.bytes(g.int(g.chance(0.1) ? 70_000 : 64));
      return [Buffer.concat([head, payload]), true];
    }
    if (r < 0.47) {
      const n = 1 + g.int(g.chance(0.5) ? 1000 : 100_000);
      return [g.chance(0.5) ? '['.repeat(n) + ']'.repeat(n) : '{"a":'.repeat(n) + '1' + '}'.repeat(n), false];
    }
    if (r < 0.49) {
      // Deep nesting inside valid params, written as text (too deep for JSON.stringify here).
      const m = this.template();
      m.params = { ...(m.params as object), [g.pick(['policy', 'env', 'argv', 'filter'])]: '__DEEP__' };
      const n = 1 + g.int(50_000);
      const deep = g.chance(0.5) ? '['.repeat(n) + '"x"' + ']'.repeat(n) : '{"limits":'.repeat(n) + '{}' + '}'.repeat(n);
      return [JSON.stringify(m).replace('"__DEEP__"', deep), false];
    }
    if (r < 0.51) return [JSON.stringify(g.chance(0.5) ? [this.template(), this.template()] : { jsonrpc: '2.0', id: g.int(100), result: this.value() }), false];
    if (r < 0.6) return [JSON.stringify(this.template()), false];
    return [JSON.stringify(this.mutate(this.template())), false];
  }
}

/** A fuzzing connection: reopened whenever the daemon closes it. */
class FuzzConn {
  ws!: WebSocket;
  private syncs = new Map<string, () => void>();
  received = 0;
  reopened = 0;
  private seq = 0;

  constructor(
    private readonly socket: string,
    private readonly targets: Targets,
  ) {}

  async open(): Promise<void> {
    const ws = new WebSocket(`ws+unix://${this.socket}:${RPC_PATH}`, { maxPayload: 64 << 20 });
    await within(new Promise<void>((resolve, reject) => (ws.once('open', () => resolve()), ws.once('error', reject))), 10_000, 'a fuzz connection to open');
    ws.on('error', () => {});
    ws.on('message', (data, isBinary) => {
      this.received++;
      if (isBinary) return;
      const text = data.toString();
      const m = /^\{"jsonrpc":"2\.0","id":"(sync-[0-9-]+)"/.exec(text);
      if (m) this.syncs.get(m[1])?.();
    });
    this.ws = ws;
    // A real attachment on channel 1, for binary frames to reach.
    ws.send(JSON.stringify({ jsonrpc: '2.0', id: 'attach', method: 'process.attach', params: { processId: this.targets.processId } }));
  }

  get open_(): boolean {
    return this.ws.readyState === WebSocket.OPEN;
  }

  /** Waits (bounded) until the daemon answered a request sent after everything before. */
  async sync(): Promise<number> {
    const id = `sync-${process.pid}-${this.seq++}`;
    const t0 = Date.now();
    const answered = new Promise<void>((r) => this.syncs.set(id, r));
    this.ws.send(JSON.stringify({ jsonrpc: '2.0', id, method: 'runtime.info', params: {} }));
    await within(answered, 30_000, `the daemon to answer ${id}`);
    this.syncs.delete(id);
    return Date.now() - t0;
  }

  async reopen(): Promise<void> {
    if (this.ws.readyState !== WebSocket.CLOSED) {
      const closed = new Promise<void>((r) => this.ws.once('close', () => r()));
      await within(closed, 10_000, 'the daemon to close a connection that sent invalid UTF-8');
    }
    this.reopened++;
    await this.open();
  }

  close(): void {
    this.ws.terminate();
  }
}

/** Sends one oversized message on a throwaway connection; returns the close code the daemon gave. */
async function oversized(socket: string, binary: boolean): Promise<number> {
  const ws = new WebSocket(`ws+unix://${socket}:${RPC_PATH}`);
  await within(new Promise<void>((resolve, reject) => (ws.once('open', () => resolve()), ws.once('error', reject))), 10_000, 'a throwaway connection');
  ws.on('error', () => {});
  const closed = new Promise<number>((r) => ws.once('close', (code) => r(code)));
  const big = Buffer.alloc(MAX_MESSAGE_BYTES + 1 + (binary ? 0 : 1000), binary ? 0x01 : 0x20);
  ws.send(binary ? big : big.toString('latin1'), { binary });
  return within(closed, 10_000, 'the daemon to close a connection that sent an oversized message');
}

test('100 000 random and mutated frames from several connections neither crash the daemon nor disturb a well-behaved client, and the audit log verifies', { timeout: 180_000 }, async (t) => {
  const seed = Number(process.env.AIRLOCK_FUZZ_SEED ?? Date.now() % 2 ** 31);
  console.log(`# fuzz seed ${seed} (AIRLOCK_FUZZ_SEED=${seed} reproduces this run)`);
  const state = tempDir('airlock-state-');
  const d = await startDaemonProcess({ state, args: ['--idle-exit', '300'] });
  t.after(async () => {
    if (!passed && fs.existsSync(d.log)) console.error(`# the daemon's log (alive: ${alive(d.pid)}):\n${fs.readFileSync(d.log, 'utf8').slice(-6000)}`);
    try {
      await d.stop();
    } finally {
      fs.rmSync(state, { recursive: true, force: true });
    }
  });
  let passed = false;
  const rss0 = rssBytes(d.pid);

  // The fuzzers' own session and a process whose stdin swallows what they send.
  const control = await d.client();
  const targets: Targets = { sessionId: '', processId: '' };
  let fuzzSessions = 0;
  const newTarget = async (): Promise<void> => {
    const { sessionId } = await control.call('session.create', { workspace: d.workspace(), label: 'fuzz-target' });
    const { processId } = await control.call('process.start', { sessionId, argv: ['sh', '-c', 'cat > /dev/null'] });
    Object.assign(targets, { sessionId, processId });
    fuzzSessions++;
  };
  await newTarget();
  // Mutated requests may end it (session.kill, endsSession): then the fuzzers get a new one.
  control.on('event', (e) => {
    if (e.type === 'session.end' && e.sessionId === targets.sessionId) newTarget().catch(() => {}); // the daemon may be stopping
  });
  await control.call('events.subscribe', { filter: ['session.end'] });

  // The well-behaved client: its own session, exec after exec, and a live echo process.
  const good = await d.client();
  const { sessionId: goodSession } = await good.call('session.create', { workspace: d.workspace(), label: 'well-behaved' });
  const { processId: echoProc } = await good.call('process.start', { sessionId: goodSession, argv: ['sh', '-c', 'while read l; do echo "echo:$l"; done'] });
  let echoed = '';
  const echo = await good.attach(echoProc, (_k, data) => (echoed += data.toString('utf8')));
  let fuzzing = true;
  let goodRuns = 0;
  let goodMaxMs = 0;
  const goodLoop = (async () => {
    while (fuzzing) {
      const n = goodRuns++;
      const t0 = Date.now();
      const r = await good.call('exec', { sessionId: goodSession, argv: ['sh', '-c', `echo $((${n} * ${n})); echo err${n} >&2; exit $((${n} % 5))`] });
      goodMaxMs = Math.max(goodMaxMs, Date.now() - t0);
      assert.deepEqual([r.exitCode, r.signal, r.stdout, r.stderr, r.truncated, r.timedOut], [n % 5, null, `${n * n}\n`, `err${n}\n`, false, false], `exec #${n} during the fuzz`);
      if (n % 10 === 0) {
        echo.write(Buffer.from(`line-${n}\n`));
        await until(() => echoed.includes(`echo:line-${n}\n`), 10_000, `the echo of line-${n}`);
      }
    }
  })();
  goodLoop.catch(() => {}); // awaited (and its failure reported) after the fuzz

  const conns: FuzzConn[] = [];
  for (let i = 0; i < CONNECTIONS; i++) {
    const c = new FuzzConn(d.socket, targets);
    await c.open();
    conns.push(c);
  }
  t.after(() => conns.forEach((c) => c.close()));
  const started = Date.now();
  let sent = 0;
  let maxSyncMs = 0;
  const oversizedCodes: number[] = [];
  const perConn = TOTAL_FRAMES / CONNECTIONS;
  await Promise.all(
    conns.map(async (c, ci) => {
      const f = new Fuzzer(new Gen(prng(seed + ci + 1)), targets);
      for (let i = 0; i < perConn; ) {
        for (let b = 0; b < BATCH && i < perConn; b++, i++) {
          const fr = f.frame();
          sent++;
          if (fr === 'bad-utf8') {
            // Invalid UTF-8 in a text frame: the daemon closes the connection (1007).
            c.ws.send(Buffer.concat([Buffer.from('{"x":"'), Buffer.from([0xff, 0xfe, 0xc0, 0x80]), Buffer.from('"}')]), { binary: false });
            await c.reopen();
            continue;
          }
          c.ws.send(fr[0], { binary: fr[1] });
        }
        if (!c.open_) await c.reopen();
        maxSyncMs = Math.max(maxSyncMs, await c.sync());
        if (ci === 0 && i % (perConn / 5) < BATCH) oversizedCodes.push(await oversized(d.socket, oversizedCodes.length % 2 === 1));
      }
    }),
  );
  const fuzzMs = Date.now() - started;
  fuzzing = false;
  await within(goodLoop, 30_000, 'the well-behaved client to finish its last exec');

  assert.equal(sent, TOTAL_FRAMES);
  assert.ok(oversizedCodes.length >= 4);
  // 1009 (message too big); 1006 when the daemon dropped the socket while the client
  // was still writing its 4 MiB and so never read the close frame. Closed either way.
  assert.ok(oversizedCodes.every((code) => code === 1009 || code === 1006), `oversized messages close their connection: ${oversizedCodes.join(',')}`);
  assert.ok(oversizedCodes.includes(1009), `at least one close says why (1009): ${oversizedCodes.join(',')}`);
  assert.ok(alive(d.pid), 'the daemon process is still running');
  const after = await d.client();
  assert.equal((await after.call('runtime.info', {})).pid, d.pid, 'and still answers');
  assert.equal((await after.call('session.get', { sessionId: goodSession })).state, 'running', 'the well-behaved client\'s session is untouched');
  const rss1 = rssBytes(d.pid);
  const reopened = conns.reduce((n, c) => n + c.reopened, 0);
  const received = conns.reduce((n, c) => n + c.received, 0);
  console.log(
    `# fuzz: ${sent} frames in ${(fuzzMs / 1000).toFixed(1)} s (${Math.round(sent / (fuzzMs / 1000))}/s) over ${CONNECTIONS} connections (${reopened} reopened after invalid UTF-8, ${oversizedCodes.length} oversized on throwaways); ` +
      `${received} messages back; slowest sync ${maxSyncMs} ms; well-behaved exec x${goodRuns}, slowest ${goodMaxMs} ms; fuzz target sessions ${fuzzSessions}; daemon RSS ${(rss0 / 2 ** 20).toFixed(1)} -> ${(rss1 / 2 ** 20).toFixed(1)} MiB`,
  );
  assert.ok(goodRuns > 10, `the well-behaved client got through (${goodRuns} execs)`);

  await good.call('session.kill', { sessionId: goodSession });
  await d.stop(); // then the log is complete: verified with no writer left
  const v = verifyAuditFile(d.auditFile);
  assert.equal(v.ok, true, JSON.stringify(v.firstBad));
  assert.deepEqual(v.torn, []);
  passed = true;
});

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}
