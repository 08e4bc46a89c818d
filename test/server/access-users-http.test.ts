/**
 * HTTP Basic for access users on the download routes, in process (supertest): which scheme goes
 * where, the challenges, the hostile headers, and that the work done does not tell a known user from
 * an unknown one. The real process with the real curl is test/e2e/access-users.test.ts.
 */
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { Writable } from 'node:stream';
import { describe, test } from 'node:test';
import request from 'supertest';
import { AccessUserAuthenticator, AccessUserVerifier, FailedAttemptLimiter, hashPassword, parseAccessUsers } from '../../src/auth/access-users.ts';
import type { Derive } from '../../src/auth/access-users.ts';
import { AllowAuthenticatedAuthorizer, StaticTokenAuthenticator } from '../../src/auth/static-tokens.ts';
import type { Authorizer, UserInfo } from '../../src/auth/types.ts';
import { createApp } from '../../src/server/app.ts';
import type { AppDeps } from '../../src/server/app.ts';
import { createLogger } from '../../src/server/logging.ts';
import { LocalResolver } from '../../src/velero/resolve.ts';
import { binary } from '../support/http.ts';
import { MemoryStore } from '../support/memory-store.ts';

const TOKEN = 'bearer-token-for-tests-0123456789';
const PASSWORD = 'pa:ss:wörd with spaces';
const URL = '/v1/namespaces/velero/backups/nightly/log';
const BOTH = 'Bearer realm="velero-download-server", Basic realm="velero-download-server", charset="UTF-8"';
const basic = (userPass: string | Buffer): string => `Basic ${Buffer.from(userPass).toString('base64')}`;

async function setup(opts: { accessUsers?: boolean; authorizer?: Authorizer; signedUrls?: AppDeps['signedUrls'] } = {}) {
  let derivations = 0;
  // A fast, deterministic stand-in for scrypt that counts how often a password is derived.
  const derive: Derive = async (spec, pw) => {
    derivations++;
    return createHmac('sha256', spec.salt).update(pw).digest().subarray(0, spec.keyLength);
  };
  const hash = await hashPassword(PASSWORD, { derive });
  const { table } = parseAccessUsers({ text: `ci@jenkins: ${hash}\n` });
  const store = new MemoryStore();
  store.put('backups/nightly/nightly-logs.gz', 'the log');
  const raw: string[] = [];
  const lines: Record<string, unknown>[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _e, cb) {
      raw.push(chunk.toString());
      for (const l of chunk.toString().split('\n').filter(Boolean)) lines.push(JSON.parse(l) as Record<string, unknown>);
      cb();
    },
  });
  const app = createApp({
    authenticator: StaticTokenAuthenticator.parse(`${TOKEN},alice,uid-a,"team-a"\n`),
    ...(opts.accessUsers !== false && {
      accessUsers: new AccessUserAuthenticator({
        table: () => table,
        verifier: new AccessUserVerifier({ derive, cacheTtlMs: 0 }),
        limiter: new FailedAttemptLimiter({ perUser: { burst: 3, qps: 0.001 }, perClient: { burst: 5, qps: 0.001 } }),
      }),
    }),
    authorizer: opts.authorizer ?? new AllowAuthenticatedAuthorizer(),
    resolver: new LocalResolver('velero', [{ name: 'local', provider: 'filesystem', bucket: '', prefix: '', config: {} }]),
    stores: store,
    log: createLogger('info', sink),
    health: { ready: true },
    info: () => ({}),
    ...(opts.signedUrls && { signedUrls: opts.signedUrls }),
  });
  return { app, raw, lines, derivations: () => derivations };
}

describe('HTTP Basic for access users', () => {
  test('Basic → the access user; Bearer still works; every 401 offers both schemes', async () => {
    const s = await setup();
    const ok = await binary(request(s.app).get(URL).set('Authorization', basic(`ci@jenkins:${PASSWORD}`)));
    assert.equal(ok.status, 200);
    assert.equal(String(ok.body), 'the log');
    assert.equal((await request(s.app).get(URL).set('Authorization', `Bearer ${TOKEN}`)).status, 200);
    for (const h of [undefined, 'Bearer nope', basic(`ci@jenkins:wrong`), 'Digest x', 'Basic !!!']) {
      const r = request(s.app).get(URL);
      const res = await (h === undefined ? r : r.set('Authorization', h));
      assert.equal(res.status, 401, h);
      assert.equal(res.headers['www-authenticate'], BOTH, h);
      assert.equal((res.body as { reason: string }).reason, 'Unauthorized');
    }
    await new Promise((r) => setImmediate(r));
    const audit = s.lines.filter((l) => l.audit === 'download' && l.status === 200).map((l) => [l.user, l.groups]);
    assert.deepEqual(audit, [['velero-download-server:ci@jenkins', ['velero-download-server:access-users']], ['alice', ['team-a']]]);
  });

  test('without access users, Basic is 401 saying so, and the challenge is Bearer only', async () => {
    const s = await setup({ accessUsers: false });
    const res = await request(s.app).get(URL).set('Authorization', basic(`ci@jenkins:${PASSWORD}`));
    assert.equal(res.status, 401);
    assert.equal(res.headers['www-authenticate'], 'Bearer realm="velero-download-server"');
    assert.match((res.body as { message: string }).message, /access users \(HTTP Basic\) are not enabled/);
  });

  test('an unknown user and a wrong password: the same answer after the same work (one derivation each)', async () => {
    const s = await setup();
    const before = s.derivations();
    const unknown = await request(s.app).get(URL).set('Authorization', basic('nobody@jenkins:whatever'));
    const afterUnknown = s.derivations();
    const wrong = await request(s.app).get(URL).set('Authorization', basic('ci@jenkins:whatever'));
    assert.equal(afterUnknown - before, 1, 'an unknown user costs one derivation');
    assert.equal(s.derivations() - afterUnknown, 1, 'a known user with a wrong password costs one derivation');
    assert.deepEqual([unknown.status, unknown.body], [wrong.status, wrong.body]);
  });

  test('hostile headers: oversized, not base64, not UTF-8, CR/LF in the user, "*" as a user: 401, never 500, never echoed', async () => {
    const s = await setup();
    const cases = [
      `Basic ${'A'.repeat(5000)}`,
      basic(`ci@jenkins:${'x'.repeat(4000)}`),
      'Basic ci@jenkins:' + PASSWORD,
      basic(Buffer.concat([Buffer.from('ci@jenkins:'), Buffer.from([0xff, 0xfe, 0xc0])])),
      basic(Buffer.concat([Buffer.from([0xc3, 0x28]), Buffer.from(`@jenkins:${PASSWORD}`)])),
      basic(`ci\r\nX-Injected: 1@jenkins:${PASSWORD}`),
      basic(`ci\n{"user":"admin"}@jenkins:${PASSWORD}`),
      basic(`*@*:${PASSWORD}`),
      basic(`*@jenkins:${PASSWORD}`),
      basic(`:${PASSWORD}`),
      'Basic',
    ];
    for (const h of cases) {
      const res = await request(s.app).get(URL).set('Authorization', h);
      assert.ok(res.status === 401 || res.status === 429, `${h.slice(0, 40)}: ${res.status}`);
    }
    // Past Node's 16 KiB header limit the request never reaches the gateway's code.
    const huge = await request(s.app).get(URL).set('Authorization', `Basic ${'A'.repeat(20_000)}`).catch((e: Error) => e);
    assert.ok(huge instanceof Error || huge.status === 431, `a 20 KB header: ${huge instanceof Error ? huge.message : huge.status}`);
    const log = s.raw.join('');
    assert.ok(!log.includes('X-Injected') && !log.includes('"user":"admin"'), 'a hostile user name reached the log');
    assert.ok(!log.includes(PASSWORD));
  });

  test('failed attempts per user end in 429 with Retry-After and a Status, and the connection closes', async () => {
    const s = await setup();
    for (let i = 0; i < 3; i++) assert.equal((await request(s.app).get(URL).set('Authorization', basic('ci@jenkins:wrong'))).status, 401);
    const res = await request(s.app).get(URL).set('Authorization', basic(`ci@jenkins:${PASSWORD}`));
    assert.equal(res.status, 429);
    assert.match(String(res.headers['retry-after']), /^\d+$/);
    assert.equal(res.headers.connection, 'close');
    assert.equal((res.body as { reason: string; kind: string }).reason, 'TooManyRequests');
    // Bearer tokens are not slowed down by access users' failures.
    assert.equal((await request(s.app).get(URL).set('Authorization', `Bearer ${TOKEN}`)).status, 200);
  });

  test('the signed-URL route never reads the Authorization header', async () => {
    const verified: string[] = [];
    const s = await setup({
      signedUrls: {
        verify: () => {
          verified.push('x');
          return Promise.reject(Object.assign(new Error('the signature is not valid'), { name: 'HttpError' }));
        },
      },
    });
    const res = await request(s.app).get('/v1/namespaces/velero/downloadrequests/dr-x?signature=s').set('Authorization', basic(`ci@jenkins:${PASSWORD}`));
    assert.notEqual(res.status, 200);
    assert.equal(verified.length, 1, 'the signed-URL authenticator decided, not Basic');
  });

  test('an access user is authorized as itself, in its group', async () => {
    const asked: UserInfo[] = [];
    const s = await setup({ authorizer: { authorize: async (u) => (asked.push(u), { allowed: false, reason: 'no' }) } });
    const res = await request(s.app).get(URL).set('Authorization', basic(`ci@jenkins:${PASSWORD}`));
    assert.equal(res.status, 403);
    assert.deepEqual(asked, [{ username: 'velero-download-server:ci@jenkins', groups: ['velero-download-server:access-users'] }]);
    assert.match((res.body as { message: string }).message, /velero-download-server:ci@jenkins/);
  });
});
