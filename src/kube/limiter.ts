/**
 * Client-side limits on calls to the API server, as client-go's QPS/burst (@kubernetes/client-node
 * has none of its own), split into budgets the way kube-apiserver's priority-and-fairness gives each
 * flow its own seats: reviews of unknown tokens, access reviews, object reads, the admission webhook
 * and the gateway's own background work (watches, its Secrets, the DownloadRequest controller) each
 * have their own token bucket, so a flood of one kind cannot starve the others. A caller that would
 * wait longer than {@link MAX_QUEUE_WAIT_MS} for a token is refused at once (429 with Retry-After)
 * instead of queueing inside its call timeout; background work waits (its own call timeout bounds it).
 */
import { RateLimitedError } from '../util/rate-limited.ts';
import { TokenBucket } from '../util/token-bucket.ts';

export type BudgetName = 'tokenreview' | 'access' | 'objects' | 'webhook' | 'background';

/** How `--kube-api-qps` and `--kube-api-burst` are split between the budgets. */
export const BUDGET_SHARES: Readonly<Record<BudgetName, number>> = {
  tokenreview: 0.25,
  access: 0.3,
  objects: 0.2,
  webhook: 0.1,
  background: 0.15,
};

/** The longest a request waits for a budget it shares with strangers. */
export const MAX_QUEUE_WAIT_MS = 1_000;

/** Told each time a budget refuses a call. */
export type BudgetObserver = (budget: BudgetName) => void;

export interface RateLimiterOptions {
  /** Refuse (RateLimitedError) a call that would wait longer than this; undefined: always wait. */
  maxWaitMs?: number;
  /** Names the budget in the refusal's message. */
  name?: string;
  onReject?: () => void;
}

export class RateLimiter {
  readonly #bucket: TokenBucket;
  readonly #opts: RateLimiterOptions;

  constructor(qps: number, burst: number, opts: RateLimiterOptions = {}) {
    this.#bucket = new TokenBucket(qps, burst);
    this.#opts = opts;
  }

  /** Waits until a call may go out; rejects when `signal` aborts first or the wait would be too long. */
  async take(signal: AbortSignal): Promise<void> {
    signal.throwIfAborted();
    const max = this.#opts.maxWaitMs;
    if (max !== undefined) {
      const wait = this.#bucket.tryTake();
      if (wait === 0) return;
      if (wait > max) {
        this.#opts.onReject?.();
        throw new RateLimitedError(`the gateway's ${this.#opts.name ?? 'Kubernetes API'} budget is spent; retry shortly`, wait / 1000);
      }
    }
    const waitMs = this.#bucket.reserve();
    if (waitMs === 0) return;
    await new Promise<void>((resolve, reject) => {
      const onAbort = (): void => {
        clearTimeout(timer);
        this.#bucket.refund();
        reject(signal.reason as Error);
      };
      const timer = setTimeout(() => {
        signal.removeEventListener('abort', onAbort);
        resolve();
      }, waitMs);
      signal.addEventListener('abort', onAbort, { once: true });
    });
  }
}

const DESCRIPTIONS: Record<BudgetName, string> = {
  tokenreview: 'TokenReview (unknown tokens)',
  access: 'SubjectAccessReview',
  objects: 'object read',
  webhook: 'admission webhook',
  background: 'background',
};

/** One limiter per budget, sized as shares of the total QPS and burst. */
export class Budgets {
  readonly #limiters: Record<BudgetName, RateLimiter>;

  constructor(qps: number, burst: number, onReject?: BudgetObserver) {
    if (!(qps > 0) || !(burst >= 1)) throw new RangeError('qps must be > 0 and burst >= 1');
    const make = (name: BudgetName): RateLimiter =>
      new RateLimiter(Math.max(1, qps * BUDGET_SHARES[name]), Math.max(1, Math.round(burst * BUDGET_SHARES[name])), {
        name: DESCRIPTIONS[name],
        ...(name !== 'background' && { maxWaitMs: MAX_QUEUE_WAIT_MS }),
        ...(onReject && { onReject: () => onReject(name) }),
      });
    this.#limiters = { tokenreview: make('tokenreview'), access: make('access'), objects: make('objects'), webhook: make('webhook'), background: make('background') };
  }

  take(budget: BudgetName, signal: AbortSignal): Promise<void> {
    return this.#limiters[budget].take(signal);
  }
}
