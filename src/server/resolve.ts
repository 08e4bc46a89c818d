/**
 * Resolution as Express middleware, only after authorization: a DownloadRequest to the target it
 * names, and a target to its location (store and key).
 */
import type { RequestHandler } from 'express';
import type { Resolver } from '../velero/resolve.ts';
import { earlier, localsOf, signalOf } from './locals.ts';
import { then } from '../util/promise-or.ts';

/** Reads the DownloadRequest (authorized already) for the target it names; 404 when there is none. */
export function resolveDownloadRequest(resolver: Resolver): RequestHandler {
  return async (_req, res, next) => {
    const locals = localsOf(res);
    const { namespace, name } = earlier(locals.downloadRequest, 'the DownloadRequest');
    locals.target = await resolver.downloadRequestTarget(namespace, name, signalOf(res));
    next();
  };
}

/** The target's location; 404 when its owner, location or namespace is unknown. */
export function resolveLocation(resolver: Resolver): RequestHandler {
  return (_req, res, next) => {
    const locals = localsOf(res);
    // A warm resolution comes at once and the chain goes on in this turn (util/promise-or.ts).
    return then(resolver.resolve(earlier(locals.target, 'the target'), signalOf(res)), (location) => {
      locals.location = location;
      next();
    });
  };
}
