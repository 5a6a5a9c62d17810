/**
 * docs/protocol.md is the wire protocol's reference for people writing a client in
 * another language; these tests fail when it and the code disagree. Values are read
 * from runtime/protocol at run time. What TypeScript erases (the FrameKind const enum,
 * the EventType union, the Api interface) is read from the source with the TypeScript
 * parser, and cross-checked against the compiled code where the code still has it
 * (inlined FrameKind values, decodeFrame).
 *
 * The doc's shape the tests rely on: `## Methods` with one "### `name`" per method, a
 * params table whose rows start "| `param` | type | required|optional | limits |", an
 * "Errors:" paragraph; `## Types`, `## Notifications` (the `event` section holds the
 * event-type table), `## Errors` (the code table), `## Binary frames` / `### Frame kinds`,
 * constants written `NAME = value`, and the `## Worked example` transcript.
 */
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as ts from 'typescript';
import {
  ACK_BATCH, ACK_DELAY_MS, decodeFrame, defaultSocketPath, ErrorCode, FrameKind, INPUT_WINDOW, isMethod, MAX_FRAME_PAYLOAD, MAX_MESSAGE_BYTES, METHODS, NOTIFICATIONS, OUTPUT_WINDOW,
  PROTOCOL_VERSION, RPC_PATH, validateParams,
} from '../../runtime/protocol';
import { REPLAY_BYTES } from '../../runtime/daemon/hub';

// ---------------------------------------------------------------------------------------
// Where things are

function findRoot(from: string): string {
  for (let dir = from; dir !== path.dirname(dir); dir = path.dirname(dir)) {
    if (fs.existsSync(path.join(dir, 'package.json')) && fs.existsSync(path.join(dir, 'runtime', 'protocol', 'frames.ts'))) return dir;
  }
  throw new Error(`no repository root (package.json + runtime/protocol/frames.ts) above ${from}`);
}
const ROOT = findRoot(__dirname);
const DOC_PATH = path.join(ROOT, 'docs', 'protocol.md');
const DOC = fs.readFileSync(DOC_PATH, 'utf8');

// ---------------------------------------------------------------------------------------
// The doc, as sections and tables

const RAW = DOC.split('\n');
/** The same lines with fenced code blocks blanked: headings and tables are read outside code only. */
const PROSE = (() => {
  let fenced = false;
  return RAW.map((l) => {
    if (/^\s*```/.test(l)) {
      fenced = !fenced;
      return '';
    }
    return fenced ? '' : l;
  });
})();

interface Section {
  title: string;
  level: number;
  /** Line of the heading. */
  start: number;
  /** First line after the section. */
  end: number;
}

function headingAt(i: number): { level: number; title: string } | null {
  const m = /^(#{1,6})\s+(.+?)\s*$/.exec(PROSE[i]);
  return m ? { level: m[1].length, title: m[2] } : null;
}

/** The subsections of LEVEL inside PARENT (the whole doc when omitted). */
function subsections(level: number, parent?: Section): Section[] {
  const from = parent ? parent.start + 1 : 0;
  const to = parent ? parent.end : RAW.length;
  const out: Section[] = [];
  for (let i = from; i < to; i++) {
    const h = headingAt(i);
    if (!h || h.level !== level) continue;
    let end = i + 1;
    while (end < to && !(headingAt(end) && headingAt(end)!.level <= level)) end++;
    out.push({ title: h.title, level, start: i, end });
  }
  return out;
}

/** The one section titled TITLE at LEVEL (inside PARENT); fails the test naming what is missing. */
function section(level: number, title: string, parent?: Section): Section {
  const found = subsections(level, parent).filter((s) => s.title === title);
  const where = parent ? ` under "${'#'.repeat(parent.level)} ${parent.title}"` : '';
  assert.equal(found.length, 1, `docs/protocol.md should have exactly one "${'#'.repeat(level)} ${title}" heading${where}, has ${found.length}`);
  return found[0];
}

const rawText = (s: Section): string => RAW.slice(s.start, s.end).join('\n');
const proseLines = (s: Section): string[] => PROSE.slice(s.start + 1, s.end);

/** `name` → name, else null. */
function codeName(cell: string): string | null {
  const m = /^`([^`]+)`$/.exec(cell.trim());
  return m ? m[1] : null;
}

interface Row {
  name: string;
  cells: string[];
  line: string;
}

/** Table rows of S whose first cell is a `code` name (header and separator rows are skipped). */
function rows(s: Section): Row[] {
  const out: Row[] = [];
  for (const line of proseLines(s)) {
    if (!line.trim().startsWith('|')) continue;
    const cells = line.trim().replace(/^\|/, '').replace(/\|$/, '').split(/(?<!\\)\|/).map((c) => c.trim());
    const name = codeName(cells[0]);
    if (name !== null) out.push({ name, cells, line });
  }
  return out;
}

const squash = (s: string): string => s.replace(/^\s*>\s?/gm, '').replace(/\s+/g, ' ').trim();

function sameSet(actual: string[], expected: string[], what: string): void {
  const dupes = actual.filter((x, i) => actual.indexOf(x) !== i);
  assert.deepEqual(dupes, [], `${what}: listed more than once: ${dupes.join(', ')}`);
  const missing = expected.filter((x) => !actual.includes(x));
  const extra = actual.filter((x) => !expected.includes(x));
  assert.deepEqual({ missing, extra }, { missing: [], extra: [] }, `${what}: docs/protocol.md misses ${JSON.stringify(missing)} and has ${JSON.stringify(extra)} that the code does not`);
}

// ---------------------------------------------------------------------------------------
// The source, for what TypeScript erases

function source(rel: string): ts.SourceFile {
  return ts.createSourceFile(rel, fs.readFileSync(path.join(ROOT, rel), 'utf8'), ts.ScriptTarget.ES2022, true);
}
const METHODS_TS = source('runtime/protocol/methods.ts');
const FRAMES_TS = source('runtime/protocol/frames.ts');

const propName = (n: ts.PropertyName, sf: ts.SourceFile): string => (ts.isStringLiteral(n) || ts.isIdentifier(n) ? n.text : n.getText(sf));

/** Interfaces declared in methods.ts, by name. */
const INTERFACES = new Map(METHODS_TS.statements.filter(ts.isInterfaceDeclaration).map((d) => [d.name.text, d]));

interface Field {
  name: string;
  optional: boolean;
}

function membersOf(members: ts.NodeArray<ts.TypeElement>, sf: ts.SourceFile = METHODS_TS): Field[] {
  return members.filter(ts.isPropertySignature).map((m) => ({ name: propName(m.name, sf), optional: m.questionToken !== undefined }));
}

/** The fields of an object type node: a literal, a local interface, or Record<string, never> (none). */
function fieldsOf(t: ts.TypeNode): Field[] {
  if (ts.isTypeLiteralNode(t)) return membersOf(t.members);
  if (ts.isTypeReferenceNode(t) && ts.isIdentifier(t.typeName)) {
    if (t.typeName.text === 'Record') return [];
    const i = INTERFACES.get(t.typeName.text);
    if (i) return membersOf(i.members);
  }
  throw new Error(`protocol-doc test: cannot read the fields of type ${t.getText(METHODS_TS)} in methods.ts`);
}

/** Local interfaces NODE refers to, transitively. */
function localRefs(node: ts.Node, into = new Set<string>()): Set<string> {
  const visit = (n: ts.Node): void => {
    if (ts.isTypeReferenceNode(n) && ts.isIdentifier(n.typeName) && INTERFACES.has(n.typeName.text) && !into.has(n.typeName.text)) {
      into.add(n.typeName.text);
      localRefs(INTERFACES.get(n.typeName.text)!, into);
    }
    ts.forEachChild(n, visit);
  };
  visit(node);
  return into;
}

/** The Api interface: method → [params type, result type]. */
const API = (() => {
  const api = INTERFACES.get('Api');
  assert.ok(api, 'runtime/protocol/methods.ts should declare interface Api');
  const out = new Map<string, { params: ts.TypeNode; result: ts.TypeNode }>();
  for (const m of api.members) {
    if (!ts.isPropertySignature(m) || !m.type || !ts.isTupleTypeNode(m.type) || m.type.elements.length !== 2) {
      throw new Error(`protocol-doc test: Api member ${m.getText(METHODS_TS)} is not [params, result]`);
    }
    const [params, result] = m.type.elements as unknown as [ts.TypeNode, ts.TypeNode];
    out.set(propName(m.name!, METHODS_TS), { params, result });
  }
  return out;
})();

/** The string literals of `type EventType = 'a' | 'b' | …`. */
const EVENT_TYPES = (() => {
  const alias = METHODS_TS.statements.filter(ts.isTypeAliasDeclaration).find((d) => d.name.text === 'EventType');
  assert.ok(alias, 'runtime/protocol/methods.ts should declare type EventType');
  const parts = ts.isUnionTypeNode(alias.type) ? alias.type.types : [alias.type];
  return parts.map((p) => {
    if (ts.isLiteralTypeNode(p) && ts.isStringLiteral(p.literal)) return p.literal.text;
    throw new Error(`protocol-doc test: EventType member ${p.getText(METHODS_TS)} is not a string literal`);
  });
})();

interface Kind {
  name: string;
  value: number;
  /** "daemon → client" or "client → daemon", from the member's comment. */
  direction: string | null;
}

/** FrameKind's members, values and directions (a const enum: gone from the compiled code). */
const FRAME_KINDS: Kind[] = (() => {
  const e = FRAMES_TS.statements.filter(ts.isEnumDeclaration).find((d) => d.name.text === 'FrameKind');
  assert.ok(e, 'runtime/protocol/frames.ts should declare enum FrameKind');
  let next = 0;
  return e.members.map((m) => {
    let value = next;
    if (m.initializer) {
      assert.ok(ts.isNumericLiteral(m.initializer), `FrameKind.${m.name.getText(FRAMES_TS)} should have a numeric literal value`);
      value = Number(m.initializer.text);
    }
    next = value + 1;
    const comments = (ts.getLeadingCommentRanges(FRAMES_TS.text, m.getFullStart()) ?? []).map((r) => FRAMES_TS.text.slice(r.pos, r.end)).join(' ');
    const dir = /\b(daemon|client) → (daemon|client)\b/.exec(comments);
    return { name: m.name.getText(FRAMES_TS), value, direction: dir ? dir[0] : null };
  });
})();

const METHOD_NAMES = Object.keys(METHODS) as (keyof typeof METHODS)[];
type Schema = { type?: string; properties?: Record<string, Record<string, unknown>>; required?: string[] };
const schemaOf = (m: keyof typeof METHODS): Schema => METHODS[m].params as Schema;
const methodsSection = (): Section => section(2, 'Methods');
const methodSection = (m: string): Section => section(3, '`' + m + '`', methodsSection());

// ---------------------------------------------------------------------------------------
// Methods

test('every protocol method is documented in docs/protocol.md under its own heading, and no heading names a method that does not exist', () => {
  const names = subsections(3, methodsSection()).map((s) => codeName(s.title) ?? s.title);
  sameSet(names, METHOD_NAMES, 'method headings ("### `name`" under "## Methods") vs METHODS');
});

test("each method's section quotes its precondition, the doc string in METHODS", () => {
  for (const m of METHOD_NAMES) {
    assert.ok(squash(rawText(methodSection(m))).includes(squash(METHODS[m].doc)), `the "### \`${m}\`" section should quote its doc string from METHODS verbatim:\n> ${METHODS[m].doc}`);
  }
});

test("every param of each method's schema has a row in its section, with its type and marked required or optional, and no other param does", () => {
  for (const m of METHOD_NAMES) {
    const s = methodSection(m);
    const schema = schemaOf(m);
    const props = schema.properties ?? {};
    const params = rows(s);
    sameSet(params.map((r) => r.name), Object.keys(props), `params of ${m}`);
    if (Object.keys(props).length === 0) assert.match(rawText(s), /Params: none/, `${m} takes no params: its section should say "Params: none"`);
    for (const r of params) {
      const p = props[r.name];
      const want = (schema.required ?? []).includes(r.name) ? 'required' : 'optional';
      assert.equal(r.cells[2], want, `${m}: param ${r.name} should be marked ${want} (third column)`);
      assert.ok(typeof p.type === 'string' && r.cells[1].includes(p.type), `${m}: param ${r.name} has schema type ${String(p.type)}; its row says "${r.cells[1]}"`);
    }
  }
});

const LIMIT_KEYWORDS = ['minLength', 'maxLength', 'minimum', 'maximum', 'exclusiveMinimum', 'exclusiveMaximum', 'minItems', 'maxItems', 'minProperties', 'maxProperties'];

/** Every numeric limit and pattern in a param's schema, nested ones (items, names, values) included. */
function limitsOf(schema: unknown, out: { numbers: number[]; patterns: string[] } = { numbers: [], patterns: [] }): { numbers: number[]; patterns: string[] } {
  if (schema === null || typeof schema !== 'object') return out;
  for (const [k, v] of Object.entries(schema as Record<string, unknown>)) {
    if (LIMIT_KEYWORDS.includes(k) && typeof v === 'number') out.numbers.push(v);
    else if (k === 'pattern' && typeof v === 'string') out.patterns.push(v);
    else if (typeof v === 'object') limitsOf(v, out);
  }
  return out;
}

test("every limit of each param's schema (lengths, ranges, counts, patterns) is written in its row", () => {
  for (const m of METHOD_NAMES) {
    const props = schemaOf(m).properties ?? {};
    for (const r of rows(methodSection(m))) {
      const { numbers, patterns } = limitsOf(props[r.name]);
      for (const n of numbers) assert.match(r.line, new RegExp(`(^|[^0-9])${n}($|[^0-9])`), `${m}: the row of ${r.name} should state its limit ${n}`);
      for (const p of patterns) assert.ok(r.line.includes('`' + p + '`'), `${m}: the row of ${r.name} should state its pattern \`${p}\``);
    }
  }
});

test('the Api interface and the JSON schemas name the same params, with the same optionality', () => {
  sameSet([...API.keys()], METHOD_NAMES, 'methods of the Api interface vs METHODS');
  for (const m of METHOD_NAMES) {
    const schema = schemaOf(m);
    const fields = fieldsOf(API.get(m)!.params);
    sameSet(fields.map((f) => f.name), Object.keys(schema.properties ?? {}), `Api['${m}'] params vs its JSON schema`);
    for (const f of fields) assert.equal(f.optional, !(schema.required ?? []).includes(f.name), `${m}: param ${f.name} is ${f.optional ? 'optional' : 'required'} in Api but not in the schema`);
  }
});

/** The fields of the TypeScript type literal in the ```ts block that follows the section's "Result" line, or null without one. */
function resultBlock(s: Section): Field[] | null {
  const lines = RAW.slice(s.start, s.end);
  const at = lines.findIndex((l) => l.startsWith('Result'));
  if (at < 0) return null;
  let open = at + 1;
  while (open < lines.length && lines[open].trim() === '') open++;
  if (!/^```/.test(lines[open] ?? '')) return null;
  const close = lines.findIndex((l, i) => i > open && /^```/.test(l));
  const sf = ts.createSourceFile('result.ts', `type R = ${lines.slice(open + 1, close).join('\n')};`, ts.ScriptTarget.ES2022, true);
  const alias = sf.statements[0];
  assert.ok(alias && ts.isTypeAliasDeclaration(alias) && ts.isTypeLiteralNode(alias.type), `the Result block of "${s.title}" should be a type literal: { field: type; … }`);
  return membersOf(alias.type.members, sf);
}

test("each method's Result block names exactly the result fields the Api interface gives it", () => {
  for (const m of METHOD_NAMES) {
    const s = methodSection(m);
    const text = rawText(s);
    assert.match(text, /^Result/m, `the "### \`${m}\`" section should have a "Result" paragraph`);
    const result = API.get(m)!.result;
    const isRef = ts.isTypeReferenceNode(result) && ts.isIdentifier(result.typeName) && INTERFACES.has(result.typeName.text);
    if (isRef) assert.ok(text.includes('`' + (result.typeName as ts.Identifier).text + '`'), `${m} returns a ${(result.typeName as ts.Identifier).text}: its section should say so`);
    const shown = resultBlock(s);
    if (shown === null) {
      assert.ok(isRef, `${m}: its section should show its result as a \`\`\`ts block after "Result:"`);
      continue;
    }
    const want = fieldsOf(result);
    sameSet(shown.map((f) => f.name), want.map((f) => f.name), `result fields of ${m}`);
    for (const f of shown) assert.equal(f.optional, want.find((w) => w.name === f.name)!.optional, `${m}: result field ${f.name} optionality`);
  }
});

test('every result type the methods return (SessionInfo, ProcessInfo, ExecResult, …) is documented field by field in the Types section', () => {
  const types = section(2, 'Types');
  const referenced = new Set<string>();
  for (const { result } of API.values()) localRefs(result, referenced);
  assert.ok(referenced.size > 0, 'the Api results should refer to some interface of methods.ts');
  for (const name of referenced) {
    const fields = membersOf(INTERFACES.get(name)!.members).map((f) => f.name);
    sameSet(rows(section(3, '`' + name + '`', types)).map((r) => r.name), fields, `fields of ${name}`);
  }
});

test("each method's section lists the errors it returns, naming only real error codes, and every code its precondition names", () => {
  const codes = Object.keys(ErrorCode);
  for (const m of METHOD_NAMES) {
    const lines = proseLines(methodSection(m));
    const at = lines.findIndex((l) => l.startsWith('Errors:'));
    assert.ok(at >= 0, `the "### \`${m}\`" section should have an "Errors:" paragraph`);
    let para = '';
    for (let i = at; i < lines.length && lines[i].trim() !== ''; i++) para += lines[i] + '\n';
    const named = [...para.matchAll(/`([A-Z][A-Za-z]+)`/g)].map((x) => x[1]);
    for (const n of named) assert.ok(codes.includes(n), `${m}: its errors name \`${n}\`, which is not an ErrorCode`);
    for (const n of codes.filter((c) => new RegExp(`\\b${c}\\b`).test(METHODS[m].doc))) {
      assert.ok(named.includes(n), `${m}: its doc string names ${n}; its "Errors:" paragraph should list it`);
    }
  }
});

// ---------------------------------------------------------------------------------------
// Notifications and events

test('every notification in NOTIFICATIONS is documented under its own heading, with its doc string and fields', () => {
  const notes = section(2, 'Notifications');
  sameSet(subsections(3, notes).map((s) => codeName(s.title) ?? s.title), Object.keys(NOTIFICATIONS), 'notification headings vs NOTIFICATIONS');
  for (const [name, doc] of Object.entries(NOTIFICATIONS)) {
    const s = section(3, '`' + name + '`', notes);
    assert.ok(squash(rawText(s)).includes(squash(doc)), `the "### \`${name}\`" notification should quote its doc string from NOTIFICATIONS:\n> ${doc}`);
    const braces = /\{([^}]*)\}/.exec(doc);
    if (braces) {
      const fields = braces[1].split(',').map((f) => f.trim().replace(/\?$/, '')).filter(Boolean);
      sameSet(rows(s).map((r) => r.name), fields, `fields of the ${name} notification`);
    }
  }
  const event = rawText(section(3, '`event`', notes));
  for (const f of membersOf(INTERFACES.get('RuntimeEvent')!.members)) assert.ok(event.includes('`' + f.name + '`'), `the event notification should name the RuntimeEvent field ${f.name}`);
});

test('every event type of EventType has a row in the event notification table, and no other type does', () => {
  const event = section(3, '`event`', section(2, 'Notifications'));
  sameSet(rows(event).map((r) => r.name), EVENT_TYPES, 'event types');
});

// ---------------------------------------------------------------------------------------
// Errors

test('the error code table lists every ErrorCode with its number, and nothing else', () => {
  const table = rows(section(2, 'Errors')).filter((r) => /^-?\d+$/.test(r.cells[1] ?? ''));
  sameSet(table.map((r) => r.name), Object.keys(ErrorCode), 'error codes');
  for (const r of table) {
    assert.equal(Number(r.cells[1]), ErrorCode[r.name as keyof typeof ErrorCode], `error ${r.name}: the doc says ${r.cells[1]}`);
    assert.ok((r.cells[2] ?? '').length > 0, `error ${r.name} should say what it means`);
  }
});

// ---------------------------------------------------------------------------------------
// Binary frames

test('the FrameKind values read from frames.ts are the ones the code compiles to', () => {
  // Guards the source parsing the next tests rely on: a const enum's values are inlined here.
  const compiled: Record<string, number> = {
    Stdout: FrameKind.Stdout, Input: FrameKind.Input, Ack: FrameKind.Ack, Stderr: FrameKind.Stderr, ReplayEnd: FrameKind.ReplayEnd, InputAck: FrameKind.InputAck,
  };
  for (const [name, value] of Object.entries(compiled)) {
    assert.equal(FRAME_KINDS.find((k) => k.name === name)?.value, value, `FrameKind.${name} parsed from frames.ts`);
  }
  for (const k of FRAME_KINDS) assert.ok(k.direction, `FrameKind.${k.name}'s comment in frames.ts should say its direction ("daemon → client" or "client → daemon")`);
});

test('the frame-kind table lists every FrameKind with its value and direction, and nothing else', () => {
  const table = rows(section(3, 'Frame kinds', section(2, 'Binary frames')));
  sameSet(table.map((r) => r.name), FRAME_KINDS.map((k) => k.name), 'frame kinds');
  for (const r of table) {
    const k = FRAME_KINDS.find((x) => x.name === r.name)!;
    assert.equal(Number(r.cells[1]), k.value, `frame kind ${k.name}: value`);
    assert.equal(r.cells[2], k.direction, `frame kind ${k.name}: direction`);
    assert.ok((r.cells[3] ?? '').length > 0, `frame kind ${k.name} should describe its payload`);
  }
});

test('the frame decoder accepts exactly the documented frame kinds', () => {
  const documented = rows(section(3, 'Frame kinds', section(2, 'Binary frames'))).map((r) => Number(r.cells[1]));
  for (let v = 0; v < 256; v++) {
    const f = decodeFrame(Buffer.from([v, 7, 0, 0, 0]));
    assert.equal(f !== null, documented.includes(v), `decodeFrame ${f ? 'accepts' : 'refuses'} kind ${v}`);
    if (f) assert.equal(f.channel, 7);
  }
});

test('the documented constants have the values of the code', () => {
  const constants: Record<string, number | string> = { OUTPUT_WINDOW, ACK_BATCH, ACK_DELAY_MS, INPUT_WINDOW, MAX_FRAME_PAYLOAD, MAX_MESSAGE_BYTES, PROTOCOL_VERSION, RPC_PATH, REPLAY_BYTES };
  for (const [name, value] of Object.entries(constants)) {
    const found = [...DOC.matchAll(new RegExp(`\\b${name}\\s*=\\s*("[^"]*"|\\d+)`, 'g'))].map((x) => x[1]);
    const want = typeof value === 'string' ? JSON.stringify(value) : String(value);
    assert.ok(found.length > 0, `docs/protocol.md should state \`${name} = ${want}\``);
    for (const f of found) assert.equal(f, want, `docs/protocol.md says ${name} = ${f}`);
  }
});

test('the documented default socket path is the one clients and the daemon use', () => {
  assert.equal(defaultSocketPath({ XDG_RUNTIME_DIR: '/run/user/1000' }), '/run/user/1000/airlock/runtime.sock');
  assert.ok(DOC.includes('`$XDG_RUNTIME_DIR/airlock/runtime.sock`'), 'the doc should give the default socket path');
  const uid = typeof process.getuid === 'function' ? process.getuid() : 0;
  assert.equal(path.basename(path.dirname(defaultSocketPath({}))), `airlock-${uid}`);
  assert.ok(DOC.includes('airlock-<uid>/runtime.sock'), 'the doc should give the fallback socket path');
});

// ---------------------------------------------------------------------------------------
// The worked example

test('every message of the worked example is well-formed: requests valid, results complete, binary frames decodable and sent the right way', () => {
  const lines = RAW.slice(section(2, 'Worked example').start, section(2, 'Worked example').end).filter((l) => /^[→←] /.test(l));
  assert.ok(lines.length > 0, 'the worked example should have → / ← lines');
  const pending = new Map<number | string, string>();
  const seen = new Set<string>();
  for (const line of lines) {
    const toDaemon = line.startsWith('→');
    const body = line.slice(2);
    if (body.startsWith('bin ')) {
      const [hex, note = ''] = body.slice(4).split(' · ');
      const bytes = Buffer.from(hex.trim().split(/\s+/).map((h) => parseInt(h, 16)));
      const f = decodeFrame(bytes);
      assert.ok(f, `not a frame: ${line}`);
      const kind = FRAME_KINDS.find((k) => k.value === f.kind)!;
      assert.equal(kind.direction, toDaemon ? 'client → daemon' : 'daemon → client', `${kind.name} sent the wrong way: ${line}`);
      assert.ok(note.startsWith(`${kind.name}, channel ${f.channel}`), `the note should name the frame's kind and channel ("${kind.name}, channel ${f.channel}"): ${line}`);
      if (kind.name === 'Ack' || kind.name === 'InputAck') assert.equal(f.payload.length, 4, `${kind.name} carries a u32: ${line}`);
      seen.add(kind.name);
      continue;
    }
    const msg = JSON.parse(body) as { jsonrpc: string; id?: number | string; method?: string; params?: unknown; result?: Record<string, unknown> };
    assert.equal(msg.jsonrpc, '2.0', line);
    if (msg.method !== undefined && msg.id !== undefined) {
      assert.ok(toDaemon, `only clients send requests: ${line}`);
      assert.ok(isMethod(msg.method), `unknown method in the example: ${msg.method}`);
      validateParams(msg.method, msg.params);
      pending.set(msg.id, msg.method);
      seen.add(msg.method);
    } else if (msg.method !== undefined) {
      assert.ok(!toDaemon && msg.method in NOTIFICATIONS, `unknown notification in the example: ${line}`);
      if (msg.method === 'event') assert.ok(EVENT_TYPES.includes((msg.params as { type: string }).type), `unknown event type: ${line}`);
      seen.add(msg.method);
    } else {
      const method = pending.get(msg.id!);
      assert.ok(method, `a response to no request: ${line}`);
      const result = API.get(method)!.result;
      for (const f of fieldsOf(result).filter((x) => !x.optional)) assert.ok(f.name in msg.result!, `the ${method} response lacks ${f.name}: ${line}`);
    }
  }
  for (const must of ['runtime.info', 'session.create', 'exec', 'process.start', 'process.attach', 'Stdout', 'ReplayEnd', 'Input', 'InputAck', 'Ack', 'process.exit']) {
    assert.ok(seen.has(must), `the worked example should show ${must}`);
  }
});
