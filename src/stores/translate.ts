/**
 * The one error translation of every network store: the facts a provider's answer or a failed
 * connection gives (HTTP status, the provider's error code, the system error code) become one
 * StoreError, by one table. An adapter only extracts the facts from its SDK's errors and names its
 * provider's codes; messages name the location, the object and the facts, never a credential.
 */
import {
  AccessDeniedError,
  InvalidKeyError,
  InvalidRangeError,
  isStoreError,
  ObjectNotFoundError,
  StoreTimeoutError,
  StoreUnavailableError,
  ThrottledError,
} from './errors.ts';
import type { StoreError } from './errors.ts';
import type { ObjectInfo } from './types.ts';
import { endpointRefusal } from './endpoint-guard.ts';
import { tlsFailureCode, tlsFailureMessage } from './trust.ts';

/** What a failed call tells us, taken from the SDK's error by the adapter. */
export interface ProviderFacts {
  /** The HTTP status of the store's answer; undefined when no answer came. */
  status?: number | undefined;
  /** The provider's error code (`NoSuchKey`, `BlobNotFound`, `rateLimitExceeded`...): a plain word only. */
  code?: string | undefined;
  /** The system error code of a failed connection (`ECONNREFUSED`, `ETIMEDOUT`...). */
  errno?: string | undefined;
  /** The Retry-After header of the answer. */
  retryAfter?: string | null | undefined;
  /** The provider's request id, for the message. */
  requestId?: string | undefined;
}

export type StatusKind = 'notFound' | 'range' | 'redirect' | 'denied' | 'throttled' | 'timeout' | 'badKey' | 'other';

/** A provider's error codes that mean the same as a status, e.g. S3's NoSuchKey for 404. */
export interface ProviderCodes {
  notFound?: ReadonlySet<string>;
  denied?: ReadonlySet<string>;
  throttled?: ReadonlySet<string>;
  timeout?: ReadonlySet<string>;
  range?: ReadonlySet<string>;
  /** Codes saying the object's name was refused (a 400). */
  badKey?: ReadonlySet<string>;
  /** Codes saying the bucket (container) itself does not exist. */
  noBucket?: ReadonlySet<string>;
}

/** Classifies a non-success answer. Redirects are never followed by any adapter: they are failures. */
export function classifyStatus(status: number | undefined, code: string | undefined, codes: ProviderCodes = {}): StatusKind {
  const has = (set: ReadonlySet<string> | undefined): boolean => code !== undefined && set !== undefined && set.has(code);
  if (status === 404 || has(codes.notFound) || has(codes.noBucket)) return 'notFound';
  if (status === 416 || has(codes.range)) return 'range';
  if (status !== undefined && status >= 300 && status < 400) return 'redirect';
  // A provider's "slow down" code wins over its status: GCS sends rateLimitExceeded as a 403.
  if (has(codes.throttled)) return 'throttled';
  if (status === 401 || status === 403 || has(codes.denied)) return 'denied';
  if (status === 429 || status === 503) return 'throttled';
  if (status === 408 || status === 504 || has(codes.timeout)) return 'timeout';
  if (status === 400 && has(codes.badKey)) return 'badKey';
  return 'other';
}

/** Seconds a Retry-After header asks for (delta-seconds or an HTTP date); undefined when absent or unreadable. */
export function parseRetryAfter(value: string | null | undefined): number | undefined {
  const v = value?.trim();
  if (!v) return undefined;
  if (/^\d+$/.test(v)) return Number(v);
  const at = Date.parse(v);
  return Number.isNaN(at) ? undefined : Math.max(0, Math.ceil((at - Date.now()) / 1000));
}

/** System codes of a connection or answer that took too long (our own timers raise ETIMEDOUT). */
const TIMEOUT_ERRNOS: ReadonlySet<string> = new Set(['ETIMEDOUT', 'ESOCKETTIMEDOUT', 'TIMEOUT']);

/** A provider's word as it may appear in a message: a hostile endpoint could send anything. */
export function plainWord(value: unknown, pattern = /^[A-Za-z0-9._-]{1,64}$/): string | undefined {
  return typeof value === 'string' && pattern.test(value) ? value : undefined;
}

/**
 * The system error code (`ECONNREFUSED`, `ETIMEDOUT`...) in an error's cause chain, or else the first
 * code there: SDKs wrap a socket's error in their own (`REQUEST_SEND_ERROR`) with it as the cause.
 */
export function errnoOf(err: unknown): string | undefined {
  let first: string | undefined;
  for (let e = err, depth = 0; e !== null && typeof e === 'object' && depth < 8; e = (e as { cause?: unknown }).cause, depth++) {
    const code = plainWord((e as { code?: unknown }).code, /^[A-Z][A-Z0-9_]{1,40}$/);
    if (code === undefined || code === 'ABORT_ERR') continue;
    if (/^E[A-Z]+$/.test(code)) return code;
    first ??= code;
  }
  return first;
}

/** Where a failure happened, for messages: the location, what was being done, the bucket's name. */
export interface FailureSite {
  location: string;
  /** e.g. `reading object "k"`. */
  doing: string;
  /** The bucket as the provider calls it (`bucket "b"`, `container "c"`), named when it does not exist. */
  bucket?: string;
}

type Build = (at: string, detail: string, facts: ProviderFacts, site: FailureSite, codes: ProviderCodes) => StoreError;

/** The table: one kind of answer, one error. */
const BY_KIND: Record<StatusKind, Build> = {
  notFound: (at, _d, f, site, codes) =>
    new ObjectNotFoundError(
      f.code !== undefined && codes.noBucket?.has(f.code) && site.bucket !== undefined
        ? `${at}: not found (${site.bucket} does not exist)`
        : `${at}: not found`,
    ),
  range: (at) => new InvalidRangeError(`${at}: the byte range is not satisfiable`),
  redirect: (at, d) => new StoreUnavailableError(`${at}: the store answered with a redirect (${d}), which is not followed`),
  denied: (at, d) => new AccessDeniedError(`${at}: the store refused the location's credentials (${d})`),
  throttled: (at, d, f) => new ThrottledError(`${at}: the store asks to slow down (${d})`, parseRetryAfter(f.retryAfter)),
  timeout: (at, d) => new StoreTimeoutError(`${at}: the store timed out (${d})`),
  badKey: (at, d) => new InvalidKeyError(`${at}: the store refused the object's name (${d})`),
  other: (at, d) => new StoreUnavailableError(`${at}: the store answered with an error (${d})`),
};

/**
 * The StoreError for a failed call. `err` is the SDK's error (only for the endpoint guard's refusal,
 * the TLS code and `cause`: never shown); `facts` what the adapter read from it.
 */
export function translateFacts(err: unknown, facts: ProviderFacts, codes: ProviderCodes, site: FailureSite): StoreError {
  if (isStoreError(err)) return err;
  const refused = endpointRefusal(err, site.location);
  if (refused !== undefined) return refused;
  const at = `location ${site.location}: ${site.doing}`;
  if (facts.status !== undefined) {
    const detail = [`HTTP ${facts.status}`, facts.code, facts.requestId && `request id ${facts.requestId}`].filter(Boolean).join(' ');
    return BY_KIND[classifyStatus(facts.status, facts.code, codes)](at, detail, facts, site, codes);
  }
  const cause = systemCause(err);
  const tls = tlsFailureCode(err);
  if (tls !== undefined) return new StoreUnavailableError(tlsFailureMessage(site.location, tls), { cause });
  const errno = facts.errno ?? errnoOf(err);
  if (errno !== undefined && TIMEOUT_ERRNOS.has(errno)) return new StoreTimeoutError(`${at}: the store did not answer in time`, { cause });
  if (errno !== undefined) return new StoreUnavailableError(`${at}: cannot reach the store (${errno})`, { cause });
  return new StoreUnavailableError(`${at}: the request failed (${facts.code ?? 'unknown error'})`, { cause });
}

/**
 * A copy of the innermost error with a system code (its code and message only): SDK errors carry
 * the request, whose headers hold the Authorization, so they never travel as a cause.
 */
export function systemCause(err: unknown): Error | undefined {
  let found: Error | undefined;
  for (let e = err, depth = 0; e instanceof Error && depth < 8; e = e.cause, depth++) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === 'string') found = Object.assign(new Error(e.message), { code });
  }
  return found;
}

const STRONG_ETAG = /^"[\x21\x23-\x7e\x80-\xff]*"$/;
const ETAG_CHARS = /^[\x21\x23-\x7e\x80-\xff]*$/;

/**
 * An object's facts as a store's answer gives them: the etag quoted as on the wire (stores that send
 * it bare get it quoted; a weak or malformed one is left out), the date only when it is one.
 */
export function objectInfo(size: number, etag: string | undefined, lastModified: Date | undefined): ObjectInfo {
  const info: ObjectInfo = { size };
  if (etag !== undefined && (STRONG_ETAG.test(etag) || (etag !== '' && ETAG_CHARS.test(etag)))) {
    info.etag = etag.startsWith('"') ? etag : `"${etag}"`;
  }
  if (lastModified instanceof Date && !Number.isNaN(lastModified.getTime())) info.lastModified = lastModified;
  return info;
}
