/**
 * The Kopia reader against the committed real-kopia repositories (test/fixtures/kopia, made by kopia
 * 0.23.1): each is opened with its password through the real FilesystemStore, its format and merged
 * content index compared with what kopia reported, its snapshots listed, every directory walked and
 * every entry compared with the manifest (type, mode, mtime, size, object id, symlink target), every
 * file's SHA-256 checked, and ranges read (across chunk boundaries, seeking past the first chunk
 * without reading it) and compared with slices of the whole file.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { before, describe, test } from 'node:test';
import { openRepository } from '../../src/kopia/repository.ts';
import type { DirEntry, Repository, Snapshot } from '../../src/kopia/repository.ts';
import { NAMES, PASSWORD, fsStore, loadManifest, readAll, recording, repoDir, signal } from './fixture-support.ts';
import type { Manifest } from './fixture-support.ts';

for (const name of NAMES) {
  describe(`kopia fixture ${name}`, () => {
    let m: Manifest;
    let repo: Repository;
    let snapshots: Snapshot[];

    before(async () => {
      m = await loadManifest(name);
      repo = await openRepository(fsStore(repoDir(name)), { naming: 'filesystem', password: m.repository.password, signal: signal() });
      snapshots = await repo.snapshots(signal());
    });

    test('the format is what kopia reported', () => {
      assert.equal(m.repository.password, PASSWORD);
      assert.equal(repo.format.hash, m.repository.hash);
      assert.equal(repo.format.encryption, m.repository.encryption);
      assert.equal(repo.format.version, m.repository.formatVersion);
      assert.equal(repo.format.indexVersion, m.repository.indexVersion);
      assert.equal(repo.format.splitter, m.repository.splitter);
      assert.equal(repo.format.keyAlgo, m.repository.formatBlob.keyAlgo);
      assert.equal(repo.format.buildVersion, m.repository.formatBlob.buildVersion);
    });

    test('the merged content index is the one kopia sees (contents, packs, offsets, lengths, compression, times)', async () => {
      const got = [...(await repo.contentIndex(signal())).all()]
        .filter((c) => !c.deleted)
        .map((c) => [c.contentID, c.packBlobID, c.packOffset, c.packedLength, c.originalLength, c.compressionHeaderID, c.timestamp].join(' '))
        .sort();
      const want = m.repository.contents
        .filter((c) => !c.deleted)
        .map((c) => [c.contentID, c.packFile, c.packOffset, c.length, c.originalLength, c.compression, c.time].join(' '))
        .sort();
      assert.deepEqual(got, want);
    });

    test('snapshots: ids, sources, descriptions, tags, pins, times and roots', () => {
      // What a snapshot shows, from the reader and from the manifest kopia wrote (root: its object id).
      const shown = (s: Pick<Snapshot, 'id' | 'source' | 'description' | 'tags' | 'pins' | 'startTime' | 'endTime'>, root: string) => {
        const { id, source, description, tags, pins, startTime, endTime } = s;
        return { id, source, description, tags, pins, startTime, endTime, root };
      };
      const got = snapshots.map((s) => shown(s, s.rootEntry.objectID));
      const want = m.snapshots.map((s) => shown(s, s.rootObjectID)).sort((a, b) => (a.startTime < b.startTime ? -1 : 1));
      assert.deepEqual(got, want);
    });

    test('every directory walked: every entry as the manifest lists it, every file by SHA-256, every symlink target', async () => {
      for (const ms of m.snapshots) {
        const snap = await repo.snapshot(ms.id, signal());
        const seen = new Map<string, DirEntry>();
        const walk = async (dir: string): Promise<void> => {
          for (const e of await repo.listDirectory(snap, dir, signal())) {
            const path = dir === '' ? e.name : `${dir}/${e.name}`;
            seen.set(path, e);
            if (e.type === 'd') await walk(path);
          }
        };
        await walk('');
        const want = ms.entries.filter((e) => e.path !== '.');
        assert.deepEqual([...seen.keys()].sort(), want.map((e) => e.path).sort(), `paths of snapshot ${ms.id}`);
        for (const w of want) {
          const e = seen.get(w.path);
          assert.ok(e);
          assert.deepEqual(
            { type: e.type, mode: e.mode.toString(8).padStart(4, '0'), mtime: e.mtime, uid: e.uid, gid: e.gid, obj: e.objectID },
            { type: w.type, mode: w.mode, mtime: w.mtime, uid: w.uid, gid: w.gid, obj: w.objectID },
            `${ms.id}:${w.path}`,
          );
          if (w.type === 'f') {
            assert.equal(e.size, w.size, `${w.path} size`);
            const f = await repo.openFile(snap, w.path, { signal: signal() });
            assert.equal(f.size, w.size);
            const digest = createHash('sha256').update(await readAll(f.stream)).digest('hex');
            assert.equal(digest, w.sha256, `${ms.id}:${w.path} (${ms.compression})`);
          }
          if (w.type === 's') assert.equal(await repo.readLink(snap, w.path, signal()), w.target, w.path);
        }
        const root = await repo.stat(snap, '/', signal());
        assert.equal(root.objectID, ms.rootObjectID);
      }
    });

    test('ranges of every file equal the same slices of the whole file', async () => {
      for (const ms of m.snapshots) {
        const snap = await repo.snapshot(ms.id, signal());
        for (const w of ms.entries.filter((e) => e.type === 'f' && (e.size ?? 0) > 0)) {
          const whole = await readAll((await repo.openFile(snap, w.path, { signal: signal() })).stream);
          const size = whole.length;
          const cuts = [0, 1, Math.floor(size / 3), size - 1, ...(w.chunks ?? []).flatMap((c) => [c.start - 1, c.start, c.start + 1])]
            .filter((x) => x >= 0 && x < size);
          for (const start of cuts) {
            for (const end of [start, Math.min(size - 1, start + 4096), size - 1, size + 100]) {
              const f = await repo.openFile(snap, w.path, { signal: signal(), range: { start, end } });
              const clamped = Math.min(end, size - 1);
              assert.deepEqual(f.range, { start, end: clamped });
              assert.ok((await readAll(f.stream)).equals(whole.subarray(start, clamped + 1)), `${w.path} ${start}-${end}`);
            }
          }
        }
      }
    });
  });
}

describe('ranges seek through the indirect object', () => {
  test('a range in the second chunk reads no byte of the first chunk', async () => {
    const m = await loadManifest('velero-aes256gcm');
    const ms = m.snapshots.find((s) => s.compression === 'none');
    const file = ms?.entries.find((e) => e.path === 'big/volume.img');
    const [first, second] = file?.chunks ?? [];
    assert.ok(ms && file?.sha256 && first && second, 'the fixture has a two-chunk file');
    const firstContent = m.repository.contents.find((c) => c.contentID === first.objectID);
    const secondContent = m.repository.contents.find((c) => c.contentID === second.objectID);
    assert.ok(firstContent && secondContent);

    const rec = recording(fsStore(repoDir('velero-aes256gcm')));
    const repo = await openRepository(rec.store, { naming: 'filesystem', password: PASSWORD, signal: signal() });
    const snap = await repo.snapshot(ms.id, signal());
    rec.gets.length = 0;
    const f = await repo.openFile(snap, file.path, { signal: signal(), range: { start: second.start + 10, end: second.start + 99 } });
    assert.equal((await readAll(f.stream)).length, 90);
    const packReads = rec.gets.filter((g) => g.key.startsWith('p'));
    assert.deepEqual(packReads, [{ key: `${secondContent.packFile}.f`, start: secondContent.packOffset, end: secondContent.packOffset + secondContent.length - 1 }]);

    // And from the start: both chunks, each read once.
    rec.gets.length = 0;
    const whole = await repo.openFile(snap, file.path, { signal: signal() });
    assert.equal(createHash('sha256').update(await readAll(whole.stream)).digest('hex'), file.sha256);
    assert.equal(rec.gets.filter((g) => g.key.startsWith('p')).length, 2);
  });
});
