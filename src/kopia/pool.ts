/**
 * Open repositories shared across requests, and the one memory budget their caches share.
 *
 * Who reaches it: every volume request, after authentication and authorization, with a store built
 * for the backup's own location (a tenant's store carries only the tenant's credentials), the
 * repository prefix derived from the backup, and the password from Velero's Secret. What it trusts:
 * nothing of a caller's naming. A repository is shared only by callers holding the very same
 * ObjectStore instance (an identity, never a caller-supplied name: two tenants' stores pointing at
 * the same bucket with different credentials never share what one of them opened), the same prefix
 * and naming, and the same password (kept only as an HMAC under a per-pool random key, so a wrong
 * password never rides on a repository opened with the right one). Hostile values: a prefix or
 * password only selects which repository is opened and is checked by the open itself (a wrong
 * password fails the AES-GCM tag of the format blob); a flood of distinct keys is bounded by the
 * number of repositories kept (least recently used dropped) and by the key cache's derivation limit.
 *
 * Memory: every repository's content index (45 B per content with kopia's default hashes: 45 MB
 * per million contents, ~61 MB of RSS per million measured), directory objects (~240 B per entry)
 * and manifests share one budget (default 256 MiB, about 5.9 million index entries as the budget
 * counts them: their packed bytes; the process's RSS for as many was measured at ~61 B per entry,
 * ~365 MB); what falls out is loaded again when next needed.
 */
import { createHmac, randomBytes } from 'node:crypto';
import type { ObjectStore } from '../stores/types.ts';
import type { BlobNaming } from './blobs.ts';
import { ByteLRU } from './byte-lru.ts';
import type { ByteLRUStats } from './byte-lru.ts';
import { Flights } from './flight.ts';
import type { KeyCache } from './key-cache.ts';
import { DEFAULT_CACHE_BYTES, openRepository } from './repository.ts';
import type { Repository, RepositoryCacheOptions } from './repository.ts';

export interface RepositoryPoolOptions extends Omit<RepositoryCacheOptions, 'cache'> {
  /** Derived keys shared across opens; without it every open derives its key again. */
  keys?: KeyCache;
  /** The memory budget shared by all repositories' indexes, directories and manifests (bytes; default 256 MiB). */
  cacheBytes?: number;
  /** Repositories kept open (least recently used dropped first; default 64). */
  maxRepositories?: number;
  /** Time bound of one open, shared by every caller waiting for it (ms; default 2 min). */
  openTimeoutMs?: number;
}

export interface PoolOpenOptions {
  /** Key prefix of the repository in the store (`<bsl prefix>/kopia/<ns>/` for Velero). */
  prefix: string;
  /** Blob naming: `object` (default) or `filesystem`. */
  naming?: BlobNaming;
  password: string;
  /** This caller's wait: its abort rejects this call only, never the open others share. */
  signal: AbortSignal;
  /**
   * The identity of the client under `store`, when several store objects share one (a factory that
   * hands out a view per request over one cached client): repositories are shared by identity, so
   * without it every new view would open its repository again. Default: the store itself.
   */
  client?: object;
}

export class RepositoryPool {
  /** The shared budget (its stats() for metrics). */
  readonly cache: ByteLRU;
  readonly #keys: KeyCache | undefined;
  readonly #repoOptions: Omit<RepositoryCacheOptions, 'cache'>;
  readonly #maxRepositories: number;
  readonly #ids = new WeakMap<object, number>();
  #nextID = 1;
  readonly #secret = randomBytes(32);
  /** Insertion order is recency order: a hit re-inserts. */
  readonly #open = new Map<string, Repository>();
  readonly #opening: Flights<string>;

  constructor(opts: RepositoryPoolOptions = {}) {
    const { keys, cacheBytes = DEFAULT_CACHE_BYTES, maxRepositories = 64, openTimeoutMs = 120_000, ...repoOptions } = opts;
    if (!Number.isSafeInteger(maxRepositories) || maxRepositories < 1) throw new RangeError(`maxRepositories must be a positive integer, not ${maxRepositories}`);
    this.cache = new ByteLRU(cacheBytes);
    this.#keys = keys;
    this.#repoOptions = repoOptions;
    this.#maxRepositories = maxRepositories;
    this.#opening = new Flights(openTimeoutMs);
  }

  #key(store: ObjectStore, opts: PoolOpenOptions): string {
    const client = opts.client ?? store;
    let id = this.#ids.get(client);
    if (id === undefined) this.#ids.set(client, (id = this.#nextID++));
    const password = createHmac('sha256', this.#secret).update(opts.password).digest('base64');
    return JSON.stringify([id, opts.naming ?? 'object', opts.prefix, password]);
  }

  /**
   * The repository at `prefix` of `store`, opened once and shared (single flight per key). The open
   * runs under the pool's own signal, bounded by `openTimeoutMs`; it is abandoned only when every
   * caller waiting for it has gone. A failed open is not kept: the next call tries again.
   */
  async open(store: ObjectStore, opts: PoolOpenOptions): Promise<Repository> {
    opts.signal.throwIfAborted();
    const key = this.#key(store, opts);
    const known = this.#open.get(key);
    if (known) {
      this.#open.delete(key);
      this.#open.set(key, known);
      return known;
    }
    return this.#opening.run(key, 'opening the repository', opts.signal, async (signal) => {
      const repo = await openRepository(store, {
        prefix: opts.prefix,
        naming: opts.naming ?? 'object',
        password: opts.password,
        signal,
        cache: this.cache,
        ...(this.#keys && { keys: this.#keys }),
        ...this.#repoOptions,
      });
      signal.throwIfAborted();
      this.#open.set(key, repo);
      for (const [oldest, old] of this.#open) {
        if (this.#open.size <= this.#maxRepositories) break;
        this.#open.delete(oldest);
        old.dropCaches();
      }
      return repo;
    });
  }

  /** Repositories open now. */
  get size(): number {
    return this.#open.size;
  }

  /** The shared budget's figures: bytes held, entries, hits, misses, evictions. */
  stats(): ByteLRUStats & { repositories: number; opening: number } {
    return { ...this.cache.stats(), repositories: this.#open.size, opening: this.#opening.size };
  }
}
