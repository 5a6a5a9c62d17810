/**
 * The panel's figure end to end: a real VS Code (code-server) with the extension, its
 * Airlock panel open in headless Chromium, and a real sandbox (`airlock run`, on the same
 * daemon) opening RATE connections a second for SECONDS through the egress proxy: most
 * to a loopback server its rule allows, every fifth to a host no rule allows. Every
 * connection travels the product's own path: proxy → audit + net.* event → the daemon's
 * subscription → the extension's batches → the webview's table.
 *
 * Measured in the same run: frame gaps inside the panel's frame and the workbench's,
 * idle (the baseline) and while fed; long main-thread tasks; and at the end the panel's
 * connection count beside the audit log's net.connect records (nothing dropped).
 * Used by test/e2e/panel-load.test.ts (asserts the counts) and bench/panel-vscode.mjs.
 */
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as path from 'node:path';
import type { Frame, Page } from 'playwright-core';
import { CodeServer, openBrowser, panelFrame, runCommand, startCodeServer, TestBrowser } from './code-server';
import { RuntimeClient } from '../../runtime/client/client';
import { sleep } from './integration';
import { AIRLOCK_BIN, REPO, stopDaemonIn, tempDir } from './sandbox';

export interface FrameFigures {
  /** Gaps between animation frames, in ms. */
  p95: number;
  max: number;
  /** Durations of long tasks (over 50 ms), in ms. */
  longTasks: number[];
}

export interface PanelLoadResult {
  rate: number;
  seconds: number;
  /** What the sandboxed flood printed: connections opened and the answers' status codes. */
  flood: { sent: number; statuses: Record<string, number> };
  /** Requests the loopback server received (the allowed ones). */
  served: number;
  /** The panel's own count of connections, and its text. */
  rows: number;
  rowsText: string;
  /** net.connect records in the audit log. */
  audited: number;
  /** The denied ones among them, by the rule that refused them. */
  deniedBy: Record<string, number>;
  /** How long after the flood ended the panel's count reached the audit log's. */
  catchUpMs: number;
  panel: { idle: FrameFigures; fed: FrameFigures };
  workbench: { idle: FrameFigures; fed: FrameFigures };
  /**
   * A person's click on "Denied only" until the table shows the filtered count, and the
   * click back until it shows all, three times each (ms, as seen from outside the page):
   * while the flood runs and once it is over (the same rows, no load).
   */
  toggleMs: { fed: number[]; idle: number[] };
  /** The same clicks seen from inside the panel: the click event's time to the first frame showing the result. */
  toggleInPageMs: { fed: number[]; idle: number[] };
  /**
   * Every half second from the flood's start: net.connect records in the audit log, the
   * events a plain client subscribed to the daemon has received, and the panel's count:
   * where the three part, that stage is behind.
   */
  series: { ms: number; audited: number; daemon: number; panel: number }[];
  /** Where the screenshot of the panel after the flood went, when asked for. */
  screenshot?: string;
}

const percentile = (xs: number[], p: number): number => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(xs.length * p))] ?? 0;

// Run inside the page (Node's types have no DOM, so these are source text).
const RECORD = `(() => {
  if (window.__airlockGaps) return;
  window.__airlockGaps = [];
  window.__airlockLong = [];
  let last = performance.now();
  const tick = (t) => { window.__airlockGaps.push(t - last); last = t; requestAnimationFrame(tick); };
  requestAnimationFrame(tick);
  new PerformanceObserver((l) => { for (const e of l.getEntries()) window.__airlockLong.push(e.duration); }).observe({ type: 'longtask' });
})()`;
const RESET = '(() => { window.__airlockGaps.length = 0; window.__airlockLong.length = 0; })()';
const READ = '({ gaps: window.__airlockGaps.slice(1), long: window.__airlockLong.slice() })';

/** Starts recording frame gaps and long tasks inside TARGET (a page or a frame). */
async function record(target: Page | Frame): Promise<void> {
  await target.evaluate(RECORD);
}

async function reset(target: Page | Frame): Promise<void> {
  await target.evaluate(RESET);
}

async function figures(target: Page | Frame): Promise<FrameFigures> {
  const { gaps, long } = (await target.evaluate(READ)) as { gaps: number[]; long: number[] };
  return { p95: percentile(gaps, 0.95), max: Math.max(0, ...gaps), longTasks: long };
}

/**
 * Counts net.connect records in the audit log, reading only what was appended since the
 * last call (the log grows by megabytes during a flood; parsing it whole twice a second
 * took a core from the loopback server the flood talks to).
 */
/** Counts the net.connect records as the log grows; DENIED_BY tallies the refusals by rule. */
function auditCounter(stateHome: string, deniedBy: Record<string, number>): () => number {
  const file = path.join(stateHome, 'airlock', 'audit.jsonl');
  let offset = 0;
  let rest = '';
  let n = 0;
  return () => {
    if (!fs.existsSync(file)) return n;
    const fd = fs.openSync(file, 'r');
    try {
      const size = fs.fstatSync(fd).size;
      if (size > offset) {
        const buf = Buffer.alloc(size - offset);
        fs.readSync(fd, buf, 0, buf.length, offset);
        offset = size;
        const lines = (rest + buf.toString('utf8')).split('\n');
        rest = lines.pop()!;
        for (const line of lines) {
          if (!line.includes('"type":"net.connect"')) continue;
          n++;
          const r = JSON.parse(line) as { decision?: string; rule?: string };
          if (r.decision === 'deny') deniedBy[r.rule ?? '?'] = (deniedBy[r.rule ?? '?'] ?? 0) + 1;
        }
      }
    } finally {
      fs.closeSync(fd);
    }
    return n;
  };
}

function panelCount(text: string): number {
  return Number(/ of (\d+) connection/.exec(text)?.[1] ?? -1);
}

/**
 * Inside the panel: from the click's own timestamp (when the browser took the input)
 * to the start of the first frame whose table shows the filter's result. Seen from the
 * page, so it leaves out what the test driver adds (its click travels through the
 * DevTools protocol from a process that competes for the same two cores).
 */
const ARM_TOGGLE = `((on) => {
  const box = [...document.querySelectorAll('vscode-checkbox')].find((b) => /Denied only/.test(b.getAttribute('label') || b.textContent));
  const count = document.querySelector('.net-count');
  window.__airlockToggle = new Promise((resolve) => {
    let clickAt = -1;
    box.addEventListener('click', (e) => { clickAt = e.timeStamp; }, { once: true, capture: true });
    const done = () => {
      const m = /^(\\d+) of (\\d+)/.exec(count.textContent || '');
      const n = Number(m ? m[1] : -1), total = Number(m ? m[2] : -1);
      if (clickAt < 0 || !(on ? n * 2 <= total : n === total)) return false;
      obs.disconnect();
      requestAnimationFrame((t) => resolve(t - clickAt));
      return true;
    };
    const obs = new MutationObserver(done);
    obs.observe(count, { childList: true, characterData: true, subtree: true });
    box.addEventListener('click', () => setTimeout(done, 0), { once: true });
  });
})`;

/**
 * "Denied only" on, until at most half the rows show; off, until all show; PAIRS times.
 * Each click's time in ms as the test sees it (click sent to the count read) and as the
 * page sees it.
 */
async function toggleDenied(panel: Frame, pairs: number): Promise<{ outside: number[]; inside: number[] }> {
  const shown = async (): Promise<[number, number]> => {
    const m = /^(\d+) of (\d+)/.exec(await panel.locator('.net-count').innerText());
    return [Number(m?.[1] ?? -1), Number(m?.[2] ?? -1)];
  };
  const box = panel.locator('vscode-checkbox', { hasText: 'Denied only' });
  const outside: number[] = [];
  const inside: number[] = [];
  for (const on of Array.from({ length: pairs * 2 }, (_, i) => i % 2 === 0)) {
    await panel.evaluate(`${ARM_TOGGLE}(${on})`);
    const t0 = Date.now();
    await box.click();
    for (;;) {
      const [n, total] = await shown();
      if (on ? n * 2 <= total : n === total) break;
      if (Date.now() - t0 > 30_000) throw new Error(`the Denied only filter did not apply within 30 s (${n} of ${total})`);
      await sleep(20);
    }
    outside.push(Date.now() - t0);
    inside.push(Math.round((await panel.evaluate('window.__airlockToggle')) as number));
  }
  return { outside, inside };
}

export async function runPanelLoad(opts: { rate: number; seconds: number; screenshot?: string; log?: (line: string) => void; /** sample where the events are (adds a daemon client and polling: for diagnosis) */ series?: boolean; /** write a CPU profile of the browser's page (workbench and panel) during the flood here, as renderer.cpuprofile */ profileDir?: string }): Promise<PanelLoadResult> {
  const log = opts.log ?? (() => undefined);
  const workspace = tempDir('airlock-panel-load-');
  fs.copyFileSync(path.join(REPO, 'test', 'fixtures', 'net-flood.mjs'), path.join(workspace, 'net-flood.mjs'));
  let served = 0;
  const web = http.createServer((_req, res) => {
    served++;
    res.end('ok\n');
  });
  await new Promise<void>((r) => web.listen(0, '127.0.0.1', r));
  const target = `127.0.0.1:${(web.address() as { port: number }).port}`;
  let server: CodeServer | undefined;
  let browser: TestBrowser | undefined;
  try {
    server = await startCodeServer({ workspace, settings: { 'workbench.panel.defaultLocation': 'bottom' } });
    browser = await openBrowser(server.testUrl({ extensionDevelopmentPath: REPO }), { viewport: { width: 1400, height: 900 } });
    const { page } = browser;
    await page.waitForSelector('.monaco-workbench', { timeout: 60_000 });
    await runCommand(page, 'Airlock: Show Panel');
    let frame: Frame | undefined;
    for (const end = Date.now() + 30_000; !frame && Date.now() < end; await sleep(250)) frame = await panelFrame(page);
    if (!frame) throw new Error('the Airlock panel never drew');
    const panel = frame;
    for (const end = Date.now() + 30_000; !/runtime connected/.test(await panel.locator('.conn').innerText()); await sleep(250)) {
      if (Date.now() > end) throw new Error(`the panel never connected to the runtime: ${await panel.locator('.conn').innerText()}`);
    }
    await record(panel);
    await record(page);
    await sleep(2000);
    await reset(panel);
    await reset(page);
    await sleep(2000);
    const idle = { panel: await figures(panel), workbench: await figures(page) };
    await reset(panel);
    await reset(page);

    // A plain client of the same daemon, beside the extension: what the daemon sends.
    const direct = opts.series ? await RuntimeClient.connect({ socket: path.join(server.dirs.XDG_RUNTIME_DIR, 'airlock', 'runtime.sock') }) : undefined;
    let fromDaemon = 0;
    direct?.on('event', (e) => { if (e.type === 'net.connect') fromDaemon++; });
    await direct?.call('events.subscribe', { filter: ['net.*'] });
    const series: PanelLoadResult['series'] = [];
    const deniedBy: Record<string, number> = {};
    const audited = auditCounter(server.dirs.XDG_STATE_HOME, deniedBy);
    const floodStart = Date.now();
    let sampling = !!opts.series;
    const sampler = (async () => {
      while (sampling) {
        const at = Date.now() - floodStart;
        series.push({ ms: at, audited: audited(), daemon: fromDaemon, panel: panelCount(await panel.locator('.net-count').innerText().catch(() => '')) });
        await sleep(Math.max(0, 500 * (series.length) - (Date.now() - floodStart)));
      }
    })();
    const cdp = opts.profileDir ? await page.context().newCDPSession(page) : undefined;
    await cdp?.send('Profiler.enable');
    await cdp?.send('Profiler.start');
    // The renderer's own work (style, layout, paint) is "(program)" in a CPU profile: a
    // timeline trace says which.
    const trace: { name: string; dur?: number; ph: string }[] = [];
    cdp?.on('Tracing.dataCollected', (e) => trace.push(...(e.value as unknown as typeof trace)));
    const traced = cdp ? new Promise<void>((r) => cdp.once('Tracing.tracingComplete', () => r())) : undefined;
    await cdp?.send('Tracing.start', { categories: 'devtools.timeline', transferMode: 'ReportEvents' });
    log(`flooding: ${opts.rate} connections/s for ${opts.seconds} s from a sandbox, every fifth denied`);
    const cli = spawn(process.execPath, [AIRLOCK_BIN, 'run', '--workspace', workspace, '--allow', target, '--', 'node', 'net-flood.mjs', String(opts.rate), String(opts.seconds), target, '5'], {
      cwd: workspace,
      env: { PATH: process.env.PATH, LANG: 'C.UTF-8', ...server.dirs },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    let err = '';
    cli.stdout.on('data', (d) => (out += d));
    cli.stderr.on('data', (d) => (err += d));
    const exited = new Promise<number | null>((r) => cli.on('close', r));
    await sleep((opts.seconds * 1000) * 0.3);
    const toggleFed = await toggleDenied(panel, 3);
    await sleep(Math.max(0, (opts.seconds * 1000) * 0.7 - toggleFed.outside.reduce((a, b) => a + b, 0)));
    const fed = { panel: await figures(panel), workbench: await figures(page) };
    if (cdp) {
      await cdp.send('Tracing.end');
      await traced;
      const byName = new Map<string, number>();
      for (const e of trace) if (e.ph === 'X' && e.dur) byName.set(e.name, (byName.get(e.name) ?? 0) + e.dur / 1000);
      log(`timeline during the flood (ms, top-level and nested alike): ${[...byName].sort((a, b) => b[1] - a[1]).slice(0, 12).map(([n, ms]) => `${n} ${ms.toFixed(0)}`).join(', ')}`);
      const { profile } = await cdp.send('Profiler.stop');
      fs.mkdirSync(opts.profileDir!, { recursive: true });
      fs.writeFileSync(path.join(opts.profileDir!, 'renderer.cpuprofile'), JSON.stringify(profile));
      log(`CPU profile of the page during the flood: ${path.join(opts.profileDir!, 'renderer.cpuprofile')}`);
    }
    const code = await Promise.race([exited, sleep(60_000).then(() => 'timeout' as const)]);
    if (code !== 0) throw new Error(`airlock run ended with ${code}; stdout: ${out}; stderr: ${err}`);
    const flood = JSON.parse(out.trim().split('\n').pop()!) as PanelLoadResult['flood'];

    const floodEnd = Date.now();
    let auditedNow = audited();
    let rowsText = await panel.locator('.net-count').innerText();
    for (const end = Date.now() + 30_000; panelCount(rowsText) !== auditedNow && Date.now() < end; await sleep(100)) {
      rowsText = await panel.locator('.net-count').innerText();
      auditedNow = audited();
    }
    const catchUpMs = Date.now() - floodEnd;
    sampling = false;
    await sampler;
    direct?.close();
    await sleep(1000);
    const toggleIdle = await toggleDenied(panel, 3);
    if (opts.screenshot) await page.screenshot({ path: opts.screenshot });
    return {
      rate: opts.rate,
      seconds: opts.seconds,
      flood,
      served,
      rows: panelCount(rowsText),
      rowsText,
      audited: auditedNow,
      deniedBy,
      catchUpMs,
      panel: { idle: idle.panel, fed: fed.panel },
      workbench: { idle: idle.workbench, fed: fed.workbench },
      toggleMs: { fed: toggleFed.outside, idle: toggleIdle.outside },
      toggleInPageMs: { fed: toggleFed.inside, idle: toggleIdle.inside },
      series,
      screenshot: opts.screenshot,
    };
  } finally {
    await browser?.close().catch(() => undefined);
    if (server) await stopDaemonIn(server.dirs.XDG_RUNTIME_DIR).catch(() => undefined);
    await server?.stop().catch(() => undefined);
    web.close();
    fs.rmSync(workspace, { recursive: true, force: true });
  }
}
