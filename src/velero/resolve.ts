/**
 * Resolving a download target into a store location and an object key. Local mode has one location
 * (the data directory); kubernetes mode follows Restore → Backup → BackupStorageLocation.
 */
import { NEVER_ABORTED, abortable } from '../util/abortable.ts';
import { TtlCache } from '../util/ttl-cache.ts';
import type { PromiseOr } from '../util/promise-or.ts';
import type { StoreFactory, StoreSpec } from '../stores/spec.ts';
import type { ObjectStore } from '../stores/types.ts';
import { findArtifact } from './artifacts.ts';
import type { Target } from './artifacts.ts';
import { NotFoundError } from './errors.ts';
import { BackupFileVolumes, volumeFileKeys } from './volumes-files.ts';
import { BaseVolumeResolver } from './volumes-resolver.ts';
import type { BackupVolume } from './volumes.ts';

export interface Location {
  spec: StoreSpec;
  /** Object key relative to the location's prefix. */
  key: string;
}

export interface Resolver {
  /**
   * Throws (or rejects with) NotFoundError when the target's owner, location or namespace is unknown.
   * A location known without waiting (cached objects, local mode) comes at once, not as a promise.
   */
  resolve(target: Target, signal: AbortSignal): PromiseOr<Location>;
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
    const key = artifactKey(target);
    const kind = target.owner === 'backups' ? 'backup' : 'restore';
    const spec = await this.locationOf(target.namespace, key, signal, {
      message: `${kind} "${target.name}" has no ${target.artifact}`,
      details: { group: 'velero.io', kind: target.owner, name: target.name },
    });
    return { spec, key };
  }

  /**
   * The location holding `key` in the served namespace: the only one, or the first that has it.
   * NotFoundError (with `missing`'s message and details) when none has it.
   */
  async locationOf(namespace: string, key: string, signal: AbortSignal, missing: { message: string; details: NotFoundError['details'] }): Promise<StoreSpec> {
    signal.throwIfAborted();
    if (namespace !== this.#namespace) {
      throw new NotFoundError(`namespace "${namespace}" is not served by this gateway`, {
        kind: 'namespaces',
        name: namespace,
      });
    }
    const [first] = this.#specs;
    if (this.#specs.length === 1 || !this.#probe) return first!;
    // One search per key, shared by concurrent callers: it runs under no caller's signal, so one
    // that leaves does not fail the others; each stops waiting when its own signal aborts.
    const found = this.#found.get(key, () => this.#search(key, missing, NEVER_ABORTED));
    const { index } = found instanceof Promise ? await abortable(found, signal) : found;
    return this.#specs[index]!;
  }

  /** The index of the first location holding `key`; throws NotFoundError (or a store's error). */
  async #search(key: string, missing: { message: string; details: NotFoundError['details'] }, signal: AbortSignal): Promise<{ index: number }> {
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
    throw new NotFoundError(`${missing.message} in any location (${this.#specs.map((x) => x.name).join(', ')})`, missing.details);
  }
}

/** Every Velero backup has this file; the location that holds it holds the backup. */
const backupMetadataKey = (backup: string): string => `backups/${backup}/velero-backup.json`;

const ALL_KINDS = new Set(['PodVolumeBackup', 'DataUpload'] as const);

export interface LocalVolumeResolverOptions {
  /**
   * The repository password (the compose layer reads it from a flag or a file; Velero's default is
   * VELERO_DEFAULT_REPOSITORY_PASSWORD). Never logged, never in a message.
   */
  password: string;
  /** The cache of volumes read from backups' files (default: one of its own). */
  files?: BackupFileVolumes;
}

/**
 * Local mode's volumes of a backup: no cluster, so only the backup's own files, in whichever of the
 * locations holds the backup (the first with its `velero-backup.json`, as LocalResolver picks
 * locations). Who reaches it: a caller holding a static token. What it trusts: the files' content no
 * more than Kubernetes mode does (volumes-files.ts bounds and checks it).
 */
export class LocalVolumeResolver extends BaseVolumeResolver {
  readonly #locations: LocalResolver;
  readonly #stores: StoreFactory;
  readonly #password: string;
  readonly #files: BackupFileVolumes;

  constructor(locations: LocalResolver, stores: StoreFactory, opts: LocalVolumeResolverOptions) {
    super();
    this.#locations = locations;
    this.#stores = stores;
    this.#password = opts.password;
    this.#files = opts.files ?? new BackupFileVolumes();
  }

  protected async password(): Promise<string> {
    return this.#password;
  }

  protected async volumesOf(namespace: string, backup: string, signal: AbortSignal): Promise<{ spec: StoreSpec; volumes: BackupVolume[] }> {
    volumeFileKeys(backup); // refuses a name that cannot be part of a key, before any probe
    const key = backupMetadataKey(backup);
    const missing = { message: `backup "${backup}" not found`, details: { group: 'velero.io', kind: 'backups', name: backup } };
    const spec = await this.#locations.locationOf(namespace, key, signal, missing);
    const store = await this.#stores.forSpec(spec);
    // With one location nothing was probed: a backup without volume files and no backup at all differ.
    // Checked when the files are read, so a cached answer costs no store call.
    const existing = async (): Promise<ObjectStore> => {
      try {
        await store.stat(key, { signal });
      } catch (err) {
        if ((err as { reason?: unknown }).reason === 'ObjectNotFound') throw new NotFoundError(`${missing.message} in location ${spec.name}`, missing.details);
        throw err;
      }
      return store;
    };
    return { spec, volumes: await this.#files.get(spec, existing, { backup }, ALL_KINDS, signal) };
  }
}
