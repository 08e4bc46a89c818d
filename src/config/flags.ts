/**
 * A small declarative flag table: each flag has a name, a parser, a default and help text; the same
 * table drives command-line parsing, the `VDS_` environment variables and
 * `--help`. Precedence: flag, then environment, then default. Every problem is collected, none thrown.
 */
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
  const { given, errors, help, version } = readArgv(defs, argv);

  const values: Record<string, unknown> = {};
  for (const [key, def] of Object.entries(defs)) {
    const fromFlag = given.get(def.name);
    const fromEnv = env[envName(def.name)];
    let raw: string | undefined;
    let source: string;
    if (fromFlag !== undefined) {
      raw = fromFlag;
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
  return { values: values as ParsedFlags<D>, errors, help, version };
}

interface ArgvReading {
  /** The raw text of each flag given, by name (switches as 'true' / 'false'). */
  given: Map<string, string>;
  errors: string[];
  help: boolean;
  version: boolean;
}

/**
 * The command line, read to the end with one message per problem: a mistake never hides the others.
 * As the velero CLI (pflag) does, a flag that takes a value takes the next argument even when it
 * starts with '-', so `--kube-api-qps -3` reads as `--kube-api-qps=-3` and its parser says what is
 * wrong with -3; only a next argument starting with '--' is another flag, and the value is then
 * missing. The last of a repeated flag wins. Arguments are echoed JSON-quoted, so that control
 * characters in them stay inert on a terminal.
 */
function readArgv(defs: Record<string, FlagDef<unknown>>, argv: readonly string[]): ArgvReading {
  const byName = new Map(Object.values(defs).map((d) => [d.name, d]));
  const out: ArgvReading = { given: new Map(), errors: [], help: false, version: false };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === '-h' || arg === '--help') out.help = true;
    else if (arg === '--version') out.version = true;
    else if (!arg.startsWith('--') || arg === '--') {
      out.errors.push(/^-[^-]/.test(arg) ? `${JSON.stringify(arg)}: unknown flag` : `unexpected argument ${JSON.stringify(arg)}: every flag is --name value or --name=value`);
    } else {
      const eq = arg.indexOf('=');
      const name = arg.slice(2, eq < 0 ? undefined : eq);
      const next = argv[i + 1];
      const took = readFlag(byName, name, eq < 0 ? undefined : arg.slice(eq + 1), next !== undefined && !next.startsWith('--') ? next : undefined, out);
      if (took) i++;
    }
  }
  return out;
}

/** One `--name[=inline]` of the command line into `out`; true when it took `next` as its value. */
function readFlag(byName: ReadonlyMap<string, FlagDef<unknown>>, name: string, inline: string | undefined, next: string | undefined, out: ArgvReading): boolean {
  const negated = name.startsWith('no-') ? byName.get(name.slice(3)) : undefined;
  const def = byName.get(name) ?? (negated && (negated.kind === 'boolean' || negated.formerSwitch === true) ? negated : undefined);
  if (def === undefined) {
    out.errors.push(`${JSON.stringify(`--${name}`)}: unknown flag`);
    return false;
  }
  if (def === negated || def.kind === 'boolean') {
    if (inline !== undefined) out.errors.push(`--${name}: a switch takes no value (--${def.name} or --no-${def.name})`);
    else out.given.set(def.name, String(def !== negated));
    return false;
  }
  if (inline !== undefined) out.given.set(def.name, inline);
  else if (next !== undefined) out.given.set(def.name, next);
  // A flag that used to be a switch reads its old bare form as true, for its parser to answer.
  else if (def.formerSwitch === true) out.given.set(def.name, 'true');
  else out.errors.push(`--${name}: needs a value (--${name} <value>, or --${name}=<value> for a value starting with "--")`);
  return inline === undefined && next !== undefined;
}

/** The --help text: one line per flag with its environment variable and default. */
export function helpText(usage: string, defs: Record<string, FlagDef<unknown>>): string {
  const lines = [usage, '', 'Flags (each also settable as an environment variable):'];
  for (const def of Object.values(defs)) {
    const flag = def.kind === 'boolean' ? `--[no-]${def.name}` : `--${def.name} <value>`;
    const dflt = def.default === undefined ? '' : ` (default: ${def.default})`;
    lines.push(`  ${flag.padEnd(34)} ${def.help}${dflt}`, `  ${''.padEnd(34)} env ${envName(def.name)}`);
  }
  lines.push('  -h, --help                         show this help', '  --version                          print the version');
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
