/**
 * The retry policy of every network store, in one place (the SDKs' own retries are turned off):
 *
 * - What: a read (stat or get) whose attempt failed before any byte of the body was handed out, with
 *   a connection refused or reset before the response headers (ECONNREFUSED, ECONNRESET, EPIPE) or
 *   a server error (HTTP 500, 502, 504) that is not the provider saying "slow down".
 * - How often: at most 2 retries, after a jittered backoff of 50-100 ms, then 100-200 ms, all inside
 *   the call's header deadline and its caller's signal (an abort ends the wait at once).
 * - Never: a throttle (429, 503, or a provider's slow-down code such as SlowDown, ServerBusy or
 *   rateLimitExceeded). It becomes a ThrottledError at once, carrying the store's Retry-After, so the
 *   gateway's client hears "slow down" (503 + Retry-After) instead of waiting while we retry into the
 *   store's throttle. Nor a timeout (one call never takes several times the configured time), nor an
 *   answer about the request itself (404, 403, 416...), nor anything after the body has started:
 *   the body then errors and the client sees a broken transfer.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { isStoreError } from './errors.ts';
import { classifyStatus } from './translate.ts';
import type { ProviderCodes, ProviderFacts } from './translate.ts';

export const RETRIES = 2;
const BASE_DELAY_MS = 100;

const RETRIED_STATUS: ReadonlySet<number> = new Set([500, 502, 504]);
const RETRIED_ERRNO: ReadonlySet<string> = new Set(['ECONNREFUSED', 'ECONNRESET', 'EPIPE']);

/** Whether a failed attempt with these facts is retried (see the policy above). */
export function isRetried(facts: ProviderFacts, codes: ProviderCodes): boolean {
  if (facts.status !== undefined) {
    return RETRIED_STATUS.has(facts.status) && classifyStatus(facts.status, facts.code, codes) !== 'throttled';
  }
  return facts.errno !== undefined && RETRIED_ERRNO.has(facts.errno);
}

/** The wait before retry `n` (0-based): half to all of 100 ms × 2ⁿ. */
export function retryDelayMs(n: number): number {
  const ceiling = BASE_DELAY_MS * 2 ** n;
  return ceiling / 2 + Math.random() * (ceiling / 2);
}

/**
 * Runs `attempt` until it succeeds, fails in a way the policy does not retry, or has been retried
 * RETRIES times; rejects with the last attempt's error. `factsOf` reads an SDK error's facts.
 */
export async function withRetries<T>(
  signal: AbortSignal,
  codes: ProviderCodes,
  factsOf: (err: unknown) => ProviderFacts,
  attempt: () => Promise<T>,
): Promise<T> {
  for (let n = 0; ; n++) {
    try {
      return await attempt();
    } catch (err) {
      if (signal.aborted || n >= RETRIES || isStoreError(err) || !isRetried(factsOf(err), codes)) throw err;
    }
    await sleep(retryDelayMs(n), undefined, { signal });
  }
}
