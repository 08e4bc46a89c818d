/**
 * Local mode's store locations: the data directory first, then the named locations of a
 * --locations-file (YAML or JSON), each shaped like a BackupStorageLocation with credentials and CA
 * bundles given by file path. Parsed strictly: unknown keys are refused and every problem is reported
 * together, naming the location and the field, never a credential's content.
 */
import { readFile } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { parse as parseYaml } from 'yaml';
import type { StoreSpec } from '../stores/spec.ts';
import { SettingFileError, readSettingFile } from '../util/setting-file.ts';

const ALLOWED = new Set(['name', 'provider', 'bucket', 'prefix', 'config', 'credentialFile', 'caCertFile']);
const NAME = /^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/;

export class LocationsFileError extends Error {
  readonly problems: string[];
  constructor(file: string, problems: string[]) {
    super(`${file}:\n${problems.map((p) => `  - ${p}`).join('\n')}`);
    this.name = 'LocationsFileError';
    this.problems = problems;
  }
}

/**
 * Checks one well-formed location the way a request would use it (provider known, config and URLs
 * valid, credential parsable); answers the problem's message, or undefined when there is none.
 */
export type LocationCheck = (spec: StoreSpec) => Promise<string | undefined>;

/**
 * Reads and validates the file; credential and CA files are read relative to it. With `check`, each
 * location that parsed is checked too, and its problems are reported with the file's own, all at once.
 */
export async function loadLocationsFile(file: string, check?: LocationCheck): Promise<StoreSpec[]> {
  let doc: unknown;
  try {
    doc = parseYaml(await readFile(file, 'utf8')); // YAML is a superset of JSON
  } catch (err) {
    throw new LocationsFileError(file, [`not valid YAML or JSON: ${(err as Error).message.split('\n')[0]}`]);
  }
  const list = Array.isArray(doc) ? doc : (doc as { locations?: unknown } | null)?.locations;
  if (!Array.isArray(list) || list.length === 0) {
    throw new LocationsFileError(file, ['expected a non-empty list of locations (or {locations: [...]})']);
  }
  const problems: string[] = [];
  const specs: StoreSpec[] = [];
  const seen = new Set<string>();
  const base = dirname(file);
  for (const [i, item] of list.entries()) {
    const where = `locations[${i}]`;
    if (typeof item !== 'object' || item === null || Array.isArray(item)) {
      problems.push(`${where}: must be a mapping`);
      continue;
    }
    const o = item as Record<string, unknown>;
    const label = typeof o.name === 'string' ? `location "${o.name}"` : where;
    for (const k of Object.keys(o)) if (!ALLOWED.has(k)) problems.push(`${label}: unknown field "${k}" (allowed: ${[...ALLOWED].join(', ')})`);
    const stringField = (k: string, required: boolean): string | undefined => {
      const v = o[k];
      if (v === undefined || v === null) {
        if (required) problems.push(`${label}: "${k}" is required`);
        return undefined;
      }
      if (typeof v !== 'string') {
        problems.push(`${label}: "${k}" must be a string`);
        return undefined;
      }
      return v;
    };
    const name = stringField('name', true);
    const provider = stringField('provider', true);
    const bucket = stringField('bucket', true);
    const prefix = stringField('prefix', false) ?? '';
    if (name !== undefined && !NAME.test(name)) problems.push(`${label}: name must be lower-case letters, digits, '-' and '.'`);
    if (name !== undefined && seen.has(name)) problems.push(`${label}: name used twice`);
    if (name !== undefined) seen.add(name);

    const config: Record<string, string> = {};
    if (o.config !== undefined) {
      if (typeof o.config !== 'object' || o.config === null || Array.isArray(o.config)) {
        problems.push(`${label}: "config" must be a mapping of strings`);
      } else {
        for (const [k, v] of Object.entries(o.config)) {
          // Velero's config is map[string]string; YAML's true and 9000 mean "true" and "9000".
          if (typeof v === 'string' || typeof v === 'boolean' || typeof v === 'number') config[k] = String(v);
          else problems.push(`${label}: config.${k} must be a string`);
        }
      }
    }
    const credentialFile = stringField('credentialFile', false);
    const caCertFile = stringField('caCertFile', false);
    const read = async (field: string, path: string | undefined): Promise<Buffer | undefined> => {
      if (path === undefined) return undefined;
      try {
        // A regular file of at most 1 MiB: a FIFO, /dev/zero or a directory named here is refused.
        return await readSettingFile(resolve(base, path), field);
      } catch (err) {
        if (!(err instanceof SettingFileError)) throw err;
        problems.push(`${label}: ${err.message}: ${resolve(base, path)}`);
        return undefined;
      }
    };
    const credential = await read('credentialFile', credentialFile);
    const ca = await read('caCertFile', caCertFile);
    if (name && provider && bucket !== undefined) {
      const spec: StoreSpec = {
        name,
        provider,
        bucket,
        prefix,
        config,
        ...(credential && { credential }),
        ...(ca && { caBundle: ca.toString('utf8') }),
      };
      const problem = await check?.(spec);
      if (problem !== undefined) problems.push(`${label}: ${problem}`);
      specs.push(spec);
    }
  }
  if (problems.length > 0) throw new LocationsFileError(file, problems);
  return specs;
}
