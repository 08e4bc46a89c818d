/**
 * The mutating admission webhook for DownloadRequests (issue 8): when Velero's controller writes
 * `status.downloadURL` for a request whose BackupStorageLocation opts in, the API server asks this
 * endpoint, and the answer replaces that URL with a signed gateway URL, so the stock `velero` CLI
 * never sees a store URL it cannot reach. Anything it cannot decode or decide is allowed unpatched
 * (with a log line): the webhook must never stand in Velero's way (the chart also sets
 * failurePolicy: Ignore).
 */
import type { ErrorRequestHandler, RequestHandler } from 'express';
import express from 'express';
import type { Logger } from 'pino';
import type { KeyRing } from '../auth/signed-urls.ts';
import { signPath } from '../auth/signed-urls.ts';
import type { KubeObject } from '../kube/objects.ts';

export const ADMISSION_PATH = '/admission/downloadrequests';
/** Velero's own DownloadRequest lifetime: a signed URL never outlives it. */
export const MAX_SIGNED_URL_SECONDS = 600;

export interface AdmissionDeps {
  log: Logger;
  keys: () => KeyRing;
  /** The base URL users reach the gateway at, or undefined while unknown. */
  baseUrl: () => string | undefined;
  /** Reads the request's target and decides whether its location opts in. */
  optedIn: (namespace: string, dr: KubeObject, signal: AbortSignal) => Promise<boolean>;
  now?: () => number;
}

interface AdmissionRequest {
  uid?: unknown;
  operation?: unknown;
  namespace?: unknown;
  object?: KubeObject;
}

const str = (v: unknown): string | undefined => (typeof v === 'string' && v !== '' ? v : undefined);

/** The signed gateway URL for one DownloadRequest, expiring with it (at most 10 minutes from now). */
export function signedDownloadUrl(base: string, keys: KeyRing, namespace: string, name: string, expiration: string | undefined, nowMs: number): string {
  const cap = Math.floor(nowMs / 1000) + MAX_SIGNED_URL_SECONDS;
  const requested = expiration ? Math.floor(Date.parse(expiration) / 1000) : NaN;
  const expires = Number.isFinite(requested) ? Math.min(requested, cap) : cap;
  const path = `/v1/namespaces/${namespace}/downloadrequests/${name}`;
  return `${base.replace(/\/+$/, '')}${signPath(keys, path, expires)}`;
}

export function admissionHandler(deps: AdmissionDeps): (RequestHandler | ErrorRequestHandler)[] {
  const respond = (uid: string, patch?: unknown[]): Record<string, unknown> => ({
    apiVersion: 'admission.k8s.io/v1',
    kind: 'AdmissionReview',
    response: {
      uid,
      allowed: true,
      ...(patch && { patchType: 'JSONPatch', patch: Buffer.from(JSON.stringify(patch)).toString('base64') }),
    },
  });
  const handler: RequestHandler = async (req, res) => {
    const review = req.body as { apiVersion?: unknown; kind?: unknown; request?: AdmissionRequest } | undefined;
    const request = review?.request;
    const uid = str(request?.uid) ?? '';
    const allow = (why: string, level: 'debug' | 'warn' = 'debug'): void => {
      deps.log[level]({ uid, why }, 'admission: allowed without a patch');
      res.json(respond(uid));
    };
    if (review?.kind !== 'AdmissionReview' || !request || !uid) return allow('not an AdmissionReview', 'warn');
    const dr = request.object;
    const namespace = str(request.namespace) ?? str(dr?.metadata?.namespace);
    const name = str(dr?.metadata?.name);
    const downloadURL = str(dr?.status?.downloadURL);
    if (!dr || dr.kind !== 'DownloadRequest' || !namespace || !name) return allow('not a DownloadRequest', 'warn');
    if (request.operation !== 'UPDATE' && request.operation !== 'CREATE') return allow('not a write');
    if (!downloadURL) return allow('no status.downloadURL yet');
    const base = deps.baseUrl();
    if (!base) return allow('the gateway does not know its URL yet', 'warn');
    if (downloadURL.startsWith(`${base.replace(/\/+$/, '')}/`)) return allow('already a gateway URL');
    try {
      if (!(await deps.optedIn(namespace, dr, AbortSignal.timeout(5_000)))) return allow('the location does not opt in');
    } catch (err) {
      return allow(`could not decide: ${(err as Error).message}`, 'warn');
    }
    const signed = signedDownloadUrl(base, deps.keys(), namespace, name, str(dr.status?.expiration), (deps.now ?? Date.now)());
    deps.log.info({ uid, namespace, name }, 'admission: replaced status.downloadURL with a signed gateway URL');
    res.json(respond(uid, [{ op: 'replace', path: '/status/downloadURL', value: signed }]));
  };
  // A body that is not even JSON is still answered "allowed", never with an error status.
  const undecodable: ErrorRequestHandler = (err: unknown, _req, res, _next) => {
    deps.log.warn({ why: (err as Error).message }, 'admission: undecodable request allowed without a patch');
    res.json(respond(''));
  };
  // AdmissionReviews carry the whole object; 3 MiB is the API server's own request limit.
  return [express.json({ limit: '3mb', type: () => true }), handler, undecodable];
}

/** Whether a BSL opts in: its annotation, or every location when the gateway serves them all. */
export function optsIn(bsl: KubeObject, serveAllLocations: boolean): boolean {
  return serveAllLocations || bsl.metadata?.annotations?.['download-server.velero.io/enabled'] === 'true';
}
