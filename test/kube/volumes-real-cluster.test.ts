/**
 * A backup's volumes in Kubernetes mode against the real kube-apiserver, with Velero's own CRDs
 * (PodVolumeBackup velero.io/v1, DataUpload velero.io/v2alpha1), read as a service account holding
 * exactly the rights the report lists for the chart (so a missing grant fails here): labelled lists
 * (the label value hashed for a long backup name, as Velero writes it), duplicates, the files in the
 * store when the objects are gone, tenancy (a tenant's backup resolves to its own location and
 * credential; a look-alike object in another namespace is never listed), the repository password.
 */
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { createKubeClients } from '../../src/kube/client.ts';
import type { KubeClients } from '../../src/kube/client.ts';
import { CachedObjectReader, TooManyObjectsError } from '../../src/kube/objects.ts';
import type { ObjectReader } from '../../src/kube/objects.ts';
import { DefaultStoreFactory, FILESYSTEM_PROVIDERS } from '../../src/stores/factory.ts';
import { NotFoundError, RepositoryPasswordUnavailableError, UnsupportedVolumeError, VolumeNotReadyError } from '../../src/velero/errors.ts';
import { KubeResolver, KubeVolumeResolver, REPOSITORY_SECRET } from '../../src/velero/kube-resolver.ts';
import { backupNameLabelValue, backupSelector } from '../../src/velero/volumes-parse.ts';
import { volumeFileKeys } from '../../src/velero/volumes-files.ts';
import { missingTools, startRealCluster } from '../support/real-cluster.ts';
import type { RealCluster } from '../support/real-cluster.ts';
import { eventually, grant, velero } from '../support/real-velero.ts';
import { dataMoverInfo, dataUpload, gzJson, podVolumeBackup } from '../support/velero-volumes.ts';

const OWN = 'velero';
const TENANT = 'team-a';
const OTHER = 'team-b';
const SA = 'vds-volumes';
const PASSWORD = 'static-passw0rd-of-the-test';
const S1 = '0123456789abcdef0123456789abcdef';
const S2 = 'fedcba9876543210fedcba9876543210';
const S3 = 'aaaaaaaabbbbbbbbccccccccdddddddd';
const LONG = 'a-backup-whose-name-is-longer-than-a-label-value-may-be-in-kubernetes';
const b64 = (s: string): string => Buffer.from(s).toString('base64');

/** The reads the volume resolver makes, as the chart must grant them (and the BSL/Backup reads every download makes). */
function volumeReaderRights(): object[] {
  const sa = { kind: 'ServiceAccount' as const, name: SA, namespace: OWN };
  const perNamespace = (ns: string, secrets: string[]): object[] =>
    grant(
      'vds-volumes',
      [
        { apiGroups: ['velero.io'], resources: ['backups', 'backupstoragelocations'], verbs: ['get'] },
        { apiGroups: ['velero.io'], resources: ['podvolumebackups', 'datauploads'], verbs: ['list'] },
        { apiGroups: [''], resources: ['secrets'], resourceNames: secrets, verbs: ['get'] },
      ],
      [sa],
      ns,
    );
  return [...perNamespace(OWN, [REPOSITORY_SECRET.name]), ...perNamespace(TENANT, ['creds']), ...perNamespace(OTHER, [])];
}

describe('volumes of a backup against the real API server', { skip: missingTools('kube-apiserver', 'etcd') }, () => {
  let k: RealCluster;
  let dir: string;
  let kube: KubeClients;
  let calls = 0;
  let objects: CachedObjectReader;
  let locations: KubeResolver;
  let volumes: KubeVolumeResolver;
  const signal = new AbortController().signal;
  const put = async (bucket: string, key: string, bytes: Buffer): Promise<void> => {
    const path = join(dir, bucket, key);
    await mkdir(dirname(path), { recursive: true });
    await writeFile(path, bytes);
  };

  before(async () => {
    k = await startRealCluster();
    dir = await mkdtemp(join(tmpdir(), 'vds-kube-volumes-'));
    await eventually('datauploads.velero.io served in v2alpha1', async () => {
      const r = await k.rest<{ resources?: { name: string }[] }>('GET', '/apis/velero.io/v2alpha1');
      return r.body.resources?.some((x) => x.name === 'datauploads');
    });
    for (const ns of [TENANT, OTHER]) await k.namespace(ns);
    const token = await k.serviceAccountToken(OWN, SA);
    await k.apply(...volumeReaderRights());
    const inner = createKubeClients({ kubeconfig: await k.kubeconfig(token, 'volumes'), qps: 1000, burst: 1000, timeoutMs: 10_000 });
    // Every API call the resolver makes, counted.
    kube = { ...inner, call: (s, c, b) => (calls++, inner.call(s, c, b)) };
    objects = new CachedObjectReader(kube);
    locations = new KubeResolver(objects, {
      serves: (ns) => [OWN, TENANT, OTHER].includes(ns),
      ownNamespace: OWN,
      isFilesystemProvider: (p) => FILESYSTEM_PROVIDERS.has(p),
      tenantFilesystemAllow: new Map([[TENANT, new Set(['bucket-team-a'])]]),
    });
    volumes = new KubeVolumeResolver(locations, objects, new DefaultStoreFactory({ fsRoot: dir }), { ownNamespace: OWN });

    await k.apply(
      { apiVersion: 'v1', kind: 'Secret', metadata: { name: REPOSITORY_SECRET.name, namespace: OWN }, data: { [REPOSITORY_SECRET.key]: b64(PASSWORD) } },
      velero('BackupStorageLocation', 'default', { provider: 'filesystem', objectStorage: { bucket: 'main', prefix: 'velero' } }),
      velero('Backup', 'nightly', { storageLocation: 'default' }),
      velero('Backup', LONG, { storageLocation: 'default' }),
      velero('Backup', 'gone', { storageLocation: 'default' }),
      // nightly: a retried PodVolumeBackup (failed, then completed), a restic one, a data-mover upload still running.
      podVolumeBackup({ name: 'nightly-a', backup: 'nightly', podNamespace: 'app', pod: 'web-0', volume: 'data', phase: 'Failed', end: '2026-12-01T03:05:00Z' }),
      podVolumeBackup({ name: 'nightly-b', backup: 'nightly', podNamespace: 'app', pod: 'web-0', volume: 'data', snapshotID: S1, end: '2026-12-01T03:04:00Z' }),
      podVolumeBackup({ name: 'nightly-c', backup: 'nightly', podNamespace: 'app', pod: 'web-0', volume: 'cache', uploaderType: 'restic', snapshotID: 'abcdef' }),
      dataUpload({ name: 'nightly-d', backup: 'nightly', sourceNamespace: 'db', pvc: 'pg-data', phase: 'InProgress' }),
      // Not nightly's: another backup's, and a look-alike in another namespace.
      podVolumeBackup({ name: 'weekly-a', backup: 'weekly', podNamespace: 'app', pod: 'web-0', volume: 'logs', snapshotID: S2 }),
      podVolumeBackup({ name: 'sneaky', namespace: OTHER, backup: 'nightly', podNamespace: 'app', pod: 'web-0', volume: 'planted', snapshotID: S2 }),
      podVolumeBackup({ name: 'long-a', backup: LONG, podNamespace: 'app', pod: 'web-0', volume: 'data', snapshotID: S3 }),
      // The tenant: its own location with its own credential, its backup's PodVolumeBackup in its namespace.
      { apiVersion: 'v1', kind: 'Secret', metadata: { name: 'creds', namespace: TENANT }, data: { cloud: b64('tenant-credential') } },
      velero('BackupStorageLocation', 'default', { provider: 'filesystem', objectStorage: { bucket: 'bucket-team-a' }, credential: { name: 'creds', key: 'cloud' } }, { namespace: TENANT }),
      velero('Backup', 't-nightly', { storageLocation: 'default' }, { namespace: TENANT }),
      velero('Backup', 't-gone', { storageLocation: 'default' }, { namespace: TENANT }),
      podVolumeBackup({ name: 't-nightly-a', namespace: TENANT, backup: 't-nightly', podNamespace: TENANT, pod: 'app-0', volume: 'data', snapshotID: S1 }),
      // Velero's namespace holds a PodVolumeBackup labelled with the tenant backup's name: not the tenant's.
      podVolumeBackup({ name: 't-nightly-planted', backup: 't-nightly', podNamespace: 'velero', pod: 'velero-0', volume: 'plugins', snapshotID: S2 }),
    );
    // gone's objects were deleted; its files remain in the store.
    const keys = volumeFileKeys('gone');
    await put('main', `velero/${keys.podVolumeBackups}`, gzJson([podVolumeBackup({ backup: 'gone', podNamespace: 'app', pod: 'web-0', volume: 'data', snapshotID: S1, location: 'named-so-in-the-cluster-that-made-it' })]));
    await put('main', `velero/${keys.volumeInfo}`, gzJson([dataMoverInfo({ pvcNamespace: 'db', pvc: 'pg-data', snapshotHandle: S2 })]));
    await put('bucket-team-a', volumeFileKeys('t-gone').volumeInfo, gzJson([dataMoverInfo({ pvcNamespace: TENANT, pvc: 'files', snapshotHandle: S3 })]));
  });
  after(async () => {
    await k?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  test('a backup lists its PodVolumeBackups and DataUploads by label, in its namespace only; a retried volume once, the completed attempt', async () => {
    const list = await volumes.volumes(OWN, 'nightly', signal);
    assert.deepEqual(list.map((v) => [v.id, v.kind, v.uploader, v.snapshotID, v.phase]), [
      ['app:web-0:cache', 'PodVolumeBackup', 'restic', 'abcdef', 'Completed'],
      ['app:web-0:data', 'PodVolumeBackup', 'kopia', S1, 'Completed'],
      ['db:pg-data', 'DataUpload', 'kopia', '', 'InProgress'],
    ]);
  });

  test('the repository of a volume: the backup location, kopia/<volume namespace>/, the snapshot, the password from Velero\'s Secret', async () => {
    const repo = await volumes.repository(OWN, 'nightly', 'app:web-0:data', signal);
    assert.equal(repo.spec.name, 'velero/default');
    assert.equal(repo.spec.prefix, 'velero');
    assert.equal(repo.spec.tenant, undefined);
    assert.equal(repo.prefix, 'kopia/app/');
    assert.equal(repo.snapshotID, S1);
    assert.equal(repo.password, PASSWORD);
    // By the pod volume name, when only one volume has it.
    assert.equal((await volumes.repository(OWN, 'nightly', 'data', signal)).volume.id, 'app:web-0:data');
    await assert.rejects(volumes.repository(OWN, 'nightly', 'app:web-0:cache', signal), UnsupportedVolumeError);
    await assert.rejects(volumes.repository(OWN, 'nightly', 'db:pg-data', signal), VolumeNotReadyError);
    await assert.rejects(volumes.repository(OWN, 'nightly', 'app:web-0:planted', signal), NotFoundError);
    await assert.rejects(volumes.repository(OWN, 'nightly', 'app:web-0:logs', signal), NotFoundError);
  });

  test("a backup name over 63 characters: its objects carry Velero's hashed label value, and are found by it", async () => {
    assert.notEqual(backupNameLabelValue(LONG), LONG);
    assert.deepEqual((await volumes.volumes(OWN, LONG, signal)).map((v) => v.snapshotID), [S3]);
  });

  test('when the objects are gone, the volumes come from the backup files in its location (whatever location name they recorded)', async () => {
    const list = await volumes.volumes(OWN, 'gone', signal);
    assert.deepEqual(list.map((v) => [v.id, v.snapshotID]), [['app:web-0:data', S1], ['db:pg-data', S2]]);
    const repo = await volumes.repository(OWN, 'gone', 'pg-data', signal);
    assert.equal(repo.prefix, 'kopia/db/');
  });

  test("tenancy: a tenant backup's volumes resolve to the tenant's own location and credential; objects elsewhere with its label are not its", async () => {
    const list = await volumes.volumes(TENANT, 't-nightly', signal);
    assert.deepEqual(list.map((v) => v.id), [`${TENANT}:app-0:data`]);
    const repo = await volumes.repository(TENANT, 't-nightly', 'data', signal);
    assert.equal(repo.spec.tenant, true);
    assert.equal(repo.spec.name, `${TENANT}/default`);
    assert.equal(repo.spec.bucket, 'bucket-team-a');
    assert.equal(Buffer.from(repo.spec.credential!).toString(), 'tenant-credential');
    assert.equal(repo.prefix, `kopia/${TENANT}/`);
    assert.equal(repo.password, PASSWORD, "Velero keys every repository with its one password, tenants' too");
    // The tenant's files, from the tenant's bucket.
    assert.deepEqual((await volumes.volumes(TENANT, 't-gone', signal)).map((v) => v.id), [`${TENANT}:files`]);
    // What a confused cache or proxy could hand back: the velero namespace's look-alike in the tenant's list.
    const confused: ObjectReader = {
      velero: (...a) => objects.velero(...a),
      secret: (...a) => objects.secret(...a),
      async veleroList(plural, ns, selector, s) {
        return [...(await objects.veleroList(plural, ns, selector, s)), ...(await objects.veleroList(plural, OWN, selector, s))];
      },
    };
    const strict = new KubeVolumeResolver(locations, confused, new DefaultStoreFactory({ fsRoot: dir }), { ownNamespace: OWN });
    assert.deepEqual((await strict.volumes(TENANT, 't-nightly', signal)).map((v) => v.id), [`${TENANT}:app-0:data`]);
    // The other namespace has no Backup "nightly": its planted PodVolumeBackup opens nothing.
    await assert.rejects(volumes.volumes(OTHER, 'nightly', signal), NotFoundError);
  });

  test('an unknown backup or an unserved namespace is NotFound', async () => {
    await assert.rejects(volumes.volumes(OWN, 'no-such-backup', signal), NotFoundError);
    await assert.rejects(volumes.volumes('kube-system', 'nightly', signal), NotFoundError);
  });

  test("without Velero's repository Secret or its key, the repository is refused, and no password value appears", async () => {
    // Fresh readers: the shared one caches the Secret for a few seconds.
    const fresh = (): KubeVolumeResolver => {
      const o = new CachedObjectReader(kube);
      return new KubeVolumeResolver(new KubeResolver(o, { serves: () => true, ownNamespace: OWN, isFilesystemProvider: () => true, tenantFilesystemAllow: new Map() }), o, new DefaultStoreFactory({ fsRoot: dir }), { ownNamespace: OWN });
    };
    const path = `/api/v1/namespaces/${OWN}/secrets/${REPOSITORY_SECRET.name}`;
    try {
      assert.equal((await k.rest('DELETE', path)).status, 200);
      await assert.rejects(fresh().repository(OWN, 'nightly', 'app:web-0:data', signal), (e: unknown) => e instanceof RepositoryPasswordUnavailableError && /secret "velero-repo-credentials".*not found in namespace "velero"/.test(e.message));
      await k.apply({ apiVersion: 'v1', kind: 'Secret', metadata: { name: REPOSITORY_SECRET.name, namespace: OWN }, data: { other: b64(PASSWORD) } });
      await assert.rejects(
        fresh().repository(OWN, 'nightly', 'app:web-0:data', signal),
        (e: unknown) => e instanceof RepositoryPasswordUnavailableError && /has no key "repository-password"/.test(e.message) && !e.message.includes(PASSWORD),
      );
    } finally {
      await k.rest('DELETE', path);
      await k.apply({ apiVersion: 'v1', kind: 'Secret', metadata: { name: REPOSITORY_SECRET.name, namespace: OWN }, data: { [REPOSITORY_SECRET.key]: b64(PASSWORD) } });
    }
    assert.equal((await fresh().repository(OWN, 'nightly', 'app:web-0:data', signal)).password, PASSWORD);
  });

  test('labelled lists: cached and shared by concurrent callers; too many objects refused, not paged without end', async () => {
    const reader = new CachedObjectReader(kube);
    const before = calls;
    const [a, b] = await Promise.all([
      reader.veleroList('podvolumebackups', OWN, backupSelector('nightly'), signal),
      reader.veleroList('podvolumebackups', OWN, backupSelector('nightly'), signal),
    ]);
    assert.equal(a.length, 3);
    assert.equal(b, a);
    await reader.veleroList('podvolumebackups', OWN, backupSelector('nightly'), signal);
    assert.equal(calls - before, 1);
    assert.deepEqual(await reader.veleroList('datauploads', OWN, backupSelector('weekly'), signal), []);
    const small = new CachedObjectReader(kube, { ttlMs: 5_000, missingTtlMs: 2_000, max: 100, maxListed: 2 });
    await assert.rejects(small.veleroList('podvolumebackups', OWN, backupSelector('nightly'), signal), (e: unknown) => e instanceof TooManyObjectsError && e.reason === 'TooManyObjects');
    assert.equal((await small.veleroList('datauploads', OWN, backupSelector('nightly'), signal)).length, 1);
  });
});
