/**
 * Tenants' store endpoints through the real wiring: a tenant BSL pointing at the cluster's inside
 * (here: loopback, where s3rver runs) or over plain HTTP is refused with 403; an allowlisted one works.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import request from 'supertest';
import { group } from '../support/kube-apiserver/index.ts';
import { kubeFixture, velero } from '../support/kube-fixture.ts';
import type { KubeFixture } from '../support/kube-fixture.ts';
import { inProcessGateway } from '../support/in-process.ts';
import { startS3rver } from '../support/s3rver.ts';
import type { S3rverInstance } from '../support/s3rver.ts';
import { createTestPki } from '../support/test-ca.ts';

const NS = 'team-a';
const b64 = (s: string): string => Buffer.from(s).toString('base64');

describe('tenant endpoints', () => {
  let fx: KubeFixture;
  let s3: S3rverInstance;
  let token: string;
  before(async () => {
    const pki = await createTestPki();
    s3 = await startS3rver({ tls: { key: pki.key, cert: pki.cert, ca: pki.caCert } });
    await s3.put('backups/b1/b1-logs.gz', Buffer.from('tenant log'));
    fx = await kubeFixture();
    fx.api.put({ apiVersion: 'v1', kind: 'Secret', metadata: { name: 'creds', namespace: NS }, data: { cloud: b64('[default]\naws_access_key_id=S3RVER\naws_secret_access_key=S3RVER\n') } });
    const bsl = (name: string, s3Url: string) =>
      velero('BackupStorageLocation', name, { provider: 'aws', config: { region: 'x', s3Url, s3ForcePathStyle: 'true' }, credential: { name: 'creds', key: 'cloud' }, objectStorage: { bucket: s3.bucket, caCert: b64(pki.caCert) } }, NS);
    fx.api.put(bsl('loopback', s3.endpoint));
    fx.api.put(bsl('metadata', 'https://169.254.169.254'));
    fx.api.put(bsl('plain', s3.endpoint.replace('https:', 'http:')));
    for (const name of ['loopback', 'metadata', 'plain']) fx.api.put(velero('Backup', name === 'loopback' ? 'b1' : `b-${name}`, { storageLocation: name }, NS));
    token = fx.api.tokens.user('tenant', ['team-a-members']);
    fx.api.rbac.grant(group('team-a-members'), [{ apiGroups: ['velero.io'], resources: ['backups/log'], verbs: ['get'] }], NS);
  });
  after(async () => {
    await s3?.stop();
    await fx?.close();
  });

  const get = (app: Parameters<typeof request>[0], backup: string) => request(app).get(`/v1/namespaces/${NS}/backups/${backup}/log`).set('Authorization', `Bearer ${token}`);

  test('loopback, the metadata address and plain HTTP are refused with 403 and a clear reason', async () => {
    const gw = await inProcessGateway(fx.args('--watch-namespaces', NS));
    for (const [backup, reason] of [['b1', /loopback/], ['b-metadata', /metadata|link-local/], ['b-plain', /HTTPS|http:/]] as const) {
      const res = await get(gw.app, backup);
      assert.equal(res.status, 403, `${backup}: ${res.text}`);
      assert.match((res.body as { message: string }).message, reason);
    }
    await gw.stop();
  });

  test('an allowlisted endpoint works', async () => {
    const gw = await inProcessGateway(fx.args('--watch-namespaces', NS, '--tenant-endpoint-allow', '127.0.0.1/32'));
    const res = await get(gw.app, 'b1');
    assert.equal(res.status, 200, res.text);
    await gw.stop();
  });
});
