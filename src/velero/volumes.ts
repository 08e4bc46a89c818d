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
  /** The PVC: always for a DataUpload; for a PodVolumeBackup when the backup's volume info file names it. */
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
  /**
   * The backup's volumes, sorted by id, one per id (of a retried upload, the completed attempt, then
   * the newest); NotFoundError when the backup (or its location) is unknown, InvalidBackupFileError
   * when a volume file of the backup in the store breaks a bound.
   */
  volumes(namespace: string, backup: string, signal: AbortSignal): Promise<BackupVolume[]>;
  /**
   * The repository and snapshot of one volume of the backup. `volumeID` is a volume's id, or else a
   * PVC name or pod volume name that exactly one volume of the backup has (InvalidTargetError when
   * several have it). NotFoundError for an unknown volume; UnsupportedVolumeError (restic, another
   * uploader or data mover) and VolumeNotReadyError (no snapshot: running, failed, empty) for one
   * that cannot be read; RepositoryPasswordUnavailableError when the password cannot be had.
   */
  repository(namespace: string, backup: string, volumeID: string, signal: AbortSignal): Promise<VolumeRepository>;
}
