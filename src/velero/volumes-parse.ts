/**
 * The volumes of a backup, as pure functions of what Velero wrote: PodVolumeBackups (file-system
 * backups), DataUploads (data-mover backups) and the backup's volume info file. Every input is
 * attacker-influenced (a tenant creates objects in its namespace and writes files in its own store), so
 * each entry is checked field by field: an entry that is not an object, has a field of the wrong type,
 * or names a namespace, pod, volume or PVC that is not a valid Kubernetes name is left out, never
 * followed. The volume namespace becomes part of an object key (`kopia/<namespace>/`), which is why it
 * must be a DNS-1123 label: `..`, `/` or an empty string can never reach a key.
 */
import { createHash } from 'node:crypto';
import { isDns1123Label, isDns1123Subdomain } from './artifacts.ts';
import { InvalidTargetError, NotFoundError, UnsupportedVolumeError, VolumeNotReadyError } from './errors.ts';
import type { BackupVolume } from './volumes.ts';

/** The label Velero puts on a backup's PodVolumeBackups and DataUploads. */
export const BACKUP_NAME_LABEL = 'velero.io/backup-name';

/** Kubernetes' limit on a label value (DNS-1035 label length), which Velero's label values respect. */
const LABEL_VALUE_MAX = 63;
/** Hex characters of the SHA-256 that replace the tail of a long name. */
const HASH_CHARS = 6;

/**
 * The label value Velero gives a backup's name: the name itself up to 63 bytes; a longer one is cut
 * to 57 bytes followed by the first 6 hex digits of the SHA-256 of the whole name (Velero's
 * label.GetValidName; lengths in bytes, as Go's len).
 */
export function backupNameLabelValue(name: string): string {
  const bytes = Buffer.from(name, 'utf8');
  if (bytes.length <= LABEL_VALUE_MAX) return name;
  const sha = createHash('sha256').update(bytes).digest('hex');
  return bytes.subarray(0, LABEL_VALUE_MAX - HASH_CHARS).toString('utf8') + sha.slice(0, HASH_CHARS);
}

/** The label selector of a backup's PodVolumeBackups and DataUploads. */
export function backupSelector(backup: string): string {
  return `${BACKUP_NAME_LABEL}=${backupNameLabelValue(backup)}`;
}

type Fields = Record<string, unknown>;

const fields = (v: unknown): Fields | undefined => (v !== null && typeof v === 'object' && !Array.isArray(v) ? (v as Fields) : undefined);

/** A short string field (phases, timestamps, uploader names); anything else is absent. */
function short(v: unknown, max = 64): string | undefined {
  return typeof v === 'string' && v !== '' && v.length <= max ? v : undefined;
}

/** A byte count Velero recorded: a non-negative safe integer, else absent. */
function byteCount(v: unknown): number | undefined {
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= 0 ? v : undefined;
}

/**
 * Snapshot ids: Kopia's manifest ids are hex, restic's too. Anything else (a path, a key, a huge
 * string) makes the entry malformed: a wrong type is not the same as "no snapshot yet".
 */
const SNAPSHOT_ID = /^[A-Za-z0-9_-]{1,128}$/;

/** `''` for an absent or empty id; undefined for a malformed one. */
function snapshotIdOf(v: unknown): string | undefined {
  if (v === undefined || v === null || v === '') return '';
  return typeof v === 'string' && SNAPSHOT_ID.test(v) ? v : undefined;
}

/** Uploader and data-mover names as Velero writes them; anything else is shown as `unknown`. */
const UPLOADER = /^[A-Za-z0-9._/-]{1,64}$/;

function uploaderName(v: unknown): string {
  return typeof v === 'string' && UPLOADER.test(v) ? v : 'unknown';
}

/** One volume found, with what decides between two entries of the same id. */
export interface VolumeCandidate {
  volume: BackupVolume;
  /** Epoch ms of the newest timestamp the entry carries (-Infinity when none). */
  time: number;
  /** A last, deterministic tie-break (the object's name, or the entry's position in a file). */
  tiebreak: string;
}

function timeOf(...values: (string | undefined)[]): number {
  let best = -Infinity;
  for (const v of values) {
    const t = v === undefined ? NaN : Date.parse(v);
    if (Number.isFinite(t) && t > best) best = t;
  }
  return best;
}

/** What a Velero object's entry is checked against. */
export interface EntryContext {
  /** The backup's name: an object owned by another Backup is not this backup's. */
  backup: string;
  /**
   * The backup's storage location name: an object that says it wrote elsewhere is not readable from
   * the backup's location and is left out. Undefined: not checked.
   */
  location?: string;
}

function ownedByAnotherBackup(meta: Fields | undefined, backup: string): boolean {
  const refs = meta?.ownerReferences;
  if (!Array.isArray(refs)) return false;
  return refs.some((r) => fields(r)?.kind === 'Backup' && fields(r)?.name !== backup);
}

/** The common checks of a PodVolumeBackup or DataUpload object: its spec, status and metadata. */
function objectParts(o: unknown, ctx: EntryContext): { spec: Fields; status: Fields; meta: Fields | undefined } | undefined {
  const obj = fields(o);
  const spec = fields(obj?.spec);
  if (!obj || !spec) return undefined;
  const meta = fields(obj.metadata);
  if (ownedByAnotherBackup(meta, ctx.backup)) return undefined;
  const bsl = spec.backupStorageLocation;
  if (ctx.location !== undefined && bsl !== undefined && bsl !== '' && bsl !== ctx.location) return undefined;
  const status = obj.status === undefined ? {} : fields(obj.status);
  if (!status) return undefined;
  return { spec, status, meta };
}

/** Phase, snapshot, size and times from a PodVolumeBackup's or DataUpload's status; undefined when malformed. */
function statusParts(status: Fields): Pick<BackupVolume, 'snapshotID' | 'phase' | 'size' | 'startTime' | 'endTime'> | undefined {
  const snapshotID = snapshotIdOf(status.snapshotID);
  if (snapshotID === undefined) return undefined;
  const phase = short(status.phase);
  const size = byteCount(fields(status.progress)?.totalBytes);
  const startTime = short(status.startTimestamp);
  const endTime = short(status.completionTimestamp);
  return { snapshotID, ...(phase && { phase }), ...(size !== undefined && { size }), ...(startTime && { startTime }), ...(endTime && { endTime }) };
}

/**
 * One PodVolumeBackup (velero.io/v1, from the API or the backup's podvolumebackups file) as a volume,
 * or undefined when it is malformed or not this backup's. An empty `uploaderType` is restic: Velero
 * wrote none before it had Kopia.
 */
export function volumeOfPodVolumeBackup(o: unknown, ctx: EntryContext): VolumeCandidate | undefined {
  const parts = objectParts(o, ctx);
  if (!parts) return undefined;
  const pod = fields(parts.spec.pod);
  const namespace = pod?.namespace;
  const podName = pod?.name;
  const volume = parts.spec.volume;
  if (!isLabel(namespace) || !isSubdomain(podName) || !isLabel(volume)) return undefined;
  const st = statusParts(parts.status);
  if (!st) return undefined;
  const uploader = parts.spec.uploaderType === undefined || parts.spec.uploaderType === '' ? 'restic' : uploaderName(parts.spec.uploaderType);
  return {
    volume: { id: `${namespace}:${podName}:${volume}`, kind: 'PodVolumeBackup', namespace, pod: podName, volume, uploader, ...st },
    time: timeOf(st.endTime, st.startTime, short(parts.meta?.creationTimestamp)),
    tiebreak: short(parts.meta?.name, 253) ?? '',
  };
}

/**
 * One DataUpload (velero.io/v2alpha1) as a volume, or undefined. Velero's own data mover (`velero`
 * or empty) always uploads with Kopia; another data mover's name is shown as the uploader.
 */
export function volumeOfDataUpload(o: unknown, ctx: EntryContext): VolumeCandidate | undefined {
  const parts = objectParts(o, ctx);
  if (!parts) return undefined;
  const namespace = parts.spec.sourceNamespace;
  const pvc = parts.spec.sourcePVC;
  if (!isLabel(namespace) || !isSubdomain(pvc)) return undefined;
  const st = statusParts(parts.status);
  if (!st) return undefined;
  return {
    volume: { id: `${namespace}:${pvc}`, kind: 'DataUpload', namespace, pvc, uploader: dataMoverUploader(parts.spec.datamover, 'kopia'), ...st },
    time: timeOf(st.endTime, st.startTime, short(parts.meta?.creationTimestamp)),
    tiebreak: short(parts.meta?.name, 253) ?? '',
  };
}

function dataMoverUploader(dataMover: unknown, uploader: unknown): string {
  return dataMover === undefined || dataMover === '' || dataMover === 'velero' ? uploaderName(uploader) : uploaderName(dataMover);
}

/**
 * The volumes of a backup's volume info file (`<b>-volumeinfo.json.gz`, a JSON array of
 * BackupVolumeInfo): data-mover volumes (`CSISnapshot` with `snapshotDataMoved`, the Kopia snapshot
 * in `snapshotDataMovementInfo.snapshotHandle`) and file-system volumes (`PodVolumeBackup` with
 * `pvbInfo`, which also names the PVC). Other methods (native and CSI snapshots) hold no data the
 * gateway can read and are not volumes here.
 */
export function volumeOfVolumeInfo(o: unknown, index: number): VolumeCandidate | undefined {
  const info = fields(o);
  if (!info || info.skipped === true) return undefined;
  const pvc = info.pvcName === undefined || info.pvcName === '' ? undefined : info.pvcName;
  if (pvc !== undefined && !isSubdomain(pvc)) return undefined;
  const startTime = short(info.startTimestamp);
  const endTime = short(info.completionTimestamp);
  const resultPhase = info.result === 'succeeded' ? 'Completed' : info.result === 'failed' ? 'Failed' : undefined;
  const common = { ...(startTime && { startTime }), ...(endTime && { endTime }) };
  const time = timeOf(endTime, startTime);
  const tiebreak = String(index).padStart(10, '0');
  let volume: BackupVolume;
  if (info.backupMethod === 'CSISnapshot' && info.snapshotDataMoved === true) {
    const dm = fields(info.snapshotDataMovementInfo);
    const namespace = info.pvcNamespace;
    if (!dm || !isLabel(namespace) || pvc === undefined) return undefined;
    const snapshotID = snapshotIdOf(dm.snapshotHandle);
    if (snapshotID === undefined) return undefined;
    const size = byteCount(dm.size);
    const phase = short(dm.Phase) ?? resultPhase;
    volume = { id: `${namespace}:${pvc}`, kind: 'DataUpload', namespace, pvc, uploader: dataMoverUploader(dm.dataMover, dm.uploaderType || 'kopia'), snapshotID, ...(size !== undefined && { size }), ...(phase && { phase }), ...common };
  } else if (info.backupMethod === 'PodVolumeBackup') {
    const pvb = fields(info.pvbInfo);
    const namespace = pvb?.podNamespace;
    const pod = pvb?.podName;
    const vol = pvb?.volumeName;
    if (!pvb || !isLabel(namespace) || !isSubdomain(pod) || !isLabel(vol)) return undefined;
    const snapshotID = snapshotIdOf(pvb.snapshotHandle);
    if (snapshotID === undefined) return undefined;
    const size = byteCount(pvb.size);
    const phase = short(pvb.Phase) ?? resultPhase;
    const uploader = pvb.uploaderType === undefined || pvb.uploaderType === '' ? 'restic' : uploaderName(pvb.uploaderType);
    volume = { id: `${namespace}:${pod}:${vol}`, kind: 'PodVolumeBackup', namespace, pod, volume: vol, ...(pvc !== undefined && { pvc }), uploader, snapshotID, ...(size !== undefined && { size }), ...(phase && { phase }), ...common };
  } else {
    return undefined;
  }
  return { volume, time, tiebreak };
}

const isLabel = (v: unknown): v is string => typeof v === 'string' && isDns1123Label(v);
const isSubdomain = (v: unknown): v is string => typeof v === 'string' && isDns1123Subdomain(v);

/** Orders two entries of one id: the better one is greater. */
function compareCandidates(a: VolumeCandidate, b: VolumeCandidate): number {
  const score = (c: VolumeCandidate): number => (c.volume.phase === 'Completed' ? 2 : 0) + (c.volume.snapshotID !== '' ? 1 : 0);
  return score(a) - score(b) || a.time - b.time || (a.tiebreak < b.tiebreak ? -1 : a.tiebreak > b.tiebreak ? 1 : 0);
}

/**
 * One volume per id, sorted by id. When an id repeats (a PodVolumeBackup retried, a volume listed twice),
 * the entry kept is the completed one with a snapshot, then the newest, then the greatest object name:
 * the same answer whatever order the entries came in.
 */
export function uniqueVolumes(candidates: Iterable<VolumeCandidate | undefined>): BackupVolume[] {
  const best = new Map<string, VolumeCandidate>();
  for (const c of candidates) {
    if (!c) continue;
    const prev = best.get(c.volume.id);
    if (!prev || compareCandidates(c, prev) > 0) best.set(c.volume.id, c);
  }
  return [...best.values()].map((c) => c.volume).sort(byId);
}

/** Volumes in order of their ids (code units: the same order everywhere). */
export function byId(a: BackupVolume, b: BackupVolume): number {
  return a.id < b.id ? -1 : a.id > b.id ? 1 : 0;
}

/** Fills in the PVC of file-system volumes that `from` (the volume info file) names. */
export function withPvcNames(volumes: BackupVolume[], from: readonly BackupVolume[]): BackupVolume[] {
  const pvcs = new Map(from.filter((v) => v.pvc !== undefined).map((v) => [v.id, v.pvc!]));
  return volumes.map((v) => (v.pvc === undefined && pvcs.has(v.id) ? { ...v, pvc: pvcs.get(v.id)! } : v));
}

/**
 * The volume a reference names: its exact id, else the one volume whose PVC name or pod volume name
 * is the reference. NotFoundError when none matches; InvalidTargetError when the name is shared by
 * several volumes (the message lists their ids, which the caller may already list).
 */
export function findVolume(volumes: readonly BackupVolume[], backup: string, ref: string): BackupVolume {
  const exact = volumes.find((v) => v.id === ref);
  if (exact) return exact;
  const named = volumes.filter((v) => v.pvc === ref || v.volume === ref);
  if (named.length === 1) return named[0]!;
  if (named.length > 1) {
    throw new InvalidTargetError(`volume name "${ref}" is ambiguous in backup "${backup}": use one of the ids ${named.map((v) => v.id).join(', ')}`);
  }
  throw new NotFoundError(`backup "${backup}" has no volume "${ref}"`, { group: 'velero.io', kind: 'volumes', name: ref });
}

/** The prefix, relative to the location's, of the Kopia repository of a volume namespace: `kopia/<ns>/`. */
export function repositoryPrefix(namespace: string): string {
  if (!isDns1123Label(namespace)) throw new UnsupportedVolumeError(`volume namespace ${JSON.stringify(namespace)} is not a namespace name: it cannot name a repository`);
  return `kopia/${namespace}/`;
}

/**
 * Where a volume's data can be read, or why not: only Kopia uploads with a snapshot id of a completed
 * upload are readable.
 */
export function readableSnapshot(volume: BackupVolume): { prefix: string; snapshotID: string } {
  if (volume.uploader !== 'kopia') {
    throw new UnsupportedVolumeError(
      volume.uploader === 'restic'
        ? `volume "${volume.id}" was backed up with restic: only Kopia repositories can be read`
        : `volume "${volume.id}" was uploaded by "${volume.uploader}": only Velero's Kopia uploads can be read`,
    );
  }
  if (volume.snapshotID === '' || (volume.phase !== undefined && volume.phase !== 'Completed')) {
    throw new VolumeNotReadyError(
      `volume "${volume.id}" has no snapshot to read (phase ${volume.phase ?? 'unknown'}${volume.snapshotID === '' ? ', no snapshot id: the upload has not completed, failed, or the volume was empty' : ''})`,
    );
  }
  return { prefix: repositoryPrefix(volume.namespace), snapshotID: volume.snapshotID };
}
