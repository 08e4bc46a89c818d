/**
 * Authentication as Express middleware, the first step of a download route's chain. The scheme of
 * the Authorization header (and nowhere else) picks the authenticator: `Bearer` → the token chain
 * (TokenReview, or static tokens locally); `Basic` → access users (`user@host` and a password), when
 * the gateway has them. No user → 401 with a `WWW-Authenticate` challenge for each scheme offered.
 * The credentials live only in this function's scope: they are never put on `req`, `res.locals` or a
 * log line. A signed DownloadRequest URL is the other way in: its signature names the requester
 * recorded on the DownloadRequest, and the artifact it was signed for; it never takes a header.
 */
import type { NextFunction, Request, RequestHandler, Response } from 'express';
import { MAX_BASIC_HEADER } from '../auth/access-users.ts';
import type { Authenticator } from '../auth/types.ts';
import { SIGNED_QUERY } from '../velero/downloadrequests.ts';
import type { SignedGrant } from '../velero/downloadrequests.ts';
import { localsOf, signalOf } from './locals.ts';
import { HttpError } from './status.ts';
import { then } from '../util/promise-or.ts';
import type { PromiseOr } from '../util/promise-or.ts';
import { sessionAllowed, sessionCookieOf } from './ui/session.ts';
import type { SessionCodec } from './ui/session.ts';

const REALM = 'realm="velero-download-server"';
const BEARER_ONLY = { 'WWW-Authenticate': `Bearer ${REALM}` };
/** Both schemes in one header: a comma-separated list of challenges (RFC 9110, 11.6.1). */
const BEARER_OR_BASIC = { 'WWW-Authenticate': `Bearer ${REALM}, Basic ${REALM}, charset="UTF-8"` };

/** The credentials after each scheme: a bearer token's characters, a Basic header's base64. */
const CREDENTIALS = {
  Bearer: /^Bearer[ \t]+([!-~]+)[ \t]*$/i,
  Basic: /^Basic[ \t]+([A-Za-z0-9+/]+={0,2})[ \t]*$/i,
} as const;

/** Query parameters a client might try to pass a token in; refused outright so they never reach a log. */
const TOKEN_QUERY_PARAMS = ['access_token', 'token', 'bearer', 'authorization'];

export function rejectQueryTokens(req: Request, _res: Response, next: NextFunction): void {
  const url = req.originalUrl;
  const q = url.indexOf('?');
  if (q >= 0) {
    const params = new URLSearchParams(url.slice(q + 1));
    for (const name of params.keys()) {
      if (TOKEN_QUERY_PARAMS.includes(name.toLowerCase())) {
        next(new HttpError(400, 'BadRequest', 'tokens are accepted only in the Authorization header, never in the URL'));
        return;
      }
    }
  }
  next();
}

/** The address per-client limits are keyed by; the TCP peer unless the app is told better. */
export type ClientAddressOf = (req: Request) => string;

export const peerAddress: ClientAddressOf = (req) => req.socket.remoteAddress ?? '';

/**
 * The authenticate step. `bearer` checks `Authorization: Bearer <token>`; `basic`, when given, checks
 * `Authorization: Basic <credentials>` (the part after the scheme), with the client's address for its
 * failed-attempt limits. Without `basic`, a Basic header is answered 401 saying access users are not
 * enabled, and every challenge offers Bearer only; with it, every 401 offers both schemes.
 *
 * Who reaches it: anyone who can reach the download port. It trusts nothing of the header until an
 * authenticator says so; a Basic header longer than MAX_BASIC_HEADER is refused before it is decoded,
 * and a hostile one (bad base64, bytes that are not UTF-8, control characters in the user) is a 401
 * like a wrong password. Node itself answers 431 to a header section over its 16 KiB limit.
 */
export function authenticate(bearer: Authenticator, clientOf: ClientAddressOf = peerAddress, basic?: Authenticator, sessions?: SessionCodec): RequestHandler {
  const refuse = (message: string): HttpError => new HttpError(401, 'Unauthorized', `Unauthorized: ${message}`, basic ? BEARER_OR_BASIC : BEARER_ONLY);
  const schemes = basic ? '"Bearer <token>" or "Basic <base64(user@host:password)>"' : '"Bearer <token>"';
  return (req, res, next) => {
    const header = req.headers.authorization;
    if (header === undefined || header === '') {
      const cookie = sessions && sessionAllowed(req.headers['sec-fetch-site']) ? sessionCookieOf(req.headers.cookie) : undefined;
      if (cookie === undefined) throw refuse(`credentials are required (Authorization: ${schemes})`);
      return bySession(sessions!, cookie, bearer, req, res, next, clientOf, refuse);
    }
    const scheme = /^Basic(?:[ \t]|$)/i.test(header) ? 'Basic' : 'Bearer';
    const [authenticator, what] = scheme === 'Basic' ? [basic, 'user name or password'] : [bearer, 'bearer token'];
    if (!authenticator) throw refuse('access users (HTTP Basic) are not enabled on this server; use a bearer token');
    const m = header.length > MAX_BASIC_HEADER && scheme === 'Basic' ? null : CREDENTIALS[scheme].exec(header);
    if (!m?.[1]) throw refuse(`the Authorization header must be ${schemes}`);
    // A cached identity comes at once and the chain goes on in this turn (util/promise-or.ts).
    return then(authenticator.authenticate(m[1], signalOf(res), clientOf(req)), (user) => {
      if (!user) throw refuse(`the ${what} is not valid`);
      localsOf(res).user = user;
      next();
    });
  };
}

/**
 * A browser's request without an Authorization header: the session cookie (ui/session.ts) stands in
 * for the bearer token, which is reviewed exactly as if it had come in the header. Errors of such a
 * request are shown as a page (the browser marker). A cookie that does not open is a 401, never a
 * fallback to anything else; its value is never logged or echoed.
 */
function bySession(sessions: SessionCodec, cookie: string, bearer: Authenticator, req: Request, res: Response, next: NextFunction, clientOf: ClientAddressOf, refuse: (m: string) => HttpError): PromiseOr<void> {
  const locals = localsOf(res);
  locals.browser = true;
  const session = sessions.open(cookie);
  if (!session) throw refuse('the browser session is not valid or has ended; sign in again');
  return then(bearer.authenticate(session.token, signalOf(res), clientOf(req)), (user) => {
    if (!user) throw refuse('the browser session\'s token is no longer valid; sign in again');
    locals.user = user;
    locals.via = 'session';
    next();
  });
}

/** Checks a signed DownloadRequest URL (velero/downloadrequests.ts) against the DownloadRequest it names. */
export interface SignedUrlVerifier {
  verify(namespace: string, name: string, query: Readonly<Record<string, unknown>>, signal: AbortSignal): Promise<SignedGrant>;
}

/**
 * The signed-URL authenticator of the DownloadRequest route: the caller is the requester recorded on
 * the DownloadRequest the URL was signed for, and the target is the artifact it names. The URL names
 * who, never what is allowed: the target is authorized for the requester next, as for a token.
 * Verifying checks the path's names too.
 */
export function authenticateSignedUrl(signedUrls: SignedUrlVerifier): RequestHandler {
  return async (req, res, next) => {
    const params = req.params as Record<string, string | undefined>;
    const grant = await signedUrls.verify(params.namespace ?? '', params.name ?? '', req.query, signalOf(res));
    const locals = localsOf(res);
    locals.user = grant.requester;
    locals.via = 'signed-url';
    locals.target = grant.target;
    next();
  };
}

/** Whether a request carries a signed URL (any of its parameters: they win over a token). */
export function hasSignedUrl(req: Request): boolean {
  return SIGNED_QUERY.some((k) => k in req.query);
}
