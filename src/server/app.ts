/**
 * The Express application of the download API: helmet, request ids, the access log, the routes, and
 * one error middleware that turns everything into a Kubernetes Status.
 */
import { randomUUID } from 'node:crypto';
import type { BlockList } from 'node:net';
import express from 'express';
import type { ErrorRequestHandler, Express, NextFunction, Request, RequestHandler, Response } from 'express';
import type { Logger } from 'pino';
import type { Authenticator, Authorizer } from '../auth/types.ts';
import type { OwnerKind } from '../velero/artifacts.ts';
import type { ProfileResolver } from '../velero/kanister-profiles.ts';
import type { Resolver } from '../velero/resolve.ts';
import { authenticate, authenticateSignedUrl, hasSignedUrl, rejectQueryTokens } from './authn.ts';
import type { SignedUrlVerifier } from './authn.ts';
import { authorizeDownloadRequest, authorizeProfile, authorizeTarget } from './authz.ts';
import { sendLocation } from './download.ts';
import type { DownloadDeps } from './download.ts';
import { localsOf } from './locals.ts';
import { codeClass } from './metrics.ts';
import type { GatewayMetrics, RouteLabel } from './metrics.ts';
import { PROFILE_SNAPSHOT_ARCHIVE_PATH, PROFILE_SNAPSHOT_FILES_PATH, parseProfileSnapshot, profileSnapshotRead, resolveProfileRepository } from './profile-snapshots.ts';
import { resolveDownloadRequest, resolveLocation } from './resolve.ts';
import { DOWNLOAD_PATHS, DOWNLOAD_REQUEST_PATH, parseDownloadRequest, parseTargetOf, parseVolumeDataTarget } from './routes.ts';
import { HttpError, mapError, sendStatus } from './status.ts';
import { clientAddress } from './client-address.ts';
import { markPage, useSecurityHeaders } from './security-headers.ts';
import { VOLUME_ARCHIVE_PATH, VOLUME_FILES_PATH, VOLUMES_PATH, parseVolume, resolveVolume, sendVolumeArchive, sendVolumeFile, sendVolumeList } from './volumes.ts';
import type { SnapshotDeps, VolumeDeps } from './volumes.ts';
import { PROFILE_OBJECTS_PATH, parseProfileObject, resolveProfileObject } from './profiles.ts';
import { sendErrorPage, uiRoutes } from './ui/routes.ts';
import type { UiDeps } from './ui/routes.ts';

export interface AppDeps extends DownloadDeps {
  authenticator: Authenticator;
  /**
   * Access users (`user@host`, HTTP Basic) on the download routes, besides bearer tokens; undefined:
   * Basic is answered 401 saying access users are not enabled. Never on the signed-URL route.
   */
  accessUsers?: Authenticator;
  authorizer: Authorizer;
  resolver: Resolver;
  /** What GET /v1/info answers (version, fingerprint, ...); read on every call so it stays current. */
  info: () => Record<string, unknown>;
  health: HealthState;
  /** Where audit lines go (default: the main log). */
  audit?: Logger;
  /**
   * Signed DownloadRequest URLs for the stock velero CLI (kubernetes mode): a request carrying one is
   * the recorded requester's, authorized like a bearer token's.
   */
  signedUrls?: SignedUrlVerifier;
  /**
   * Proxies whose X-Forwarded-For names the client (`--trusted-proxies`), for access and audit lines
   * and for the per-client limit on unknown tokens.
   */
  trustedProxies?: BlockList;
  /** Volume data (Kopia repositories): the backup's volumes, their files and archives. */
  volumes?: Pick<VolumeDeps, 'resolver' | 'pool'>;
  /**
   * Kanister Profiles (cr.kanister.io, kubernetes mode) as sources: objects and Kopia snapshots under
   * their locations. Absent: those paths answer 404.
   */
  profiles?: ProfileResolver;
  /**
   * The browser page (`/ui/`): its catalog of backups and restores and its sessions. Absent: no page,
   * and no session cookie is accepted anywhere.
   */
  ui?: Pick<UiDeps, 'catalog' | 'sessions' | 'sessionMaxAgeMs' | 'mode'>;
}

/** Readiness shared by both listeners; false while starting and while draining on shutdown. */
export interface HealthState {
  ready: boolean;
}

const REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/;

function requestId(req: Request, res: Response, next: NextFunction): void {
  const given = req.headers['x-request-id'] as string | undefined;
  const id = given !== undefined && REQUEST_ID.test(given) ? given : randomUUID();
  localsOf(res).requestId = id;
  res.setHeader('X-Request-Id', id);
  next();
}

/**
 * One access line per request, written when the response is finished or the connection gone; and for
 * download routes, one audit line (to the audit logger, which may also write a file), allowed or not.
 * Both are built field by field from values that are never secret (no header, no query string), so
 * they skip the loggers' redaction pass, which cost half of each line's time on small downloads.
 */
function accessLog(parentLog: Logger, parentAudit: Logger, metrics: GatewayMetrics | undefined, trusted: BlockList | undefined): RequestHandler {
  const log = parentLog.child({}, { redact: [] });
  const audit = parentAudit.child({}, { redact: [] });
  return (req, res, next) => {
    const locals = localsOf(res);
    const start = (locals.startedAt = performance.now());
    const remote = clientAddress(req, trusted); // now: a socket that is gone by 'close' has no address
    let route: RouteLabel | undefined;
    res.on('close', () => {
      const { bytes, target, download, ttfb, via, user, requestId, volumePath, profileTarget } = locals;
      const durationMs = performance.now() - start;
      if (metrics) {
        const r = route ?? 'other';
        metrics.requests.inc({ route: r, method: req.method, code: String(res.statusCode) });
        if (bytes) metrics.bytesSent.inc({ route: r }, bytes);
        if (ttfb !== undefined) metrics.timeToFirstByte.observe({ route: r }, ttfb / 1000);
        if (route) {
          metrics.inflight.dec({ route });
          metrics.transferDuration.observe({ route, code: codeClass(res.statusCode) }, durationMs / 1000);
        }
      }
      log.info(
        {
          requestId,
          method: req.method,
          path: req.path, // never the query string
          status: res.statusCode,
          bytes: bytes ?? 0,
          durationMs,
          user: user?.username,
          ...(target && { target: `${target.namespace}/${target.owner}/${target.name}/${target.artifact}` }),
          ...(profileTarget && { target: `${profileTarget.namespace}/profiles/${profileTarget.profile}/${profileTarget.subresource}` }),
          remote,
          completed: res.writableFinished,
        },
        'request',
      );
      if (download) {
        audit.info(
          {
            audit: 'download',
            requestId,
            user: user?.username,
            groups: user?.groups,
            namespace: target?.namespace ?? (req.params as Record<string, string | undefined>).namespace,
            target: target ? `${target.owner}/${target.name}` : profileTarget ? `profiles/${profileTarget.profile}` : req.path,
            artifact: target?.artifact ?? profileTarget?.subresource,
            ...(profileTarget && { path: profileTarget.path }),
            // Which file of which volume: what was read is the point of an audit line (JSON-escaped by pino).
            ...(volumePath && { volume: volumePath.volume, path: volumePath.segments.join('/') }),
            ...(via && { via }),
            bytes: bytes ?? 0,
            status: res.statusCode,
            completed: res.writableFinished,
            durationMs,
            remote,
          },
          'audit',
        );
      }
    });
    // The route label is known once the router matched; downloadRoute sets it through this hook.
    locals.onDownload = (r) => {
      route = r;
      metrics?.inflight.inc({ route: r });
    };
    next();
  };
}

/** Marks a request as a download for the audit line and metrics (before authentication, so 401s count). */
function downloadRoute(route: RouteLabel): RequestHandler {
  return (_req, res, next) => {
    const locals = localsOf(res);
    locals.download = true;
    locals.onDownload?.(route);
    next();
  };
}

function healthRoutes(app: Express, health: HealthState): void {
  app.get('/healthz', (_req, res) => {
    res.type('text/plain').send('ok');
  });
  app.get('/readyz', (_req, res) => {
    res.status(health.ready ? 200 : 503).type('text/plain').send(health.ready ? 'ok' : 'not ready');
  });
}

/** The metrics listener's application: the probes and Prometheus, nothing of the download API. */
export function createMetricsApp(health: HealthState, metrics: GatewayMetrics, log: Logger): Express {
  const app = express();
  app.disable('x-powered-by');
  healthRoutes(app, health);
  app.get('/metrics', (_req, res, next) => {
    metrics.registry.metrics().then((text) => res.type(metrics.registry.contentType).send(text), next);
  });
  app.use(errorHandler(log));
  return app;
}

function methodNotAllowed(allow: string): RequestHandler {
  return (req, res, next) => {
    res.setHeader('Allow', allow);
    next(new HttpError(405, 'MethodNotAllowed', `the method ${req.method} is not allowed here; allowed: ${allow}`));
  };
}

export function errorHandler(log: Logger): ErrorRequestHandler {
  return (err: unknown, req, res, _next) => {
    if (res.headersSent || req.socket.destroyed) {
      // Nothing honest can be sent any more; a torn connection is the signal.
      res.socket?.destroy();
      return;
    }
    const mapped = mapError(err);
    if (mapped.body.code >= 500 && mapped.body.reason === 'InternalError') {
      log.error({ err, requestId: localsOf(res).requestId }, 'unhandled error');
    } else if (mapped.serverSide) {
      log.warn({ reason: mapped.body.reason, message: mapped.body.message, requestId: localsOf(res).requestId }, 'request failed');
    }
    // A download that failed before its first byte had dropped the page headers: a Status is a page.
    markPage(res);
    // A browser that followed a link of the page (signed in by its cookie) is shown a page, not JSON.
    if (localsOf(res).browser) sendErrorPage(res, err);
    else sendStatus(res, mapped);
  };
}

export function createApp(deps: AppDeps): Express {
  const app = express();
  app.disable('x-powered-by');
  app.set('etag', false);
  app.set('query parser', 'simple');
  useSecurityHeaders(app);
  app.use(requestId);
  app.use(accessLog(deps.log, deps.audit ?? deps.log, deps.metrics, deps.trustedProxies));
  app.use(rejectQueryTokens);

  healthRoutes(app, deps.health);
  app.get('/v1/info', (_req, res) => {
    res.json(deps.info());
  });

  if (deps.ui) {
    uiRoutes(app, {
      ...deps.ui,
      authenticator: deps.authenticator,
      authorizer: deps.authorizer,
      resolver: deps.resolver,
      stores: deps.stores,
      log: deps.log,
      clientOf: (req) => clientAddress(req, deps.trustedProxies),
      ...(deps.volumes && { volumes: { ...deps.volumes, stores: deps.stores, log: deps.log } }),
    });
  }
  downloadRoutes(app, deps);

  app.use((req, _res, next) => {
    next(new HttpError(404, 'NotFound', `the server could not find the requested resource (${req.method} ${req.path})`));
  });
  app.use(errorHandler(deps.log));
  return app;
}

/**
 * The download routes, each one chain: authenticate → parse its target → authorize → resolve → send.
 * Parsing follows authentication, so a caller without a valid token gets 401 whatever the path.
 *
 * A DownloadRequest route by token authorizes twice: the caller must be allowed to get the
 * DownloadRequest before it is read, then its target like a direct download. A DownloadRequest URL
 * signed by the gateway (any of its parameters present; they win over a token) is a route of its
 * own: the signed-URL authenticator names the requester recorded on the DownloadRequest and the
 * target it was signed for, which is then authorized for that requester exactly as for a token.
 */
function downloadRoutes(app: Express, deps: AppDeps): void {
  const authenticated = authenticate(deps.authenticator, (req) => clientAddress(req, deps.trustedProxies), deps.accessUsers, deps.ui?.sessions);
  const authorizeResolveSend = [authorizeTarget(deps.authorizer), resolveLocation(deps.resolver), sendLocation(deps)];
  // Before the artifact routes, whose `:artifact` would otherwise take `volumes`.
  if (deps.volumes) volumeRoutes(app, deps, authenticated, { ...deps.volumes, stores: deps.stores, log: deps.log, ...(deps.downloadSlots && { downloadSlots: deps.downloadSlots }) });
  // Snapshots share the volume routes' repository pool: one memory budget for every open repository.
  if (deps.profiles && deps.volumes) {
    profileSnapshotRoutes(app, deps, deps.profiles, authenticated, { pool: deps.volumes.pool, stores: deps.stores, log: deps.log, ...(deps.downloadSlots && { downloadSlots: deps.downloadSlots }) });
  }
  for (const owner of Object.keys(DOWNLOAD_PATHS) as OwnerKind[]) {
    const chain = [downloadRoute(owner), authenticated, parseTargetOf(owner), ...authorizeResolveSend];
    app.route(DOWNLOAD_PATHS[owner]).get(...chain).head(...chain).all(methodNotAllowed('GET, HEAD'));
  }
  if (deps.signedUrls) {
    // Requests without a signed URL skip this route for the next one ('route').
    const signed = [(req: Request, _res: Response, next: NextFunction) => next(hasSignedUrl(req) ? undefined : 'route'), downloadRoute('downloadrequests'), authenticateSignedUrl(deps.signedUrls), ...authorizeResolveSend];
    app.route(DOWNLOAD_REQUEST_PATH).get(...signed).head(...signed);
  }
  const byToken = [
    downloadRoute('downloadrequests'),
    authenticated,
    parseDownloadRequest,
    authorizeDownloadRequest(deps.authorizer),
    resolveDownloadRequest(deps.resolver),
    ...authorizeResolveSend,
  ];
  app.route(DOWNLOAD_REQUEST_PATH).get(...byToken).head(...byToken).all(methodNotAllowed('GET, HEAD'));
  if (deps.profiles) {
    const objects = [downloadRoute('profiles'), authenticated, parseProfileObject, authorizeProfile(deps.authorizer), resolveProfileObject(deps.profiles), sendLocation(deps)];
    app.route(PROFILE_OBJECTS_PATH).get(...objects).head(...objects).all(methodNotAllowed('GET, HEAD'));
  }
}

/**
 * The volume data routes: authenticate → parse → authorize `get` on `backups/volumedata` for the
 * backup → resolve the volume's repository → send. The list route authorizes the same artifact: which
 * volumes a backup holds (pods, PVCs, sizes) is volume data too.
 */
function volumeRoutes(app: Express, deps: AppDeps, authenticated: RequestHandler, volumes: VolumeDeps): void {
  const target: RequestHandler = (req, res, next) => {
    localsOf(res).target = parseVolumeDataTarget(req);
    next();
  };
  const head = [downloadRoute('volumes'), authenticated, target];
  const list = [...head, authorizeTarget(deps.authorizer), sendVolumeList(volumes.resolver)];
  app.route(VOLUMES_PATH).get(...list).head(...list).all(methodNotAllowed('GET, HEAD'));
  const inside = [...head, parseVolume, authorizeTarget(deps.authorizer), resolveVolume(volumes.resolver)];
  for (const [path, send] of [
    [VOLUME_FILES_PATH, sendVolumeFile(volumes)],
    [VOLUME_ARCHIVE_PATH, sendVolumeArchive(volumes)],
  ] as const) {
    app.route(path).get(...inside, send).head(...inside, send).all(methodNotAllowed('GET, HEAD'));
  }
}

/**
 * The Profile snapshot routes: authenticate → parse → authorize `get` on `profiles/snapshots` (API
 * group cr.kanister.io) for the Profile, before the Profile is read → resolve its repository → send
 * with the volume routes' senders.
 */
function profileSnapshotRoutes(app: Express, deps: AppDeps, profiles: ProfileResolver, authenticated: RequestHandler, snapshots: SnapshotDeps): void {
  const chain = [downloadRoute('profiles'), authenticated, parseProfileSnapshot, authorizeProfile(deps.authorizer), resolveProfileRepository(profiles)];
  for (const [path, send] of [
    [PROFILE_SNAPSHOT_FILES_PATH, sendVolumeFile(snapshots, profileSnapshotRead)],
    [PROFILE_SNAPSHOT_ARCHIVE_PATH, sendVolumeArchive(snapshots, profileSnapshotRead)],
  ] as const) {
    app.route(path).get(...chain, send).head(...chain, send).all(methodNotAllowed('GET, HEAD'));
  }
}
