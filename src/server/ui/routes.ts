/**
 * The browser page's routes, under `/ui/`. Sign-in and sign-out are the only POSTs; every other
 * action is a GET authorized per request exactly like the API (the session cookie stands in for the
 * bearer token, and downloads are links to the API's own URLs).
 *
 * Who reaches them: anyone who can reach the download port. What each trusts:
 * - `POST /ui/sign-in`: nothing until three checks pass: the request comes from this gateway's own
 *   page (its `Origin` is this host over HTTPS, and `Sec-Fetch-Site`, when the browser sends it, is
 *   `same-origin`), it carries the form token that page set in a `__Host-` cookie (a cross-site form
 *   can neither read nor set it: login CSRF), and the token passes a TokenReview (with the same
 *   per-client limit on unknown tokens as bearer requests). The body is a form of at most 8 KiB.
 * - `POST /ui/sign-out`: the same origin and form-token checks (a cross-site form cannot sign anyone out).
 * - Pages: a session cookie that opens (session.ts), then the token's review, then a review of every
 *   thing shown: a backup is listed only if the user may `list` backups in its namespace or `get` any
 *   of their artifacts namespace-wide, or else `get` it (or its log) by name; an artifact's size is
 *   looked up only if the user may `get` that artifact. Listing uses the gateway's own access (the
 *   catalog); nothing is shown before the user's reviews allow it.
 * Every page carries a Content-Security-Policy with no inline script or style, `frame-ancestors
 * 'none'` (no framing: clickjacking) and `form-action 'self'`, and `Cache-Control: no-store`.
 */
import type { Readable } from 'node:stream';
import type { Express, NextFunction, Request, RequestHandler, Response } from 'express';
import express from 'express';
import { parseCookie, stringifySetCookie } from 'cookie';
import type { Logger } from 'pino';
import type { Authenticator, Authorizer, ResourceAttributes, UserInfo } from '../../auth/types.ts';
import { AuthUnavailableError } from '../../auth/types.ts';
import type { StoreFactory } from '../../stores/spec.ts';
import { isStoreError } from '../../stores/errors.ts';
import { mapLimited } from '../../util/map-limited.ts';
import { BACKUP_ARTIFACTS, RESTORE_ARTIFACTS } from '../../velero/artifacts.ts';
import type { OwnerKind, Target } from '../../velero/artifacts.ts';
import type { Catalog, CatalogEntry } from '../../velero/catalog.ts';
import { NotFoundError } from '../../velero/errors.ts';
import type { Resolver } from '../../velero/resolve.ts';
import { attributesOf, forbiddenMessage } from '../authz.ts';
import { localsOf, signalOf } from '../locals.ts';
import { VOLUME_DATA_ARTIFACT, checkNames, param } from '../routes.ts';
import { HttpError, mapError } from '../status.ts';
import { ASSETS } from './assets.ts';
import { directoryPage, errorPage, listPage, logPage, ownerPage, resultsPage, signInPage, volumesPage } from './pages.ts';
import type { ArtifactRow, NamespaceListing } from './pages.ts';
import { LOG_LEVELS, MAX_RESULTS_BYTES, gunzipBounded, readLogPage, resultRows } from './readers.ts';
import { bodyStream } from '../../velero/object-bytes.ts';
import type { LogLevel } from './readers.ts';
import { entryType, parseVolumePath, snapshotEntry } from '../volumes.ts';
import type { VolumeDeps } from '../volumes.ts';
import { InvalidBackupFileError } from '../../velero/errors.ts';
import { FORM_COOKIE, SESSION_COOKIE, formTokenMatches, newFormToken, sessionAllowed } from './session.ts';
import type { SessionCodec } from './session.ts';

export interface UiDeps {
  authenticator: Authenticator;
  authorizer: Authorizer;
  resolver: Resolver;
  stores: StoreFactory;
  catalog: Catalog;
  sessions: SessionCodec;
  /** The longest a session lasts (`--session-max-age`). */
  sessionMaxAgeMs: number;
  mode: 'local' | 'kubernetes';
  log: Logger;
  /** The caller's address, for the authenticator's per-client limit on unknown tokens. */
  clientOf: (req: Request) => string;
  /** Volume data (Kopia repositories): the volume browser; absent, the page offers none. */
  volumes?: VolumeDeps;
}

/** No inline script or style, nothing from elsewhere, never in a frame, forms only to this gateway. */
export const PAGE_CSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/** Namespaces and entries a page shows at most; per-object reviews a list page makes at most. */
const MAX_NAMESPACES = 100;
const MAX_OBJECT_REVIEWS = 500;
const REVIEW_CONCURRENCY = 8;
/** A token's characters as a bearer header carries them, and their most. */
const TOKEN = /^[!-~]+$/;
const MAX_TOKEN = 8192;

function cookies(req: Request): Record<string, string | undefined> {
  const header = req.headers.cookie;
  return header ? parseCookie(header) : {};
}

function setCookie(res: Response, name: string, value: string, maxAgeSeconds: number): void {
  res.append('Set-Cookie', stringifySetCookie({ name, value, httpOnly: true, secure: true, sameSite: 'strict', path: '/', maxAge: maxAgeSeconds }));
}

function pageHeaders(res: Response): void {
  res.setHeader('Content-Security-Policy', PAGE_CSP);
  res.setHeader('X-Frame-Options', 'DENY');
  // Not helmet's no-referrer: under it Chromium sends `Origin: null` with the page's own form POSTs,
  // which the sign-in's origin check (rightly) refuses. The referrer still never leaves the gateway.
  res.setHeader('Referrer-Policy', 'same-origin');
  res.setHeader('Cache-Control', 'no-store');
  res.setHeader('Content-Type', 'text/html; charset=utf-8');
}

export function sendPage(res: Response, code: number, body: string): void {
  pageHeaders(res);
  res.status(code).send(body);
}

/** The form token the page's forms carry: the caller's cookie if well-formed, else a new one (set now). */
function formToken(req: Request, res: Response): string {
  const given = cookies(req)[FORM_COOKIE];
  if (given !== undefined && formTokenMatches(given, given)) return given;
  const token = newFormToken();
  setCookie(res, FORM_COOKIE, token, 24 * 3600);
  return token;
}

/**
 * A POST from this gateway's own page: its Origin is this host over HTTPS, and Sec-Fetch-Site (sent
 * by current browsers) says same-origin. A request without Origin is refused: every browser that
 * submits a form sends it on POST.
 */
function fromOwnPage(req: Request): boolean {
  const origin = req.headers.origin;
  const host = req.headers.host;
  if (!origin || !host || origin !== `https://${host}`) return false;
  const site = req.headers['sec-fetch-site'];
  return site === undefined || site === 'same-origin';
}

/** An error of a page route as a page, not a Status: the browser shows it. */
export function sendErrorPage(res: Response, err: unknown, signedIn?: { name: string; formToken: string }): void {
  const mapped = mapError(err);
  for (const [k, v] of Object.entries(mapped.headers)) res.setHeader(k, v);
  sendPage(res, mapped.body.code, errorPage({ code: mapped.body.code, reason: mapped.body.reason, message: mapped.body.message, ...(signedIn && { signedIn }) }));
}

const urlencoded = express.urlencoded({ extended: false, limit: '8kb', parameterLimit: 8, type: 'application/x-www-form-urlencoded' });

/** The form body, or a 4xx page: too large (413), not a form (415), malformed (400). Never a 500. */
function formBody(req: Request, res: Response, next: NextFunction): void {
  const type = req.headers['content-type'] ?? '';
  if (!/^application\/x-www-form-urlencoded\b/i.test(type)) {
    sendErrorPage(res, new HttpError(415, 'UnsupportedMediaType', 'the form must be sent as application/x-www-form-urlencoded'));
    return;
  }
  urlencoded(req, res, (err?: unknown) => {
    if (err) {
      const status = (err as { status?: unknown }).status;
      const code = typeof status === 'number' && status >= 400 && status < 500 ? status : 400;
      sendErrorPage(res, new HttpError(code, code === 413 ? 'RequestEntityTooLarge' : 'BadRequest', code === 413 ? 'the form is too large' : 'the form could not be read'));
      return;
    }
    next();
  });
}

function field(req: Request, name: string): unknown {
  const body = req.body as Record<string, unknown> | undefined;
  return body && Object.hasOwn(body, name) ? body[name] : undefined;
}

/** The signed-in user of a page request, set by {@link pageSession}. */
interface PageUser {
  user: UserInfo;
  formToken: string;
}
const PAGE_USER = Symbol('page user');
type WithPageUser = Response & { [PAGE_USER]?: PageUser };

function pageUserOf(res: Response): PageUser {
  const u = (res as WithPageUser)[PAGE_USER];
  if (!u) throw new Error('the page route did not pass through pageSession');
  return u;
}

function shown(u: PageUser): { name: string; formToken: string } {
  return { name: u.user.username, formToken: u.formToken };
}

/**
 * A page's session: the cookie opens and its token is valid, or the browser goes to sign-in (and a
 * cookie that no longer works is cleared). A cookie sealed with the key before a rotation is sealed
 * again with the current key, its end unchanged.
 */
function pageSession(deps: UiDeps): RequestHandler {
  return async (req, res, next) => {
    const c = sessionAllowed(req.headers['sec-fetch-site']) ? cookies(req) : {};
    const session = deps.sessions.open(c[SESSION_COOKIE]);
    const toSignIn = (why: string): void => {
      if (c[SESSION_COOKIE] !== undefined) setCookie(res, SESSION_COOKIE, '', 0);
      res.setHeader('Cache-Control', 'no-store');
      res.redirect(303, `/ui/sign-in${why ? `?${why}` : ''}`);
    };
    if (!session) {
      toSignIn(c[SESSION_COOKIE] !== undefined ? 'ended' : '');
      return;
    }
    let user: UserInfo | null;
    try {
      user = await deps.authenticator.authenticate(session.token, signalOf(res), deps.clientOf(req));
    } catch (err) {
      sendErrorPage(res, err);
      return;
    }
    if (!user) {
      toSignIn('ended');
      return;
    }
    if (session.stale) setCookie(res, SESSION_COOKIE, deps.sessions.seal(session.token, session.expiresAt - Date.now()), Math.max(1, Math.floor((session.expiresAt - Date.now()) / 1000)));
    const locals = localsOf(res);
    locals.user = user;
    locals.via = 'session';
    (res as WithPageUser)[PAGE_USER] = { user, formToken: formToken(req, res) };
    next();
  };
}

/**
 * Whether any of the reviews allows, asked in order and stopping at the first that does (each is
 * cached by the authorizer): a user who may list costs one review per namespace and kind, not
 * eleven, so a page over many namespaces stays inside the API budget.
 */
async function anyAllowed(deps: UiDeps, user: UserInfo, attrs: ResourceAttributes[], signal: AbortSignal): Promise<boolean> {
  for (const a of attrs) if ((await deps.authorizer.authorize(user, a, signal)).allowed) return true;
  return false;
}

/** The artifacts of an owner kind, as SubjectAccessReview subresources (volume data too, for backups). */
function subresourcesOf(owner: OwnerKind): string[] {
  const defs = owner === 'backups' ? BACKUP_ARTIFACTS : RESTORE_ARTIFACTS;
  return [...defs.map((d) => d.artifact), ...(owner === 'backups' ? [VOLUME_DATA_ARTIFACT] : [])];
}

/**
 * Whether `user` may see every object of a kind in a namespace: they may `list` it, or `get` any of
 * its artifacts namespace-wide (a rule without resourceNames, as the README's RBAC examples grant:
 * whoever may read the log of every backup may see which backups there are).
 */
function mayListAll(deps: UiDeps, user: UserInfo, owner: OwnerKind, namespace: string, signal: AbortSignal): Promise<boolean> {
  const base = { group: 'velero.io', resource: owner, namespace, name: '' };
  return anyAllowed(deps, user, [{ ...base, verb: 'list' }, ...subresourcesOf(owner).map((subresource) => ({ ...base, verb: 'get', subresource }))], signal);
}

/** Whether `user` may see one object by name: `get` on it, or on its log. */
function maySeeByName(deps: UiDeps, user: UserInfo, owner: OwnerKind, namespace: string, name: string, signal: AbortSignal): Promise<boolean> {
  const base = { group: 'velero.io', resource: owner, namespace, name, verb: 'get' };
  return anyAllowed(deps, user, [base, { ...base, subresource: 'log' }], signal);
}

/** The entries of one kind in one namespace that `user` may see (reviews by name within `budget`). */
async function visibleEntries(deps: UiDeps, user: UserInfo, owner: OwnerKind, namespace: string, signal: AbortSignal, budget: { reviews: number }): Promise<{ entries: CatalogEntry[]; truncated: boolean }> {
  const all = await mayListAll(deps, user, owner, namespace, signal);
  let entries: CatalogEntry[];
  try {
    entries = await deps.catalog.list(owner, namespace, signal);
  } catch (err) {
    if (err instanceof NotFoundError) return { entries: [], truncated: false };
    throw err;
  }
  if (all) return { entries, truncated: false };
  const reviewed = entries.slice(0, Math.max(0, budget.reviews));
  budget.reviews -= reviewed.length;
  const allowed = await mapLimited(reviewed, REVIEW_CONCURRENCY, (e) => maySeeByName(deps, user, owner, namespace, e.name, signal));
  return { entries: reviewed.filter((_, k) => allowed[k]), truncated: reviewed.length < entries.length };
}

/** Whether `user` may see one backup or restore (as on the list). */
async function maySee(deps: UiDeps, user: UserInfo, owner: OwnerKind, namespace: string, name: string, signal: AbortSignal): Promise<boolean> {
  return (await maySeeByName(deps, user, owner, namespace, name, signal)) || mayListAll(deps, user, owner, namespace, signal);
}

/** Not there: no such owner or artifact (resolution), or no such object (the store). */
function isMissing(err: unknown): boolean {
  return err instanceof NotFoundError || (isStoreError(err) && err.reason === 'ObjectNotFound');
}

async function artifactRow(deps: UiDeps, user: UserInfo, owner: OwnerKind, namespace: string, name: string, artifact: string, signal: AbortSignal): Promise<ArtifactRow> {
  const target = { namespace, owner, name, artifact };
  const href = `/v1/namespaces/${encodeURIComponent(namespace)}/${owner}/${encodeURIComponent(name)}/${artifact}`;
  if (!(await deps.authorizer.authorize(user, attributesOf(target), signal)).allowed) return { artifact, href, state: { kind: 'forbidden' } };
  try {
    const location = await deps.resolver.resolve(target, signal);
    const store = await deps.stores.forSpec(location.spec);
    const info = await store.stat(location.key, { signal });
    return { artifact, href, state: { kind: 'size', bytes: info.size } };
  } catch (err) {
    if (isMissing(err)) return { artifact, href, state: { kind: 'missing' } };
    if (err instanceof AuthUnavailableError || signal.aborted) throw err;
    return { artifact, href, state: { kind: 'error', message: mapError(err).body.message } };
  }
}

export function uiRoutes(app: Express, deps: UiDeps): void {
  const session = pageSession(deps);
  /** A signed-in page: the session step, then `f` with the user and the request's signal. */
  const page = (f: (req: Request, res: Response, u: PageUser, signal: AbortSignal) => Promise<void>): RequestHandler[] => [session, wrap((req, res) => f(req, res, pageUserOf(res), signalOf(res)))];
  const wrap =
    (f: (req: Request, res: Response) => Promise<void>): RequestHandler =>
    (req, res) =>
      f(req, res).catch((err: unknown) => {
        if (res.headersSent) {
          res.socket?.destroy();
          return;
        }
        // As the API's error handler does: a bug is logged (never a token: errors carry names only),
        // a server-side failure noted; the browser gets the page either way.
        const mapped = mapError(err);
        const requestId = localsOf(res).requestId;
        if (mapped.body.reason === 'InternalError') deps.log.error({ err, requestId }, 'unhandled error');
        else if (mapped.serverSide) deps.log.warn({ reason: mapped.body.reason, message: mapped.body.message, requestId }, 'request failed');
        const u = (res as WithPageUser)[PAGE_USER];
        sendErrorPage(res, err, u && shown(u));
      });

  app.get('/', (_req, res) => res.redirect(303, '/ui/'));

  app.get('/ui/assets/:file', (req, res) => {
    const a = ASSETS.get(param(req, 'file'));
    if (!a) {
      sendErrorPage(res, new HttpError(404, 'NotFound', 'no such asset'));
      return;
    }
    res.setHeader('Content-Type', a.type);
    res.setHeader('Cache-Control', 'public, max-age=31536000, immutable');
    res.setHeader('X-Content-Type-Options', 'nosniff');
    res.end(a.body);
  });

  app.get('/ui/sign-in', (req, res) => {
    const q = req.query as Record<string, unknown>;
    const notice = 'ended' in q ? 'Your session ended (signed out, expired, or the token is no longer valid). Sign in again.' : 'signed-out' in q ? 'Signed out.' : undefined;
    sendPage(res, 200, signInPage({ formToken: formToken(req, res), mode: deps.mode, ...(notice && { notice }) }));
  });

  app.post(
    '/ui/sign-in',
    (req, res, next) => {
      // Checked before the body is read: a cross-site POST costs no parse.
      if (!fromOwnPage(req)) {
        sendErrorPage(res, new HttpError(403, 'Forbidden', 'sign-in refused: the form must be sent from this gateway\'s own sign-in page'));
        return;
      }
      next();
    },
    formBody,
    wrap(async (req, res) => {
      if (!formTokenMatches(cookies(req)[FORM_COOKIE], field(req, 'form'))) {
        sendErrorPage(res, new HttpError(403, 'Forbidden', 'sign-in refused: the form is not this browser\'s (open the sign-in page again)'));
        return;
      }
      const again = (code: number, error: string): void => sendPage(res, code, signInPage({ formToken: formToken(req, res), mode: deps.mode, error }));
      const raw = field(req, 'token');
      const token = typeof raw === 'string' ? raw.trim() : '';
      if (token === '' || token.length > MAX_TOKEN || !TOKEN.test(token)) {
        again(400, 'That is not a bearer token (printable characters without spaces, at most 8 KiB).');
        return;
      }
      const user = await deps.authenticator.authenticate(token, signalOf(res), deps.clientOf(req));
      if (!user) {
        deps.log.info({ requestId: localsOf(res).requestId, remote: deps.clientOf(req) }, 'browser sign-in refused: the token is not valid');
        again(401, 'The token is not valid (the API server did not accept it).');
        return;
      }
      let sealed: string;
      try {
        sealed = deps.sessions.seal(token, deps.sessionMaxAgeMs);
      } catch (err) {
        if (err instanceof RangeError) {
          again(400, 'The token is too long to be kept in a browser session; use the command-line client with it.');
          return;
        }
        throw err;
      }
      localsOf(res).user = user;
      deps.log.info({ requestId: localsOf(res).requestId, user: user.username, remote: deps.clientOf(req) }, 'browser sign-in');
      setCookie(res, SESSION_COOKIE, sealed, Math.floor(deps.sessionMaxAgeMs / 1000));
      res.setHeader('Cache-Control', 'no-store');
      res.redirect(303, '/ui/');
    }),
  );

  app.post('/ui/sign-out', (req, res, next) => {
    if (!fromOwnPage(req)) {
      sendErrorPage(res, new HttpError(403, 'Forbidden', 'sign-out refused: the form must be sent from this gateway\'s own page'));
      return;
    }
    next();
  }, formBody, (req, res) => {
    if (!formTokenMatches(cookies(req)[FORM_COOKIE], field(req, 'form'))) {
      sendErrorPage(res, new HttpError(403, 'Forbidden', 'sign-out refused: the form is not this browser\'s'));
      return;
    }
    setCookie(res, SESSION_COOKIE, '', 0);
    res.setHeader('Cache-Control', 'no-store');
    res.redirect(303, '/ui/sign-in?signed-out');
  });

  app.get(
    '/ui/',
    ...page(async (_req, res, u, signal) => {
      const all = await deps.catalog.namespaces(signal);
      const namespaces = all.slice(0, MAX_NAMESPACES);
      const notes: string[] = [];
      if (all.length > namespaces.length) notes.push(`Only the first ${MAX_NAMESPACES} of ${all.length} namespaces are shown.`);
      const budget = { reviews: MAX_OBJECT_REVIEWS };
      const listings: NamespaceListing[] = [];
      let truncated = false;
      for (const namespace of namespaces) {
        const b = await visibleEntries(deps, u.user, 'backups', namespace, signal, budget);
        const r = await visibleEntries(deps, u.user, 'restores', namespace, signal, budget);
        truncated ||= b.truncated || r.truncated;
        listings.push({ namespace, backups: b.entries, restores: r.entries });
      }
      if (truncated) notes.push('Some objects are not shown: you may not list them, and checking each one by name stopped after the first ' + MAX_OBJECT_REVIEWS + '.');
      sendPage(res, 200, listPage(shown(u), listings, notes));
    }),
  );

  for (const owner of ['backups', 'restores'] as const) {
    app.get(
      `/ui/namespaces/:namespace/${owner}/:name`,
      ...page(async (req, res, u, signal) => {
        const namespace = param(req, 'namespace');
        const name = param(req, 'name');
        checkNames(namespace, owner === 'backups' ? 'backup' : 'restore', name);
        // Authorized before anything is looked up: a caller who may not see it learns nothing.
        if (!(await maySee(deps, u.user, owner, namespace, name, signal))) {
          throw new HttpError(403, 'Forbidden', `${owner}.velero.io "${name}" is forbidden: User "${u.user.username}" may neither list ${owner} nor read any of their artifacts in the namespace "${namespace}", nor get this one or its log`);
        }
        const entry = (await deps.catalog.list(owner, namespace, signal)).find((e) => e.name === name);
        if (!entry) throw new NotFoundError(`${owner}.velero.io "${name}" not found`, { group: 'velero.io', kind: owner, name });
        const defs = owner === 'backups' ? BACKUP_ARTIFACTS : RESTORE_ARTIFACTS;
        const rows = await mapLimited(defs, REVIEW_CONCURRENCY, (d) => artifactRow(deps, u.user, owner, namespace, name, d.artifact, signal));
        sendPage(res, 200, ownerPage(shown(u), owner, entry, rows));
      }),
    );

    app.get(
      `/ui/namespaces/:namespace/${owner}/:name/log`,
      ...page(async (req, res, u, signal) => {
        const target = await authorizedTarget(deps, req, res, owner, 'log');
        const q = req.query as Record<string, unknown>;
        const level = (LOG_LEVELS as readonly unknown[]).includes(q.level) ? (q.level as LogLevel) : q.level === undefined ? 'all' : badQuery('level', `one of ${LOG_LEVELS.join(', ')}`);
        const page = q.page === undefined ? 0 : typeof q.page === 'string' && /^\d{1,6}$/.test(q.page) ? Number(q.page) : badQuery('page', 'a whole number');
        const body = await openArtifact(deps, target, signal);
        const log = await readLogPage(body, page, level, signal).catch((err: unknown) => {
          throw unreadable('log', err);
        });
        sendPage(res, 200, logPage(shown(u), { owner, namespace: target.namespace, name: target.name, level, page, log }));
      }),
    );

    app.get(
      `/ui/namespaces/:namespace/${owner}/:name/results`,
      ...page(async (req, res, u, signal) => {
        const target = await authorizedTarget(deps, req, res, owner, 'results');
        let body: Readable;
        try {
          body = await openArtifact(deps, target, signal);
        } catch (err) {
          if (isMissing(err)) {
            sendPage(res, 200, resultsPage(shown(u), owner, target.namespace, target.name, undefined));
            return;
          }
          throw err;
        }
        let rows;
        try {
          rows = resultRows((await gunzipBounded(body, MAX_RESULTS_BYTES, signal)).toString('utf8'));
        } catch (err) {
          throw unreadable('results file', err);
        }
        sendPage(res, 200, resultsPage(shown(u), owner, target.namespace, target.name, rows));
      }),
    );
  }

  const volumes = deps.volumes;
  if (!volumes) return;
  app.get(
    '/ui/namespaces/:namespace/backups/:name/volumes',
    ...page(async (req, res, u, signal) => {
      const target = await authorizedTarget(deps, req, res, 'backups', VOLUME_DATA_ARTIFACT);
      const list = await volumes.resolver.volumes(target.namespace, target.name, signal);
      sendPage(res, 200, volumesPage(shown(u), target.namespace, target.name, list));
    }),
  );
  app.get(
    '/ui/namespaces/:namespace/backups/:name/volumes/:volume/files{/*path}',
    ...page(async (req, res, u, signal) => {
      const target = await authorizedTarget(deps, req, res, 'backups', VOLUME_DATA_ARTIFACT);
      const path = parseVolumePath(req);
      const repo = await volumes.resolver.repository(target.namespace, target.name, path.volume, signal);
      const source = { spec: repo.spec, prefix: repo.prefix, password: repo.password, snapshotID: repo.snapshotID, name: repo.volume.id };
      const found = await snapshotEntry(volumes, source, path.segments, MAX_DIRECTORY_ENTRIES, signal);
      if (!found.children) {
        // A file (or link): its bytes are the API's to send, under the same authorization.
        res.redirect(303, `/v1/namespaces/${encodeURIComponent(target.namespace)}/backups/${encodeURIComponent(target.name)}/volumes/${encodeURIComponent(path.volume)}/files/${path.segments.map(encodeURIComponent).join('/')}`);
        return;
      }
      const entries = found.children.map((e) => ({ name: e.name, type: entryType(e), size: e.size, mtime: e.mtime }));
      sendPage(res, 200, directoryPage(shown(u), { namespace: target.namespace, name: target.name, volume: repo.volume.id, segments: path.segments, entries, more: found.more }));
    }),
  );
}

/** A directory page shows at most this many entries (the tar download has them all). */
const MAX_DIRECTORY_ENTRIES = 5000;

function badQuery(name: string, what: string): never {
  throw new HttpError(400, 'BadRequest', `${name} must be ${what}`);
}

/** An artifact that is not what it should be (not gzip, not JSON, too large): the store's data, a 502 page. */
function unreadable(what: string, err: unknown): Error {
  if (err instanceof RangeError || err instanceof SyntaxError || (err as { code?: unknown }).code === 'Z_DATA_ERROR' || (err as { code?: unknown }).code === 'Z_BUF_ERROR') {
    return new InvalidBackupFileError(`the ${what} could not be read: ${err instanceof Error ? err.message : String(err)}`);
  }
  return err instanceof Error ? err : new Error(String(err));
}

/** The page's target (path names checked), after the user's review for `artifact`: a 403 page before anything is looked up. */
async function authorizedTarget(deps: UiDeps, req: Request, res: Response, owner: OwnerKind, artifact: string): Promise<Target> {
  const namespace = param(req, 'namespace');
  const name = param(req, 'name');
  checkNames(namespace, owner === 'backups' ? 'backup' : 'restore', name);
  const target = { namespace, owner, name, artifact };
  const user = pageUserOf(res).user;
  const attrs = attributesOf(target);
  const decision = await deps.authorizer.authorize(user, attrs, signalOf(res));
  if (!decision.allowed) throw new HttpError(403, 'Forbidden', forbiddenMessage(user, attrs, decision.reason));
  localsOf(res).target = target;
  return target;
}

async function openArtifact(deps: UiDeps, target: Target, signal: AbortSignal): Promise<Readable> {
  const location = await deps.resolver.resolve(target, signal);
  const store = await deps.stores.forSpec(location.spec);
  return bodyStream(await store.get(location.key, { signal }));
}
