/**
 * A token bucket (`qps` tokens a second, at most `burst` saved up), as client-go's flowcontrol and
 * kube-apiserver's priority-and-fairness seats are metered. The bucket only does arithmetic; callers
 * decide whether to wait for a token or to refuse.
 */
export class TokenBucket {
  readonly qps: number;
  readonly burst: number;
  #tokens: number;
  #last: number;

  constructor(qps: number, burst: number, now: number = performance.now()) {
    if (!(qps > 0) || !(burst >= 1)) throw new RangeError('qps must be > 0 and burst >= 1');
    this.qps = qps;
    this.burst = burst;
    this.#tokens = burst;
    this.#last = now;
  }

  /**
   * Takes a token if one is there now; otherwise takes nothing and returns how many milliseconds
   * until one will be (0 means taken).
   */
  tryTake(now: number = performance.now()): number {
    this.#refill(now);
    if (this.#tokens >= 1) {
      this.#tokens -= 1;
      return 0;
    }
    return ((1 - this.#tokens) / this.qps) * 1000;
  }

  /**
   * Takes a token whether or not it is there yet, and returns how many milliseconds the caller must
   * wait before using it (0: at once). Calls queue in order: each debt is paid after the one before.
   */
  reserve(now: number = performance.now()): number {
    this.#refill(now);
    this.#tokens -= 1;
    return this.#tokens >= 0 ? 0 : (-this.#tokens / this.qps) * 1000;
  }

  /** Gives back a token taken with {@link reserve} that was not used (the caller gave up waiting). */
  refund(): void {
    this.#tokens = Math.min(this.burst, this.#tokens + 1);
  }

  /** Whole tokens there now. */
  available(now: number = performance.now()): number {
    this.#refill(now);
    return Math.max(0, Math.floor(this.#tokens));
  }

  #refill(now: number): void {
    this.#tokens = Math.min(this.burst, this.#tokens + ((now - this.#last) / 1000) * this.qps);
    this.#last = now;
  }
}
