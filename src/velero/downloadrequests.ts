/**
 * The DownloadRequest rules of the stock `velero` CLI path (README, "Threat model").
 *
 * Velero's DownloadRequest CRD has no status subresource and the webhook port accepts forged reviews
 * from any pod, so nothing here trusts what a review says:
 * - On CREATE the admission webhook records who asked as annotations (user, uid, groups, extra and a
 *   signed record with the issue time). The chart's ValidatingAdmissionPolicy, run by the API server
 *   itself, refuses a record that does not name `request.userInfo` and any later change of the record
 *   or of `status.downloadURL` by anyone but Velero's and the gateway's service accounts. The encoding
 *   below is exactly what that policy computes with CEL (`encodeRequester`): keep the two in step.
 * - On Velero's status write (UPDATE) the webhook mints a gateway URL bound to the DownloadRequest's
 *   namespace, name, uid, target and an expiry, after checking the record's signature and the uid
 *   against the live object, before reading anything that could tell whether a backup exists.
 * - At download a signed URL is honoured only when its MAC verifies (before any API call), the live
 *   DownloadRequest has that uid and target and still carries that very URL, and its record is valid;
 *   the caller is then the recorded requester, authorized like any other.
 */
import type { KubeObject, ReadOptions } from '../kube/objects.ts';
import { findArtifactByKind, isDns1123Label, isDns1123Subdomain } from './artifacts.ts';
import type { Target } from './artifacts.ts';
import { CrossNamespaceError, NotFoundError, SignedUrlRefusedError } from './errors.ts';
import { nonEmptyString } from '../util/strings.ts';
import type { PromiseOr } from '../util/promise-or.ts';

/** Signs and checks lists of strings with the gateway's keys (implemented in auth/signed-urls.ts). */
export interface Signer {
  sign(parts: readonly string[]): string;
  verify(parts: readonly string[], signature: string): boolean;
}

/** Who created a DownloadRequest, as the API server's `userInfo` said. */
export interface Requester {
  username: string;
  uid?: string;
  groups: string[];
  extra?: Record<string, string[]>;
}

/** The annotations of the requester record. All five are written together. */
export const REQUESTER_ANNOTATIONS = {
  user: 'download-server.velero.io/requester',
  uid: 'download-server.velero.io/requester-uid',
  groups: 'download-server.velero.io/requester-groups',
  extra: 'download-server.velero.io/requester-extra',
  /** `<issued at, Unix seconds>.<signature>`. */
  record: 'download-server.velero.io/requester-record',
} as const;

/** A BackupStorageLocation annotated `"true"` opts in to having its DownloadRequests served through the gateway. */
export const ENABLED_ANNOTATION = 'download-server.velero.io/enabled';

/** Finds the BackupStorageLocation a target's data lives in (the resolver: same namespace only). */
export interface StorageLocations {
  /** NotFoundError when the chain is broken, CrossNamespaceError when an object points elsewhere. */
  storageLocationOf(target: Target, signal: AbortSignal, read?: ReadOptions): PromiseOr<KubeObject>;
}

/**
 * Whether a target's DownloadRequests are pointed at the gateway: every target when it serves all
 * locations, else when its location (Restore → Backup → BSL, all in the target's namespace) carries
 * {@link ENABLED_ANNOTATION} `"true"`. A chain that does not lead to a location in that namespace
 * opts in to nothing (Velero fails such a request too); API failures propagate.
 */
export async function optsIn(target: Target, locations: StorageLocations, serveAllLocations: boolean, signal: AbortSignal, read?: ReadOptions): Promise<boolean> {
  if (serveAllLocations) return true;
  let bsl: KubeObject;
  try {
    bsl = await locations.storageLocationOf(target, signal, read);
  } catch (err) {
    if (err instanceof NotFoundError || err instanceof CrossNamespaceError) return false;
    throw err;
  }
  return bsl.metadata?.annotations?.[ENABLED_ANNOTATION] === 'true';
}

/** Velero's own DownloadRequest lifetime: a signed URL never outlives it, nor ten minutes. */
export const MAX_SIGNED_URL_SECONDS = 600;

/**
 * How far a record's issue time may be from the object's creationTimestamp. The webhook records
 * before the API server sets creationTimestamp (after mutating admission), so they differ by the
 * rest of the admission chain plus the clocks' skew.
 */
export const RECORD_SKEW_SECONDS = 30;

const RECORD = /^(\d{1,12})\.([A-Za-z0-9_-]{43})$/;
/** The shape of a Kubernetes uid as the gateway accepts it in URLs and reviews. */
export const UID = /^[A-Za-z0-9-]{1,64}$/;
const RECORD_PURPOSE = 'velero-download-server/requester/v1';
const URL_PURPOSE = 'velero-download-server/url/v1';

// --- the record's encoding, mirrored by the chart's ValidatingAdmissionPolicy ----------------------

/**
 * Escapes the four characters the encoding uses as separators, `%` first, exactly as the policy's CEL
 * `s.replace('%', '%25').replace(',', '%2C').replace('=', '%3D').replace('\n', '%0A')` does.
 */
export function escapePart(s: string): string {
  return s.replaceAll('%', '%25').replaceAll(',', '%2C').replaceAll('=', '%3D').replaceAll('\n', '%0A');
}

const UNESCAPE: Record<string, string> = { '%25': '%', '%2C': ',', '%3D': '=', '%0A': '\n' };

function unescapePart(s: string): string {
  return s.replace(/%(?:25|2C|3D|0A)/g, (m) => UNESCAPE[m]!);
}

/** The record's text fields, or undefined when the user cannot be recorded without ambiguity. */
export function encodeRequester(user: Requester): { user: string; uid: string; groups: string; extra: string } | undefined {
  // An empty group or extra value would vanish in the joined form: such a user is not recorded.
  if (user.username === '' || user.groups.some((g) => g === '')) return undefined;
  const extra = Object.entries(user.extra ?? {});
  if (extra.some(([k, values]) => k === '' || values.some((v) => v === ''))) return undefined;
  return {
    user: user.username,
    uid: user.uid ?? '',
    groups: user.groups.map(escapePart).join(','),
    extra: extra
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
      .map(([k, values]) => `${escapePart(k)}=${values.map(escapePart).join(',')}`)
      .join('\n'),
  };
}

function decodeRequester(fields: { user: string; uid: string; groups: string; extra: string }): Requester {
  const extra: Record<string, string[]> = {};
  for (const line of fields.extra === '' ? [] : fields.extra.split('\n')) {
    const eq = line.indexOf('=');
    const rest = line.slice(eq + 1);
    extra[unescapePart(line.slice(0, eq))] = rest === '' ? [] : rest.split(',').map(unescapePart);
  }
  return {
    username: fields.user,
    ...(fields.uid !== '' && { uid: fields.uid }),
    groups: fields.groups === '' ? [] : fields.groups.split(',').map(unescapePart),
    ...(Object.keys(extra).length > 0 && { extra }),
  };
}

/** What a record or a signed URL is bound to. */
export interface DrIdentity {
  namespace: string;
  name: string;
  kind: string;
  target: string;
}

function recordParts(dr: DrIdentity, issuedAt: string, f: { user: string; uid: string; groups: string; extra: string }): string[] {
  return [RECORD_PURPOSE, dr.namespace, dr.name, dr.kind, dr.target, issuedAt, f.user, f.uid, f.groups, f.extra];
}

/** The record annotations for `user` creating `dr` now, or undefined when the user cannot be recorded. */
export function requesterAnnotations(dr: DrIdentity, user: Requester, nowSeconds: number, signer: Signer): Record<string, string> | undefined {
  const fields = encodeRequester(user);
  if (!fields) return undefined;
  const issuedAt = String(Math.floor(nowSeconds));
  return {
    [REQUESTER_ANNOTATIONS.user]: fields.user,
    [REQUESTER_ANNOTATIONS.uid]: fields.uid,
    [REQUESTER_ANNOTATIONS.groups]: fields.groups,
    [REQUESTER_ANNOTATIONS.extra]: fields.extra,
    [REQUESTER_ANNOTATIONS.record]: `${issuedAt}.${signer.sign(recordParts(dr, issuedAt, fields))}`,
  };
}

/** The target a DownloadRequest names, if it is one the gateway serves. */
export function targetOf(dr: KubeObject): { kind: string; name: string; target: Omit<Target, 'namespace'> } | undefined {
  const t = dr.spec?.target as { kind?: unknown; name?: unknown } | undefined;
  const kind = nonEmptyString(t?.kind);
  const name = nonEmptyString(t?.name);
  const found = kind === undefined ? undefined : findArtifactByKind(kind);
  if (!found || name === undefined || !isDns1123Subdomain(name)) return undefined;
  return { kind: kind!, name, target: { owner: found.owner, name, artifact: found.def.artifact } };
}

/** A timestamp in Unix seconds; NaN when absent or unreadable. */
export function seconds(t: string | Date | undefined): number {
  const ms = t instanceof Date ? t.getTime() : typeof t === 'string' ? Date.parse(t) : NaN;
  return ms / 1000;
}

/** The requester a stored DownloadRequest's record names, or why it is not valid. */
export function verifyRequester(dr: KubeObject, signer: Signer): { requester: Requester } | { why: string } {
  const meta = dr.metadata ?? {};
  const ann = meta.annotations ?? {};
  const namespace = nonEmptyString(meta.namespace);
  const name = nonEmptyString(meta.name);
  const t = targetOf(dr);
  if (!namespace || !name || !t) return { why: 'it names no target the gateway serves' };
  const m = RECORD.exec(ann[REQUESTER_ANNOTATIONS.record] ?? '');
  const fields = { user: ann[REQUESTER_ANNOTATIONS.user], uid: ann[REQUESTER_ANNOTATIONS.uid], groups: ann[REQUESTER_ANNOTATIONS.groups], extra: ann[REQUESTER_ANNOTATIONS.extra] };
  if (!m || fields.user === undefined || fields.uid === undefined || fields.groups === undefined || fields.extra === undefined || fields.user === '') {
    return { why: 'it carries no requester record' };
  }
  const complete = fields as { user: string; uid: string; groups: string; extra: string };
  if (!signer.verify(recordParts({ namespace, name, kind: t.kind, target: t.name }, m[1]!, complete), m[2]!)) {
    return { why: 'its requester record is not signed by this gateway for this request' };
  }
  const created = seconds(meta.creationTimestamp);
  if (!Number.isFinite(created) || Math.abs(created - Number(m[1])) > RECORD_SKEW_SECONDS) {
    return { why: 'its requester record was not made when it was created' };
  }
  return { requester: decodeRequester(complete) };
}

/** Whether two versions of a DownloadRequest carry the same requester record. */
export function sameRecord(a: KubeObject, b: KubeObject): boolean {
  return Object.values(REQUESTER_ANNOTATIONS).every((k) => a.metadata?.annotations?.[k] === b.metadata?.annotations?.[k]);
}

// --- signed URLs ------------------------------------------------------------------------------

/** The path of a DownloadRequest on the download API: the one spelling of it. */
export function downloadRequestPath(namespace: string, name: string): string {
  return `/v1/namespaces/${encodeURIComponent(namespace)}/downloadrequests/${encodeURIComponent(name)}`;
}

/** `pathAndQuery` under the gateway's base URL (a trailing slash of the base is dropped). */
export function gatewayUrl(baseUrl: string, pathAndQuery: string): string {
  return `${baseUrl.replace(/\/+$/, '')}${pathAndQuery}`;
}

/** The unsigned gateway URL of one DownloadRequest, as the controller records it. */
export function downloadRequestUrl(baseUrl: string, namespace: string, name: string): string {
  return gatewayUrl(baseUrl, downloadRequestPath(namespace, name));
}

interface UrlBinding extends DrIdentity {
  uid: string;
  expires: number;
}

function urlParts(b: UrlBinding): string[] {
  return [URL_PURPOSE, b.namespace, b.name, b.uid, b.kind, b.target, String(b.expires)];
}

/** Path and query of the signed URL for one DownloadRequest (its uid and target) until `expires`. */
export function signedPath(b: UrlBinding, signer: Signer): string {
  const q = new URLSearchParams({ uid: b.uid, kind: b.kind, target: b.target, expires: String(b.expires), signature: signer.sign(urlParts(b)) });
  return `${downloadRequestPath(b.namespace, b.name)}?${q.toString()}`;
}

/** The query parameters of a signed URL: a request that has any of them is judged as one. */
export const SIGNED_QUERY = ['uid', 'kind', 'target', 'expires', 'signature'] as const;

/** The requester and target a valid signed URL grants. */
export interface SignedGrant {
  requester: Requester;
  target: Target;
  downloadRequest: string;
}

/** Reads DownloadRequests: a watch cache first, the API server when the cache has no match. */
export interface DownloadRequestSource {
  /** From the watch cache, without an API call; undefined when it is not there (yet). */
  cached(namespace: string, name: string): KubeObject | undefined;
  /** From the API server now. */
  live(namespace: string, name: string, signal: AbortSignal): Promise<KubeObject | undefined>;
}

/** The first of `cached`, then a live read, that `matches`; a miss or mismatch in the cache is never final. */
export async function findMatching<T>(
  source: DownloadRequestSource,
  namespace: string,
  name: string,
  signal: AbortSignal,
  matches: (dr: KubeObject | undefined) => T | undefined,
): Promise<{ found: T } | { last: KubeObject | undefined }> {
  const cached = source.cached(namespace, name);
  const hit = matches(cached);
  if (hit !== undefined) return { found: hit };
  const live = await source.live(namespace, name, signal);
  const fresh = matches(live);
  return fresh !== undefined ? { found: fresh } : { last: live };
}

export interface SignedUrlDeps {
  signer: Signer;
  serves: (namespace: string) => boolean;
  /** Live reads charged to the object-read budget. */
  downloadRequests: DownloadRequestSource;
  now?: () => number;
}

/**
 * Judges a request to `/v1/namespaces/<ns>/downloadrequests/<name>` with signed-URL parameters.
 * Every refusal is the same 403 kind, whatever exists: a caller without a valid URL learns nothing.
 */
export class SignedUrls {
  readonly #deps: SignedUrlDeps;

  constructor(deps: SignedUrlDeps) {
    this.#deps = deps;
  }

  /** The grant of a signed request, or SignedUrlRefusedError. */
  async verify(namespace: string, name: string, query: Readonly<Record<string, unknown>>, signal: AbortSignal): Promise<SignedGrant> {
    const invalid = new SignedUrlRefusedError('the URL is not a valid signed DownloadRequest URL (altered, or signed with an unknown key)');
    const q = Object.fromEntries(SIGNED_QUERY.map((k) => [k, query[k]])) as Record<(typeof SIGNED_QUERY)[number], unknown>;
    if (Object.values(q).some((v) => typeof v !== 'string')) throw invalid;
    const { uid, kind, target, expires: expiresRaw, signature } = q as Record<(typeof SIGNED_QUERY)[number], string>;
    if (!isDns1123Label(namespace) || !isDns1123Subdomain(name) || !UID.test(uid) || !/^\d{1,12}$/.test(expiresRaw) || !isDns1123Subdomain(target)) throw invalid;
    const found = findArtifactByKind(kind);
    if (!found) throw invalid;
    const expires = Number(expiresRaw);
    // The MAC first: nothing is read for a URL this gateway did not sign.
    if (!this.#deps.signer.verify(urlParts({ namespace, name, uid, kind, target, expires }), signature)) throw invalid;
    const now = (this.#deps.now ?? Date.now)() / 1000;
    if (expires <= now) throw new SignedUrlRefusedError(`the signed URL expired at ${new Date(expires * 1000).toISOString()}`);
    if (!this.#deps.serves(namespace)) throw invalid;

    let why = 'the DownloadRequest it was signed for no longer exists';
    const result = await findMatching(this.#deps.downloadRequests, namespace, name, signal, (dr) => {
      if (!dr) return undefined;
      const t = targetOf(dr);
      if (dr.metadata?.uid !== uid || t?.kind !== kind || t.name !== target) {
        why = 'the DownloadRequest it was signed for was deleted or changed';
        return undefined;
      }
      if (!carries(dr, namespace, name, signature)) {
        why = 'the DownloadRequest no longer carries this URL';
        return undefined;
      }
      const r = verifyRequester(dr, this.#deps.signer);
      if ('why' in r) {
        why = `the DownloadRequest's requester cannot be established: ${r.why}`;
        return undefined;
      }
      return r.requester;
    });
    if ('last' in result) throw new SignedUrlRefusedError(`the signed URL is not honoured: ${why}`);
    return {
      requester: result.found,
      target: { namespace, owner: found.owner, name: target, artifact: found.def.artifact },
      downloadRequest: `${namespace}/${name}`,
    };
  }
}

/** The signature of a gateway URL for this DownloadRequest, or undefined when `raw` is no such URL. */
export function signatureIn(raw: string | undefined, namespace: string, name: string): string | undefined {
  if (!raw) return undefined;
  try {
    const u = new URL(raw);
    return u.pathname === downloadRequestPath(namespace, name) ? (u.searchParams.get('signature') ?? undefined) : undefined;
  } catch {
    return undefined;
  }
}

/** Whether `status.downloadURL` is the URL with this signature for this DownloadRequest. */
function carries(dr: KubeObject, namespace: string, name: string, signature: string): boolean {
  return signatureIn(nonEmptyString(dr.status?.downloadURL), namespace, name) === signature;
}
