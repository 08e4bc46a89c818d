/**
 * Authentication as Express middleware, the first step of a download route's chain. A bearer token
 * from the Authorization header (and nowhere else) goes to the Authenticator; no user → 401 with
 * `WWW-Authenticate: Bearer`. The token lives only in this function's scope: it is never put on
 * `req`, `res.locals` or a log line. A signed DownloadRequest URL is the other way in: its signature
 * names the requester recorded on the DownloadRequest, and the artifact it was signed for.
 */
import type { NextFunction, Request, RequestHandler, Response } from 'express';
import type { Authenticator } from '../auth/types.ts';
import { SIGNED_QUERY } from '../velero/downloadrequests.ts';
import type { SignedGrant } from '../velero/downloadrequests.ts';
import { localsOf, signalOf } from './locals.ts';
import { HttpError } from './status.ts';

const CHALLENGE = { 'WWW-Authenticate': 'Bearer realm="velero-download-server"' };

/** Query parameters a client might try to pass a token in; refused outright so they never reach a log. */
const TOKEN_QUERY_PARAMS = ['access_token', 'token', 'bearer', 'authorization'];

export function unauthorized(message: string): HttpError {
  return new HttpError(401, 'Unauthorized', message, CHALLENGE);
}

/** Extracts the token of `Authorization: Bearer <token>`; throws 401 for a missing or malformed header. */
export function bearerToken(header: string | undefined): string {
  if (header === undefined || header === '') throw unauthorized('Unauthorized: a bearer token is required (Authorization: Bearer <token>)');
  const m = /^Bearer[ \t]+([!-~]+)[ \t]*$/i.exec(header);
  if (!m?.[1]) throw unauthorized('Unauthorized: the Authorization header must be "Bearer <token>"');
  return m[1];
}

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

export function authenticate(authenticator: Authenticator, clientOf: ClientAddressOf = peerAddress): RequestHandler {
  return async (req, res, next) => {
    const token = bearerToken(req.get('authorization'));
    const user = await authenticator.authenticate(token, signalOf(res), clientOf(req));
    if (!user) throw unauthorized('Unauthorized: the bearer token is not valid');
    localsOf(res).user = user;
    next();
  };
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
