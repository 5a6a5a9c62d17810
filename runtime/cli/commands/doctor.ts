/** `airlock doctor`: what works here, what does not, and the exact fix. */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { DriverCheck } from '../../drivers/driver';
import { resolvePolicy } from '../../policy/policy';
import { Session } from '../../sessions';
import { stateDir } from '../../util/paths';
import { parseFlags } from '../args';
import { defaultDriver, openAudit } from '../context';
import type { Io } from '../io';

export const DOCTOR_USAGE = `usage: airlock doctor

Checks that sandboxes can run here (bubblewrap, user namespaces, the agent, seccomp),
which resource limits are really enforced, and starts one test sandbox. Prints the
exact command that fixes each problem. Exits 1 when sandboxes cannot run.
`;

function nodeCheck(): DriverCheck {
  const [maj, min] = process.versions.node.split('.').map(Number);
  const ok = maj > 20 || (maj === 20 && min >= 19);
  return { name: 'node', ok, required: true, detail: `Node ${process.versions.node} (${process.execPath})`, fix: 'install Node 20.19 or newer' };
}

function stateCheck(): DriverCheck {
  const dir = stateDir();
  try {
    fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
    fs.accessSync(dir, fs.constants.W_OK);
    return { name: 'audit log', ok: true, required: true, detail: `${path.join(dir, 'audit.jsonl')}` };
  } catch (e) {
    return { name: 'audit log', ok: false, required: true, detail: `${dir} is not writable: ${(e as Error).message}`, fix: `mkdir -p ${dir} && chmod 700 ${dir}, or set XDG_STATE_HOME` };
  }
}

async function liveCheck(): Promise<DriverCheck> {
  const ws = fs.mkdtempSync(path.join(os.tmpdir(), 'airlock-doctor-'));
  const audit = openAudit();
  const t0 = process.hrtime.bigint();
  try {
    const s = await Session.create({ workspace: ws, policy: resolvePolicy(), driver: defaultDriver(), audit });
    const p = await s.spawn({ argv: ['true'] });
    const exit = await p.exited;
    await s.end('exit');
    const ms = Number(process.hrtime.bigint() - t0) / 1e6;
    const ok = exit.code === 0;
    const limits = s.limits.map((l) => `${l.name} ${l.value}: ${l.enforcedBy === 'none' ? 'NOT ENFORCED' : l.enforcedBy}`).join('; ');
    return { name: 'test sandbox', ok, required: true, detail: ok ? `started, ran 'true', ended in ${ms.toFixed(1)} ms — limits: ${limits}` : `'true' exited ${exit.code}/${exit.signal}` };
  } catch (e) {
    return { name: 'test sandbox', ok: false, required: true, detail: (e as Error).message };
  } finally {
    audit.close();
    fs.rmSync(ws, { recursive: true, force: true });
  }
}

export async function doctorCommand(argv: string[], io: Io): Promise<number> {
  const p = parseFlags(argv, {}, 'doctor');
  if (p.help) {
    io.out(DOCTOR_USAGE);
    return 0;
  }
  const checks = [nodeCheck(), stateCheck(), ...(await defaultDriver().check())];
  if (checks.every((c) => c.ok || !c.required)) checks.push(await liveCheck());
  for (const c of checks) {
    io.out(`${c.ok ? 'ok  ' : c.required ? 'FAIL' : 'warn'} ${c.name}: ${c.detail}\n`);
    if (!c.ok && c.fix) io.out(`     fix: ${c.fix}\n`);
  }
  const failed = checks.filter((c) => !c.ok && c.required);
  io.out(failed.length ? `\nsandboxes cannot run here: ${failed.map((c) => c.name).join(', ')}\n` : '\nAirlock can run sandboxes here.\n');
  return failed.length ? 1 : 0;
}
