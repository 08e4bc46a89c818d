/**
 * Typed errors every adapter translates its SDK's errors into. Inner layers never know HTTP status
 * codes; the server maps `reason` to a status in one table. Messages must never contain a credential.
 */
export type StoreErrorReason =
  | 'ObjectNotFound'
  | 'InvalidKey'
  | 'AccessDenied'
  | 'Throttled'
  | 'StoreUnavailable'
  | 'Timeout'
  | 'InvalidRange'
  | 'InvalidLocation'
  | 'TenantSettingRefused';

export abstract class StoreError extends Error {
  abstract readonly reason: StoreErrorReason;
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = new.target.name;
  }
}

/** The object does not exist (or the location's bucket/container does not). */
export class ObjectNotFoundError extends StoreError {
  readonly reason = 'ObjectNotFound';
}

/** The key would leave the location's root or prefix, or is malformed. */
export class InvalidKeyError extends StoreError {
  readonly reason = 'InvalidKey';
}

/** The store refused the gateway's credentials for this location. */
export class AccessDeniedError extends StoreError {
  readonly reason = 'AccessDenied';
}

/** The store asked us to slow down; `retryAfterSeconds` when it said how long. */
export class ThrottledError extends StoreError {
  readonly reason = 'Throttled';
  readonly retryAfterSeconds: number | undefined;
  constructor(message: string, retryAfterSeconds?: number, options?: ErrorOptions) {
    super(message, options);
    this.retryAfterSeconds = retryAfterSeconds;
  }
}

/** The store could not be reached or answered with a server error (including TLS failures). */
export class StoreUnavailableError extends StoreError {
  readonly reason = 'StoreUnavailable';
}

/** The store did not answer in time. */
export class StoreTimeoutError extends StoreError {
  readonly reason = 'Timeout';
}

/** The requested range does not fit the object. */
export class InvalidRangeError extends StoreError {
  readonly reason = 'InvalidRange';
}

/** The location's specification cannot be turned into a store (bad config, malformed credential). */
export class InvalidLocationError extends StoreError {
  readonly reason = 'InvalidLocation';
}

/**
 * A tenant's location (a BSL outside the gateway's namespace) has a setting that names a file on the
 * gateway or a program it would run (an SSE-C key file, a certificate path, `credential_process`, ...).
 * Refused before any file is touched and before any connection; the server answers 403. The message
 * names the location and the settings, never their values.
 */
export class TenantSettingRefusedError extends StoreError {
  readonly reason = 'TenantSettingRefused';
  /** The refused settings, as named in the message (e.g. `config customerKeyEncryptionFile`). */
  readonly settings: readonly string[];
  constructor(message: string, settings: readonly string[]) {
    super(message);
    this.settings = settings;
  }
}

/** The `code` an EndpointRefusedError carries, which survives transports that copy only code and message. */
export const ENDPOINT_REFUSED_CODE = 'ERR_ENDPOINT_REFUSED';

/**
 * A tenant's location points at an endpoint it may not reach: plain HTTP, or an address inside the
 * cluster or the host (loopback, link-local, private...) that --tenant-endpoint-allow does not allow.
 * The location's configuration is what is wrong, so it is an InvalidLocationError; the server answers
 * it with 403.
 */
export class EndpointRefusedError extends InvalidLocationError {
  readonly code = ENDPOINT_REFUSED_CODE;
}

export function isStoreError(err: unknown): err is StoreError {
  return err instanceof StoreError;
}

/** Throws the signal's reason (an AbortError) when it is already aborted: every I/O call starts with this. */
export function throwIfAborted(signal: AbortSignal): void {
  signal.throwIfAborted();
}
