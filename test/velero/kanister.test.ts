import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { parseAwsCredentials } from '../../src/stores/credentials/aws.ts';
import { parseAzureCredentialFile } from '../../src/stores/credentials/azure.ts';
import { credentialFile, kanisterStoreSpec, keyPairData, KanisterLocationError, locationFromProfile, locationFromSecret } from '../../src/velero/kanister.ts';

const W = 'team-a/loc';

describe('Kanister location Secrets', () => {
  test('s3Compliant with the code spellings; the design document\'s `path` is read as `prefix`', () => {
    const loc = locationFromSecret({ type: 's3Compliant', bucket: 'b', endpoint: 'minio.team-a:9000', region: 'us-east-1', prefix: 'kanister' }, W);
    assert.deepEqual(loc, { type: 's3Compliant', bucket: 'b', endpoint: 'minio.team-a:9000', prefix: 'kanister', region: 'us-east-1', skipSSLVerify: false });
    assert.equal(locationFromSecret({ type: 'gcs', bucket: 'b', path: 'p/q' }, W).prefix, 'p/q');
    assert.equal(locationFromSecret({ type: 'azure', bucket: 'c', skipSSLVerify: Buffer.from('true') }, W).skipSSLVerify, true);
    assert.equal(locationFromSecret({ type: 'azure', bucket: 'c', skipSSLVerify: 'yes' }, W).skipSSLVerify, false, 'only the string "true" turns it on, as in Kanister');
  });

  test('refused by name, never echoing a value: unknown or missing type, filestore, no bucket, s3 without region, s3Compliant without endpoint, two spellings that disagree', () => {
    const cases: [Record<string, string>, RegExp][] = [
      [{ type: 'ftp', bucket: 'b' }, /location type "ftp" is not one of/],
      [{ bucket: 'b' }, /location type "" is not one of/],
      [{ type: 'filestore', claimName: 'pvc' }, /PVC this gateway does not mount/],
      [{ type: 'gcs' }, /no bucket/],
      [{ type: 's3', bucket: 'b' }, /needs a region/],
      [{ type: 's3Compliant', bucket: 'b', region: 'r' }, /needs an endpoint/],
      [{ type: 'gcs', bucket: 'b', prefix: 'one', path: 'two' }, /"prefix" and "path" are both set, differently/],
      [{ type: 'gcs', bucket: 'b\nx' }, /bucket must be one line/],
    ];
    for (const [data, message] of cases) {
      assert.throws(() => locationFromSecret(data, W), (err: Error) => err instanceof KanisterLocationError && message.test(err.message) && err.message.startsWith(W), JSON.stringify(data));
    }
  });
});

describe('Kanister Profiles', () => {
  test('location and skipSSLVerify; a kopia-server Profile is no store', () => {
    const loc = locationFromProfile({ location: { type: 's3Compliant', bucket: 'b', endpoint: 'https://s3.example', region: 'eu-west-1', prefix: 'x' }, skipSSLVerify: true }, W);
    assert.deepEqual(loc, { type: 's3Compliant', bucket: 'b', endpoint: 'https://s3.example', prefix: 'x', region: 'eu-west-1', skipSSLVerify: true });
    assert.throws(() => locationFromProfile({ location: { type: 'kopia' } }, W), /kopia-server Profile/);
    assert.throws(() => locationFromProfile({}, W), /location type "" is not one of/);
  });
});

describe('credential files for the adapters', () => {
  test('AWS: the code spellings and the design document\'s aliases give the same file, read by the AWS parser', () => {
    const loc = locationFromSecret({ type: 's3Compliant', bucket: 'b', endpoint: 'e', region: 'r' }, W);
    const a = credentialFile(loc, { aws_access_key_id: 'AKIA1', aws_secret_access_key: 's/e+c=r' }, W);
    const b = credentialFile(loc, { 'access-key': 'AKIA1', 'secret-acccess-key': 's/e+c=r' }, W);
    assert.deepEqual(a, b);
    const creds = parseAwsCredentials(a, W);
    assert.deepEqual([creds.accessKeyId, creds.secretAccessKey], ['AKIA1', 's/e+c=r']);
    assert.deepEqual(credentialFile(loc, keyPairData('s3Compliant', 'AKIA1', 's/e+c=r'), W), a);
  });

  test('a line break in a value cannot add lines to the credential file (a role, a file path on the gateway)', () => {
    const s3 = locationFromSecret({ type: 's3Compliant', bucket: 'b', endpoint: 'e', region: 'r' }, W);
    for (const data of [
      { aws_access_key_id: 'AKIA1', aws_secret_access_key: 'x\nrole_arn = arn:aws:iam::1:role/admin' },
      { aws_access_key_id: 'AKIA1\r\ncredential_process = /bin/sh', aws_secret_access_key: 'x' },
    ]) {
      assert.throws(() => credentialFile(s3, data, W), (err: Error) => /must be one line/.test(err.message) && !err.message.includes('role/admin') && !err.message.includes('/bin/sh'));
    }
    const azure = locationFromSecret({ type: 'azure', bucket: 'c' }, W);
    assert.throws(() => credentialFile(azure, { azure_storage_account_id: 'acct', azure_storage_key: 'k\nAZURE_CLIENT_CERTIFICATE_PATH=/etc/shadow' }, W), /must be one line/);
    assert.throws(() => credentialFile(s3, { aws_access_key_id: 'A', aws_secret_access_key: 'S', role: 'arn:aws:iam::1:role/r' }, W), /role to assume is not supported/);
    assert.throws(() => credentialFile(s3, { aws_access_key_id: 'A' }, W), /needs aws_access_key_id and aws_secret_access_key/);
  });

  test('Azure: the shared key and the cloud as the Azure parser reads them; GCP: the service account JSON as given', () => {
    const azure = locationFromSecret({ type: 'azure', bucket: 'c' }, W);
    const file = credentialFile(azure, { azure_storage_account_id: 'acct', azure_storage_key: 'a2V5', azure_storage_environment: 'AzureChinaCloud' }, W);
    assert.deepEqual(parseAzureCredentialFile(file, W), { AZURE_STORAGE_ACCOUNT_ACCESS_KEY: 'a2V5', AZURE_CLOUD_NAME: 'AzureChinaCloud' });
    const gcs = locationFromSecret({ type: 'gcs', bucket: 'b' }, W);
    const json = '{"type":"service_account","client_email":"x@y"}';
    assert.equal(Buffer.from(credentialFile(gcs, { gcp_project_id: 'p', 'service-account.json': json }, W)).toString(), json);
    assert.equal(Buffer.from(credentialFile(gcs, keyPairData('gcs', 'p', json), W)).toString(), json);
  });
});

describe('store specs', () => {
  test('s3Compliant: aws with the endpoint (https when no scheme), path style, region; a tenant\'s never borrows the gateway\'s credential', () => {
    const loc = locationFromSecret({ type: 's3Compliant', bucket: 'b', endpoint: 'minio.team-a:9000', region: 'r', prefix: '/kanister/' }, W);
    const cred = credentialFile(loc, { aws_access_key_id: 'A', aws_secret_access_key: 'S' }, W);
    assert.deepEqual(kanisterStoreSpec('team-a/profile/p', loc, cred, {}, true, W), {
      name: 'team-a/profile/p',
      provider: 'aws',
      bucket: 'b',
      prefix: 'kanister',
      config: { region: 'r', s3Url: 'https://minio.team-a:9000', s3ForcePathStyle: 'true' },
      credential: cred,
      allowDefaultCredential: false,
      tenant: true,
    });
  });

  test('azure names its account from the credential; skipSSLVerify becomes insecureSkipTLSVerify', () => {
    const loc = locationFromSecret({ type: 'azure', bucket: 'c', skipSSLVerify: 'true' }, W);
    const data = { azure_storage_account_id: 'acct', azure_storage_key: 'k' };
    const spec = kanisterStoreSpec('velero/loc', loc, credentialFile(loc, data, W), data, false, W);
    assert.deepEqual([spec.provider, spec.bucket, spec.config, spec.tenant], ['azure', 'c', { storageAccount: 'acct', storageAccountKeyEnvVar: 'AZURE_STORAGE_ACCOUNT_ACCESS_KEY', insecureSkipTLSVerify: 'true' }, undefined]);
  });
});
