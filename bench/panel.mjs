#!/usr/bin/env node
// The Airlock panel's webview (dist/webview/main.js, as VS Code loads it) in headless
// Chromium, fed 1 000 net.connect events a second for 10 s the way the extension sends
// them (a batch every 100 ms). Measured in the same run: the page's frame gaps while
// idle (the baseline) and while fed, the longest main-thread task, and whether the
// table's count equals the events sent (nothing dropped).
//   target: the panel stays responsive (p95 frame gap under load within 2x idle, no
//   task over 100 ms) and counts every event.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const RATE = Number(process.env.BENCH_RATE ?? 1000);
const SECONDS = Number(process.env.BENCH_SECONDS ?? 10);
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'airlock-bench-panel-'));
for (const f of ['main.js', 'panel.css', 'codicon.css', 'codicon.ttf']) fs.copyFileSync(path.join(root, 'dist', 'webview', f), path.join(dir, f));
fs.writeFileSync(path.join(dir, 'index.html'), `<!DOCTYPE html><html><head><meta charset="utf-8">
<link rel="stylesheet" href="codicon.css" id="vscode-codicon-stylesheet"><link rel="stylesheet" href="panel.css"></head>
<body><main id="app"></main><script src="main.js"></script></body></html>`);

const home = fs.mkdtempSync(path.join(os.tmpdir(), 'airlock-bench-chromium-'));
const browser = await chromium.launch({ executablePath: '/usr/bin/chromium', headless: true, args: ['--headless', '--no-sandbox', '--disable-gpu'], env: { ...process.env, HOME: home } });
try {
  const page = await browser.newPage({ viewport: { width: 1400, height: 900 } });
  // What VS Code gives a webview: acquireVsCodeApi.
  await page.addInitScript(() => {
    window.__sent = [];
    window.acquireVsCodeApi = () => ({ postMessage: (m) => window.__sent.push(m), getState: () => undefined, setState: () => {} });
    // Frame gaps and long tasks, measured inside the page.
    window.__gaps = [];
    let last = performance.now();
    const tick = (t) => { window.__gaps.push(t - last); last = t; requestAnimationFrame(tick); };
    requestAnimationFrame(tick);
    window.__long = [];
    new PerformanceObserver((l) => { for (const e of l.getEntries()) window.__long.push(e.duration); }).observe({ type: 'longtask', buffered: true });
  });
  await page.goto(`file://${path.join(dir, 'index.html')}`);
  await page.waitForFunction(() => window.__sent.some((m) => m.type === 'ready'));
  const T0 = Date.now();
  await page.evaluate((T0) => window.postMessage({ type: 'snapshot', snapshot: { sessions: [{ sessionId: 'bench0000000000a', label: 'bench', workspace: '/w', driver: 'bwrap', state: 'running', startedAt: new Date(T0).toISOString(), lifetimeLeft: 3600, processes: [], limits: [], placeholders: [] }], secrets: {}, requests: [], net: [], takenAt: T0 } }, '*'), T0);

  const measure = async (ms) => {
    await page.evaluate(() => { window.__gaps.length = 0; window.__long.length = 0; });
    await new Promise((r) => setTimeout(r, ms));
    return page.evaluate(() => ({ gaps: window.__gaps.slice(1), long: window.__long.slice() }));
  };
  const pct = (xs, p) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(xs.length * p))] ?? 0;

  const idle = await measure(2000);
  // The feed: a batch every 100 ms, as extension/panel.ts sends them.
  const perBatch = RATE / 10;
  let sent = 0;
  const feed = (async () => {
    // Paced to the wall clock: batch i leaves at start + i * 100 ms, so the rate holds.
    const start = Date.now();
    for (let b = 0; b < SECONDS * 10; b++) {
      const wait = start + b * 100 - Date.now();
      if (wait > 0) await new Promise((r) => setTimeout(r, wait));
      const from = sent;
      await page.evaluate(({ from, n }) => {
        const events = [];
        for (let i = 0; i < n; i++) {
          const c = from + i + 1;
          events.push({ type: 'net.connect', sessionId: 'bench0000000000a', ts: new Date().toISOString(), conn: c, host: `h${c % 97}.example`, port: 443, protocol: 'connect', decision: c % 5 ? 'allow' : 'deny', rule: c % 5 ? `h${c % 97}.example` : 'default-deny', process: 'curl' });
        }
        window.postMessage({ type: 'events', events }, '*');
      }, { from, n: perBatch });
      sent += perBatch;
    }
  })();
  const loaded = await measure(SECONDS * 1000);
  await feed;
  await page.waitForTimeout(500);
  const count = await page.locator('.net-count').innerText();
  const shown = Number(/^(\d+) of (\d+)/.exec(count)?.[2] ?? -1);

  const idleP95 = pct(idle.gaps, 0.95);
  const loadP95 = pct(loaded.gaps, 0.95);
  const longest = Math.max(0, ...loaded.long);
  console.log(`panel webview, ${RATE} events/s for ${SECONDS} s (${sent} events)`);
  console.log(`  frame gap p95: idle ${idleP95.toFixed(1)} ms, fed ${loadP95.toFixed(1)} ms: ratio ${(loadP95 / idleP95).toFixed(2)}x (target <= 2x)`);
  console.log(`  frame gap max while fed: ${Math.max(...loaded.gaps).toFixed(1)} ms; long tasks: ${loaded.long.length}, longest ${longest.toFixed(0)} ms (target none over 100 ms)`);
  console.log(`  rows counted by the panel: ${shown} of ${sent} sent (${count})`);
  if (shown !== sent) process.exitCode = 1;
} finally {
  await browser.close();
  fs.rmSync(dir, { recursive: true, force: true });
  fs.rmSync(home, { recursive: true, force: true });
}
