/**
 * The runtime's end of the agent protocol (runtime/agent/channel.ts). The agent is on
 * the sandbox's side, so its frames are untrusted: these tests feed hand-made bytes,
 * split and coalesced arbitrarily, and malformed frames that must end the channel with
 * a clear error and no crash. Requests the runtime sends are decoded byte by byte.
 */
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { Duplex } from 'node:stream';
import { AgentChannel, FRAME_HEADROOM, MAX_FRAME } from '../../runtime/agent/channel';
import { decodeFrame, encodeFrame, FrameKind, takeHeadroom } from '../../runtime/protocol/frames';

/** The agent's end of the channel: the test pushes what the agent "sends" and reads what the runtime wrote. */
class AgentEnd extends Duplex {
  readonly written: Buffer[] = [];
  override _read(): void {}
  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (e?: Error | null) => void): void {
    this.written.push(chunk);
    cb();
  }
  /** Everything the runtime wrote, split into frames. */
  frames(): { type: number; id: number; payload: Buffer }[] {
    const all = Buffer.concat(this.written);
    const out: { type: number; id: number; payload: Buffer }[] = [];
    for (let off = 0; off < all.length;) {
      const len = all.readUInt32LE(off);
      out.push({ type: all.readUInt8(off + 4), id: all.readUInt32LE(off + 5), payload: all.subarray(off + 9, off + 4 + len) });
      off += 4 + len;
    }
    return out;
  }
}

function frame(type: number, id: number, payload: Buffer = Buffer.alloc(0)): Buffer {
  const hdr = Buffer.alloc(9);
  hdr.writeUInt32LE(5 + payload.length, 0);
  hdr.writeUInt8(type, 4);
  hdr.writeUInt32LE(id, 5);
  return Buffer.concat([hdr, payload]);
}
const u32 = (...ns: number[]): Buffer => {
  const b = Buffer.alloc(4 * ns.length);
  ns.forEach((n, i) => b.writeInt32LE(n, 4 * i));
  return b;
};

function setup(): { end: AgentEnd; ch: AgentChannel; events: unknown[][] } {
  const end = new AgentEnd();
  const ch = new AgentChannel(end);
  const events: unknown[][] = [];
  for (const name of ['ready', 'spawned', 'spawnFailed', 'stdout', 'stderr', 'exit', 'inputAck', 'log', 'protocolError', 'close'] as const) {
    ch.on(name, (...args: unknown[]) => events.push([name, ...args.map((a) => (Buffer.isBuffer(a) ? a.toString('utf8') : a))]));
  }
  return { end, ch, events };
}

const tick = (): Promise<void> => new Promise((r) => setImmediate(r));

const STREAM = Buffer.concat([
  frame(0x81, 0, Buffer.concat([u32(1), Buffer.from('airlock-agent 1')])),
  frame(0x82, 7, u32(4242)),
  frame(0x84, 7, Buffer.from('hello ')),
  frame(0x85, 7, Buffer.from('oops')),
  frame(0x84, 7, Buffer.from('world')),
  frame(0x88, 7, u32(65536)),
  frame(0x87, 7, Buffer.from('a log line')),
  frame(0x86, 7, u32(3, 0)),
  frame(0x83, 8, Buffer.concat([u32(2), Buffer.from('cannot execute nope: No such file or directory')])),
]);
const EXPECTED = [
  ['ready', 1],
  ['spawned', 7, 4242],
  ['stdout', 7, 'hello '],
  ['stderr', 7, 'oops'],
  ['stdout', 7, 'world'],
  ['inputAck', 7, 65536],
  ['log', 7, 'a log line'],
  ['exit', 7, 3, null],
  ['spawnFailed', 8, 2, 'cannot execute nope: No such file or directory'],
];

test('frames coalesced into one chunk are all parsed, in order', async () => {
  const { end, events } = setup();
  end.push(STREAM);
  await tick();
  assert.deepEqual(events, EXPECTED);
});

test('frames split at every byte boundary are parsed the same', async () => {
  const { end, events } = setup();
  for (let i = 0; i < STREAM.length; i++) {
    end.push(STREAM.subarray(i, i + 1));
    await tick();
  }
  assert.deepEqual(events, EXPECTED);
});

test('frames split at arbitrary boundaries (header and payload cut) are parsed the same', async () => {
  for (const cuts of [[3], [4, 9, 10], [20, 21, 50], [STREAM.length - 1]]) {
    const { end, events } = setup();
    let prev = 0;
    for (const c of [...cuts, STREAM.length]) {
      end.push(STREAM.subarray(prev, c));
      prev = c;
      await tick();
    }
    assert.deepEqual(events, EXPECTED, `cuts ${cuts.join(',')}`);
  }
});

test('an exit frame reports a signal and no code when the process was killed', async () => {
  const { end, events } = setup();
  end.push(frame(0x86, 1, u32(-1, 9)));
  await tick();
  assert.deepEqual(events, [['exit', 1, null, 9]]);
});

test('frames with too short a payload are dropped without an event or a crash', async () => {
  const { end, events } = setup();
  end.push(Buffer.concat([frame(0x81, 0, Buffer.alloc(2)), frame(0x82, 1), frame(0x86, 1, u32(1)), frame(0x88, 1, Buffer.alloc(3)), frame(0x84, 1, Buffer.from('ok'))]));
  await tick();
  assert.deepEqual(events, [['stdout', 1, 'ok']]);
});

test('a frame length above the limit emits protocolError and closes the channel', async () => {
  const { end, events } = setup();
  const hdr = Buffer.alloc(9);
  hdr.writeUInt32LE(0xfffffff0, 0);
  hdr.writeUInt8(0x84, 4);
  end.push(Buffer.concat([frame(0x84, 1, Buffer.from('before')), hdr]));
  await tick();
  assert.deepEqual(events.slice(0, 2), [['stdout', 1, 'before'], ['protocolError', `agent sent a frame of ${0xfffffff0} bytes (limit ${MAX_FRAME})`]]);
  assert.deepEqual(events[2], ['close']);
  assert.equal(events.length, 3, 'close is emitted once');
  assert.ok(end.destroyed, 'the stream is destroyed');
});

test('a frame length below the header size emits protocolError', async () => {
  const { end, events } = setup();
  const bad = Buffer.alloc(9);
  bad.writeUInt32LE(2, 0);
  end.push(bad);
  await tick();
  assert.deepEqual(events[0], ['protocolError', `agent sent a frame of 2 bytes (limit ${MAX_FRAME})`]);
});

test('an unknown frame type emits protocolError, closes, and later frames are ignored', async () => {
  const { end, events } = setup();
  end.push(Buffer.concat([frame(0x99, 1, Buffer.from('x')), frame(0x84, 1, Buffer.from('after'))]));
  await tick();
  assert.deepEqual(events, [['protocolError', 'agent sent an unknown frame type 153'], ['close']]);
  assert.ok(end.destroyed);
});

test('host-side frame types sent back by the agent are refused too', async () => {
  const { end, events } = setup();
  end.push(frame(1, 1, Buffer.alloc(20)));
  await tick();
  assert.equal(events[0][0], 'protocolError');
});

test('the end of the stream emits close exactly once', async () => {
  const { end, events } = setup();
  end.push(null);
  end.destroy();
  await tick();
  await tick();
  assert.deepEqual(events, [['close']]);
});

test('spawn() refuses NUL bytes in argv, cwd or environment and sends nothing', () => {
  const { end, ch } = setup();
  const base = { argv: ['echo', 'hi'], cwd: '/w', env: { A: 'b' }, pty: false };
  assert.throws(() => ch.spawn(1, { ...base, argv: ['echo', 'a\0b'] }), /must not contain NUL bytes/);
  assert.throws(() => ch.spawn(1, { ...base, cwd: '/w\0/x' }), /must not contain NUL bytes/);
  assert.throws(() => ch.spawn(1, { ...base, env: { A: 'x\0y' } }), /must not contain NUL bytes/);
  assert.throws(() => ch.spawn(1, { ...base, env: { 'A\0B': 'x' } }), /must not contain NUL bytes/);
  assert.deepEqual(end.written, []);
});

test('spawn() refuses a request larger than one frame', () => {
  const { end, ch } = setup();
  assert.throws(() => ch.spawn(1, { argv: ['x', 'y'.repeat(MAX_FRAME)], cwd: '/', env: {}, pty: false }), /too large/);
  assert.deepEqual(end.written, []);
});

test('spawn() encodes flags, size, counts and NUL-terminated cwd, argv and env', () => {
  const { end, ch } = setup();
  ch.spawn(0x01020304, { argv: ['sh', '-c', 'echo héllo'], cwd: '/work space', env: { PATH: '/bin', EMPTY: '' }, pty: true, cols: 132, rows: 43 });
  const [f] = end.frames();
  assert.equal(f.type, 1);
  assert.equal(f.id, 0x01020304);
  const p = f.payload;
  assert.equal(p.readUInt8(0), 1, 'pty flag');
  assert.equal(p.readUInt16LE(1), 132);
  assert.equal(p.readUInt16LE(3), 43);
  assert.equal(p.readUInt32LE(5), 3, 'argc');
  assert.equal(p.readUInt32LE(9), 2, 'envc');
  const strings = p.subarray(13).toString('utf8').split('\0');
  assert.equal(strings.pop(), '', 'every string is NUL-terminated');
  assert.deepEqual(strings, ['/work space', 'sh', '-c', 'echo héllo', 'PATH=/bin', 'EMPTY=']);
});

test('spawn() defaults the size to 80x24 and clamps it to 1..65535', () => {
  const { end, ch } = setup();
  ch.spawn(1, { argv: ['a'], cwd: '/', env: {}, pty: false });
  ch.spawn(2, { argv: ['a'], cwd: '/', env: {}, pty: false, cols: 0, rows: 1e9 });
  ch.spawn(3, { argv: ['a'], cwd: '/', env: {}, pty: false, cols: NaN, rows: 10.7 });
  const dims = end.frames().map((f) => [f.payload.readUInt8(0), f.payload.readUInt16LE(1), f.payload.readUInt16LE(3)]);
  assert.deepEqual(dims, [[0, 80, 24], [0, 1, 65535], [0, 80, 10]]);
});

test('spawn() with closeStdin sends the spawn and the end of its input in one write; a terminal gets no ^D', () => {
  const { end, ch } = setup();
  ch.spawn(5, { argv: ['cat'], cwd: '/', env: {}, pty: false, closeStdin: true });
  assert.equal(end.written.length, 1, 'one write');
  assert.deepEqual(end.frames().map((f) => [f.type, f.id, f.payload.length > 0]), [[1, 5, true], [3, 5, false]]);
  ch.spawn(6, { argv: ['cat'], cwd: '/', env: {}, pty: true, closeStdin: true });
  assert.deepEqual(end.frames().slice(2).map((f) => [f.type, f.id]), [[1, 6]]);
});

test('stdin is sent in chunks of at most 64 KiB, in order', () => {
  const { end, ch } = setup();
  const data = Buffer.alloc(150_000);
  for (let i = 0; i < data.length; i++) data[i] = i % 251;
  ch.stdin(5, data);
  const fs = end.frames();
  assert.deepEqual(fs.map((f) => [f.type, f.id, f.payload.length]), [[2, 5, 65536], [2, 5, 65536], [2, 5, 150_000 - 131072]]);
  assert.ok(Buffer.concat(fs.map((f) => f.payload)).equals(data));
});

test('eof, resize, signal, ack and shutdown are encoded as documented', () => {
  const { end, ch } = setup();
  ch.stdinEof(3);
  ch.resize(3, 120, 40);
  ch.signal(3, 2);
  ch.ack(3, 5_000_000_000);
  ch.shutdown();
  const fs = end.frames();
  assert.deepEqual(fs.map((f) => [f.type, f.id]), [[3, 3], [4, 3], [5, 3], [6, 3], [7, 0]]);
  assert.equal(fs[0].payload.length, 0);
  assert.deepEqual([fs[1].payload.readUInt16LE(0), fs[1].payload.readUInt16LE(2)], [120, 40]);
  assert.equal(fs[2].payload.readUInt32LE(0), 2);
  assert.equal(fs[3].payload.readUInt32LE(0), 0xffffffff, 'ack is capped at u32');
  assert.equal(fs[4].payload.length, 0);
});

test('nothing is sent after the channel closed', () => {
  const { end, ch } = setup();
  ch.close();
  ch.stdin(1, Buffer.from('late'));
  ch.ack(1, 1);
  assert.deepEqual(end.written, []);
});

test('a large output frame split over several reads, with the next frame behind it, arrives whole', async () => {
  const { end, events } = setup();
  const big = Buffer.alloc(200 * 1024, 'x');
  const stream = Buffer.concat([frame(0x84, 7, big), frame(0x84, 7, Buffer.from('tail'))]);
  for (const [a, b] of [[0, 5], [5, 65536], [65536, 131072], [131072, stream.length]]) {
    end.push(stream.subarray(a, b));
    await tick();
  }
  assert.deepEqual(events, [['stdout', 7, big.toString()], ['stdout', 7, 'tail']]);
});

test('small acks go out together, one frame per process, a few milliseconds later', async () => {
  const { end, ch } = setup();
  ch.ack(1, 100);
  ch.ack(2, 7);
  ch.ack(1, 200);
  assert.deepEqual(end.written, [], 'nothing is sent at once');
  await new Promise((r) => setTimeout(r, 30));
  const fs = end.frames();
  assert.deepEqual(fs.map((f) => [f.type, f.id, f.payload.readUInt32LE(0)]), [[6, 1, 300], [6, 2, 7]]);
});

test('acks reaching a quarter of the agent window are sent at once', () => {
  const { end, ch } = setup();
  ch.ack(1, 200 * 1024);
  ch.ack(1, 100 * 1024);
  const fs = end.frames();
  assert.deepEqual(fs.map((f) => [f.type, f.id, f.payload.readUInt32LE(0)]), [[6, 1, 300 * 1024]]);
});

/** Decodes a FILE_PUT payload: u32 mode, u8 flags, NUL-terminated path, data. */
function decodePut(p: Buffer): { mode: number; append: boolean; path: string; data: Buffer } {
  const nul = p.indexOf(0, 5);
  return { mode: p.readUInt32LE(0), append: (p.readUInt8(4) & 1) === 1, path: p.subarray(5, nul).toString('utf8'), data: p.subarray(nul + 1) };
}
const i32 = (n: number): Buffer => u32(n);

test('putFile() encodes mode, flags, NUL-terminated path and data, and resolves on errno 0', async () => {
  const { end, ch } = setup();
  const done = ch.putFile('/run/airlock/secrets/TOKEN', Buffer.from('s3cr\0t'), { mode: 0o400 });
  await tick();
  const [f] = end.frames();
  assert.equal(f.type, 8);
  assert.deepEqual(decodePut(f.payload), { mode: 0o400, append: false, path: '/run/airlock/secrets/TOKEN', data: Buffer.from('s3cr\0t') });
  end.push(frame(0x89, f.id, i32(0)));
  await done;
});

test('putFile() with append sets flag bit 0; removeFile() sends the NUL-terminated path', async () => {
  const { end, ch } = setup();
  const a = ch.putFile('/tmp/airlock-output/out.txt', Buffer.from('more'), { mode: 0o600, append: true });
  await tick();
  end.push(frame(0x89, end.frames()[0].id, i32(0)));
  await a;
  const r = ch.removeFile('/tmp/airlock-output/out.txt');
  await tick();
  const [put, rm] = end.frames();
  assert.equal(decodePut(put.payload).append, true);
  assert.equal(put.payload.readUInt8(4), 1);
  assert.equal(rm.type, 9);
  assert.deepEqual(rm.payload, Buffer.from('/tmp/airlock-output/out.txt\0'));
  end.push(frame(0x89, rm.id, i32(0)));
  await r;
});

test('file op ids come from their own counter, and replies are matched by id, not by order', async () => {
  const { end, ch, events } = setup();
  ch.spawn(1, { argv: ['a'], cwd: '/', env: {}, pty: false });
  const results: string[] = [];
  const a = ch.putFile('/run/airlock/secrets/A', Buffer.from('a'), { mode: 0o400 }).then(() => results.push('A ok'), (e: Error) => results.push(e.message));
  const b = ch.removeFile('/run/airlock/secrets/B').then(() => results.push('B ok'), (e: Error) => results.push(e.message));
  await tick();
  const [, fa] = end.frames();
  assert.equal(fa.id, 1, 'the first file op is id 1 although process 1 exists: separate spaces');
  // A reply for an id nobody waits for, and one for the process id space's type, are ignored.
  end.push(Buffer.concat([frame(0x89, 999, i32(0)), frame(0x84, 1, Buffer.from('out'))]));
  await tick();
  assert.deepEqual(results, []);
  end.push(frame(0x89, fa.id, i32(1)));
  await a;
  await tick();
  const fb = end.frames()[2];
  assert.equal(fb.id, 2, 'ops run one at a time: B is sent after A was answered');
  end.push(frame(0x89, fb.id, i32(13)));
  await b;
  assert.deepEqual(results, [
    'cannot write /run/airlock/secrets/A inside the sandbox: EPERM (only /run/airlock/secrets/NAME and /tmp/airlock-output/NAME may be written, NAME without a leading dot)',
    'cannot remove /run/airlock/secrets/B inside the sandbox: EACCES',
  ]);
  assert.deepEqual(events, [['stdout', 1, 'out']], 'file replies emit no process events');
});

test('removeFile() treats ENOENT as success; other errors and unknown errnos are named', async () => {
  const { end, ch } = setup();
  const gone = ch.removeFile('/run/airlock/secrets/X');
  await tick();
  end.push(frame(0x89, end.frames()[0].id, i32(2)));
  await gone;
  const full = ch.putFile('/run/airlock/secrets/Y', Buffer.from('y'), { mode: 0o400 });
  await tick();
  end.push(frame(0x89, end.frames()[1].id, i32(28)));
  await assert.rejects(full, { name: 'AgentFileError', code: 'ENOSPC', message: 'cannot write /run/airlock/secrets/Y inside the sandbox: ENOSPC (its tmpfs is full)' });
  const odd = ch.putFile('/run/airlock/secrets/Z', Buffer.from('z'), { mode: 0o400 });
  await tick();
  end.push(frame(0x89, end.frames()[2].id, i32(-7)));
  await assert.rejects(odd, { message: 'cannot write /run/airlock/secrets/Z inside the sandbox: errno -7' });
});

test('putFile() splits data larger than a frame: a put, then appends, each sent after the previous reply', async () => {
  const { end, ch } = setup();
  const path = '/tmp/airlock-output/big';
  const data = Buffer.alloc(MAX_FRAME * 2 + 10);
  for (let i = 0; i < data.length; i++) data[i] = i % 253;
  const done = ch.putFile(path, data, { mode: 0o644 });
  const parts: ReturnType<typeof decodePut>[] = [];
  for (let n = 1; n <= 3; n++) {
    await tick();
    const fs = end.frames();
    assert.equal(fs.length, n, `frame ${n} is sent only after reply ${n - 1}`);
    const f = fs[n - 1];
    assert.ok(f.payload.length + 5 <= MAX_FRAME, 'every frame fits the agent limit');
    parts.push(decodePut(f.payload));
    end.push(frame(0x89, f.id, i32(0)));
  }
  await done;
  assert.deepEqual(parts.map((p) => [p.append, p.mode, p.path]), [[false, 0o644, path], [true, 0o644, path], [true, 0o644, path]]);
  assert.ok(Buffer.concat(parts.map((p) => p.data)).equals(data));
});

test('a large replacement failing after its first frame removes the partial file', async () => {
  const { end, ch } = setup();
  const done = ch.putFile('/run/airlock/secrets/BIG', Buffer.alloc(MAX_FRAME + 100), { mode: 0o400 });
  await tick();
  end.push(frame(0x89, end.frames()[0].id, i32(0)));
  await tick();
  end.push(frame(0x89, end.frames()[1].id, i32(28)));
  await tick();
  const rm = end.frames()[2];
  assert.equal(rm.type, 9);
  assert.deepEqual(rm.payload, Buffer.from('/run/airlock/secrets/BIG\0'));
  end.push(frame(0x89, rm.id, i32(0)));
  await assert.rejects(done, { code: 'ENOSPC' });
  assert.equal(end.frames().length, 3);
});

test('an empty putFile() still sends one frame (it creates an empty file)', async () => {
  const { end, ch } = setup();
  const done = ch.putFile('/tmp/airlock-output/empty', Buffer.alloc(0), { mode: 0o600 });
  await tick();
  const fs = end.frames();
  assert.equal(fs.length, 1);
  assert.equal(decodePut(fs[0].payload).data.length, 0);
  end.push(frame(0x89, fs[0].id, i32(0)));
  await done;
});

test('putFile() refuses a bad path or mode without sending anything', async () => {
  const { end, ch } = setup();
  await assert.rejects(ch.putFile('/tmp/airlock-output/a\0b', Buffer.from('x'), { mode: 0o600 }), /without NUL bytes/);
  await assert.rejects(ch.putFile('', Buffer.from('x'), { mode: 0o600 }), /non-empty string/);
  await assert.rejects(ch.putFile('/tmp/airlock-output/' + 'x'.repeat(5000), Buffer.from('x'), { mode: 0o600 }), /too long/);
  await assert.rejects(ch.putFile('/tmp/airlock-output/a', Buffer.from('x'), { mode: 0o4755 }), /not a permission mode/);
  await assert.rejects(ch.removeFile('/tmp/airlock-output/a\0'), /without NUL bytes/);
  assert.deepEqual(end.written, []);
});

test('closing the channel rejects pending and queued file ops, naming the path; later ops reject at once', async () => {
  const { end, ch } = setup();
  const a = ch.putFile('/run/airlock/secrets/A', Buffer.from('a'), { mode: 0o400 });
  const b = ch.removeFile('/run/airlock/secrets/B');
  await tick();
  end.push(null);
  end.destroy();
  await assert.rejects(a, { code: 'ECLOSED', message: 'cannot write /run/airlock/secrets/A inside the sandbox: the sandbox agent is gone (the session ended)' });
  await assert.rejects(b, { code: 'ECLOSED', message: /cannot remove \/run\/airlock\/secrets\/B/ });
  await assert.rejects(ch.putFile('/run/airlock/secrets/C', Buffer.from('c'), { mode: 0o400 }), { code: 'ECLOSED' });
  assert.equal(end.frames().length, 1, 'only the first op was ever sent');
});

test('a protocol error also rejects pending file ops', async () => {
  const { end, ch } = setup();
  const a = ch.putFile('/run/airlock/secrets/A', Buffer.from('a'), { mode: 0o400 });
  await tick();
  end.push(frame(0x99, 0));
  await assert.rejects(a, { code: 'ECLOSED' });
});

/** Whether FRAME is PAYLOAD's own memory with the 5-byte header right before it. */
const inPlace = (frame: Buffer, payload: Buffer): boolean => frame.buffer === payload.buffer && frame.byteOffset === payload.byteOffset - 5;

test('output payloads take their client frame header in place, once; the frames around them stay intact', async () => {
  const { end, ch } = setup();
  const payloads: Buffer[] = [];
  ch.on('stdout', (_id, p) => payloads.push(p));
  // Three output frames in one read, then one split over two reads (assembled whole).
  const texts = ['first', 'second', 'third', 'x'.repeat(70_000)];
  const stream = Buffer.concat(texts.map((t) => frame(0x84, 7, Buffer.from(t))));
  const cut = stream.length - 30_000;
  end.push(stream.subarray(0, cut));
  await tick();
  end.push(stream.subarray(cut));
  await tick();
  assert.equal(payloads.length, 4);
  const frames = payloads.map((p, k) => encodeFrame(FrameKind.Stdout, 100 + k, p));
  for (const [k, t] of texts.entries()) {
    assert.equal(payloads[k].toString(), t, `payload ${k} is unchanged`);
    assert.deepEqual(decodeFrame(frames[k]), { kind: FrameKind.Stdout, channel: 100 + k, payload: Buffer.from(t) });
    assert.ok(inPlace(frames[k], payloads[k]), `frame ${k} is the payload's own memory, not a copy`);
  }
  // A second client's frame of the same payload is a copy: the first is left as it was.
  const again = encodeFrame(FrameKind.Stdout, 999, payloads[1]);
  assert.ok(!inPlace(again, payloads[1]));
  assert.deepEqual(decodeFrame(frames[1]), { kind: FrameKind.Stdout, channel: 101, payload: Buffer.from('second') });
  assert.deepEqual(decodeFrame(again), { kind: FrameKind.Stdout, channel: 999, payload: Buffer.from('second') });
  // A buffer nobody marked is always copied.
  const plain = Buffer.from('plain');
  assert.ok(!inPlace(encodeFrame(FrameKind.Stdout, 1, plain), plain));
});

test('an output payload\'s scratch is its own header, plus FRAME_HEADROOM when assembled from reads; using all of it spares every other frame', async () => {
  const { end, ch } = setup();
  const payloads: Buffer[] = [];
  ch.on('stdout', (_id, p) => payloads.push(p));
  ch.on('stderr', (_id, p) => payloads.push(p));
  const texts = ['one', 'two', 'y'.repeat(5000), 'three', 'z'.repeat(70_000), 'four'];
  const stream = Buffer.concat(texts.map((t, k) => frame(k % 2 ? 0x85 : 0x84, 7, Buffer.from(t))));
  // Cut inside the 5000-byte frame and inside the 70 000-byte one: both are assembled.
  const cuts = [frame(0x84, 7, Buffer.from('one')).length + frame(0x85, 7, Buffer.from('two')).length + 100, stream.length - 20_000, stream.length];
  let at = 0;
  for (const c of cuts) {
    end.push(stream.subarray(at, c));
    at = c;
    await tick();
  }
  assert.deepEqual(payloads.map((p) => p.toString()), texts);
  const rooms = payloads.map((p) => takeHeadroom(p));
  assert.deepEqual(rooms, [9, 9, 9 + FRAME_HEADROOM, 9, 9 + FRAME_HEADROOM, 9]);
  // A consumer writing over all of each payload's scratch (a redaction stream's held
  // bytes, then a client frame header) changes no other payload.
  for (const [k, p] of payloads.entries()) Buffer.from(p.buffer, p.byteOffset - rooms[k], rooms[k]).fill(0xff);
  assert.deepEqual(payloads.map((p) => p.toString()), texts);
  assert.deepEqual(rooms.map((_, k) => takeHeadroom(payloads[k])), [0, 0, 0, 0, 0, 0], 'each mark is taken once');
});
