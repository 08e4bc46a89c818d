/**
 * Rejects when `signal` aborts (with its reason, as `signal.throwIfAborted()` would), without
 * cancelling `promise`: a lookup shared by several callers (merged reviews, a location search) keeps
 * running for the others when one of them leaves.
 */
export function abortable<T>(promise: Promise<T>, signal: AbortSignal): Promise<T> {
  signal.throwIfAborted();
  return new Promise<T>((resolve, reject) => {
    // eslint-disable-next-line @typescript-eslint/prefer-promise-reject-errors -- the reason goes out as given, like throwIfAborted
    const onAbort = (): void => reject(signal.reason);
    signal.addEventListener('abort', onAbort, { once: true });
    promise.finally(() => signal.removeEventListener('abort', onAbort)).then(resolve, reject);
  });
}

/**
 * A signal that never aborts: for work shared by several callers (one of them leaving must not
 * cancel it for the others) and for callers that bring no signal of their own.
 */
export const NEVER_ABORTED: AbortSignal = new AbortController().signal;
