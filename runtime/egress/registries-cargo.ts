/**
 * Cargo's registries, read from its config files (cargo has no stable command that
 * prints its configuration): `[source.NAME] registry/replace-with`, `[registries.NAME]
 * index`, `[registry] index/default`, and the CARGO_REGISTRIES_<NAME>_INDEX variables
 * that override them. Values come back raw; registries.ts strips credentials.
 */
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import type { ToolFindings } from './registries';

/**
 * Discovery adds nothing for cargo's built-in default registry: it is in no config
 * file, cargo has no stable command that prints it, and Airlock hard-codes no registry
 * host. Callers can show this when a session uses cargo and nothing was found for it.
 */
export const CARGO_DEFAULT_REGISTRY_NOTE =
  "cargo's built-in default registry is not allowed automatically: Airlock allows only " +
  'registries it finds in configuration and hard-codes none. Allow its index and download ' +
  'hosts with --allow, or point cargo at a mirror with [source] replacement in .cargo/config.toml.';

/** One `key = "string"` found in a TOML file, with its full dotted path. */
export interface TomlString {
  path: string[];
  value: string;
}

/** Only these keys are kept, so tokens (`[registries.x] token`) are never held. */
const WANTED_KEYS = new Set(['registry', 'replace-with', 'index', 'default']);

/**
 * Reads the string values of a TOML document: tables, dotted and quoted keys, inline
 * tables; arrays, numbers and multi-line strings are skipped over. Enough for cargo's
 * registry tables; anything it cannot follow is skipped to the end of the line.
 */
export function readTomlStrings(text: string, keep: (key: string) => boolean = (k) => WANTED_KEYS.has(k)): TomlString[] {
  const out: TomlString[] = [];
  let i = 0;
  const n = text.length;
  const blank = (): void => { while (i < n && (text[i] === ' ' || text[i] === '\t')) i++; };
  const toEol = (): void => { while (i < n && text[i] !== '\n') i++; };
  const spaceAndComments = (): void => {
    for (;;) {
      while (i < n && /\s/.test(text[i])) i++;
      if (text[i] === '#') toEol(); else return;
    }
  };

  const str = (): string | null => {
    const q = text[i];
    if (text.startsWith(q.repeat(3), i)) {
      const end = text.indexOf(q.repeat(3), i + 3);
      const raw = end < 0 ? text.slice(i + 3) : text.slice(i + 3, end);
      i = end < 0 ? n : end + 3;
      return q === '"' ? unescape(raw.replace(/^\r?\n/, '')) : raw.replace(/^\r?\n/, '');
    }
    let j = i + 1;
    while (j < n && text[j] !== q && text[j] !== '\n') j += q === '"' && text[j] === '\\' ? 2 : 1;
    if (text[j] !== q) { i = j; return null; }
    const raw = text.slice(i + 1, j);
    i = j + 1;
    return q === '"' ? unescape(raw) : raw;
  };

  const key = (): string[] | null => {
    const parts: string[] = [];
    for (;;) {
      blank();
      if (text[i] === '"' || text[i] === "'") {
        const s = str();
        if (s === null) return null;
        parts.push(s);
      } else {
        const m = /^[A-Za-z0-9_-]+/.exec(text.slice(i, i + 256));
        if (!m) return null;
        parts.push(m[0]);
        i += m[0].length;
      }
      blank();
      if (text[i] !== '.') return parts;
      i++;
    }
  };

  const value = (at: string[] | null): void => {
    const c = text[i];
    if (c === '"' || c === "'") {
      const s = str();
      if (s !== null && at && keep(at[at.length - 1])) out.push({ path: at, value: s });
    } else if (c === '{') {
      i++;
      for (;;) {
        blank();
        if (text[i] === '}') { i++; return; }
        const k = key();
        if (!k || text[i] !== '=') { toEol(); return; }
        i++;
        blank();
        value(at ? [...at, ...k] : null);
        blank();
        if (text[i] === ',') i++;
        else if (text[i] !== '}') { toEol(); return; }
      }
    } else if (c === '[') {
      i++;
      for (;;) {
        spaceAndComments();
        if (i >= n) return;
        if (text[i] === ']') { i++; return; }
        const before = i;
        value(null);
        spaceAndComments();
        if (text[i] === ',') i++;
        else if (i === before) { toEol(); return; }
      }
    } else {
      // Numbers, booleans, dates: nothing cargo's registry tables need.
      while (i < n && !/[,\]}\n#]/.test(text[i])) i++;
    }
  };

  let table: string[] | null = [];
  while (i < n) {
    spaceAndComments();
    if (i >= n) break;
    if (text[i] === '[') {
      const arrayOfTables = text[i + 1] === '[';
      i += arrayOfTables ? 2 : 1;
      const k = key();
      // Keys under [[array.of.tables]] are not registry settings; ignore them.
      table = k && !arrayOfTables ? k : null;
      toEol();
      continue;
    }
    const k = key();
    if (!k || text[i] !== '=') { toEol(); continue; }
    i++;
    blank();
    value(table ? [...table, ...k] : null);
    toEol();
  }
  return out;
}

function unescape(raw: string): string {
  return raw.replace(/\\(u[0-9A-Fa-f]{4}|U[0-9A-Fa-f]{8}|.)/g, (_, e: string) => {
    if (e[0] === 'u' || e[0] === 'U') return String.fromCodePoint(parseInt(e.slice(1), 16));
    return ({ n: '\n', t: '\t', r: '\r', b: '\b', f: '\f' } as Record<string, string>)[e] ?? e;
  });
}

interface CargoOptions {
  workspace: string;
  home: string;
  env: NodeJS.ProcessEnv;
}

/** One config file's text, or null when it does not exist. */
async function readIfPresent(file: string, warnings: string[], shown: string): Promise<string | null> {
  try {
    return await fs.readFile(file, 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code !== 'ENOENT' && code !== 'ENOTDIR') {
      warnings.push(`cargo: could not read ${shown} (${code ?? 'error'}); registries configured there are not allowed. Fix its permissions or pass --allow HOST.`);
    }
    return null;
  }
}

/**
 * Cargo's config files, lowest precedence first: $CARGO_HOME, then `.cargo/` in each
 * directory from the root down to the workspace (deeper wins). In one directory the
 * extension-less `config` wins over `config.toml`, as cargo does.
 */
function cargoDirs(opts: CargoOptions): string[] {
  const walk: string[] = [];
  for (let dir = path.resolve(opts.workspace); ; dir = path.dirname(dir)) {
    walk.unshift(path.join(dir, '.cargo'));
    if (path.dirname(dir) === dir) break;
  }
  const cargoHome = opts.env.CARGO_HOME
    ? path.resolve(opts.workspace, opts.env.CARGO_HOME)
    : path.join(opts.home, '.cargo');
  return walk.includes(cargoHome) ? walk : [cargoHome, ...walk];
}

function display(file: string, home: string): string {
  const rel = path.relative(home, file);
  return rel && !rel.startsWith('..') && !path.isAbsolute(rel) ? `~/${rel}` : file;
}

/** `foo-bar` → `CARGO_REGISTRIES_FOO_BAR_INDEX`, the variable cargo reads for it. */
function registryVar(name: string): string | null {
  return /^[A-Za-z0-9_-]+$/.test(name) ? `CARGO_REGISTRIES_${name.toUpperCase().replace(/-/g, '_')}_INDEX` : null;
}

export async function readCargo(opts: CargoOptions): Promise<ToolFindings> {
  const warnings: string[] = [];
  const files = await Promise.all(cargoDirs(opts).map(async (dir) => {
    const legacy = path.join(dir, 'config');
    const legacyText = await readIfPresent(legacy, warnings, display(legacy, opts.home));
    if (legacyText !== null) return { file: legacy, text: legacyText };
    const toml = path.join(dir, 'config.toml');
    const text = await readIfPresent(toml, warnings, display(toml, opts.home));
    return text === null ? null : { file: toml, text };
  }));

  // Later files override earlier ones key by key, as cargo merges them.
  const merged = new Map<string, { path: string[]; value: string; file: string }>();
  for (const f of files) {
    if (!f) continue;
    for (const s of readTomlStrings(f.text)) merged.set(JSON.stringify(s.path), { ...s, file: f.file });
  }

  const sources: ToolFindings['sources'] = [];
  const env: Record<string, string> = {};
  const replaced = new Set<string>();
  for (const { path: p } of merged.values()) {
    if (p.length === 3 && p[0] === 'source' && p[2] === 'replace-with') replaced.add(p[1]);
  }
  for (const { path: p, value, file } of merged.values()) {
    const at = display(file, opts.home);
    if (p.length === 3 && p[0] === 'source' && p[2] === 'registry' && !replaced.has(p[1])) {
      // [source.*] tables cannot be set through the environment (cargo documents them
      // as "not supported"), so a home-level mirror does not reach the sandbox's cargo
      // through `env`; a workspace .cargo/config.toml does, being inside the workspace.
      sources.push({ tool: 'cargo', url: value, from: `${at} [source.${p[1]}]` });
    } else if (p.length === 3 && p[0] === 'registries' && p[2] === 'index') {
      const name = registryVar(p[1]);
      if (name && opts.env[name]) continue; // the variable overrides the file, added below
      sources.push({ tool: 'cargo', url: value, from: `${at} [registries.${p[1]}]` });
      if (name) env[name] = value;
    } else if (p.length === 2 && p[0] === 'registry' && p[1] === 'index') {
      // Current cargo no longer accepts [registry] index, so nothing is passed on;
      // the host is still allowed in case an older cargo uses it.
      sources.push({ tool: 'cargo', url: value, from: `${at} [registry] index` });
    } else if (p.length === 2 && p[0] === 'registry' && p[1] === 'default') {
      // Only chooses the registry for publish/search-style commands; harmless to pass on.
      env.CARGO_REGISTRY_DEFAULT = value;
    }
  }
  for (const [name, value] of Object.entries(opts.env)) {
    if (!value || !/^CARGO_REGISTRIES_[A-Z0-9_]+_INDEX$/.test(name)) continue;
    sources.push({ tool: 'cargo', url: value, from: name });
    env[name] = value;
  }
  if (opts.env.CARGO_REGISTRY_DEFAULT) env.CARGO_REGISTRY_DEFAULT = opts.env.CARGO_REGISTRY_DEFAULT;
  return { sources, env, warnings };
}
