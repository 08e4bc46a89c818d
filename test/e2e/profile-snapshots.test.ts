/**
 * Kopia snapshots under a Kanister Profile, end to end: the real gateway process in kubernetes mode
 * (against the API test double with Kanister's CRD), a Profile with an s3Compliant location on s3rver
 * over HTTPS, its root-path and password-Secret annotations, a repository the real kopia made as
 * Kanister does (global compression s2-default) under `<prefix>/<root path>/`, and the real curl.
 * It proves the pieces the unit tests hold apart fit: the Kubernetes Profile resolver, the repository
 * step, the pool and the volume senders, authorized as `profiles/snapshots` and nothing else.
 *
 * kopia comes from `npm run tools`; without it these tests fail (never skip).
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { KOPIA_PASSWORD_KEY, KOPIA_PASSWORD_SECRET_TYPE, PASSWORD_SECRET_ANNOTATION, ROOT_PATH_ANNOTATION } from '../../src/velero/kanister-repository.ts';
import { kanisterProfile, keyPairCredential, secretOf } from '../support/kanister.ts';
import { group } from '../support/kube-apiserver/index.ts';
import { kubeFixture } from '../support/kube-fixture.ts';
import type { KubeFixture } from '../support/kube-fixture.ts';
import { KopiaCli } from '../support/kopia-cli.ts';
import { readShardedBlobs } from '../support/kopia-layout.ts';
import { curl, startGateway } from '../support/processes.ts';
import type { GatewayProcess } from '../support/processes.ts';
import { S3RVER_ACCESS_KEY_ID, S3RVER_SECRET_ACCESS_KEY, startS3rver } from '../support/s3rver.ts';
import type { S3rverInstance } from '../support/s3rver.ts';
import { untar } from '../support/tar.ts';
import { createTestPki } from '../support/test-ca.ts';

const NS = 'team-a';
const PREFIX = 'kanister/app';
const ROOT_PATH = 'repo/monitoring';
const PASSWORD = 'kanister-e2e-passw0rd';
const FILES: Record<string, Buffer> = {
  'config/app.yaml': Buffer.from('replicas: 3\n'),
  'data/blob.bin': randomBytes(2 * 1024 * 1024 + 17),
};

describe('Kopia snapshots under a Kanister Profile, through the real process and curl', () => {
  const stop = new AbortController();
  let base = '';
  let s3: S3rverInstance;
  let fx: KubeFixture;
  let proc: GatewayProcess;
  let snapshotID = '';
  const tokens = { reader: '', objectsOnly: '' };
  let auth: (token: string) => string[];

  before(async () => {
    base = await mkdtemp(join(tmpdir(), 'vds-profile-snapshots-e2e-'));
    const src = join(base, 'src');
    for (const [rel, data] of Object.entries(FILES)) {
      await mkdir(join(src, rel, '..'), { recursive: true });
      await writeFile(join(src, rel), data);
    }
    const cli = new KopiaCli({ work: join(base, 'client'), password: PASSWORD, signal: stop.signal });
    const repoDir = join(base, 'repo');
    await cli.createFilesystem(repoDir);
    await cli.run('policy', 'set', '--global', '--compression=s2-default');
    snapshotID = await cli.snapshot(src);

    const pki = await createTestPki('vds kanister snapshots CA');
    [s3, fx] = await Promise.all([
      startS3rver({ tls: { key: pki.key, cert: pki.cert, ca: pki.caCert } }),
      kubeFixture({ kanister: true, namespaces: ['default', 'kube-system', 'velero', NS] }),
    ]);
    // As Kanister lays a repository out in a bucket: <prefix>/<root path>/<blob id>.
    const { blobs } = await readShardedBlobs(repoDir);
    for (const [id, bytes] of blobs) await s3.put(`${PREFIX}/${ROOT_PATH}/${id}`, bytes);

    const api = fx.api;
    api.put(secretOf(NS, 's3-keys', { aws_access_key_id: S3RVER_ACCESS_KEY_ID, aws_secret_access_key: S3RVER_SECRET_ACCESS_KEY }));
    api.put(secretOf(NS, 'repo-password', { [KOPIA_PASSWORD_KEY]: PASSWORD }, KOPIA_PASSWORD_SECRET_TYPE));
    api.put(
      kanisterProfile(
        NS,
        'monitoring',
        {
          location: { type: 's3Compliant', bucket: s3.bucket, endpoint: s3.endpoint, region: 'us-east-1', prefix: PREFIX },
          credential: keyPairCredential('s3-keys', 'aws_access_key_id', 'aws_secret_access_key'),
        },
        { [ROOT_PATH_ANNOTATION]: ROOT_PATH, [PASSWORD_SECRET_ANNOTATION]: 'repo-password' },
      ),
    );
    tokens.reader = api.tokens.user('snapshot-reader', ['team-a-snapshots']);
    tokens.objectsOnly = api.tokens.user('objects-reader', ['team-a-objects']);
    api.rbac.grant(group('team-a-snapshots'), [{ apiGroups: ['cr.kanister.io'], resources: ['profiles/snapshots'], verbs: ['get'] }], NS);
    api.rbac.grant(group('team-a-objects'), [{ apiGroups: ['cr.kanister.io'], resources: ['profiles/objects'], verbs: ['get'] }], NS);

    const caFile = join(base, 'stores-ca.pem');
    await writeFile(caFile, pki.caCert);
    proc = await startGateway(fx.args('--watch-namespaces', NS, '--tenant-endpoint-allow', '127.0.0.1/32', '--ca-bundle', caFile, '--tls-extra-sans', '127.0.0.1,localhost'));
    const cacert = await fx.caFile();
    auth = (token) => ['--cacert', cacert, '-H', `Authorization: Bearer ${token}`];
  }, { timeout: 5 * 60_000 });

  after(async () => {
    stop.abort(new Error('the tests are over'));
    if (proc) assert.equal(await proc.stop(), 0);
    await s3?.stop();
    await fx?.close();
    if (base) await rm(base, { recursive: true, force: true });
  });

  const url = (rest: string, id = snapshotID): string => `${proc.url}/v1/namespaces/${NS}/profiles/monitoring/snapshots/${id}/${rest}`;

  test('a file, a range of it, a directory and an archive come out of the snapshot', async () => {
    const whole = await curl([...auth(tokens.reader), '--fail', url('files/data/blob.bin')]);
    assert.equal(whole.code, 0, whole.stderr);
    assert.deepEqual(whole.stdout, FILES['data/blob.bin']);

    const range = await curl([...auth(tokens.reader), '--fail', '-r', '1048570-1048589', url('files/data/blob.bin')]);
    assert.deepEqual(range.stdout, FILES['data/blob.bin']!.subarray(1048570, 1048590));

    const dir = await curl([...auth(tokens.reader), '--fail', url('files/')]);
    const listing = JSON.parse(dir.stdout.toString()) as { kind: string; entries: { name: string; type: string }[] };
    assert.equal(listing.kind, 'Directory');
    assert.deepEqual(listing.entries.map((e) => `${e.name}:${e.type}`), ['config:dir', 'data:dir']);

    const tar = await curl([...auth(tokens.reader), '--fail', url('archive/config')]);
    const entries = await untar(tar.stdout);
    const name = [...entries.keys()].find((n) => n.endsWith('app.yaml'));
    assert.ok(name, `the archive holds app.yaml (${[...entries.keys()].join(', ')})`);
    assert.deepEqual(entries.get(name)?.data, FILES['config/app.yaml']);
  });

  test('profiles/objects does not grant snapshots; an unknown snapshot is 404, a malformed id 400', async () => {
    const code = async (token: string, u: string): Promise<string> => (await curl([...auth(token), '-o', '/dev/null', '-w', '%{http_code}', u])).stdout.toString();
    assert.equal(await code(tokens.objectsOnly, url('files/config/app.yaml')), '403');
    assert.equal(await code(tokens.reader, url('files/config/app.yaml', 'f'.repeat(32))), '404');
    assert.equal(await code(tokens.reader, url('files/config/app.yaml', 'not-an-id')), '400');
  });
});
