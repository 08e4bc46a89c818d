/**
 * Review caching and API server failures in kubernetes mode, against the Kubernetes API test double
 * (its call log counts reviews exactly; its faults fail, slow or refuse a review on cue): one review for
 * many identical requests, expiry, errors never cached, 503 with Retry-After, recovery. The API server
 * down and back, and TokenReview audiences, are proven against a real API server in test/e2e.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import request from 'supertest';
import { BACKUP, NS, kubeFixture } from '../support/kube-fixture.ts';
import type { KubeFixture } from '../support/kube-fixture.ts';
import { inProcessGateway } from '../support/in-process.ts';

const path = `/v1/namespaces/${NS}/backups/${BACKUP}/log`;
const reviews = (fx: KubeFixture): { tr: number; sar: number } => ({
  tr: fx.api.calls.count({ resource: 'tokenreviews' }),
  sar: fx.api.calls.count({ resource: 'subjectaccessreviews' }),
});

describe('kubernetes mode: review caches and API failures', () => {
  let fx: KubeFixture;
  before(async () => {
    fx = await kubeFixture();
  });
  after(() => fx.close());

  test('20 concurrent requests with one new token cause one TokenReview and one SubjectAccessReview', async () => {
    const gw = await inProcessGateway(fx.args());
    const token = fx.api.tokens.user('frank', ['backup-readers']);
    const before = reviews(fx);
    const results = await Promise.all(Array.from({ length: 20 }, () => request(gw.app).get(path).set('Authorization', `Bearer ${token}`)));
    assert.deepEqual(results.map((r) => r.status), Array(20).fill(200));
    const now = reviews(fx);
    assert.equal(now.tr - before.tr, 1);
    assert.equal(now.sar - before.sar, 1);
    // And a later request within the TTLs costs nothing.
    await request(gw.app).get(path).set('Authorization', `Bearer ${token}`).expect(200);
    assert.deepEqual(reviews(fx), now);
  });

  test('cached decisions expire and are reviewed again', async () => {
    const gw = await inProcessGateway(fx.args('--authn-cache-ttl', '200ms', '--authz-allowed-ttl', '200ms'));
    const token = fx.api.tokens.user('grace', ['backup-readers']);
    await request(gw.app).get(path).set('Authorization', `Bearer ${token}`).expect(200);
    const first = reviews(fx);
    await new Promise((r) => setTimeout(r, 350));
    await request(gw.app).get(path).set('Authorization', `Bearer ${token}`).expect(200);
    const second = reviews(fx);
    assert.equal(second.tr - first.tr, 1);
    assert.equal(second.sar - first.sar, 1);
  });

  test('a rejected token is cached as rejected (no review per request)', async () => {
    const gw = await inProcessGateway(fx.args());
    const before = reviews(fx);
    for (let i = 0; i < 3; i++) await request(gw.app).get(path).set('Authorization', 'Bearer never-issued-token').expect(401);
    assert.equal(reviews(fx).tr - before.tr, 1);
  });

  test('a failing TokenReview answers 503 with Retry-After, is not cached, and the next request succeeds', async () => {
    const gw = await inProcessGateway(fx.args());
    const token = fx.api.tokens.user('heidi', ['backup-readers']);
    const fault = fx.api.faults.add({ match: { resource: 'tokenreviews' }, status: 503, retryAfterSeconds: 7, times: 1 });
    const failed = await request(gw.app).get(path).set('Authorization', `Bearer ${token}`);
    assert.equal(failed.status, 503, failed.text);
    assert.equal(failed.headers['retry-after'], '7');
    assert.equal((failed.body as { reason: string }).reason, 'ServiceUnavailable');
    assert.ok(!failed.text.includes(token));
    fault.remove();
    await request(gw.app).get(path).set('Authorization', `Bearer ${token}`).expect(200);
  });

  test('a failing SubjectAccessReview is a 503, never a 403', async () => {
    const gw = await inProcessGateway(fx.args());
    const token = fx.api.tokens.user('ivan', ['backup-readers']);
    const fault = fx.api.faults.add({ match: { resource: 'subjectaccessreviews' }, status: 500, times: 1 });
    assert.equal((await request(gw.app).get(path).set('Authorization', `Bearer ${token}`)).status, 503);
    fault.remove();
    await request(gw.app).get(path).set('Authorization', `Bearer ${token}`).expect(200);
  });

  test('a slow API server times out into a 503', async () => {
    const gw = await inProcessGateway(fx.args('--kube-api-timeout', '300ms'));
    const token = fx.api.tokens.user('judy', ['backup-readers']);
    const fault = fx.api.faults.add({ match: { resource: 'tokenreviews' }, delayMs: 2000, times: 1 });
    const started = Date.now();
    const res = await request(gw.app).get(path).set('Authorization', `Bearer ${token}`);
    assert.equal(res.status, 503);
    assert.ok(Date.now() - started < 1500, 'answered at the timeout, not after the delay');
    fault.remove();
  });

  test('a SubjectAccessReview that times out says it timed out, not "HTTP 23"', async () => {
    const gw = await inProcessGateway(fx.args('--kube-api-timeout', '300ms'));
    const token = fx.api.tokens.user('kim', ['backup-readers']);
    const fault = fx.api.faults.add({ match: { resource: 'subjectaccessreviews' }, delayMs: 2000, times: 1 });
    const res = await request(gw.app).get(path).set('Authorization', `Bearer ${token}`);
    fault.remove();
    assert.equal(res.status, 503);
    const message = (res.body as { message: string }).message;
    // The timeout's DOMException has the legacy code 23, which once read as an HTTP status.
    assert.match(message, /SubjectAccessReview could not be completed \(timed out\)/);
    assert.doesNotMatch(message, /HTTP/);
  });
});
