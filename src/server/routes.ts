/**
 * The URL layout: path → Target, with every name checked before it can become part of a key. Parsing
 * follows authentication: a request without a valid token learns nothing, not even that its path is
 * malformed.
 */
import type { Request, RequestHandler } from 'express';
import { findArtifact, isDns1123Label, isDns1123Subdomain } from '../velero/artifacts.ts';
import type { OwnerKind, Target } from '../velero/artifacts.ts';
import { InvalidTargetError, NotFoundError } from '../velero/errors.ts';
import { localsOf } from './locals.ts';

export const DOWNLOAD_PATHS = {
  backups: '/v1/namespaces/:namespace/backups/:name/:artifact',
  restores: '/v1/namespaces/:namespace/restores/:name/:artifact',
} as const satisfies Record<OwnerKind, string>;

/** Builds and validates a Target from already-decoded path segments. */
export function parseTarget(owner: OwnerKind, namespace: string, name: string, artifact: string): Target {
  const kind = checkOwnerNames(owner, namespace, name);
  if (!findArtifact(owner, artifact)) {
    throw new NotFoundError(`${kind}s have no artifact "${artifact}"`, { group: 'velero.io', kind: owner, name });
  }
  return { namespace, owner, name, artifact };
}

/** Checks the namespace and owner name of a path; returns the owner's kind for messages. */
function checkOwnerNames(owner: OwnerKind, namespace: string, name: string): string {
  const kind = owner === 'backups' ? 'backup' : 'restore';
  checkNames(namespace, kind, name);
  return kind;
}

/** A path's namespace (a DNS-1123 label) and object name (a DNS-1123 subdomain), before either is used. */
export function checkNames(namespace: string, kind: string, name: string): void {
  if (!isDns1123Label(namespace)) throw new InvalidTargetError(`invalid namespace "${namespace}": must be a DNS-1123 label`);
  if (!isDns1123Subdomain(name)) throw new InvalidTargetError(`invalid ${kind} name "${name}": must be a DNS-1123 subdomain`);
}

/**
 * A wildcard's segments as the router decoded them ([] when absent). A `%2F` inside one segment
 * decodes to `/` and would join two names the caller sent apart: refused.
 */
export function wildcardSegments(req: Request, name: string, what: string): string[] {
  const raw = (req.params as Record<string, unknown>)[name];
  const parts = raw === undefined ? [] : Array.isArray(raw) ? (raw as unknown[]) : [raw];
  if (!parts.every((p): p is string => typeof p === 'string')) throw new InvalidTargetError(`${what} is malformed`);
  if (parts.some((p) => p.includes('/'))) throw new InvalidTargetError('a path segment cannot contain an encoded "/"');
  return parts;
}

/**
 * The target of a volume route: the backup, with the artifact `volumedata` that authorizes every
 * volume route (it names no single object key, so it is not in the artifact table).
 */
export function parseVolumeDataTarget(req: Request): Target {
  const namespace = param(req, 'namespace');
  const name = param(req, 'name');
  checkOwnerNames('backups', namespace, name);
  return { namespace, owner: 'backups', name, artifact: VOLUME_DATA_ARTIFACT };
}

/** The SubjectAccessReview subresource every volume route needs: `get` on `backups/volumedata`. */
export const VOLUME_DATA_ARTIFACT = 'volumedata';

export const DOWNLOAD_REQUEST_PATH = '/v1/namespaces/:namespace/downloadrequests/:name';

/** A named path parameter as the router decoded it ('' when absent). */
export const param = (req: Request, name: string): string => (req.params as Record<string, string | undefined>)[name] ?? '';

/** The target of a backup or restore route, from its path. */
export function parseTargetOf(owner: OwnerKind): RequestHandler {
  return (req, res, next) => {
    localsOf(res).target = parseTarget(owner, param(req, 'namespace'), param(req, 'name'), param(req, 'artifact'));
    next();
  };
}

/** The DownloadRequest a DownloadRequest route names; its target is known only once it is read. */
export const parseDownloadRequest: RequestHandler = (req, res, next) => {
  const namespace = param(req, 'namespace');
  const name = param(req, 'name');
  checkNames(namespace, 'downloadrequest', name);
  localsOf(res).downloadRequest = { namespace, name };
  next();
};
