/**
 * A backup's volumes from its own files, read through the real filesystem store from a temp dir:
 * both sources, and every bound a hostile file meets (size, gzip bomb, not gzip, not JSON, not an
 * array, malformed entries, a store that sends more than it announced, parses at once).
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { Readable } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import { gzipSync } from 'node:zlib';
import { FilesystemStore } from '../../src/stores/fs.ts';
import type { StoreSpec } from '../../src/stores/spec.ts';
import type { GetOptions, ObjectBody, ObjectStore } from '../../src/stores/types.ts';
import { InvalidBackupFileError, InvalidTargetError } from '../../src/velero/errors.ts';
import { BackupFileVolumes, MAX_GZIP_BYTES, MAX_JSON_BYTES, MAX_PARSES, readGzippedJsonArray, volumeFileKeys, volumesFromBackupFiles } from '../../src/velero/volumes-files.ts';
import { dataMoverInfo, gzJson, podVolumeBackup, podVolumeInfo } from '../support/velero-volumes.ts';

const ALL = new Set(['PodVolumeBackup', 'DataUpload'] as const);
const S1 = '0123456789abcdef0123456789abcdef';
const S2 = 'fedcba9876543210fedcba9876543210';

describe("a backup's volumes from its files", () => {
  let dir: string;
  let store: FilesystemStore;
  const signal = new AbortController().signal;
  const put = async (key: string, bytes: Buffer): Promise<void> => {
    await mkdir(dirname(join(dir, key)), { recursive: true });
    await writeFile(join(dir, key), bytes);
  };
  const invalid = (re: RegExp) => (e: unknown) => e instanceof InvalidBackupFileError && e.reason === 'InvalidBackupFile' && re.test(e.message);

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'vds-volfiles-'));
    store = new FilesystemStore({ root: dir });
  });
  after(() => rm(dir, { recursive: true, force: true }));

  test('file-system volumes from the podvolumebackups file, with PVC names from the volume info; data-mover volumes from the volume info', async () => {
    const keys = volumeFileKeys('b1');
    await put(keys.podVolumeBackups, gzJson([
      podVolumeBackup({ backup: 'b1', podNamespace: 'app', pod: 'web-0', volume: 'data', snapshotID: S1 }),
      podVolumeBackup({ backup: 'b1', podNamespace: 'app', pod: 'web-0', volume: 'cache', uploaderType: 'restic', snapshotID: 'abcd' }),
    ]));
    await put(keys.volumeInfo, gzJson([
      podVolumeInfo({ pvcNamespace: 'app', pvc: 'www-0', pod: 'web-0', volume: 'data', snapshotHandle: S1 }),
      dataMoverInfo({ pvcNamespace: 'db', pvc: 'pg-data', snapshotHandle: S2 }),
      { backupMethod: 'NativeSnapshot', pvcName: 'disk', pvcNamespace: 'db', nativeSnapshotInfo: { snapshotHandle: 'snap-1' } },
    ]));
    const vols = await volumesFromBackupFiles(store, { backup: 'b1' }, ALL, signal);
    assert.deepEqual(vols.map((v) => [v.id, v.kind, v.pvc, v.uploader, v.snapshotID]), [
      ['app:web-0:cache', 'PodVolumeBackup', undefined, 'restic', 'abcd'],
      ['app:web-0:data', 'PodVolumeBackup', 'www-0', 'kopia', S1],
      ['db:pg-data', 'DataUpload', 'pg-data', 'kopia', S2],
    ]);
    const onlyDm = await volumesFromBackupFiles(store, { backup: 'b1' }, new Set(['DataUpload'] as const), signal);
    assert.deepEqual(onlyDm.map((v) => v.id), ['db:pg-data']);
  });

  test("without a podvolumebackups file, the volume info's pvbInfo entries; without any file, no volumes", async () => {
    await put(volumeFileKeys('b2').volumeInfo, gzJson([podVolumeInfo({ pvcNamespace: 'app', pvc: 'www-0', pod: 'web-0', volume: 'data', snapshotHandle: S1 })]));
    assert.deepEqual((await volumesFromBackupFiles(store, { backup: 'b2' }, ALL, signal)).map((v) => v.id), ['app:web-0:data']);
    assert.deepEqual(await volumesFromBackupFiles(store, { backup: 'nothing-here' }, ALL, signal), []);
  });

  test('Velero writes null for an empty list; malformed entries are left out and the rest kept', async () => {
    await put('n/null.json.gz', gzipSync('null'));
    assert.deepEqual(await readGzippedJsonArray(store, 'n/null.json.gz', signal), []);
    await put(volumeFileKeys('b3').podVolumeBackups, gzJson([
      7, 'x', null, [], { spec: 'x' }, { spec: { pod: { namespace: '../../kopia', name: 'p' }, volume: 'v' } },
      podVolumeBackup({ backup: 'b3', podNamespace: 'ok', pod: 'p', volume: 'v', snapshotID: S1 }),
    ]));
    assert.deepEqual((await volumesFromBackupFiles(store, { backup: 'b3' }, ALL, signal)).map((v) => v.id), ['ok:p:v']);
  });

  test('a file over the compressed bound is refused before it is read; a gzip bomb stops at the inflated bound', async () => {
    await put('h/huge.json.gz', randomBytes(MAX_GZIP_BYTES + 1));
    await assert.rejects(readGzippedJsonArray(store, 'h/huge.json.gz', signal), invalid(/is 16777217 bytes, more than the 16777216/));
    // 64 MiB of a JSON array of zeros shrinks to ~64 KiB: small to read, far over the inflated bound.
    const bomb = gzipSync(Buffer.concat([Buffer.from('['), Buffer.alloc(64 * 1024 * 1024, '0,'), Buffer.from('0]')]), { level: 9 });
    assert.ok(bomb.length < 1024 * 1024);
    await put('h/bomb.json.gz', bomb);
    await assert.rejects(readGzippedJsonArray(store, 'h/bomb.json.gz', signal), invalid(new RegExp(`inflates to more than the ${MAX_JSON_BYTES} bytes`)));
  });

  test('not gzip, not JSON, not an array: refused by name, the content never echoed', async () => {
    await put('h/plain.json.gz', Buffer.from('[{"secret":"s3cr3t"}]'));
    await put('h/text.json.gz', gzipSync('{"secret":"s3cr3t"'));
    await put('h/object.json.gz', gzJson({ secret: 's3cr3t' }));
    for (const [key, re] of [['h/plain.json.gz', /not a gzip file/], ['h/text.json.gz', /not JSON/], ['h/object.json.gz', /not a JSON array/]] as const) {
      await assert.rejects(readGzippedJsonArray(store, key, signal), (e: unknown) => invalid(re)(e) && !(e as Error).message.includes('s3cr3t'));
    }
  });

  test('a store that delivers more than it announced is cut at the bound', async () => {
    await put('h/liar.json.gz', randomBytes(4096));
    const liar: ObjectStore = {
      stat: (k, o) => store.stat(k, o),
      list: (p, o) => store.list(p, o),
      async get(key: string, opts: GetOptions): Promise<ObjectBody> {
        const body = await store.get(key, opts);
        const stream = body.kind === 'stream' ? body.body : body.stream();
        return { kind: 'stream', size: 10, body: Readable.from(stream) };
      },
    };
    await assert.rejects(readGzippedJsonArray(liar, 'h/liar.json.gz', signal, { gzipBytes: 1000 }), invalid(/more than the 1000 bytes/));
  });

  test(`at most ${MAX_PARSES} files are read at once; a caller waiting its turn can leave`, async () => {
    const releases: (() => void)[] = [];
    let started = 0;
    const slow: ObjectStore = {
      stat: (k, o) => store.stat(k, o),
      list: (p, o) => store.list(p, o),
      async get(key: string, opts: GetOptions): Promise<ObjectBody> {
        started++;
        await new Promise<void>((r) => releases.push(r));
        return store.get(key, opts);
      },
    };
    await put('g/a.json.gz', gzJson([]));
    const releaseAll = async (): Promise<void> => {
      for (let i = 0; i < 5; i++) {
        for (const r of releases.splice(0)) r();
        await new Promise((r) => setImmediate(r));
      }
    };
    const first = Array.from({ length: MAX_PARSES }, () => readGzippedJsonArray(slow, 'g/a.json.gz', signal));
    const leaver = new AbortController();
    const waiting = readGzippedJsonArray(slow, 'g/a.json.gz', leaver.signal);
    const last = readGzippedJsonArray(slow, 'g/a.json.gz', signal);
    try {
      await new Promise((r) => setImmediate(r));
      assert.equal(started, MAX_PARSES);
      leaver.abort(new Error('client left'));
      await assert.rejects(waiting, /client left/);
      releases.shift()!();
      await first[0];
      await new Promise((r) => setImmediate(r));
      assert.equal(started, MAX_PARSES + 1, 'the one that left gave its turn to the next');
    } finally {
      // Whatever happened, the gate's turns are given back: later tests read through it too.
      await releaseAll();
    }
    await Promise.all([...first, last]);
  });

  test('a backup name that is not a Kubernetes name never becomes a key', async () => {
    for (const bad of ['../b1', 'b1/../../x', '', 'B1', 'a\0b']) assert.throws(() => volumeFileKeys(bad), InvalidTargetError, bad);
    await assert.rejects(volumesFromBackupFiles(store, { backup: '../b1' }, ALL, signal), InvalidTargetError);
  });

  test('the volumes read are reused for a while, per location and backup', async () => {
    let gets = 0;
    const counting: ObjectStore = { stat: (k, o) => store.stat(k, o), list: (p, o) => store.list(p, o), get: (k, o) => (gets++, store.get(k, o)) };
    const files = new BackupFileVolumes();
    const spec: StoreSpec = { name: 'one', provider: 'filesystem', bucket: '', prefix: '', config: {} };
    const a = await files.get(spec, async () => counting, { backup: 'b1' }, ALL, signal);
    const b = await files.get(spec, async () => counting, { backup: 'b1' }, ALL, signal);
    assert.deepEqual(a, b);
    assert.equal(gets, 2, 'two files read once');
    await files.get({ ...spec, name: 'two' }, async () => counting, { backup: 'b1' }, ALL, signal);
    assert.equal(gets, 4);
  });
});
