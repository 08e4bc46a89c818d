import assert from 'node:assert/strict';
import { mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { gunzipSync } from 'node:zlib';
import { BACKUP_ARTIFACTS, RESTORE_ARTIFACTS } from '../../src/velero/artifacts.ts';
import { openRepository } from '../../src/kopia/repository.ts';
import { FilesystemStore } from '../../src/stores/fs.ts';
import { untar } from '../support/tar.ts';
import { DEMO_BACKUP, DEMO_RESTORE, DEMO_VOLUME, demoTarball, writeDemoIfEmpty } from '../../src/velero/demo.ts';

async function tarNames(gz: Buffer): Promise<Map<string, Buffer>> {
  return new Map([...(await untar(gunzipSync(gz)))].map(([name, { data }]) => [name, data]));
}

describe('demo data', () => {
  test('the tarball holds resource JSON at Velero tarball paths', async () => {
    const entries = await tarNames(await demoTarball());
    assert.equal(entries.get('metadata/version')?.toString().trim(), '1.1.0');
    const cm = JSON.parse(entries.get('resources/configmaps/namespaces/demo-app/app-config.json')!.toString()) as { kind: string };
    assert.equal(cm.kind, 'ConfigMap');
    assert.ok(entries.has('resources/namespaces/cluster/demo-app.json'));
    assert.ok(entries.has('resources/deployments.apps/v1-preferredversion/namespaces/demo-app/web.json'));
    for (const name of entries.keys()) assert.match(name, /^(metadata\/version|resources\/[^/]+\/(v1-preferredversion\/)?(namespaces\/[^/]+|cluster)\/[^/]+\.json)$/);
  });

  test('an empty directory gets every artifact of the backup and the restore, gzip\'d', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'vds-demo-'));
    try {
      const keys = await writeDemoIfEmpty(dir);
      for (const def of BACKUP_ARTIFACTS) {
        const body = await readFile(join(dir, def.key(DEMO_BACKUP)));
        assert.ok(gunzipSync(body).length > 0, def.artifact);
      }
      for (const def of RESTORE_ARTIFACTS) assert.ok(gunzipSync(await readFile(join(dir, def.key(DEMO_RESTORE)))).length > 0, def.artifact);
      const log = gunzipSync(await readFile(join(dir, `backups/${DEMO_BACKUP}/${DEMO_BACKUP}-logs.gz`))).toString();
      assert.match(log, /level=info msg="Backed up a total of 3 items"/);
      assert.ok(keys.includes(`backups/${DEMO_BACKUP}/velero-backup.json`));
      // A second call leaves a non-empty directory alone.
      assert.deepEqual(await writeDemoIfEmpty(dir), []);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  test('the demo volume: a Kopia repository that opens with its password, and the PodVolumeBackup record naming its snapshot', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'vds-demo-'));
    try {
      await writeDemoIfEmpty(dir);
      const pvbs = JSON.parse(gunzipSync(await readFile(join(dir, `backups/${DEMO_BACKUP}/${DEMO_BACKUP}-podvolumebackups.json.gz`))).toString()) as {
        spec: { pod: { namespace: string; name: string }; volume: string; uploaderType: string };
        status: { snapshotID: string; phase: string; progress: { totalBytes: number } };
      }[];
      assert.equal(pvbs.length, 1);
      const [pvb] = pvbs;
      assert.deepEqual([pvb!.spec.pod.namespace, pvb!.spec.pod.name, pvb!.spec.volume, pvb!.spec.uploaderType, pvb!.status.phase], [DEMO_VOLUME.namespace, DEMO_VOLUME.pod, DEMO_VOLUME.volume, 'kopia', 'Completed']);
      const signal = new AbortController().signal;
      const repo = await openRepository(new FilesystemStore({ root: dir }), { prefix: `kopia/${DEMO_VOLUME.namespace}/`, password: DEMO_VOLUME.password, signal });
      const snap = await repo.snapshot(pvb!.status.snapshotID, signal);
      assert.equal(`${snap.source.userName}@${snap.source.host}`, 'default@default');
      const names = (await repo.listDirectory(snap, '', signal)).map((e) => e.name).sort();
      assert.deepEqual(names, ['about', 'assets', 'index.html', 'latest.log', 'logs', 'uploads']);
      const page = await repo.openFile(snap, 'index.html', { signal });
      const chunks: Buffer[] = [];
      for await (const c of page.stream) chunks.push(c as Buffer);
      assert.match(Buffer.concat(chunks).toString(), /Hello from a Velero volume backup/);
      assert.equal(await repo.readLink(snap, 'latest.log', signal), 'logs/access.log');
      assert.equal(snap.rootEntry.size, pvb!.status.progress.totalBytes);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  test('a directory with anything in it is not touched', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'vds-demo-'));
    try {
      await writeFile(join(dir, 'mine'), 'x');
      assert.deepEqual(await writeDemoIfEmpty(dir), []);
      assert.deepEqual(await readdir(dir), ['mine']);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
