/**
 * The admission webhook's decision, and the AdmissionReview it travels in. A review proves nothing
 * (any pod can post one), so the decision trusts only what it reads back and what this gateway signed
 * (see downloadrequests.ts for the rules). Pure apart from its deps: the HTTP side (body limit,
 * deadline, metrics, audit lines) is server/admission.ts.
 */
import type { KubeObject } from '../kube/objects.ts';
import { isDns1123Label, isDns1123Subdomain } from './artifacts.ts';
import type { Target } from './artifacts.ts';
import {
  MAX_SIGNED_URL_SECONDS,
  UID,
  findMatching,
  gatewayUrl,
  requesterAnnotations,
  sameRecord,
  seconds,
  signatureIn,
  signedPath,
  targetOf,
  verifyRequester,
} from './downloadrequests.ts';
import type { DownloadRequestSource, DrIdentity, Requester, Signer } from './downloadrequests.ts';
import { nonEmptyString } from '../util/strings.ts';

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
    const url = gatewayUrl(base, signedPath({ namespace, name, uid, kind: t.kind, target: t.name, expires }, this.#deps.signer));
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

// --- the AdmissionReview envelope ---------------------------------------------------------------

/** One review's request as posted: its uid, a label-safe operation, and the fields the decision reads. */
export interface ParsedReview {
  uid: string;
  /** `CREATE`, `UPDATE`, ... or `other` for anything that is no upper-case word (metrics labels stay bounded). */
  operation: string;
  request: AdmissionRequestLike;
}

/** The request of an `admission.k8s.io/v1` AdmissionReview, or undefined when `body` is none. */
export function parseReview(body: unknown): ParsedReview | undefined {
  const b = body as { apiVersion?: unknown; kind?: unknown; request?: (AdmissionRequestLike & { uid?: unknown }) | null } | null | undefined;
  const request = b?.request;
  if (b?.apiVersion !== 'admission.k8s.io/v1' || b.kind !== 'AdmissionReview' || !request || typeof request.uid !== 'string' || request.uid === '') return undefined;
  const operation = typeof request.operation === 'string' && /^[A-Z]{1,16}$/.test(request.operation) ? request.operation : 'other';
  return { uid: request.uid, operation, request };
}

/**
 * The AdmissionReview answering review `uid`: always allowed (the webhook never stands in Velero's
 * way), with the decision's JSON patch when it has one.
 */
export function reviewResponse(uid: string, decision?: AdmissionDecision): Record<string, unknown> {
  const patch = decision && decision.outcome !== 'skipped' ? decision.patch : undefined;
  return {
    apiVersion: 'admission.k8s.io/v1',
    kind: 'AdmissionReview',
    response: { uid, allowed: true, ...(patch && { patchType: 'JSONPatch', patch: Buffer.from(JSON.stringify(patch)).toString('base64') }) },
  };
}
