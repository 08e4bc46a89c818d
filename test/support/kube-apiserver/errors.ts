/**
 * Kubernetes `Status` errors, shaped and worded like kube-apiserver's (k8s.io/apimachinery
 * pkg/api/errors), so code under test meets the same bodies it meets on a real cluster.
 */
import type { ResourceType } from './resources.ts';

export interface StatusDetails {
  name?: string;
  group?: string;
  kind?: string;
  causes?: { reason?: string; message: string; field?: string }[];
  retryAfterSeconds?: number;
}

export interface Status {
  kind: 'Status';
  apiVersion: 'v1';
  metadata: Record<string, never>;
  status: 'Failure';
  message: string;
  reason: string;
  details?: StatusDetails;
  code: number;
}

const REASONS: Record<number, string> = {
  400: 'BadRequest',
  401: 'Unauthorized',
  403: 'Forbidden',
  404: 'NotFound',
  405: 'MethodNotAllowed',
  409: 'Conflict',
  410: 'Expired',
  415: 'UnsupportedMediaType',
  422: 'Invalid',
  429: 'TooManyRequests',
  500: 'InternalError',
  503: 'ServiceUnavailable',
  504: 'Timeout',
};

export class ApiError extends Error {
  readonly status: Status;
  constructor(code: number, message: string, reason = REASONS[code] ?? 'Unknown', details?: StatusDetails) {
    super(message);
    this.status = { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message, reason, code };
    if (details) this.status.details = details;
  }
  get code(): number {
    return this.status.code;
  }
}

/** `backups.velero.io`, or `secrets` for the core group. */
export const qualified = (rt: ResourceType): string => (rt.group ? `${rt.resource}.${rt.group}` : rt.resource);

const details = (rt: ResourceType, name: string): StatusDetails => ({ name, ...(rt.group ? { group: rt.group } : {}), kind: rt.resource });

export const notFound = (rt: ResourceType, name: string): ApiError =>
  new ApiError(404, `${qualified(rt)} "${name}" not found`, 'NotFound', details(rt, name));

export const alreadyExists = (rt: ResourceType, name: string): ApiError =>
  new ApiError(409, `${qualified(rt)} "${name}" already exists`, 'AlreadyExists', details(rt, name));

export const conflict = (rt: ResourceType, name: string): ApiError =>
  new ApiError(
    409,
    `Operation cannot be fulfilled on ${qualified(rt)} "${name}": the object has been modified; please apply your changes to the latest version and try again`,
    'Conflict',
    details(rt, name),
  );

export const invalid = (t: { kind: string; group: string }, name: string, field: string, message: string): ApiError =>
  new ApiError(422, `${t.kind}${t.group ? `.${t.group}` : ''} "${name}" is invalid: ${field}: ${message}`, 'Invalid', {
    name,
    ...(t.group ? { group: t.group } : {}),
    kind: t.kind,
    causes: [{ reason: 'FieldValueInvalid', message, field }],
  });

export const badRequest = (message: string): ApiError => new ApiError(400, message, 'BadRequest');

/** The generic 404 for a path no handler serves (an unknown resource or subresource). */
export const noRoute = (): ApiError => new ApiError(404, 'the server could not find the requested resource', 'NotFound', {});

export const unauthorized = (): ApiError => new ApiError(401, 'Unauthorized', 'Unauthorized');

export const methodNotAllowed = (): ApiError => new ApiError(405, 'the server does not allow this method on the requested resource', 'MethodNotAllowed', {});

/** kube-apiserver's wording (endpoints/handlers/responsewriters.ForbiddenStatusError). */
export function forbidden(username: string, a: { verb: string; resourceRequest: boolean; path: string; group: string; resource: string; subresource: string; namespace: string; name: string }): ApiError {
  if (!a.resourceRequest) return new ApiError(403, `forbidden: User "${username}" cannot ${a.verb} path "${a.path}"`, 'Forbidden', {});
  const what = a.subresource ? `${a.resource}/${a.subresource}` : a.resource;
  const target = `${a.group ? `${a.resource}.${a.group}` : a.resource}${a.name ? ` "${a.name}"` : ''}`;
  const scope = a.namespace ? `in the namespace "${a.namespace}"` : 'at the cluster scope';
  return new ApiError(403, `${target} is forbidden: User "${username}" cannot ${a.verb} resource "${what}" in API group "${a.group}" ${scope}`, 'Forbidden', {
    ...(a.name ? { name: a.name } : {}),
    ...(a.group ? { group: a.group } : {}),
    kind: a.resource,
  });
}

export const gone = (message: string): ApiError => new ApiError(410, message, 'Expired');

/** A failure injected by a test: 429 carries Retry-After in details as the real server does. */
export function injected(code: number, message?: string, retryAfterSeconds?: number): ApiError {
  const text = message ?? (code === 429 ? 'Too many requests, please try again later.' : `injected failure (${code})`);
  return new ApiError(code, text, REASONS[code] ?? 'Unknown', retryAfterSeconds === undefined ? undefined : { retryAfterSeconds });
}
