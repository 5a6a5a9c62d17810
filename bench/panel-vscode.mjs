#!/usr/bin/env node
// The panel's figure end to end, inside a real VS Code: code-server with the extension,
// its Airlock panel in headless Chromium, and a sandbox (`airlock run`) opening 1 000
// connections a second for 10 s through the proxy (every fifth denied). Each travels
// the product's own path: proxy -> audit + net.* event -> daemon -> extension -> webview.
// Measured in the same run, idle (the baseline) against fed: frame gaps in the panel and
// the workbench; a click on "Denied only" until the table shows it; and the panel's
// count against the audit log's records once the flood is over (nothing dropped).
// Needs `npx tsc -p tsconfig.json` (test/helpers) and scripts/code-server.sh.
//   target: the panel's count equals the audit log's; a click answers within 2x idle.
//   BENCH_RATE (default 1000), BENCH_SECONDS (default 10); BENCH_SERIES=1 also samples,
//   twice a second, the audit log, a plain daemon client and the panel (it slows the run);
//   BENCH_PROFILE=DIR writes a CPU profile of the browser page (workbench and panel)
//   during the flood to DIR/renderer.cpuprofile (open it in Chromium's DevTools).
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const { runPanelLoad } = require('../out/test/helpers/panel-load.js');
const rate = Number(process.env.BENCH_RATE ?? 1000);
const seconds = Number(process.env.BENCH_SECONDS ?? 10);
const r = await runPanelLoad({ rate, seconds, series: !!process.env.BENCH_SERIES, profileDir: process.env.BENCH_PROFILE, log: (l) => console.log(`  ${l}`) });
const f = (x) => x.toFixed(0);
const med = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
console.log(`panel in VS Code, ${rate} connections/s for ${seconds} s from a sandbox (${r.flood.sent} sent: ${JSON.stringify(r.flood.statuses)})`);
console.log(`  rows in the panel ${r.rows}, net.connect records in the audit log ${r.audited}: ${r.rows === r.audited ? 'equal' : 'NOT EQUAL'}; the panel caught up ${(r.catchUpMs / 1000).toFixed(1)} s after the flood's last second`);
for (const [name, x] of [['panel', r.panel], ['workbench', r.workbench]]) {
  console.log(`  ${name} frame gap p95: idle ${f(x.idle.p95)} ms, fed ${f(x.fed.p95)} ms (${(x.fed.p95 / x.idle.p95).toFixed(2)}x); max fed ${f(x.fed.max)} ms; long tasks fed ${x.fed.longTasks.length} (longest ${f(Math.max(0, ...x.fed.longTasks))} ms)`);
}
const ratio = (x) => (med(x.fed) / Math.max(1, med(x.idle))).toFixed(2);
console.log(`  "Denied only" on/off until shown, in the panel (click event to the frame showing it): idle ${r.toggleInPageMs.idle.join('/')} ms, fed ${r.toggleInPageMs.fed.join('/')} ms: ratio ${ratio(r.toggleInPageMs)}x (target <= 2x)`);
console.log(`  the same clicks from the test driver (click sent, count polled every 20 ms): idle ${r.toggleMs.idle.join('/')} ms, fed ${r.toggleMs.fed.join('/')} ms: ratio ${ratio(r.toggleMs)}x`);
if (r.series.length) console.log('  where the events were (s: audit log / received by a plain daemon client / panel):');
if (r.series.length) console.log('   ' + r.series.filter((_, i) => i % 2 === 1).map((x) => `${(x.ms / 1000).toFixed(0)}s ${x.audited}/${x.daemon}/${x.panel}`).join('  '));
if (r.rows !== r.audited) process.exitCode = 1;
