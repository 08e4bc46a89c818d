/** The pure functions behind a backup's volumes: label values, objects and volume info entries, duplicates, lookups, refusals. */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { InvalidTargetError, NotFoundError, UnsupportedVolumeError, VolumeNotReadyError } from '../../src/velero/errors.ts';
import {
  backupNameLabelValue,
  backupSelector,
  findVolume,
  readableSnapshot,
  repositoryPrefix,
  uniqueVolumes,
  volumeOfDataUpload,
  volumeOfPodVolumeBackup,
  volumeOfVolumeInfo,
} from '../../src/velero/volumes-parse.ts';
import type { BackupVolume } from '../../src/velero/volumes.ts';
import { dataMoverInfo, dataUpload, podVolumeBackup, podVolumeInfo } from '../support/velero-volumes.ts';

const SNAP = 'k0123456789abcdef0123456789abcdef'.slice(1);
const ctx = { backup: 'nightly', location: 'default' };

describe("Velero's label value of a backup name (label.GetValidName)", () => {
  test("Velero's own test vector: a name over 63 characters keeps 57 and ends with 6 hex digits of its SHA-256", () => {
    assert.equal(
      backupNameLabelValue('this_is_a_very_long_label_value_that_will_be_rejected_by_Kubernetes'),
      'this_is_a_very_long_label_value_that_will_be_rejected_by_8d0722',
    );
  });

  test('a 64-character backup name (the digest computed by coreutils sha256sum), and 63 characters unchanged', () => {
    const name = 'daily-full-backup-of-the-production-cluster-2026-12-05-030000-ab';
    assert.equal(name.length, 64);
    assert.equal(backupNameLabelValue(name), 'daily-full-backup-of-the-production-cluster-2026-12-05-037e2450');
    assert.equal(backupNameLabelValue(name.slice(0, 63)), name.slice(0, 63));
    assert.equal(backupSelector('nightly'), 'velero.io/backup-name=nightly');
  });
});

describe('volumes from PodVolumeBackups and DataUploads', () => {
  test('a PodVolumeBackup is <ns>:<pod>:<volume>, a DataUpload <ns>:<pvc>, with what Velero recorded', () => {
    const pvb = volumeOfPodVolumeBackup(
      podVolumeBackup({ backup: 'nightly', podNamespace: 'app', pod: 'web-0', volume: 'data', snapshotID: SNAP, totalBytes: 99, start: '2026-12-01T03:00:00Z', end: '2026-12-01T03:02:00Z' }),
      ctx,
    );
    assert.deepEqual(pvb?.volume, {
      id: 'app:web-0:data',
      kind: 'PodVolumeBackup',
      namespace: 'app',
      pod: 'web-0',
      volume: 'data',
      uploader: 'kopia',
      snapshotID: SNAP,
      phase: 'Completed',
      size: 99,
      startTime: '2026-12-01T03:00:00Z',
      endTime: '2026-12-01T03:02:00Z',
    });
    const du = volumeOfDataUpload(dataUpload({ backup: 'nightly', sourceNamespace: 'db', pvc: 'pg-data', snapshotID: SNAP }), ctx);
    assert.deepEqual(du?.volume, { id: 'db:pg-data', kind: 'DataUpload', namespace: 'db', pvc: 'pg-data', uploader: 'kopia', snapshotID: SNAP, phase: 'Completed', size: 4096 });
  });

  test('restic (named, or no uploaderType at all: Velero before Kopia) and other data movers are listed as such', () => {
    const restic = volumeOfPodVolumeBackup(podVolumeBackup({ backup: 'nightly', podNamespace: 'app', pod: 'p', volume: 'v', uploaderType: 'restic', snapshotID: SNAP }), ctx);
    assert.equal(restic?.volume.uploader, 'restic');
    const old = podVolumeBackup({ backup: 'nightly', podNamespace: 'app', pod: 'p', volume: 'v', snapshotID: SNAP });
    delete (old.spec as Record<string, unknown>).uploaderType;
    assert.equal(volumeOfPodVolumeBackup(old, ctx)?.volume.uploader, 'restic');
    const other = volumeOfDataUpload(dataUpload({ backup: 'nightly', sourceNamespace: 'db', pvc: 'x', datamover: 'acme.io/mover', snapshotID: SNAP }), ctx);
    assert.equal(other?.volume.uploader, 'acme.io/mover');
  });

  test("an object owned by another Backup, or written to another location, is not this backup's", () => {
    const owned = podVolumeBackup({ backup: 'nightly', podNamespace: 'app', pod: 'p', volume: 'v', snapshotID: SNAP });
    (owned.metadata as Record<string, unknown>).ownerReferences = [{ apiVersion: 'velero.io/v1', kind: 'Backup', name: 'other', uid: 'u' }];
    assert.equal(volumeOfPodVolumeBackup(owned, ctx), undefined);
    (owned.metadata as Record<string, unknown>).ownerReferences = [{ apiVersion: 'velero.io/v1', kind: 'Backup', name: 'nightly', uid: 'u' }];
    assert.ok(volumeOfPodVolumeBackup(owned, ctx));
    assert.equal(volumeOfDataUpload(dataUpload({ backup: 'nightly', sourceNamespace: 'db', pvc: 'x', location: 'elsewhere', snapshotID: SNAP }), ctx), undefined);
    // Files carry no location to compare with: not checked there.
    assert.ok(volumeOfDataUpload(dataUpload({ backup: 'nightly', sourceNamespace: 'db', pvc: 'x', location: 'elsewhere', snapshotID: SNAP }), { backup: 'nightly' }));
  });

  test('hostile entries are left out, never followed: wrong types, bad names, `..` and `/` in a namespace, odd snapshot ids', () => {
    const base = (): Record<string, unknown> => podVolumeBackup({ backup: 'nightly', podNamespace: 'app', pod: 'p', volume: 'v', snapshotID: SNAP });
    const mutants: [string, (o: Record<string, unknown>) => unknown][] = [
      ['not an object', () => 42],
      ['null', () => null],
      ['an array', () => [base()]],
      ['spec a string', (o) => ({ ...o, spec: 'x' })],
      ['status an array', (o) => ({ ...o, status: [] })],
      ['pod a string', (o) => ({ ...o, spec: { ...(o.spec as object), pod: 'app/p' } })],
      ['namespace ..', (o) => ({ ...o, spec: { ...(o.spec as object), pod: { namespace: '..', name: 'p' } } })],
      ['namespace ../x', (o) => ({ ...o, spec: { ...(o.spec as object), pod: { namespace: '../velero', name: 'p' } } })],
      ['namespace with /', (o) => ({ ...o, spec: { ...(o.spec as object), pod: { namespace: 'a/b', name: 'p' } } })],
      ['namespace empty', (o) => ({ ...o, spec: { ...(o.spec as object), pod: { namespace: '', name: 'p' } } })],
      ['namespace a number', (o) => ({ ...o, spec: { ...(o.spec as object), pod: { namespace: 7, name: 'p' } } })],
      ['namespace uppercase', (o) => ({ ...o, spec: { ...(o.spec as object), pod: { namespace: 'App', name: 'p' } } })],
      ['namespace of 64 characters', (o) => ({ ...o, spec: { ...(o.spec as object), pod: { namespace: 'a'.repeat(64), name: 'p' } } })],
      ['pod name with :', (o) => ({ ...o, spec: { ...(o.spec as object), pod: { namespace: 'app', name: 'p:q' } } })],
      ['volume with a dot', (o) => ({ ...o, spec: { ...(o.spec as object), volume: 'a.b' } })],
      ['volume an object', (o) => ({ ...o, spec: { ...(o.spec as object), volume: { toString: 'v' } } })],
      ['snapshot id a number', (o) => ({ ...o, status: { ...(o.status as object), snapshotID: 12 } })],
      ['snapshot id a path', (o) => ({ ...o, status: { ...(o.status as object), snapshotID: '../../etc' } })],
      ['snapshot id huge', (o) => ({ ...o, status: { ...(o.status as object), snapshotID: 'a'.repeat(129) } })],
    ];
    for (const [why, mutate] of mutants) assert.equal(volumeOfPodVolumeBackup(mutate(base()), ctx), undefined, why);
    // A __proto__ key from JSON is an own property like any other: nothing leaks into other objects.
    const proto = JSON.parse(`{"spec":{"__proto__":{"volume":"v"},"pod":{"namespace":"app","name":"p"}}}`) as unknown;
    assert.equal(volumeOfPodVolumeBackup(proto, ctx), undefined);
    assert.equal(({} as Record<string, unknown>).volume, undefined);
    // Odd optional fields are dropped, not trusted.
    const odd = base();
    odd.status = { ...(odd.status as object), progress: { totalBytes: -1 }, phase: 'x'.repeat(65), startTimestamp: 5 };
    const v = volumeOfPodVolumeBackup(odd, ctx)?.volume;
    assert.equal(v?.size, undefined);
    assert.equal(v?.phase, undefined);
    assert.equal(v?.startTime, undefined);
    const du = dataUpload({ backup: 'nightly', sourceNamespace: '../x', pvc: 'p', snapshotID: SNAP });
    assert.equal(volumeOfDataUpload(du, ctx), undefined);
  });
});

describe("volumes from a backup's volume info file", () => {
  test('data-mover entries give the Kopia snapshot of snapshotDataMovementInfo; file-system entries name the PVC; snapshots without data movement are not volumes', () => {
    const dm = volumeOfVolumeInfo(dataMoverInfo({ pvcNamespace: 'db', pvc: 'pg-data', snapshotHandle: SNAP }), 0);
    assert.deepEqual(dm?.volume, {
      id: 'db:pg-data',
      kind: 'DataUpload',
      namespace: 'db',
      pvc: 'pg-data',
      uploader: 'kopia',
      snapshotID: SNAP,
      size: 4096,
      phase: 'Completed',
      startTime: '2026-12-01T03:00:00Z',
      endTime: '2026-12-01T03:01:00Z',
    });
    const fs = volumeOfVolumeInfo(podVolumeInfo({ pvcNamespace: 'app', pvc: 'www', pod: 'web-0', volume: 'data', snapshotHandle: SNAP }), 1);
    assert.equal(fs?.volume.id, 'app:web-0:data');
    assert.equal(fs?.volume.pvc, 'www');
    const csiOnly = { ...dataMoverInfo({ pvcNamespace: 'db', pvc: 'x', snapshotHandle: SNAP }), snapshotDataMoved: false };
    assert.equal(volumeOfVolumeInfo(csiOnly, 2), undefined);
    assert.equal(volumeOfVolumeInfo({ backupMethod: 'NativeSnapshot', pvcName: 'x', pvcNamespace: 'db' }, 3), undefined);
    assert.equal(volumeOfVolumeInfo({ ...dataMoverInfo({ pvcNamespace: 'db', pvc: 'x', snapshotHandle: SNAP }), skipped: true }, 4), undefined);
    assert.equal(volumeOfVolumeInfo({ ...dataMoverInfo({ pvcNamespace: '../kopia', pvc: 'x', snapshotHandle: SNAP }) }, 5), undefined);
    assert.equal(volumeOfVolumeInfo({ ...dataMoverInfo({ pvcNamespace: 'db', pvc: 'x', snapshotHandle: SNAP }), snapshotDataMovementInfo: 'x' }, 6), undefined);
    assert.equal(volumeOfVolumeInfo('entry', 7), undefined);
  });
});

describe('one volume per id', () => {
  const attempt = (name: string, phase: string, snapshotID: string, end?: string) =>
    volumeOfPodVolumeBackup(podVolumeBackup({ name, backup: 'nightly', podNamespace: 'app', pod: 'p', volume: 'v', phase, snapshotID, ...(end && { end }) }), ctx);

  test('a retried PodVolumeBackup: the completed one wins over a newer failure, the newest of two completed, then the greater name; whatever the order', () => {
    const failedLater = attempt('b-1', 'Failed', '', '2026-12-01T05:00:00Z');
    const completed = attempt('b-2', 'Completed', 'aaaa', '2026-12-01T04:00:00Z');
    const completedNewer = attempt('b-3', 'Completed', 'bbbb', '2026-12-01T04:30:00Z');
    const sameTimeGreaterName = attempt('b-4', 'Completed', 'cccc', '2026-12-01T04:30:00Z');
    for (const order of [
      [failedLater, completed],
      [completed, failedLater],
    ]) {
      assert.equal(uniqueVolumes(order)[0]?.snapshotID, 'aaaa');
    }
    const all = [failedLater, completed, completedNewer, sameTimeGreaterName];
    assert.equal(uniqueVolumes(all)[0]?.snapshotID, 'cccc');
    assert.equal(uniqueVolumes(all.reverse())[0]?.snapshotID, 'cccc');
    assert.equal(uniqueVolumes(all).length, 1);
  });

  test('the list is sorted by id', () => {
    const ids = uniqueVolumes([
      volumeOfDataUpload(dataUpload({ backup: 'nightly', sourceNamespace: 'b', pvc: 'x' }), ctx),
      volumeOfPodVolumeBackup(podVolumeBackup({ backup: 'nightly', podNamespace: 'a', pod: 'p', volume: 'v' }), ctx),
      undefined,
    ]).map((v) => v.id);
    assert.deepEqual(ids, ['a:p:v', 'b:x']);
  });
});

describe('finding a volume and where it can be read', () => {
  const vol = (v: Partial<BackupVolume> & Pick<BackupVolume, 'id' | 'namespace'>): BackupVolume => ({ kind: 'PodVolumeBackup', uploader: 'kopia', snapshotID: SNAP, phase: 'Completed', ...v });
  const volumes = [
    vol({ id: 'app:web-0:data', namespace: 'app', pod: 'web-0', volume: 'data', pvc: 'www-0' }),
    vol({ id: 'app:web-1:data', namespace: 'app', pod: 'web-1', volume: 'data', pvc: 'www-1' }),
    vol({ id: 'db:pg', namespace: 'db', pvc: 'pg', kind: 'DataUpload' }),
  ];

  test('by exact id, else by a PVC or pod volume name that only one volume has', () => {
    assert.equal(findVolume(volumes, 'b', 'app:web-1:data').id, 'app:web-1:data');
    assert.equal(findVolume(volumes, 'b', 'www-0').id, 'app:web-0:data');
    assert.equal(findVolume(volumes, 'b', 'pg').id, 'db:pg');
    assert.throws(() => findVolume(volumes, 'b', 'data'), (e: unknown) => e instanceof InvalidTargetError && /ambiguous.*app:web-0:data, app:web-1:data/.test(e.message));
    assert.throws(() => findVolume(volumes, 'b', 'nope'), NotFoundError);
  });

  test('the repository prefix is kopia/<namespace>/, and only for a namespace name', () => {
    assert.deepEqual(readableSnapshot(volumes[2]!), { prefix: 'kopia/db/', snapshotID: SNAP });
    for (const bad of ['..', '../x', 'a/b', '', 'A', 'a'.repeat(64)]) assert.throws(() => repositoryPrefix(bad), UnsupportedVolumeError, bad);
    assert.throws(() => readableSnapshot(vol({ id: 'x', namespace: '../etc' })), UnsupportedVolumeError);
  });

  test('restic and other uploaders are refused as unsupported; no snapshot yet, a failed or running upload as not ready', () => {
    assert.throws(() => readableSnapshot(vol({ id: 'a:p:v', namespace: 'a', uploader: 'restic' })), (e: unknown) => e instanceof UnsupportedVolumeError && e.reason === 'UnsupportedVolume' && /restic/.test(e.message));
    assert.throws(() => readableSnapshot(vol({ id: 'a:p', namespace: 'a', uploader: 'acme.io/mover' })), UnsupportedVolumeError);
    assert.throws(() => readableSnapshot(vol({ id: 'a:p', namespace: 'a', snapshotID: '', phase: 'InProgress' })), (e: unknown) => e instanceof VolumeNotReadyError && e.reason === 'VolumeNotReady' && /InProgress/.test(e.message));
    assert.throws(() => readableSnapshot(vol({ id: 'a:p', namespace: 'a', phase: 'Failed' })), VolumeNotReadyError);
    assert.throws(() => readableSnapshot(vol({ id: 'a:p', namespace: 'a', snapshotID: '' })), VolumeNotReadyError);
  });
});
