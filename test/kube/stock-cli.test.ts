/**
 * Issue 8: the stock velero CLI through the gateway. The admission webhook swaps Velero's
 * unreachable store URL for a signed gateway URL; a signed URL works without a token, for that one
 * DownloadRequest, until it expires.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import request from 'supertest';
import { signPath } from '../../src/auth/signed-urls.ts';
import { DEFAULT_REFRESH_MS, DEFAULT_ROTATE_AFTER_MS, SigningKeySource, announceLeadMs } from '../../src/auth/signing-keys.ts';
import { NS, kubeFixture, velero } from '../support/kube-fixture.ts';
import type { KubeFixture } from '../support/kube-fixture.ts';
import { binary } from '../support/http.ts';
import { inProcessGateway } from '../support/in-process.ts';
import type { InProcessGateway } from '../support/in-process.ts';
import { createKubeClients } from '../../src/kube/client.ts';

const STORE_URL = 'http://minio.velero.svc:9000/velero/backups/nightly/nightly-logs.gz?X-Amz-Signature=abc';

function review(object: unknown, operation = 'UPDATE'): Record<string, unknown> {
  return {
    apiVersion: 'admission.k8s.io/v1',
    kind: 'AdmissionReview',
    request: { uid: 'e911857d-c318-11e8-bbad-025000000001', operation, namespace: NS, subResource: 'status', object },
  };
}
const drObject = (name: string, status: Record<string, unknown>) => ({
  ...velero('DownloadRequest', name, { target: { kind: 'BackupLog', name: 'nightly' } }),
  status,
});
const decodePatch = (body: { response: { patch?: string; patchType?: string } }): unknown =>
  body.response.patch ? JSON.parse(Buffer.from(body.response.patch, 'base64').toString()) : undefined;

describe('stock velero CLI support: webhook and signed URLs', () => {
  let fx: KubeFixture;
  let gw: InProcessGateway;
  before(async () => {
    fx = await kubeFixture();
    // The fixture's BSL opts in; a second one does not.
    fx.api.put(velero('BackupStorageLocation', 'default', { provider: 'replicated.com/hostpath', objectStorage: { bucket: 'bsl-bucket', prefix: 'cluster-a' } }));
    const bsl = fx.api.get('velero.io/v1', 'BackupStorageLocation', 'default', NS)!;
    fx.api.put({ ...bsl, metadata: { ...bsl.metadata, annotations: { 'download-server.velero.io/enabled': 'true' } } });
    fx.api.put(velero('BackupStorageLocation', 'private', { provider: 'aws', objectStorage: { bucket: 'b' } }));
    fx.api.put(velero('Backup', 'other', { storageLocation: 'private' }));
    gw = await inProcessGateway(fx.args('--fqdn', 'backups.example.com', '--object-cache-ttl', '300ms'), {}, { kubeServices: true });
  });
  after(async () => {
    await gw?.stop();
    await fx?.close();
  });

  test('webhook: an opted-in request gets its downloadURL replaced by a signed gateway URL', async () => {
    const expiration = new Date(Date.now() + 600_000).toISOString();
    const res = await request(gw.app).post('/admission/downloadrequests').send(review(drObject('dr-log', { phase: 'Processed', downloadURL: STORE_URL, expiration })));
    assert.equal(res.status, 200);
    const body = res.body as { apiVersion: string; kind: string; response: { uid: string; allowed: boolean; patchType?: string; patch?: string } };
    assert.equal(body.kind, 'AdmissionReview');
    assert.equal(body.response.uid, 'e911857d-c318-11e8-bbad-025000000001');
    assert.equal(body.response.allowed, true);
    assert.equal(body.response.patchType, 'JSONPatch');
    const patch = decodePatch(body) as { op: string; path: string; value: string }[];
    assert.equal(patch.length, 1);
    assert.equal(patch[0]!.op, 'replace');
    assert.equal(patch[0]!.path, '/status/downloadURL');
    const url = new URL(patch[0]!.value);
    assert.equal(url.origin, 'https://backups.example.com');
    assert.equal(url.pathname, `/v1/namespaces/${NS}/downloadrequests/dr-log`);
    assert.equal(Number(url.searchParams.get('expires')), Math.floor(Date.parse(expiration) / 1000));
    // The signed URL serves the log with no token at all.
    const got = await binary(request(gw.app).get(`${url.pathname}${url.search}`));
    assert.equal(got.status, 200);
    assert.deepEqual(got.body, fx.files.log);
  });

  test('webhook: a location that does not opt in, a request without downloadURL, or garbage → allowed, no patch', async () => {
    fx.api.put(velero('DownloadRequest', 'dr-other', { target: { kind: 'BackupLog', name: 'other' } }));
    const cases = [
      review({ ...velero('DownloadRequest', 'dr-other', { target: { kind: 'BackupLog', name: 'other' } }), status: { downloadURL: STORE_URL } }),
      review(drObject('dr-log', { phase: 'New' })),
      { hello: 'world' },
      review({ kind: 'Pod', metadata: { name: 'x', namespace: NS } }),
    ];
    for (const c of cases) {
      const res = await request(gw.app).post('/admission/downloadrequests').send(c);
      assert.equal(res.status, 200, JSON.stringify(c));
      assert.equal((res.body as { response: { allowed: boolean } }).response.allowed, true);
      assert.equal(decodePatch(res.body as never), undefined);
    }
    const malformed = await request(gw.app).post('/admission/downloadrequests').set('Content-Type', 'application/json').send('{not json');
    assert.equal(malformed.status, 200);
    assert.equal((malformed.body as { response: { allowed: boolean } }).response.allowed, true);
  });

  test('signatures: expired, altered path, altered expiry, altered signature, wrong key → 403; deleted request → 404', async () => {
    const keys = gw.services!.signingKeys.keys;
    const now = Math.floor(Date.now() / 1000);
    const path = `/v1/namespaces/${NS}/downloadrequests/dr-log`;
    const good = signPath(keys, path, now + 300);
    assert.equal((await request(gw.app).get(good)).status, 200);
    const bad = [
      signPath(keys, path, now - 1),
      good.replace('dr-log', 'dr-restore-log'),
      good.replace(/expires=\d+/, `expires=${now + 3600}`),
      good.replace(/signature=(.)/, (_m, c: string) => `signature=${c === 'A' ? 'B' : 'A'}`),
      signPath({ current: Buffer.alloc(32, 7) }, path, now + 300),
    ];
    for (const url of bad) {
      const res = await request(gw.app).get(url);
      assert.equal(res.status, 403, url);
      assert.equal((res.body as { reason: string }).reason, 'Forbidden');
    }
    fx.api.put(velero('DownloadRequest', 'short-lived', { target: { kind: 'BackupLog', name: 'nightly' } }));
    const url = signPath(keys, `/v1/namespaces/${NS}/downloadrequests/short-lived`, now + 300);
    assert.equal((await request(gw.app).get(url)).status, 200);
    fx.api.remove('velero.io/v1', 'DownloadRequest', 'short-lived', NS);
    await new Promise((r) => setTimeout(r, 500)); // past the object cache
    assert.equal((await request(gw.app).get(url)).status, 404);
  });

  test('key rotation: URLs signed with the previous key stay valid', async () => {
    const clients = createKubeClients({ kubeconfig: fx.kubeconfigFile, qps: 50, burst: 50, timeoutMs: 5_000 });
    const before = gw.services!.signingKeys.keys;
    const url = signPath(before, `/v1/namespaces/${NS}/downloadrequests/dr-log`, Math.floor(Date.now() / 1000) + 300);
    // Another replica rotates the key (its clock has reached the rotation period): it announces the
    // next key, then rotates it in.
    let skew = DEFAULT_ROTATE_AFTER_MS;
    const other = new SigningKeySource(clients, { namespace: NS, now: () => Date.now() + skew });
    await other.refresh();
    skew += announceLeadMs(DEFAULT_REFRESH_MS);
    await other.refresh();
    await gw.services!.signingKeys.refresh();
    const after = gw.services!.signingKeys.keys;
    assert.notDeepEqual(after.current, before.current);
    assert.deepEqual(after.previous, before.current);
    assert.equal((await request(gw.app).get(url)).status, 200);
  });
});
