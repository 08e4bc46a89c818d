/**
 * End to end, local mode with a --locations-file: the real gateway process streams from the real
 * s3rver over HTTPS (trusted through the location's CA file) to the real curl.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { curl } from '../support/processes.ts';
import type { GatewayProcess } from '../support/processes.ts';
import { startS3rver } from '../support/s3rver.ts';
import type { S3rverInstance } from '../support/s3rver.ts';
import { createTestPki } from '../support/test-ca.ts';
import { startLocalWithS3rver } from '../support/locations-file.ts';

describe('local mode with a locations file', () => {
  let dir: string;
  let s3: S3rverInstance;
  let gw: GatewayProcess;
  let token: string;
  const log = randomBytes(1500);

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'vds-loc-e2e-'));
    const pki = await createTestPki();
    s3 = await startS3rver({ tls: { key: pki.key, cert: pki.cert, ca: pki.caCert } });
    await s3.put('prod/backups/weekly/weekly-logs.gz', log);
    ({ gw, token } = await startLocalWithS3rver(dir, s3, pki.caCert));
  });
  after(async () => {
    await gw?.stop();
    await s3?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  const fetch = (path: string, ...extra: string[]) =>
    curl(['--cacert', join(dir, 'state', 'tls.crt'), '-H', `Authorization: Bearer ${token}`, ...extra, `${gw.url}/v1/namespaces/velero${path}`]);

  test('a backup only the S3 location holds comes from S3', async () => {
    const r = await fetch('/backups/weekly/log', '--fail');
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(r.stdout, log);
  });

  test('the demo backup still comes from the data directory', async () => {
    const r = await fetch('/backups/demo-backup/log', '--fail');
    assert.equal(r.code, 0, r.stderr);
  });

  test('found in no location → 404 naming the locations', async () => {
    const r = await fetch('/backups/nowhere/log');
    const body = JSON.parse(r.stdout.toString()) as { code: number; message: string };
    assert.equal(body.code, 404);
    assert.match(body.message, /in any location \(data-dir, minio\)/);
  });

  test('no credential value reaches the log', () => {
    assert.ok(!gw.output().includes('aws_secret_access_key'));
    assert.ok(gw.logs.some((l) => l.msg === 'store locations'));
  });
});
