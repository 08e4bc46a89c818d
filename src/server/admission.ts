/**
 * The admission webhook's HTTP side, served only on its own listener (`--webhook-listen`, its own
 * Service), never on the download port. Any pod may reach it and post a forged review, so it decides
 * nothing on a review's say-so (src/velero/admission.ts does the deciding); this file only
 * bounds the request (64 KiB, a deadline under the API server's timeoutSeconds), answers in the
 * AdmissionReview shape, counts the outcome and writes the audit lines.
 *
 * Every well-formed review is answered "allowed": the webhook never stands in Velero's way. A review
 * it could not decide (the API server slow, a budget spent, the deadline passed) is answered without a
 * patch and counted as `failed`: with failurePolicy Ignore those users keep Velero's own URL.
 */
import express from 'express';
import type { ErrorRequestHandler, Express, RequestHandler } from 'express';
import type { Logger } from 'pino';
import { parseReview, reviewResponse } from '../velero/admission.ts';
import type { AdmissionDecision, AdmissionRequestLike } from '../velero/admission.ts';
import { HttpError, sendStatus, statusBody } from './status.ts';
import { errorHandler } from './app.ts';
import { useSecurityHeaders } from './security-headers.ts';
import type { GatewayMetrics } from './metrics.ts';

export const ADMISSION_PATH = '/admission/downloadrequests';
/** A DownloadRequest's review is a few KiB; anything much larger is not one. */
export const MAX_REVIEW_BYTES = 64 * 1024;
/** Under the chart's timeoutSeconds (5): an answer after the API server gave up is wasted. */
export const REVIEW_DEADLINE_MS = 3_000;

export interface WebhookDeps {
  log: Logger;
  /** Where the audit lines go (default: the main log). */
  audit?: Logger;
  admission: { decide(req: AdmissionRequestLike, signal: AbortSignal): Promise<AdmissionDecision> };
  metrics?: GatewayMetrics;
  deadlineMs?: number;
}

type Outcome = AdmissionDecision['outcome'] | 'failed';

function handler(deps: WebhookDeps): RequestHandler {
  const audit = deps.audit ?? deps.log;
  return async (req, res) => {
    const parsed = parseReview(req.body);
    if (!parsed) throw new HttpError(400, 'BadRequest', 'the body is not an admission.k8s.io/v1 AdmissionReview with a request');
    const { uid, operation, request } = parsed;
    const count = (outcome: Outcome): void => deps.metrics?.admissionReviews.inc({ operation, outcome });
    const ac = new AbortController();
    const onClose = (): void => ac.abort(new Error('the API server closed the connection'));
    res.once('close', onClose);
    let decision: AdmissionDecision;
    try {
      decision = await deps.admission.decide(request, AbortSignal.any([ac.signal, AbortSignal.timeout(deps.deadlineMs ?? REVIEW_DEADLINE_MS)]));
    } catch (err) {
      count('failed');
      const { name, message } = err as Error;
      deps.log.warn({ reviewUid: uid, operation, err: { name, message } }, 'admission: could not decide; allowed without a patch');
      if (!res.headersSent && !ac.signal.aborted) res.json(reviewResponse(uid));
      return;
    } finally {
      res.off('close', onClose);
    }
    count(decision.outcome);
    switch (decision.outcome) {
      case 'skipped':
        deps.log.debug({ reviewUid: uid, operation, why: decision.why }, 'admission: allowed without a patch');
        res.json(reviewResponse(uid));
        return;
      case 'recorded':
        audit.info({ audit: 'downloadrequest-recorded', reviewUid: uid, downloadRequest: decision.downloadRequest, user: decision.requester.username, groups: decision.requester.groups }, 'audit');
        break;
      case 'minted':
        audit.info(
          {
            audit: 'signed-url-minted',
            reviewUid: uid,
            downloadRequest: decision.downloadRequest,
            target: decision.target,
            user: decision.requester.username,
            groups: decision.requester.groups,
            expires: decision.expires.toISOString(),
          },
          'audit',
        );
        break;
    }
    res.json(reviewResponse(uid, decision));
  };
}

/** Bodies over the limit or not JSON: a Status, never a review (no API server sends them). */
const bodyErrors: ErrorRequestHandler = (err: unknown, _req, res, next) => {
  const type = (err as { type?: unknown } | null)?.type;
  if (type === 'entity.too.large') {
    sendStatus(res, { body: statusBody(413, 'RequestEntityTooLarge', `an AdmissionReview for this webhook is at most ${MAX_REVIEW_BYTES} bytes`), headers: {}, serverSide: false });
    return;
  }
  if (type === 'entity.parse.failed') {
    sendStatus(res, { body: statusBody(400, 'BadRequest', 'the body is not JSON'), headers: {}, serverSide: false });
    return;
  }
  next(err);
};

/** The webhook listener's whole application: one route, everything else 404. */
export function createWebhookApp(deps: WebhookDeps): Express {
  const app = express();
  app.disable('x-powered-by');
  app.set('etag', false);
  useSecurityHeaders(app);
  app
    .route(ADMISSION_PATH)
    .post(express.json({ limit: MAX_REVIEW_BYTES, type: () => true }), handler(deps))
    .all((req, res, next) => {
      res.setHeader('Allow', 'POST');
      next(new HttpError(405, 'MethodNotAllowed', `the method ${req.method} is not allowed here; allowed: POST`));
    });
  app.use((req, _res, next) => {
    next(new HttpError(404, 'NotFound', `the server could not find the requested resource (${req.method} ${req.path})`));
  });
  app.use(bodyErrors);
  app.use(errorHandler(deps.log));
  return app;
}
