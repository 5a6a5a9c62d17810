/**
 * The README's main command as a person meets it: scripts/start.sh serves code-server
 * with the packaged .vsix and the demo workspace; a real Chromium logs in with the
 * printed password, opens an "Airlock Sandbox" terminal, runs the demo's
 * environment-printing script and `npm install` of the malicious dependency. The
 * server's own variable and HOME file stay outside; the postinstall's POST is refused.
 * Screenshots go to test-artifacts/ (or $AIRLOCK_ARTIFACTS).
 *
 * Needs `npm run package` and scripts/code-server.sh (scripts/test.sh runs both).
 */
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as path from 'node:path';
import { openBrowser, panelFrame, runCommand as paletteCommand } from '../helpers/code-server';
import { stopDaemonIn, tempDir } from '../helpers/sandbox';

const REPO = path.resolve(__dirname, '..', '..', '..');
const ARTIFACTS = process.env.AIRLOCK_ARTIFACTS ?? path.join(REPO, 'test-artifacts');

async function until<T>(what: string, fn: () => Promise<T | undefined> | T | undefined, ms: number): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

test('README main command: code-server with the packaged extension; an Airlock Sandbox terminal keeps the host out and the malicious postinstall in', { timeout: 240_000 }, async (t) => {
  for (const f of ['airlock-linux-x64.vsix', '.test-tools/code-server/node_modules/code-server/out/node/entry.js']) {
    assert.ok(fs.existsSync(path.join(REPO, f)), `${f} is missing: run 'npm run package' and 'bash scripts/code-server.sh'`);
  }
  const root = tempDir('airlock-e2e-demo-');
  const home = path.join(root, 'home');
  const rt = path.join(root, 'run');
  fs.mkdirSync(path.join(home, '.ssh'), { recursive: true });
  fs.mkdirSync(rt, { mode: 0o700 });
  const canary = `canary-${crypto.randomBytes(10).toString('hex')}`;
  fs.writeFileSync(path.join(home, '.ssh', 'id_ed25519'), `fake-key-${canary}\n`, { mode: 0o600 });
  const demo = path.join(root, 'demo');
  // Headless Chromium has no GPU: the DOM renderer keeps the terminal's text in the page.
  fs.mkdirSync(path.join(demo, 'user-data', 'User'), { recursive: true });
  fs.writeFileSync(path.join(demo, 'user-data', 'User', 'settings.json'), JSON.stringify({ 'terminal.integrated.gpuAcceleration': 'off', 'workbench.startupEditor': 'readme', 'telemetry.telemetryLevel': 'off', 'update.mode': 'none', 'extensions.autoUpdate': false }));

  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('VSCODE_') && !k.startsWith('NODE_') && k !== 'ELECTRON_RUN_AS_NODE') env[k] = v;
  Object.assign(env, { HOME: home, XDG_RUNTIME_DIR: rt, XDG_STATE_HOME: path.join(home, '.local/state'), XDG_CONFIG_HOME: path.join(home, '.config'), XDG_DATA_HOME: path.join(home, '.local/share'), AIRLOCK_DEMO_DIR: demo, AIRLOCK_E2E_CANARY: canary, AIRLOCK_PORT: '18400' });
  const server = spawn('bash', [path.join(REPO, 'scripts', 'start.sh')], { cwd: REPO, env, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  server.stdout.on('data', (d) => (out += d));
  server.stderr.on('data', (d) => (out += d));
  let browser: Awaited<ReturnType<typeof openBrowser>> | undefined;
  t.after(async () => {
    await browser?.close().catch(() => undefined);
    try {
      process.kill(-server.pid!, 'SIGTERM');
    } catch {
      /* gone */
    }
    await stopDaemonIn(rt).catch(() => undefined);
    fs.rmSync(root, { recursive: true, force: true });
  });

  const url = await until('the URL start.sh prints', () => /(http:\/\/127\.0\.0\.1:\d+\/\?folder=\S+)/.exec(out)?.[1], 60_000).catch((e: Error) => assert.fail(`${e.message}; its output:\n${out}`));
  const password = /password: (\S+)/.exec(out)![1]!;
  assert.equal(fs.readFileSync(path.join(demo, 'password'), 'utf8'), password);
  assert.equal(fs.statSync(path.join(demo, 'password')).mode & 0o777, 0o600);
  await until('code-server to answer', async () => (await fetch(new URL('/healthz', url)).then((r) => r.ok, () => false)) || undefined, 30_000);

  browser = await openBrowser(url, { viewport: { width: 1400, height: 900 } });
  const { page } = browser;
  // code-server's login page: the printed password gets in.
  await page.fill('input[type=password]', password);
  await page.keyboard.press('Enter');
  await page.waitForSelector('.monaco-workbench', { timeout: 60_000 });
  await page.waitForTimeout(3000);
  fs.mkdirSync(ARTIFACTS, { recursive: true });

  // The person's way in: the command palette.
  const terminalText = async (): Promise<string> => (await page.locator('.terminal .xterm-rows').allInnerTexts()).join('\n');
  const runCommand = (title: string): Promise<void> => paletteCommand(page, title, () => page.screenshot({ path: path.join(ARTIFACTS, 'demo-failed.png') }).then(() => undefined));
  await runCommand('Airlock: New Sandbox Terminal');
  // VS Code's Restricted Mode asks before any terminal opens, Airlock's included (it
  // cannot tell a sandboxed one apart): a person trusts the demo folder, and asks again.
  const trust = page.locator('.monaco-dialog-box .monaco-button', { hasText: 'Trust Folder' }).first();
  if (await trust.waitFor({ state: 'visible', timeout: 15_000 }).then(() => true, () => false)) {
    await trust.click();
    // The command asked before the trust may or may not go on by itself afterwards.
    const opened = await until('a sandbox terminal', async () => (/airlock@airlock/.test(await terminalText()) ? true : undefined), 8000).catch(() => false);
    if (!opened) await runCommand('Airlock: New Sandbox Terminal');
  }
  await until('the sandbox shell\'s prompt', async () => (/airlock@airlock/.test(await terminalText()) ? true : undefined), 60_000)
    .catch(async (e: Error) => {
      await page.screenshot({ path: path.join(ARTIFACTS, 'demo-failed.png') });
      assert.fail(`${e.message}; terminal: ${await terminalText()}`);
    });
  await page.waitForTimeout(1000);
  // Type where a person would: into the visible terminal.
  await page.locator('.terminal-wrapper.active .xterm, .terminal .xterm').last().click();
  // Keys typed before the terminal has the focus go elsewhere ("v.sh: command not found").
  await until('the terminal focused', async () => ((await page.evaluate("!!document.activeElement && document.activeElement.classList.contains('xterm-helper-textarea')")) ? true : undefined), 10_000);
  await page.keyboard.type('./print-env.sh | head -40\n', { delay: 10 });
  const shown = await until('print-env.sh\'s output', async () => {
    const text = await terminalText();
    return /== \.env/.test(text) ? text : undefined;
  }, 30_000).catch(async (e: Error) => {
    await page.screenshot({ path: path.join(ARTIFACTS, 'demo-failed.png') });
    return assert.fail(`${e.message}; terminal: ${await terminalText()}`);
  });
  assert.match(shown, /HOME=\/home\/airlock/);
  assert.ok(!shown.includes(canary), 'the server\'s variable or ~/.ssh key reached the sandbox terminal');
  await page.screenshot({ path: path.join(ARTIFACTS, 'demo-print-env.png') });

  await page.keyboard.type('clear; npm install --no-audit --no-fund --foreground-scripts 2>&1 | grep evil-package\n', { delay: 10 });
  const npm = await until('the postinstall\'s attempt', async () => {
    const text = await terminalText();
    return /exfiltration (answered|failed)/.test(text) ? text : undefined;
  }, 90_000).catch(async (e: Error) => {
    await page.screenshot({ path: path.join(ARTIFACTS, 'demo-failed.png') });
    return assert.fail(`${e.message}; terminal: ${await terminalText()}`);
  });
  assert.match(npm, /collected \d+ variables and 0 files with content/, 'the postinstall found files to steal');
  assert.match(npm, /exfiltration answered 403/, 'the postinstall\'s POST was not refused by the proxy');
  assert.ok(!npm.includes(canary));
  await page.screenshot({ path: path.join(ARTIFACTS, 'demo-npm-install.png') });

  // The Airlock panel shows the session and the refused connection.
  await runCommand('Airlock: Show Panel');
  const frame = await until('the Airlock panel', () => panelFrame(page), 30_000);
  const deniedRow = await until('the denied row in the panel', async () => {
    const t = await frame.locator('.grid-row.denied').allInnerTexts().catch(() => []);
    return t.find((x) => x.includes('exfil.attacker.example')) ?? undefined;
  }, 15_000);
  assert.match(deniedRow, /denied/);
  await page.screenshot({ path: path.join(ARTIFACTS, 'panel-light.png') });
  // The same in the dark and high-contrast themes, picked the way a person does.
  const pickTheme = async (name: string, workbenchClass: string): Promise<void> => {
    await runCommand('Preferences: Color Theme');
    await page.waitForSelector('.quick-input-list .monaco-list-row[aria-label*="themes"]', { timeout: 10_000 }).catch(async (e: Error) => {
      throw new Error(`${e.message}; rows: ${JSON.stringify(await page.locator('.quick-input-list .monaco-list-row').evaluateAll((els) => els.map((x) => x.getAttribute('aria-label'))))}`);
    });
    await page.keyboard.type(name, { delay: 20 });
    await page.locator(`.quick-input-list .monaco-list-row[aria-label*="${name}"]`).first().click();
    await until(`the ${name} theme`, async () => ((await page.locator(`.monaco-workbench.${workbenchClass}`).count()) ? true : undefined), 15_000)
      .catch(async (e: Error) => {
        await page.screenshot({ path: path.join(ARTIFACTS, 'demo-failed.png') });
        throw new Error(`${e.message}; workbench classes: ${await page.locator('.monaco-workbench').first().getAttribute('class')}`);
      });
    await page.waitForTimeout(1000);
  };
  await pickTheme('Dark High Contrast', 'hc-black');
  await page.screenshot({ path: path.join(ARTIFACTS, 'panel-high-contrast.png') });
  await pickTheme('Dark 2026', 'vs-dark');
  await page.screenshot({ path: path.join(ARTIFACTS, 'panel-dark.png') });
  // Without a mouse: the connections grid takes focus, Home and End move its active row
  // (aria-activedescendant, aria-selected), as a screen reader follows them.
  assert.equal(await frame.locator('[role=grid]').getAttribute('aria-label'), 'Outbound connections');
  await frame.locator('.viewport').focus();
  await page.keyboard.press('Home');
  // The row may be drawn a frame after the scroll that Home causes; then it must come
  // with aria-selected="true".
  await until('the first row active', async () => ((await frame.locator('.viewport').getAttribute('aria-activedescendant')) === 'net-0' && (await frame.locator('#net-0').getAttribute('aria-selected', { timeout: 1000 }).catch(() => null)) === 'true' ? true : undefined), 5000);
  assert.equal(await frame.locator('.grid-row[aria-selected=true]').count(), 1, 'one selected row');
  assert.equal(await frame.locator('#net-0').getAttribute('role'), 'row');
  await page.keyboard.press('End');
  const rowCount = Number(await frame.locator('[role=grid]').getAttribute('aria-rowcount')) - 1;
  await until('the last row active', async () => ((await frame.locator('.viewport').getAttribute('aria-activedescendant')) === `net-${rowCount - 1}` ? true : undefined), 5000);

  // One allowed and one denied connection appear in the panel at once; "Allow 15 min"
  // on the denied one (a person's click), and the same request goes through.
  const web = http.createServer((_req, res) => res.end('hello from the host\n'));
  await new Promise<void>((r) => web.listen(0, '127.0.0.1', r));
  t.after(() => web.close());
  const port = (web.address() as { port: number }).port;
  const shell = async (line: string): Promise<void> => {
    await runCommand('Terminal: Focus Terminal');
    await page.waitForTimeout(300);
    await page.keyboard.type(`${line}\n`, { delay: 5 });
  };
  const rowsText = async (): Promise<string[]> => frame.locator('.grid-row').allInnerTexts().catch(() => []);
  await shell(`clear; curl -s -o /dev/null -w "first=%{http_code}\\n" http://127.0.0.1:${port}/; curl -s --max-time 15 -o /dev/null -w "registry=%{http_code}\\n" "$(npm config get registry)" || true`);
  // Both rows (the registry's allowed by default, the loopback server's refused) within
  // a second of the terminal showing both answers.
  await until('both answers in the terminal', async () => (/registry=\d+/.test(await terminalText()) ? true : undefined), 30_000);
  const answeredAt = Date.now();
  const bothRows = async (): Promise<boolean> => {
    const rows = await rowsText();
    return rows.some((x) => x.includes(`127.0.0.1:${port}`) && /denied/.test(x)) && rows.some((x) => !x.includes('127.0.0.1') && /allowed/.test(x));
  };
  while (!(await bothRows()) && Date.now() - answeredAt < 10_000) await page.waitForTimeout(50);
  const rowsAfter = Date.now() - answeredAt;
  console.log(`both rows in the panel ${rowsAfter} ms after the terminal showed the answers`);
  assert.ok(await bothRows(), `the panel lacks the allowed or the denied row: ${JSON.stringify((await rowsText()).slice(-4))}`);
  assert.ok(rowsAfter <= 1000, `the rows took ${rowsAfter} ms to appear`);
  assert.match(await terminalText(), /first=403/);
  const denied = frame.locator('.grid-row.denied', { hasText: `127.0.0.1:${port}` }).first();
  await denied.locator('vscode-button', { hasText: 'Allow 15 min' }).click();
  await until('the grant notice', async () => ((await frame.locator('.notice').innerText().catch(() => '')).includes(`127.0.0.1:${port}`) ? true : undefined), 10_000);
  await shell(`curl -s -w "\\nsecond=%{http_code}\\n" http://127.0.0.1:${port}/`);
  await until('the allowed retry', async () => (/second=200/.test(await terminalText()) ? true : undefined), 15_000);
  assert.match(await terminalText(), /hello from the host/);
  await until('the allowed row in the panel', async () => ((await rowsText()).some((x) => x.includes(`127.0.0.1:${port}`) && /allowed/.test(x)) ? true : undefined), 10_000);
  await page.screenshot({ path: path.join(ARTIFACTS, 'panel-allowed.png') });

  // Grant a secret from the panel (its value typed into VS Code's password box, kept in
  // SecretStorage): its name and countdown show, never the value; then revoke it.
  const secretValue = `demo-${crypto.randomBytes(8).toString('hex')}`;
  await frame.locator('article.card vscode-button', { hasText: 'Grant secret' }).first().click();
  // Each step: its box shown AND focused before typing (typed early, under load, the
  // first keys were lost: "nv" matches no mode, Enter closed the pick and the flow ended),
  // the text in the box before Enter, then the box gone or emptied for the next step.
  const box = page.locator('.quick-input-widget input:visible');
  const answer = async (text: string): Promise<void> => {
    await page.waitForSelector('.quick-input-widget input', { state: 'visible', timeout: 10_000 });
    await until('the quick input focused', async () => ((await page.evaluate("!!document.activeElement && !!document.activeElement.closest('.quick-input-widget')")) ? true : undefined), 10_000);
    await page.keyboard.type(text, { delay: 10 });
    await until(`"${text.startsWith('demo-') ? 'the value' : text}" in the quick input`, async () => ((await box.inputValue().catch(() => '')) === text ? true : undefined), 5_000);
    await page.keyboard.press('Enter');
    await until('the quick input to take the answer', async () => ((await box.count()) === 0 || (await box.inputValue().catch(() => '')) !== text ? true : undefined), 10_000);
  };
  await answer('DEMO_TOKEN');
  await answer(secretValue);
  await answer('env');
  await answer('30');
  const secretRow = await until('the secret in the panel', async () => (await frame.locator('table.secrets tr', { hasText: 'DEMO_TOKEN' }).allInnerTexts().catch(() => []))[0], 15_000);
  assert.match(secretRow, /env/);
  assert.match(secretRow, /(29|30) min/, `a countdown: ${secretRow}`);
  assert.ok(!(await frame.locator('body').innerText()).includes(secretValue), 'the panel shows a secret value');
  await page.screenshot({ path: path.join(ARTIFACTS, 'panel-secret.png') });
  await frame.locator('table.secrets vscode-button', { hasText: 'Revoke' }).first().click();
  await until('the secret to leave the panel', async () => ((await frame.locator('table.secrets').count()) === 0 ? true : undefined), 10_000);

  // The Sessions tree in Airlock's own activity-bar container.
  await runCommand('Airlock: Focus on Sessions View');
  await until('the session in the tree', async () => ((await page.locator('.pane-body .monaco-list-row', { hasText: 'vscode-terminal' }).count()) ? true : undefined), 15_000);
  await page.screenshot({ path: path.join(ARTIFACTS, 'tree-dark.png') });

  // Kill from the panel: that session's card leaves it. (A second sandbox terminal may
  // exist: the command asked again above when the first took long to open after the trust.)
  const card = frame.locator('article.card').first();
  const label = (await card.getAttribute('aria-label'))!;
  const before = await frame.locator('article.card').count();
  await card.locator('vscode-button', { hasText: 'Kill' }).click();
  await until('the session to leave the panel', async () => ((await frame.locator(`article.card[aria-label="${label}"]`).count()) === 0 && (await frame.locator('article.card').count()) === before - 1 ? true : undefined), 15_000)
    .catch(async (e: Error) => {
      await page.screenshot({ path: path.join(ARTIFACTS, 'panel-kill-failed.png') });
      assert.fail(`${e.message}; the panel's notice: "${await frame.locator('.notice').innerText().catch(() => '?')}"; sessions: "${await frame.locator('.sessions').innerText().catch(() => '?')}"`);
    });
  if (before === 1) {
    assert.equal(await frame.locator('.sessions > p.empty', { hasText: 'No live sessions' }).count(), 1, 'the sessions list says none is left');
    // Its denied rows stay, without "Allow 15 min": there is no session left to allow in.
    await until('the rows to drop "Allow 15 min"', async () => ((await frame.locator('.grid-row vscode-button', { hasText: 'Allow' }).count()) === 0 ? true : undefined), 5_000);
  }
  assert.match(await frame.locator('.summary').innerText(), new RegExp(`^${before - 1} session`));
  await page.screenshot({ path: path.join(ARTIFACTS, 'panel-killed.png') });
});
