/**
 * Turns a StoreSpec into an ObjectStore. Network clients are built lazily (their SDK is imported on
 * first use) and cached by a digest of everything that shapes them: provider, bucket, prefix, config,
 * credential and CA bundle. A rotated credential or CA therefore yields a new client, while downloads
 * already running on the old one finish undisturbed: a client leaving the cache (LRU bound, or idle
 * too long) is closed only once nothing uses it.
 *
 * Filesystem locations live under a mount root: the bucket is a directory below it
 * (local-volume-provider's layout) and the prefix a directory below that.
 */
import type { PromiseOr } from '../util/promise-or.ts';
import { createHash } from 'node:crypto';
import { resolve } from 'node:path';
import { LRUCache } from 'lru-cache';
import { DEFAULT_MAX_SOCKETS, DEFAULT_TIMEOUTS } from './adapter.ts';
import type { AdapterOptions, ClosableStore, Timeouts } from './adapter.ts';
import { createEndpointPolicy } from './endpoint-guard.ts';
import type { EndpointPolicy, EndpointResolver } from './endpoint-guard.ts';
import { InvalidLocationError } from './errors.ts';
import { refuseTenantFileSettings } from './file-settings.ts';
import { FilesystemStore } from './fs.ts';
import { keySegments, normalizePrefix } from './keys.ts';
import { providerKind } from './spec.ts';
import type { StoreFactory, StoreSpec } from './spec.ts';
import { trustFor } from './trust.ts';
import type { GetOptions, ListedObject, ListOptions, ObjectBody, ObjectInfo, ObjectStore, StatOptions } from './types.ts';

export const FILESYSTEM_PROVIDERS: ReadonlySet<string> = new Set([
  'filesystem',
  'replicated.com/hostpath',
  'replicated.com/nfs',
  'replicated.com/pvc',
]);

export type AdapterConstructor = (opts: AdapterOptions) => ClosableStore;

/** The network adapters by provider; each module is imported on first use. */
const BUILTIN_ADAPTERS: Record<string, () => Promise<AdapterConstructor>> = {
  aws: async () => {
    const { S3Store } = await import('./s3.ts');
    return (o) => new S3Store(o);
  },
  azure: async () => {
    const { AzureBlobStore } = await import('./azure.ts');
    return (o) => new AzureBlobStore(o);
  },
  gcp: async () => {
    const { GcsStore } = await import('./gcs.ts');
    return (o) => new GcsStore(o);
  },
};

export { providerKind };

export interface FactoryOptions {
  /** Where filesystem locations' buckets are directories. */
  fsRoot: string;
  /** Install-time CA bundle (PEM) trusted for every location, with the system roots. */
  installCaBundle?: string;
  /** The gateway's default credential file's bytes, for locations without their own (when allowed). */
  defaultCredential?: Uint8Array;
  timeouts?: Timeouts;
  maxSockets?: number;
  /** Clients kept at most (LRU). */
  maxClients?: number;
  /** A client unused this long is closed. */
  idleMs?: number;
  /**
   * `--tenant-endpoint-allow`: CIDRs and host names / `*.` globs tenants' endpoints may reach although
   * internal. Applies to specs with `tenant: true`. A bad entry makes the constructor throw.
   */
  tenantEndpointAllow?: readonly string[];
  /** Replaces DNS for tenants' connections (tests). */
  tenantEndpointResolver?: EndpointResolver;
  /** Told once per client when a location turns TLS verification off. */
  onInsecure?: (location: string) => void;
  /** Replaces the built-in adapters (tests). */
  adapters?: Record<string, () => Promise<AdapterConstructor>>;
}

/** One cached client and the operations running on it. */
class Entry {
  readonly store: ClosableStore;
  #inflight = 0;
  #retired = false;
  #closed: Promise<void> | undefined;

  constructor(store: ClosableStore) {
    this.store = store;
  }

  get inflight(): number {
    return this.#inflight;
  }

  acquire(): () => void {
    this.#inflight++;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.#inflight--;
      if (this.#retired && this.#inflight === 0) void this.#close();
    };
  }

  retire(): void {
    this.#retired = true;
    if (this.#inflight === 0) void this.#close();
  }

  #close(): Promise<void> {
    this.#closed ??= this.store.close().catch(() => undefined);
    return this.#closed;
  }
}

/** The view of a cached client handed out per request: counts what runs on it until it ends. */
class CountedStore implements ObjectStore {
  readonly #entry: Entry;
  constructor(entry: Entry) {
    this.#entry = entry;
  }

  /** The cached client this view runs on: the same object for every view of it, until it is replaced. */
  get client(): object {
    return this.#entry;
  }

  async stat(key: string, opts: StatOptions): Promise<ObjectInfo> {
    const release = this.#entry.acquire();
    try {
      return await this.#entry.store.stat(key, opts);
    } finally {
      release();
    }
  }

  async get(key: string, opts: GetOptions): Promise<ObjectBody> {
    const release = this.#entry.acquire();
    try {
      return releasedWith(await this.#entry.store.get(key, opts), release);
    } catch (err) {
      release();
      throw err;
    }
  }

  /** The client stays open until the iteration ends, however it ends (a `for await` that breaks ends it too). */
  async *list(prefix: string, opts: ListOptions): AsyncGenerator<ListedObject> {
    const release = this.#entry.acquire();
    try {
      yield* this.#entry.store.list(prefix, opts);
    } finally {
      release();
    }
  }
}

/** The body, calling `release` once it is done with (the client stays open until then), however it ends. */
function releasedWith(obj: ObjectBody, release: () => void): ObjectBody {
  if (obj.kind === 'stream') {
    obj.body.once('close', release);
    return obj;
  }
  const { reader, stream } = obj;
  return {
    ...obj,
    reader: {
      read: (...args) => reader.read(...args),
      ...(reader.readSync && { readSync: reader.readSync.bind(reader) }),
      close: () => {
        const closing = reader.close();
        if (closing instanceof Promise) return closing.finally(release);
        release();
      },
    },
    stream() {
      const body = stream();
      body.once('close', release);
      return body;
    },
  };
}

/**
 * The identity of the client under a store the factory handed out (the same for every view of one
 * cached client, and a new one once a changed credential or CA builds a new client); any other
 * store is its own identity. What is cached per location (a Kopia repository) is keyed by it.
 */
export function clientIdentity(store: ObjectStore): object {
  return store instanceof CountedStore ? store.client : store;
}

export class DefaultStoreFactory implements StoreFactory {
  readonly #opts: FactoryOptions;
  readonly #adapters: Record<string, () => Promise<AdapterConstructor>>;
  readonly #fsStores = new Map<string, FilesystemStore>();
  /** Per spec: its filesystem store, or the digest its network client is cached under. */
  readonly #known = new WeakMap<StoreSpec, FilesystemStore | string>();
  readonly #clients: LRUCache<string, Entry>;
  readonly #building = new Map<string, Promise<Entry>>();
  readonly #tenantPolicy: EndpointPolicy;

  constructor(opts: FactoryOptions) {
    this.#opts = opts;
    this.#tenantPolicy = createEndpointPolicy(opts.tenantEndpointAllow, opts.tenantEndpointResolver);
    this.#adapters = opts.adapters ?? BUILTIN_ADAPTERS;
    this.#clients = new LRUCache<string, Entry>({
      max: opts.maxClients ?? 64,
      ttl: opts.idleMs ?? 10 * 60_000,
      updateAgeOnGet: true,
      ttlAutopurge: true,
      dispose: (entry) => entry.retire(),
    });
  }

  /** How many network clients are cached now. */
  get clientCount(): number {
    return this.#clients.size;
  }

  /**
   * The store of a location: at once when it is known (a filesystem store, a cached client), else once
   * its client is built. A tenant's location naming a file or a program on the gateway is refused
   * here first (TenantSettingRefusedError), before any adapter is loaded or built: no file is touched,
   * no connection made.
   */
  forSpec(spec: StoreSpec): PromiseOr<ObjectStore> {
    // A spec is a value, never changed once made (kubernetes mode's are frozen): what was worked out
    // for it, its filesystem store or its client's digest (three SHA-256 and a JSON text), is reused.
    const known = this.#known.get(spec);
    if (known instanceof FilesystemStore) return known;
    refuseTenantFileSettings(spec);
    if (FILESYSTEM_PROVIDERS.has(spec.provider)) {
      const store = this.#filesystem(spec);
      this.#known.set(spec, store);
      return store;
    }
    const kind = providerKind(spec.provider);
    const load = this.#adapters[kind];
    if (!load) throw new InvalidLocationError(`location ${spec.name}: provider "${spec.provider}" is not supported`);
    if (known !== undefined) {
      const cached = this.#clients.get(known);
      if (cached) return new CountedStore(cached);
    }

    const allowDefault = spec.allowDefaultCredential !== false;
    const credential = spec.credential ?? (allowDefault ? this.#opts.defaultCredential : undefined);
    const options: Omit<AdapterOptions, 'trust'> = {
      spec: { ...spec, ...(credential && { credential }) },
      ambientCredentials: allowDefault && credential === undefined,
      timeouts: this.#opts.timeouts ?? DEFAULT_TIMEOUTS,
      maxSockets: this.#opts.maxSockets ?? DEFAULT_MAX_SOCKETS,
      ...(spec.tenant === true && { endpointPolicy: this.#tenantPolicy }),
    };
    const digest = known ?? clientDigest(options);
    this.#known.set(spec, digest);
    const cached = this.#clients.get(digest);
    if (cached) return new CountedStore(cached);

    let building = this.#building.get(digest);
    if (!building) {
      building = (async () => {
        const construct = await load();
        const trust = trustFor(spec.name, spec.config, spec.caBundle, this.#opts.installCaBundle);
        if (!trust.rejectUnauthorized) this.#opts.onInsecure?.(spec.name);
        const entry = new Entry(construct({ ...options, trust }));
        this.#clients.set(digest, entry);
        return entry;
      })().finally(() => this.#building.delete(digest));
      this.#building.set(digest, building);
    }
    return building.then((entry) => new CountedStore(entry));
  }

  /** Closes every cached client (on shutdown), waiting for none of the running downloads. */
  close(): void {
    this.#clients.clear();
  }

  #filesystem(spec: StoreSpec): FilesystemStore {
    // Bucket and prefix are configuration, yet they still must not climb out of the mount root.
    const bucket = spec.bucket === '' ? [] : keySegments(spec.bucket);
    const prefix = normalizePrefix(spec.prefix);
    const root = resolve(this.#opts.fsRoot, ...bucket, ...(prefix === '' ? [] : prefix.split('/')));
    let store = this.#fsStores.get(root);
    if (!store) {
      store = new FilesystemStore({ root });
      this.#fsStores.set(root, store);
    }
    return store;
  }
}

/**
 * A digest of everything that shapes a client; credential and CA enter only as their own digests. A
 * tenant's client (under the endpoint policy) is never an admin's client of the same spec.
 */
function clientDigest(o: Omit<AdapterOptions, 'trust'>): string {
  const h = (b: Uint8Array | string | undefined): string => (b === undefined ? '' : createHash('sha256').update(b).digest('hex'));
  const config = Object.entries(o.spec.config).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  return h(
    JSON.stringify([
      o.spec.name, // messages name the location, so two names are two clients
      providerKind(o.spec.provider),
      o.spec.bucket,
      normalizePrefix(o.spec.prefix),
      config,
      h(o.spec.credential),
      h(o.spec.caBundle),
      o.ambientCredentials,
      o.endpointPolicy?.allow.entries ?? null,
    ]),
  );
}
