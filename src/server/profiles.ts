/**
 * The Kanister Profile objects route, `GET|HEAD /v1/namespaces/{ns}/profiles/{profile}/objects/{path...}`:
 * an object under a Profile's location, streamed by the artifact sending code (Range, HEAD, ETag,
 * 304, 416, Content-Disposition). The chain, as every download route's: authenticate → parse →
 * authorize `get` on `profiles/objects` (cr.kanister.io) → resolve the Profile → send.
 *
 * Who reaches it: any authenticated caller; only one Kubernetes allows `get` on `profiles/objects`
 * for that Profile gets past authorization, and nothing (no Profile, no Secret, no store) is read
 * before that. What the caller controls: the namespace and Profile name (DNS-1123, checked) and the
 * path (any bytes, percent-decoded per segment by the router). The path must be a key the stores
 * accept (keySegments: no empty, `.` or `..` segment, no NUL or other control character, no
 * backslash, at most 1024 bytes) and no segment may hold an encoded `/`, all refused (400) before
 * anything is read; the store then joins it under the Profile's prefix, which it never leaves.
 */
import type { RequestHandler } from 'express';
import { keySegments } from '../stores/keys.ts';
import type { ProfileResolver } from '../velero/kanister-profiles.ts';
import { earlier, localsOf, signalOf } from './locals.ts';
import { checkNames, param, wildcardSegments } from './routes.ts';

export const PROFILE_OBJECTS_PATH = '/v1/namespaces/:namespace/profiles/:profile/objects/*path';

/** The Profile and the object path a request names, checked before authorization reads anything. */
export const parseProfileObject: RequestHandler = (req, res, next) => {
  const namespace = param(req, 'namespace');
  const profile = param(req, 'profile');
  checkNames(namespace, 'profile', profile);
  const path = wildcardSegments(req, 'path', 'the object path').join('/');
  keySegments(path);
  localsOf(res).profileTarget = { namespace, profile, subresource: 'objects', path };
  next();
};

/** The Profile's location and the object's key under it, after authorization. */
export function resolveProfileObject(profiles: ProfileResolver): RequestHandler {
  return async (_req, res, next) => {
    const locals = localsOf(res);
    const { namespace, profile, path } = earlier(locals.profileTarget, 'the Profile target');
    const location = await profiles.location(namespace, profile, signalOf(res));
    locals.location = { spec: location.spec, key: location.prefix + path };
    next();
  };
}
