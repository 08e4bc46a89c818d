/**
 * Bad input to the Kopia reader, on copies of the real-kopia fixtures: a wrong password, a flipped
 * byte in a pack (the AEAD tag fails: the stream errors after the intact first chunk, never ends
 * short), a flipped byte in an index blob, a missing index blob, a truncated pack, paths that would
 * leave the snapshot or go through a symlink, and format blobs re-encrypted by a test-only writer
 * with features the reader refuses (ECC, an upgrade lock, unknown algorithms).
 */
import assert from 'node:assert/strict';
import { cp, mkdtemp, readFile, readdir, rm, truncate, unlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { inspect } from 'node:util';
import { after, before, describe, test } from 'node:test';
import { CorruptRepositoryError, InvalidRequestError, KopiaNotFoundError, UnsupportedFeatureError, WrongPasswordError } from '../../src/kopia/errors.ts';
import { openRepository } from '../../src/kopia/repository.ts';
import type { Repository } from '../../src/kopia/repository.ts';
import { PASSWORD, fsStore, loadManifest, repoDir, rewriteFormat, signal } from './fixture-support.ts';
import type { Manifest, ManifestEntry, ManifestSnapshot } from './fixture-support.ts';

let base = '';
let n = 0;
before(async () => {
  base = await mkdtemp(join(tmpdir(), 'vds-kopia-bad-'));
});
after(() => rm(base, { recursive: true, force: true }));

/** A private copy of a fixture's repository directory. */
async function copyRepo(name: string): Promise<string> {
  const dir = join(base, `${name}-${n++}`);
  await cp(repoDir(name), dir, { recursive: true });
  return dir;
}

function open(dir: string, password = PASSWORD): Promise<Repository> {
  return openRepository(fsStore(dir), { naming: 'filesystem', password, signal: signal() });
}

async function flipByte(file: string, offset: number): Promise<void> {
  const data = await readFile(file);
  data[offset] = (data[offset] ?? 0) ^ 0x01;
  await writeFile(file, data);
}

/** The two-chunk file of the uncompressed snapshot and where kopia put its chunks. */
async function twoChunkFile(): Promise<{ m: Manifest; snap: ManifestSnapshot; file: ManifestEntry; chunks: { start: number; length: number; pack: string; packOffset: number; packedLength: number }[] }> {
  const m = await loadManifest('velero-aes256gcm');
  const snap = m.snapshots.find((s) => s.compression === 'none');
  const file = snap?.entries.find((e) => e.path === 'big/volume.img');
  assert.ok(snap && file?.chunks);
  const chunks = file.chunks.map((c) => {
    const info = m.repository.contents.find((x) => x.contentID === c.objectID);
    assert.ok(info);
    return { start: c.start, length: c.length, pack: info.packFile, packOffset: info.packOffset, packedLength: info.length };
  });
  return { m, snap, file, chunks };
}

/** Reads a stream to its end or error, returning the bytes delivered and the error. */
async function drain(stream: NodeJS.ReadableStream): Promise<{ bytes: number; error: unknown }> {
  let bytes = 0;
  try {
    for await (const c of stream) bytes += (c as Buffer).length;
  } catch (error) {
    return { bytes, error };
  }
  return { bytes, error: undefined };
}

describe('the password', () => {
  test('a wrong password is a WrongPasswordError that never repeats the password', async () => {
    const wrong = 'not-the-passw0rd-XYZZY';
    const err: unknown = await open(repoDir('velero-aes256gcm'), wrong).catch((e: unknown) => e);
    assert.ok(err instanceof WrongPasswordError, String(err));
    assert.equal(err.reason, 'WrongPassword');
    assert.match(err.message, /password is wrong/);
    assert.ok(!inspect(err).includes(wrong) && !inspect(err).includes(PASSWORD));
  });

  test('an already aborted signal is refused before any work', async () => {
    const c = new AbortController();
    c.abort(new Error('gone'));
    await assert.rejects(openRepository(fsStore(repoDir('velero-aes256gcm')), { naming: 'filesystem', password: PASSWORD, signal: c.signal }), /gone/);
  });

  test('no kopia.repository: KopiaNotFoundError naming the format blob', async () => {
    const dir = await copyRepo('velero-chacha20');
    await unlink(join(dir, 'kopia.repository.f'));
    await assert.rejects(open(dir), (e: unknown) => e instanceof KopiaNotFoundError && e.what === 'blob' && /kopia\.repository/.test(e.message));
  });
});

describe('damaged blobs', () => {
  test('a flipped byte in a pack: the first chunk is delivered, then the stream fails with an AEAD error (never a short end)', async () => {
    const { snap, file, chunks } = await twoChunkFile();
    const second = chunks[1];
    assert.ok(second);
    const dir = await copyRepo('velero-aes256gcm');
    await flipByte(join(dir, `${second.pack}.f`), second.packOffset + 100);
    const repo = await open(dir);
    const s = await repo.snapshot(snap.id, signal());
    const f = await repo.openFile(s, file.path, { signal: signal() });
    const { bytes, error } = await drain(f.stream);
    assert.ok(error instanceof CorruptRepositoryError, String(error));
    assert.equal(error.kind, 'aead');
    assert.equal(bytes, chunks[0]?.length);
    // The first chunk alone still reads.
    const head = await repo.openFile(s, file.path, { signal: signal(), range: { start: 0, end: 999 } });
    assert.deepEqual(await drain(head.stream), { bytes: 1000, error: undefined });
  });

  test('a flipped byte in a directory object (metadata pack): listing it fails with an AEAD error', async () => {
    const { m, snap } = await twoChunkFile();
    const nested = snap.entries.find((e) => e.path === 'nested');
    const info = m.repository.contents.find((c) => c.contentID === nested?.objectID);
    assert.ok(nested && info);
    const dir = await copyRepo('velero-aes256gcm');
    await flipByte(join(dir, `${info.packFile}.f`), info.packOffset + 30);
    const repo = await open(dir);
    const s = await repo.snapshot(snap.id, signal());
    await assert.rejects(repo.listDirectory(s, 'nested', signal()), (e: unknown) => e instanceof CorruptRepositoryError && e.kind === 'aead');
    assert.ok((await repo.listDirectory(s, 'big', signal())).some((e) => e.name === 'volume.img'));
  });

  test('aborting the signal mid-stream ends the stream with its reason after the first chunk', async () => {
    const { snap, file, chunks } = await twoChunkFile();
    const repo = await open(repoDir('velero-aes256gcm'));
    const s = await repo.snapshot(snap.id, signal());
    const c = new AbortController();
    const f = await repo.openFile(s, file.path, { signal: c.signal });
    let bytes = 0;
    const err: unknown = await (async () => {
      for await (const chunk of f.stream) {
        bytes += (chunk as Buffer).length;
        c.abort(new Error('client went away'));
      }
    })().catch((e: unknown) => e);
    assert.match(String(err), /client went away/);
    assert.equal(bytes, chunks[0]?.length);
    assert.ok(f.stream.destroyed);
  });

  test('a flipped byte in kopia.blobcfg: opening fails with an AEAD error naming it', async () => {
    const dir = await copyRepo('velero-chacha20');
    await flipByte(join(dir, 'kopia.blobcfg.f'), 20);
    await assert.rejects(open(dir), (e: unknown) => e instanceof CorruptRepositoryError && e.kind === 'aead' && /kopia\.blobcfg/.test(e.message));
  });

  test('a flipped byte in an index blob: opening fails with an AEAD error', async () => {
    const dir = await copyRepo('velero-chacha20');
    const xn = (await readdir(dir)).find((f) => f.startsWith('xn'));
    assert.ok(xn);
    await flipByte(join(dir, xn), 40);
    await assert.rejects(open(dir), (e: unknown) => e instanceof CorruptRepositoryError && e.kind === 'aead' && e.message.includes(xn.slice(0, -2)));
  });

  test('a missing index blob: its contents are not found (typed), its snapshot is gone, the others still read', async () => {
    const { m, snap, file, chunks } = await twoChunkFile();
    const session = /-(s[0-9a-f]+)$/.exec(chunks[0]?.pack ?? '')?.[1];
    assert.ok(session);
    const dir = await copyRepo('velero-aes256gcm');
    const xn = (await readdir(dir)).find((f) => f.startsWith('xn') && f.includes(`-${session}-`));
    assert.ok(xn);
    await unlink(join(dir, xn));
    const repo = await open(dir);
    const ids = (await repo.snapshots(signal())).map((s) => s.id);
    assert.ok(!ids.includes(snap.id));
    assert.equal(ids.length, m.snapshots.length - 1);
    await assert.rejects(repo.openObject(file.objectID, { signal: signal() }), (e: unknown) => e instanceof KopiaNotFoundError && e.what === 'content');
    await assert.rejects(repo.snapshot(snap.id, signal()), (e: unknown) => e instanceof KopiaNotFoundError && e.what === 'snapshot');
  });

  test('a truncated pack: the content cut short, and one wholly past the end, are typed "truncated" errors', async () => {
    const { snap, file, chunks } = await twoChunkFile();
    const [first, second] = chunks;
    assert.ok(first && second && first.pack === second.pack);
    // Cut inside the second chunk (a short read, not merely a failing tag) and right before it.
    for (const keep of [second.packOffset + 1000, second.packOffset]) {
      const dir = await copyRepo('velero-aes256gcm');
      await truncate(join(dir, `${second.pack}.f`), keep);
      const repo = await open(dir);
      const f = await repo.openFile(await repo.snapshot(snap.id, signal()), file.path, { signal: signal() });
      const { bytes, error } = await drain(f.stream);
      assert.ok(error instanceof CorruptRepositoryError, String(error));
      assert.equal(error.kind, 'truncated');
      assert.equal(bytes, first.length);
    }
  });
});

describe('paths and ranges', () => {
  let repo: Repository;
  let snapID = '';
  before(async () => {
    const { snap } = await twoChunkFile();
    snapID = snap.id;
    repo = await open(repoDir('velero-aes256gcm'));
  });

  test('"..", ".", empty segments and NUL are refused before any lookup', async () => {
    const s = await repo.snapshot(snapID, signal());
    for (const p of ['..', '../etc/passwd', 'nested/../hello.txt', 'nested/a/..', './hello.txt', 'nested//a', 'hello.txt\0']) {
      await assert.rejects(repo.stat(s, p, signal()), InvalidRequestError, p);
      await assert.rejects(repo.openFile(s, p, { signal: signal() }), InvalidRequestError, p);
    }
  });

  test('a symlink is never followed: not through it, not opened as a file; its target is read as stored', async () => {
    const s = await repo.snapshot(snapID, signal());
    await assert.rejects(repo.stat(s, 'links/to-dir/b', signal()), (e: unknown) => e instanceof KopiaNotFoundError && e.what === 'path');
    await assert.rejects(repo.openFile(s, 'links/absolute', { signal: signal() }), InvalidRequestError);
    assert.equal(await repo.readLink(s, 'links/absolute', signal()), '/etc/hostname');
    assert.equal((await repo.stat(s, 'links/to-dir', signal())).type, 's');
  });

  test('a directory is not a file, a missing name is not found, a range outside the file is refused', async () => {
    const s = await repo.snapshot(snapID, signal());
    await assert.rejects(repo.openFile(s, 'nested', { signal: signal() }), InvalidRequestError);
    await assert.rejects(repo.stat(s, 'nested/nope', signal()), (e: unknown) => e instanceof KopiaNotFoundError && e.what === 'path');
    await assert.rejects(repo.stat(s, 'hello.txt/x', signal()), KopiaNotFoundError);
    const size = (await repo.stat(s, 'big/volume.img', signal())).size;
    await assert.rejects(repo.openFile(s, 'big/volume.img', { signal: signal(), range: { start: size } }), InvalidRequestError);
    await assert.rejects(repo.openFile(s, 'big/volume.img', { signal: signal(), range: { start: 10, end: 5 } }), InvalidRequestError);
    await assert.rejects(repo.snapshot('0123456789abcdef0123456789abcdef', signal()), KopiaNotFoundError);
  });
});

describe('refused repository features', () => {
  test('the test writer round-trips: an unchanged re-encryption still opens', async () => {
    const dir = await copyRepo('velero-chacha20');
    await rewriteFormat(dir, () => undefined);
    assert.equal((await open(dir)).format.encryption, 'CHACHA20-POLY1305-HMAC-SHA256');
  });

  test('a format keyed with pbkdf2-sha256-600000 (as kopia derives it: salt = unique id, 32 bytes) opens; a wrong password still fails', async () => {
    const dir = await copyRepo('velero-chacha20');
    await rewriteFormat(dir, () => undefined, undefined, true);
    const repo = await open(dir);
    assert.equal(repo.format.keyAlgo, 'pbkdf2-sha256-600000');
    assert.equal((await repo.snapshots(signal())).length, 2);
    await assert.rejects(open(dir, 'wrong'), WrongPasswordError);
  });

  const cases: { name: string; feature: RegExp; edit: (f: Record<string, unknown>) => void; outer?: (o: Record<string, unknown>) => void }[] = [
    { name: 'ECC', feature: /^ecc:REED-SOLOMON-CRC32$/, edit: (f) => Object.assign(f, { ecc: 'REED-SOLOMON-CRC32', eccOverheadPercent: 2 }) },
    { name: 'an upgrade lock', feature: /^upgradeLock$/, edit: (f) => Object.assign(f, { upgradeLock: { ownerID: 'x', creationTime: '2026-01-01T00:00:00Z' } }) },
    { name: 'an unknown content cipher', feature: /^encryption:XSALSA20-HMAC$/, edit: (f) => Object.assign(f, { encryption: 'XSALSA20-HMAC' }) },
    { name: 'an unknown index version', feature: /^indexVersion:3$/, edit: (f) => Object.assign(f, { indexVersion: 3 }) },
    { name: 'a future format version', feature: /^formatVersion:4$/, edit: (f) => Object.assign(f, { version: 4 }) },
    { name: 'required features', feature: /^requiredFeatures:index-v9$/, edit: (f) => Object.assign(f, { requiredFeatures: [{ feature: 'index-v9' }] }) },
    { name: 'an unknown key derivation', feature: /^keyAlgo:argon2id-x$/, edit: () => undefined, outer: (o) => Object.assign(o, { keyAlgo: 'argon2id-x' }) },
    { name: 'an unknown format-blob cipher', feature: /^formatEncryption:NONE$/, edit: () => undefined, outer: (o) => Object.assign(o, { encryption: 'NONE' }) },
  ];
  for (const c of cases) {
    test(`${c.name}: UnsupportedFeatureError naming the feature`, async () => {
      const dir = await copyRepo('velero-chacha20');
      await rewriteFormat(dir, c.edit, c.outer);
      const err: unknown = await open(dir).catch((e: unknown) => e);
      assert.ok(err instanceof UnsupportedFeatureError, String(err));
      assert.equal(err.reason, 'UnsupportedFeature');
      assert.match(err.feature, c.feature);
    });
  }
});
