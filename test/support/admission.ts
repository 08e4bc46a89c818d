/**
 * The API server's part in the stock-CLI flow, played by tests: the Kubernetes API test double has no
 * admission, so these helpers send the AdmissionReviews a real API server would send to the gateway's
 * webhook (CREATE with the creator's userInfo; UPDATE when Velero's controller writes status), apply
 * the JSON patch it answers, and store the result in the double (which sets uid and creationTimestamp
 * as a real server does after mutating admission). Forged reviews are sent with `review()` directly.
 */
import { randomUUID } from 'node:crypto';
import type { KubeApiServer, KubeObject } from './kube-apiserver/index.ts';

export interface ReviewUser {
  username: string;
  uid?: string;
  groups?: string[];
  extra?: Record<string, string[]>;
}

/** What the webhook answered. */
export interface ReviewResponse {
  status: number;
  body: { apiVersion?: string; kind?: string; response?: { uid: string; allowed: boolean; patchType?: string; patch?: string } } & Record<string, unknown>;
}

/** Sends one review body to the webhook (supertest against the app, or curl against the process). */
export type PostReview = (body: unknown) => Promise<ReviewResponse>;

export type JsonPatchOp = { op: string; path: string; value?: unknown };

/** The patch of an answer, decoded; undefined when there is none. */
export function patchOf(res: ReviewResponse): JsonPatchOp[] | undefined {
  const p = res.body.response?.patch;
  return p === undefined ? undefined : (JSON.parse(Buffer.from(p, 'base64').toString()) as JsonPatchOp[]);
}

/** Applies the JSON patch operations the webhook uses (add, replace) to a copy of `obj`. */
export function applyJsonPatch<T>(obj: T, patch: readonly JsonPatchOp[]): T {
  const out = structuredClone(obj) as Record<string, unknown>;
  for (const op of patch) {
    if (op.op !== 'add' && op.op !== 'replace') throw new Error(`unsupported JSON patch op ${op.op}`);
    const keys = op.path.split('/').slice(1).map((k) => k.replaceAll('~1', '/').replaceAll('~0', '~'));
    const last = keys.pop()!;
    let at = out;
    for (const k of keys) {
      if (typeof at[k] !== 'object' || at[k] === null) {
        if (op.op === 'replace') throw new Error(`JSON patch: ${op.path} does not exist`);
        at[k] = {};
      }
      at = at[k] as Record<string, unknown>;
    }
    if (op.op === 'replace' && !(last in at)) throw new Error(`JSON patch: ${op.path} does not exist`);
    at[last] = op.value;
  }
  return out as T;
}

/** An AdmissionReview as kube-apiserver sends it. */
export function review(operation: 'CREATE' | 'UPDATE', namespace: string, object: unknown, user: ReviewUser, oldObject?: unknown): Record<string, unknown> {
  return {
    apiVersion: 'admission.k8s.io/v1',
    kind: 'AdmissionReview',
    request: {
      uid: randomUUID(),
      kind: { group: 'velero.io', version: 'v1', kind: 'DownloadRequest' },
      resource: { group: 'velero.io', version: 'v1', resource: 'downloadrequests' },
      requestKind: { group: 'velero.io', version: 'v1', kind: 'DownloadRequest' },
      requestResource: { group: 'velero.io', version: 'v1', resource: 'downloadrequests' },
      name: (object as KubeObject).metadata?.name,
      namespace,
      operation,
      userInfo: { username: user.username, ...(user.uid && { uid: user.uid }), groups: user.groups ?? [], ...(user.extra && { extra: user.extra }) },
      object,
      oldObject: oldObject ?? null,
      dryRun: false,
      options: { apiVersion: 'meta.k8s.io/v1', kind: operation === 'CREATE' ? 'CreateOptions' : 'UpdateOptions' },
    },
  };
}

/** Velero's service account, as the API server names it in userInfo. */
export const VELERO_SA: ReviewUser = { username: 'system:serviceaccount:velero:velero', groups: ['system:serviceaccounts', 'system:serviceaccounts:velero', 'system:authenticated'] };

/** The admission steps of a real API server, against the double `api` and the webhook `post`. */
export class AdmissionFlow {
  readonly #api: KubeApiServer;
  readonly #post: PostReview;
  readonly #namespace: string;

  constructor(api: KubeApiServer, post: PostReview, namespace: string) {
    this.#api = api;
    this.#post = post;
    this.#namespace = namespace;
  }

  /** `user` creates a DownloadRequest: the webhook records them, the API server stores the result. */
  async create(user: ReviewUser, name: string, target: { kind: string; name: string }, extra: Partial<KubeObject> = {}): Promise<KubeObject> {
    const object: KubeObject = { apiVersion: 'velero.io/v1', kind: 'DownloadRequest', metadata: { name, namespace: this.#namespace, ...extra.metadata }, spec: { target } };
    const res = await this.#post(review('CREATE', this.#namespace, object, user));
    if (res.status !== 200 || res.body.response?.allowed !== true) throw new Error(`the webhook did not allow the CREATE: ${res.status} ${JSON.stringify(res.body)}`);
    const patch = patchOf(res);
    return this.#api.put(patch ? applyJsonPatch(object, patch) : object);
  }

  /**
   * Velero's controller writes `status` (a merge patch on the main resource): the webhook may swap
   * the store URL for a gateway URL; the stored object is returned with the answer.
   */
  async processed(name: string, storeUrl = 'http://minio.velero.svc:9000/velero/x?X-Amz-Signature=1', expiration = new Date(Date.now() + 600_000)): Promise<{ stored: KubeObject; response: ReviewResponse }> {
    const old = this.#api.get('velero.io/v1', 'DownloadRequest', name, this.#namespace);
    if (!old) throw new Error(`no DownloadRequest ${name}`);
    const object = { ...old, status: { phase: 'Processed', downloadURL: storeUrl, expiration: expiration.toISOString() } };
    const response = await this.#post(review('UPDATE', this.#namespace, object, VELERO_SA, old));
    if (response.status !== 200 || response.body.response?.allowed !== true) throw new Error(`the webhook did not allow the UPDATE: ${response.status}`);
    const patch = patchOf(response);
    return { stored: this.#api.put(patch ? applyJsonPatch(object, patch) : object), response };
  }
}
