/**
 * Kubernetes mode's authenticator and authorizer: TokenReview and SubjectAccessReview against the API
 * server, behind decision caches (kube-apiserver's webhook defaults: tokens 2 min / 30 s, access
 * 5 min allowed / 30 s denied). A review that fails or times out is an error (→ 503), never a "no".
 *
 * Nothing here logs or returns a review response as a whole: a TokenReview echoes the token.
 */
import type { V1SubjectAccessReview, V1TokenReview } from '@kubernetes/client-node';
import type { KubeClients } from '../kube/client.ts';
import { describeApiFailure } from '../kube/client.ts';
import { RateLimitedError } from '../util/rate-limited.ts';
import type { ClientLimiter } from './client-limiter.ts';
import { TtlCache } from '../util/ttl-cache.ts';
import type { PromiseOr } from '../util/promise-or.ts';
import { AuthUnavailableError } from './types.ts';
import type { Authenticator, Authorizer, Decision, ResourceAttributes, ReviewObserver, UserInfo } from './types.ts';

export interface ReviewCacheOptions {
  /** TokenReview accepted. */
  authnTtlMs: number;
  /** TokenReview rejected. */
  authnDeniedTtlMs: number;
  authzAllowedTtlMs: number;
  authzDeniedTtlMs: number;
  maxEntries: number;
}

export const DEFAULT_REVIEW_CACHE: ReviewCacheOptions = {
  authnTtlMs: 120_000,
  authnDeniedTtlMs: 30_000,
  authzAllowedTtlMs: 300_000,
  authzDeniedTtlMs: 30_000,
  maxEntries: 10_000,
};

/**
 * The error a failed review becomes: a refusal by a spent budget and a review dropped because every
 * caller left pass through as they are; anything else means the API server could not answer (503).
 */
function unavailable(what: string, err: unknown, signal: AbortSignal): Error {
  if (err instanceof RateLimitedError) return err;
  if (signal.aborted) return signal.reason instanceof Error ? signal.reason : new Error(`${what} abandoned: every caller left`);
  const retry = Number((err as { headers?: Record<string, string> } | null)?.headers?.['retry-after']);
  // The message names the review and the status only: response bodies are not repeated.
  return new AuthUnavailableError(
    `${what} could not be completed (${describeApiFailure(err)}); retry shortly`,
    Number.isFinite(retry) && retry > 0 ? retry : 5,
  );
}

type AuthnResult = { user: UserInfo | null };

export class TokenReviewAuthenticator implements Authenticator {
  readonly #kube: KubeClients;
  readonly #audiences: string[];
  readonly cache: TtlCache<AuthnResult>;

  readonly #observer: ReviewObserver | undefined;
  readonly #perClient: ClientLimiter | undefined;

  /**
   * `perClient` limits reviews of tokens the cache does not know, per client address: a cached token
   * costs nothing, a flood of random ones is refused (429) before it reaches the API server.
   */
  constructor(kube: KubeClients, audiences: string[], cache: ReviewCacheOptions = DEFAULT_REVIEW_CACHE, observer?: ReviewObserver, perClient?: ClientLimiter) {
    this.#kube = kube;
    this.#audiences = audiences;
    this.#observer = observer;
    this.#perClient = perClient;
    this.cache = new TtlCache<AuthnResult>({
      max: cache.maxEntries,
      ttl: (r) => (r.user ? cache.authnTtlMs : cache.authnDeniedTtlMs),
    });
  }

  authenticate(token: string, signal: AbortSignal, client?: string): PromiseOr<UserInfo | null> {
    const key = this.cache.keyOf('token', token, ...this.#audiences);
    // A cached answer, accepted or rejected, comes at once.
    const cached = this.cache.peek(key);
    return cached ? cached.user : this.#reviewed(key, token, signal, client);
  }

  /** A token the cache does not know: reviewed, or joined to its review in flight. */
  async #reviewed(key: string, token: string, signal: AbortSignal, client: string | undefined): Promise<UserInfo | null> {
    const perClient = this.#perClient;
    const admit = perClient && client !== undefined ? () => perClient.admit(client) : undefined;
    const result = await this.cache.get(key, (s) => this.#review(token, s), { signal, ...(admit && { admit }) });
    return result.user;
  }

  async #review(token: string, signal: AbortSignal): Promise<AuthnResult> {
    const body: V1TokenReview = {
      apiVersion: 'authentication.k8s.io/v1',
      kind: 'TokenReview',
      spec: { token, ...(this.#audiences.length > 0 && { audiences: this.#audiences }) },
    };
    const started = performance.now();
    let review: V1TokenReview;
    try {
      review = await this.#kube.call(signal, (o) => this.#kube.authn.createTokenReview({ body }, o), 'tokenreview');
    } catch (err) {
      this.#observer?.observeReview('tokenreview', (performance.now() - started) / 1000, 'error');
      throw unavailable('TokenReview', err, signal);
    }
    this.#observer?.observeReview('tokenreview', (performance.now() - started) / 1000, review.status?.authenticated ? 'authenticated' : 'rejected');
    const status = review.status;
    if (!status?.authenticated || !status.user?.username) return { user: null };
    // With audiences asked for, the API server must confirm one of them.
    if (this.#audiences.length > 0 && !status.audiences?.some((a) => this.#audiences.includes(a))) return { user: null };
    const u = status.user;
    return {
      user: {
        username: u.username!,
        groups: u.groups ?? [],
        ...(u.uid && { uid: u.uid }),
        ...(u.extra && { extra: u.extra }),
      },
    };
  }
}

export class SubjectAccessReviewAuthorizer implements Authorizer {
  readonly #kube: KubeClients;
  readonly cache: TtlCache<Decision>;
  readonly #subjects = new WeakMap<UserInfo, string>();

  readonly #observer: ReviewObserver | undefined;

  constructor(kube: KubeClients, cache: ReviewCacheOptions = DEFAULT_REVIEW_CACHE, observer?: ReviewObserver) {
    this.#kube = kube;
    this.#observer = observer;
    this.cache = new TtlCache<Decision>({
      max: cache.maxEntries,
      ttl: (d) => (d.allowed ? cache.authzAllowedTtlMs : cache.authzDeniedTtlMs),
    });
  }

  authorize(user: UserInfo, attrs: ResourceAttributes, signal: AbortSignal): PromiseOr<Decision> {
    const key = this.cache.keyOf('sar', this.#subjectOf(user), attrs.group, attrs.resource, attrs.subresource ?? '', attrs.verb, attrs.namespace, attrs.name);
    return this.cache.peek(key) ?? this.cache.get(key, (s) => this.#review(user, attrs, s), { signal });
  }

  /**
   * The user part of a decision's key: name, uid, groups in order, extras. Worked out once per
   * UserInfo object (the token cache hands out the same one for every request of a token).
   */
  #subjectOf(user: UserInfo): string {
    let subject = this.#subjects.get(user);
    if (subject === undefined) {
      subject = JSON.stringify([user.username, user.uid ?? '', [...user.groups].sort(), user.extra ?? {}]);
      this.#subjects.set(user, subject);
    }
    return subject;
  }

  async #review(user: UserInfo, a: ResourceAttributes, signal: AbortSignal): Promise<Decision> {
    const body: V1SubjectAccessReview = {
      apiVersion: 'authorization.k8s.io/v1',
      kind: 'SubjectAccessReview',
      spec: {
        user: user.username,
        groups: user.groups,
        ...(user.uid && { uid: user.uid }),
        ...(user.extra && { extra: user.extra }),
        resourceAttributes: {
          group: a.group,
          resource: a.resource,
          ...(a.subresource && { subresource: a.subresource }),
          verb: a.verb,
          namespace: a.namespace,
          name: a.name,
        },
      },
    };
    const started = performance.now();
    let review: V1SubjectAccessReview;
    try {
      review = await this.#kube.call(signal, (o) => this.#kube.authz.createSubjectAccessReview({ body }, o), 'access');
    } catch (err) {
      this.#observer?.observeReview('subjectaccessreview', (performance.now() - started) / 1000, 'error');
      throw unavailable('SubjectAccessReview', err, signal);
    }
    const s = review.status;
    this.#observer?.observeReview('subjectaccessreview', (performance.now() - started) / 1000, s?.allowed === true ? 'allowed' : 'denied');
    return { allowed: s?.allowed === true && s.denied !== true, ...(s?.reason && { reason: s.reason }) };
  }
}
