/**
 * Units of the Kopia reader that the real fixtures cannot reach on their own: the index merge rules
 * and the deletion watermark on index blobs written by a test-only v1/v2 writer, the epoch manager's
 * choice of blobs on listings made up for it, the bytes per index entry, the read-ahead bound of an
 * object stream, and S2's repeat-offset copy that Snappy lacks.
 */
import assert from 'node:assert/strict';
import { setImmediate as tick } from 'node:timers/promises';
import { describe, test } from 'node:test';
import type { BlobStorage } from '../../src/kopia/blobs.ts';
import { CorruptRepositoryError } from '../../src/kopia/errors.ts';
import { hkdf } from '../../src/kopia/format.ts';
import { ContentIndex, PackTable, parseIndexBlob } from '../../src/kopia/index.ts';
import { selectEpochIndexBlobs } from '../../src/kopia/index-blobs.ts';
import { streamObject } from '../../src/kopia/objects.ts';
import { mergeManifests, snapshotPathSegments } from '../../src/kopia/repository.ts';
import { decodeS2Block, decodeS2Stream } from '../../src/kopia/s2.ts';

// ------------------------------------------------------------------ a test-only index writer
interface E {
  id: string;
  ts: number;
  pack: string;
  offset?: number;
  packed?: number;
  orig?: number;
  deleted?: boolean;
  compression?: number;
}

function key(id: string): Buffer {
  const prefix = /^[g-z]/.test(id) ? id.charCodeAt(0) : 0;
  return Buffer.concat([Buffer.from([prefix]), Buffer.from(prefix ? id.slice(1) : id, 'hex')]);
}

/** A v2 index blob as index_v2.go lays it out (entry size 17: a format id per entry). */
function v2Blob(entries: E[], baseTs = 1_700_000_000): Buffer {
  const sorted = [...entries].sort((a, b) => Buffer.compare(key(a.id), key(b.id)));
  const packs = [...new Set(sorted.map((e) => e.pack))];
  const formats = [...new Set(sorted.map((e) => e.compression ?? 0))];
  const keySize = key(sorted[0]?.id ?? '00').length;
  const entrySize = 17;
  const header = Buffer.alloc(17);
  header[0] = 2;
  header[1] = keySize;
  header.writeUInt16BE(entrySize, 2);
  header.writeUInt32BE(sorted.length, 4);
  header.writeUInt32BE(packs.length, 8);
  header[12] = formats.length;
  header.writeUInt32BE(baseTs, 13);
  const body = Buffer.alloc(sorted.length * (keySize + entrySize));
  sorted.forEach((e, i) => {
    const o = i * (keySize + entrySize);
    key(e.id).copy(body, o);
    const v = o + keySize;
    body.writeUInt32BE(e.ts - baseTs, v);
    body.writeUInt32BE(((e.offset ?? 0) | (e.deleted ? 0x80000000 : 0)) >>> 0, v + 4);
    body.writeUIntBE(e.orig ?? 10, v + 8, 3);
    body.writeUIntBE(e.packed ?? 38, v + 11, 3);
    body.writeUInt16BE(packs.indexOf(e.pack), v + 14);
    body[v + 16] = formats.indexOf(e.compression ?? 0);
  });
  const namesStart = 17 + body.length + packs.length * 5 + formats.length * 6;
  const packTable = Buffer.alloc(packs.length * 5);
  let nameOff = namesStart;
  packs.forEach((p, i) => {
    packTable[i * 5] = p.length;
    packTable.writeUInt32BE(nameOff, i * 5 + 1);
    nameOff += p.length;
  });
  const formatTable = Buffer.alloc(formats.length * 6);
  formats.forEach((c, i) => {
    formatTable.writeUInt32BE(c, i * 6);
    formatTable[i * 6 + 4] = 2;
  });
  return Buffer.concat([header, body, packTable, formatTable, Buffer.from(packs.join(''), 'latin1')]);
}

/** A v1 index blob as index_v1.go lays it out. */
function v1Blob(entries: E[]): Buffer {
  const sorted = [...entries].sort((a, b) => Buffer.compare(key(a.id), key(b.id)));
  const keySize = key(sorted[0]?.id ?? '00').length;
  const header = Buffer.alloc(8);
  header[0] = 1;
  header[1] = keySize;
  header.writeUInt16BE(20, 2);
  header.writeUInt32BE(sorted.length, 4);
  const body = Buffer.alloc(sorted.length * (keySize + 20));
  const names: Buffer[] = [];
  let nameOff = 8 + body.length;
  sorted.forEach((e, i) => {
    const o = i * (keySize + 20);
    key(e.id).copy(body, o);
    const v = o + keySize;
    body.writeUIntBE(e.ts, v, 6);
    body[v + 6] = 1;
    body[v + 7] = e.pack.length;
    body.writeUInt32BE(nameOff, v + 8);
    body.writeUInt32BE(((e.offset ?? 0) | (e.deleted ? 0x80000000 : 0)) >>> 0, v + 12);
    body.writeUInt32BE(e.packed ?? 38, v + 16);
    names.push(Buffer.from(e.pack, 'latin1'));
    nameOff += e.pack.length;
  });
  return Buffer.concat([header, body, ...names]);
}

function indexOf(blobs: Buffer[], watermark = 0): ContentIndex {
  const packs = new PackTable();
  return ContentIndex.build(blobs.map((b, i) => ({ run: parseIndexBlob(b, `xn0_${i}`, packs), blobID: `xn0_${i}` })), packs, watermark);
}

const A = 'aa'.repeat(16);
const B = 'bb'.repeat(16);
const C = 'cc'.repeat(16);

describe('index blobs and merge rules', () => {
  test('v2 fields round-trip, compression per entry included', () => {
    const idx = indexOf([v2Blob([{ id: A, ts: 1_700_000_100, pack: 'p1', offset: 7, packed: 60, orig: 500, compression: 0x1100 }, { id: `k${B}`, ts: 1_700_000_200, pack: 'q2' }])]);
    assert.deepEqual(idx.get(A), {
      contentID: A, packBlobID: 'p1', packOffset: 7, packedLength: 60, originalLength: 500,
      compressionHeaderID: 0x1100, formatVersion: 2, deleted: false, timestamp: 1_700_000_100,
    });
    assert.equal(idx.get(`k${B}`).packBlobID, 'q2');
    assert.equal(idx.find(B), undefined, 'a prefix is part of the key');
    assert.deepEqual([...idx.withPrefix('k')].map((c) => c.contentID), [`k${B}`]);
  });

  test('v1: original length is packed - 28, the deleted bit is read', () => {
    const idx = indexOf([v1Blob([{ id: A, ts: 1_600_000_000, pack: 'pold', offset: 99, packed: 128, deleted: true }])], 0);
    assert.deepEqual(idx.get(A), {
      contentID: A, packBlobID: 'pold', packOffset: 99, packedLength: 128, originalLength: 100,
      compressionHeaderID: 0, formatVersion: 1, deleted: true, timestamp: 1_600_000_000,
    });
  });

  test('the newer timestamp wins, whichever blob holds it', () => {
    const older = v2Blob([{ id: A, ts: 1_700_000_100, pack: 'p-newname' }]);
    const newer = v2Blob([{ id: A, ts: 1_700_000_200, pack: 'p-a', offset: 5 }]);
    assert.equal(indexOf([older, newer]).get(A).packOffset, 5);
    assert.equal(indexOf([newer, older]).get(A).packOffset, 5);
  });

  test('on a tie the non-deleted entry wins; then the larger pack id', () => {
    const live = v2Blob([{ id: A, ts: 1_700_000_100, pack: 'p-a', offset: 1 }]);
    const dead = v2Blob([{ id: A, ts: 1_700_000_100, pack: 'p-z', offset: 2, deleted: true }]);
    assert.equal(indexOf([dead, live]).get(A).packOffset, 1);
    assert.equal(indexOf([live, dead]).get(A).packOffset, 1);
    const small = v2Blob([{ id: B, ts: 1_700_000_100, pack: 'p-a', offset: 1 }]);
    const large = v2Blob([{ id: B, ts: 1_700_000_100, pack: 'p-b', offset: 2 }]);
    assert.equal(indexOf([small, large]).get(B).packBlobID, 'p-b');
    assert.equal(indexOf([large, small]).get(B).packBlobID, 'p-b');
  });

  test('a deletion no newer than the watermark hides the content; a later one is kept as deleted', () => {
    const blob = v2Blob([{ id: A, ts: 1_700_000_100, pack: 'p', deleted: true }, { id: B, ts: 1_700_000_300, pack: 'p', deleted: true }, { id: C, ts: 1_700_000_100, pack: 'p' }]);
    const idx = indexOf([blob], 1_700_000_100);
    assert.equal(idx.find(A), undefined);
    assert.equal(idx.find(B)?.deleted, true);
    assert.equal(idx.find(C)?.deleted, false);
    assert.deepEqual([...idx.all()].map((c) => c.contentID), [B, C]);
  });

  test('an unsorted or cut index blob is malformed', () => {
    const good = v2Blob([{ id: A, ts: 1_700_000_100, pack: 'p' }, { id: B, ts: 1_700_000_100, pack: 'p' }]);
    const swapped = Buffer.from(good);
    swapped.fill(0xbb, 18, 34);
    swapped.fill(0xaa, 52, 68); // entries are 34 bytes: key (prefix byte + 16) then 17 bytes of value
    assert.throws(() => indexOf([swapped]), (e: unknown) => e instanceof CorruptRepositoryError && e.kind === 'malformed');
    assert.throws(() => indexOf([good.subarray(0, 40)]), CorruptRepositoryError);
    assert.throws(() => indexOf([Buffer.from([9, 0, 0])]), /unknown index version 9/);
  });

  test('memory: keySize + 28 bytes per entry, one Buffer for a million entries merged from ten blobs', () => {
    const N = 1_000_000;
    const R = 10;
    const K = 17;
    const S = K + 28;
    const packs = new PackTable();
    packs.intern('p0');
    const runs = Array.from({ length: R }, (_, r) => {
      const data = Buffer.alloc((N / R) * S);
      for (let i = 0; i < N / R; i++) data.writeUInt32BE(i * R + r, i * S + 13);
      return { run: { keySize: K, count: N / R, data }, blobID: `xn0_${r}` };
    });
    const idx = ContentIndex.build(runs, packs, 0);
    assert.equal(idx.size, N);
    assert.equal(idx.byteLength / N, 45);
    for (const i of [0, 1, 9, 10, 123_457, N - 1]) assert.ok(idx.find(`${'0'.repeat(24)}${i.toString(16).padStart(8, '0')}`), String(i));
    assert.equal(idx.find(`${'0'.repeat(24)}${N.toString(16).padStart(8, '0')}`), undefined);
  });
});

// ------------------------------------------------------------------ the epoch manager's choice
function listing(ids: string[]): BlobStorage {
  return {
    read: () => Promise.reject(new Error('not read in this test')),
    async *list(prefix) {
      await Promise.resolve();
      for (const id of [...ids].sort()) if (id.startsWith(prefix)) yield { id, size: 1 };
    },
  };
}

describe('epoch index selection', () => {
  test('range checkpoint, then settled single-epoch compactions, then uncompacted epochs; superseded blobs left out', async () => {
    const ids = [
      'xe1', 'xe2', 'xe3', 'xe4', 'xe5', 'xw1700000000', 'xw1700000500',
      'xn0_a-s1-c1', 'xn1_b-s2-c1', 'xn2_c-s3-c1', 'xn3_d-s4-c1', 'xn3_e-s5-c1', 'xn4_f-s6-c1', 'xn5_g-s7-c1', 'xn6_h-s8-c1',
      'xr0_1_i-s9-c1', 'xs2_j-s10-c1', 'xs3_k-s11-c1', 'xs4_l-s12-c1',
      'xr0_3_m-s13-c2', // incomplete: one of two
    ];
    const sel = await selectEpochIndexBlobs(listing(ids), new AbortController().signal);
    assert.equal(sel.deletionWatermark, 1_700_000_500);
    // write epoch 5: settled epochs are <= 3; epoch 4 is not settled, so its xs4 is not used yet.
    assert.deepEqual(sel.blobIDs, ['xr0_1_i-s9-c1', 'xs2_j-s10-c1', 'xs3_k-s11-c1', 'xn4_f-s6-c1', 'xn5_g-s7-c1', 'xn6_h-s8-c1']);
  });

  test('the longest chain of complete range checkpoints wins', async () => {
    const ids = ['xe9', 'xr0_2_a-s1-c1', 'xr3_5_b-s2-c1', 'xr0_4_c-s3-c1', 'xn6_d-s4-c1', 'xs6_e-s5-c2'];
    const sel = await selectEpochIndexBlobs(listing(ids), new AbortController().signal);
    assert.deepEqual(sel.blobIDs, ['xr0_2_a-s1-c1', 'xr3_5_b-s2-c1', 'xn6_d-s4-c1']);
  });

  test('no epoch markers: epoch 0 and 1 uncompacted', async () => {
    const sel = await selectEpochIndexBlobs(listing(['xn0_a-s1-c1', 'xn1_b-s2-c1', 'xn2_c-s3-c1']), new AbortController().signal);
    assert.deepEqual(sel.blobIDs, ['xn0_a-s1-c1', 'xn1_b-s2-c1']);
  });
});

// ------------------------------------------------------------------ object streams
describe('object streams', () => {
  const pieces = 10;
  const size = 100;
  const obj = { length: pieces * size, segments: Array.from({ length: pieces }, (_, i) => ({ start: i * size, length: size, objectID: `${i.toString(16).padStart(2, '0')}${'0'.repeat(30)}` })) };
  const fake = (): { calls: string[]; signals: AbortSignal[]; read: (id: string, s: AbortSignal) => Promise<Buffer> } => {
    const calls: string[] = [];
    const signals: AbortSignal[] = [];
    return {
      calls,
      signals,
      read: (id, s) => {
        calls.push(id);
        signals.push(s);
        return Promise.resolve(Buffer.alloc(size, Number.parseInt(id.slice(0, 2), 16)));
      },
    };
  };
  const settle = async (): Promise<void> => {
    for (let i = 0; i < 20; i++) await tick();
  };

  test('at most one content is fetched ahead of the one being delivered', async () => {
    const f = fake();
    const stream = streamObject(obj, { start: 0, end: obj.length - 1 }, f.read, new AbortController().signal);
    const it = stream[Symbol.asyncIterator]();
    const first = await it.next();
    assert.equal((first.value as Buffer)[0], 0);
    await settle();
    assert.ok(f.calls.length <= 2, `fetched ${f.calls.length} contents while one was delivered`);
    let total = (first.value as Buffer).length;
    for (let r = await it.next(); !r.done; r = await it.next()) total += (r.value as Buffer).length;
    assert.equal(total, obj.length);
    assert.equal(f.calls.length, pieces);
  });

  test('a range starts at the piece that holds it and stops after the piece that ends it', async () => {
    const f = fake();
    const stream = streamObject(obj, { start: 450, end: 649 }, f.read, new AbortController().signal);
    const parts: Buffer[] = [];
    for await (const c of stream) parts.push(c as Buffer);
    const got = Buffer.concat(parts);
    assert.equal(got.length, 200);
    assert.deepEqual([got[0], got[49], got[50], got[149], got[150], got[199]], [4, 4, 5, 5, 6, 6]);
    assert.deepEqual(f.calls.map((c) => c.slice(0, 2)), ['04', '05', '06']);
  });

  test("aborting the signal destroys an idle stream at once, with the signal's reason", async () => {
    const f = fake();
    const c = new AbortController();
    const stream = streamObject(obj, { start: 0, end: obj.length - 1 }, f.read, c.signal);
    const it = stream[Symbol.asyncIterator]();
    await it.next();
    await settle(); // the next piece is fetched and buffered; nothing is in flight
    assert.equal(f.calls.length, 2);
    c.abort(new Error('caller gone'));
    assert.equal(stream.destroyed, true);
    await assert.rejects(it.next(), /caller gone/);
  });

  test('destroying the stream aborts the fetch in flight', async () => {
    const signals: AbortSignal[] = [];
    // The first piece arrives; every later fetch hangs until its signal aborts.
    const read = (id: string, s: AbortSignal): Promise<Buffer> => {
      signals.push(s);
      if (signals.length === 1) return Promise.resolve(Buffer.alloc(size));
      return new Promise((_, reject) => s.addEventListener('abort', () => reject(s.reason as Error), { once: true }));
    };
    const stream = streamObject(obj, { start: 0, end: obj.length - 1 }, read, new AbortController().signal);
    const it = stream[Symbol.asyncIterator]();
    await it.next();
    await settle();
    assert.equal(signals.length, 2);
    assert.equal(signals[1]?.aborted, false);
    stream.destroy();
    await settle();
    assert.equal(signals[1]?.aborted, true);
  });
});

// ------------------------------------------------------------------ S2
describe('S2', () => {
  test("the repeat-offset copy (a 1-byte-offset copy with offset 0), which Snappy's decoders reject", () => {
    // uvarint 12; literal "abcd"; copy offset 4 length 4; repeat (offset 0) length 4.
    const block = Buffer.from([14, 0x0c, 0x61, 0x62, 0x63, 0x64, 0x01, 0x04, 0x01, 0x00]); // says 14, holds 12
    const withRepeat = Buffer.from([12, 0x0c, 0x61, 0x62, 0x63, 0x64, 0x01, 0x04, 0x01, 0x00]);
    assert.equal(decodeS2Block(withRepeat).toString(), 'abcdabcdabcd');
    assert.throws(() => decodeS2Block(block), /shorter than its stated length/);
    const stream = Buffer.concat([
      Buffer.from([0xff, 6, 0, 0]), Buffer.from('S2sTwO'),
      Buffer.from([0x00, 4 + withRepeat.length, 0, 0, 0, 0, 0, 0]), withRepeat,
      Buffer.from([0x01, 4 + 3, 0, 0, 0, 0, 0, 0]), Buffer.from('xyz'),
      Buffer.from([0xfe, 2, 0, 0, 0, 0]),
    ]);
    assert.equal(decodeS2Stream(stream).toString(), 'abcdabcdabcdxyz');
    assert.throws(() => decodeS2Stream(stream.subarray(10)), /no stream identifier/);
    assert.throws(() => decodeS2Block(Buffer.from([4, 0x01, 0x09])), /copy outside the output/);
  });
});

describe('paths inside a snapshot', () => {
  test('segments; leading and trailing slashes ignored; "..", ".", "" and NUL refused', () => {
    assert.deepEqual(snapshotPathSegments(''), []);
    assert.deepEqual(snapshotPathSegments('/'), []);
    assert.deepEqual(snapshotPathSegments('/a/b c/ü/'), ['a', 'b c', 'ü']);
    for (const p of ['..', 'a/..', 'a/./b', 'a//b', '../a', 'a\0b']) assert.throws(() => snapshotPathSegments(p), /segment|NUL/, p);
  });
});

describe('manifest merging', () => {
  const entry = (id: string, modified: string, extra: Record<string, unknown> = {}): Record<string, unknown> => ({ id, labels: { type: 'snapshot' }, modified, data: { v: modified }, ...extra });
  test('per id the latest modified wins (nanoseconds count), whatever content holds it; a deleted winner removes the id', () => {
    const merged = mergeManifests([
      { contentID: 'm1', json: { entries: [entry('a', '2026-01-01T00:00:00.000000001Z'), entry('b', '2026-01-01T00:00:00Z'), entry('c', '2026-01-01T00:00:00Z')] } },
      { contentID: 'm2', json: { entries: [entry('a', '2026-01-01T00:00:00.000000002Z'), entry('b', '2026-01-02T00:00:00Z', { deleted: true }), entry('c', '2025-12-31T00:00:00Z', { deleted: true })] } },
    ]);
    assert.deepEqual(merged.map((m) => [m.id, m.modified]), [['a', '2026-01-01T00:00:00.000000002Z'], ['c', '2026-01-01T00:00:00Z']]);
    assert.throws(() => mergeManifests([{ contentID: 'm3', json: { nope: 1 } }]), CorruptRepositoryError);
  });
});

describe("kopia's known-answer data", () => {
  test('DeriveKeyFromMasterKey (internal/crypto/key_derivation_test.go)', () => {
    const key = hkdf(Buffer.from('ABCDEFGHIJKLMNOP'), Buffer.from('0123456789012345'), 'the-test-purpose', 32);
    assert.equal(key.toString('hex'), '828769ee8969bc37f11dbaa32838f8db6c19daa6e3ae5f5eed2da2d94d8faddb');
  });
});
