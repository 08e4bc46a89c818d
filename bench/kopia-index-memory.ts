/**
 * What a Kopia repository's content index costs in memory, measured alone in a fresh process
 * (started by bench/kopia.ts as `node --expose-gc bench/kopia-index-memory.ts N`): N synthetic
 * entries written as kopia's v2 index blobs (10 blobs of N/10 entries over 1,000 packs, keys
 * interleaved across the blobs so that the merge has real work), parsed and merged by the reader's
 * own parseIndexBlob and ContentIndex.build, as loading a repository does after decryption. Prints
 * one JSON line: the settled deltas (RSS, arrayBuffers, V8 heap) once the blobs are gone, the peak
 * RSS while loading, the index's own bytes, build and lookup times.
 */
import { randomBytes } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { ContentIndex, PackTable, parseIndexBlob } from '../src/kopia/index.ts';

const BLOBS = 10;
const PACKS = 1_000;
/** kopia's default content ids: a 128-bit hash, stored as a prefix byte (0: none) and 16 bytes. */
const KEY_SIZE = 17;
/** v2 entries with a format id byte, as kopia writes them for fewer than 65,536 packs. */
const ENTRY_SIZE = 17;
const BASE_TS = 1_700_000_000;

/** A pack blob id shaped like kopia's: `p` + 32 hex digits + `-s` + a session id. */
function packName(i: number): string {
  return `p${randomBytes(16).toString('hex')}-s${i.toString(16).padStart(16, '0')}`;
}

/**
 * One v2 index blob (index_v2.go's layout): header, sorted entries, the pack table, one format
 * (no compression, format version 2), the pack names. Entry i of blob r is content i*BLOBS + r: the
 * counter in the key's first bytes keeps each blob sorted, the rest of the key is random.
 */
function v2IndexBlob(r: number, count: number, packs: string[]): Buffer {
  const stride = KEY_SIZE + ENTRY_SIZE;
  const header = Buffer.alloc(17);
  header[0] = 2;
  header[1] = KEY_SIZE;
  header.writeUInt16BE(ENTRY_SIZE, 2);
  header.writeUInt32BE(count, 4);
  header.writeUInt32BE(packs.length, 8);
  header[12] = 1;
  header.writeUInt32BE(BASE_TS, 13);
  const body = randomBytes(count * stride);
  for (let i = 0; i < count; i++) {
    const o = i * stride;
    body[o] = 0;
    body.writeUInt32BE(i * BLOBS + r, o + 1);
    const v = o + KEY_SIZE;
    body.writeUInt32BE(i % 86_400, v);
    body.writeUInt32BE((i * 4096) & 0x7fffffff, v + 4);
    body.writeUIntBE(4096, v + 8, 3);
    body.writeUIntBE(4096 + 28, v + 11, 3);
    body.writeUInt16BE((i + r) % packs.length, v + 14);
    body[v + 16] = 0;
  }
  const names = Buffer.from(packs.join(''), 'latin1');
  const packTable = Buffer.alloc(packs.length * 5);
  let nameOffset = 17 + body.length + packTable.length + 6;
  packs.forEach((p, i) => {
    packTable[i * 5] = p.length;
    packTable.writeUInt32BE(nameOffset, i * 5 + 1);
    nameOffset += p.length;
  });
  const formats = Buffer.from([0, 0, 0, 0, 2, 0]);
  return Buffer.concat([header, body, packTable, formats, names]);
}

function settled(): NodeJS.MemoryUsage {
  for (let i = 0; i < 3; i++) globalThis.gc!();
  return process.memoryUsage();
}

function main(): void {
  const entries = Number(process.argv[2] ?? 1_000_000);
  if (!globalThis.gc) throw new Error('run with --expose-gc');
  if (!Number.isSafeInteger(entries) || entries % BLOBS !== 0) throw new Error(`entries must be a multiple of ${BLOBS}`);
  const packs = Array.from({ length: PACKS }, (_, i) => packName(i));
  const before = settled();
  const blobs = Array.from({ length: BLOBS }, (_, r) => v2IndexBlob(r, entries / BLOBS, packs));
  const blobBytes = blobs.reduce((a, b) => a + b.length, 0);
  // Content ids to look up afterwards, read from the blobs' keys (prefix byte 0: the id is the hash in hex).
  const stride = KEY_SIZE + ENTRY_SIZE;
  const ids = Array.from({ length: 1_000 }, (_, n) => {
    const o = 17 + ((n * 7919) % (entries / BLOBS)) * stride;
    return blobs[n % BLOBS]!.toString('hex', o + 1, o + KEY_SIZE);
  });
  const withBlobs = settled();

  const t0 = performance.now();
  const table = new PackTable();
  const runs = blobs.map((b, r) => ({ run: parseIndexBlob(b, `xn0_${r}`, table), blobID: `xn0_${r}` }));
  // The loader drops each decrypted blob once parsed; only the runs go on to the merge.
  blobs.length = 0;
  const index = ContentIndex.build(runs, table, 0);
  const buildMs = performance.now() - t0;
  runs.length = 0;
  if (index.size !== entries) throw new Error(`index holds ${index.size} entries, expected ${entries}`);
  const peakRss = process.resourceUsage().maxRSS * 1024;
  const after = settled();

  const t1 = performance.now();
  const lookups = 100_000;
  for (let n = 0; n < lookups; n++) {
    const id = ids[n % ids.length]!;
    if (index.find(id)?.contentID !== id) throw new Error(`content ${id} not found`);
  }
  const lookupMs = performance.now() - t1;
  console.log(
    JSON.stringify({
      entries,
      blobs: BLOBS,
      packs: PACKS,
      blobBytes,
      indexBytes: index.byteLength,
      buildMs,
      lookupMs,
      lookups,
      rssBefore: before.rss,
      rssDelta: after.rss - before.rss,
      arrayBuffersDelta: after.arrayBuffers - before.arrayBuffers,
      heapUsedDelta: after.heapUsed - before.heapUsed,
      rssWithBlobs: withBlobs.rss - before.rss,
      peakRssDelta: peakRss - before.rss,
    }),
  );
}

main();
