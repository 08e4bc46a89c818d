import { CorruptRepositoryError, KopiaNotFoundError } from './errors.ts';
import { contentIDFromKey, contentIDKey, parseContentID } from './content-id.ts';

/** Where one content lives and how it is stored, as the merged index says. */
export interface ContentInfo {
  contentID: string;
  packBlobID: string;
  packOffset: number;
  packedLength: number;
  originalLength: number;
  /** compression.HeaderID; 0 when the content is stored uncompressed. */
  compressionHeaderID: number;
  formatVersion: number;
  deleted: boolean;
  /** Unix seconds when the entry was written. */
  timestamp: number;
}

/*
 * Packed entries. Every entry of every index blob becomes one fixed-size record in a Buffer, never
 * a JS object: key (prefix byte + hash, `keySize` bytes), then
 *   +0  timestamp   u48 BE (unix seconds)
 *   +6  packOffset  u32 BE
 *   +10 packedLen   u32 BE
 *   +14 origLen     u32 BE
 *   +18 pack        u32 BE  index into the shared pack-name table
 *   +22 compression u32 BE  compression header id
 *   +26 flags       u8      bit 0: deleted
 *   +27 fmtVersion  u8
 * Each blob's records are sorted by key (kopia writes them sorted); runs are merged pairwise with
 * kopia's rule for duplicates, then searched in place by binary search.
 *
 * Memory: keySize + 28 bytes per content, 45 bytes with kopia's default 128-bit hashes (17-byte
 * keys), plus one string per distinct pack. Measured here (Node 24, 2026-12-05; 1,000,000 entries in
 * 10 runs over 1,000 packs, merged, then gc): index.byteLength 45,000,000; process arrayBuffers
 * +42 MB and RSS +61 MB once the merge settled; the JS heap +0.4 MB (no per-entry objects). During
 * the build the inputs and one merge level coexist, so the peak is about 3x (~135 MB per million).
 * Build 1.0 s; 100,000 lookups 0.28 s. test/kopia/units.test.ts checks the bytes per entry.
 */
const VALUE_SIZE = 28;
const O_TS = 0;
const O_PACK_OFFSET = 6;
const O_PACKED_LEN = 10;
const O_ORIG_LEN = 14;
const O_PACK = 18;
const O_COMPRESSION = 22;
const O_FLAGS = 26;
const O_FMT = 27;

/** Per-content overhead of format v1 indexes, which store no original length (nonce + tag). */
const V1_OVERHEAD = 28;

/** A sorted run of packed entries with one key size. */
export interface IndexRun {
  keySize: number;
  count: number;
  data: Buffer;
}

/** Distinct pack blob ids, shared by all runs of one index. */
export class PackTable {
  readonly names: string[] = [];
  readonly #ids = new Map<string, number>();
  intern(name: string): number {
    let n = this.#ids.get(name);
    if (n === undefined) {
      n = this.names.length;
      this.names.push(name);
      this.#ids.set(name, n);
    }
    return n;
  }
}

function malformed(blobID: string, why: string): CorruptRepositoryError {
  return new CorruptRepositoryError('malformed', `index blob ${blobID}: ${why}`);
}

function u24(b: Buffer, o: number): number {
  return b.readUIntBE(o, 3);
}

/** Parses one decrypted index blob (v1 or v2) into a sorted run of packed entries. */
export function parseIndexBlob(data: Buffer, blobID: string, packs: PackTable): IndexRun {
  const version = data[0];
  if (version === 1) return parseV1(data, blobID, packs);
  if (version === 2) return parseV2(data, blobID, packs);
  throw malformed(blobID, `unknown index version ${String(version)}`);
}

function parseV1(data: Buffer, blobID: string, packs: PackTable): IndexRun {
  if (data.length < 8) throw malformed(blobID, 'short header');
  const keySize = data.readUInt8(1);
  const entrySize = data.readUInt16BE(2);
  const count = data.readUInt32BE(4);
  if (keySize <= 1 || entrySize !== 20) throw malformed(blobID, 'bad v1 header');
  const stride = keySize + entrySize;
  if (8 + count * stride > data.length) throw malformed(blobID, 'entries past the end');
  const out = Buffer.alloc(count * (keySize + VALUE_SIZE));
  const packCache = new Map<number, number>();
  for (let i = 0; i < count; i++) {
    const src = 8 + i * stride;
    const e = src + keySize;
    const dst = i * (keySize + VALUE_SIZE);
    data.copy(out, dst, src, e);
    const v = dst + keySize;
    const nameLen = data.readUInt8(e + 7);
    const nameOff = data.readUInt32BE(e + 8);
    let pack = packCache.get(nameOff);
    if (pack === undefined) {
      if (nameOff + nameLen > data.length) throw malformed(blobID, 'pack name past the end');
      pack = packs.intern(data.toString('latin1', nameOff, nameOff + nameLen));
      packCache.set(nameOff, pack);
    }
    const offAndFlags = data.readUInt32BE(e + 12);
    const packed = data.readUInt32BE(e + 16);
    out.writeUIntBE(data.readUIntBE(e, 6), v + O_TS, 6);
    out.writeUInt32BE(offAndFlags & 0x7fffffff, v + O_PACK_OFFSET);
    out.writeUInt32BE(packed, v + O_PACKED_LEN);
    out.writeUInt32BE(Math.max(0, packed - V1_OVERHEAD), v + O_ORIG_LEN);
    out.writeUInt32BE(pack, v + O_PACK);
    out.writeUInt32BE(0, v + O_COMPRESSION);
    out.writeUInt8(offAndFlags & 0x80000000 ? 1 : 0, v + O_FLAGS);
    out.writeUInt8(data.readUInt8(e + 6), v + O_FMT);
  }
  return { keySize, count, data: out };
}

function parseV2(data: Buffer, blobID: string, packs: PackTable): IndexRun {
  if (data.length < 17) throw malformed(blobID, 'short header');
  const keySize = data.readUInt8(1);
  const entrySize = data.readUInt16BE(2);
  const count = data.readUInt32BE(4);
  const packCount = data.readUInt32BE(8);
  const formatCount = data.readUInt8(12);
  const baseTs = data.readUInt32BE(13);
  if (count > 0 && (keySize <= 1 || entrySize < 16 || entrySize > 19)) throw malformed(blobID, 'bad v2 header');
  const stride = keySize + entrySize;
  const packsOffset = 17 + count * stride;
  const formatsOffset = packsOffset + packCount * 5;
  if (formatsOffset + formatCount * 6 > data.length) throw malformed(blobID, 'sections past the end');
  const packIDs: number[] = [];
  for (let i = 0; i < packCount; i++) {
    const p = packsOffset + i * 5;
    const nameLen = data.readUInt8(p);
    const nameOff = data.readUInt32BE(p + 1);
    if (nameOff + nameLen > data.length) throw malformed(blobID, 'pack name past the end');
    packIDs.push(packs.intern(data.toString('latin1', nameOff, nameOff + nameLen)));
  }
  const formats: { compression: number; version: number }[] = [];
  for (let i = 0; i < formatCount; i++) {
    const f = formatsOffset + i * 6;
    formats.push({ compression: data.readUInt32BE(f), version: data.readUInt8(f + 4) });
  }
  const out = Buffer.alloc(count * (keySize + VALUE_SIZE));
  for (let i = 0; i < count; i++) {
    const src = 17 + i * stride;
    const e = src + keySize;
    const dst = i * (keySize + VALUE_SIZE);
    data.copy(out, dst, src, e);
    const v = dst + keySize;
    const offAndFlags = data.readUInt32BE(e + 4);
    let orig = u24(data, e + 8);
    let packed = u24(data, e + 11);
    let pack = data.readUInt16BE(e + 14);
    const fid = entrySize > 16 ? data.readUInt8(e + 16) : 0;
    if (entrySize > 17) pack |= data.readUInt8(e + 17) << 16;
    if (entrySize > 18) {
      const hi = data.readUInt8(e + 18);
      orig += (hi >> 4) * 0x1000000;
      packed += (hi & 0xf) * 0x1000000;
    }
    const format = formats[fid];
    const packIndex = packIDs[pack];
    if (!format || packIndex === undefined) throw malformed(blobID, `entry ${i} names a pack or format that is not there`);
    out.writeUIntBE(data.readUInt32BE(e) + baseTs, v + O_TS, 6);
    out.writeUInt32BE(offAndFlags & 0x7fffffff, v + O_PACK_OFFSET);
    out.writeUInt32BE(packed, v + O_PACKED_LEN);
    out.writeUInt32BE(orig, v + O_ORIG_LEN);
    out.writeUInt32BE(packIndex, v + O_PACK);
    out.writeUInt32BE(format.compression, v + O_COMPRESSION);
    out.writeUInt8(offAndFlags & 0x80000000 ? 1 : 0, v + O_FLAGS);
    out.writeUInt8(format.version, v + O_FMT);
  }
  return { keySize, count, data: out };
}

/** kopia's merge rule (index/merged.go): newer timestamp; then not deleted; then the larger pack id. */
function firstWins(a: Buffer, ao: number, b: Buffer, bo: number, packs: PackTable): boolean {
  const ta = a.readUIntBE(ao + O_TS, 6);
  const tb = b.readUIntBE(bo + O_TS, 6);
  if (ta !== tb) return ta > tb;
  const da = (a[ao + O_FLAGS] ?? 0) & 1;
  const db = (b[bo + O_FLAGS] ?? 0) & 1;
  if (da !== db) return da === 0;
  return (packs.names[a.readUInt32BE(ao + O_PACK)] ?? '') > (packs.names[b.readUInt32BE(bo + O_PACK)] ?? '');
}

/** Merges two sorted runs into one; of two entries with the same key, the one kopia would pick stays. */
function mergeTwo(a: IndexRun, b: IndexRun, packs: PackTable): IndexRun {
  if (a.count === 0) return b;
  if (b.count === 0) return a;
  if (a.keySize !== b.keySize) throw new CorruptRepositoryError('malformed', `index blobs disagree on the content key size (${a.keySize} and ${b.keySize})`);
  const k = a.keySize;
  const stride = k + VALUE_SIZE;
  const out = Buffer.alloc((a.count + b.count) * stride);
  let i = 0;
  let j = 0;
  let n = 0;
  while (i < a.count || j < b.count) {
    const ao = i * stride;
    const bo = j * stride;
    let cmp: number;
    if (i >= a.count) cmp = 1;
    else if (j >= b.count) cmp = -1;
    else cmp = a.data.compare(b.data, bo, bo + k, ao, ao + k);
    if (cmp < 0) {
      a.data.copy(out, n * stride, ao, ao + stride);
      i++;
    } else if (cmp > 0) {
      b.data.copy(out, n * stride, bo, bo + stride);
      j++;
    } else {
      if (firstWins(a.data, ao + k, b.data, bo + k, packs)) a.data.copy(out, n * stride, ao, ao + stride);
      else b.data.copy(out, n * stride, bo, bo + stride);
      i++;
      j++;
    }
    n++;
  }
  return { keySize: k, count: n, data: n === a.count + b.count ? out : out.subarray(0, n * stride) };
}

/** A sorted run whose records have duplicates within itself (not written by kopia, but cheap to guard). */
function checkSorted(run: IndexRun, blobID: string): void {
  const stride = run.keySize + VALUE_SIZE;
  for (let i = 1; i < run.count; i++) {
    const cmp = run.data.compare(run.data, i * stride, i * stride + run.keySize, (i - 1) * stride, (i - 1) * stride + run.keySize);
    if (cmp >= 0) throw malformed(blobID, 'entries are not sorted');
  }
}

/**
 * The merged content index of a repository: what kopia's `Merged` over the chosen index blobs
 * answers, with entries deleted no later than the deletion watermark hidden as kopia hides them.
 */
export class ContentIndex {
  readonly #run: IndexRun;
  readonly #packs: PackTable;
  readonly #watermark: number;

  private constructor(run: IndexRun, packs: PackTable, deletionWatermark: number) {
    this.#run = run;
    this.#packs = packs;
    this.#watermark = deletionWatermark;
  }

  /** Builds the index from parsed runs (merged pairwise, so about N·log2(runs) copies). */
  static build(runs: { run: IndexRun; blobID: string }[], packs: PackTable, deletionWatermark = 0): ContentIndex {
    let level: IndexRun[] = [];
    for (const { run, blobID } of runs) {
      checkSorted(run, blobID);
      level.push(run);
    }
    if (level.length === 0) return new ContentIndex({ keySize: 17, count: 0, data: Buffer.alloc(0) }, packs, deletionWatermark);
    while (level.length > 1) {
      const next: IndexRun[] = [];
      for (let i = 0; i < level.length; i += 2) {
        const a = level[i];
        const b = level[i + 1];
        if (a && b) next.push(mergeTwo(a, b, packs));
        else if (a) next.push(a);
      }
      level = next;
    }
    const only = level[0];
    if (!only) throw new Error('unreachable');
    return new ContentIndex(only, packs, deletionWatermark);
  }

  /** Entries, deleted ones included (kopia keeps them in the index). */
  get size(): number {
    return this.#run.count;
  }

  /** Distinct pack blob ids the entries name. */
  get packCount(): number {
    return this.#packs.names.length;
  }

  /** Bytes of packed entries held. */
  get byteLength(): number {
    return this.#run.data.length;
  }

  #info(i: number): ContentInfo {
    const k = this.#run.keySize;
    const o = i * (k + VALUE_SIZE);
    const d = this.#run.data;
    const v = o + k;
    return {
      contentID: contentIDFromKey(d.subarray(o, v)),
      packBlobID: this.#packs.names[d.readUInt32BE(v + O_PACK)] ?? '',
      packOffset: d.readUInt32BE(v + O_PACK_OFFSET),
      packedLength: d.readUInt32BE(v + O_PACKED_LEN),
      originalLength: d.readUInt32BE(v + O_ORIG_LEN),
      compressionHeaderID: d.readUInt32BE(v + O_COMPRESSION),
      formatVersion: d.readUInt8(v + O_FMT),
      deleted: (d.readUInt8(v + O_FLAGS) & 1) === 1,
      timestamp: d.readUIntBE(v + O_TS, 6),
    };
  }

  #visible(info: ContentInfo): boolean {
    return !(info.deleted && info.timestamp <= this.#watermark);
  }

  /** Binary search for the first entry whose key is >= `key`. */
  #lowerBound(key: Buffer): number {
    const k = this.#run.keySize;
    const stride = k + VALUE_SIZE;
    let lo = 0;
    let hi = this.#run.count;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      const o = mid * stride;
      if (this.#run.data.compare(key, 0, key.length, o, o + Math.min(k, key.length)) < 0) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  /** The content's entry, or undefined (also for an entry hidden by the deletion watermark). */
  find(contentID: string): ContentInfo | undefined {
    const key = contentIDKey(parseContentID(contentID));
    if (key.length !== this.#run.keySize) return undefined;
    const i = this.#lowerBound(key);
    if (i >= this.#run.count) return undefined;
    const o = i * (this.#run.keySize + VALUE_SIZE);
    if (this.#run.data.compare(key, 0, key.length, o, o + key.length) !== 0) return undefined;
    const info = this.#info(i);
    return this.#visible(info) ? info : undefined;
  }

  /** Like find, but throws KopiaNotFoundError. */
  get(contentID: string): ContentInfo {
    const info = this.find(contentID);
    if (!info) throw new KopiaNotFoundError('content', `content ${contentID} is not in the index`);
    return info;
  }

  /** Visible entries whose content id has `prefix` (a letter, '' for unprefixed), in key order. */
  *withPrefix(prefix: string): Iterable<ContentInfo> {
    const p = prefix === '' ? 0 : prefix.charCodeAt(0);
    const start = this.#lowerBound(Buffer.from([p]));
    const stride = this.#run.keySize + VALUE_SIZE;
    for (let i = start; i < this.#run.count && this.#run.data[i * stride] === p; i++) {
      const info = this.#info(i);
      if (this.#visible(info)) yield info;
    }
  }

  /** Every visible entry, in key order. */
  *all(): Iterable<ContentInfo> {
    for (let i = 0; i < this.#run.count; i++) {
      const info = this.#info(i);
      if (this.#visible(info)) yield info;
    }
  }
}
