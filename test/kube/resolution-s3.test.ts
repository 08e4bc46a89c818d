/**
 * Kubernetes mode resolving BackupStorageLocations on S3 (the real s3rver over HTTPS with a test CA):
 * the credential from the BSL's Secret, the CA from caCertRef or caCert, missing Secrets, and a
 * credential rotated while a download runs.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { request as httpGet } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, test } from 'node:test';
import request from 'supertest';
import { NS, kubeFixture, velero } from '../support/kube-fixture.ts';
import type { KubeFixture } from '../support/kube-fixture.ts';
import { binary } from '../support/http.ts';
import { inProcessGateway } from '../support/in-process.ts';
import type { InProcessGateway } from '../support/in-process.ts';
import { startS3rver } from '../support/s3rver.ts';
import type { S3rverInstance } from '../support/s3rver.ts';
import { createTestPki } from '../support/test-ca.ts';

const b64 = (s: string | Buffer): string => Buffer.from(s).toString('base64');
const ini = (id: string, secret: string): string => `[default]\naws_access_key_id=${id}\naws_secret_access_key=${secret}\n`;

describe('kubernetes mode on S3: BSL credentials and CA bundles from Secrets', () => {
  let fx: KubeFixture;
  let s3: S3rverInstance;
  let gw: InProcessGateway;
  let caPem: string;
  const log = randomBytes(2048);
  const contents = randomBytes(8 * 1024 * 1024);
  const auth = (): Record<string, string> => ({ Authorization: `Bearer ${fx.tokens.alice}` });

  before(async () => {
    const pki = await createTestPki('s3 test CA');
    caPem = pki.caCert;
    s3 = await startS3rver({ tls: { key: pki.key, cert: pki.cert, ca: pki.caCert }, extraKeys: [{ accessKeyId: 'ROTATED', secretAccessKey: 'rotated-secret' }] });
    await s3.put('cluster-b/backups/s3-backup/s3-backup-logs.gz', log);
    await s3.put('cluster-b/backups/s3-backup/s3-backup.tar.gz', contents);
    fx = await kubeFixture();
    const config = { region: 'minio', s3Url: s3.endpoint, s3ForcePathStyle: 'true' };
    const objectStorage = { bucket: s3.bucket, prefix: 'cluster-b' };
    fx.api.put({ apiVersion: 'v1', kind: 'Secret', metadata: { name: 'minio-creds', namespace: NS }, data: { cloud: b64(ini('S3RVER', 'S3RVER')) } });
    fx.api.put({ apiVersion: 'v1', kind: 'Secret', metadata: { name: 'minio-ca', namespace: NS }, data: { 'ca.crt': b64(caPem) } });
    const credential = { name: 'minio-creds', key: 'cloud' };
    fx.api.put(velero('BackupStorageLocation', 'minio', { provider: 'aws', config, credential, objectStorage: { ...objectStorage, caCertRef: { name: 'minio-ca', key: 'ca.crt' } } }));
    fx.api.put(velero('BackupStorageLocation', 'minio-inline-ca', { provider: 'velero.io/aws', config, credential, objectStorage: { ...objectStorage, caCert: b64(caPem) } }));
    fx.api.put(velero('BackupStorageLocation', 'minio-no-ca', { provider: 'aws', config, credential, objectStorage }));
    fx.api.put(velero('BackupStorageLocation', 'minio-missing-secret', { provider: 'aws', config, credential: { name: 'nope', key: 'cloud' }, objectStorage: { ...objectStorage, caCert: b64(caPem) } }));
    for (const [backup, bsl] of [['s3-backup', 'minio'], ['inline', 'minio-inline-ca'], ['no-ca', 'minio-no-ca'], ['missing-secret', 'minio-missing-secret']] as const) {
      fx.api.put(velero('Backup', backup, { storageLocation: bsl }));
    }
    fx.api.put(velero('Restore', 's3-restore', { backupName: 's3-backup' }));
    fx.api.put(velero('DownloadRequest', 's3-dr', { target: { kind: 'BackupContents', name: 's3-backup' } }));
    gw = await inProcessGateway(fx.args('--object-cache-ttl', '200ms'));
  });
  after(async () => {
    gw?.factory.close();
    await s3?.stop();
    await fx?.close();
  });

  test('backup → BSL → Secret credential and caCertRef: the bytes come from S3', async () => {
    const res = await binary(request(gw.app).get(`/v1/namespaces/${NS}/backups/s3-backup/log`).set(auth()));
    assert.equal(res.status, 200, String(res.body));
    assert.deepEqual(res.body, log);
  });

  test('the DownloadRequest route streams its target from S3', async () => {
    const res = await binary(request(gw.app).get(`/v1/namespaces/${NS}/downloadrequests/s3-dr`).set(auth()));
    assert.equal(res.status, 200);
    assert.deepEqual(res.body, contents);
  });

  test('objectStorage.caCert (inline, base64) is trusted too', async () => {
    const res = await request(gw.app).get(`/v1/namespaces/${NS}/backups/inline/log`).set(auth());
    assert.equal(res.status, 404, 'trusted, and the object is simply not under this backup name');
    assert.equal((res.body as { reason: string }).reason, 'NotFound');
  });

  test('without the CA the store is not trusted: 502 saying so', async () => {
    const res = await request(gw.app).get(`/v1/namespaces/${NS}/backups/no-ca/log`).set(auth());
    assert.equal(res.status, 502);
    assert.match((res.body as { message: string }).message, /not trusted/);
  });

  test('a missing credential Secret → 404 naming it', async () => {
    const res = await request(gw.app).get(`/v1/namespaces/${NS}/backups/missing-secret/log`).set(auth());
    assert.equal(res.status, 404);
    assert.match((res.body as { message: string }).message, /secret "nope" not found/);
  });

  test('a credential rotated while a download runs: it finishes, the next request uses the new key', async () => {
    const server = gw.app.listen(0, '127.0.0.1');
    await new Promise((r) => server.once('listening', r));
    try {
      const port = (server.address() as AddressInfo).port;
      const received: Buffer[] = [];
      let resume: (() => void) | undefined;
      const done = new Promise<number>((resolve, reject) => {
        const req = httpGet({ port, host: '127.0.0.1', path: `/v1/namespaces/${NS}/backups/s3-backup/contents`, headers: auth() }, (res) => {
          res.once('data', (c: Buffer) => {
            received.push(c);
            res.pause();
            resume = () => {
              res.on('data', (d: Buffer) => received.push(d));
              res.resume();
            };
          });
          res.on('end', () => resolve(res.statusCode ?? 0));
          res.on('error', reject);
        });
        req.on('error', reject);
        req.end();
      });
      while (!resume) await new Promise((r) => setTimeout(r, 10));
      fx.api.put({ apiVersion: 'v1', kind: 'Secret', metadata: { name: 'minio-creds', namespace: NS }, data: { cloud: b64(ini('ROTATED', 'rotated-secret')) } });
      await new Promise((r) => setTimeout(r, 400)); // past the object cache TTL
      await s3.flush();
      const seen = s3.requests.length;
      const next = await request(gw.app).get(`/v1/namespaces/${NS}/backups/s3-backup/log`).set(auth());
      assert.equal(next.status, 200);
      await s3.flush();
      const keys = new Set(s3.requests.slice(seen).map((r) => r.accessKeyId));
      assert.deepEqual([...keys], ['ROTATED']);
      resume();
      assert.equal(await done, 200);
      assert.deepEqual(Buffer.concat(received), contents);
    } finally {
      server.close();
    }
  });
});
