/**
 * Authentication as Express middleware: the bearer token from the Authorization header (and nowhere
 * else) goes to the Authenticator; no user → 401 with `WWW-Authenticate: Bearer`. The token lives only
 * in this function's scope: it is never put on `req`, `res.locals` or a log line.
 */
import type { NextFunction, Request, RequestHandler, Response } from 'express';
import type { Authenticator, UserInfo } from '../auth/types.ts';
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

/** Where the authenticated user is kept for the handlers and the access log. */
export function userOf(res: Response): UserInfo | undefined {
  return (res.locals as { user?: UserInfo }).user;
}

/** The address per-client limits are keyed by; the TCP peer unless the app is told better. */
export type ClientAddressOf = (req: Request) => string;

export const peerAddress: ClientAddressOf = (req) => req.socket.remoteAddress ?? '';

export function authenticate(authenticator: Authenticator, clientOf: ClientAddressOf = peerAddress): RequestHandler {
  return async (req, res, next) => {
    const token = bearerToken(req.get('authorization'));
    const ac = new AbortController();
    const onClose = (): void => ac.abort();
    res.once('close', onClose);
    try {
      const user = await authenticator.authenticate(token, ac.signal, clientOf(req));
      if (!user) throw unauthorized('Unauthorized: the bearer token is not valid');
      (res.locals as { user?: UserInfo }).user = user;
    } finally {
      res.off('close', onClose);
    }
    next();
  };
}
