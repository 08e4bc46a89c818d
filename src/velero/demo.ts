/**
 * A small but real demo backup and restore, written into an empty data directory on first start so a
 * new user has something to download: every artifact file Velero writes, gzip'd like Velero's, a
 * contents tarball with resource JSON at the tarball paths Velero uses, and one file-system volume
 * backup: a Kopia repository made by Velero's kopia (scripts/make-demo-volume.sh, committed under
 * demo/volume) with the PodVolumeBackup record that names its snapshot.
 */
import { mkdir, readFile, readdir, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { gzipSync } from 'node:zlib';
import tar from 'tar-stream';
import { BACKUP_ARTIFACTS, RESTORE_ARTIFACTS } from './artifacts.ts';

export const DEMO_BACKUP = 'demo-backup';
export const DEMO_RESTORE = 'demo-restore';

/** The demo volume: pod web-0's volume `html` in namespace demo-app, keyed with Velero's default password. */
export const DEMO_VOLUME = { namespace: 'demo-app', pod: 'web-0', volume: 'html', password: 'static-passw0rd' } as const;
const DEMO_VOLUME_DIR = new URL('../../demo/volume/', import.meta.url);

/** The demo repository's blobs (object key → bytes) and its snapshot's id. */
async function demoVolume(): Promise<{ blobs: Map<string, Buffer>; snapshotID: string; size: number }> {
  const { snapshotID, size } = JSON.parse(await readFile(new URL('snapshot.json', DEMO_VOLUME_DIR), 'utf8')) as { snapshotID: string; size: number };
  const blobs = new Map<string, Buffer>();
  for (const id of await readdir(new URL('repository/', DEMO_VOLUME_DIR))) {
    blobs.set(`kopia/${DEMO_VOLUME.namespace}/${id}`, await readFile(new URL(`repository/${id}`, DEMO_VOLUME_DIR)));
  }
  return { blobs, snapshotID, size };
}

/** The PodVolumeBackup Velero keeps for the demo volume, as it writes them to `<b>-podvolumebackups.json.gz`. */
function demoPodVolumeBackup(snapshotID: string, size: number, at: Date): Record<string, unknown> {
  const time = at.toISOString().replace(/\.\d+Z$/, 'Z');
  return {
    apiVersion: 'velero.io/v1',
    kind: 'PodVolumeBackup',
    metadata: { name: `${DEMO_BACKUP}-7kq2x`, namespace: 'velero', labels: { 'velero.io/backup-name': DEMO_BACKUP, 'velero.io/pvc-name': 'html' } },
    spec: {
      backupStorageLocation: 'default',
      node: 'node-1',
      pod: { kind: 'Pod', namespace: DEMO_VOLUME.namespace, name: DEMO_VOLUME.pod },
      volume: DEMO_VOLUME.volume,
      uploaderType: 'kopia',
      repoIdentifier: '',
      tags: { backup: DEMO_BACKUP, ns: DEMO_VOLUME.namespace, pod: DEMO_VOLUME.pod, volume: DEMO_VOLUME.volume },
    },
    status: { phase: 'Completed', snapshotID, path: `/host_pods/${DEMO_VOLUME.namespace}/${DEMO_VOLUME.pod}/volumes/${DEMO_VOLUME.volume}`, startTimestamp: time, completionTimestamp: time, progress: { totalBytes: size, bytesDone: size } },
  };
}

const json = (v: unknown): Buffer => Buffer.from(JSON.stringify(v, null, 2) + '\n');

function logLines(at: Date, lines: [level: string, msg: string, extra: string][]): Buffer {
  return Buffer.from(
    lines.map(([level, msg, extra], i) => `time="${new Date(at.getTime() + i * 1000).toISOString()}" level=${level} msg="${msg}" ${extra}\n`).join(''),
  );
}

const RESOURCES: Record<string, unknown> = {
  'resources/namespaces/cluster/demo-app.json': { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'demo-app' } },
  'resources/configmaps/namespaces/demo-app/app-config.json': {
    apiVersion: 'v1',
    kind: 'ConfigMap',
    metadata: { name: 'app-config', namespace: 'demo-app' },
    data: { greeting: 'hello from a Velero backup' },
  },
  'resources/deployments.apps/namespaces/demo-app/web.json': {
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: { name: 'web', namespace: 'demo-app' },
    spec: { replicas: 1, selector: { matchLabels: { app: 'web' } }, template: { metadata: { labels: { app: 'web' } }, spec: { containers: [{ name: 'web', image: 'nginx:1.27' }] } } },
  },
};

/** The tarball as Velero writes it: metadata/version plus one JSON file per item, gzip'd. */
export async function demoTarball(): Promise<Buffer> {
  const pack = tar.pack();
  const chunks: Buffer[] = [];
  pack.on('data', (c: unknown) => chunks.push(c as Buffer));
  const done = new Promise<void>((resolve, reject) => {
    pack.on('end', resolve);
    pack.on('error', reject);
  });
  const entries: [string, Buffer][] = [['metadata/version', Buffer.from('1.1.0\n')], ...Object.entries(RESOURCES).map(([p, v]) => [p, json(v)] as [string, Buffer])];
  // The apps group is also written under its preferred version, as Velero does.
  entries.push(['resources/deployments.apps/v1-preferredversion/namespaces/demo-app/web.json', json(RESOURCES['resources/deployments.apps/namespaces/demo-app/web.json'])]);
  for (const [name, body] of entries) pack.entry({ name, mode: 0o644, mtime: new Date(0) }, body);
  pack.finalize();
  await done;
  return gzipSync(Buffer.concat(chunks));
}

/** Every demo file: object key → bytes. */
export async function demoFiles(now = new Date()): Promise<Map<string, Buffer>> {
  const b = DEMO_BACKUP;
  const r = DEMO_RESTORE;
  const files = new Map<string, Buffer>();
  const volume = await demoVolume();
  const backupContent: Record<string, Buffer> = {
    log: logLines(now, [
      ['info', 'Setting up backup log', `backup=velero/${b} logSource="pkg/controller/backup_controller.go:604"`],
      ['info', 'Backing up item', `backup=velero/${b} name=app-config namespace=demo-app resource=configmaps`],
      ['info', 'Backing up item', `backup=velero/${b} name=web namespace=demo-app resource=deployments.apps`],
      ['info', 'Backed up a total of 3 items', `backup=velero/${b} logSource="pkg/backup/backup.go:531" progress=`],
    ]),
    contents: await demoTarball(),
    volumesnapshots: json([]),
    itemoperations: json([]),
    resourcelist: json({
      'apps/v1/Deployment': ['demo-app/web'],
      'v1/ConfigMap': ['demo-app/app-config'],
      'v1/Namespace': ['demo-app'],
    }),
    results: json({ errors: {}, warnings: {} }),
    csivolumesnapshots: json([]),
    csivolumesnapshotcontents: json([]),
    volumeinfos: json([
      {
        pvcName: DEMO_VOLUME.volume,
        pvcNamespace: DEMO_VOLUME.namespace,
        backupMethod: 'PodVolumeBackup',
        result: 'succeeded',
        pvbInfo: { snapshotHandle: volume.snapshotID, size: volume.size, uploaderType: 'kopia', volumeName: DEMO_VOLUME.volume, podName: DEMO_VOLUME.pod, podNamespace: DEMO_VOLUME.namespace, nodeName: 'node-1', Phase: 'Completed' },
      },
    ]),
  };
  for (const def of BACKUP_ARTIFACTS) {
    const content = backupContent[def.artifact] ?? json([]);
    // The tarball is gzip'd already; every other artifact is gzip'd text or JSON.
    files.set(def.key(b), def.artifact === 'contents' ? content : gzipSync(content));
  }
  files.set(`backups/${b}/${b}-podvolumebackups.json.gz`, gzipSync(json([demoPodVolumeBackup(volume.snapshotID, volume.size, now)])));
  for (const [key, blob] of volume.blobs) files.set(key, blob);
  files.set(`backups/${b}/velero-backup.json`, json({
    apiVersion: 'velero.io/v1',
    kind: 'Backup',
    metadata: { name: b, namespace: 'velero' },
    spec: { includedNamespaces: ['demo-app'], storageLocation: 'default', ttl: '720h0m0s' },
    status: { phase: 'Completed', version: 1, formatVersion: '1.1.0', startTimestamp: now.toISOString(), completionTimestamp: now.toISOString(), progress: { totalItems: 3, itemsBackedUp: 3 } },
  }));

  const restoreContent: Record<string, Buffer> = {
    log: logLines(now, [
      ['info', 'starting restore', `restore=velero/${r} logSource="pkg/controller/restore_controller.go:560"`],
      ['info', 'Restored 3 items out of an estimated total of 3', `restore=velero/${r}`],
      ['info', 'restore completed', `restore=velero/${r}`],
    ]),
    results: json({ errors: {}, warnings: {} }),
    resourcelist: json({ 'apps/v1/Deployment': ['demo-app/web(created)'], 'v1/ConfigMap': ['demo-app/app-config(created)'], 'v1/Namespace': ['demo-app(created)'] }),
  };
  for (const def of RESTORE_ARTIFACTS) files.set(def.key(r), gzipSync(restoreContent[def.artifact] ?? json([])));
  return files;
}

/**
 * Writes the demo into `dir` when it is missing or empty; a directory with anything in it is left
 * alone. Returns the keys written (none when it left the directory alone).
 */
export async function writeDemoIfEmpty(dir: string): Promise<string[]> {
  await mkdir(dir, { recursive: true });
  if ((await readdir(dir)).length > 0) return [];
  const files = await demoFiles();
  for (const [key, body] of files) {
    const path = join(dir, ...key.split('/'));
    await mkdir(dirname(path), { recursive: true });
    await writeFile(path, body);
  }
  return [...files.keys()];
}
