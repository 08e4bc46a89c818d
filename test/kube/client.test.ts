/**
 * The Kubernetes client's error helpers against the API test double and the real client library:
 * only an answer from the API server has an HTTP status; a timeout, an abort or a refused connection
 * is described as what it is.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { createKubeClients, describeApiFailure, statusOf } from '../../src/kube/client.ts';
import type { KubeClients } from '../../src/kube/client.ts';
import { startKubeApiServer } from '../support/kube-apiserver/index.ts';
import type { KubeApiServer } from '../support/kube-apiserver/index.ts';

describe('statusOf and describeApiFailure', () => {
  let api: KubeApiServer;
  let dir: string;
  let kube: KubeClients;
  before(async () => {
    api = await startKubeApiServer({ velero: false });
    dir = await mkdtemp(join(tmpdir(), 'vds-client-'));
    const file = await api.writeKubeconfig(join(dir, 'kubeconfig'), api.kubeconfig(api.adminToken));
    kube = createKubeClients({ kubeconfig: file, qps: 1000, burst: 1000, timeoutMs: 200 });
  });
  after(async () => {
    await api.close();
    await rm(dir, { recursive: true, force: true });
  });

  const readSecret = (signal = new AbortController().signal): Promise<unknown> =>
    kube.call(signal, (o) => kube.core.readNamespacedSecret({ namespace: 'velero', name: 'missing' }, o)).then(
      () => assert.fail('the read succeeded'),
      (err: unknown) => err,
    );

  test('an API server answer carries its status', async () => {
    const err = await readSecret();
    assert.equal(statusOf(err), 404);
    assert.equal(describeApiFailure(err), 'HTTP 404');
    const fault = api.faults.add({ match: { resource: 'secrets' }, status: 503, times: 1 });
    const unavailable = await readSecret();
    fault.remove();
    assert.equal(statusOf(unavailable), 503);
  });

  test('a call that times out has no status (its DOMException code 23 is not one) and reads "timed out"', async () => {
    const fault = api.faults.add({ match: { resource: 'secrets' }, delayMs: 1000, times: 1 });
    const err = await readSecret();
    fault.remove();
    assert.equal((err as { code?: unknown }).code, 23, 'the timeout is the DOMException this test is about');
    assert.equal(statusOf(err), undefined);
    assert.equal(describeApiFailure(err), 'timed out');
  });

  test('an aborted call reads "aborted"; a refused connection names the socket error', async () => {
    const ac = new AbortController();
    const fault = api.faults.add({ match: { resource: 'secrets' }, delayMs: 1000, times: 1 });
    setTimeout(() => ac.abort(), 20);
    const aborted = await readSecret(ac.signal);
    fault.remove();
    assert.equal(statusOf(aborted), undefined);
    assert.equal(describeApiFailure(aborted), 'aborted');

    await api.stop();
    try {
      const refused = await readSecret();
      assert.equal(statusOf(refused), undefined);
      assert.equal(describeApiFailure(refused), 'ECONNREFUSED');
    } finally {
      await api.start();
    }
  });

  test('objects that merely look like errors with a code have no status', () => {
    assert.equal(statusOf(new DOMException('The operation was aborted due to timeout', 'TimeoutError')), undefined);
    assert.equal(statusOf({ code: 404 }), undefined);
    assert.equal(statusOf(Object.assign(new Error('x'), { code: 409 })), undefined);
    assert.equal(statusOf(undefined), undefined);
    assert.equal(statusOf(null), undefined);
  });
});
