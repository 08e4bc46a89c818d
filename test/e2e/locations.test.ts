/**
 * End to end, local mode with a --locations-file: the real gateway process streams from the real
 * s3rver over HTTPS (trusted through the location's CA file) to the real curl.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { curl, startGateway } from '../support/processes.ts';
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

describe('a locations file with mistakes', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'vds-loc-bad-'));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  test('every problem is reported at start with exit 2, and neither demo data nor a token is written', async () => {
    const secret = 'Sup3rSecretValueNeverPrinted';
    await writeFile(join(dir, 'creds'), `[default]\naws_access_key_id = AKIA1\naws_secret_access_key = ${secret}\n`);
    const file = join(dir, 'locations.yaml');
    await writeFile(
      file,
      [
        'locations:',
        '  - { name: typo, provider: velero.io/nosuch, bucket: b }',
        '  - { name: badurl, provider: aws, bucket: b, config: { region: r, s3Url: "not a url" }, credentialFile: creds }',
        // A password in the URL must be refused without being echoed.
        `  - { name: userinfo, provider: aws, bucket: b, config: { region: r, s3Url: "https://admin:${secret}@minio.example:9000" }, credentialFile: creds }`,
        '  - { name: noaccount, provider: azure, bucket: velero-container }',
        '  - { name: climb, provider: replicated.com/nfs, bucket: "../../etc" }',
        '  - { name: field, provider: aws, bukket: b }',
        '',
      ].join('\n'),
    );
    const err = await startGateway(['--mode', 'local', '--data-dir', join(dir, 'data'), '--state-dir', join(dir, 'state'), '--locations-file', file]).then(
      async (gw) => {
        await gw.stop();
        return assert.fail('the gateway started with a broken locations file');
      },
      (e: unknown) => e as Error,
    );
    assert.match(err.message, /exited with 2 before listening/);
    assert.match(err.message, /invalid configuration:/);
    for (const expected of [
      /--locations-file \S+locations\.yaml: location "typo": provider "velero\.io\/nosuch" is not supported/,
      /location "badurl": config s3Url must be an http:\/\/ or https:\/\/ URL/,
      /location "userinfo": config s3Url must not contain user information/,
      /location "noaccount": config storageAccount is required/,
      /location "climb": .*\.\./,
      /location "field": unknown field "bukket"/,
      /location "field": "bucket" is required/,
    ]) {
      assert.match(err.message, expected);
    }
    assert.ok(!err.message.includes(secret), 'no credential or URL password in the output');
    assert.ok(!existsSync(join(dir, 'data')), 'no demo data written');
    assert.ok(!existsSync(join(dir, 'state', 'tokens.csv')), 'no token file written');
    assert.ok(!existsSync(join(dir, 'state', 'tls.crt')), 'no certificate written');
  });
});
