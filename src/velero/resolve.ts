/**
 * Resolving a download target into a store location and an object key. Local mode has one location
 * (the data directory); kubernetes mode follows Restore → Backup → BackupStorageLocation.
 */
import { NEVER_ABORTED, abortable } from '../util/abortable.ts';
import { TtlCache } from '../util/ttl-cache.ts';
import type { StoreSpec } from '../stores/spec.ts';
import { findArtifact } from './artifacts.ts';
import type { Target } from './artifacts.ts';
import { NotFoundError } from './errors.ts';

export interface Location {
  spec: StoreSpec;
  /** Object key relative to the location's prefix. */
  key: string;
}

export interface Resolver {
  /** Throws NotFoundError when the target's owner, location or namespace is unknown. */
  resolve(target: Target, signal: AbortSignal): Promise<Location>;
  /** The target a DownloadRequest names; NotFoundError when there is no such request. */
  downloadRequestTarget(namespace: string, name: string, signal: AbortSignal): Promise<Target>;
}

/** The owner's group/kind for Status details, e.g. `backups.velero.io "nightly" not found`. */
export function ownerResource(owner: Target['owner']): string {
  return `${owner}.velero.io`;
}

/** The key of a target's artifact, or NotFoundError for an artifact the owner kind does not have. */
export function artifactKey(target: Target): string {
  const def = findArtifact(target.owner, target.artifact);
  if (!def) {
    throw new NotFoundError(`${ownerResource(target.owner)} has no artifact "${target.artifact}"`, {
      group: 'velero.io',
      kind: target.owner,
      name: target.name,
    });
  }
  return def.key(target.name);
}

/** Whether an object exists in a location; errors (store unreachable) propagate. */
export type Probe = (location: Location, signal: AbortSignal) => Promise<boolean>;

/** How long the location found to hold an artifact is remembered (several locations only). */
export const FOUND_TTL_MS = 30_000;

/**
 * Local mode: the served namespace's targets live in one of a list of locations (the data directory,
 * then a locations file's). With several, the first location that holds the artifact wins, the way
 * Velero's backup sync finds backups in every location it knows. Which location that was is
 * remembered for FOUND_TTL_MS, so repeated downloads of one artifact do not probe (a HEAD request
 * per location) every time; a miss is never remembered.
 */
export class LocalResolver implements Resolver {
  readonly #namespace: string;
  readonly #specs: readonly StoreSpec[];
  readonly #probe: Probe | undefined;
  readonly #found = new TtlCache<{ index: number }>({ max: 10_000, ttl: () => FOUND_TTL_MS });

  constructor(namespace: string, specs: readonly StoreSpec[], probe?: Probe) {
    if (specs.length === 0) throw new Error('LocalResolver needs at least one location');
    if (specs.length > 1 && !probe) throw new Error('LocalResolver needs a probe to choose between locations');
    this.#namespace = namespace;
    this.#specs = specs;
    this.#probe = probe;
  }

  async downloadRequestTarget(namespace: string, name: string, _signal?: AbortSignal): Promise<Target> {
    throw new NotFoundError(`downloadrequests.velero.io "${name}" not found: local mode has no DownloadRequests (namespace "${namespace}")`, {
      group: 'velero.io',
      kind: 'downloadrequests',
      name,
    });
  }

  async resolve(target: Target, signal: AbortSignal): Promise<Location> {
    signal.throwIfAborted();
    if (target.namespace !== this.#namespace) {
      throw new NotFoundError(`namespace "${target.namespace}" is not served by this gateway`, {
        kind: 'namespaces',
        name: target.namespace,
      });
    }
    const key = artifactKey(target);
    const [first] = this.#specs;
    if (this.#specs.length === 1 || !this.#probe) return { spec: first!, key };
    // One search per artifact, shared by concurrent callers: it runs under no caller's signal, so one
    // that leaves does not fail the others; each stops waiting when its own signal aborts.
    const { index } = await abortable(
      this.#found.get(key, () => this.#search(target, key, NEVER_ABORTED)),
      signal,
    );
    return { spec: this.#specs[index]!, key };
  }

  /** The index of the first location holding `key`; throws NotFoundError (or a store's error). */
  async #search(target: Target, key: string, signal: AbortSignal): Promise<{ index: number }> {
    let firstError: unknown;
    for (const [index, spec] of this.#specs.entries()) {
      try {
        if (await this.#probe!({ spec, key }, signal)) return { index };
      } catch (err) {
        signal.throwIfAborted();
        firstError ??= err;
      }
    }
    // Nothing found: a location that could not answer may hold it, so say that rather than 404.
    if (firstError !== undefined) throw firstError as Error;
    const kind = target.owner === 'backups' ? 'backup' : 'restore';
    throw new NotFoundError(`${kind} "${target.name}" has no ${target.artifact} in any location (${this.#specs.map((x) => x.name).join(', ')})`, {
      group: 'velero.io',
      kind: target.owner,
      name: target.name,
    });
  }
}
