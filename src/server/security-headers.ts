/**
 * helmet's headers, decided once, and which of them a file download keeps. With helmet's defaults
 * every value is a constant, so helmet runs once against a recorder and each response gets the
 * recorded headers: the same result as `app.use(helmet())` (test/server/app.test.ts compares them)
 * without thirteen middleware calls per request. It is one of the changes (with cheaper cache keys,
 * access lines without redaction and batched log writes) that took 4 KiB downloads from 0.22× to
 * 0.80× of bare Node's requests per second (README, Benchmarks; bench/results/latest.md section 4:
 * 5,795 vs 7,215 req/s).
 *
 * Every response starts with all of them: a page (info, health, a Status error) is what a browser
 * might render. A file download is never rendered (Content-Disposition: attachment), so the policy
 * headers (CSP, HSTS, frame and opener policies...) say nothing there and are removed when a download
 * commits to its headers; X-Content-Type-Options: nosniff stays, so that a browser never guesses a
 * backup's bytes into HTML. A download that then fails before its first byte answers a Status page,
 * and the error handler puts them back.
 */
import type { Request, RequestHandler, Response } from 'express';
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
const PAGE_ONLY = HEADERS.map(([name]) => name).filter((name) => name.toLowerCase() !== DOWNLOAD_KEEPS);

/** Sets helmet's headers, as for a page. */
export function pageHeaders(res: Response): void {
  for (const [name, value] of HEADERS) res.setHeader(name, value);
}

/** Leaves only what a file download needs of helmet's headers (nosniff); call with its other headers. */
export function downloadHeaders(res: Response): void {
  for (const name of PAGE_ONLY) res.removeHeader(name);
}

/** The middleware giving every response helmet's headers first. */
export function securityHeaders(): RequestHandler {
  return (_req, res, next) => {
    pageHeaders(res);
    next();
  };
}
