/**
 * Fetching one artifact's bytes from one source (the store's pre-signed URL or the download server):
 * open it (status checked, overloaded servers retried), then stream the body and, when the connection
 * breaks, resume with `Range: bytes=N-` and `If-Range: <ETag>` so the bytes already written stay valid.
 */
import type { IncomingMessage } from 'node:http';
import type { LookupFunction } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { CliError, EXIT, describeFailure, networkFailure } from './errors.ts';
import { httpGet, readSmallBody } from './http.ts';
import type { Trust } from './http.ts';

/** One place the artifact can come from. */
export interface Source {
  kind: 'store' | 'gateway';
  /** For messages, e.g. "the download server at https://gw.example:8443". Never contains a query string. */
  label: string;
  url: URL;
  /** Sent with every request to this source (the gateway's Authorization). */
  headers: Record<string, string>;
  trust?: Trust;
  /** HEAD: the answer's headers only (`backup describe`); default GET. */
  method?: 'HEAD';
}

export interface FetchOptions {
  signal: AbortSignal;
  /** Per connection: connect + headers, and the longest silence while reading. */
  timeoutMs: number;
  lookup?: LookupFunction;
  /** Consecutive attempts without a new byte before giving up (default 4). */
  maxRetries?: number;
  /** First pause between attempts; doubles up to 2 s (default 100 ms). */
  backoffMs?: number;
}

/** A non-2xx answer, with the server's message (a Kubernetes Status message when the gateway sent one). */
export class HttpStatusError extends Error {
  readonly status: number;
  readonly detail: string;
  /** Retry-After in whole seconds, as the server sent it (delta-seconds only). */
  readonly retryAfterSeconds: number | undefined;
  constructor(status: number, detail: string, retryAfterSeconds?: number) {
    super(`HTTP ${status}${detail ? `: ${detail}` : ''}`);
    this.name = 'HttpStatusError';
    this.status = status;
    this.detail = detail;
    this.retryAfterSeconds = retryAfterSeconds;
  }
}

const RETRYABLE_STATUS = new Set([429, 502, 503, 504]);

function detailOf(body: string): string {
  try {
    const parsed = JSON.parse(body) as { message?: unknown };
    if (typeof parsed.message === 'string') return parsed.message;
  } catch {
    // not JSON: a store's XML or text error
  }
  const text = body.replace(/\s+/g, ' ').trim();
  return text.length > 300 ? `${text.slice(0, 300)}…` : text;
}

/** The longest Retry-After waited for in place; a server asking for longer gets the error reported instead. */
const MAX_RETRY_AFTER_SECONDS = 5;

function retryAfterSeconds(res: IncomingMessage): number | undefined {
  const raw = res.headers['retry-after'];
  return raw !== undefined && /^\d{1,9}$/.test(raw.trim()) ? Number(raw) : undefined;
}

async function statusError(res: IncomingMessage): Promise<HttpStatusError> {
  return new HttpStatusError(res.statusCode ?? 0, detailOf(await readSmallBody(res)), retryAfterSeconds(res));
}

const backoff = (opts: FetchOptions, attempt: number): number => Math.min((opts.backoffMs ?? 100) * 2 ** attempt, 2000);

/**
 * GETs the whole artifact and resolves with the 200 response; with `resume`, asks for the rest
 * (`Range: bytes=offset-`, `If-Range: validator`) and resolves with the 206 that continues those
 * bytes, or the 200 of an object that changed since. Throws HttpStatusError for other statuses
 * (after retrying 429/502/503/504 a few times) and network errors as they come (the caller decides
 * whether another source is worth trying).
 */
export async function openSource(src: Source, opts: FetchOptions, resume?: Resume): Promise<IncomingMessage> {
  let rest = resume;
  for (let attempt = 0; ; attempt++) {
    const headers = rest ? { ...src.headers, Range: `bytes=${rest.offset}-`, 'If-Range': rest.validator } : src.headers;
    const res = await httpGet(src.url, { ...(src.method && { method: src.method }), headers, ...(src.trust && { trust: src.trust }), timeoutMs: opts.timeoutMs, signal: opts.signal, ...(opts.lookup && { lookup: opts.lookup }) });
    if (res.statusCode === 200) return res;
    if (rest && (res.statusCode === 206 || res.statusCode === 416)) {
      if (res.statusCode === 206 && continues(res, rest.offset, rest.total)) return res;
      // Not the rest of those bytes (the object shrank, or a server that ranges oddly): the whole object instead.
      res.destroy();
      rest = undefined;
      attempt--;
      continue;
    }
    const err = await statusError(res);
    if (!RETRYABLE_STATUS.has(err.status) || attempt >= (opts.maxRetries ?? 4) - 1) throw err;
    // Asking again before the server's time (spent failed sign-ins, say) would only be refused again.
    if ((err.retryAfterSeconds ?? 0) > MAX_RETRY_AFTER_SECONDS) throw err;
    await sleep(err.retryAfterSeconds !== undefined ? err.retryAfterSeconds * 1000 : backoff(opts, attempt), undefined, { signal: opts.signal });
  }
}

/** Does this 206 carry the bytes from `offset` to the end of an object of `total` bytes? */
function continues(res: IncomingMessage, offset: number, total: number | undefined): boolean {
  const m = /^bytes (\d+)-(\d+)\/(\d+|\*)$/.exec(String(res.headers['content-range'] ?? ''));
  return m !== null && Number(m[1]) === offset && (m[3] === '*' || total === undefined || Number(m[3]) === total) && (total === undefined || Number(m[2]) === total - 1);
}

/** The response ended before Content-Length bytes arrived without a socket error: still a broken transfer. */
class ShortReadError extends Error {
  readonly code = 'ECONNRESET';
}

export interface Progress {
  /** Bytes received so far, and the total when known. */
  update(received: number, total: number | undefined): void;
}

/** Where a transfer can continue from, after a break in this run or an earlier one. */
export interface Resume {
  offset: number;
  /** The ETag (or Last-Modified) of the object the first bytes came from, for If-Range. */
  validator: string;
  total: number;
}

/** What a 200 response says about its body: its size, its validator, whether it can be resumed. */
export function describeBody(res: IncomingMessage): { total: number | undefined; validator: string | undefined; ranges: boolean } {
  const length = Number(res.headers['content-length']);
  return {
    total: res.headers['content-length'] !== undefined && Number.isSafeInteger(length) ? length : undefined,
    validator: res.headers.etag ?? res.headers['last-modified'],
    ranges: /\bbytes\b/i.test(String(res.headers['accept-ranges'] ?? '')),
  };
}

/** What happened, for the caller to report. */
export interface TransferStats {
  received: number;
  total: number | undefined;
  resumes: number;
}

/**
 * The body of `first` (a 200 response from `src`), then, after each break, the rest from resumed
 * range requests: the caller sees one unbroken byte stream or an error, never a silent short one.
 */
export async function* bodyChunks(src: Source, first: IncomingMessage, opts: FetchOptions, stats: TransferStats, progress?: Progress, note?: (msg: string) => void, resumed?: Resume): AsyncGenerator<Buffer> {
  const { total, validator, ranges } = resumed && first.statusCode === 206 ? { ...resumed, ranges: true } : describeBody(first);
  stats.received = resumed && first.statusCode === 206 ? resumed.offset : 0;
  stats.total = total;
  // A resumed transfer's bar starts where the earlier run stopped, and counts its rate from there.
  if (stats.received) progress?.update(stats.received, total);
  let res: IncomingMessage | undefined = first;
  let stalls = 0;
  let lastError: unknown;
  const maxRetries = opts.maxRetries ?? 4;

  for (;;) {
    if (res) {
      try {
        for await (const chunk of res as AsyncIterable<Buffer>) {
          stats.received += chunk.length;
          stalls = 0;
          progress?.update(stats.received, total);
          yield chunk;
        }
        if (total === undefined || stats.received === total) return;
        if (stats.received > total) throw new CliError(EXIT.notFound, `${src.label} sent more bytes than it announced (${stats.received} > ${total})`);
        throw new ShortReadError(`the connection closed after ${stats.received} of ${total} bytes`);
      } catch (err) {
        res.destroy();
        if (opts.signal.aborted || !(networkFailure(err) ?? err instanceof ShortReadError)) throw err;
        lastError = err;
      }
    }
    if (++stalls > maxRetries) {
      throw new CliError(
        EXIT.unreachable,
        `the transfer from ${src.label} broke after ${stats.received}${total === undefined ? '' : ` of ${total}`} bytes and could not be resumed (${describeFailure(lastError)}); run the command again`,
      );
    }
    if (stats.received > 0 && (!ranges || !validator || total === undefined)) {
      throw new CliError(
        EXIT.unreachable,
        `the transfer from ${src.label} broke after ${stats.received} bytes (${describeFailure(lastError)}) and the server does not support resuming it; run the command again`,
      );
    }
    await sleep(backoff(opts, stalls - 1), undefined, { signal: opts.signal });
    res = undefined;
    const headers: Record<string, string> = { ...src.headers };
    if (stats.received > 0) {
      headers.Range = `bytes=${stats.received}-`;
      headers['If-Range'] = validator!;
    }
    let next: IncomingMessage;
    try {
      next = await httpGet(src.url, { headers, ...(src.trust && { trust: src.trust }), timeoutMs: opts.timeoutMs, signal: opts.signal, ...(opts.lookup && { lookup: opts.lookup }) });
    } catch (err) {
      if (opts.signal.aborted || !networkFailure(err)) throw err;
      lastError = err;
      continue;
    }
    if (stats.received === 0 && next.statusCode === 200) {
      res = next;
    } else if (next.statusCode === 206) {
      if (!continues(next, stats.received, total)) {
        next.destroy();
        throw new CliError(EXIT.notFound, `${src.label} answered the resume request with a different range (${String(next.headers['content-range'])}); run the command again`);
      }
      note?.(`resuming the transfer at byte ${stats.received}${total === undefined ? '' : ` of ${total}`}`);
      stats.resumes++;
      res = next;
    } else if (next.statusCode === 200) {
      next.destroy();
      throw new CliError(EXIT.notFound, `the file changed on ${src.label} during the download (its ETag no longer matches); run the command again`);
    } else {
      const err = await statusError(next);
      if (!RETRYABLE_STATUS.has(err.status)) throw err;
      lastError = err;
    }
  }
}
