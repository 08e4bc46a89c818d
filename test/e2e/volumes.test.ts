/**
 * End to end, volume data: the real gateway process in local mode, the real curl, and real Kopia
 * repositories: the demo's (made by Velero's kopia, in the data directory) and a committed real-kopia
 * fixture uploaded into the real s3rver behind a --locations-file, read over HTTPS with the
 * location's own CA and credential.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { gunzipSync, gzipSync } from 'node:zlib';
import { untar } from '../support/tar.ts';
import { DEMO_VOLUME } from '../../src/velero/demo.ts';
import { FIXTURES, loadManifest, PASSWORD } from '../kopia/fixture-support.ts';
import type { Manifest } from '../kopia/fixture-support.ts';
import { curl, startGateway } from '../support/processes.ts';
import type { GatewayProcess } from '../support/processes.ts';
import { startS3rver } from '../support/s3rver.ts';
import type { S3rverInstance } from '../support/s3rver.ts';
import { createTestPki } from '../support/test-ca.ts';
import { startLocalWithS3rver } from '../support/locations-file.ts';

const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');
const DEMO = `${DEMO_VOLUME.namespace}:${DEMO_VOLUME.pod}:${DEMO_VOLUME.volume}`;

/** A PodVolumeBackup as Velero writes it into `<b>-podvolumebackups.json.gz`. */
function podVolumeBackup(backup: string, ns: string, pod: string, volume: string, snapshotID: string): Record<string, unknown> {
  return {
    apiVersion: 'velero.io/v1',
    kind: 'PodVolumeBackup',
    metadata: { name: `${backup}-${pod}`, namespace: 'velero', labels: { 'velero.io/backup-name': backup } },
    spec: { backupStorageLocation: 'minio', pod: { kind: 'Pod', namespace: ns, name: pod }, volume, uploaderType: 'kopia' },
    status: { phase: 'Completed', snapshotID, progress: { totalBytes: 1, bytesDone: 1 } },
  };
}

describe('volume data end to end (local mode, demo and s3rver)', () => {
  let dir: string;
  let s3: S3rverInstance;
  let gw: GatewayProcess;
  let token: string;
  let manifest: Manifest;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'vds-vol-e2e-'));
    manifest = await loadManifest('velero-chacha20');
    const pki = await createTestPki();
    s3 = await startS3rver({ tls: { key: pki.key, cert: pki.cert, ca: pki.caCert } });
    // The fixture's blobs as Velero leaves them in a bucket: prod/kopia/ns1/<blob id>.
    const repo = join(FIXTURES, 'velero-chacha20', 'repo');
    for (const file of await readdir(repo)) {
      if (file.endsWith('.f')) await s3.put(`prod/kopia/ns1/${file.slice(0, -2)}`, await readFile(join(repo, file)));
    }
    const snap = manifest.snapshots[0]!;
    await s3.put('prod/backups/weekly/velero-backup.json', Buffer.from(JSON.stringify({ apiVersion: 'velero.io/v1', kind: 'Backup', metadata: { name: 'weekly', namespace: 'velero' }, spec: { storageLocation: 'minio' } })));
    await s3.put('prod/backups/weekly/weekly-podvolumebackups.json.gz', gzipSync(JSON.stringify([podVolumeBackup('weekly', 'ns1', 'db-0', 'data', snap.id)])));
    ({ gw, token } = await startLocalWithS3rver(dir, s3, pki.caCert));
  });
  after(async () => {
    await gw?.stop();
    await s3?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  const get = (path: string, ...extra: string[]) =>
    curl(['--cacert', join(dir, 'state', 'tls.crt'), '-H', `Authorization: Bearer ${token}`, ...extra, `${gw.url}/v1/namespaces/velero/backups${path}`]);
  const json = <T>(b: Buffer): T => JSON.parse(b.toString()) as T;

  test("the README's demo commands: the volumes, the root, one file, an archive", async () => {
    const vols = await get('/demo-backup/volumes', '--fail');
    assert.equal(vols.code, 0, vols.stderr);
    const list = json<{ volumes: { id: string; uploader: string }[] }>(vols.stdout);
    assert.deepEqual(list.volumes.map((v) => [v.id, v.uploader]), [[DEMO, 'kopia']]);
    const root = await get(`/demo-backup/volumes/${DEMO}/files/`, '--fail');
    assert.equal(root.code, 0, root.stderr);
    assert.deepEqual(json<{ entries: { name: string }[] }>(root.stdout).entries.map((e) => e.name), ['about', 'assets', 'index.html', 'latest.log', 'logs', 'uploads']);
    const page = await get(`/demo-backup/volumes/${DEMO}/files/index.html`, '--fail');
    assert.match(page.stdout.toString(), /Hello from a Velero volume backup/);
    const range = await get(`/demo-backup/volumes/${DEMO}/files/logs/access.log`, '--fail', '-r', '100000-100099');
    const whole = await get(`/demo-backup/volumes/${DEMO}/files/logs/access.log`, '--fail');
    assert.deepEqual(range.stdout, whole.stdout.subarray(100000, 100100));
    const archive = await get(`/demo-backup/volumes/${DEMO}/archive/logs?format=tar.gz`, '--fail');
    assert.equal(archive.code, 0, archive.stderr);
    const entries = await untar(gunzipSync(archive.stdout));
    assert.deepEqual(entries.get('logs/access.log')?.data, whole.stdout);
  });

  test('a volume whose repository lives in S3: every file of the snapshot, byte for byte, over HTTPS with the location\'s CA', async () => {
    const snap = manifest.snapshots[0]!;
    const listed = await get('/weekly/volumes');
    const vols = json<{ volumes: { id: string; snapshotID: string }[] }>(listed.stdout);
    assert.ok(vols.volumes, listed.stdout.toString());
    assert.deepEqual(vols.volumes.map((v) => [v.id, v.snapshotID]), [['ns1:db-0:data', snap.id]]);
    for (const e of snap.entries.filter((x) => x.type === 'f')) {
      const r = await get(`/weekly/volumes/ns1:db-0:data/files/${e.path.split('/').map(encodeURIComponent).join('/')}`, '--fail');
      assert.equal(r.code, 0, `${e.path}: ${r.stderr}`);
      assert.equal(sha(r.stdout), e.sha256, e.path);
    }
    // Every request ran on one cached client, so the repository was opened once: its format blob and
    // index blobs read once for all these files, not once per request.
    await s3.flush();
    const reads = (blob: RegExp) => s3.requests.filter((q) => q.method === 'GET' && blob.test(q.url.split('?')[0]!)).length;
    assert.equal(reads(/\/prod\/kopia\/ns1\/kopia\.repository$/), 1, 'the format blob read once');
    const indexReads = s3.requests.filter((q) => q.method === 'GET' && /\/prod\/kopia\/ns1\/x[^/?]*(\?|$)/.test(q.url)).map((q) => q.url.split('?')[0]);
    assert.ok(indexReads.length > 0);
    assert.equal(new Set(indexReads).size, indexReads.length, 'each index blob read once');
  });

  test('curl sees a 400 for a path that climbs, a 404 for a path that is not there, a 401 without a token', async () => {
    const climb = await get(`/demo-backup/volumes/${DEMO}/files/logs/%2e%2e/%2e%2e/etc/passwd`);
    assert.equal(json<{ code: number }>(climb.stdout).code, 400);
    const missing = await get(`/demo-backup/volumes/${DEMO}/files/no-such-file`);
    assert.equal(json<{ code: number }>(missing.stdout).code, 404);
    const anon = await curl(['--cacert', join(dir, 'state', 'tls.crt'), `${gw.url}/v1/namespaces/velero/backups/demo-backup/volumes`]);
    assert.equal(json<{ code: number }>(anon.stdout).code, 401);
  });

  test('neither the repository password nor a credential reaches the log', () => {
    assert.ok(!gw.output().includes(PASSWORD));
    assert.ok(!gw.output().includes('aws_secret_access_key'));
  });
});

describe('volume data with a wrong --repository-password-file', () => {
  let dir: string;
  let gw: GatewayProcess;
  const wrong = 'wrong-password-b41c7e';

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'vds-vol-pw-'));
    await writeFile(join(dir, 'password'), `${wrong}\n`);
    gw = await startGateway(['--mode', 'local', '--data-dir', join(dir, 'data'), '--state-dir', join(dir, 'state'), '--repository-password-file', join(dir, 'password')]);
  });
  after(async () => {
    await gw?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  test('is a 502 that says the password is wrong, and shows it nowhere', async () => {
    const token = (await readFile(join(dir, 'state', 'tokens.csv'), 'utf8')).split(',')[0]!;
    const r = await curl(['--cacert', join(dir, 'state', 'tls.crt'), '-H', `Authorization: Bearer ${token}`, `${gw.url}/v1/namespaces/velero/backups/demo-backup/volumes/${DEMO}/files/index.html`]);
    const body = JSON.parse(r.stdout.toString()) as { code: number; message: string };
    assert.equal(body.code, 502);
    assert.match(body.message, /password is wrong/);
    assert.ok(!r.stdout.toString().includes(wrong));
    assert.ok(!gw.output().includes(wrong));
  });
});
