/**
 * helmet's headers, decided once, and which of them a file download keeps. With helmet's defaults
 * every value is a constant, so helmet runs once against a recorder and each response gets the
 * recorded headers: the same result as `app.use(helmet())` (test/server/app.test.ts compares them)
 * without thirteen middleware calls per request. It is one of the changes (with cheaper cache keys,
 * access lines without redaction and batched log writes) that took 4 KiB downloads from 0.22× to
 * 0.80× of bare Node's requests per second (README, Benchmarks; bench/results/latest.md section 4:
 * 5,795 vs 7,215 req/s).
 *
 * A page (info, health, a Status error) gets all of them: it is what a browser might render. A file
 * download is never rendered (Content-Disposition: attachment), so the policy headers (CSP, HSTS,
 * frame and opener policies...) say nothing there and a download gets only X-Content-Type-Options:
 * nosniff, so that a browser never guesses a backup's bytes into HTML. Which one a response is gets
 * decided when its head is written: a download that fails before its first byte answers a Status
 * page, and the error handler marks it a page again.
 */
import type { Express, Request, Response } from 'express';
import helmet from 'helmet';

/** The one header of helmet's a download keeps (lower case). */
const DOWNLOAD_KEEPS = 'x-content-type-options';

function recordHelmet(): [name: string, value: string][] {
  const headers: [name: string, value: string][] = [];
  const recorder = {
    setHeader: (name: string, value: string): void => void headers.push([name, value]),
    removeHeader: (): void => undefined, // X-Powered-By: Express's is disabled, nothing else sets it
  };
  let completed = false;
  helmet()({} as Request, recorder as unknown as Response, () => {
    completed = true;
  });
  if (!completed) throw new Error('helmet did not complete synchronously; its headers cannot be recorded');
  return headers;
}

const HEADERS = recordHelmet();
const KEPT = HEADERS.find(([name]) => name.toLowerCase() === DOWNLOAD_KEEPS);
if (!KEPT) throw new Error(`helmet no longer sets ${DOWNLOAD_KEEPS}`);
const [DOWNLOAD_NAME, DOWNLOAD_VALUE] = KEPT;

/** Set on a response that is a file download (by {@link markDownload}); absent: a page. */
const DOWNLOAD = Symbol('download');
type Marked = Response & { [DOWNLOAD]?: boolean };

/** The response is a page again (a download that failed before its first byte answers a Status). */
export function markPage(res: Response): void {
  (res as Marked)[DOWNLOAD] = false;
}

/** The response is a file download: of helmet's headers it gets only nosniff when its head is written. */
export function markDownload(res: Response): void {
  (res as Marked)[DOWNLOAD] = true;
}

/**
 * Gives every response of `app` helmet's headers as its head is written (Node's writeHead, which
 * every way of answering goes through: res.send, res.end, pipes, flushHeaders): all of them on a
 * page, only nosniff on a file download. Set at that moment rather than by a middleware on every
 * request, so a download does not set thirteen headers to remove twelve of them again (25 header
 * calls per 4 KiB download). `app.response` is Express's documented prototype of its responses.
 */
export function useSecurityHeaders(app: Express): void {
  const response = app.response as unknown as { writeHead: (this: Marked, ...args: unknown[]) => unknown };
  const writeHead = response.writeHead;
  response.writeHead = function writeHeadWithSecurityHeaders(this: Marked, ...args: unknown[]): unknown {
    // A header the route set itself wins, as when these were set first and the route overwrote one.
    if (!this.headersSent) {
      if (this[DOWNLOAD]) {
        if (!this.hasHeader(DOWNLOAD_NAME)) this.setHeader(DOWNLOAD_NAME, DOWNLOAD_VALUE);
      } else {
        for (const [name, value] of HEADERS) if (!this.hasHeader(name)) this.setHeader(name, value);
      }
    }
    return writeHead.apply(this, args);
  };
}
