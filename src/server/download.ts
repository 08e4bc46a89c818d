/**
 * The streaming step, last of a download route's chain (authenticate → authorize → resolve → send).
 * Stat before the first header, so a missing object is a clean 404; once headers are out, an
 * upstream failure destroys the socket, so the client sees a broken transfer and never a short
 * "successful" one; a client that goes away aborts the upstream read (the request's signal).
 */
import { pipeline } from 'node:stream/promises';
import { create as contentDisposition } from 'content-disposition';
import type { Request, RequestHandler, Response } from 'express';
import type { Logger } from 'pino';
import type { StoreFactory } from '../stores/spec.ts';
import { StoreUnavailableError } from '../stores/errors.ts';
import { SYNC_READ_MAX } from '../stores/types.ts';
import type { ByteRange, ObjectBody, ObjectInfo, ObjectReader, ObjectStore } from '../stores/types.ts';
import type { Readable } from 'node:stream';
import type { Location } from '../velero/resolve.ts';
import { then } from '../util/promise-or.ts';
import type { PromiseOr } from '../util/promise-or.ts';
import { sendFromReader } from './send.ts';
import { markDownload } from './security-headers.ts';
import { earlier, localsOf, signalOf } from './locals.ts';
import { decideRange, notModified } from './range.ts';
import { HttpError } from './status.ts';
import type { DownloadSlots } from './limits.ts';
import { timedStoreCall } from './metrics.ts';
import { bodyBytesPassed } from '../util/scavenge.ts';
import type { GatewayMetrics } from './metrics.ts';

export interface DownloadDeps {
  stores: StoreFactory;
  log: Logger;
  metrics?: GatewayMetrics;
  /** The cap on concurrent downloads (`--max-concurrent-downloads`); none when absent. */
  downloadSlots?: DownloadSlots;
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
export const OBJECT_HEADERS = ['Content-Disposition', 'Content-Type', 'Content-Length', 'Content-Range', 'ETag', 'Last-Modified', 'Cache-Control', 'Accept-Ranges'];

export function setEntityHeaders(res: Response, info: ObjectInfo): void {
  markDownload(res);
  if (info.etag !== undefined) res.setHeader('ETag', info.etag);
  if (info.lastModified !== undefined) res.setHeader('Last-Modified', info.lastModified.toUTCString());
  // Backups hold Secrets: no shared cache may keep them; the client may revalidate with its ETag.
  res.setHeader('Cache-Control', 'private, no-cache');
  res.setHeader('Accept-Ranges', 'bytes');
}

/**
 * The entity headers of `info`, then what its conditional and Range headers ask for: `not-modified`
 * (a 304 has been sent), the one range to send, or undefined for the whole; an unsatisfiable range
 * throws the 416.
 */
export function conditionalRange(req: Request, res: Response, info: ObjectInfo): ByteRange | 'not-modified' | undefined {
  setEntityHeaders(res, info);
  if (notModified(info, req.get('if-none-match'), req.get('if-modified-since'))) {
    res.status(304).end();
    return 'not-modified';
  }
  const decision = decideRange(info, req.get('range'), req.get('if-range'));
  if (decision.kind === 'unsatisfiable') {
    throw new HttpError(416, 'RequestedRangeNotSatisfiable', `the requested range is not satisfiable: the object has ${info.size} bytes`, {
      'Content-Range': `bytes */${info.size}`,
    });
  }
  return decision.kind === 'partial' ? decision.range : undefined;
}

/** Status, Content-Range and Content-Length for the whole of `size` bytes or one range of them. */
export function setLengthHeaders(res: Response, size: number, range: ByteRange | undefined): void {
  if (range) {
    res.status(206).setHeader('Content-Range', `bytes ${range.start}-${range.end}/${size}`);
    res.setHeader('Content-Length', range.end - range.start + 1);
  } else {
    res.status(200).setHeader('Content-Length', size);
  }
}

/**
 * The last step of a download route: streams the resolved location. The target has been authorized
 * and resolved by the middlewares before it. A store known at once and a body ready at once (the
 * filesystem store's sync mode) go on in the same turn (util/promise-or.ts); only the transfer
 * itself is waited for.
 */
export function sendLocation(deps: DownloadDeps): RequestHandler {
  return (req, res) => {
    const location = earlier(localsOf(res).location, 'the location');
    // A slot is taken only by a caller Kubernetes has allowed, once there is something to send: a
    // stranger's requests never hold one.
    const refused = deps.downloadSlots?.claim(res);
    if (refused) throw refused;
    return then(deps.stores.forSpec(location.spec), (store) => sendFromStore(deps, req, res, store, location));
  };
}

function sendFromStore(deps: DownloadDeps, req: Request, res: Response, store: ObjectStore, location: Location): PromiseOr<void> {
  const signal = signalOf(res);
  res.setHeader('Content-Disposition', contentDisposition(location.key.slice(location.key.lastIndexOf('/') + 1)));
  res.setHeader('Content-Type', contentTypeOf(location.key));
  // A plain GET needs nothing from the object before opening it: one store call instead of two.
  const plainGet = req.method === 'GET' && req.headers.range === undefined && req.headers['if-none-match'] === undefined && req.headers['if-modified-since'] === undefined;
  if (!plainGet) return sendConditional(deps, req, res, store, location, signal);
  return then(
    timedStoreCall(deps.metrics, location.spec.provider, 'get', () => store.get(location.key, { signal })),
    (obj) => sendBody(deps, res, obj, signal),
  );
}

/** HEAD, Range and conditional requests: stat first, then what the headers ask for. */
async function sendConditional(deps: DownloadDeps, req: Request, res: Response, store: ObjectStore, location: Location, signal: AbortSignal): Promise<void> {
  const provider = location.spec.provider;
  const info = await timedStoreCall(deps.metrics, provider, 'stat', () => store.stat(location.key, { signal }));
  const range = conditionalRange(req, res, info);
  if (range === 'not-modified') return;
  if (req.method === 'HEAD') {
    setLengthHeaders(res, info.size, range);
    res.end();
    return;
  }
  const obj = await timedStoreCall(deps.metrics, provider, 'get', () => store.get(location.key, { signal, ...(range && { range }) }));
  return sendBody(deps, res, obj, signal);
}

/** Status, length and entity headers of what was opened (it may have changed since a stat), then its bytes. */
function sendBody(deps: DownloadDeps, res: Response, obj: ObjectBody, signal: AbortSignal): PromiseOr<void> {
  const locals = localsOf(res);
  const first = obj.range?.start ?? 0;
  const length = obj.range ? obj.range.end - obj.range.start + 1 : obj.size;
  if (obj.range) {
    res.status(206).setHeader('Content-Range', `bytes ${obj.range.start}-${obj.range.end}/${obj.size}`);
  } else {
    res.status(200);
  }
  res.setHeader('Content-Length', length);
  setEntityHeaders(res, obj);
  locals.ttfb = performance.now() - (locals.startedAt ?? performance.now());
  // Counted as it flows, so the access log (written on 'close') sees it whatever ends first.
  locals.bytes = 0;
  if (obj.kind === 'reader') {
    const { reader } = obj;
    if (reader.readSync && length <= SYNC_READ_MAX) return sendSmallBody(res, reader, reader.readSync, first, length);
    return sendReaderBody(deps, res, reader, first, length, signal);
  }
  return sendStreamBody(deps, res, obj.body, signal);
}

/**
 * A small object whose reader reads on the spot (the filesystem store in sync mode), sent whole in
 * the turn that opened it: one read into a buffer of its size and one `end()`, with no promise, no
 * pooled buffer and no listener (12.9 promises per 4 KiB download before, 0.34 now: bench/README.md).
 * Fewer bytes than announced (the file shrank since it was opened) fail before anything is written,
 * so the client gets the store's Status and never a short 200; the reader is closed either way.
 */
function sendSmallBody(res: Response, reader: ObjectReader, readSync: NonNullable<ObjectReader['readSync']>, first: number, length: number): void {
  const locals = localsOf(res);
  const bytes = Buffer.allocUnsafe(length);
  let got = 0;
  try {
    while (got < length) {
      const n = readSync(got === 0 ? bytes : bytes.subarray(got), length - got, first + got);
      if (n === 0) throw new StoreUnavailableError(`short read: got ${got} of ${length} bytes`);
      got += n;
    }
  } catch (err) {
    closeQuietly(reader);
    for (const name of OBJECT_HEADERS) res.removeHeader(name);
    locals.ttfb = undefined;
    throw err;
  }
  closeQuietly(reader);
  locals.bytes = length;
  res.end(bytes);
}

/** Releases a reader whose bytes are all read (or failed): a close that fails loses nothing. */
function closeQuietly(reader: ObjectReader): void {
  const closing = reader.close();
  if (closing instanceof Promise) closing.catch(() => undefined);
}

async function sendReaderBody(deps: DownloadDeps, res: Response, reader: ObjectReader, first: number, length: number, signal: AbortSignal): Promise<void> {
  const locals = localsOf(res);
  try {
    await sendFromReader(reader, first, length, res, (n) => {
      locals.bytes! += n;
    });
  } catch (err) {
    // An error of the object while the client is still there is the upstream's; once the client has
    // gone, the object errors only because we aborted it.
    const upstreamError = !signal.aborted && err instanceof StoreUnavailableError ? err : undefined;
    if (upstreamError && !res.headersSent) {
      // The reader failed before its first byte was written: nothing of the object went out, so the
      // client gets the store's Status instead of a torn connection, without the object's headers.
      for (const name of OBJECT_HEADERS) res.removeHeader(name);
      locals.ttfb = undefined;
      throw upstreamError;
    }
    brokenMidStream(deps, res, upstreamError);
  }
}

async function sendStreamBody(deps: DownloadDeps, res: Response, body: Readable, signal: AbortSignal): Promise<void> {
  const locals = localsOf(res);
  body.on('data', (chunk: Buffer) => {
    locals.bytes! += chunk.length;
    bodyBytesPassed(chunk.length);
  });
  let upstreamError: Error | undefined;
  body.once('error', (err) => {
    if (!signal.aborted) upstreamError = err;
  });
  try {
    await pipeline(body, res);
  } catch {
    // The pipeline has destroyed the response: headers are out, whatever failed.
    brokenMidStream(deps, res, upstreamError);
  }
}

/**
 * Headers are out: the only honest signal left is a broken connection, so the socket goes and
 * keep-alive cannot mask the short body.
 */
function brokenMidStream(deps: DownloadDeps, res: Response, upstreamError: Error | undefined): void {
  res.socket?.destroy();
  if (upstreamError) {
    const { message, reason } = upstreamError as Error & { reason?: string };
    deps.log.warn({ err: { message, reason }, target: localsOf(res).target, bytes: localsOf(res).bytes }, 'upstream failed mid-stream');
  }
}
