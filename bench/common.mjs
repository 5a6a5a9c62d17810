// What both benchmarks share: the node-pty baseline and its input file.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const pty = require('@lydell/node-pty');

export const now = () => Number(process.hrtime.bigint()) / 1e6;

/** A file of MB MiB without newlines, so a PTY passes its bytes 1:1. Returns [path, bytes]. */
export function bigFile(dir, mb) {
  const file = path.join(dir, 'big.txt');
  const chunk = Buffer.alloc(1 << 20, 'a');
  const fd = fs.openSync(file, 'w');
  for (let i = 0; i < mb; i++) fs.writeSync(fd, chunk);
  fs.closeSync(fd);
  return [file, mb * (1 << 20)];
}

/**
 * The baseline: `cat FILE` in node-pty directly on the host, reading Buffers (no UTF-8
 * decoding, like the runtime). node-pty can lose the last bytes when cat exits: then
 * the time is that of the last byte it delivered, and `bytes` says how many.
 */
export function ptyDirect(file, expected) {
  return new Promise((resolve) => {
    const t0 = now();
    const term = pty.spawn('/usr/bin/cat', [file], { cols: 200, rows: 50, env: { PATH: '/usr/bin:/bin', TERM: 'xterm' }, encoding: null });
    let got = 0;
    let t1 = 0;
    let done = false;
    const finish = () => {
      if (!done) {
        done = true;
        resolve({ ms: t1 - t0, bytes: got });
      }
    };
    term.onData((d) => {
      got += d.length;
      t1 = now();
      if (got >= expected) finish();
    });
    term.onExit(() => setTimeout(finish, 200));
  });
}
