import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { describe, test, beforeEach } from 'node:test';
import express from 'express';
import helmet from 'helmet';
import request from 'supertest';
import { AllowAuthenticatedAuthorizer, StaticTokenAuthenticator } from '../../src/auth/static-tokens.ts';
import type { Authorizer, Decision } from '../../src/auth/types.ts';
import { createApp } from '../../src/server/app.ts';
import { useSecurityHeaders } from '../../src/server/security-headers.ts';
import type { AppDeps } from '../../src/server/app.ts';
import { createLogger } from '../../src/server/logging.ts';
import { StoreUnavailableError, ThrottledError } from '../../src/stores/errors.ts';
import { LocalResolver } from '../../src/velero/resolve.ts';
import { binary } from '../support/http.ts';
import { MemoryStore } from '../support/memory-store.ts';

const TOKEN = 'secret-token-for-tests-0123456789';
const auth = { Authorization: `Bearer ${TOKEN}` };
const LOG_KEY = 'backups/nightly/nightly-logs.gz';
const BODY = Buffer.from('0123456789abcdefghij'.repeat(50));

function setup(authorizer: Authorizer = new AllowAuthenticatedAuthorizer(), signedUrls?: AppDeps['signedUrls']) {
  const store = new MemoryStore();
  store.put(LOG_KEY, BODY);
  store.put('restores/r1/r1-volumeinfo.json.gz', 'vi');
  const lines: Record<string, unknown>[] = [];
  const raw: string[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      raw.push(chunk.toString());
      for (const l of chunk.toString().split('\n').filter(Boolean)) lines.push(JSON.parse(l) as Record<string, unknown>);
      cb();
    },
  });
  const resolver = new LocalResolver('velero', [{ name: 'local', provider: 'filesystem', bucket: '', prefix: '', config: {} }]);
  let resolves = 0;
  let drReads = 0;
  const app = createApp({
    ...(signedUrls && { signedUrls }),
    authenticator: StaticTokenAuthenticator.parse(`${TOKEN},alice,uid-a,"team-a"\n`),
    authorizer,
    resolver: {
      resolve: (t, s) => {
        resolves++;
        return resolver.resolve(t, s);
      },
      downloadRequestTarget: (ns, name) => {
        drReads++;
        return Promise.resolve({ namespace: ns, owner: 'backups', name: name.replace(/^dr-/, ''), artifact: 'log' });
      },
    },
    stores: store,
    log: createLogger('info', sink),
    health: { ready: true },
    info: () => ({ version: 'test', tlsFingerprint: 'ab' }),
  });
  return { app, store, lines, raw, resolves: () => resolves, drReads: () => drReads };
}

function assertStatus(body: unknown, code: number, reason: string): void {
  const s = body as Record<string, unknown>;
  assert.equal(s.kind, 'Status');
  assert.equal(s.apiVersion, 'v1');
  assert.equal(s.status, 'Failure');
  assert.equal(s.code, code);
  assert.equal(s.reason, reason);
  assert.equal(typeof s.message, 'string');
}

const URL = '/v1/namespaces/velero/backups/nightly/log';

describe('download handler', () => {
  let s: ReturnType<typeof setup>;
  beforeEach(() => {
    s = setup();
  });

  test('200 with the bytes and every entity header', async () => {
    const res = await binary(request(s.app).get(URL).set(auth));
    assert.equal(res.status, 200);
    assert.deepEqual(res.body, BODY);
    assert.equal(res.headers['content-length'], String(BODY.length));
    assert.equal(res.headers['content-type'], 'application/gzip');
    assert.equal(res.headers['content-disposition'], 'attachment; filename=nightly-logs.gz');
    assert.equal(res.headers['accept-ranges'], 'bytes');
    assert.match(res.headers.etag ?? '', /^"[0-9a-f]+"$/);
    assert.equal(res.headers['last-modified'], 'Thu, 01 Jan 2026 00:00:00 GMT');
    assert.match(res.headers['x-request-id'] ?? '', /^[0-9a-f-]{36}$/);
  });

  test('the restore volumeinfo key has no restore- prefix and is served as JSON', async () => {
    const res = await request(s.app).get('/v1/namespaces/velero/restores/r1/volumeinfo').set(auth);
    assert.equal(res.status, 200);
    assert.equal(res.headers['content-disposition'], 'attachment; filename=r1-volumeinfo.json.gz');
  });

  test('HEAD answers the headers without a body and without reading the object', async () => {
    const res = await request(s.app).head(URL).set(auth);
    assert.equal(res.status, 200);
    assert.equal(res.headers['content-length'], String(BODY.length));
    assert.deepEqual(s.store.calls, [`stat ${LOG_KEY}`]);
  });

  test('a single range → 206 with Content-Range', async () => {
    const res = await request(s.app).get(URL).set(auth).set('Range', 'bytes=10-19');
    assert.equal(res.status, 206);
    assert.equal(res.headers['content-range'], `bytes 10-19/${BODY.length}`);
    assert.equal(res.headers['content-length'], '10');
    assert.equal(res.text ?? Buffer.from(res.body as Buffer).toString(), BODY.subarray(10, 20).toString());
  });

  test('a suffix range → the last bytes', async () => {
    const res = await request(s.app).get(URL).set(auth).set('Range', 'bytes=-5');
    assert.equal(res.status, 206);
    assert.equal(res.headers['content-range'], `bytes ${BODY.length - 5}-${BODY.length - 1}/${BODY.length}`);
  });

  test('an unsatisfiable range → 416 Status with Content-Range */size', async () => {
    const res = await request(s.app).get(URL).set(auth).set('Range', `bytes=${BODY.length}-`);
    assert.equal(res.status, 416);
    assert.equal(res.headers['content-range'], `bytes */${BODY.length}`);
    assertStatus(res.body, 416, 'RequestedRangeNotSatisfiable');
  });

  test('multiple ranges → the whole object with 200', async () => {
    const res = await request(s.app).get(URL).set(auth).set('Range', 'bytes=0-1,10-11');
    assert.equal(res.status, 200);
    assert.equal(res.headers['content-length'], String(BODY.length));
  });

  test('If-None-Match with the current ETag → 304', async () => {
    const first = await request(s.app).head(URL).set(auth);
    const res = await request(s.app).get(URL).set(auth).set('If-None-Match', first.headers.etag!);
    assert.equal(res.status, 304);
    assert.equal(s.store.calls.filter((c) => c.startsWith('get')).length, 0);
  });

  test('no token → 401 with a Bearer challenge', async () => {
    const res = await request(s.app).get(URL);
    assert.equal(res.status, 401);
    assert.equal(res.headers['www-authenticate'], 'Bearer realm="velero-download-server"');
    assertStatus(res.body, 401, 'Unauthorized');
    assert.equal(s.resolves(), 0);
  });

  test('unknown token and malformed headers → 401, and the token never shows up', async () => {
    for (const h of ['Bearer nope-not-a-token', 'Basic YWxpY2U6cHc=', 'Bearer', `Token ${TOKEN}`, 'Bearer a b']) {
      const res = await request(s.app).get(URL).set('Authorization', h);
      assert.equal(res.status, 401, h);
      assertStatus(res.body, 401, 'Unauthorized');
    }
    assert.ok(!s.raw.join('').includes(TOKEN));
    assert.ok(!s.raw.join('').includes('nope-not-a-token'));
  });

  test('a token in the query string is refused and never logged', async () => {
    const res = await request(s.app).get(`${URL}?access_token=${TOKEN}`);
    assert.equal(res.status, 400);
    assertStatus(res.body, 400, 'BadRequest');
    assert.ok(!s.raw.join('').includes(TOKEN), 'token in the log');
    assert.ok(!JSON.stringify(res.body).includes(TOKEN));
  });

  test('missing objects, unknown artifacts and other namespaces → 404 Status', async () => {
    for (const path of ['/v1/namespaces/velero/backups/other/log', '/v1/namespaces/velero/backups/nightly/nope', '/v1/namespaces/elsewhere/backups/nightly/log', '/v1/namespaces/velero/restores/r1/contents']) {
      const res = await request(s.app).get(path).set(auth);
      assert.equal(res.status, 404, path);
      assertStatus(res.body, 404, 'NotFound');
    }
  });

  test('names that are not DNS-1123 never become keys → 400', async () => {
    for (const path of ['/v1/namespaces/velero/backups/Nightly/log', '/v1/namespaces/velero/backups/%2e%2e/log', '/v1/namespaces/velero/backups/a%2Fb/log', '/v1/namespaces/velero/backups/a%00/log', '/v1/namespaces/Velero_/backups/a/log']) {
      const res = await request(s.app).get(path).set(auth);
      assert.equal(res.status, 400, path);
      assertStatus(res.body, 400, 'BadRequest');
    }
    assert.deepEqual(s.store.calls, []);
  });

  test('malformed percent-encoding → 400, not 500', async () => {
    const res = await request(s.app).get('/v1/namespaces/velero/backups/%E0%A4%A/log').set(auth);
    assert.equal(res.status, 400);
    assertStatus(res.body, 400, 'BadRequest');
  });

  test('other methods → 405 with Allow', async () => {
    for (const method of ['post', 'put', 'delete', 'patch'] as const) {
      const res = await request(s.app)[method](URL).set(auth);
      assert.equal(res.status, 405, method);
      assert.equal(res.headers.allow, 'GET, HEAD');
      assertStatus(res.body, 405, 'MethodNotAllowed');
    }
  });

  test('unknown paths → 404 Status', async () => {
    const res = await request(s.app).get('/v2/anything');
    assert.equal(res.status, 404);
    assertStatus(res.body, 404, 'NotFound');
  });

  test('store failures before the first byte map to 502/503 with a Status, never 500', async () => {
    s.store.failWith = new StoreUnavailableError('location local: connection refused');
    let res = await request(s.app).get(URL).set(auth);
    assert.equal(res.status, 502);
    assertStatus(res.body, 502, 'BadGateway');
    s.store.failWith = new ThrottledError('slow down', 7);
    res = await request(s.app).get(URL).set(auth);
    assert.equal(res.status, 503);
    assert.equal(res.headers['retry-after'], '7');
  });

  test('a reader that fails before its first byte → 502 Status without the object\'s headers', async () => {
    s.store.readerFailsWith = new StoreUnavailableError('filesystem error reading object "backups/nightly/nightly-logs.gz"');
    const res = await request(s.app).get(URL).set(auth);
    assert.equal(res.status, 502);
    assertStatus(res.body, 502, 'BadGateway');
    for (const name of ['content-disposition', 'etag', 'last-modified', 'accept-ranges', 'content-range']) assert.equal(res.headers[name], undefined, name);
    assert.equal(res.headers['content-type'], 'application/json; charset=utf-8');
    assert.equal(res.headers['cache-control'], 'no-store');
    assert.equal(Number(res.headers['content-length']), JSON.stringify(res.body).length);
    // The connection stays usable: the next request on the same app is served.
    s.store.readerFailsWith = undefined;
    assert.equal((await request(s.app).get(URL).set(auth)).status, 200);
  });

  test('a small object from a reader that reads on the spot is sent whole, ranges too, and the reader closed', async () => {
    s.store.syncReader = true;
    const whole = await binary(request(s.app).get(URL).set(auth));
    assert.equal(whole.status, 200);
    assert.deepEqual(whole.body, BODY);
    assert.equal(Number(whole.headers['content-length']), BODY.length);
    const part = await binary(request(s.app).get(URL).set(auth).set('Range', 'bytes=10-19'));
    assert.equal(part.status, 206);
    assert.deepEqual(part.body, BODY.subarray(10, 20));
    assert.equal(s.store.readerCloses, 2);
  });

  test('a reader on the spot that comes up short → 502 Status without the object\'s headers, never a short 200', async () => {
    s.store.syncReader = true;
    s.store.truncateAfter = 100;
    const res = await request(s.app).get(URL).set(auth);
    assert.equal(res.status, 502);
    assertStatus(res.body, 502, 'BadGateway');
    assert.match((res.body as { message: string }).message, /short read: got 100 of 1000 bytes/);
    for (const name of ['content-disposition', 'etag', 'last-modified', 'accept-ranges']) assert.equal(res.headers[name], undefined, name);
    assert.equal(s.store.readerCloses, 1);
    s.store.readerFailsWith = new StoreUnavailableError('filesystem error reading object "backups/nightly/nightly-logs.gz"');
    s.store.truncateAfter = undefined;
    const failed = await request(s.app).get(URL).set(auth);
    assert.equal(failed.status, 502);
    assertStatus(failed.body, 502, 'BadGateway');
    assert.equal(s.store.readerCloses, 2);
  });

  test('an upstream failure after the headers tears the connection down', async () => {
    s.store.breakAfter = 100;
    await assert.rejects(request(s.app).get(URL).set(auth), (err: Error & { code?: string }) => {
      return /aborted|socket hang up|ECONNRESET|premature/i.test(`${err.message} ${err.code ?? ''}`);
    });
  });

  test('one access line per request with user, status and bytes, and no token', async () => {
    await request(s.app).get(URL).set(auth).set('X-Request-Id', 'req-123');
    await new Promise((r) => setImmediate(r));
    const line = s.lines.find((l) => l.msg === 'request' && l.requestId === 'req-123');
    assert.ok(line, JSON.stringify(s.lines));
    assert.equal(line.status, 200);
    assert.equal(line.user, 'alice');
    assert.equal(line.bytes, BODY.length);
    assert.equal(line.path, URL);
    assert.equal(line.method, 'GET');
    assert.equal(typeof line.durationMs, 'number');
    assert.ok(!s.raw.join('').includes(TOKEN));
  });

  test('health, readiness and info need no token', async () => {
    assert.equal((await request(s.app).get('/healthz')).status, 200);
    assert.equal((await request(s.app).get('/readyz')).status, 200);
    const info = await request(s.app).get('/v1/info');
    assert.equal(info.status, 200);
    assert.deepEqual(info.body, { version: 'test', tlsFingerprint: 'ab' });
  });
});

describe('authorization comes before existence', () => {
  test('a denied caller gets the same 403 for a missing and an existing backup', async () => {
    const deny: Authorizer = { authorize: (): Promise<Decision> => Promise.resolve({ allowed: false }) };
    const s = setup(deny);
    const a = await request(s.app).get(URL).set(auth);
    const b = await request(s.app).get('/v1/namespaces/velero/backups/does-not-exist/log').set(auth);
    assert.equal(a.status, 403);
    assert.equal(b.status, 403);
    assertStatus(a.body, 403, 'Forbidden');
    assert.equal(
      (a.body as { message: string }).message,
      'backups.velero.io "nightly" is forbidden: User "alice" cannot get resource "backups/log" in API group "velero.io" in the namespace "velero"',
    );
    assert.equal(s.resolves(), 0);
    assert.deepEqual(s.store.calls, []);
  });
});

describe('each route is one chain: authenticate → parse → authorize → resolve → send', () => {
  /** Allows what `allowed` names (`resource/subresource`), records every question. */
  const only = (...allowed: string[]) => {
    const asked: string[] = [];
    const authorizer: Authorizer = {
      authorize: (_user, a): Promise<Decision> => {
        const what = `${a.resource}${a.subresource ? `/${a.subresource}` : ''}`;
        asked.push(what);
        return Promise.resolve({ allowed: allowed.includes(what) });
      },
    };
    return { authorizer, asked };
  };

  test('authentication first: a malformed path without a valid token → 401, not 400', async () => {
    const s = setup();
    for (const path of ['/v1/namespaces/Velero_/backups/a/log', '/v1/namespaces/velero/downloadrequests/A_B']) {
      const res = await request(s.app).get(path);
      assert.equal(res.status, 401, path);
      assert.equal((await request(s.app).get(path).set(auth)).status, 400, path);
    }
  });

  test('a DownloadRequest by token: get on the DownloadRequest before it is read, then its target', async () => {
    const none = only();
    let s = setup(none.authorizer);
    let res = await request(s.app).get('/v1/namespaces/velero/downloadrequests/dr-nightly').set(auth);
    assert.equal(res.status, 403);
    assert.match((res.body as { message: string }).message, /cannot get resource "downloadrequests"/);
    assert.deepEqual([none.asked, s.drReads(), s.resolves()], [['downloadrequests'], 0, 0]);

    const drOnly = only('downloadrequests');
    s = setup(drOnly.authorizer);
    res = await request(s.app).get('/v1/namespaces/velero/downloadrequests/dr-nightly').set(auth);
    assert.equal(res.status, 403);
    assert.match((res.body as { message: string }).message, /cannot get resource "backups\/log"/);
    assert.deepEqual([drOnly.asked, s.drReads(), s.resolves()], [['downloadrequests', 'backups/log'], 1, 0]);

    const both = only('downloadrequests', 'backups/log');
    s = setup(both.authorizer);
    res = await binary(request(s.app).get('/v1/namespaces/velero/downloadrequests/dr-nightly').set(auth));
    assert.equal(res.status, 200);
    assert.deepEqual(res.body, BODY);
  });

  test('a signed URL is a route of its own: its requester, its target, authorized like a token', async () => {
    const requester = { username: 'bob', groups: ['team-b'] };
    const verified: string[] = [];
    const signedUrls: NonNullable<AppDeps['signedUrls']> = {
      verify: (namespace, name) => {
        verified.push(`${namespace}/${name}`);
        return Promise.resolve({ requester, target: { namespace, owner: 'backups', name: 'nightly', artifact: 'log' } } as Awaited<ReturnType<NonNullable<AppDeps['signedUrls']>['verify']>>);
      },
    };
    const logOnly = only('backups/log');
    const s = setup(logOnly.authorizer, signedUrls);
    const url = '/v1/namespaces/velero/downloadrequests/dr-x?uid=u&kind=BackupLog&target=nightly&expires=1&signature=s';
    const res = await binary(request(s.app).get(url));
    assert.equal(res.status, 200);
    assert.deepEqual(res.body, BODY);
    // No get on the DownloadRequest is asked for: the signature stands for it. No token is needed.
    assert.deepEqual([verified, logOnly.asked, s.drReads()], [['velero/dr-x'], ['backups/log'], 0]);
    await new Promise((r) => setImmediate(r));
    const audit = s.lines.find((l) => l.audit === 'download');
    assert.equal(audit?.user, 'bob');
    assert.equal(audit?.via, 'signed-url');

    // Without its parameters the same path is the token route.
    const plain = await request(s.app).get('/v1/namespaces/velero/downloadrequests/dr-x');
    assert.equal(plain.status, 401);
    assert.equal(verified.length, 1);
    // Other methods → 405 on both.
    assert.equal((await request(s.app).post(url)).status, 405);
  });
});

/**
 * Of helmet's headers (`helmet`), a download carries only X-Content-Type-Options: nosniff; the policy
 * headers of a page (CSP, HSTS, frame and opener policies...) are not there.
 */
function assertDownloadHeaders(headers: Record<string, string>, helmetHeaders: Record<string, string>): void {
  assert.equal(headers['x-content-type-options'], 'nosniff');
  const left = Object.keys(helmetHeaders).filter((name) => name !== 'x-content-type-options' && name in headers);
  assert.deepEqual(left, [], `page headers on a download: ${left.join(', ')}`);
}

describe('security headers', () => {
  test('the recorded helmet headers are exactly what helmet() sets on a live response, on every response', async () => {
    const live = express();
    live.use(helmet());
    live.get('/x', (_req, res) => res.send('x'));
    const replayed = express();
    replayed.disable('x-powered-by');
    useSecurityHeaders(replayed);
    replayed.get('/x', (_req, res) => res.send('x'));
    const pick = (h: Record<string, string>): Record<string, string> =>
      Object.fromEntries(Object.entries(h).filter(([k]) => !['date', 'etag', 'content-length', 'content-type', 'connection', 'keep-alive'].includes(k)));
    const want = pick((await request(live).get('/x')).headers);
    assert.ok(Object.keys(want).length >= 10, `helmet set ${Object.keys(want).join(', ')}`);
    assert.ok('strict-transport-security' in want && 'content-security-policy' in want);
    assert.deepEqual(pick((await request(replayed).get('/x')).headers as Record<string, string>), want);
    // A route that sets one of them itself keeps its own value (set at writeHead, they never overwrite).
    replayed.get('/own-policy', (_req, res) => res.setHeader('Content-Security-Policy', "default-src 'none'").send('x'));
    const own = await request(replayed).get('/own-policy');
    assert.equal(own.headers['content-security-policy'], "default-src 'none'");
    assert.equal(own.headers['strict-transport-security'], want['strict-transport-security']);

    // The gateway's pages carry them all: info, health, an error, and a download that fails before its
    // first byte (its Status is a page).
    const s = setup();
    const pages = [
      await request(s.app).get('/v1/info'),
      await request(s.app).get('/healthz'),
      await request(s.app).get(URL),
      await request(s.app).get('/v1/namespaces/velero/backups/missing/log').set(auth),
      await request(s.app).get(URL).set(auth).set('Range', 'bytes=99999-'),
    ];
    assert.deepEqual(pages.map((r) => r.status), [200, 200, 401, 404, 416]);
    for (const res of pages) {
      for (const [name, value] of Object.entries(want)) assert.equal(res.headers[name], value, `${res.status}: ${name}`);
    }
    // A file download carries only nosniff of them, in every form it takes (whole, range, HEAD, 304).
    const whole = await request(s.app).get(URL).set(auth);
    const downloads = [
      whole,
      await request(s.app).get(URL).set(auth).set('Range', 'bytes=0-9'),
      await request(s.app).head(URL).set(auth),
      await request(s.app).get(URL).set(auth).set('If-None-Match', String(whole.headers.etag)),
    ];
    assert.deepEqual(downloads.map((r) => r.status), [200, 206, 200, 304]);
    for (const res of downloads) assertDownloadHeaders(res.headers, want);
  });
});
