/**
 * A token-bucket limiter for calls to the API server, as client-go's QPS/burst: @kubernetes/client-node
 * has none of its own. Defaults are high, so reviews never queue behind it in normal operation; it
 * exists to keep a flood of distinct tokens from flooding the API server.
 */
export class RateLimiter {
  readonly #qps: number;
  readonly #burst: number;
  #tokens: number;
  #last = performance.now();

  constructor(qps: number, burst: number) {
    if (!(qps > 0) || !(burst >= 1)) throw new RangeError('qps must be > 0 and burst >= 1');
    this.#qps = qps;
    this.#burst = burst;
    this.#tokens = burst;
  }

  /** Waits until a call may go out; rejects when `signal` aborts first. */
  async take(signal: AbortSignal): Promise<void> {
    signal.throwIfAborted();
    const now = performance.now();
    this.#tokens = Math.min(this.#burst, this.#tokens + ((now - this.#last) / 1000) * this.#qps);
    this.#last = now;
    this.#tokens -= 1;
    if (this.#tokens >= 0) return;
    // In debt: wait until this call's token has been earned.
    const waitMs = (-this.#tokens / this.#qps) * 1000;
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(resolve, waitMs);
      signal.addEventListener(
        'abort',
        () => {
          clearTimeout(timer);
          this.#tokens += 1;
          reject(signal.reason as Error);
        },
        { once: true },
      );
    });
  }
}
