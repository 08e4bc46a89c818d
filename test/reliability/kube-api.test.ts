/**
 * Reliability in kubernetes mode: the Kubernetes API (test double, test/support/kube-apiserver, whose
 * faults a real API server cannot be made to show on cue) answering 429 with Retry-After, or slow past
 * the call timeout. Every failed review or read is a 503 with Retry-After, each time (errors are never
 * cached), and requests succeed again once the API does. test/kube/reviews.test.ts covers 500/503 and
 * slow reviews in-process; this adds 429 (reviews and object reads) in-process, and the same failures
 * against the real process. The API server down and back is test/e2e/kubernetes-watches.test.ts, with
 * a real one.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import request from 'supertest';
import { BACKUP, NS, kubeFixture } from '../support/kube-fixture.ts';
import type { KubeFixture } from '../support/kube-fixture.ts';
import { inProcessGateway } from '../support/in-process.ts';
import type { InProcessGateway } from '../support/in-process.ts';
import { curl, startGateway } from '../support/processes.ts';
import type { GatewayProcess } from '../support/processes.ts';

const path = `/v1/namespaces/${NS}/backups/${BACKUP}/log`;

describe('kubernetes mode in-process: the API server answers 429', () => {
  let fx: KubeFixture;
  let gw: InProcessGateway;
  before(async () => {
    fx = await kubeFixture();
    // A short object cache so that each request reads the Backup again.
    gw = await inProcessGateway(fx.args('--object-cache-ttl', '1ms'));
  });
  after(async () => {
    await gw?.stop();
    await fx?.close();
  });

  for (const resource of ['tokenreviews', 'subjectaccessreviews', 'backups'] as const) {
    test(`429 on ${resource}: 503 with the API server's Retry-After every time, then served`, async () => {
      // A new user per case: cached decisions of an earlier case would skip the review.
      const token = fx.api.tokens.user(`user-429-${resource}`, ['backup-readers']);
      const fault = fx.api.faults.add({ match: { resource }, status: 429, retryAfterSeconds: 3 });
      try {
        for (let i = 0; i < 3; i++) {
          const res = await request(gw.app).get(path).set('Authorization', `Bearer ${token}`);
          assert.equal(res.status, 503, res.text);
          assert.equal(res.headers['retry-after'], '3');
          assert.equal((res.body as { reason: string }).reason, 'ServiceUnavailable');
          assert.ok(!res.text.includes(token));
        }
        assert.ok(fault.hits >= 3, `the fault applied ${fault.hits} times: failures must not be cached`);
      } finally {
        fault.remove();
      }
      const ok = await request(gw.app).get(path).set('Authorization', `Bearer ${token}`);
      assert.equal(ok.status, 200, ok.text);
    });
  }
});

describe('kubernetes mode, real process: API server 429, slow', () => {
  let fx: KubeFixture;
  let gw: GatewayProcess;
  let cacert: string;
  before(async () => {
    fx = await kubeFixture();
    gw = await startGateway(fx.args('--kube-api-timeout', '1s', '--object-cache-ttl', '1ms'));
    cacert = await fx.caFile();
  });
  after(async () => {
    await gw?.stop();
    await fx?.close();
  });

  /** One download as curl sees it: status, Retry-After, body. */
  const get = async (token: string): Promise<{ status: number; retryAfter: string | undefined; body: string; ms: number }> => {
    const started = Date.now();
    const r = await curl(['--cacert', cacert, '-H', `Authorization: Bearer ${token}`, '-D', '-', '--max-time', '10', `${gw.url}${path}`]);
    const text = r.stdout.toString('latin1');
    return {
      status: Number(/^HTTP\/1\.1 (\d{3})/.exec(text)?.[1]),
      retryAfter: /^retry-after:\s*(\S+)/im.exec(text)?.[1],
      body: text.slice(text.indexOf('\r\n\r\n') + 4),
      ms: Date.now() - started,
    };
  };

  test('429 on TokenReview: 503 with Retry-After each time, then 200', async () => {
    const token = fx.api.tokens.user('proc-429', ['backup-readers']);
    const fault = fx.api.faults.add({ match: { resource: 'tokenreviews' }, status: 429, retryAfterSeconds: 4 });
    try {
      for (let i = 0; i < 3; i++) {
        const r = await get(token);
        assert.equal(r.status, 503, r.body);
        assert.equal(r.retryAfter, '4');
      }
    } finally {
      fault.remove();
    }
    assert.equal((await get(token)).status, 200);
  });

  test('429 on the Backup read: 503 with Retry-After, then 200', async () => {
    const token = fx.api.tokens.user('proc-429-read', ['backup-readers']);
    assert.equal((await get(token)).status, 200);
    const fault = fx.api.faults.add({ match: { resource: 'backups', verb: 'get' }, status: 429, retryAfterSeconds: 2 });
    try {
      for (let i = 0; i < 2; i++) {
        const r = await get(token);
        assert.equal(r.status, 503, r.body);
        assert.equal(r.retryAfter, '2');
      }
    } finally {
      fault.remove();
    }
    assert.equal((await get(token)).status, 200);
  });

  test('a slow SubjectAccessReview: 503 at the call timeout, not after the delay', async () => {
    const token = fx.api.tokens.user('proc-slow', ['backup-readers']);
    const fault = fx.api.faults.add({ match: { resource: 'subjectaccessreviews' }, delayMs: 4000, times: 1 });
    const r = await get(token);
    fault.remove();
    assert.equal(r.status, 503, r.body);
    assert.ok(r.retryAfter);
    assert.ok(r.ms < 3500, `answered after ${r.ms} ms`);
    assert.equal((await get(token)).status, 200);
  });
});
