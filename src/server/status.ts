/**
 * Every error the gateway answers with is a Kubernetes `Status` object, as kube-apiserver and kubectl
 * use, and every error is mapped to HTTP here and nowhere else. Messages never carry a token or a
 * credential: inner layers build them from names and keys only.
 */
import type { Response } from 'express';
import { AuthUnavailableError } from '../auth/types.ts';
import { KopiaError, KopiaNotFoundError } from '../kopia/errors.ts';
import { KubeUnavailableError, TooManyObjectsError } from '../kube/errors.ts';
import { EndpointRefusedError, isStoreError, ThrottledError } from '../stores/errors.ts';
import type { StoreErrorReason } from '../stores/errors.ts';
import { RateLimitedError } from '../util/rate-limited.ts';
import { KanisterLocationError } from '../velero/kanister.ts';
import { ForbiddenError, InvalidBackupFileError, InvalidTargetError, NotFoundError, RepositoryPasswordUnavailableError, UnsupportedVolumeError, VolumeNotReadyError } from '../velero/errors.ts';

export interface StatusDetails {
  name?: string;
  group?: string;
  kind?: string;
}

export interface StatusBody {
  kind: 'Status';
  apiVersion: 'v1';
  metadata: Record<string, never>;
  status: 'Failure';
  message: string;
  reason: string;
  details?: StatusDetails;
  code: number;
}

/** An error the HTTP layer raises itself, with its status already decided. */
export class HttpError extends Error {
  readonly code: number;
  readonly reason: string;
  readonly headers: Record<string, string>;
  readonly details: StatusDetails | undefined;
  constructor(code: number, reason: string, message: string, headers: Record<string, string> = {}, details?: StatusDetails) {
    super(message);
    this.name = 'HttpError';
    this.code = code;
    this.reason = reason;
    this.headers = headers;
    this.details = details;
  }
}

/** Store reasons → HTTP. The store's failure is the gateway's upstream failing, so 502/503/504, never 500. */
const STORE_STATUS: Record<StoreErrorReason, { code: number; reason: string }> = {
  ObjectNotFound: { code: 404, reason: 'NotFound' },
  InvalidKey: { code: 400, reason: 'BadRequest' },
  InvalidRange: { code: 416, reason: 'RequestedRangeNotSatisfiable' },
  AccessDenied: { code: 502, reason: 'BadGateway' },
  Throttled: { code: 503, reason: 'ServiceUnavailable' },
  StoreUnavailable: { code: 502, reason: 'BadGateway' },
  Timeout: { code: 504, reason: 'Timeout' },
  InvalidLocation: { code: 502, reason: 'BadGateway' },
  // A tenant's location naming a file or program on the gateway: their configuration is refused.
  TenantSettingRefused: { code: 403, reason: 'Forbidden' },
};

export interface MappedError {
  body: StatusBody;
  headers: Record<string, string>;
  /** True when the error is the gateway's own fault or an upstream's: worth a warning in the log. */
  serverSide: boolean;
}

export function statusBody(code: number, reason: string, message: string, details?: StatusDetails): StatusBody {
  return {
    kind: 'Status',
    apiVersion: 'v1',
    metadata: {},
    status: 'Failure',
    message,
    reason,
    ...(details && { details }),
    code,
  };
}

/** Maps anything thrown below the HTTP layer to a Status. Unknown errors become a 500 with a generic message. */
export function mapError(err: unknown): MappedError {
  if (err instanceof HttpError) {
    return { body: statusBody(err.code, err.reason, err.message, err.details), headers: err.headers, serverSide: err.code >= 500 };
  }
  if (err instanceof NotFoundError) {
    return { body: statusBody(404, 'NotFound', err.message, err.details), headers: {}, serverSide: false };
  }
  if (err instanceof ForbiddenError) {
    return { body: statusBody(403, 'Forbidden', err.message), headers: {}, serverSide: false };
  }
  if (err instanceof InvalidTargetError) {
    return { body: statusBody(400, 'BadRequest', err.message), headers: {}, serverSide: false };
  }
  if (err instanceof RateLimitedError) {
    // The connection ends with the answer: requests a flooding client pipelined behind this one are
    // dropped unread instead of each costing a parse, a lookup and a log line.
    return {
      body: statusBody(429, 'TooManyRequests', err.message),
      headers: { 'Retry-After': String(err.retryAfterSeconds), Connection: 'close' },
      serverSide: false,
    };
  }
  if (err instanceof AuthUnavailableError || err instanceof KubeUnavailableError) {
    return {
      body: statusBody(503, 'ServiceUnavailable', err.message),
      headers: { 'Retry-After': String(err.retryAfterSeconds) },
      serverSide: true,
    };
  }
  if (err instanceof EndpointRefusedError) {
    // A tenant's location pointing inside the cluster: their configuration is refused, after authorization.
    return { body: statusBody(403, 'Forbidden', err.message), headers: {}, serverSide: false };
  }
  if (err instanceof KanisterLocationError) {
    // A Profile or Secret that is no store: the namespace's configuration, as a BSL the stores refuse.
    return { body: statusBody(502, 'BadGateway', err.message), headers: {}, serverSide: true };
  }
  if (err instanceof KopiaError) return mapKopiaError(err);
  const volume = mapVolumeError(err);
  if (volume) return volume;
  if (isStoreError(err)) {
    const { code, reason } = STORE_STATUS[err.reason];
    const headers: Record<string, string> = {};
    if (err instanceof ThrottledError) headers['Retry-After'] = String(err.retryAfterSeconds ?? 1);
    return { body: statusBody(code, reason, err.message), headers, serverSide: code >= 500 };
  }
  // Errors from Express itself or body-less http-errors (malformed URL encoding: 400, and the like).
  const status = (err as { status?: unknown; statusCode?: unknown } | null)?.status ?? (err as { statusCode?: unknown } | null)?.statusCode;
  if (typeof status === 'number' && status >= 400 && status < 500) {
    return { body: statusBody(status, status === 400 ? 'BadRequest' : 'Invalid', 'the request is malformed'), headers: {}, serverSide: false };
  }
  return { body: statusBody(500, 'InternalError', 'an internal error occurred; see the gateway log'), headers: {}, serverSide: true };
}

/**
 * The Kopia reader's reasons → HTTP. A repository the gateway cannot read (wrong password, a feature
 * it refuses, damaged or missing blobs) is its upstream failing: 502, with a message that names the
 * cause and never the password. A snapshot or path that is not there is the caller's 404; a path
 * that would leave the snapshot, 400; too many key derivations at once, 503 with Retry-After.
 */
function mapKopiaError(err: KopiaError): MappedError {
  switch (err.reason) {
    case 'NotFound':
      if (err instanceof KopiaNotFoundError && (err.what === 'path' || err.what === 'snapshot')) {
        return { body: statusBody(404, 'NotFound', err.message), headers: {}, serverSide: false };
      }
      return { body: statusBody(502, 'BadGateway', `the Kopia repository is incomplete: ${err.message}`), headers: {}, serverSide: true };
    case 'InvalidRequest':
      return { body: statusBody(400, 'BadRequest', err.message), headers: {}, serverSide: false };
    case 'Busy':
      return { body: statusBody(503, 'ServiceUnavailable', err.message), headers: { 'Retry-After': '1' }, serverSide: true };
    case 'Timeout':
      return { body: statusBody(504, 'Timeout', err.message), headers: {}, serverSide: true };
    case 'WrongPassword':
    case 'UnsupportedFeature':
    case 'Corrupt':
      return { body: statusBody(502, 'BadGateway', `the Kopia repository cannot be read: ${err.message}`), headers: {}, serverSide: true };
  }
}

/**
 * A backup's volumes → HTTP: a volume the gateway cannot read (restic, another data mover) is 501,
 * the request being fine; one with no snapshot yet (running, failed) 409; a missing repository
 * password, a backup file that breaks a bound, or more labelled objects than are read at once are
 * what sits behind the gateway failing: 502.
 */
const VOLUME_STATUS = new Map<new (...args: never[]) => Error, { code: number; reason: string }>([
  [UnsupportedVolumeError, { code: 501, reason: 'NotImplemented' }],
  [VolumeNotReadyError, { code: 409, reason: 'Conflict' }],
  [RepositoryPasswordUnavailableError, { code: 502, reason: 'BadGateway' }],
  [InvalidBackupFileError, { code: 502, reason: 'BadGateway' }],
  [TooManyObjectsError, { code: 502, reason: 'BadGateway' }],
]);

function mapVolumeError(err: unknown): MappedError | undefined {
  for (const [type, { code, reason }] of VOLUME_STATUS) {
    if (err instanceof type) return { body: statusBody(code, reason, err.message), headers: {}, serverSide: code >= 500 };
  }
  return undefined;
}

/** Sends a Status; the caller has checked that no header was sent yet. */
export function sendStatus(res: Response, mapped: MappedError): void {
  res.status(mapped.body.code);
  for (const [k, v] of Object.entries(mapped.headers)) res.setHeader(k, v);
  res.setHeader('Cache-Control', 'no-store');
  res.type('application/json');
  res.send(JSON.stringify(mapped.body));
}
