import type { BlobStorage } from './blobs.ts';
import { blobIV } from './content-crypto.ts';
import { CorruptRepositoryError, KopiaNotFoundError } from './errors.ts';
import type { ContentDecryptor } from './content-crypto.ts';
import { ContentIndex, PackTable, parseIndexBlob } from './index.ts';
import type { IndexRun } from './index.ts';

/** Kopia keeps two epochs after the write epoch unsettled (internal/epoch: numUnsettledEpochs). */
const UNSETTLED_EPOCHS = 2;

/** Which index blobs make up the repository's current index, and the deletion watermark. */
export interface IndexBlobSelection {
  blobIDs: string[];
  /** Unix seconds; deleted entries no newer than this are hidden (0: none). */
  deletionWatermark: number;
}

async function listIDs(blobs: BlobStorage, prefix: string, signal: AbortSignal): Promise<string[]> {
  const ids: string[] = [];
  for await (const b of blobs.list(prefix, signal)) ids.push(b.id);
  return ids;
}

/** The leading epoch number of `xn12_…`, `xs3_…`, `xe7`: digits after the letters, before the first `_`. */
function epochOf(id: string): number | undefined {
  const head = id.split('_')[0] ?? '';
  const m = /^[a-z]+(\d+)$/.exec(head);
  return m ? Number(m[1]) : undefined;
}

/**
 * Complete sets among blobs named `<any>-s<set>-c<count>` (internal/completeset): a set counts only
 * when all `count` members are there; blobs not so named are sets of their own. In listing order.
 */
function completeSets(ids: string[]): string[][] {
  const sets = new Map<string, string[]>();
  const complete: string[][] = [];
  for (const id of ids) {
    const parts = id.split('-');
    const count = parts.length >= 3 && parts[1]?.startsWith('s') && parts[2]?.startsWith('c') ? Number(parts[2].slice(1)) : NaN;
    if (!Number.isInteger(count)) {
      complete.push([id]);
      continue;
    }
    const key = parts[1] ?? '';
    const members = sets.get(key) ?? [];
    members.push(id);
    sets.set(key, members);
    if (members.length === count) complete.push(members);
  }
  return complete;
}

/**
 * The epoch manager's choice (internal/epoch/epoch_manager.go refreshAttemptLocked and
 * getCompleteIndexSetForCommittedState): the write epoch is the highest `xe` marker; the longest
 * chain of complete range checkpoints `xr<a>_<b>` from epoch 0 covers the oldest epochs; each later
 * epoch up to write epoch + 1 is its complete single-epoch compaction `xs<n>` when the epoch is
 * settled (at most write epoch - 2) and has one, otherwise all its uncompacted `xn<n>_` blobs.
 * The deletion watermark is the newest `xw<unix seconds>`.
 */
export async function selectEpochIndexBlobs(blobs: BlobStorage, signal: AbortSignal): Promise<IndexBlobSelection> {
  const [markers, watermarks, singles, ranges, uncompacted] = await Promise.all(
    ['xe', 'xw', 'xs', 'xr', 'xn'].map((p) => listIDs(blobs, p, signal)),
  ) as [string[], string[], string[], string[], string[]];

  let writeEpoch = 0;
  for (const id of markers) writeEpoch = Math.max(writeEpoch, epochOf(id) ?? 0);

  let deletionWatermark = 0;
  for (const id of watermarks) {
    const m = /^xw(\d+)$/.exec(id);
    if (m) deletionWatermark = Math.max(deletionWatermark, Number(m[1]));
  }

  const singleByEpoch = new Map<number, string[]>();
  const singleGroups = new Map<number, string[]>();
  for (const id of singles) {
    const e = epochOf(id);
    if (e === undefined) continue;
    singleGroups.set(e, [...(singleGroups.get(e) ?? []), id]);
  }
  for (const [e, ids] of singleGroups) {
    const first = completeSets(ids)[0];
    if (first) singleByEpoch.set(e, first);
  }

  // Range checkpoints: complete sets per (min, max), then the chain from epoch 0 that reaches furthest
  // (on a tie, the one with fewer links), as findLongestRangeCheckpoint does.
  const rangeGroups = new Map<string, { min: number; max: number; ids: string[] }>();
  for (const id of ranges) {
    const m = /^xr(\d+)_(\d+)_/.exec(id);
    if (!m) continue;
    const key = `${m[1]}_${m[2]}`;
    const g = rangeGroups.get(key) ?? { min: Number(m[1]), max: Number(m[2]), ids: [] };
    g.ids.push(id);
    rangeGroups.set(key, g);
  }
  const byMin = new Map<number, { min: number; max: number; ids: string[] }[]>();
  for (const g of rangeGroups.values()) {
    const set = completeSets(g.ids)[0];
    if (!set) continue;
    byMin.set(g.min, [...(byMin.get(g.min) ?? []), { ...g, ids: set }]);
  }
  const memo = new Map<number, { min: number; max: number; ids: string[] }[]>();
  const longest = (start: number): { min: number; max: number; ids: string[] }[] => {
    const cached = memo.get(start);
    if (cached) return cached;
    let best: { min: number; max: number; ids: string[] }[] = [];
    let bestMax = 0;
    for (const cp of byMin.get(start) ?? []) {
      const chain = [cp, ...longest(cp.max + 1)];
      const m = chain[chain.length - 1]?.max ?? 0;
      if (m > bestMax || (m === bestMax && chain.length < best.length)) {
        bestMax = m;
        best = chain;
      }
    }
    memo.set(start, best);
    return best;
  };

  const chosen: string[] = [];
  let startEpoch = 0;
  for (const cp of longest(0)) {
    if (cp.max > startEpoch) {
      chosen.push(...cp.ids);
      startEpoch = cp.max + 1;
    }
  }
  const uncompactedByEpoch = new Map<number, string[]>();
  for (const id of uncompacted) {
    const e = epochOf(id);
    if (e !== undefined) uncompactedByEpoch.set(e, [...(uncompactedByEpoch.get(e) ?? []), id]);
  }
  for (let e = startEpoch; e <= writeEpoch + 1; e++) {
    const single = singleByEpoch.get(e);
    if (e <= writeEpoch - UNSETTLED_EPOCHS && single) chosen.push(...single);
    else chosen.push(...(uncompactedByEpoch.get(e) ?? []));
  }
  return { blobIDs: chosen, deletionWatermark };
}

/**
 * The legacy index (no epochs; repo/content/indexblob/index_blob_manager_v0.go): every `n` blob,
 * less the inputs of finished compactions. A compaction log `m<…>` (encrypted like an index blob)
 * holds `{"inputMetadata":[{id,…}],"outputMetadata":[{id,…}]}`; when all its outputs exist, its
 * inputs are superseded. This matters: a v0 compaction may drop old deleted entries, and reading
 * the inputs again would bring back a content whose pack is gone.
 */
export async function selectLegacyIndexBlobs(blobs: BlobStorage, decryptor: ContentDecryptor, signal: AbortSignal): Promise<IndexBlobSelection> {
  const [indexIDs, logIDs] = await Promise.all([listIDs(blobs, 'n', signal), listIDs(blobs, 'm', signal)]);
  const present = new Set(indexIDs);
  const superseded = new Set<string>();
  for (const logID of logIDs) {
    let raw: Buffer;
    try {
      raw = await blobs.read(logID, signal);
    } catch (err) {
      if (err instanceof KopiaNotFoundError) continue; // deleted since it was listed, as kopia allows
      throw err;
    }
    const plain = decryptor.decrypt(raw, blobIV(logID), `compaction log ${logID}`);
    let log: unknown;
    try {
      log = JSON.parse(plain.toString('utf8')) as unknown;
    } catch (err) {
      throw new CorruptRepositoryError('malformed', `compaction log ${logID} is not JSON`, { cause: err });
    }
    const ids = (v: unknown): string[] => {
      const out: string[] = [];
      if (Array.isArray(v)) {
        for (const m of v as unknown[]) {
          const id = typeof m === 'object' && m !== null ? (m as Record<string, unknown>).id : undefined;
          if (typeof id === 'string') out.push(id);
        }
      }
      return out;
    };
    const rec = typeof log === 'object' && log !== null ? (log as Record<string, unknown>) : {};
    if (ids(rec.outputMetadata).every((id) => present.has(id))) for (const id of ids(rec.inputMetadata)) superseded.add(id);
  }
  return { blobIDs: indexIDs.filter((id) => !superseded.has(id)), deletionWatermark: 0 };
}

/** Reads, decrypts and parses the chosen index blobs (a few at a time) and merges them. */
export async function loadContentIndex(
  blobs: BlobStorage,
  decryptor: ContentDecryptor,
  selection: IndexBlobSelection,
  signal: AbortSignal,
): Promise<ContentIndex> {
  const packs = new PackTable();
  const runs: { run: IndexRun; blobID: string }[] = [];
  const queue = [...selection.blobIDs];
  const worker = async (): Promise<void> => {
    for (let id = queue.shift(); id !== undefined; id = queue.shift()) {
      const raw = await blobs.read(id, signal);
      const plain = decryptor.decrypt(raw, blobIV(id), `index blob ${id}`);
      runs.push({ run: parseIndexBlob(plain, id, packs), blobID: id });
    }
  };
  await Promise.all(Array.from({ length: 8 }, worker));
  // Merge order does not change the result (the rule is a total order), but keep it stable.
  runs.sort((a, b) => (a.blobID < b.blobID ? -1 : a.blobID > b.blobID ? 1 : 0));
  return ContentIndex.build(runs, packs, selection.deletionWatermark);
}
