/**
 * The streaming handler. Order matters (ARCHITECTURE.md): authorize before resolving, so a caller who
 * may not read a backup cannot learn whether it exists; resolve and stat before the first header, so a
 * missing object is a clean 404; once headers are out, an upstream failure destroys the socket, so the
 * client sees a broken transfer and never a short "successful" one; a client that goes away aborts the
 * upstream read.
 */
import { pipeline } from 'node:stream/promises';
import { create as contentDisposition } from 'content-disposition';
import type { Request, RequestHandler, Response } from 'express';
import type { Logger } from 'pino';
import type { Authorizer, ResourceAttributes, UserInfo } from '../auth/types.ts';
import type { StoreFactory } from '../stores/spec.ts';
import { StoreUnavailableError } from '../stores/errors.ts';
import type { ByteRange, ObjectInfo } from '../stores/types.ts';
import { sendFromReader } from './send.ts';
import type { Target } from '../velero/artifacts.ts';
import type { Resolver } from '../velero/resolve.ts';
import { userOf } from './authn.ts';
import { decideRange, notModified } from './range.ts';
import { HttpError } from './status.ts';
import type { DownloadSlots } from './limits.ts';
import { timedStoreCall } from './metrics.ts';
import type { GatewayMetrics } from './metrics.ts';

export interface DownloadDeps {
  authorizer: Authorizer;
  resolver: Resolver;
  stores: StoreFactory;
  log: Logger;
  metrics?: GatewayMetrics;
  /** The cap on concurrent downloads (`--max-concurrent-downloads`); none when absent. */
  downloadSlots?: DownloadSlots;
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
  /** How the caller was authenticated when not by a bearer token (`signed-url`). */
  via?: 'signed-url';
}

export function localsOf(res: Response): DownloadLocals {
  return res.locals as DownloadLocals;
}

// Header values as Express's res.type() would write them, set directly (no mime lookups per request).
const CONTENT_TYPES: [suffix: string, type: string][] = [
  ['.gz', 'application/gzip'],
  ['.json', 'application/json; charset=utf-8'],
];

function contentTypeOf(key: string): string {
  return CONTENT_TYPES.find(([suffix]) => key.endsWith(suffix))?.[1] ?? 'application/octet-stream';
}

/** Every header a download sets from the object, removed again when it fails before its first byte. */
const OBJECT_HEADERS = ['Content-Disposition', 'Content-Type', 'Content-Length', 'Content-Range', 'ETag', 'Last-Modified', 'Cache-Control', 'Accept-Ranges'];

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

/** Streams the target `targetOf` names, once the user may read it. */
export function downloadHandler(deps: DownloadDeps, targetOf: TargetSource): RequestHandler {
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
    await requireAllowed(deps.authorizer, user, attributesOf(target), signal);

    const location = await deps.resolver.resolve(target, signal);
    // A slot is taken only by a caller Kubernetes has allowed, once there is something to send: a
    // stranger's requests never hold one.
    const refused = deps.downloadSlots?.claim(res);
    if (refused) throw refused;
    const store = await deps.stores.forSpec(location.spec);
    const provider = location.spec.provider;
    res.setHeader('Content-Disposition', contentDisposition(location.key.slice(location.key.lastIndexOf('/') + 1)));
    res.setHeader('Content-Type', contentTypeOf(location.key));

    // A plain GET needs nothing from the object before opening it: one store call instead of two.
    let range: ByteRange | undefined;
    const plainGet = req.method === 'GET' && req.get('range') === undefined && req.get('if-none-match') === undefined && req.get('if-modified-since') === undefined;
    if (!plainGet) {
      const info = await timedStoreCall(deps.metrics, provider, 'stat', () => store.stat(location.key, { signal }));
      setEntityHeaders(res, info);
      if (notModified(info, req.get('if-none-match'), req.get('if-modified-since'))) {
        res.status(304).end();
        return;
      }
      const decision = decideRange(info, req.get('range'), req.get('if-range'));
      if (decision.kind === 'unsatisfiable') {
        throw new HttpError(416, 'RequestedRangeNotSatisfiable', `the requested range is not satisfiable: the object has ${info.size} bytes`, {
          'Content-Range': `bytes */${info.size}`,
        });
      }
      if (decision.kind === 'partial') range = decision.range;
      if (req.method === 'HEAD') {
        if (range) {
          res.status(206).setHeader('Content-Range', `bytes ${range.start}-${range.end}/${info.size}`);
          res.setHeader('Content-Length', range.end - range.start + 1);
        } else {
          res.status(200).setHeader('Content-Length', info.size);
        }
        res.end();
        return;
      }
    }

    const obj = await timedStoreCall(deps.metrics, provider, 'get', () => store.get(location.key, { signal, ...(range && { range }) }));
    const first = obj.range?.start ?? 0;
    const length = obj.range ? obj.range.end - obj.range.start + 1 : obj.size;
    if (obj.range) {
      res.status(206).setHeader('Content-Range', `bytes ${obj.range.start}-${obj.range.end}/${obj.size}`);
    } else {
      res.status(200);
    }
    res.setHeader('Content-Length', length);
    // ETag and size come from what was opened, in case the object changed since stat.
    setEntityHeaders(res, obj);
    locals.ttfb = performance.now() - (locals.startedAt ?? performance.now());

    // Counted as it flows, so the access log (written on 'close') sees it whatever ends first.
    locals.bytes = 0;
    const count = (n: number): void => {
      locals.bytes! += n;
    };
    // An error of the object while the client is still there is the upstream's; once the client has
    // gone, the object errors only because we aborted it.
    let upstreamError: Error | undefined;
    try {
      if (obj.kind === 'reader') {
        await sendFromReader(obj.reader, first, length, res, count).catch((err: unknown) => {
          if (!signal.aborted && err instanceof StoreUnavailableError) upstreamError = err;
          throw err;
        });
      } else {
        obj.body.on('data', (chunk: Buffer) => count(chunk.length));
        obj.body.once('error', (err) => {
          if (!signal.aborted) upstreamError = err;
        });
        await pipeline(obj.body, res);
      }
    } catch {
      if (obj.kind === 'reader' && upstreamError && !res.headersSent) {
        // The reader failed before its first byte was written (the stream path cannot get here: its
        // pipeline has destroyed the response): nothing of the object went out, so the client gets
        // the store's Status instead of a torn connection, without the object's headers.
        for (const name of OBJECT_HEADERS) res.removeHeader(name);
        locals.ttfb = undefined;
        throw upstreamError;
      }
      // Headers are out: the only honest signal left is a broken connection, so the socket goes and
      // keep-alive cannot mask the short body.
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
