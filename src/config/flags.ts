/**
 * A small declarative flag table: each flag has a name, a parser, a default and help text; the same
 * table drives command-line parsing (node:util parseArgs), the `VDS_` environment variables and
 * `--help`. Precedence: flag, then environment, then default. Every problem is collected, none thrown.
 */
import { parseArgs } from 'node:util';

export interface FlagDef<T> {
  name: string;
  /** `string` flags take a value; `boolean` flags are switches that also accept `--no-<name>`. */
  kind: 'string' | 'boolean';
  help: string;
  /** Shown in --help; also parsed when the flag is not given (unless undefined). */
  default?: string;
  /** Turns the raw text (or 'true'/'false' for switches) into the value; throws Error with a message on bad input. */
  parse(raw: string): T;
  /**
   * A `string` flag that used to be a switch: `--<name>` with no value reads as `--<name>=true` and
   * `--no-<name>` as `--<name>=false`, so that `parse` can answer the old forms with a clear message
   * instead of the parser's "argument missing".
   */
  formerSwitch?: boolean;
}

/** The environment variable for a flag: `VDS_` + upper snake case (`--data-dir` → `VDS_DATA_DIR`). */
export function envName(flag: string): string {
  return `VDS_${flag.replaceAll('-', '_').toUpperCase()}`;
}

export type ParsedFlags<D extends Record<string, FlagDef<unknown>>> = {
  [K in keyof D]: D[K] extends FlagDef<infer T> ? T | undefined : never;
};

export interface FlagParseResult<D extends Record<string, FlagDef<unknown>>> {
  values: ParsedFlags<D>;
  errors: string[];
  help: boolean;
  version: boolean;
}

export function parseFlags<D extends Record<string, FlagDef<unknown>>>(
  defs: D,
  argv: readonly string[],
  env: Readonly<Record<string, string | undefined>>,
): FlagParseResult<D> {
  const errors: string[] = [];
  const options: Record<string, { type: 'string' | 'boolean' }> = {
    help: { type: 'boolean' },
    version: { type: 'boolean' },
  };
  for (const def of Object.values(defs)) options[def.name] = { type: def.kind };

  let given: Record<string, string | boolean | undefined> = {};
  try {
    const parsed = parseArgs({ args: formerSwitches(defs, argv), options, strict: true, allowPositionals: false, allowNegative: true });
    given = parsed.values;
  } catch (err) {
    errors.push((err as Error).message);
  }

  const values: Record<string, unknown> = {};
  for (const [key, def] of Object.entries(defs)) {
    const fromFlag = given[def.name];
    const fromEnv = env[envName(def.name)];
    let raw: string | undefined;
    let source: string;
    if (fromFlag !== undefined) {
      raw = String(fromFlag);
      source = `--${def.name}`;
    } else if (fromEnv !== undefined && fromEnv !== '') {
      raw = fromEnv;
      source = envName(def.name);
    } else {
      raw = def.default;
      source = `--${def.name} (default)`;
    }
    if (raw === undefined) continue;
    try {
      values[key] = def.parse(raw);
    } catch (err) {
      errors.push(`${source}: ${(err as Error).message}`);
    }
  }
  return { values: values as ParsedFlags<D>, errors, help: given.help === true, version: given.version === true };
}

/** `argv` with the old switch forms of `formerSwitch` flags written as values (see FlagDef.formerSwitch). */
function formerSwitches(defs: Record<string, FlagDef<unknown>>, argv: readonly string[]): string[] {
  const names = new Set(Object.values(defs).filter((d) => d.formerSwitch === true).map((d) => d.name));
  return argv.map((arg, i) => {
    if (!arg.startsWith('--') || arg.includes('=')) return arg;
    const name = arg.slice(2);
    const next = argv[i + 1];
    if (names.has(name) && (next === undefined || next.startsWith('-'))) return `--${name}=true`;
    if (name.startsWith('no-') && names.has(name.slice(3))) return `--${name.slice(3)}=false`;
    return arg;
  });
}

/** The --help text: one line per flag with its environment variable and default. */
export function helpText(usage: string, defs: Record<string, FlagDef<unknown>>): string {
  const lines = [usage, '', 'Flags (each also settable as an environment variable):'];
  for (const def of Object.values(defs)) {
    const flag = def.kind === 'boolean' ? `--[no-]${def.name}` : `--${def.name} <value>`;
    const dflt = def.default === undefined ? '' : ` (default: ${def.default})`;
    lines.push(`  ${flag.padEnd(34)} ${def.help}${dflt}`, `  ${''.padEnd(34)} env ${envName(def.name)}`);
  }
  lines.push('  --help                             show this help', '  --version                          print the version');
  return lines.join('\n');
}

// ---- value parsers -------------------------------------------------------------------------

export function oneOf<const T extends string>(...allowed: T[]): (raw: string) => T {
  return (raw) => {
    if ((allowed as string[]).includes(raw)) return raw as T;
    throw new Error(`must be one of ${allowed.join(', ')}; got "${raw}"`);
  };
}

/** A comma-separated list; empty items dropped. */
export const list = (raw: string): string[] =>
  raw
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);

export function positive(raw: string): number {
  const n = Number(raw);
  if (!Number.isFinite(n) || n <= 0) throw new Error(`must be a positive number; got "${raw}"`);
  return n;
}

/** A whole number of at least 1. */
export function count(raw: string): number {
  const n = Number(raw);
  if (!/^\d+$/.test(raw.trim()) || !Number.isSafeInteger(n) || n < 1) throw new Error(`must be a whole number of at least 1; got "${raw}"`);
  return n;
}

export function bool(raw: string): boolean {
  const v = raw.toLowerCase();
  if (['true', '1', 'yes'].includes(v)) return true;
  if (['false', '0', 'no'].includes(v)) return false;
  throw new Error(`must be true or false; got "${raw}"`);
}

const DURATION = /^(\d+(?:\.\d+)?)(ms|s|m|h)$/;
const UNIT_MS = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 } as const;

/** Go-style durations as Kubernetes tooling writes them: `500ms`, `30s`, `2m`, `1h`. Returns milliseconds. */
export function duration(raw: string): number {
  const m = DURATION.exec(raw.trim());
  if (!m) throw new Error(`must be a duration such as 500ms, 30s, 2m or 1h; got "${raw}"`);
  return Math.round(Number(m[1]) * UNIT_MS[m[2] as keyof typeof UNIT_MS]);
}

const BYTES = /^(\d+)(Ki|Mi|Gi)?$/;
const UNIT_BYTES = { Ki: 1024, Mi: 1024 ** 2, Gi: 1024 ** 3 } as const;

/** A size as Kubernetes quantities write it: `268435456`, `256Mi`, `1Gi`. At least 1 byte. */
export function bytes(raw: string): number {
  const m = BYTES.exec(raw.trim());
  const n = m ? Number(m[1]) * (m[2] ? UNIT_BYTES[m[2] as keyof typeof UNIT_BYTES] : 1) : NaN;
  if (!Number.isSafeInteger(n) || n < 1) throw new Error(`must be a size such as 64Mi, 1Gi or a number of bytes; got "${raw}"`);
  return n;
}

export interface HostPort {
  host: string;
  port: number;
}

/** `host:port`, `[v6]:port` or `:port` (all interfaces). */
export function hostPort(raw: string): HostPort {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^:[\]]*)):(\d{1,5})$/.exec(raw.trim());
  const port = Number(m?.[3]);
  if (!m || !Number.isInteger(port) || port > 65535) {
    throw new Error(`must be host:port (e.g. 0.0.0.0:8443, [::]:8443 or :8443); got "${raw}"`);
  }
  return { host: m[1] ?? (m[2] || '0.0.0.0'), port };
}
