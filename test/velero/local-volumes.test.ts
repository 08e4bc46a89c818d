/**
 * Local mode's volumes: no cluster, only the backups' files, in whichever location holds the backup,
 * through real filesystem stores on temp dirs; and the repository it names opens with the real Kopia
 * reader on a repository made by the real kopia (the committed fixture), laid out as Velero lays it.
 */
import assert from 'node:assert/strict';
import { copyFile, mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { openRepository } from '../../src/kopia/repository.ts';
import { FilesystemStore } from '../../src/stores/fs.ts';
import type { StoreFactory, StoreSpec } from '../../src/stores/spec.ts';
import type { ObjectStore } from '../../src/stores/types.ts';
import { InvalidTargetError, NotFoundError, UnsupportedVolumeError } from '../../src/velero/errors.ts';
import { LocalResolver, LocalVolumeResolver } from '../../src/velero/resolve.ts';
import type { Location } from '../../src/velero/resolve.ts';
import { volumeFileKeys } from '../../src/velero/volumes-files.ts';
import { VELERO_DEFAULT_REPOSITORY_PASSWORD } from '../../src/velero/volumes.ts';
import { PASSWORD, loadManifest, repoDir } from '../kopia/fixture-support.ts';
import { dataMoverInfo, gzJson, podVolumeBackup } from '../support/velero-volumes.ts';

const spec = (name: string): StoreSpec => ({ name, provider: 'filesystem', bucket: '', prefix: '', config: {} });

describe('LocalVolumeResolver on temp data directories', () => {
  let root: string;
  const stores = new Map<string, ObjectStore>();
  const factory: StoreFactory = { forSpec: async (s) => stores.get(s.name)! };
  const specs = [spec('data-dir'), spec('second')];
  // As local mode probes: a stat, false when the object is not there.
  const probe = async (loc: Location, signal: AbortSignal): Promise<boolean> => {
    try {
      await stores.get(loc.spec.name)!.stat(loc.key, { signal });
      return true;
    } catch (err) {
      if ((err as { reason?: string }).reason === 'ObjectNotFound') return false;
      throw err;
    }
  };
  const signal = new AbortController().signal;
  let snapshotID = '';
  const put = async (location: string, key: string, bytes: Buffer | string): Promise<void> => {
    const path = join(root, location, key);
    await mkdir(dirname(path), { recursive: true });
    await writeFile(path, bytes);
  };

  before(async () => {
    root = await mkdtemp(join(tmpdir(), 'vds-local-volumes-'));
    for (const s of specs) {
      await mkdir(join(root, s.name), { recursive: true });
      stores.set(s.name, new FilesystemStore({ root: join(root, s.name) }));
    }
    // A repository made by the real kopia with Velero's settings, at kopia/app/ of the second location (object naming).
    const dir = join(root, 'second', 'kopia', 'app');
    await mkdir(dir, { recursive: true });
    for (const f of await readdir(repoDir('velero-chacha20'))) if (f.endsWith('.f')) await copyFile(join(repoDir('velero-chacha20'), f), join(dir, f.slice(0, -2)));
    snapshotID = (await loadManifest('velero-chacha20')).snapshots[0]!.id;
    // b-one in the data dir: a restic volume; b-two in the second location only: a Kopia volume and a data-mover one.
    await put('data-dir', 'backups/b-one/velero-backup.json', '{}');
    await put('data-dir', volumeFileKeys('b-one').podVolumeBackups, gzJson([podVolumeBackup({ backup: 'b-one', podNamespace: 'app', pod: 'p', volume: 'v', uploaderType: 'restic', snapshotID: 'abcd' })]));
    await put('second', 'backups/b-two/velero-backup.json', '{}');
    await put('second', volumeFileKeys('b-two').podVolumeBackups, gzJson([podVolumeBackup({ backup: 'b-two', podNamespace: 'app', pod: 'web-0', volume: 'data', snapshotID })]));
    await put('second', volumeFileKeys('b-two').volumeInfo, gzJson([dataMoverInfo({ pvcNamespace: 'db', pvc: 'pg-data', snapshotHandle: '0123456789abcdef0123456789abcdef' })]));
    await put('data-dir', 'backups/bare/velero-backup.json', '{}');
  });
  after(() => rm(root, { recursive: true, force: true }));

  const resolver = (password = PASSWORD, list = specs): LocalVolumeResolver => new LocalVolumeResolver(new LocalResolver('velero', list, list.length > 1 ? probe : undefined), factory, { password });

  test('volumes from the files of whichever location holds the backup', async () => {
    const r = resolver();
    assert.deepEqual((await r.volumes('velero', 'b-one', signal)).map((v) => [v.id, v.uploader]), [['app:p:v', 'restic']]);
    assert.deepEqual((await r.volumes('velero', 'b-two', signal)).map((v) => v.id), ['app:web-0:data', 'db:pg-data']);
    assert.deepEqual(await r.volumes('velero', 'bare', signal), []);
  });

  test('the repository it names opens with the Kopia reader: the location, kopia/<namespace>/, the snapshot, the password given', async () => {
    const repo = await resolver().repository('velero', 'b-two', 'data', signal);
    assert.equal(repo.spec.name, 'second');
    assert.equal(repo.prefix, 'kopia/app/');
    assert.equal(repo.snapshotID, snapshotID);
    assert.equal(repo.password, PASSWORD);
    const kopia = await openRepository(await factory.forSpec(repo.spec), { prefix: repo.spec.prefix + repo.prefix, naming: 'object', password: repo.password, signal });
    assert.equal((await kopia.snapshot(repo.snapshotID, signal)).id, snapshotID);
    assert.equal(VELERO_DEFAULT_REPOSITORY_PASSWORD, PASSWORD, "the fixtures use Velero's default password");
    await assert.rejects(resolver().repository('velero', 'b-one', 'app:p:v', signal), UnsupportedVolumeError);
  });

  test('an unknown backup, another namespace, a name that is not a Kubernetes name: refused; with one location the backup is still looked for', async () => {
    await assert.rejects(resolver().volumes('velero', 'missing', signal), NotFoundError);
    await assert.rejects(resolver().volumes('team-a', 'b-one', signal), NotFoundError);
    await assert.rejects(resolver().volumes('velero', '../second/backups/b-two', signal), InvalidTargetError);
    const one = resolver(PASSWORD, [specs[0]!]);
    await assert.rejects(one.volumes('velero', 'missing', signal), (e: unknown) => e instanceof NotFoundError && /backup "missing" not found in location data-dir/.test(e.message));
    assert.equal((await one.volumes('velero', 'b-one', signal)).length, 1);
  });

  test('a backup found once is not looked for again while its volumes are cached', async () => {
    const base = stores.get('data-dir')!;
    const stats: string[] = [];
    stores.set('data-dir', { ...base, get: (k, o) => base.get(k, o), list: (p, o) => base.list(p, o), stat: (k, o) => (stats.push(k), base.stat(k, o)) });
    try {
      const one = resolver(PASSWORD, [specs[0]!]);
      for (let i = 0; i < 3; i++) assert.equal((await one.volumes('velero', 'b-one', signal)).length, 1);
      assert.deepEqual(stats.filter((k) => k.endsWith('velero-backup.json')), ['backups/b-one/velero-backup.json']);
    } finally {
      stores.set('data-dir', base);
    }
  });
});
