/**
 * A volume backup as Velero leaves it in object storage, made with the real kopia (the binary
 * `npm run tools` builds): a repository with Velero's settings (BLAKE2B-256-128,
 * AES256-GCM-HMAC-SHA256, DYNAMIC-4M-BUZHASH, Velero's default password) on kopia's filesystem
 * storage in a temp directory, one snapshot of a generated tree taken the way Velero's uploader
 * takes it (source default@default:snapshot-pod-volume/kopia/<ns>/<pod>/<volume>, its description,
 * pin and tags), then every blob copied into a bucket at `<prefix>/kopia/<ns>/<blob id>` with the
 * backup's `<b>-podvolumebackups.json.gz` naming the snapshot.
 */
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { createWriteStream } from 'node:fs';
import { mkdir, readdir, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { gzipSync } from 'node:zlib';
import type { S3rverInstance } from '../../test/support/s3rver.ts';
import { TOOLS_BIN } from '../../test/support/real-cluster.ts';
import { writeRandomFile } from './files.ts';
import { commandLine, run } from './proc.ts';
import { MiB } from './report.ts';

/** Velero's default repository password (pkg/repository/keys/keys.go). */
export const VELERO_PASSWORD = 'static-passw0rd';
const KOPIA = join(TOOLS_BIN, 'kopia');

export interface VolumeTree {
  /** `big/volume.img`: fresh random bytes (nothing for kopia to deduplicate or compress). */
  bigSize: number;
  /** `flat/f00000` ...: distinct files of 1 KiB, one directory (the listing figure). */
  flatFiles: number;
  /** `tree/d00/file.bin` ...: one 64 KiB file per directory (first bytes of files whose directory was not read yet). */
  treeDirs: number;
  /**
   * Bytes of a second volume's one file, `big/volume.txt` (hex text of random bytes: about 2:1 for
   * zstd, nothing to deduplicate), snapshotted with compression zstd as `<volume>-zstd`; 0 for none.
   */
  zstdSize: number;
}

export interface MadeVolume {
  /** The source tree (its `big/volume.img` is the reference object's bytes too). */
  source: string;
  /** The repository on kopia's filesystem storage (flat: blob <id> is the file <id>.f). */
  repo: string;
  /** The snapshot of the tree, compression none (what Velero's uploader sets). */
  snapshotID: string;
  /** The zstd volume's snapshot and source tree, when asked for. */
  zstd?: { volume: string; snapshotID: string; source: string };
  /** Contents in the index, as `kopia content list` counts them. */
  contents: number;
  /** The largest content's original length (the splitter's largest chunk here). */
  largestContent: number;
  /** The kopia commands that made it. */
  commands: string[];
  /** `kopia --version`'s first line. */
  kopiaVersion: string;
}

export const treeDirName = (i: number): string => `d${String(i).padStart(3, '0')}`;

async function writeTree(root: string, t: VolumeTree): Promise<void> {
  await writeRandomFile(join(root, 'big', 'volume.img'), t.bigSize, true);
  await mkdir(join(root, 'flat'), { recursive: true });
  for (let i = 0; i < t.flatFiles; i += 500) {
    await Promise.all(
      Array.from({ length: Math.min(500, t.flatFiles - i) }, (_, j) => writeFile(join(root, 'flat', `f${String(i + j).padStart(5, '0')}`), randomBytes(1024))),
    );
  }
  for (let i = 0; i < t.treeDirs; i++) {
    await mkdir(join(root, 'tree', treeDirName(i)), { recursive: true });
    await writeFile(join(root, 'tree', treeDirName(i), 'file.bin'), randomBytes(64 * 1024));
  }
}

/** Hex text of fresh random bytes, 8 MiB at a time. */
async function writeHexText(path: string, size: number): Promise<void> {
  await mkdir(dirname(path), { recursive: true });
  const out = createWriteStream(path);
  for (let left = size; left > 0; left -= 8 * MiB) {
    if (!out.write(randomBytes(Math.min(left, 8 * MiB) / 2).toString('hex'))) await once(out, 'drain');
  }
  await new Promise<void>((resolve, reject) => out.end((err?: Error | null) => (err ? reject(err) : resolve())));
}

/** Makes the tree and its repository in `dir` (source/, repo/, kopia/ for the config, cache and logs). */
export async function makeVolume(dir: string, tree: VolumeTree, owner: { namespace: string; pod: string; volume: string }): Promise<MadeVolume> {
  const source = join(dir, 'source');
  const repo = join(dir, 'repo');
  const state = join(dir, 'kopia');
  await writeTree(source, tree);
  const env = { ...process.env, KOPIA_PASSWORD: VELERO_PASSWORD, KOPIA_CHECK_FOR_UPDATES: 'false', KOPIA_PERSIST_CREDENTIALS_ON_CONNECT: 'false' };
  const commands: string[] = [];
  const kopia = async (args: string[]): Promise<string> => {
    const full = [`--config-file=${join(state, 'repo.config')}`, `--log-dir=${join(state, 'logs')}`, '--no-progress', '--no-auto-maintenance', ...args];
    commands.push(`KOPIA_PASSWORD=… ${commandLine('kopia', full)}`);
    const r = await run(KOPIA, full, { env });
    if (r.code !== 0) throw new Error(`kopia ${args.slice(0, 2).join(' ')} failed (exit ${String(r.code)}):\n${r.stderr.slice(-2000)}`);
    return r.stdout;
  };
  // Velero passes only hash, encryption and splitter; kopia's defaults do the rest (format v3,
  // index v2, scrypt-65536-8-1, no ECC).
  await kopia([
    'repository', 'create', 'filesystem', '--flat', `--path=${repo}`,
    '--block-hash=BLAKE2B-256-128', '--encryption=AES256-GCM-HMAC-SHA256', '--object-splitter=DYNAMIC-4M-BUZHASH', '--ecc-overhead-percent=0',
    `--cache-directory=${join(state, 'cache')}`, '--override-hostname=default', '--override-username=default',
  ]);
  // As Velero's uploader snapshots a pod volume: its source name, description, pin and tags.
  const snapshot = async (path: string, volume: string, compression: string): Promise<string> => {
    const sourceName = `default@default:snapshot-pod-volume/kopia/${owner.namespace}/${owner.pod}/${volume}`;
    await kopia(['policy', 'set', sourceName, `--compression=${compression}`]);
    const args = ['snapshot', 'create', path, `--override-source=${sourceName}`, '--description=Kopia Uploader', '--pin=velero-pin'];
    return (JSON.parse(await kopia([...args, '--tags=snapshot-requester:snapshot-pod-volume', '--tags=snapshot-uploader:kopia', '--json'])) as { id: string }).id;
  };
  const snapshotID = await snapshot(source, owner.volume, 'none');
  let zstd: MadeVolume['zstd'];
  if (tree.zstdSize > 0) {
    const zstdSource = join(dir, 'source-zstd');
    await writeHexText(join(zstdSource, 'big', 'volume.txt'), tree.zstdSize);
    const volume = `${owner.volume}-zstd`;
    zstd = { volume, snapshotID: await snapshot(zstdSource, volume, 'zstd'), source: zstdSource };
  }
  const contents = (await kopia(['content', 'list', '--json'])).trim();
  const list = JSON.parse(contents) as { originalLength?: number; length: number }[];
  return {
    source,
    repo,
    snapshotID,
    ...(zstd && { zstd }),
    contents: list.length,
    largestContent: Math.max(...list.map((c) => c.originalLength ?? c.length)),
    commands,
    kopiaVersion: (await run(KOPIA, ['--version'])).stdout.split('\n')[0]!.trim(),
  };
}

/** Copies every blob of the repository into the bucket under `<prefix>/kopia/<namespace>/`; returns how many. */
export async function uploadRepository(s3: S3rverInstance, repo: string, prefix: string, namespace: string): Promise<number> {
  // kopia's flat filesystem storage: blob <id> is <id>.f; .shards (its layout file) is not a blob.
  const blobs = (await readdir(repo)).filter((f) => f.endsWith('.f')).map((f) => f.slice(0, -2));
  const queue = [...blobs];
  const worker = async (): Promise<void> => {
    for (let id = queue.shift(); id !== undefined; id = queue.shift()) await s3.putFile(`${prefix}/kopia/${namespace}/${id}`, join(repo, `${id}.f`));
  };
  await Promise.all(Array.from({ length: 4 }, worker));
  return blobs.length;
}

/** The backup's records that name the volume: `<b>-podvolumebackups.json.gz` and `velero-backup.json`. */
export async function uploadBackupRecords(
  s3: S3rverInstance,
  prefix: string,
  backup: string,
  volumes: { namespace: string; pod: string; volume: string; snapshotID: string; size: number }[],
): Promise<void> {
  const now = new Date().toISOString().replace(/\.\d+Z$/, 'Z');
  const pvbs = volumes.map((volume, i) => ({
    apiVersion: 'velero.io/v1',
    kind: 'PodVolumeBackup',
    metadata: { name: `${backup}-x7k2${i}`, namespace: 'velero', labels: { 'velero.io/backup-name': backup } },
    spec: {
      backupStorageLocation: 'default',
      node: 'node-1',
      pod: { kind: 'Pod', namespace: volume.namespace, name: volume.pod },
      volume: volume.volume,
      uploaderType: 'kopia',
      repoIdentifier: '',
      tags: { backup, ns: volume.namespace, pod: volume.pod, volume: volume.volume },
    },
    status: {
      phase: 'Completed',
      snapshotID: volume.snapshotID,
      path: `/host_pods/${volume.namespace}/${volume.pod}/volumes/${volume.volume}`,
      startTimestamp: now,
      completionTimestamp: now,
      progress: { totalBytes: volume.size, bytesDone: volume.size },
    },
  }));
  await s3.put(`${prefix}/backups/${backup}/${backup}-podvolumebackups.json.gz`, gzipSync(JSON.stringify(pvbs)));
  await s3.put(
    `${prefix}/backups/${backup}/velero-backup.json`,
    Buffer.from(JSON.stringify({ apiVersion: 'velero.io/v1', kind: 'Backup', metadata: { name: backup, namespace: 'velero' }, status: { phase: 'Completed', startTimestamp: now, completionTimestamp: now } })),
  );
}
