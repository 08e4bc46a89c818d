/**
 * Where the Kopia repository Kanister wrote under a Profile's location is, and its password.
 *
 * A Profile says where a bucket is, not which Kopia repository lives in it: Kanister kept that in its
 * RepositoryServer (`spec.repository.rootPath`, `spec.repository.passwordSecretRef`), which left
 * Kanister's main branch, and no Profile field or Kanister annotation names a repository. So the
 * Profile carries the same two facts as annotations of ours:
 *   - `velero-download-server.io/kopia-root-path`: the repository's path below the location's prefix
 *     (default: empty, the repository is at the prefix). Joined as Kanister's GenerateFullRepoPath
 *     does, `path.Join(prefix, rootPath) + "/"`. Kanister passes the root path to kopia unjoined when
 *     the location has no prefix; here the join (and its trailing `/`) always applies, so `repo` and
 *     `repo/` both name the keys `repo/...`. A RepositoryServer's `rootPath: /repo/x/` is written
 *     here without its leading `/`.
 *   - `velero-download-server.io/kopia-password-secret`: a Secret in the Profile's own namespace of
 *     Kanister's type `secrets.kanister.io/kopia-repository/password` holding exactly the key
 *     `repo-password` (what a RepositoryServer's passwordSecretRef names, validated as Kanister does).
 *
 * Who writes these: whoever may edit Profiles in the namespace. What they could try, and why it
 * fails:
 *   - a root path that climbs out of the location's prefix (`..`, `/x`, `a//b`, `.`, NUL, a
 *     backslash): refused by name before any store is read. The store is the Profile's own location
 *     anyway (its own credential), so this guards the prefix, which may be a narrower grant.
 *   - pointing the password annotation at an unrelated Secret of the namespace (a token, a TLS key),
 *     to have the gateway try it as a repository password and answer "wrong password" or not, which
 *     would make the gateway an oracle for that Secret's value: only Secrets of Kanister's password
 *     type are read as passwords, and a Secret's type is immutable in Kubernetes, so a Profile editor
 *     who cannot create Secrets cannot make another Secret qualify. The refusal names the Secret and
 *     the expected type only, never the Secret's type, keys or values.
 *   - another namespace's Secret: `readSecret` reads the Profile's namespace only; a name with `/`
 *     is not a Secret name and is refused.
 * Statuses. A Profile without the password annotation is not set up for snapshots: NotFoundError
 * (404), as an unknown snapshot is; the message names the annotation. It is not 400 (the request is
 * fine) nor 409 (no change of state the caller could wait for would make snapshots appear). A password
 * Secret that is missing, of another type or shape: RepositoryPasswordUnavailableError (502, as
 * Velero's missing repository Secret: the configuration behind the gateway is at fault, not the
 * request). A root path or Secret name that breaks the rules: KanisterLocationError, as every other
 * mistake in a Profile.
 */
import { KanisterLocationError } from './kanister.ts';
import { KANISTER_GROUP } from './kanister-profiles.ts';
import type { ProfileLocation, ProfileRepository, ProfileRepositoryOf } from './kanister-profiles.ts';
import { isDns1123Subdomain } from './artifacts.ts';
import { NotFoundError, RepositoryPasswordUnavailableError } from './errors.ts';

export const ROOT_PATH_ANNOTATION = 'velero-download-server.io/kopia-root-path';
export const PASSWORD_SECRET_ANNOTATION = 'velero-download-server.io/kopia-password-secret';
/** Kanister's repository password Secret: this type, exactly this key (pkg/secrets/repositoryserver). */
export const KOPIA_PASSWORD_SECRET_TYPE = 'secrets.kanister.io/kopia-repository/password';
export const KOPIA_PASSWORD_KEY = 'repo-password';

/** Longest root path accepted: far beyond real layouts, short of what an object key may hold. */
export const MAX_ROOT_PATH = 512;
/** Longest password accepted (bytes): kopia sets no bound; a Secret may hold 1 MiB. */
export const MAX_PASSWORD_BYTES = 4096;

/**
 * The root path as segments, or a KanisterLocationError naming the rule it breaks (never echoing it:
 * it may hold control characters meant for a log).
 */
export function rootPathSegments(rootPath: string, where: string): string[] {
  const refuse = (rule: string): never => {
    throw new KanisterLocationError(`${where}: the annotation ${ROOT_PATH_ANNOTATION} ${rule}`);
  };
  if (rootPath.length > MAX_ROOT_PATH) refuse(`is longer than ${MAX_ROOT_PATH} characters`);
  if (/\p{C}/u.test(rootPath) || rootPath.includes('\\')) refuse('must be printable characters without "\\"');
  if (rootPath.startsWith('/')) refuse('must be a relative path (below the location\'s prefix): drop the leading "/"');
  const segments = rootPath.split('/');
  if (segments.at(-1) === '') segments.pop(); // one trailing '/', as in `repo/`
  for (const s of segments) {
    if (s === '') refuse('must not have empty segments ("//")');
    if (s === '.' || s === '..') refuse('must not have "." or ".." segments');
  }
  return segments;
}

/** `path.Join(location prefix, rootPath) + "/"`, or '' when both are empty (the store's root). */
export function repositoryPrefix(location: ProfileLocation, rootPath: string, where: string): string {
  const segments = [...location.prefix.split('/').filter(Boolean), ...rootPathSegments(rootPath, where)];
  return segments.length === 0 ? '' : `${segments.join('/')}/`;
}

const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/** The repository under a Profile's location: its prefix from the root path, its password from the named Secret. */
export const profileRepositoryOf: ProfileRepositoryOf = async (location, annotations, readSecret, signal): Promise<ProfileRepository> => {
  const where = `profile ${location.namespace}/${location.profile}`;
  const secretName = annotations[PASSWORD_SECRET_ANNOTATION];
  if (secretName === undefined) {
    throw new NotFoundError(`profiles.${KANISTER_GROUP} "${location.profile}" has no Kopia repository: it has no annotation ${PASSWORD_SECRET_ANNOTATION} naming the repository password Secret`, {
      group: KANISTER_GROUP,
      kind: 'profiles',
      name: location.profile,
    });
  }
  // Checked before the Secret is read: a bad root path is refused without reading anything.
  const prefix = repositoryPrefix(location, annotations[ROOT_PATH_ANNOTATION] ?? '', where);
  if (!isDns1123Subdomain(secretName)) {
    throw new KanisterLocationError(`${where}: the annotation ${PASSWORD_SECRET_ANNOTATION} must name a Secret of the Profile's namespace`);
  }
  const secret = await readSecret(secretName, signal);
  const named = `${where}: the repository password Secret "${secretName}"`;
  const unavailable = (why: string): never => {
    throw new RepositoryPasswordUnavailableError(`${named} ${why}`);
  };
  if (!secret) return unavailable('does not exist');
  if (secret.type !== KOPIA_PASSWORD_SECRET_TYPE) unavailable(`is not of type ${KOPIA_PASSWORD_SECRET_TYPE}`);
  const value = secret.data[KOPIA_PASSWORD_KEY];
  if (Object.keys(secret.data).length !== 1 || value === undefined) return unavailable(`must hold exactly one key, ${KOPIA_PASSWORD_KEY}`);
  if (value.length === 0 || value.length > MAX_PASSWORD_BYTES) unavailable(`must hold in ${KOPIA_PASSWORD_KEY} 1 to ${MAX_PASSWORD_BYTES} bytes`);
  let password = '';
  try {
    password = utf8.decode(value);
  } catch {
    unavailable(`must hold UTF-8 in ${KOPIA_PASSWORD_KEY}`);
  }
  return { location, prefix, password };
};
