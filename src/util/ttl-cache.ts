/**
 * A bounded cache of lookups with a TTL chosen per value (e.g. allowed vs denied, found vs missing),
 * as kube-apiserver's webhook authenticator and authorizer cache reviews: errors are never cached and
 * identical lookups in flight are merged into one call. `keyOf` gives SHA-256 digests salted with a
 * per-process random value, so no token is ever held as a map key (or could be recovered from a heap
 * dump of the keys).
 */
import { hash, randomBytes } from 'node:crypto';
import { LRUCache } from 'lru-cache';
import { abortable } from './abortable.ts';
import type { PromiseOr } from './promise-or.ts';

/** A load in flight and who waits for it. */
interface Inflight<V> {
  promise: Promise<V>;
  controller: AbortController;
  /** Callers with a signal still waiting. */
  waiters: number;
  /** A caller without a signal joined: never dropped. */
  pinned: boolean;
  settled: boolean;
}

export interface CacheStats {
  hits: number;
  misses: number;
  /** Callers that joined a lookup already in flight. */
  merged: number;
}

export class TtlCache<V extends object> {
  readonly #salt = randomBytes(32).toString('base64');
  readonly #cache: LRUCache<string, V>;
  readonly #inflight = new Map<string, Inflight<V>>();
  readonly #ttl: (value: V) => number;
  readonly stats: CacheStats = { hits: 0, misses: 0, merged: 0 };

  /** `ttl` decides per value (ms); 0 means do not cache. */
  constructor(opts: { max: number; ttl: (value: V) => number }) {
    this.#ttl = opts.ttl;
    this.#cache = new LRUCache<string, V>({ max: opts.max, ttlAutopurge: false, allowStale: false });
  }

  /**
   * The cache key of some parts (a token, a user and attributes...): a salted digest, never the parts
   * themselves. Each part is length-prefixed, so different splits never collide. A one-shot hash, not
   * an HMAC: createHmac builds a KeyObject per call, which was 12% of the gateway's CPU on small
   * downloads; equality lookups need no MAC.
   */
  keyOf(...parts: string[]): string {
    let text = this.#salt;
    for (const p of parts) text += `${p.length}:${p}`;
    return hash('sha256', text, 'base64url');
  }

  /**
   * The cached value for `key` (at once: no promise on a hit), or the result of `load()`, shared with
   * every concurrent caller of the same key. A thrown load is never cached.
   *
   * - `signal`: this caller stops waiting when it aborts. When every caller of a load in flight has
   *   left that way, the load's own signal aborts and the load is dropped (a review nobody waits for
   *   any more is not worth its API call); a caller without a signal keeps the load alive.
   * - `admit`: runs only when this call would start a new load (not on a hit, not when joining one in
   *   flight); throwing refuses the call before anything is loaded (a per-client limit on misses).
   */
  get(key: string, load: (signal: AbortSignal) => Promise<V>, opts?: { signal?: AbortSignal; admit?: () => void }): PromiseOr<V> {
    return this.peek(key) ?? this.#load(key, load, opts ?? {});
  }

  /** The cached value for `key` (a hit), or undefined: nothing is loaded. */
  peek(key: string): V | undefined {
    const cached = this.#cache.get(key);
    if (cached !== undefined) this.stats.hits++;
    return cached;
  }

  /** A miss: join the load in flight for `key` or start one. */
  async #load(key: string, load: (signal: AbortSignal) => Promise<V>, opts: { signal?: AbortSignal; admit?: () => void }): Promise<V> {
    const { signal } = opts;
    signal?.throwIfAborted();
    let entry = this.#inflight.get(key);
    if (entry) {
      this.stats.merged++;
    } else {
      opts.admit?.();
      this.stats.misses++;
      entry = this.#start(key, load);
    }
    if (!signal) {
      entry.pinned = true;
      return entry.promise;
    }
    entry.waiters++;
    try {
      return await abortable(entry.promise, signal);
    } finally {
      entry.waiters--;
      if (entry.waiters === 0 && !entry.pinned && !entry.settled) {
        entry.controller.abort(signal.reason);
        if (this.#inflight.get(key) === entry) this.#inflight.delete(key);
      }
    }
  }

  #start(key: string, load: (signal: AbortSignal) => Promise<V>): Inflight<V> {
    const controller = new AbortController();
    const entry: Inflight<V> = { controller, waiters: 0, pinned: false, settled: false, promise: Promise.resolve() as unknown as Promise<V> };
    entry.promise = (async () => {
      try {
        const value = await load(controller.signal);
        const ttl = this.#ttl(value);
        if (ttl > 0 && !controller.signal.aborted) this.#cache.set(key, value, { ttl });
        return value;
      } finally {
        entry.settled = true;
        if (this.#inflight.get(key) === entry) this.#inflight.delete(key);
      }
    })();
    // Rejections reach every caller through their own await; none is left unhandled when all left.
    entry.promise.catch(() => undefined);
    this.#inflight.set(key, entry);
    return entry;
  }

  /** Stores a value loaded elsewhere (a fresh read that must not join a load already in flight). */
  set(key: string, value: V): void {
    const ttl = this.#ttl(value);
    if (ttl > 0) this.#cache.set(key, value, { ttl });
    else this.#cache.delete(key);
  }

  get size(): number {
    return this.#cache.size;
  }
}
