/**
 * The warm pool hands out a spare sandbox prepared in advance only when the workspace
 * is still the one it was built for. Real bubblewrap spares; the pool's own take().
 */
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { BwrapDriver } from '../../runtime/drivers/bwrap/driver';
import { WarmPool } from '../../runtime/daemon/pool';
import { DEFAULT_READ_ONLY, resolvePolicy } from '../../runtime/policy/policy';
import type { PreparedSandbox } from '../../runtime/sessions';
import { tmp, until } from '../helpers/integration';

type Spares = { spares: Map<string, { ready: PreparedSandbox | null }> };

async function readySpare(pool: WarmPool, ws: string): Promise<void> {
  const spares = (pool as unknown as Spares).spares;
  await until(() => [...spares.keys()].some((k) => k.startsWith(ws + '\0') && spares.get(k)!.ready !== null), 20_000, `a spare for ${ws}`);
}

/** Asserts no spare was handed out; one that was is discarded first (its sandbox would keep the test alive). */
async function refused(got: PreparedSandbox | null, message: string): Promise<void> {
  if (got) await got.discard();
  assert.equal(got, null, message);
}

test('a spare is used for an unchanged workspace, and discarded when the directory was replaced or a .env appeared', async (t) => {
  const pool = new WarmPool(new BwrapDriver(process.env), true);
  t.after(() => pool.clear());
  const ws = path.join(tmp(t, 'airlock-pool-'), 'ws');
  fs.mkdirSync(ws);
  // No read-only paths, so no placeholders: their inode check (placeholdersIntact) would
  // also notice a replaced directory, but not when a live session's placeholders were
  // there first (the spare sees them as present); this isolates the directory check.
  const policy = resolvePolicy({ filesystem: { readOnly: DEFAULT_READ_ONLY.map((p) => `!${p}`) } });

  // Control: unchanged, the spare is taken (so the refusals below are the checks at work).
  pool.refill(ws, policy);
  await readySpare(pool, ws);
  const same = pool.take(ws, policy);
  assert.ok(same, 'an unchanged workspace gets its spare');
  await same.discard();

  // The directory removed and made again at the same path: another workspace. The spare
  // still has the old directory bound (a session there would find its cwd deleted).
  pool.refill(ws, policy);
  await readySpare(pool, ws);
  fs.rmSync(ws, { recursive: true, force: true });
  fs.mkdirSync(ws);
  await refused(pool.take(ws, policy), 'a spare of the replaced directory was handed out');

  // A .env created after the spare was built would not be masked in it.
  pool.refill(ws, policy);
  await readySpare(pool, ws);
  fs.writeFileSync(path.join(ws, '.env'), 'TOKEN=fake\n');
  await refused(pool.take(ws, policy), 'a spare built before .env existed was handed out');
});
