import type { PromiseOr } from '../util/promise-or.ts';

/** Who the caller is, as Kubernetes' TokenReview reports it. */
export interface UserInfo {
  username: string;
  uid?: string;
  groups: string[];
  extra?: Record<string, string[]>;
}

/** The attributes of a SubjectAccessReview's `resourceAttributes`. */
export interface ResourceAttributes {
  group: string;
  resource: string;
  subresource?: string;
  verb: string;
  namespace: string;
  name: string;
}

export interface Decision {
  allowed: boolean;
  /** Why, when the authorizer said so; shown to the caller on a denial. */
  reason?: string;
}

/**
 * Turns a bearer token into a user. Three outcomes: a user; `null` (the token is not valid → 401);
 * a thrown error or rejection (the check itself failed → 503, never 401). An answer already known (a
 * cached review) may come at once rather than as a promise (util/promise-or.ts).
 */
export interface Authenticator {
  /** `client` is the caller's address, for per-client limits on work a stranger can cause. */
  authenticate(token: string, signal: AbortSignal, client?: string): PromiseOr<UserInfo | null>;
}

/**
 * Decides whether a user may perform an action; a thrown error or rejection means it could not
 * decide (→ 503). A cached decision may come at once rather than as a promise.
 */
export interface Authorizer {
  authorize(user: UserInfo, attrs: ResourceAttributes, signal: AbortSignal): PromiseOr<Decision>;
}

/** The authentication check itself failed (API server down, timed out): the caller should retry. */
export class AuthUnavailableError extends Error {
  readonly reason = 'ServiceUnavailable';
  readonly retryAfterSeconds: number;
  constructor(message: string, retryAfterSeconds = 5, options?: ErrorOptions) {
    super(message, options);
    this.retryAfterSeconds = retryAfterSeconds;
    this.name = 'AuthUnavailableError';
  }
}

/** Told the latency and outcome of each review actually sent (cache hits are not reviews). */
export interface ReviewObserver {
  observeReview(review: 'tokenreview' | 'subjectaccessreview', seconds: number, outcome: string): void;
}
