#!/usr/bin/env node
// `exec` of `echo hi` through `airlock mcp` over stdio (the MCP SDK's own client, as an
// agent's harness runs it), against the same `exec` sent straight to the daemon in the
// same run: the difference is what the MCP layer costs.        target: p50 <= 10 ms
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { now } from './common.mjs';

const require = createRequire(import.meta.url);
const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const rt = require(path.join(root, 'dist', 'runtime.js'));
const { Client } = require('@modelcontextprotocol/sdk/client/index.js');
const { StdioClientTransport } = require('@modelcontextprotocol/sdk/client/stdio.js');

const N = Number(process.env.BENCH_ROUNDS ?? 200);
const pct = (xs, p) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(xs.length * p))];
const tmp = (p) => fs.mkdtempSync(path.join(os.tmpdir(), p));
const runDir = tmp('airlock-bench-rt-');
const stateDir = tmp('airlock-bench-state-');
const ws = tmp('airlock-bench-ws-');
const socket = path.join(runDir, 'airlock', 'runtime.sock');
const env = { PATH: process.env.PATH, HOME: process.env.HOME, LANG: 'C.UTF-8', XDG_RUNTIME_DIR: runDir, XDG_STATE_HOME: stateDir };
const { pid } = await rt.startDaemon(socket, ['--idle-exit', '0'], env);
const direct = await rt.RuntimeClient.connect({ socket });
const mcp = new Client({ name: 'airlock-bench', version: '1' });
await mcp.connect(new StdioClientTransport({ command: process.execPath, args: [path.join(root, 'dist', 'airlock.js'), 'mcp', '--workspace', ws], env, stderr: 'ignore' }));

try {
  const { sessionId } = await direct.call('session.create', { workspace: ws });
  const viaMcp = [], viaDaemon = [];
  for (let i = 0; i < N + 10; i++) {
    let t = now();
    const r = await mcp.callTool({ name: 'exec', arguments: { command: ['echo', 'hi'] } });
    const a = now() - t;
    if (r.content[0].text !== '[exit code 0]\nhi\n') throw new Error(`unexpected: ${JSON.stringify(r)}`);
    t = now();
    const x = await direct.call('exec', { sessionId, argv: ['echo', 'hi'] });
    const b = now() - t;
    if (x.stdout !== 'hi\n') throw new Error('direct exec failed');
    if (i >= 10) { viaMcp.push(a); viaDaemon.push(b); }
  }
  const m50 = pct(viaMcp, 0.5);
  const d50 = pct(viaDaemon, 0.5);
  console.log(`\nAirlock MCP benchmark (${N} rounds, interleaved; ${os.cpus().length} cores, Node ${process.versions.node})\n`);
  console.log(`exec of \`echo hi\`, round trip`);
  console.log(`  straight to the daemon (RuntimeClient)   p50 ${d50.toFixed(2)} ms  p90 ${pct(viaDaemon, 0.9).toFixed(2)} ms`);
  console.log(`  through airlock mcp over stdio (SDK)     p50 ${m50.toFixed(2)} ms  p90 ${pct(viaMcp, 0.9).toFixed(2)} ms   ratio ${(m50 / d50).toFixed(2)}x`);
  console.log(`  target p50 <= 10 ms                      ${m50 <= 10 ? 'MET' : 'NOT MET'}`);
} finally {
  await mcp.close();
  direct.close();
  process.kill(pid, 'SIGTERM');
  await new Promise((r) => setTimeout(r, 300));
  for (const d of [runDir, stateDir, ws]) fs.rmSync(d, { recursive: true, force: true });
}
