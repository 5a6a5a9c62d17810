/**
 * Path patterns for masks and read-only paths, gitignore-like:
 * - without '/', a pattern matches an entry's name at any depth (`.env`, `*.pem`);
 * - with '/' (or a leading '/'), it matches the path from the workspace root
 *   (`.git/hooks`, `/top.txt`);
 * - `*` and `?` stay within one name, `**` spans directories, `[abc]` is a class;
 * - a trailing '/' matches directories only; a leading '!' un-matches;
 * - the last pattern that matches an entry decides.
 */
export interface CompiledPattern {
  source: string;
  negate: boolean;
  dirOnly: boolean;
  anchored: boolean;
  /** The pattern without '!' and trailing '/', or null when it holds glob characters. */
  literal: string | null;
  re: RegExp;
}

function globToRegex(glob: string): string {
  let out = '';
  for (let i = 0; i < glob.length; i++) {
    const c = glob[i];
    if (c === '*') {
      if (glob[i + 1] === '*') {
        const before = i === 0 || glob[i - 1] === '/';
        const after = glob[i + 2] === '/' || i + 2 === glob.length;
        if (before && after) {
          if (glob[i + 2] === '/') { out += '(?:[^/]*/)*'; i += 2; } else { out += '.*'; i += 1; }
          continue;
        }
      }
      out += '[^/]*';
    } else if (c === '?') {
      out += '[^/]';
    } else if (c === '[') {
      const close = glob.indexOf(']', i + 2);
      if (close < 0) { out += '\\['; continue; }
      let body = glob.slice(i + 1, close);
      if (body.startsWith('!')) body = '^' + body.slice(1);
      out += '[' + body.replace(/\\/g, '\\\\').replace(/\//g, '') + ']';
      i = close;
    } else {
      out += c.replace(/[.+^${}()|\\\]]/g, '\\$&');
    }
  }
  return out;
}

export function compilePattern(source: string): CompiledPattern {
  let p = source;
  const negate = p.startsWith('!');
  if (negate) p = p.slice(1);
  const dirOnly = p.endsWith('/');
  if (dirOnly) p = p.replace(/\/+$/, '');
  const rooted = p.startsWith('/');
  if (rooted) p = p.replace(/^\/+/, '');
  if (p === '' || p.split('/').some((seg) => seg === '..')) {
    throw new Error(`invalid path pattern ${JSON.stringify(source)}: it must name a path inside the workspace`);
  }
  const anchored = rooted || p.includes('/');
  const literal = /[*?[]/.test(p) ? null : p;
  return { source, negate, dirOnly, anchored, literal, re: new RegExp('^' + globToRegex(p) + '$') };
}

export class PatternSet {
  readonly patterns: CompiledPattern[];
  constructor(sources: readonly string[]) {
    this.patterns = sources.map(compilePattern);
  }

  /** Does the set select the entry at workspace-relative path REL? */
  matches(rel: string, isDir: boolean): boolean {
    const name = rel.slice(rel.lastIndexOf('/') + 1);
    let hit = false;
    for (const p of this.patterns) {
      if (p.dirOnly && !isDir) continue;
      if (p.re.test(p.anchored ? rel : name)) hit = !p.negate;
    }
    return hit;
  }

  /**
   * Root-anchored literal paths that should be protected even when absent
   * (`.vscode`, `.git/hooks`): name patterns count as root-level paths here.
   */
  literalRootPaths(): { rel: string; dir: boolean }[] {
    const out = new Map<string, boolean>();
    for (const p of this.patterns) {
      if (p.literal === null) continue;
      if (p.negate) out.delete(p.literal);
      else out.set(p.literal, p.dirOnly);
    }
    return [...out].map(([rel, dir]) => ({ rel, dir }));
  }
}
