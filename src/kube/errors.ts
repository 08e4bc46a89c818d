/** Errors of the Kubernetes layer that the HTTP layer maps (kept free of the client library, so importing them is cheap). */

/** The API server could not answer (down, slow, throttling): the caller should retry. */
export class KubeUnavailableError extends Error {
  readonly reason = 'ServiceUnavailable';
  readonly retryAfterSeconds: number;
  constructor(message: string, retryAfterSeconds = 5) {
    super(message);
    this.name = 'KubeUnavailableError';
    this.retryAfterSeconds = retryAfterSeconds;
  }
}

/**
 * A labelled list matched more objects than the gateway reads at once: refused rather than paged
 * without end (the objects' authors, e.g. a tenant, decide how many there are).
 */
export class TooManyObjectsError extends Error {
  readonly reason = 'TooManyObjects';
  constructor(message: string) {
    super(message);
    this.name = 'TooManyObjectsError';
  }
}
