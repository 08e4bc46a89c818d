/**
 * The streaming handler. Order matters (ARCHITECTURE.md): authorize before resolving, so a caller who
 * may not read a backup cannot learn whether it exists; resolve and stat before the first header, so a
 * missing object is a clean 404; once headers are out, an upstream failure destroys the socket, so the
 * client sees a broken transfer and never a short "successful" one; a client that goes away aborts the
 * upstream read.
 */
import { pipeline } from 'node:stream/promises';
import type { Request, RequestHandler, Response } from 'express';
import type { Logger } from 'pino';
import type { Authorizer, ResourceAttributes, UserInfo } from '../auth/types.ts';
import type { StoreFactory } from '../stores/spec.ts';
import type { ObjectInfo } from '../stores/types.ts';
import type { Target } from '../velero/artifacts.ts';
import type { Resolver } from '../velero/resolve.ts';
import { userOf } from './authn.ts';
import { decideRange, notModified } from './range.ts';
import { HttpError } from './status.ts';
import { timedStoreCall } from './metrics.ts';
import type { GatewayMetrics } from './metrics.ts';

export interface DownloadDeps {
  authorizer: Authorizer;
  resolver: Resolver;
  stores: StoreFactory;
  log: Logger;
  metrics?: GatewayMetrics;
}

/** The SubjectAccessReview attributes for a target (ARCHITECTURE.md, "Authorization model"). */
export function attributesOf(target: Target): ResourceAttributes {
  return {
    group: 'velero.io',
    resource: target.owner,
    subresource: target.artifact,
    verb: 'get',
    namespace: target.namespace,
    name: target.name,
  };
}

/** The 403 message kube-apiserver would write: user, verb, resource, namespace. */
export function forbiddenMessage(user: UserInfo, a: ResourceAttributes, reason?: string): string {
  const resource = `${a.resource}${a.subresource ? `/${a.subresource}` : ''}`;
  return (
    `${a.resource}.${a.group} "${a.name}" is forbidden: User "${user.username}" cannot ${a.verb} resource ` +
    `"${resource}" in API group "${a.group}" in the namespace "${a.namespace}"${reason ? `: ${reason}` : ''}`
  );
}

/** Per-request bookkeeping the access log reads. */
export interface DownloadLocals {
  bytes?: number;
  target?: Target;
  /** A download route (audited). */
  download?: boolean;
  /** performance.now() when the request arrived, and ms until the headers of a download. */
  startedAt?: number;
  ttfb?: number;
}

export function localsOf(res: Response): DownloadLocals {
  return res.locals as DownloadLocals;
}

const CONTENT_TYPES: [suffix: string, type: string][] = [
  ['.gz', 'application/gzip'],
  ['.json', 'application/json'],
];

function contentTypeOf(key: string): string {
  return CONTENT_TYPES.find(([suffix]) => key.endsWith(suffix))?.[1] ?? 'application/octet-stream';
}

function setEntityHeaders(res: Response, info: ObjectInfo): void {
  if (info.etag !== undefined) res.setHeader('ETag', info.etag);
  if (info.lastModified !== undefined) res.setHeader('Last-Modified', info.lastModified.toUTCString());
  // Backups hold Secrets: no shared cache may keep them; the client may revalidate with its ETag.
  res.setHeader('Cache-Control', 'private, no-cache');
  res.setHeader('Accept-Ranges', 'bytes');
}

/**
 * Streams the artifact named by `targetOf(req)`. `res.locals.user` is set by the authentication
 * middleware before this runs.
 */
/** Authorizes or throws the 403 kube-apiserver would send. */
export async function requireAllowed(authorizer: Authorizer, user: UserInfo, attrs: ResourceAttributes, signal: AbortSignal): Promise<void> {
  const decision = await authorizer.authorize(user, attrs, signal);
  if (!decision.allowed) {
    throw new HttpError(403, 'Forbidden', forbiddenMessage(user, attrs, decision.reason), {}, {
      name: attrs.name,
      group: attrs.group,
      kind: attrs.resource,
    });
  }
}

/**
 * How a route finds its target. A direct route parses it from the path; the DownloadRequest route
 * first checks the caller may read the request, then reads it.
 */
export type TargetSource = (req: Request, user: UserInfo, signal: AbortSignal) => Promise<Target>;

/**
 * Streams the target. With `preAuthorized`, the target's artifact is not authorized again: the
 * request carried a valid signed URL for exactly this DownloadRequest.
 */
export function downloadHandler(deps: DownloadDeps, targetOf: TargetSource, opts: { preAuthorized?: boolean } = {}): RequestHandler {
  return async (req, res) => {
    const user = userOf(res);
    if (!user) throw new HttpError(401, 'Unauthorized', 'Unauthorized');
    const locals = localsOf(res);

    // One controller for everything this request does upstream; a client that leaves aborts it.
    const ac = new AbortController();
    const onClose = (): void => {
      if (!res.writableFinished) ac.abort(new Error('client closed the connection'));
    };
    res.once('close', onClose);
    const { signal } = ac;

    const target = await targetOf(req, user, signal);
    locals.target = target;
    if (!opts.preAuthorized) await requireAllowed(deps.authorizer, user, attributesOf(target), signal);

    const location = await deps.resolver.resolve(target, signal);
    const store = await deps.stores.forSpec(location.spec);
    const provider = location.spec.provider;
    const info = await timedStoreCall(deps.metrics, provider, 'stat', () => store.stat(location.key, { signal }));

    res.attachment(location.key.slice(location.key.lastIndexOf('/') + 1));
    res.type(contentTypeOf(location.key));
    setEntityHeaders(res, info);

    if (notModified(info, req.get('if-none-match'), req.get('if-modified-since'))) {
      res.status(304).end();
      return;
    }

    const decision2 = decideRange(info, req.get('range'), req.get('if-range'));
    if (decision2.kind === 'unsatisfiable') {
      throw new HttpError(416, 'RequestedRangeNotSatisfiable', `the requested range is not satisfiable: the object has ${info.size} bytes`, {
        'Content-Range': `bytes */${info.size}`,
      });
    }

    if (req.method === 'HEAD') {
      if (decision2.kind === 'partial') {
        const { start, end } = decision2.range;
        res.status(206).setHeader('Content-Range', `bytes ${start}-${end}/${info.size}`);
        res.setHeader('Content-Length', end - start + 1);
      } else {
        res.status(200).setHeader('Content-Length', info.size);
      }
      res.end();
      return;
    }

    const range = decision2.kind === 'partial' ? decision2.range : undefined;
    const obj = await timedStoreCall(deps.metrics, provider, 'get', () => store.get(location.key, { signal, ...(range && { range }) }));
    if (obj.range) {
      res.status(206).setHeader('Content-Range', `bytes ${obj.range.start}-${obj.range.end}/${obj.size}`);
      res.setHeader('Content-Length', obj.range.end - obj.range.start + 1);
    } else {
      res.status(200).setHeader('Content-Length', obj.size);
    }
    // ETag and size come from what was opened, in case the object changed since stat.
    setEntityHeaders(res, obj);
    locals.ttfb = performance.now() - (locals.startedAt ?? performance.now());

    // Counted as it flows, so the access log (written on 'close') sees it whatever ends first.
    locals.bytes = 0;
    obj.body.on('data', (chunk: Buffer) => {
      locals.bytes! += chunk.length;
    });
    // An error of the body while the client is still there is the upstream's; once the client has
    // gone, the body errors only because we aborted it.
    let upstreamError: Error | undefined;
    obj.body.once('error', (err) => {
      if (!signal.aborted) upstreamError = err;
    });
    try {
      await pipeline(obj.body, res);
    } catch {
      // Headers are out: the only honest signal left is a broken connection. pipeline has destroyed
      // both streams; make sure the socket goes too, so keep-alive cannot mask the short body.
      res.socket?.destroy();
      if (upstreamError) {
        const { message, reason } = upstreamError as Error & { reason?: string };
        deps.log.warn({ err: { message, reason }, target, bytes: locals.bytes }, 'upstream failed mid-stream');
      }
    } finally {
      res.off('close', onClose);
    }
  };
}
