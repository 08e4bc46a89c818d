/**
 * The catalog of Backups and Restores a browser page lists, per served namespace (issue 24).
 *
 * Kubernetes mode (KubeCatalog) lists the Backup and Restore objects (velero.io/v1) through the
 * gateway's own object reader: one API call per list, cached for seconds, charged to the `objects`
 * budget. Local mode (LocalCatalog) lists the `backups/` and `restores/` folders of its locations'
 * stores and reads each backup's `velero-backup.json`.
 *
 * Everything listed is untrusted (a tenant writes its own Backups; whoever can write a bucket writes
 * its files): every field is read defensively, and a field of the wrong type or shape is left out
 * (undefined), never a TypeError. An object or folder whose name is not a DNS-1123 subdomain is
 * skipped, so every name listed can become a download URL and a key.
 *
 * The cap: at most MAX_CATALOG_ENTRIES entries per list. A namespace with more is refused with
 * TooManyObjectsError (the kube layer's existing refusal for lists that grow without bound; the HTTP
 * layer maps it), never silently truncated: a page that showed the first 2,000 backups of 2,001
 * would look complete.
 */
import { TooManyObjectsError } from '../kube/errors.ts';
import type { CatalogReader, KubeObject } from '../kube/objects.ts';
import type { StoreFactory, StoreSpec } from '../stores/spec.ts';
import type { ListedObject, ObjectStore } from '../stores/types.ts';
import { TtlCache } from '../util/ttl-cache.ts';
import { isDns1123Label, isDns1123Subdomain } from './artifacts.ts';
import type { OwnerKind } from './artifacts.ts';
import { NotFoundError } from './errors.ts';
import { checkServed } from './kube-resolver.ts';
import { namespaceMatcher } from './namespaces.ts';
import { bytesOf } from './object-bytes.ts';
import { mapLimited } from '../util/map-limited.ts';
import { own, record } from '../util/untrusted.ts';

export { TooManyObjectsError };

/** One Backup or Restore as the catalog page shows it. */
export interface CatalogEntry {
  owner: OwnerKind;
  namespace: string;
  /** A DNS-1123 subdomain (others are never listed). */
  name: string;
  /** status.phase: letters only (Velero's phases are CamelCase words), at most 64. */
  phase?: string;
  /** status.startTimestamp (RFC 3339, as written). */
  started?: string;
  /** status.completionTimestamp (RFC 3339, as written). */
  completed?: string;
  /** Backups: status.expiration (RFC 3339, as written). */
  expires?: string;
  /**
   * Where the gateway reads it from. Kubernetes mode: backups' spec.storageLocation; restores' the
   * location of their backup when that Backup is in the namespace's (cached) list, else undefined.
   * Local mode: the name of the gateway's location (the data directory's `data-dir`, or a
   * --locations-file name) that holds it, which is the location downloads resolve to.
   */
  location?: string;
  /** Restores: spec.backupName (Kubernetes mode only: the store has no record of it). */
  backup?: string;
  /**
   * Bytes, where known without extra calls. Local mode: the sum of the listed sizes of the objects in
   * the backup's or restore's folder (not its volume data, which lives under `kopia/` or elsewhere).
   * Kubernetes mode: undefined.
   */
  size?: number;
  /** status.errors, when a non-negative integer. */
  errors?: number;
  /** status.warnings, when a non-negative integer. */
  warnings?: number;
}

export interface Catalog {
  /** The namespaces this gateway serves, for the page to iterate, sorted (local mode: the one namespace). */
  namespaces(signal: AbortSignal): Promise<string[]>;
  /**
   * Backups or restores of one served namespace, sorted by name (code point order); NotFoundError
   * for a namespace not served; TooManyObjectsError for more than MAX_CATALOG_ENTRIES.
   */
  list(owner: OwnerKind, namespace: string, signal: AbortSignal): Promise<CatalogEntry[]>;
}

/** The most entries one list returns; more is refused (TooManyObjectsError). The kube reader's list cap. */
export const MAX_CATALOG_ENTRIES = 2_000;
/** Local mode: the most keys listed under one location's `backups/` or `restores/`; more is refused. */
export const MAX_CATALOG_KEYS = 50_000;
/** Local mode: the largest `velero-backup.json` read (a larger one leaves the fields undefined). */
export const MAX_BACKUP_METADATA_BYTES = 1024 * 1024;
/** Local mode: the most bytes of `velero-backup.json` files read for one list; past it fields stay undefined. */
export const MAX_METADATA_BYTES_PER_LIST = 64 * 1024 * 1024;
/** Local mode: `velero-backup.json` files read at once. */
export const METADATA_READS_AT_ONCE = 8;
/** Local mode: how long a listing of the stores is reused (concurrent identical lists share one). */
export const LOCAL_CATALOG_TTL_MS = 5_000;

// --- reading untrusted fields --------------------------------------------------------------------

const RFC3339 = /^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})$/;
const PHASE = /^[A-Za-z]{1,64}$/;

const timestamp = (v: unknown): string | undefined => (typeof v === 'string' && RFC3339.test(v) && !Number.isNaN(Date.parse(v)) ? v : undefined);
const phase = (v: unknown): string | undefined => (typeof v === 'string' && PHASE.test(v) ? v : undefined);
const objectName = (v: unknown): string | undefined => (typeof v === 'string' && isDns1123Subdomain(v) ? v : undefined);
const count = (v: unknown): number | undefined => (typeof v === 'number' && Number.isSafeInteger(v) && v >= 0 ? v : undefined);

/** An object with only the defined fields (exactOptionalPropertyTypes-friendly). */
function defined<T extends object>(o: T): T {
  for (const k of Object.keys(o) as (keyof T)[]) if (o[k] === undefined) delete o[k];
  return o;
}

/** The status and spec fields of a Backup or Restore object (or a `velero-backup.json`), each checked. */
function fieldsOf(owner: OwnerKind, obj: Record<string, unknown>): Omit<CatalogEntry, 'owner' | 'namespace' | 'name'> {
  const status = record(own(obj, 'status'));
  const spec = record(own(obj, 'spec'));
  return defined({
    phase: phase(own(status, 'phase')),
    started: timestamp(own(status, 'startTimestamp')),
    completed: timestamp(own(status, 'completionTimestamp')),
    errors: count(own(status, 'errors')),
    warnings: count(own(status, 'warnings')),
    ...(owner === 'backups'
      ? { expires: timestamp(own(status, 'expiration')), location: objectName(own(spec, 'storageLocation')) }
      : { backup: objectName(own(spec, 'backupName')) }),
  });
}

/** Code point order, the same in every locale. */
const byName = (a: { name: string }, b: { name: string }): number => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0);

function tooMany(max: number, owner: OwnerKind, where: string): TooManyObjectsError {
  return new TooManyObjectsError(`more than ${max} ${owner}.velero.io ${where}: the catalog lists at most ${max}`);
}

// --- Kubernetes mode -----------------------------------------------------------------------------

export interface KubeCatalogOptions {
  /** The gateway's namespace (config.namespace): always served. */
  ownNamespace: string;
  /** --watch-namespaces (config.watchNamespaces): names and `*` globs, as namespaceMatcher takes them. */
  watchNamespaces: readonly string[];
  /** The most entries per list (default MAX_CATALOG_ENTRIES; tests lower it). */
  maxEntries?: number;
}

/**
 * Kubernetes mode's catalog: Backups and Restores listed through the reader (one cached, capped API
 * call per namespace and kind). Served namespaces are decided as everywhere else (namespaceMatcher,
 * checkServed).
 */
export class KubeCatalog implements Catalog {
  readonly #reader: CatalogReader;
  readonly #serves: (namespace: string) => boolean;
  readonly #named: readonly string[];
  readonly #globs: boolean;
  readonly #max: number;

  constructor(reader: CatalogReader, opts: KubeCatalogOptions) {
    this.#reader = reader;
    this.#serves = namespaceMatcher(opts.ownNamespace, opts.watchNamespaces);
    this.#named = [...new Set([opts.ownNamespace, ...opts.watchNamespaces.filter((p) => !p.includes('*'))])].sort();
    this.#globs = opts.watchNamespaces.some((p) => p.includes('*'));
    this.#max = opts.maxEntries ?? MAX_CATALOG_ENTRIES;
  }

  /**
   * The namespaces named in the configuration (the gateway's own and --watch-namespaces' names),
   * with no API call. With a `*` glob the served namespaces cannot be named in advance: Backups are
   * then listed once cluster-wide (one cached API call, capped like every list: a cluster with more
   * than MAX_LISTED_OBJECTS Backups is TooManyObjectsError) and the served namespaces that hold one
   * are added. A glob-matched namespace with Restores but no Backup is not found this way (Velero
   * restores from a Backup in the restore's own namespace, so that namespace holds one).
   */
  async namespaces(signal: AbortSignal): Promise<string[]> {
    signal.throwIfAborted();
    if (!this.#globs) return [...this.#named];
    const found = new Set(this.#named);
    for (const item of await this.#reader.veleroCollection('backups', '', signal)) {
      const ns = own(record(own(record(item), 'metadata')), 'namespace');
      if (typeof ns === 'string' && isDns1123Label(ns) && this.#serves(ns)) found.add(ns);
    }
    return [...found].sort();
  }

  async list(owner: OwnerKind, namespace: string, signal: AbortSignal): Promise<CatalogEntry[]> {
    signal.throwIfAborted();
    servedNamespace(this.#serves, namespace);
    const items = await this.#reader.veleroCollection(owner, namespace, signal);
    const entries = unique(items.map((o) => kubeEntry(owner, namespace, o)));
    if (entries.length > this.#max) throw tooMany(this.#max, owner, `in namespace "${namespace}"`);
    if (owner === 'restores' && entries.some((e) => e.backup !== undefined)) {
      const locations = await this.#backupLocations(namespace, signal);
      for (const e of entries) {
        const location = e.backup === undefined ? undefined : locations.get(e.backup);
        if (location !== undefined) e.location = location;
      }
    }
    return entries.sort(byName);
  }

  /**
   * Backup name → storage location in `namespace`, from the same cached list the backups page reads.
   * Only a convenience for restores: when the list cannot be had (too many, API unavailable, budget
   * spent), restores are listed without locations rather than not at all.
   */
  async #backupLocations(namespace: string, signal: AbortSignal): Promise<Map<string, string>> {
    const out = new Map<string, string>();
    let items: KubeObject[];
    try {
      items = await this.#reader.veleroCollection('backups', namespace, signal);
    } catch (err) {
      signal.throwIfAborted();
      if (err instanceof Error) return out;
      throw err;
    }
    for (const o of items) {
      const e = kubeEntry('backups', namespace, o);
      if (e?.location !== undefined && !out.has(e.name)) out.set(e.name, e.location);
    }
    return out;
  }
}

/** NotFoundError for a namespace the gateway does not serve, or that cannot be a namespace. */
function servedNamespace(serves: (namespace: string) => boolean, namespace: string): void {
  checkServed((ns) => isDns1123Label(ns) && serves(ns), namespace);
}

/** An entry of a listed object; undefined for one without a valid name or from another namespace. */
function kubeEntry(owner: OwnerKind, namespace: string, item: unknown): CatalogEntry | undefined {
  const obj = record(item);
  if (!obj) return undefined;
  const metadata = record(own(obj, 'metadata'));
  const name = objectName(own(metadata, 'name'));
  // Whatever the API said, an entry belongs to the namespace it was listed in.
  if (name === undefined || own(metadata, 'namespace') !== namespace) return undefined;
  return { owner, namespace, name, ...fieldsOf(owner, obj) };
}

/** The defined entries, the first of each name only. */
function unique(entries: (CatalogEntry | undefined)[]): CatalogEntry[] {
  const seen = new Map<string, CatalogEntry>();
  for (const e of entries) if (e && !seen.has(e.name)) seen.set(e.name, e);
  return [...seen.values()];
}

// --- local mode ----------------------------------------------------------------------------------

export interface LocalCatalogOptions {
  /** The most entries per list (default MAX_CATALOG_ENTRIES). */
  maxEntries?: number;
  /** The most keys listed per location and folder (default MAX_CATALOG_KEYS). */
  maxKeys?: number;
  /** The largest `velero-backup.json` read (default MAX_BACKUP_METADATA_BYTES). */
  maxMetadataBytes?: number;
  /** The most `velero-backup.json` bytes read per list (default MAX_METADATA_BYTES_PER_LIST). */
  maxMetadataBytesPerList?: number;
  /** How long a listing is reused (default LOCAL_CATALOG_TTL_MS; 0: never). */
  ttlMs?: number;
}

/** One name found in one location's folder. */
interface Found {
  name: string;
  location: StoreSpec;
  size: number;
  /** The listed `velero-backup.json`, when the folder has one. */
  metadata?: ListedObject;
}

/**
 * Local mode's catalog: the one served namespace, whose backups and restores are the folders under
 * `backups/` and `restores/` of its locations (the data directory, then a --locations-file's), in
 * Velero's layout. With several locations the first that holds a name wins, as LocalResolver picks
 * the location a download is read from. A backup's phase and times come from its
 * `backups/<name>/velero-backup.json` (Velero's copy of the Backup object), read with bounds; a
 * missing, large or broken file leaves them undefined and never fails the list. A location whose
 * root does not exist holds nothing; one whose store cannot be listed (unreachable, denied) fails the
 * list with the store's error: a page without it would look complete.
 */
export class LocalCatalog implements Catalog {
  readonly #namespace: string;
  readonly #locations: readonly StoreSpec[];
  readonly #stores: StoreFactory;
  readonly #maxEntries: number;
  readonly #maxKeys: number;
  readonly #maxMetadata: number;
  readonly #maxMetadataPerList: number;
  readonly #cache: TtlCache<{ entries: CatalogEntry[] }>;

  /**
   * `namespace` is config.namespace; `locations` and `stores` are what LocalResolver and
   * LocalVolumeResolver are given in src/compose/local.ts (the data directory's spec first).
   */
  constructor(namespace: string, locations: readonly StoreSpec[], stores: StoreFactory, opts: LocalCatalogOptions = {}) {
    if (locations.length === 0) throw new Error('LocalCatalog needs at least one location');
    this.#namespace = namespace;
    this.#locations = locations;
    this.#stores = stores;
    this.#maxEntries = opts.maxEntries ?? MAX_CATALOG_ENTRIES;
    this.#maxKeys = opts.maxKeys ?? MAX_CATALOG_KEYS;
    this.#maxMetadata = opts.maxMetadataBytes ?? MAX_BACKUP_METADATA_BYTES;
    this.#maxMetadataPerList = opts.maxMetadataBytesPerList ?? MAX_METADATA_BYTES_PER_LIST;
    const ttl = opts.ttlMs ?? LOCAL_CATALOG_TTL_MS;
    this.#cache = new TtlCache({ max: 2, ttl: () => ttl });
  }

  async namespaces(signal: AbortSignal): Promise<string[]> {
    signal.throwIfAborted();
    return [this.#namespace];
  }

  async list(owner: OwnerKind, namespace: string, signal: AbortSignal): Promise<CatalogEntry[]> {
    signal.throwIfAborted();
    if (namespace !== this.#namespace) {
      throw new NotFoundError(`namespace "${namespace}" is not served by this gateway`, { kind: 'namespaces', name: namespace });
    }
    const { entries } = await this.#cache.get(owner, async (s) => ({ entries: await this.#load(owner, s) }), { signal });
    // Callers get their own copies: the cached list is shared.
    return entries.map((e) => ({ ...e }));
  }

  async #load(owner: OwnerKind, signal: AbortSignal): Promise<CatalogEntry[]> {
    const found = new Map<string, Found>();
    for (const location of this.#locations) {
      const store = await this.#stores.forSpec(location);
      for (const f of await this.#folders(owner, location, store, signal)) {
        if (found.has(f.name)) continue; // the first location that has a name wins
        found.set(f.name, f);
        if (found.size > this.#maxEntries) throw tooMany(this.#maxEntries, owner, `in namespace "${this.#namespace}" (${this.#locations.map((l) => l.name).join(', ')})`);
      }
    }
    const entries: CatalogEntry[] = [...found.values()].sort(byName).map((f) => ({ owner, namespace: this.#namespace, name: f.name, location: f.location.name, size: f.size }));
    if (owner === 'backups') await this.#readMetadata(entries, found, signal);
    return entries;
  }

  /** The names under one location's `<owner>/`, each with the summed size of its folder. */
  async #folders(owner: OwnerKind, location: StoreSpec, store: ObjectStore, signal: AbortSignal): Promise<Found[]> {
    const prefix = `${owner}/`;
    const byName = new Map<string, Found>();
    let keys = 0;
    try {
      for await (const obj of store.list(prefix, { signal })) {
        if (++keys > this.#maxKeys) {
          throw new TooManyObjectsError(`location ${location.name} has more than ${this.#maxKeys} objects under ${prefix}: the catalog lists at most ${this.#maxKeys}`);
        }
        const rest = obj.key.slice(prefix.length);
        const slash = rest.indexOf('/');
        // `<owner>/<name>/<file>`: a key without a folder, or with an empty file part, is no Velero object.
        if (slash <= 0 || slash === rest.length - 1) continue;
        const name = rest.slice(0, slash);
        if (!isDns1123Subdomain(name)) continue;
        let f = byName.get(name);
        if (!f) byName.set(name, (f = { name, location, size: 0 }));
        if (Number.isSafeInteger(obj.size) && obj.size >= 0) f.size += obj.size;
        if (rest.slice(slash + 1) === 'velero-backup.json') f.metadata = obj;
      }
    } catch (err) {
      // A location whose root does not exist (yet) holds nothing; any other failure is the list's.
      // (The stores' stable reason: velero may not import the stores' error classes as values.)
      if ((err as { reason?: unknown } | null)?.reason !== 'ObjectNotFound' || signal.aborted) throw err;
      return [];
    }
    return [...byName.values()];
  }

  /** Fills phase, times and counts from each backup's `velero-backup.json`, a few files at a time, within the bounds. */
  async #readMetadata(entries: CatalogEntry[], found: ReadonlyMap<string, Found>, signal: AbortSignal): Promise<void> {
    let budget = this.#maxMetadataPerList;
    const work = entries.filter((e) => {
      const meta = found.get(e.name)?.metadata;
      if (!meta || meta.size > this.#maxMetadata || meta.size > budget) return false;
      budget -= meta.size;
      return true;
    });
    await mapLimited(work, METADATA_READS_AT_ONCE, async (entry) => {
      const f = found.get(entry.name)!;
      const doc = await this.#backupDocument(f, signal);
      if (doc) Object.assign(entry, fieldsOf('backups', doc), { location: f.location.name });
    });
  }

  /**
   * The parsed `velero-backup.json` of a backup, when it is a JSON object naming that backup within
   * the byte bound; undefined otherwise (missing, too large, not JSON, another backup's, unreadable).
   * Only an abort propagates.
   */
  async #backupDocument(f: Found, signal: AbortSignal): Promise<Record<string, unknown> | undefined> {
    const key = `backups/${f.name}/velero-backup.json`;
    try {
      const bytes = await bytesOf(await (await this.#stores.forSpec(f.location)).get(key, { signal }), this.#maxMetadata);
      if (!bytes) return undefined;
      const doc = record(JSON.parse(bytes.toString('utf8')));
      const name = own(record(own(doc, 'metadata')), 'name');
      return doc && name === f.name ? doc : undefined;
    } catch (err) {
      signal.throwIfAborted();
      if (err instanceof Error) return undefined;
      throw err;
    }
  }
}

