/**
 * Kopia snapshots Kanister wrote under a Profile's location: a file's bytes, a directory's entries,
 * a symlink, or a tar of a directory, read with the volume routes' senders. The chain is
 * authenticate → parse (namespace, Profile, snapshot id, path) → authorize `get` on
 * `profiles/snapshots` in cr.kanister.io for the Profile → resolve (the Profile's location, root path
 * and password: kanister-repository.ts) → open the repository and the snapshot → send.
 *
 * Who reaches these: a caller Kubernetes allowed `get` on `profiles/snapshots` for the Profile. What
 * they control: the namespace and Profile names (DNS-1123, checked before they are used), the
 * snapshot id (lowercase hex of at most 64 characters: kopia's manifest ids are 32; anything else is
 * 400 before the Profile is read), the path (the volume routes' rules), `limit`, `continue`,
 * `format`, Range and conditional headers. An unknown snapshot id is 404 after the repository's index
 * is reloaded at most once per its minimum refresh interval, so a flood of made-up ids costs list
 * calls at that rate, not one per request. What the Profile's author controls: the store (their own
 * credential, the endpoint guard), the root path and the password Secret (kanister-repository.ts);
 * the repository's contents are read with the reader's bounds (open and index loads time-bounded,
 * caches under the pool's one memory budget, directory pages of at most MAX_PAGE entries, archives no
 * deeper than MAX_ARCHIVE_DEPTH, names that would leave a tar refused).
 */
import type { RequestHandler } from 'express';
import { InvalidTargetError } from '../velero/errors.ts';
import type { ProfileResolver } from '../velero/kanister-profiles.ts';
import { earlier, localsOf, signalOf } from './locals.ts';
import { checkNames, param } from './routes.ts';
import { parseSnapshotPath } from './volumes.ts';
import type { SnapshotReadOf } from './volumes.ts';

const BASE = '/v1/namespaces/:namespace/profiles/:profile/snapshots/:snapshot';
export const PROFILE_SNAPSHOT_FILES_PATH = `${BASE}/files{/*path}`;
export const PROFILE_SNAPSHOT_ARCHIVE_PATH = `${BASE}/archive{/*path}`;

/** Kopia manifest ids: lowercase hex (16 random bytes, 32 digits, today); bounded so no id is long. */
const SNAPSHOT_ID = /^[0-9a-f]{1,64}$/;

/** The Profile, snapshot and path a snapshot route names; refused before anything is read. */
export const parseProfileSnapshot: RequestHandler = (req, res, next) => {
  const namespace = param(req, 'namespace');
  const profile = param(req, 'profile');
  const id = param(req, 'snapshot');
  checkNames(namespace, 'profile', profile);
  if (!SNAPSHOT_ID.test(id)) throw new InvalidTargetError('invalid snapshot id: a Kopia snapshot (manifest) id is lowercase hex, at most 64 digits');
  const path = parseSnapshotPath(req);
  const locals = localsOf(res);
  locals.profileSnapshot = { id, ...path };
  locals.profileTarget = { namespace, profile, subresource: 'snapshots', path: [id, ...path.segments].join('/') };
  next();
};

/** The Profile's repository (location, prefix, password), after authorization. */
export function resolveProfileRepository(resolver: ProfileResolver): RequestHandler {
  return async (_req, res, next) => {
    const locals = localsOf(res);
    const { namespace, profile } = earlier(locals.profileTarget, 'the Profile target');
    locals.profileRepository = await resolver.repository(namespace, profile, signalOf(res));
    next();
  };
}

/** A snapshot route's read for the volume senders: the path, and the snapshot in the Profile's repository. */
export const profileSnapshotRead: SnapshotReadOf = (res) => {
  const locals = localsOf(res);
  const { id, segments, directory } = earlier(locals.profileSnapshot, 'the snapshot path');
  const repo = earlier(locals.profileRepository, 'the Profile repository');
  return {
    path: { segments, directory },
    source: { spec: repo.location.spec, prefix: repo.prefix, password: repo.password, snapshotID: id, name: `${repo.location.profile}-${id}` },
  };
};
