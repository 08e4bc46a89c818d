/**
 * Velero's volume objects as Velero writes them (PodVolumeBackup velero.io/v1, DataUpload
 * velero.io/v2alpha1, BackupVolumeInfo entries), for the volume resolver's tests.
 */
import { gzipSync } from 'node:zlib';
import { backupNameLabelValue } from '../../src/velero/volumes-parse.ts';

export interface PvbOptions {
  name?: string;
  namespace?: string;
  backup: string;
  podNamespace: string;
  pod: string;
  volume: string;
  snapshotID?: string;
  phase?: string;
  uploaderType?: string;
  location?: string;
  totalBytes?: number;
  start?: string;
  end?: string;
}

export function podVolumeBackup(o: PvbOptions): Record<string, unknown> {
  return {
    apiVersion: 'velero.io/v1',
    kind: 'PodVolumeBackup',
    metadata: {
      name: o.name ?? `${o.backup}-${o.pod}-${o.volume}`.slice(0, 63).replace(/-+$/, ''),
      namespace: o.namespace ?? 'velero',
      labels: { 'velero.io/backup-name': backupNameLabelValue(o.backup), 'velero.io/backup-uid': '00000000-0000-0000-0000-000000000001' },
    },
    spec: {
      backupStorageLocation: o.location ?? 'default',
      node: 'node-1',
      pod: { kind: 'Pod', namespace: o.podNamespace, name: o.pod, uid: '00000000-0000-0000-0000-0000000000aa' },
      repoIdentifier: '',
      tags: { backup: o.backup, volume: o.volume },
      uploaderType: o.uploaderType ?? 'kopia',
      volume: o.volume,
    },
    status: {
      phase: o.phase ?? 'Completed',
      path: `/host_pods/uid/volumes/kubernetes.io~csi/${o.volume}/mount`,
      snapshotID: o.snapshotID ?? '',
      ...(o.start && { startTimestamp: o.start }),
      ...(o.end && { completionTimestamp: o.end }),
      progress: { totalBytes: o.totalBytes ?? 1234, bytesDone: o.totalBytes ?? 1234 },
    },
  };
}

export interface DuOptions {
  name?: string;
  namespace?: string;
  backup: string;
  sourceNamespace: string;
  pvc: string;
  snapshotID?: string;
  phase?: string;
  datamover?: string;
  location?: string;
  totalBytes?: number;
  start?: string;
  end?: string;
}

export function dataUpload(o: DuOptions): Record<string, unknown> {
  return {
    apiVersion: 'velero.io/v2alpha1',
    kind: 'DataUpload',
    metadata: {
      name: o.name ?? `${o.backup}-${o.pvc}`.slice(0, 63).replace(/-+$/, ''),
      namespace: o.namespace ?? 'velero',
      labels: { 'velero.io/backup-name': backupNameLabelValue(o.backup) },
    },
    spec: {
      snapshotType: 'CSI',
      csiSnapshot: { volumeSnapshot: `velero-${o.pvc}-abcde`, storageClass: 'standard', snapshotClass: 'csi-snapclass' },
      sourcePVC: o.pvc,
      datamover: o.datamover ?? 'velero',
      backupStorageLocation: o.location ?? 'default',
      sourceNamespace: o.sourceNamespace,
      operationTimeout: '10m0s',
    },
    status: {
      phase: o.phase ?? 'Completed',
      path: '/abc',
      snapshotID: o.snapshotID ?? '',
      ...(o.start && { startTimestamp: o.start }),
      ...(o.end && { completionTimestamp: o.end }),
      progress: { totalBytes: o.totalBytes ?? 4096, bytesDone: o.totalBytes ?? 4096 },
      node: 'node-1',
    },
  };
}

/** A volume info entry of a data-mover volume, as Velero's BackupVolumeInfo serializes. */
export function dataMoverInfo(o: { pvcNamespace: string; pvc: string; snapshotHandle: string; phase?: string; uploaderType?: string; size?: number }): Record<string, unknown> {
  return {
    pvcName: o.pvc,
    pvcNamespace: o.pvcNamespace,
    pvName: `pvc-${o.pvc}-uid`,
    backupMethod: 'CSISnapshot',
    snapshotDataMoved: true,
    preserveLocalSnapshot: false,
    skipped: false,
    startTimestamp: '2026-12-01T03:00:00Z',
    completionTimestamp: '2026-12-01T03:01:00Z',
    result: 'succeeded',
    csiSnapshotInfo: { snapshotHandle: 'snap-0123', size: 1073741824, driver: 'hostpath.csi.k8s.io', vscName: 'snapcontent-1', operationID: 'op-1' },
    snapshotDataMovementInfo: {
      dataMover: 'velero',
      uploaderType: o.uploaderType ?? 'kopia',
      retainedSnapshot: `velero-${o.pvc}-abcde`,
      snapshotHandle: o.snapshotHandle,
      operationID: 'du-op-1',
      size: o.size ?? 4096,
      Phase: o.phase ?? 'Completed',
    },
    pvInfo: { reclaimPolicy: 'Delete', labels: {} },
  };
}

/** A volume info entry of a file-system volume (pvbInfo). */
export function podVolumeInfo(o: { pvcNamespace: string; pvc: string; pod: string; volume: string; snapshotHandle: string; uploaderType?: string }): Record<string, unknown> {
  return {
    pvcName: o.pvc,
    pvcNamespace: o.pvcNamespace,
    pvName: `pvc-${o.pvc}-uid`,
    backupMethod: 'PodVolumeBackup',
    snapshotDataMoved: false,
    preserveLocalSnapshot: false,
    skipped: false,
    result: 'succeeded',
    pvbInfo: { snapshotHandle: o.snapshotHandle, size: 1234, uploaderType: o.uploaderType ?? 'kopia', volumeName: o.volume, podName: o.pod, podNamespace: o.pvcNamespace, nodeName: 'node-1', Phase: 'Completed' },
    pvInfo: { reclaimPolicy: 'Delete', labels: {} },
  };
}

export const gzJson = (v: unknown): Buffer => gzipSync(Buffer.from(JSON.stringify(v)));
