/**
 * The volumes of a backup (file-system backups and data-mover uploads) and where each one's data
 * lives: a Kopia repository in the backup's own storage location, under `kopia/<volume namespace>/`.
 */
import type { StoreSpec } from '../stores/spec.ts';

/** The repository password `velero install` sets when none is given (the Secret velero-repo-credentials). */
export const VELERO_DEFAULT_REPOSITORY_PASSWORD = 'static-passw0rd';

/** One backed-up volume, as GET .../backups/{b}/volumes lists it. */
export interface BackupVolume {
  /**
   * The volume's name in URLs, unique within the backup and free of `/`: `<namespace>:<pod>:<volume>`
   * for a PodVolumeBackup, `<namespace>:<pvc>` for a DataUpload (Kubernetes names have no `:`).
   */
  id: string;
  kind: 'PodVolumeBackup' | 'DataUpload';
  /** The volume's namespace (the pod's, or the DataUpload's source namespace): names the repository. */
  namespace: string;
  pod?: string;
  /** The pod's volume name (PodVolumeBackup). */
  volume?: string;
  pvc?: string;
  /** `kopia` (readable), `restic` (listed, refused when read), or what Velero wrote. */
  uploader: string;
  /** The Kopia snapshot (manifest) id; '' while the upload has not completed. */
  snapshotID: string;
  /** Bytes, as Velero recorded them (progress.totalBytes or the volume info's size). */
  size?: number;
  startTime?: string;
  endTime?: string;
  /** Velero's phase (Completed, Failed, ...), when known. */
  phase?: string;
}

/** Where one volume's snapshot can be read. */
export interface VolumeRepository {
  volume: BackupVolume;
  /** The backup's own storage location (a tenant's has the tenant's credential only). */
  spec: StoreSpec;
  /** The repository's key prefix relative to the location's prefix: `kopia/<namespace>/`. */
  prefix: string;
  snapshotID: string;
  /** The repository password (never logged, never in an error). */
  password: string;
}

export interface VolumeResolver {
  /** The backup's volumes; NotFoundError when the backup (or its location) is unknown. */
  volumes(namespace: string, backup: string, signal: AbortSignal): Promise<BackupVolume[]>;
  /**
   * The repository and snapshot of one volume of the backup, by its id; NotFoundError for an unknown
   * volume, an error with a stable reason for one that cannot be read (restic, not completed).
   */
  repository(namespace: string, backup: string, volumeID: string, signal: AbortSignal): Promise<VolumeRepository>;
}
