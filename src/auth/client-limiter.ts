/**
 * A token bucket per client address, for work a client can make the gateway do without being known
 * yet (reviewing a token no cache has seen). Known callers never touch it. Buckets are kept for the
 * most recent clients only (LRU), so a spray of source addresses costs bounded memory; a forgotten
 * client simply starts again with a full bucket.
 */
import { LRUCache } from 'lru-cache';
import { RateLimitedError } from '../util/rate-limited.ts';
import { TokenBucket } from '../util/token-bucket.ts';

export interface ClientLimiterOptions {
  /** Sustained admissions per second per client. */
  qps: number;
  /** Admissions a client may spend at once. */
  burst: number;
  /** Clients remembered (default 10,000). */
  maxClients?: number;
  /** Told of each refusal (metrics). */
  onReject?: () => void;
}

export class ClientLimiter {
  readonly #opts: ClientLimiterOptions;
  readonly #buckets: LRUCache<string, TokenBucket>;

  constructor(opts: ClientLimiterOptions) {
    if (!(opts.qps > 0) || !(opts.burst >= 1)) throw new RangeError('qps must be > 0 and burst >= 1');
    this.#opts = opts;
    this.#buckets = new LRUCache({ max: opts.maxClients ?? 10_000 });
  }

  /** Takes one admission for `client`, or throws RateLimitedError (429) with the time until the next. */
  admit(client: string): void {
    let bucket = this.#buckets.get(client);
    if (!bucket) {
      bucket = new TokenBucket(this.#opts.qps, this.#opts.burst);
      this.#buckets.set(client, bucket);
    }
    const waitMs = bucket.tryTake();
    if (waitMs === 0) return;
    this.#opts.onReject?.();
    throw new RateLimitedError('too many requests with tokens the gateway has not seen before from this client address; retry later', waitMs / 1000);
  }
}
