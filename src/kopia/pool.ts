/**
 * Open repositories shared across requests. PLACEHOLDER: opens once per (store instance, prefix,
 * naming, password) and keeps it; the byte-budgeted caches and the index's maximum age replace this.
 */
import { createHash } from 'node:crypto';
import type { ObjectStore } from '../stores/types.ts';
import type { BlobNaming } from './blobs.ts';
import type { KeyCache } from './key-cache.ts';
import { openRepository } from './repository.ts';
import type { Repository } from './repository.ts';

export interface RepositoryPoolOptions {
  keys?: KeyCache;
}

export interface PoolOpenOptions {
  prefix: string;
  naming?: BlobNaming;
  password: string;
  signal: AbortSignal;
}

export class RepositoryPool {
  readonly #keys: KeyCache | undefined;
  readonly #ids = new WeakMap<ObjectStore, number>();
  #nextID = 0;
  readonly #open = new Map<string, Promise<Repository>>();

  constructor(opts: RepositoryPoolOptions = {}) {
    this.#keys = opts.keys;
  }

  /** The repository at `prefix` of `store`, opened once and shared; a failed open is not kept. */
  open(store: ObjectStore, opts: PoolOpenOptions): Promise<Repository> {
    let id = this.#ids.get(store);
    if (id === undefined) this.#ids.set(store, (id = this.#nextID++));
    const key = `${id}\0${opts.naming ?? 'object'}\0${opts.prefix}\0${createHash('sha256').update(opts.password).digest('hex')}`;
    let p = this.#open.get(key);
    if (!p) {
      p = openRepository(store, { prefix: opts.prefix, naming: opts.naming ?? 'object', password: opts.password, signal: opts.signal, ...(this.#keys && { keys: this.#keys }) });
      this.#open.set(key, p);
      p.catch(() => this.#open.delete(key));
    }
    return p;
  }
}
