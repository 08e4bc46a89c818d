/** The URL layout: path → Target, with every name checked before it can become part of a key. */
import type { Request } from 'express';
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

export function targetFromRequest(owner: OwnerKind): (req: Request) => Target {
  return (req) => {
    const p = req.params as Record<string, string | undefined>;
    return parseTarget(owner, p.namespace ?? '', p.name ?? '', p.artifact ?? '');
  };
}
