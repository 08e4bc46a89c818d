/**
 * Resolving a download target into a store location and an object key. Local mode has one location
 * (the data directory); kubernetes mode follows Restore → Backup → BackupStorageLocation.
 */
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

/** Local mode: every target of the one served namespace lives in one location. */
export class LocalResolver implements Resolver {
  readonly #namespace: string;
  readonly #spec: StoreSpec;

  constructor(namespace: string, spec: StoreSpec) {
    this.#namespace = namespace;
    this.#spec = spec;
  }

  async resolve(target: Target, signal: AbortSignal): Promise<Location> {
    signal.throwIfAborted();
    if (target.namespace !== this.#namespace) {
      throw new NotFoundError(`namespace "${target.namespace}" is not served by this gateway`, {
        kind: 'namespaces',
        name: target.namespace,
      });
    }
    return { spec: this.#spec, key: artifactKey(target) };
  }
}
