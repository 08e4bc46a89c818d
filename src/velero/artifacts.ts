/**
 * The Velero download targets: which artifacts a backup and a restore have, the object key each one
 * lives at inside a BackupStorageLocation (relative to its prefix), and the DownloadRequest target
 * kind Velero uses for it. Keys match Velero's persistence layer exactly.
 */

export type OwnerKind = 'backups' | 'restores';

export interface ArtifactDef {
  /** The artifact name in URLs and in the SubjectAccessReview's subresource. */
  artifact: string;
  /** Velero's DownloadRequest `spec.target.kind`. */
  kind: string;
  /** Object key relative to the location's prefix. */
  key(name: string): string;
  /** Gzip-compressed content: clients gunzip everything but backup contents. */
  gzipped: true;
}

const def = (artifact: string, kind: string, key: (n: string) => string): ArtifactDef => ({
  artifact,
  kind,
  key,
  gzipped: true,
});

export const BACKUP_ARTIFACTS: readonly ArtifactDef[] = [
  def('log', 'BackupLog', (b) => `backups/${b}/${b}-logs.gz`),
  def('contents', 'BackupContents', (b) => `backups/${b}/${b}.tar.gz`),
  def('volumesnapshots', 'BackupVolumeSnapshots', (b) => `backups/${b}/${b}-volumesnapshots.json.gz`),
  def('itemoperations', 'BackupItemOperations', (b) => `backups/${b}/${b}-itemoperations.json.gz`),
  def('resourcelist', 'BackupResourceList', (b) => `backups/${b}/${b}-resource-list.json.gz`),
  def('results', 'BackupResults', (b) => `backups/${b}/${b}-results.gz`),
  def('csivolumesnapshots', 'CSIBackupVolumeSnapshots', (b) => `backups/${b}/${b}-csi-volumesnapshots.json.gz`),
  def(
    'csivolumesnapshotcontents',
    'CSIBackupVolumeSnapshotContents',
    (b) => `backups/${b}/${b}-csi-volumesnapshotcontents.json.gz`,
  ),
  def('volumeinfos', 'BackupVolumeInfos', (b) => `backups/${b}/${b}-volumeinfo.json.gz`),
];

export const RESTORE_ARTIFACTS: readonly ArtifactDef[] = [
  def('log', 'RestoreLog', (r) => `restores/${r}/restore-${r}-logs.gz`),
  def('results', 'RestoreResults', (r) => `restores/${r}/restore-${r}-results.gz`),
  def('resourcelist', 'RestoreResourceList', (r) => `restores/${r}/restore-${r}-resource-list.json.gz`),
  def('itemoperations', 'RestoreItemOperations', (r) => `restores/${r}/restore-${r}-itemoperations.json.gz`),
  // Velero writes this one without the `restore-` prefix.
  def('volumeinfo', 'RestoreVolumeInfo', (r) => `restores/${r}/${r}-volumeinfo.json.gz`),
];

const byOwner: Record<OwnerKind, ReadonlyMap<string, ArtifactDef>> = {
  backups: new Map(BACKUP_ARTIFACTS.map((a) => [a.artifact, a])),
  restores: new Map(RESTORE_ARTIFACTS.map((a) => [a.artifact, a])),
};

const byKind = new Map<string, { owner: OwnerKind; def: ArtifactDef }>();
for (const [owner, defs] of [
  ['backups', BACKUP_ARTIFACTS],
  ['restores', RESTORE_ARTIFACTS],
] as const) {
  for (const d of defs) byKind.set(d.kind, { owner, def: d });
}

/** The artifact definition, or undefined when the owner kind has no such artifact. */
export function findArtifact(owner: OwnerKind, artifact: string): ArtifactDef | undefined {
  return byOwner[owner].get(artifact);
}

/** Maps a DownloadRequest `spec.target.kind` to its owner and artifact. */
export function findArtifactByKind(kind: string): { owner: OwnerKind; def: ArtifactDef } | undefined {
  return byKind.get(kind);
}

export function artifactNames(owner: OwnerKind): string[] {
  return [...byOwner[owner].keys()];
}

const DNS1123_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const DNS1123_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;

/** Kubernetes object names (Backup, Restore, DownloadRequest): a DNS-1123 subdomain, at most 253 characters. */
export function isDns1123Subdomain(name: string): boolean {
  return name.length > 0 && name.length <= 253 && DNS1123_SUBDOMAIN.test(name);
}

/** Namespace names: a DNS-1123 label, at most 63 characters. */
export function isDns1123Label(name: string): boolean {
  return name.length > 0 && name.length <= 63 && DNS1123_LABEL.test(name);
}

/** What one download request asks for, before anyone has looked it up. */
export interface Target {
  namespace: string;
  owner: OwnerKind;
  name: string;
  artifact: string;
}
