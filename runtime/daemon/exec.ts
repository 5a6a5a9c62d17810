/** `exec`: one command with pipes, its output collected with a cap and a timeout. */
import type { Api, ExecResult } from '../protocol';
import type { Session } from '../sessions';

const DEFAULT_MAX_OUTPUT = 1 << 20;
const DEFAULT_TIMEOUT_MS = 60_000;

class Capped {
  private readonly parts: Buffer[] = [];
  private size = 0;
  dropped = 0;
  constructor(private readonly max: number) {}
  add(d: Buffer): void {
    const room = this.max - this.size;
    if (room > 0) {
      const take = d.subarray(0, room);
      this.parts.push(take);
      this.size += take.length;
    }
    this.dropped += Math.max(0, d.length - Math.max(0, room));
  }
  text(): string {
    return Buffer.concat(this.parts).toString('utf8');
  }
}

export async function runExec(session: Session, p: Api['exec'][0]): Promise<ExecResult> {
  const t0 = Date.now();
  const proc = await session.spawn({ argv: p.argv, cwd: p.cwd, env: p.env, pty: false });
  const max = p.maxOutputBytes ?? DEFAULT_MAX_OUTPUT;
  const out = new Capped(max);
  const err = new Capped(max);
  proc.on('stdout', (d) => out.add(d));
  proc.on('stderr', (d) => err.add(d));
  if (p.stdin) proc.write(p.stdin);
  proc.end();
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    proc.signal('SIGKILL');
  }, p.timeoutMs ?? DEFAULT_TIMEOUT_MS);
  const exit = await proc.exited;
  clearTimeout(timer);
  return {
    exitCode: exit.code,
    signal: exit.signal,
    stdout: out.text(),
    stderr: err.text(),
    truncated: out.dropped + err.dropped > 0,
    timedOut,
    durationMs: Date.now() - t0,
  };
}
