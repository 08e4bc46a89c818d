/**
 * The floor for small downloads with authentication: bench/bare-server.ts plus only the work that no
 * gateway download may skip, each done the cheapest way Node allows, with nothing else (no Express, no
 * middleware chain, no abort signals, no limits, no error mapping). Whatever this server reaches is the
 * most the gateway could reach on the same machine; the gap between this and the bare server is what
 * those duties cost, the gap between the gateway and this is the gateway's own overhead.
 *
 * Per request, in order (each can be left out with --skip for a breakdown):
 * - `auth`: the bearer token's cached identity (a SHA-256 of the token as the cache key, as the
 *   gateway's review cache keys it, and an expiry check), then the cached decision for (user, target);
 *   a token not in the table gets 401, a target not allowed 403. Every token of `--pairs` is allowed
 *   the targets it is listed with (what the warm caches hold in the benchmark).
 * - `open`: the symlink-safe open of the filesystem store (src/stores/fs.ts, sync mode): lstat of
 *   each directory under the root's real path, open with O_NOFOLLOW, /proc/self/fd/N must be inside
 *   the root, fstat, one read, close; all on the event loop. Skipped: the file is read as the bare
 *   server does (statSync, then a read stream).
 * - `log`: the access line and the audit line, built and written as the gateway writes them (pino,
 *   one write per event-loop turn: src/server/logging.ts).
 * - `metrics`: the gateway's request metrics (src/server/metrics.ts: requests, bytes, time to first
 *   byte, transfer duration; Node's default metrics collected).
 * The gateway's Node flags (src/node-flags.ts) are the benchmark's to pass, as for the gateway.
 *
 *   node --max-semi-space-size=4 bench/floor-server.ts --cert tls.crt --key tls.key --root DIR \
 *     --pairs FILE --log FILE [--skip auth,open,log,metrics] [--listen 127.0.0.1:0]
 *
 * URLs: /v1/namespaces/<ns>/backups/<name>/<artifact> → <root>/backups/<name>/<name>-<file of artifact>.
 * `--pairs`: lines of "<token> <path>" (the benchmark's wrk file). Prints `{"port":N}` once listening.
 */
import { hash, randomUUID } from 'node:crypto';
import { closeSync, constants, createReadStream, fstatSync, lstatSync, openSync, readFileSync, readSync, readlinkSync, realpathSync, statSync } from 'node:fs';
import type { ServerResponse } from 'node:http';
import { createServer } from 'node:https';
import { sep } from 'node:path';
import { pipeline } from 'node:stream';
import { parseArgs } from 'node:util';
import { pino } from 'pino';
import { TurnBatchedDestination, createLogger } from '../src/server/logging.ts';
import { GatewayMetrics } from '../src/server/metrics.ts';
import { serveReference } from './lib/reference-server.ts';

const { values } = parseArgs({
  options: {
    cert: { type: 'string' },
    key: { type: 'string' },
    root: { type: 'string' },
    pairs: { type: 'string' },
    log: { type: 'string' },
    skip: { type: 'string', default: '' },
    listen: { type: 'string', default: '127.0.0.1:0' },
  },
});
if (!values.cert || !values.key || !values.root || !values.pairs || !values.log) {
  console.error('usage: floor-server.ts --cert FILE --key FILE --root DIR --pairs FILE --log FILE [--skip auth,open,log,metrics] [--listen HOST:PORT]');
  process.exit(2);
}
const skip = new Set(values.skip.split(',').filter(Boolean));
const root = realpathSync(values.root);

const FILES: Record<string, string> = { log: 'logs.gz', results: 'results.gz', resourcelist: 'resource-list.json.gz', volumesnapshots: 'volumesnapshots.json.gz' };
const PATH = /^\/v1\/namespaces\/([a-z0-9-]{1,63})\/backups\/([a-z0-9.-]{1,253})\/([a-z]{1,32})$/;

// The warm caches: token hash → identity, "user target" → allowed, each with an expiry.
const FAR = Date.now() + 3600_000;
const identities = new Map<string, { user: string; groups: string[]; expires: number }>();
const decisions = new Map<string, { allowed: boolean; expires: number }>();
for (const line of readFileSync(values.pairs, 'utf8').split('\n')) {
  const [token, path] = line.split(' ');
  if (!token || !path) continue;
  const m = PATH.exec(path);
  if (!m) continue;
  const key = hash('sha256', token, 'base64url');
  const id = identities.get(key) ?? { user: `user-${identities.size}`, groups: ['system:authenticated'], expires: FAR };
  identities.set(key, id);
  decisions.set(`${id.user} ${m[1]}/${m[2]}/${m[3]}`, { allowed: true, expires: FAR });
}

// As the gateway's stdout when it is a file: synchronous writes, one per event-loop turn.
const log = createLogger('info', new TurnBatchedDestination(pino.destination({ dest: values.log, sync: true }))).child({}, { redact: [] });
const metrics = skip.has('metrics') ? undefined : new GatewayMetrics();
const OPEN_FLAGS = constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK;

/** The filesystem store's sync open: undefined when a directory is a symlink or the file is not inside. */
function safeOpen(segments: string[]): { fd: number; size: number; mtime: Date } | undefined {
  let path = root;
  for (let i = 0; i < segments.length - 1; i++) {
    path += sep + segments[i];
    if (lstatSync(path).isSymbolicLink()) return undefined;
  }
  const fd = openSync(path + sep + segments[segments.length - 1], OPEN_FLAGS);
  if (!readlinkSync(`/proc/self/fd/${fd}`).startsWith(root + sep)) {
    closeSync(fd);
    return undefined;
  }
  const st = fstatSync(fd);
  if (!st.isFile()) {
    closeSync(fd);
    return undefined;
  }
  return { fd, size: st.size, mtime: st.mtime };
}

function answer(res: ServerResponse, status: number): void {
  res.writeHead(status, { 'content-type': 'application/json' }).end(`{"kind":"Status","code":${status}}`);
}

const server = createServer({ cert: readFileSync(values.cert), key: readFileSync(values.key) }, (req, res) => {
  const start = performance.now();
  const requestId = randomUUID();
  const m = PATH.exec(req.url ?? '');
  let user: { user: string; groups: string[] } | undefined;
  let bytes = 0;
  let ttfb: number | undefined;
  const target = m ? `${m[1]}/${m[2]}/${m[3]}` : undefined;
  res.once('close', () => {
    const durationMs = performance.now() - start;
    if (metrics) {
      metrics.requests.inc({ route: 'backups', method: req.method, code: String(res.statusCode) });
      if (bytes) metrics.bytesSent.inc({ route: 'backups' }, bytes);
      if (ttfb !== undefined) metrics.timeToFirstByte.observe({ route: 'backups' }, ttfb / 1000);
      metrics.transferDuration.observe({ route: 'backups', code: '2xx' }, durationMs / 1000);
    }
    if (!skip.has('log')) {
      const remote = req.socket.remoteAddress;
      log.info({ requestId, method: req.method, path: req.url, status: res.statusCode, bytes, durationMs, user: user?.user, target, remote, completed: res.writableFinished }, 'request');
      log.info({ audit: 'download', requestId, user: user?.user, groups: user?.groups, namespace: m?.[1], target: m && `backups/${m[2]}`, artifact: m?.[3], bytes, status: res.statusCode, completed: res.writableFinished, durationMs, remote }, 'audit');
    }
  });
  if (!m || !FILES[m[3]!]) return answer(res, 404);
  if (!skip.has('auth')) {
    const authz = req.headers.authorization;
    const id = authz?.startsWith('Bearer ') ? identities.get(hash('sha256', authz.slice(7), 'base64url')) : undefined;
    if (!id || id.expires < Date.now()) return answer(res, 401);
    user = id;
    const d = decisions.get(`${id.user} ${target}`);
    if (!d?.allowed || d.expires < Date.now()) return answer(res, 403);
  }
  const name = m[2]!;
  const headers = (size: number, mtime: Date): Record<string, string | number> => ({
    'x-request-id': requestId,
    'x-content-type-options': 'nosniff',
    'content-type': 'application/gzip',
    'content-length': size,
    'content-disposition': `attachment; filename="${name}-${FILES[m[3]!]}"`,
    etag: `"${size.toString(16)}-${mtime.getTime().toString(16)}"`,
    'last-modified': mtime.toUTCString(),
    'cache-control': 'private, no-cache',
    'accept-ranges': 'bytes',
  });
  const segments = ['backups', name, `${name}-${FILES[m[3]!]}`];
  if (skip.has('open')) {
    const file = root + sep + segments.join(sep);
    const st = statSync(file);
    res.writeHead(200, headers(st.size, st.mtime));
    ttfb = performance.now() - start;
    bytes = st.size;
    pipeline(createReadStream(file, { start: 0, end: st.size - 1, highWaterMark: 1024 * 1024 }), res, () => undefined);
    return;
  }
  const opened = safeOpen(segments);
  if (!opened) return answer(res, 404);
  try {
    const body = Buffer.allocUnsafe(opened.size);
    const n = readSync(opened.fd, body, 0, opened.size, 0);
    res.writeHead(200, headers(n, opened.mtime));
    ttfb = performance.now() - start;
    bytes = n;
    res.end(n === opened.size ? body : body.subarray(0, n));
  } finally {
    closeSync(opened.fd);
  }
});
serveReference(server, values.listen);
