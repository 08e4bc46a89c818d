/**
 * A backup's volumes from its own files in the store, for when Velero's PodVolumeBackups and
 * DataUploads are gone from the cluster (deleted, or never there: local mode, another cluster's
 * backups): `backups/<b>/<b>-podvolumebackups.json.gz` and `backups/<b>/<b>-volumeinfo.json.gz`.
 *
 * Who writes them: whoever can write the location's bucket, which for a tenant's location is the
 * tenant. So the reads are bounded before anything is trusted: at most MAX_GZIP_BYTES are read, at
 * most MAX_JSON_BYTES are inflated (a gzip bomb stops there), at most MAX_PARSES files are parsed at
 * once across the process, and the JSON must be an array whose entries volumes-parse.ts checks one
 * by one. A file that breaks a bound, is not gzip or not a JSON array is an InvalidBackupFileError
 * naming the file and the bound, never its content.
 */
import { promisify } from 'node:util';
import { gunzip } from 'node:zlib';
import type { StoreSpec } from '../stores/spec.ts';
import type { ObjectStore } from '../stores/types.ts';
import { TtlCache } from '../util/ttl-cache.ts';
import type { PromiseOr } from '../util/promise-or.ts';
import { isDns1123Subdomain } from './artifacts.ts';
import { InvalidBackupFileError, InvalidTargetError } from './errors.ts';
import { uniqueVolumes, volumeOfPodVolumeBackup, volumeOfVolumeInfo, withPvcNames } from './volumes-parse.ts';
import type { EntryContext } from './volumes-parse.ts';
import type { BackupVolume } from './volumes.ts';
import { bytesOf } from './object-bytes.ts';

/** The most compressed bytes read of one file. */
export const MAX_GZIP_BYTES = 16 * 1024 * 1024;
/** The most bytes one file may inflate to (about 10,000 PodVolumeBackups). */
export const MAX_JSON_BYTES = 16 * 1024 * 1024;
/** Files read and parsed at once in this process: each may hold MAX_JSON_BYTES and its parse. */
export const MAX_PARSES = 2;
/** How long the volumes read from a backup's files are reused (backup files do not change once written). */
export const FILE_VOLUMES_TTL_MS = 30_000;

const gunzipAsync = promisify(gunzip);

export type VolumeKind = BackupVolume['kind'];

/** The keys of a backup's volume files, relative to the location's prefix. */
export function volumeFileKeys(backup: string): { podVolumeBackups: string; volumeInfo: string } {
  // The name becomes part of a key: only a Kubernetes object name may.
  if (!isDns1123Subdomain(backup)) throw new InvalidTargetError(`invalid backup name ${JSON.stringify(backup)}: must be a DNS-1123 subdomain`);
  return { podVolumeBackups: `backups/${backup}/${backup}-podvolumebackups.json.gz`, volumeInfo: `backups/${backup}/${backup}-volumeinfo.json.gz` };
}

/** A small FIFO semaphore. */
class Gate {
  #free: number;
  readonly #waiting: (() => void)[] = [];
  constructor(n: number) {
    this.#free = n;
  }
  async run<T>(signal: AbortSignal, f: () => Promise<T>): Promise<T> {
    signal.throwIfAborted();
    if (this.#free > 0) this.#free--;
    else {
      await new Promise<void>((resolve, reject) => {
        const go = (): void => {
          signal.removeEventListener('abort', onAbort);
          resolve();
        };
        const onAbort = (): void => {
          const i = this.#waiting.indexOf(go);
          if (i >= 0) this.#waiting.splice(i, 1);
          reject(signal.reason as Error);
        };
        this.#waiting.push(go);
        signal.addEventListener('abort', onAbort, { once: true });
      });
    }
    try {
      return await f();
    } finally {
      const next = this.#waiting.shift();
      if (next) next();
      else this.#free++;
    }
  }
}

const parses = new Gate(MAX_PARSES);

/**
 * The JSON array in a gzipped object of the store, within the bounds; undefined when the object does
 * not exist. `limits` lowers the bounds (tests).
 */
export async function readGzippedJsonArray(
  store: ObjectStore,
  key: string,
  signal: AbortSignal,
  limits: { gzipBytes?: number; jsonBytes?: number } = {},
): Promise<unknown[] | undefined> {
  const maxGzip = limits.gzipBytes ?? MAX_GZIP_BYTES;
  const maxJson = limits.jsonBytes ?? MAX_JSON_BYTES;
  return parses.run(signal, async () => {
    let body;
    try {
      body = await store.get(key, { signal });
    } catch (err) {
      // Stores' stable reason: velero may not import the stores' error classes as values.
      if ((err as { reason?: unknown }).reason === 'ObjectNotFound') return undefined;
      throw err;
    }
    const gzipped = await bytesOf(body, maxGzip);
    if (!gzipped) {
      throw new InvalidBackupFileError(body.size > maxGzip ? `${key} is ${body.size} bytes, more than the ${maxGzip} bytes the gateway reads` : `${key} is more than the ${maxGzip} bytes the gateway reads`);
    }
    let text: Buffer;
    try {
      text = await gunzipAsync(gzipped, { maxOutputLength: maxJson });
    } catch (err) {
      const tooLarge = (err as { code?: unknown }).code === 'ERR_BUFFER_TOO_LARGE' || err instanceof RangeError;
      throw new InvalidBackupFileError(tooLarge ? `${key} inflates to more than the ${maxJson} bytes the gateway reads` : `${key} is not a gzip file`);
    }
    let parsed: unknown;
    try {
      parsed = JSON.parse(text.toString('utf8'));
    } catch {
      throw new InvalidBackupFileError(`${key} is not JSON`);
    }
    // Velero writes `null` for an empty list.
    if (parsed === null) return [];
    if (!Array.isArray(parsed)) throw new InvalidBackupFileError(`${key} is not a JSON array`);
    return parsed as unknown[];
  });
}

/**
 * The volumes of `kinds` a backup's files list. File-system volumes come from the podvolumebackups
 * file, else from the volume info file's `pvbInfo` entries; both carry PVC names from the volume info
 * file. Data-mover volumes come from the volume info file. A file that does not exist lists none.
 */
export async function volumesFromBackupFiles(store: ObjectStore, ctx: EntryContext, kinds: ReadonlySet<VolumeKind>, signal: AbortSignal): Promise<BackupVolume[]> {
  const keys = volumeFileKeys(ctx.backup);
  const [pvbs, infos] = await Promise.all([
    kinds.has('PodVolumeBackup') ? readGzippedJsonArray(store, keys.podVolumeBackups, signal) : undefined,
    readGzippedJsonArray(store, keys.volumeInfo, signal),
  ]);
  const fromInfo = uniqueVolumes((infos ?? []).map((e, i) => volumeOfVolumeInfo(e, i)));
  const out: BackupVolume[] = [];
  if (kinds.has('PodVolumeBackup')) {
    const fromPvbs = uniqueVolumes((pvbs ?? []).map((e) => volumeOfPodVolumeBackup(e, ctx)));
    const fs = fromPvbs.length > 0 ? fromPvbs : fromInfo.filter((v) => v.kind === 'PodVolumeBackup');
    out.push(...withPvcNames(fs, fromInfo));
  }
  if (kinds.has('DataUpload')) out.push(...fromInfo.filter((v) => v.kind === 'DataUpload'));
  return out;
}

/**
 * volumesFromBackupFiles behind a short cache shared by concurrent callers, keyed by the location (its
 * name, provider, bucket and prefix), the backup and the kinds asked for. Failures are not kept.
 */
export class BackupFileVolumes {
  readonly #cache = new TtlCache<{ volumes: BackupVolume[] }>({ max: 1_000, ttl: () => FILE_VOLUMES_TTL_MS });

  async get(spec: StoreSpec, store: () => PromiseOr<ObjectStore>, ctx: EntryContext, kinds: ReadonlySet<VolumeKind>, signal: AbortSignal): Promise<BackupVolume[]> {
    const key = this.#cache.keyOf(spec.name, spec.provider, spec.bucket, spec.prefix, ctx.backup, ctx.location ?? '', [...kinds].sort().join(','));
    return (await this.#cache.get(key, async (s) => ({ volumes: await volumesFromBackupFiles(await store(), ctx, kinds, s) }), { signal })).volumes;
  }
}
