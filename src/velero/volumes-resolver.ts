/**
 * What both modes' volume resolvers share: a volume is found among the backup's volumes (by id, else
 * by an unambiguous PVC or pod volume name) and only a readable one gets its repository. The modes
 * differ only in where the volumes and the password come from.
 */
import type { StoreSpec } from '../stores/spec.ts';
import { findVolume, readableSnapshot } from './volumes-parse.ts';
import type { BackupVolume, VolumeRepository, VolumeResolver } from './volumes.ts';

export abstract class BaseVolumeResolver implements VolumeResolver {
  /** The backup's location and its volumes, sorted by id; NotFoundError for an unknown backup. */
  protected abstract volumesOf(namespace: string, backup: string, signal: AbortSignal): Promise<{ spec: StoreSpec; volumes: BackupVolume[] }>;
  /** The repository password; never logged, never in a message. */
  protected abstract password(signal: AbortSignal): Promise<string>;

  async volumes(namespace: string, backup: string, signal: AbortSignal): Promise<BackupVolume[]> {
    return (await this.volumesOf(namespace, backup, signal)).volumes;
  }

  async repository(namespace: string, backup: string, volumeID: string, signal: AbortSignal): Promise<VolumeRepository> {
    const { spec, volumes } = await this.volumesOf(namespace, backup, signal);
    const volume = findVolume(volumes, backup, volumeID);
    return { volume, spec, ...readableSnapshot(volume), password: await this.password(signal) };
  }
}
