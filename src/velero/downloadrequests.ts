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
import type { KubeObject } from '../kube/objects.ts';
import { findArtifactByKind, isDns1123Label, isDns1123Subdomain } from './artifacts.ts';
import type { Target } from './artifacts.ts';
import { SignedUrlRefusedError } from './errors.ts';
import { nonEmptyString } from '../util/strings.ts';

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

/** Whether a BSL opts in: its annotation, or every location when the gateway serves them all. */
export function optsIn(bsl: KubeObject, serveAllLocations: boolean): boolean {
  return serveAllLocations || bsl.metadata?.annotations?.[ENABLED_ANNOTATION] === 'true';
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
const UID = /^[A-Za-z0-9-]{1,64}$/;
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

interface DrIdentity {
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

function seconds(t: string | Date | undefined): number {
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

function sameRecord(a: KubeObject, b: KubeObject): boolean {
  return Object.values(REQUESTER_ANNOTATIONS).every((k) => a.metadata?.annotations?.[k] === b.metadata?.annotations?.[k]);
}

// --- signed URLs ------------------------------------------------------------------------------

/** The path of a DownloadRequest on the download API. */
export function downloadRequestPath(namespace: string, name: string): string {
  return `/v1/namespaces/${namespace}/downloadrequests/${name}`;
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
async function findMatching<T>(
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
function signatureIn(raw: string | undefined, namespace: string, name: string): string | undefined {
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

// --- the admission webhook's decision -----------------------------------------------------------

/** The fields of an AdmissionReview's request the decision reads; anything may be missing or hostile. */
export interface AdmissionRequestLike {
  operation?: unknown;
  namespace?: unknown;
  object?: KubeObject | null;
  userInfo?: { username?: unknown; uid?: unknown; groups?: unknown; extra?: unknown } | null;
}

export type JsonPatch = { op: 'add' | 'replace'; path: string; value: unknown }[];

export type AdmissionDecision =
  | { outcome: 'recorded'; patch: JsonPatch; downloadRequest: string; requester: Requester }
  | { outcome: 'minted'; patch: JsonPatch; downloadRequest: string; requester: Requester; target: string; expires: Date }
  | { outcome: 'skipped'; why: string };

export interface AdmissionDeps {
  signer: Signer;
  serves: (namespace: string) => boolean;
  /** Live reads charged to the webhook's own budget. */
  downloadRequests: DownloadRequestSource;
  /** Whether the target's location opts in (reads through the object cache, the webhook's budget). */
  optedIn: (target: Target, signal: AbortSignal) => Promise<boolean>;
  /** The base URL users reach the gateway at, or undefined while unknown. */
  baseUrl: () => string | undefined;
  now?: () => number;
}

const pointer = (key: string): string => key.replaceAll('~', '~0').replaceAll('/', '~1');

function userOf(u: AdmissionRequestLike['userInfo']): Requester | undefined {
  const username = nonEmptyString(u?.username);
  if (!username) return undefined;
  const groups = Array.isArray(u?.groups) ? u.groups : [];
  if (!groups.every((g): g is string => typeof g === 'string')) return undefined;
  let extra: Record<string, string[]> | undefined;
  if (u?.extra !== undefined && u.extra !== null) {
    if (typeof u.extra !== 'object') return undefined;
    extra = {};
    for (const [k, v] of Object.entries(u.extra as Record<string, unknown>)) {
      if (!Array.isArray(v) || !v.every((x): x is string => typeof x === 'string')) return undefined;
      extra[k] = v;
    }
  }
  const uid = nonEmptyString(u?.uid);
  return { username, groups, ...(uid && { uid }), ...(extra && Object.keys(extra).length > 0 && { extra }) };
}

/**
 * The webhook's decision for one AdmissionReview. Answers never depend on whether a backup exists
 * unless the review names a live DownloadRequest (by its uid) whose record this gateway signed.
 */
export class DownloadRequestAdmission {
  readonly #deps: AdmissionDeps;

  constructor(deps: AdmissionDeps) {
    this.#deps = deps;
  }

  async decide(req: AdmissionRequestLike, signal: AbortSignal): Promise<AdmissionDecision> {
    const dr = req.object;
    const namespace = nonEmptyString(req.namespace);
    const name = nonEmptyString(dr?.metadata?.name);
    if (!dr || dr.kind !== 'DownloadRequest') return { outcome: 'skipped', why: 'not a DownloadRequest' };
    if (!namespace || !isDns1123Label(namespace) || !this.#deps.serves(namespace)) return { outcome: 'skipped', why: 'not a namespace this gateway serves' };
    if (!name || !isDns1123Subdomain(name)) return { outcome: 'skipped', why: 'the DownloadRequest has no name yet' };
    const t = targetOf(dr);
    if (!t) return { outcome: 'skipped', why: 'no target this gateway serves' };
    if (req.operation === 'CREATE') return this.#record(req, dr, { namespace, name, kind: t.kind, target: t.name });
    if (req.operation === 'UPDATE') return this.#mint(dr, namespace, name, t, signal);
    return { outcome: 'skipped', why: 'not a CREATE or UPDATE' };
  }

  #record(req: AdmissionRequestLike, dr: KubeObject, id: DrIdentity): AdmissionDecision {
    const requester = userOf(req.userInfo);
    if (!requester) return { outcome: 'skipped', why: 'the review names no user that can be recorded' };
    const annotations = requesterAnnotations(id, requester, (this.#deps.now ?? Date.now)() / 1000, this.#deps.signer);
    if (!annotations) return { outcome: 'skipped', why: 'the user cannot be recorded unambiguously (an empty group or extra value)' };
    // Whatever the creator wrote into these keys is replaced; `add` replaces an existing member.
    const patch: JsonPatch = dr.metadata?.annotations
      ? Object.entries(annotations).map(([k, v]) => ({ op: 'add', path: `/metadata/annotations/${pointer(k)}`, value: v }))
      : [{ op: 'add', path: '/metadata/annotations', value: annotations }];
    return { outcome: 'recorded', patch, downloadRequest: `${id.namespace}/${id.name}`, requester };
  }

  async #mint(dr: KubeObject, namespace: string, name: string, t: NonNullable<ReturnType<typeof targetOf>>, signal: AbortSignal): Promise<AdmissionDecision> {
    const downloadURL = nonEmptyString(dr.status?.downloadURL);
    if (!downloadURL) return { outcome: 'skipped', why: 'no status.downloadURL yet' };
    if (signatureIn(downloadURL, namespace, name) !== undefined) return { outcome: 'skipped', why: 'already a gateway URL' };
    const base = this.#deps.baseUrl();
    if (!base) return { outcome: 'skipped', why: 'the gateway does not know its URL yet' };
    const uid = nonEmptyString(dr.metadata?.uid);
    if (!uid || !UID.test(uid)) return { outcome: 'skipped', why: 'the object has no uid' };
    // No read before this: a review for a request this gateway did not record costs nothing.
    const record = verifyRequester(dr, this.#deps.signer);
    const unknown: AdmissionDecision = { outcome: 'skipped', why: 'no DownloadRequest with a valid requester record matches the review' };
    if ('why' in record) return unknown;
    // The review must describe a DownloadRequest that exists, with that uid and that record: a forged
    // review cannot guess a uid, so what follows (reading Backups and locations) is never an oracle.
    const live = await findMatching(this.#deps.downloadRequests, namespace, name, signal, (o) =>
      o?.metadata?.uid === uid && sameRecord(o, dr) ? o : undefined,
    );
    if ('last' in live) return unknown;
    const nowS = (this.#deps.now ?? Date.now)() / 1000;
    const expiration = seconds(nonEmptyString(dr.status?.expiration));
    const expires = Math.floor(Math.min(Number.isFinite(expiration) ? expiration : Infinity, nowS + MAX_SIGNED_URL_SECONDS));
    if (expires <= nowS) return { outcome: 'skipped', why: 'the DownloadRequest has expired' };
    if (!(await this.#deps.optedIn({ namespace, ...t.target }, signal))) return { outcome: 'skipped', why: 'the location does not opt in' };
    const url = `${base.replace(/\/+$/, '')}${signedPath({ namespace, name, uid, kind: t.kind, target: t.name, expires }, this.#deps.signer)}`;
    return {
      outcome: 'minted',
      patch: [{ op: 'replace', path: '/status/downloadURL', value: url }],
      downloadRequest: `${namespace}/${name}`,
      requester: record.requester,
      target: `${t.target.owner}/${t.name}/${t.target.artifact}`,
      expires: new Date(expires * 1000),
    };
  }
}
