/**
 * A caller was refused rather than queued: a budget it shares with others is spent for now. The HTTP
 * layer answers 429 with `Retry-After`, as kube-apiserver's priority-and-fairness does.
 */
export class RateLimitedError extends Error {
  readonly reason = 'TooManyRequests';
  readonly retryAfterSeconds: number;
  constructor(message: string, retryAfterSeconds = 1) {
    super(message);
    this.name = 'RateLimitedError';
    this.retryAfterSeconds = Math.max(1, Math.ceil(retryAfterSeconds));
  }
}
