/**
 * A Velero installation for kubernetes-mode tests: the Kubernetes API test double with Velero
 * objects (a BackupStorageLocation on a filesystem provider, a Backup, a Restore, DownloadRequests),
 * users with RBAC grants, the gateway's own service account and a kubeconfig for it, and the backup's
 * files under a mount root.
 */
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { group, startKubeApiServer, user } from './kube-apiserver/index.ts';
import type { KubeApiServer, KubeApiServerOptions, KubeObject } from './kube-apiserver/index.ts';

export { velero };

export const NS = 'velero';
export const BACKUP = 'nightly';
export const RESTORE = 'nightly-restore';

export interface KubeFixture {
  api: KubeApiServer;
  dir: string;
  fsRoot: string;
  kubeconfigFile: string;
  /** Bytes of the backup's files, by artifact. */
  files: { log: Buffer; contents: Buffer; restoreLog: Buffer };
  tokens: Record<'alice' | 'bob' | 'carol' | 'dave' | 'erin', string>;
  /** Writes the CA of the gateway's certificate Secret (ca.crt) to a file and returns its path. */
  caFile(): Promise<string>;
  /** Arguments for loadConfig / the gateway process in kubernetes mode against this fixture. */
  args: (...extra: string[]) => string[];
  close(): Promise<void>;
}

const velero = (kind: string, name: string, spec: Record<string, unknown>, namespace = NS): KubeObject => ({
  apiVersion: 'velero.io/v1',
  kind,
  metadata: { name, namespace },
  spec,
});

/** The files of backup BACKUP and restore RESTORE under `fsRoot`, as the hostpath BSL `default` lays them out. */
export async function writeBackupFiles(fsRoot: string): Promise<KubeFixture['files']> {
  const files = { log: randomBytes(4096), contents: randomBytes(3 * 1024 * 1024), restoreLog: randomBytes(512) };
  const backupDir = join(fsRoot, 'bsl-bucket', 'cluster-a', 'backups', BACKUP);
  await mkdir(backupDir, { recursive: true });
  await writeFile(join(backupDir, `${BACKUP}-logs.gz`), files.log);
  await writeFile(join(backupDir, `${BACKUP}.tar.gz`), files.contents);
  const restoreDir = join(fsRoot, 'bsl-bucket', 'cluster-a', 'restores', RESTORE);
  await mkdir(restoreDir, { recursive: true });
  await writeFile(join(restoreDir, `restore-${RESTORE}-logs.gz`), files.restoreLog);
  return files;
}

/**
 * Users: alice may get every artifact of backups and restores in velero; bob only backups/log; carol
 * nothing; dave through the group backup-readers (backups/log and downloadrequests); erin has a token
 * for another audience only.
 */
export async function kubeFixture(opts: KubeApiServerOptions = {}): Promise<KubeFixture> {
  const api = await startKubeApiServer(opts);
  const dir = await mkdtemp(join(tmpdir(), 'vds-kube-'));
  const fsRoot = join(dir, 'mnt');
  const files = await writeBackupFiles(fsRoot);

  api.put(velero('BackupStorageLocation', 'default', { provider: 'replicated.com/hostpath', objectStorage: { bucket: 'bsl-bucket', prefix: 'cluster-a' } }));
  api.put(velero('Backup', BACKUP, { storageLocation: 'default' }));
  api.put(velero('Restore', RESTORE, { backupName: BACKUP }));
  api.put(velero('DownloadRequest', 'dr-log', { target: { kind: 'BackupLog', name: BACKUP } }));
  api.put(velero('DownloadRequest', 'dr-restore-log', { target: { kind: 'RestoreLog', name: RESTORE } }));

  const gatewayToken = api.tokens.serviceAccount(NS, 'velero-download-server');
  const kubeconfigFile = await api.writeKubeconfig(join(dir, 'kubeconfig'), api.kubeconfig(gatewayToken));

  const all = ['log', 'contents', 'results', 'resourcelist', 'volumesnapshots', 'itemoperations', 'csivolumesnapshots', 'csivolumesnapshotcontents', 'volumeinfos'];
  const tokens = {
    alice: api.tokens.user('alice', ['system:authenticated']),
    bob: api.tokens.user('bob', ['system:authenticated']),
    carol: api.tokens.user('carol', ['system:authenticated']),
    dave: api.tokens.user('dave', ['backup-readers', 'system:authenticated']),
    erin: api.tokens.user('erin', ['system:authenticated'], ['some-other-audience']),
  };
  api.rbac.grant(
    user('alice'),
    [{ apiGroups: ['velero.io'], resources: [...all.map((a) => `backups/${a}`), 'restores/log', 'restores/results', 'downloadrequests'], verbs: ['get'] }],
    NS,
  );
  api.rbac.grant(user('bob'), [{ apiGroups: ['velero.io'], resources: ['backups/log'], verbs: ['get'] }], NS);
  api.rbac.grant(group('backup-readers'), [{ apiGroups: ['velero.io'], resources: ['backups/log', 'downloadrequests'], verbs: ['get'] }], NS);
  api.rbac.grant(user('erin'), [{ apiGroups: ['velero.io'], resources: ['backups/log'], verbs: ['get'] }], NS);

  return {
    api,
    dir,
    fsRoot,
    kubeconfigFile,
    files,
    tokens,
    async caFile() {
      const secret = api.get('v1', 'Secret', 'velero-download-server-certs', NS) as { data?: Record<string, string> } | undefined;
      const ca = secret?.data?.['ca.crt'];
      if (!ca) throw new Error('the certificate Secret has no ca.crt yet');
      const file = join(dir, 'ca.crt');
      await writeFile(file, Buffer.from(ca, 'base64'));
      return file;
    },
    args: (...extra) => ['--mode', 'kubernetes', '--kubeconfig', kubeconfigFile, '--namespace', NS, '--fs-root', fsRoot, '--state-dir', join(dir, 'state'), '--tls-extra-sans', '127.0.0.1,localhost', ...extra],
    async close() {
      await api.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
}
