/**
 * Authorization as Express middleware, after authentication and before anything is resolved: a
 * caller who may not read a backup must not learn whether it exists. A denial is the 403 that
 * kube-apiserver would send, naming user, verb and resource.
 */
import type { RequestHandler } from 'express';
import type { Authorizer, ResourceAttributes, UserInfo } from '../auth/types.ts';
import type { Target } from '../velero/artifacts.ts';
import { KANISTER_GROUP } from '../velero/kanister-profiles.ts';
import { earlier, localsOf, signalOf } from './locals.ts';
import { HttpError } from './status.ts';
import { then } from '../util/promise-or.ts';
import type { PromiseOr } from '../util/promise-or.ts';

/** The SubjectAccessReview attributes for a target: `get` on `backups/<artifact>` or `restores/<artifact>` named by the owner. */
export function attributesOf(target: Target): ResourceAttributes {
  return {
    group: 'velero.io',
    resource: target.owner,
    subresource: target.artifact,
    verb: 'get',
    namespace: target.namespace,
    name: target.name,
  };
}

/** The 403 message kube-apiserver would write: user, verb, resource, namespace. */
export function forbiddenMessage(user: UserInfo, a: ResourceAttributes, reason?: string): string {
  const resource = `${a.resource}${a.subresource ? `/${a.subresource}` : ''}`;
  return (
    `${a.resource}.${a.group} "${a.name}" is forbidden: User "${user.username}" cannot ${a.verb} resource ` +
    `"${resource}" in API group "${a.group}" in the namespace "${a.namespace}"${reason ? `: ${reason}` : ''}`
  );
}

/**
 * Authorizes, then goes on with `next` (in the same turn when the decision is cached), or throws the
 * 403 kube-apiserver would send.
 */
function requireAllowed(authorizer: Authorizer, user: UserInfo, attrs: ResourceAttributes, signal: AbortSignal, next: () => void): PromiseOr<void> {
  return then(authorizer.authorize(user, attrs, signal), (decision) => {
    if (!decision.allowed) {
      throw new HttpError(403, 'Forbidden', forbiddenMessage(user, attrs, decision.reason), {}, {
        name: attrs.name,
        group: attrs.group,
        kind: attrs.resource,
      });
    }
    next();
  });
}

/** The caller must be allowed to `get` the artifact (`backups/<artifact>`, `restores/<artifact>`). */
export function authorizeTarget(authorizer: Authorizer): RequestHandler {
  return (_req, res, next) => {
    const { user, target } = localsOf(res);
    return requireAllowed(authorizer, earlier(user, 'the user'), attributesOf(earlier(target, 'the target')), signalOf(res), next);
  };
}

/**
 * The caller must be allowed to `get` the DownloadRequest before the gateway reads it, so a caller
 * with no access learns nothing about which requests exist.
 */
export function authorizeDownloadRequest(authorizer: Authorizer): RequestHandler {
  return (_req, res, next) => {
    const { user, downloadRequest } = localsOf(res);
    const { namespace, name } = earlier(downloadRequest, 'the DownloadRequest');
    return requireAllowed(authorizer, earlier(user, 'the user'), { group: 'velero.io', resource: 'downloadrequests', verb: 'get', namespace, name }, signalOf(res), next);
  };
}

/**
 * The caller must be allowed to `get` the Profile's subresource (`profiles/objects`,
 * `profiles/snapshots`, API group cr.kanister.io) before the Profile is read, so a caller with no
 * access learns nothing about which Profiles exist.
 */
export function authorizeProfile(authorizer: Authorizer): RequestHandler {
  return (_req, res, next) => {
    const { user, profileTarget } = localsOf(res);
    const { namespace, profile, subresource } = earlier(profileTarget, 'the Profile target');
    return requireAllowed(authorizer, earlier(user, 'the user'), { group: KANISTER_GROUP, resource: 'profiles', subresource, verb: 'get', namespace, name: profile }, signalOf(res), next);
  };
}
