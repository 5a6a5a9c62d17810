#!/usr/bin/env node
// Builds dist/: the static airlock-agent (C) and the esbuild bundle of the CLI/runtime.
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as esbuild from 'esbuild';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const dist = path.join(root, 'dist');
fs.mkdirSync(dist, { recursive: true });

function buildAgent() {
  const src = ['agent.c', 'egress.c'].map((f) => path.join(root, 'runtime/agent', f));
  const out = path.join(dist, 'airlock-agent');
  const cc = process.env.CC || 'cc';
  const flags = ['-O2', '-Wall', '-Wextra', '-Werror', '-D_FORTIFY_SOURCE=2', '-o', out + '.tmp', ...src];
  // Static, so the same binary runs in any sandbox or guest whatever its libc.
  let r = spawnSync(cc, ['-static', ...flags], { encoding: 'utf8' });
  if (r.status !== 0) {
    console.warn(`static link failed (${(r.stderr || r.error?.message || '').trim().split('\n').pop()}); linking dynamically`);
    r = spawnSync(cc, flags, { encoding: 'utf8' });
  }
  if (r.status !== 0) {
    console.error(r.stderr || r.error?.message);
    // No compiler at all, or one that rejected the code (the errors are printed above).
    console.error(r.error?.code === 'ENOENT'
      ? `cannot build airlock-agent: no C compiler (${cc}); install one with 'apt-get install gcc libc6-dev'`
      : `cannot build airlock-agent: ${cc} failed on runtime/agent/*.c (its errors are above)`);
    process.exit(1);
  }
  fs.renameSync(out + '.tmp', out);
  fs.chmodSync(out, 0o755);
}

buildAgent();
/** One esbuild bundle: Node 20 CommonJS with linked source maps unless OPTIONS say otherwise. */
const bundle = (entryPoints, options = {}) =>
  esbuild.build({ entryPoints, outdir: dist, bundle: true, platform: 'node', target: 'node20', format: 'cjs', sourcemap: 'linked', logLevel: 'warning', ...options });

// The VS Code extension: one file, `vscode` provided by the extension host.
await bundle({ extension: path.join(root, 'extension/extension.ts') }, { external: ['vscode'] });
await bundle({ airlock: path.join(root, 'runtime/cli/main.ts'), runtime: path.join(root, 'runtime/index.ts') });
// The Airlock panel's webview: one script (with @vscode-elements/elements), its
// stylesheet and the codicon font, all served from dist/webview (localResourceRoots).
{
  const out = path.join(dist, 'webview');
  fs.mkdirSync(out, { recursive: true });
  await bundle({ main: path.join(root, 'webview/main.ts') }, { outdir: out, platform: 'browser', target: 'es2022', format: 'iife', minify: true, sourcemap: false });
  fs.copyFileSync(path.join(root, 'webview/panel.css'), path.join(out, 'panel.css'));
  for (const f of ['codicon.css', 'codicon.ttf']) fs.copyFileSync(path.join(root, 'node_modules/@vscode/codicons/dist', f), path.join(out, f));
}
// The schema VS Code validates a workspace's own .vscode/airlock.json with: the policy
// schema, with the fields such a file may not use (runtime/policy/load.ts) marked, so
// the editor says at once that they are ignored there.
{
  const schema = JSON.parse(fs.readFileSync(path.join(root, 'runtime/policy/airlock.schema.json'), 'utf8'));
  const why = 'Ignored in a workspace\'s own .vscode/airlock.json, which comes with the code and may only tighten the sandbox: put it in the airlock.policy setting (or a --policy file) instead.';
  const mark = (obj, key, extra = '') => {
    if (!obj?.properties?.[key]) throw new Error(`the policy schema has no ${key}: update scripts/build.mjs`);
    obj.properties[key].deprecationMessage = why + extra;
  };
  const props = schema.properties;
  mark(props.env, 'pass');
  mark(props.filesystem, 'hostReadOnly');
  mark(props.network, 'allow');
  mark(props.network, 'allowAll');
  schema.description = `${schema.description ?? ''} In a workspace's own .vscode/airlock.json, exceptions ("!pattern") to masks and read-only paths, and limits above the defaults, are ignored too.`.trim();
  fs.writeFileSync(path.join(dist, 'workspace-policy.schema.json'), JSON.stringify(schema, null, 2) + '\n');
}
console.log('built dist/airlock.js, dist/runtime.js, dist/extension.js, dist/webview/, dist/airlock-agent and dist/workspace-policy.schema.json');
