/**
 * A small argument parser: known --flags (with values where declared), and
 * everything from the first positional or `--` on is the command to run.
 */
export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UsageError';
  }
}

export interface FlagSpec {
  /** Flags that take a value, by name without dashes. */
  values?: string[];
  /** Boolean flags. */
  booleans?: string[];
  /** Flags that take a value and may be given more than once (collected in order). */
  lists?: string[];
  /** Stop at the first positional (run) or collect positionals (audit). */
  stopAtPositional?: boolean;
}

export interface Parsed {
  values: Record<string, string | undefined>;
  flags: Record<string, boolean>;
  lists: Record<string, string[]>;
  rest: string[];
  help: boolean;
}

export function parseFlags(argv: string[], spec: FlagSpec, command: string): Parsed {
  const out: Parsed = { values: {}, flags: {}, lists: {}, rest: [], help: false };
  const values = new Set(spec.values ?? []);
  const lists = new Set(spec.lists ?? []);
  const booleans = new Set(spec.booleans ?? []);
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--') {
      out.rest.push(...argv.slice(i + 1));
      break;
    }
    if (a === '--help' || a === '-h') {
      out.help = true;
      continue;
    }
    if (a.startsWith('--')) {
      const eq = a.indexOf('=');
      const name = a.slice(2, eq < 0 ? undefined : eq);
      if (values.has(name) || lists.has(name)) {
        const v = eq >= 0 ? a.slice(eq + 1) : argv[++i];
        if (v === undefined) throw new UsageError(`${command}: --${name} needs a value`);
        if (lists.has(name)) (out.lists[name] ??= []).push(v);
        else out.values[name] = v;
      } else if (booleans.has(name) && eq < 0) {
        out.flags[name] = true;
      } else {
        throw new UsageError(`${command}: unknown option --${name} (see 'airlock ${command} --help')`);
      }
      continue;
    }
    if (spec.stopAtPositional) {
      out.rest.push(...argv.slice(i));
      break;
    }
    out.rest.push(a);
  }
  return out;
}

export function positiveInt(v: string | undefined, flag: string, command: string): number | undefined {
  if (v === undefined) return undefined;
  if (!/^\d+$/.test(v) || Number(v) < 1) throw new UsageError(`${command}: --${flag} must be a whole number of seconds ≥ 1, got ${JSON.stringify(v)}`);
  return Number(v);
}
