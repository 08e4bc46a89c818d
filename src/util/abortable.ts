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
