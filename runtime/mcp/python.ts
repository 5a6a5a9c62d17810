/**
 * The `python` tool's persistent REPL: one `python3` process per MCP session, started
 * inside the sandbox through the runtime (process.start), kept alive between calls so
 * variables, imports and functions survive. Requests and answers are JSON lines on its
 * stdin/stdout; each answer carries a random marker so output of the user's code can
 * never pass for one.
 *
 * Everything it prints crossed the runtime's redactor (it is ordinary process output),
 * and the driver runs as the sandboxed user with the sandbox's view of everything.
 */
import * as crypto from 'node:crypto';
import type { AttachedProcess, RuntimeClient } from '../client/client';

/** The driver python3 runs: exec/eval in one namespace, stdout/stderr captured per call. */
const DRIVER = String.raw`
import sys, json, io, ast, traceback, contextlib
MARK = sys.argv[1]
ns = {"__name__": "__main__"}
for line in sys.stdin:
    req = json.loads(line)
    out, err = io.StringIO(), io.StringIO()
    value = None
    ok = True
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            tree = ast.parse(req["code"], "<airlock>", "exec")
            last = tree.body.pop() if tree.body and isinstance(tree.body[-1], ast.Expr) else None
            exec(compile(tree, "<airlock>", "exec"), ns)
            if last is not None:
                v = eval(compile(ast.Expression(last.value), "<airlock>", "eval"), ns)
                if v is not None:
                    value = repr(v)
        except KeyboardInterrupt:
            ok = False
            err.write("KeyboardInterrupt: the call timed out; the REPL's state is kept\n")
        except BaseException:
            ok = False
            traceback.print_exc()
    sys.__stdout__.write(MARK + json.dumps({"id": req["id"], "ok": ok, "stdout": out.getvalue(), "stderr": err.getvalue(), "value": value}) + "\n")
    sys.__stdout__.flush()
`;

export interface PythonResult {
  ok: boolean;
  stdout: string;
  stderr: string;
  value: string | null;
  timedOut: boolean;
}

export class PythonRepl {
  private proc: AttachedProcess | undefined;
  private processId: string | undefined;
  private starting: Promise<void> | undefined;
  private readonly marker = `\u001eairlock-${crypto.randomBytes(8).toString('hex')}:`;
  private buf = '';
  private nextId = 1;
  private readonly waiting = new Map<number, (r: PythonResult) => void>();
  /** One call at a time: the REPL is a single interpreter. */
  private queue: Promise<unknown> = Promise.resolve();

  constructor(private readonly client: RuntimeClient, private readonly sessionId: string) {}

  run(code: string, timeoutMs: number): Promise<PythonResult> {
    const next = this.queue.then(() => this.runNow(code, timeoutMs));
    this.queue = next.catch(() => undefined);
    return next;
  }

  private async runNow(code: string, timeoutMs: number): Promise<PythonResult> {
    await this.ensure();
    const id = this.nextId++;
    const answer = new Promise<PythonResult>((resolve) => this.waiting.set(id, resolve));
    this.proc!.write(Buffer.from(JSON.stringify({ id, code }) + '\n'));
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      // KeyboardInterrupt in the running code: the interpreter and its state survive.
      void this.client.call('process.signal', { processId: this.processId!, signal: 'SIGINT' }).catch(() => undefined);
    }, timeoutMs);
    const r = await answer;
    clearTimeout(timer);
    return { ...r, timedOut };
  }

  private ensure(): Promise<void> {
    if (this.proc && !this.exited) return Promise.resolve();
    this.starting ??= this.start().finally(() => (this.starting = undefined));
    return this.starting;
  }

  private exited = false;

  private async start(): Promise<void> {
    this.exited = false;
    this.buf = '';
    // json.dumps escapes the marker's control character, so an answer's own text never
    // looks like one. (Code in the REPL could forge one: it would only fool its own caller.)
    const { processId } = await this.client.call('process.start', { sessionId: this.sessionId, argv: ['python3', '-u', '-c', DRIVER, this.marker], pty: false });
    this.processId = processId;
    this.proc = await this.client.attach(processId, (_kind, data) => this.onOutput(data.toString('utf8')));
    void this.proc.exited.then((x) => {
      this.exited = true;
      const why = `the Python REPL exited (code ${x.code}, signal ${x.signal}); its state is lost, the next call starts a new one`;
      for (const [id, resolve] of this.waiting) {
        this.waiting.delete(id);
        resolve({ ok: false, stdout: '', stderr: why + '\n', value: null, timedOut: false });
      }
    });
  }

  private onOutput(text: string): void {
    this.buf += text;
    for (;;) {
      const at = this.buf.indexOf(this.marker);
      if (at < 0) break;
      const nl = this.buf.indexOf('\n', at);
      if (nl < 0) break;
      const line = this.buf.slice(at + this.marker.length, nl);
      this.buf = this.buf.slice(nl + 1);
      try {
        const msg = JSON.parse(line) as { id: number } & Omit<PythonResult, 'timedOut'>;
        this.waiting.get(msg.id)?.({ ...msg, timedOut: false });
        this.waiting.delete(msg.id);
      } catch {
        /* not ours: ignored */
      }
    }
  }
}
