/**
 * The panel's figure, end to end (issue 8): 1 000 connections a second for 10 s from a
 * real sandbox, through the real proxy, daemon and extension into the panel's webview
 * in code-server. The panel must count every connection the audit log records: nothing
 * dropped on the way. The frame figures are printed here and compared with idle in
 * bench/panel-vscode.mjs (no timing threshold in a test).
 */
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { assertCodeServerInstalled } from '../helpers/code-server';
import { runPanelLoad } from '../helpers/panel-load';
import { REPO } from '../helpers/sandbox';

const ARTIFACTS = process.env.AIRLOCK_ARTIFACTS ?? path.join(REPO, 'test-artifacts');

test('1 000 connections/s for 10 s from a sandbox: the panel counts every one the audit log records', { timeout: 240_000 }, async () => {
  assertCodeServerInstalled();
  fs.mkdirSync(ARTIFACTS, { recursive: true });
  const r = await runPanelLoad({ rate: 1000, seconds: 10, screenshot: path.join(ARTIFACTS, 'panel-load.png'), log: (l) => console.log(l) });
  console.log(JSON.stringify({ flood: r.flood, served: r.served, rows: r.rowsText, audited: r.audited, deniedBy: r.deniedBy, catchUpMs: r.catchUpMs, panelP95: [r.panel.idle.p95, r.panel.fed.p95], longTasks: r.panel.fed.longTasks.length }));
  assert.equal(r.flood.sent, 10_000);
  // Every attempt answered: 200 from the allowed server, 403 from the proxy for the rest.
  // Every fifth host has no rule; an allowed request may also meet the policy's cap on
  // connections open at once (network.maxConnections, 512) when a saturated machine keeps
  // many in flight: refused as limit:connections, audited as such. No other refusal.
  const st = JSON.stringify({ statuses: r.flood.statuses, deniedBy: r.deniedBy });
  assert.deepEqual(Object.keys(r.flood.statuses).filter((k) => k !== '200' && k !== '403'), [], st);
  assert.equal(r.flood.statuses['200']! + r.flood.statuses['403']!, 10_000, st);
  assert.equal(r.deniedBy['default-deny'], 2000, st);
  assert.deepEqual(Object.keys(r.deniedBy).filter((k) => k !== 'default-deny' && k !== 'limit:connections'), [], st);
  assert.equal(r.flood.statuses['403'], 2000 + (r.deniedBy['limit:connections'] ?? 0), st);
  assert.equal(r.served, r.flood.statuses['200'], st);
  assert.equal(r.audited, 10_000, 'one net.connect audit record per attempt');
  assert.equal(r.rows, r.audited, `the panel shows "${r.rowsText}" for ${r.audited} audited connections`);
});
