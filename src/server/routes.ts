/** The URL layout: path → Target, with every name checked before it can become part of a key. */
import type { Request } from 'express';
import type { Authorizer } from '../auth/types.ts';
import type { Resolver } from '../velero/resolve.ts';
import { requireAllowed } from './download.ts';
import type { TargetSource } from './download.ts';
import { findArtifact, isDns1123Label, isDns1123Subdomain } from '../velero/artifacts.ts';
import type { OwnerKind, Target } from '../velero/artifacts.ts';
import { InvalidTargetError, NotFoundError } from '../velero/errors.ts';

export const DOWNLOAD_PATHS = {
  backups: '/v1/namespaces/:namespace/backups/:name/:artifact',
  restores: '/v1/namespaces/:namespace/restores/:name/:artifact',
} as const satisfies Record<OwnerKind, string>;

/** Builds and validates a Target from already-decoded path segments. */
export function parseTarget(owner: OwnerKind, namespace: string, name: string, artifact: string): Target {
  if (!isDns1123Label(namespace)) throw new InvalidTargetError(`invalid namespace "${namespace}": must be a DNS-1123 label`);
  const kind = owner === 'backups' ? 'backup' : 'restore';
  if (!isDns1123Subdomain(name)) throw new InvalidTargetError(`invalid ${kind} name "${name}": must be a DNS-1123 subdomain`);
  if (!findArtifact(owner, artifact)) {
    throw new NotFoundError(`${kind}s have no artifact "${artifact}"`, { group: 'velero.io', kind: owner, name });
  }
  return { namespace, owner, name, artifact };
}

export const DOWNLOAD_REQUEST_PATH = '/v1/namespaces/:namespace/downloadrequests/:name';

const param = (req: Request, name: string): string => (req.params as Record<string, string | undefined>)[name] ?? '';

export function targetFromRequest(owner: OwnerKind): TargetSource {
  return async (req) => parseTarget(owner, param(req, 'namespace'), param(req, 'name'), param(req, 'artifact'));
}

/**
 * The DownloadRequest route's target. The caller must be allowed to `get` the DownloadRequest before
 * the gateway reads it, so a caller with no access learns nothing about which requests exist; its
 * target artifact is then authorized like a direct download.
 */
export function targetFromDownloadRequest(authorizer: Authorizer, resolver: Resolver): TargetSource {
  return async (req, user, signal) => {
    const namespace = param(req, 'namespace');
    const name = param(req, 'name');
    if (!isDns1123Label(namespace)) throw new InvalidTargetError(`invalid namespace "${namespace}": must be a DNS-1123 label`);
    if (!isDns1123Subdomain(name)) throw new InvalidTargetError(`invalid downloadrequest name "${name}": must be a DNS-1123 subdomain`);
    await requireAllowed(authorizer, user, { group: 'velero.io', resource: 'downloadrequests', verb: 'get', namespace, name }, signal);
    return resolver.downloadRequestTarget(namespace, name, signal);
  };
}
