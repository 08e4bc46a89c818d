/**
 * Reads of the few objects the gateway resolves (Velero custom resources and Secrets), behind a
 * short-lived cache: a changed BackupStorageLocation or a rotated Secret is used within seconds, while
 * a burst of downloads costs the API server one GET. A missing object is cached briefly too; API
 * failures are never cached and surface as KubeUnavailableError.
 */
import type { V1Secret } from '@kubernetes/client-node';
import { TtlCache } from '../util/ttl-cache.ts';
import type { PromiseOr } from '../util/promise-or.ts';
import { RateLimitedError } from '../util/rate-limited.ts';
import type { BudgetName, KubeClients } from './client.ts';
import { describeApiFailure, statusOf } from './client.ts';
import { KubeUnavailableError, TooManyObjectsError } from './errors.ts';

export { KubeUnavailableError, TooManyObjectsError };


/** A Velero object as the API returns it; fields are read defensively. */
export interface KubeObject {
  apiVersion?: string;
  kind?: string;
  metadata?: {
    name?: string;
    namespace?: string;
    uid?: string;
    creationTimestamp?: string | Date;
    annotations?: Record<string, string>;
    labels?: Record<string, string>;
    ownerReferences?: { apiVersion?: string; kind?: string; name?: string; uid?: string }[];
    resourceVersion?: string;
  };
  spec?: Record<string, unknown>;
  status?: Record<string, unknown>;
}

export type VeleroPlural = 'backups' | 'restores' | 'downloadrequests' | 'backupstoragelocations';

/** Kanister's Profile (`cr.kanister.io/v1alpha1`): its settings are top-level fields, not a spec. */
export type KanisterProfile = KubeObject & { location?: unknown; credential?: unknown; skipSSLVerify?: unknown };

/** The Velero kinds listed by label, each at the API version Velero serves it in. */
export const VELERO_LISTED = { podvolumebackups: 'v1', datauploads: 'v2alpha1' } as const;
export type VeleroListedPlural = keyof typeof VELERO_LISTED;

/**
 * The most objects one labelled list returns. A list is one API call (`limit` one above this); a
 * namespace with more matching objects is refused (TooManyObjectsError) rather than paged without end.
 */
export const MAX_LISTED_OBJECTS = 2_000;

/** Lists kept at once: a list may hold MAX_LISTED_OBJECTS objects, so far fewer than single objects. */
const MAX_CACHED_LISTS = 32;

/** How one read is made. */
export interface ReadOptions {
  /** The API budget a read that misses the cache is charged to (default `objects`). */
  budget?: BudgetName;
  /** Skip the cache and read from the API server now (the result is cached for the next callers). */
  fresh?: boolean;
}

export interface ObjectReader {
  /** The object, or undefined when it does not exist. */
  velero(plural: VeleroPlural, namespace: string, name: string, signal: AbortSignal, opts?: ReadOptions): PromiseOr<KubeObject | undefined>;
  secret(namespace: string, name: string, signal: AbortSignal): PromiseOr<V1Secret | undefined>;
  /**
   * The objects of a Velero kind in `namespace` whose labels match `labelSelector` (e.g.
   * `velero.io/backup-name=nightly`); [] when there are none or the kind is not installed (404).
   */
  veleroList(plural: VeleroListedPlural, namespace: string, labelSelector: string, signal: AbortSignal, opts?: ReadOptions): Promise<KubeObject[]>;
}

/** The Velero kinds the catalog lists whole (no label selector), at velero.io/v1. */
export type CatalogPlural = 'backups' | 'restores';

/** Lists Backups and Restores for the catalog page (apart from ObjectReader: only the catalog needs them). */
export interface CatalogReader {
  /**
   * Every object of `plural` in `namespace`, or in every namespace when `namespace` is `''` (as the
   * API's own collection paths do); [] when there are none or the kind is not installed (404). One
   * API call with `limit`: more than the reader's cap (MAX_LISTED_OBJECTS) is TooManyObjectsError.
   * Cached like veleroList.
   */
  veleroCollection(plural: CatalogPlural, namespace: string, signal: AbortSignal, opts?: ReadOptions): Promise<KubeObject[]>;
}

/** Reads Kanister Profiles (apart from ObjectReader: only the Profile routes need them). */
export interface ProfileReader {
  /** The Profile, or undefined when it (or Kanister's CRD) does not exist. */
  profile(namespace: string, name: string, signal: AbortSignal): Promise<KanisterProfile | undefined>;
}

interface ListPage {
  metadata?: { continue?: string };
  items?: unknown;
}

interface Found<T> {
  value: T | undefined;
}

export interface CachedReaderOptions {
  /** How long a found object is reused. */
  ttlMs: number;
  /** How long "not found" is reused. */
  missingTtlMs: number;
  max: number;
  /** The most objects a labelled list may return (default MAX_LISTED_OBJECTS). */
  maxListed?: number;
}

/** The cache key of one custom object (the peek of a warm read and the read itself use the same). */
const objectKey = (group: string, plural: string, namespace: string, name: string): string => `${group}/${plural}/${namespace}/${name}`;

export class CachedObjectReader implements ObjectReader, ProfileReader, CatalogReader {
  readonly #kube: KubeClients;
  readonly #cache: TtlCache<Found<unknown>>;
  readonly #lists: TtlCache<Found<unknown>>;
  readonly #maxListed: number;

  constructor(kube: KubeClients, opts: CachedReaderOptions = { ttlMs: 5_000, missingTtlMs: 2_000, max: 5_000 }) {
    this.#kube = kube;
    const ttl = (f: Found<unknown>): number => (f.value === undefined ? opts.missingTtlMs : opts.ttlMs);
    this.#cache = new TtlCache<Found<unknown>>({ max: opts.max, ttl });
    this.#lists = new TtlCache<Found<unknown>>({ max: Math.min(opts.max, MAX_CACHED_LISTS), ttl });
    this.#maxListed = opts.maxListed ?? MAX_LISTED_OBJECTS;
  }

  velero(plural: VeleroPlural, namespace: string, name: string, signal: AbortSignal, opts?: ReadOptions): PromiseOr<KubeObject | undefined> {
    // A cached object comes at once: no promise on the download path's warm reads (util/promise-or.ts).
    const hit = opts?.fresh ? undefined : this.#cache.peek(objectKey('velero.io', plural, namespace, name));
    if (hit) return hit.value as KubeObject | undefined;
    return this.#custom({ group: 'velero.io', version: 'v1', plural }, namespace, name, signal, opts);
  }

  /** Cached like Velero's objects: a changed Profile is used within the cache's lifetime. */
  profile(namespace: string, name: string, signal: AbortSignal): Promise<KanisterProfile | undefined> {
    return this.#custom({ group: 'cr.kanister.io', version: 'v1alpha1', plural: 'profiles' }, namespace, name, signal);
  }

  async #custom(type: { group: string; version: string; plural: string }, namespace: string, name: string, signal: AbortSignal, opts: ReadOptions = {}): Promise<KubeObject | undefined> {
    const key = objectKey(type.group, type.plural, namespace, name);
    const budget = opts.budget ?? 'objects';
    const load = (s: AbortSignal): Promise<Found<unknown>> =>
      this.#read(`${type.plural}.${type.group}`, namespace, name, s, budget, (o) =>
        this.#kube.custom.getNamespacedCustomObject({ ...type, namespace, name }, o) as Promise<KubeObject>,
      );
    if (opts.fresh) {
      // Not merged with a read already in flight: that one may have started before the change looked
      // for. Only what was found is kept for others; an absence read now is not cached.
      const found = await load(signal);
      if (found.value !== undefined) this.#cache.set(key, found);
      return found.value as KubeObject | undefined;
    }
    const found = await this.#cache.get(key, load, { signal });
    return found.value as KubeObject | undefined;
  }

  /**
   * Cached like single objects (found for ttlMs, an empty list for missingTtlMs), keyed by kind,
   * namespace and selector; concurrent identical lists share one API call.
   */
  async veleroList(plural: VeleroListedPlural, namespace: string, labelSelector: string, signal: AbortSignal, opts: ReadOptions = {}): Promise<KubeObject[]> {
    const version = VELERO_LISTED[plural];
    return this.#list(`list/${plural}/${namespace}/${labelSelector}`, `${plural}.velero.io`, namespace, `?labelSelector=${labelSelector}`, `in namespace "${namespace}" match ${labelSelector}`, signal, opts, (limit, o) =>
      this.#kube.custom.listNamespacedCustomObject({ group: 'velero.io', version, plural, namespace, labelSelector, limit }, o) as Promise<ListPage>,
    );
  }

  /** Cached and capped like veleroList, in the same cache (keyed apart: no selector). */
  async veleroCollection(plural: CatalogPlural, namespace: string, signal: AbortSignal, opts: ReadOptions = {}): Promise<KubeObject[]> {
    const type = { group: 'velero.io', version: 'v1', plural };
    const where = namespace === '' ? 'in the cluster' : `in namespace "${namespace}"`;
    return this.#list(`collection/${plural}/${namespace}`, `${plural}.velero.io`, namespace === '' ? '(every namespace)' : namespace, '(list)', where, signal, opts, (limit, o) =>
      (namespace === ''
        ? this.#kube.custom.listClusterCustomObject({ ...type, limit }, o)
        : this.#kube.custom.listNamespacedCustomObject({ ...type, namespace, limit }, o)) as Promise<ListPage>,
    );
  }

  /**
   * One list call (`limit` one above the cap) behind the lists' cache; a list that is longer, or
   * that the API server would continue, is TooManyObjectsError (`where` says what overflowed).
   */
  async #list(
    key: string,
    what: string,
    namespace: string,
    name: string,
    where: string,
    signal: AbortSignal,
    opts: ReadOptions,
    get: (limit: number, o: Parameters<Parameters<KubeClients['call']>[1]>[0]) => Promise<ListPage>,
  ): Promise<KubeObject[]> {
    const max = this.#maxListed;
    const found = await this.#lists.get(
      key,
      async (s) => {
        const page = await this.#read(what, namespace, name, s, opts.budget ?? 'objects', (o) => get(max + 1, o));
        const items = page.value?.items;
        if (page.value?.metadata?.continue || (Array.isArray(items) && items.length > max)) {
          throw new TooManyObjectsError(`more than ${max} ${what} ${where}`);
        }
        // An empty list is kept only as long as an absence: objects appear while a backup runs.
        return { value: Array.isArray(items) && items.length > 0 ? (items as KubeObject[]) : undefined };
      },
      { signal },
    );
    return (found.value as KubeObject[] | undefined) ?? [];
  }

  secret(namespace: string, name: string, signal: AbortSignal): PromiseOr<V1Secret | undefined> {
    const key = `secret/${namespace}/${name}`;
    const hit = this.#cache.peek(key);
    if (hit) return hit.value as V1Secret | undefined;
    return this.#secretRead(key, namespace, name, signal);
  }

  async #secretRead(key: string, namespace: string, name: string, signal: AbortSignal): Promise<V1Secret | undefined> {
    const found = await this.#cache.get(key, (s) => this.#read('secrets', namespace, name, s, 'objects', (o) => this.#kube.core.readNamespacedSecret({ namespace, name }, o)), { signal });
    return found.value as V1Secret | undefined;
  }

  /**
   * One read, shared by concurrent callers through the cache: it runs until the last of them leaves
   * (then it is dropped) or the client's call timeout ends it.
   */
  async #read<T>(
    what: string,
    namespace: string,
    name: string,
    signal: AbortSignal,
    budget: BudgetName,
    get: (o: Parameters<Parameters<KubeClients['call']>[1]>[0]) => Promise<T>,
  ): Promise<Found<T>> {
    try {
      return { value: await this.#kube.call(signal, get, budget) };
    } catch (err) {
      if (err instanceof RateLimitedError || signal.aborted) throw err;
      const code = statusOf(err);
      if (code === 404) return { value: undefined };
      const retry = Number((err as { headers?: Record<string, string> }).headers?.['retry-after']);
      throw new KubeUnavailableError(
        `reading ${what} ${namespace}/${name} from the Kubernetes API failed (${describeApiFailure(err)})`,
        Number.isFinite(retry) && retry > 0 ? retry : 5,
      );
    }
  }
}
