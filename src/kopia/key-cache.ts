/**
 * Password key derivation, cached. Deriving a repository's format key costs ~0.1–0.2 s of CPU and
 * 64 MiB (scrypt-65536-8-1) or ~0.3 s (pbkdf2-sha256-600000): a request that forced one each time
 * would make every download a denial-of-service amplifier. So a derivation is done once per
 * (algorithm, salt, password) and kept; callers asking while it runs share it (single flight); at
 * most `concurrency` run at once, and at most `queue` more wait: beyond that the caller is refused at
 * once (KeyDerivationBusyError) rather than queue without bound. A failed derivation is not kept.
 */
import { createHash } from 'node:crypto';
import { KeyDerivationBusyError } from './errors.ts';

export type Derive = (keyAlgo: string, password: string, salt: Buffer) => Promise<Buffer>;

export interface KeyCacheOptions {
  /** Keys kept (least recently used dropped first). */
  entries?: number;
  /** Derivations running at once. */
  concurrency?: number;
  /** Derivations waiting for a slot before new ones are refused. */
  queue?: number;
}

export class KeyCache {
  readonly #derive: Derive;
  readonly #entries: number;
  readonly #concurrency: number;
  readonly #queue: number;
  /** Insertion order is recency order: a hit re-inserts. */
  readonly #keys = new Map<string, Promise<Buffer>>();
  readonly #waiting: (() => void)[] = [];
  #running = 0;

  constructor(derive: Derive, { entries = 64, concurrency = 2, queue = 16 }: KeyCacheOptions = {}) {
    this.#derive = derive;
    this.#entries = entries;
    this.#concurrency = concurrency;
    this.#queue = queue;
  }

  /** The derived key, from the cache, from a derivation in flight, or from a new one. */
  derive(keyAlgo: string, password: string, salt: Buffer): Promise<Buffer> {
    // The password is hashed into the cache key, never kept as a string of its own.
    const id = createHash('sha256').update(keyAlgo).update('\0').update(salt).update('\0').update(password).digest('base64');
    const known = this.#keys.get(id);
    if (known !== undefined) {
      this.#keys.delete(id);
      this.#keys.set(id, known);
      return known;
    }
    if (this.#running >= this.#concurrency && this.#waiting.length >= this.#queue) {
      return Promise.reject(new KeyDerivationBusyError());
    }
    const pending = this.#run(() => this.#derive(keyAlgo, password, salt));
    this.#keys.set(id, pending);
    pending.catch(() => {
      if (this.#keys.get(id) === pending) this.#keys.delete(id);
    });
    while (this.#keys.size > this.#entries) this.#keys.delete(this.#keys.keys().next().value!);
    return pending;
  }

  async #run(work: () => Promise<Buffer>): Promise<Buffer> {
    if (this.#running >= this.#concurrency) await new Promise<void>((resolve) => this.#waiting.push(resolve));
    this.#running++;
    try {
      return await work();
    } finally {
      this.#running--;
      this.#waiting.shift()?.();
    }
  }
}
