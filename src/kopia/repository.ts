/**
 * The Kopia reader's entry point: `openRepository(store, {prefix, naming, password, signal})` gives a
 * read-only `Repository` over any ObjectStore.
 *
 *   const repo = await openRepository(store, { prefix: 'velero/kopia/ns1/', password, signal });
 *   const snap = await repo.snapshot(snapshotID, signal);      // or repo.snapshots(signal)
 *   await repo.listDirectory(snap, 'var/lib', signal);           // DirEntry[]
 *   const f = await repo.openFile(snap, 'var/lib/db', { signal, range: { start: 0, end: 1023 } });
 *   f.stream.pipe(out);                                          // errors, never ends short, on damage
 *
 * Layers, each its own file: blobs.ts (blob ids to object keys), format.ts (kopia.repository),
 * content-crypto.ts, compression.ts (+ s2.ts), index.ts (packed, merged index), index-blobs.ts
 * (which index blobs count), objects.ts (object ids, ranged streams), this file (manifests,
 * snapshots, directories, paths). Errors are the typed ones of errors.ts.
 */
import type { Readable } from 'node:stream';
import { gunzipSync } from 'node:zlib';
import type { ObjectStore } from '../stores/types.ts';
import { blobStorage } from './blobs.ts';
import { ByteLRU } from './byte-lru.ts';
import type { BlobNaming, BlobStorage } from './blobs.ts';
import { decompress } from './compression.ts';
import { ContentDecryptor, contentIV } from './content-crypto.ts';
import { parseContentID } from './content-id.ts';
import { CorruptRepositoryError, InvalidRequestError, KopiaNotFoundError } from './errors.ts';
import { Flights } from './flight.ts';
import { readFormat } from './format.ts';
import type { KeyCache } from './key-cache.ts';
import type { RepositoryFormat } from './format.ts';
import type { ContentIndex } from './index.ts';
import { loadContentIndex, selectEpochIndexBlobs, selectLegacyIndexBlobs } from './index-blobs.ts';
import { fitObjectRange, readFirstPiece, readWhole, resolveObject, streamObject } from './objects.ts';
import type { ContentReader, ObjectID, ResolvedObject } from './objects.ts';

export interface OpenRepositoryOptions extends RepositoryCacheOptions {
  /** Key prefix of the repository in the store (`<bsl prefix>/kopia/<ns>/` for Velero); default ''. */
  prefix?: string;
  /** `object` (S3, Azure, GCS: key = prefix + blob id; default) or `filesystem` (`<id>.f` files). */
  naming?: BlobNaming;
  password: string;
  signal: AbortSignal;
  /** Derived keys shared across opens (key-cache.ts); without it every open derives the key again. */
  keys?: KeyCache;
}

/** A snapshot manifest (snapshot/manifest.go), as much of it as a reader shows. */
export interface Snapshot {
  /** The manifest id, what `kopia snapshot list --json` calls `id` and Velero stores as snapshotID. */
  id: string;
  source: { host: string; userName: string; path: string };
  description: string;
  startTime: string;
  endTime: string;
  incomplete: string | undefined;
  /** Labels of the manifest that start with `tag:`, and any `tags` of the data. */
  tags: Record<string, string>;
  pins: string[];
  rootEntry: DirEntry;
}

/** One directory entry (snapshot/snapshotfs: DirEntry JSON). */
export interface DirEntry {
  name: string;
  /** `f` file, `d` directory, `s` symlink; kopia also knows `c`, `b`, `p`, `S` (special files). */
  type: string;
  /** Permission bits (and setuid/setgid/sticky), from kopia's octal string. */
  mode: number;
  /** Modification time, RFC 3339 with nanoseconds as kopia wrote it. */
  mtime: string;
  /** Bytes (files, symlink targets); a directory's is the total of its tree when kopia knows it. */
  size: number;
  uid: number;
  gid: number;
  objectID: string;
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/**
 * Kopia writes a mode as Go's os.FileMode in octal, whose setuid, setgid and sticky bits are not
 * Unix's (a setgid 2755 file is "20000755"): they are moved to Unix's 04000, 02000 and 01000.
 */
function unixMode(goMode: number): number {
  if (!Number.isSafeInteger(goMode) || goMode < 0) return 0;
  const bit = (b: number): boolean => Math.floor(goMode / 2 ** b) % 2 === 1;
  return (goMode & 0o777) | (bit(23) ? 0o4000 : 0) | (bit(22) ? 0o2000 : 0) | (bit(20) ? 0o1000 : 0);
}

function toDirEntry(e: unknown, where: string): DirEntry {
  if (!isRecord(e) || typeof e.name !== 'string' || typeof e.type !== 'string' || typeof e.obj !== 'string') {
    throw new CorruptRepositoryError('malformed', `${where}: an entry lacks name, type or obj`);
  }
  const summ = isRecord(e.summ) ? e.summ : undefined;
  const size = typeof e.size === 'number' ? e.size : typeof summ?.size === 'number' ? summ.size : 0;
  return {
    name: e.name,
    type: e.type,
    mode: typeof e.mode === 'string' ? unixMode(parseInt(e.mode, 8)) : 0,
    mtime: typeof e.mtime === 'string' ? e.mtime : '',
    size,
    uid: typeof e.uid === 'number' ? e.uid : 0,
    gid: typeof e.gid === 'number' ? e.gid : 0,
    objectID: e.obj,
  };
}

/**
 * The segments of a path inside a snapshot: `/`-separated, leading and trailing `/` ignored.
 * `..`, `.`, empty segments and NUL are refused: a path never leaves the snapshot, and names are
 * matched exactly as kopia stored them (no normalisation).
 */
export function snapshotPathSegments(path: string): string[] {
  if (path.includes('\0')) throw new InvalidRequestError('a path inside a snapshot cannot contain NUL');
  const trimmed = path.replace(/^\/+/, '').replace(/\/+$/, '');
  if (trimmed === '') return [];
  const segments = trimmed.split('/');
  for (const s of segments) {
    if (s === '' || s === '.' || s === '..') throw new InvalidRequestError(`path ${JSON.stringify(path)} has an empty, "." or ".." segment`);
  }
  return segments;
}

/** A file opened for streaming. */
export interface OpenedFile {
  entry: DirEntry;
  /** The file's length in bytes (from its object, which is authoritative). */
  size: number;
  /** Bytes delivered, inclusive; end < start for an empty file. */
  range: { start: number; end: number };
  /** The bytes; errors (never ends early) on a damaged or missing content. */
  stream: Readable;
}

/** How a repository caches (the pool passes one shared budget to all its repositories). */
export interface RepositoryCacheOptions {
  /**
   * The memory budget for the content index, directory objects and manifests, shared by every
   * repository given the same one; default a private budget of DEFAULT_CACHE_BYTES.
   */
  cache?: ByteLRU;
  /** An index loaded longer ago than this is reloaded before its next use (ms; default 5 min). */
  indexMaxAgeMs?: number;
  /**
   * An unknown snapshot id, or a content whose pack is gone, reloads the index, but not when the
   * index was loaded less than this long ago (ms; default 5 s): a stream of requests for a bogus id
   * cannot make the reader list the store continuously.
   */
  refreshMinIntervalMs?: number;
  /** Time bound of one index load, which several requests may share (ms; default 2 min). */
  loadTimeoutMs?: number;
  /** The clock (ms), for tests. */
  now?: () => number;
}

export const DEFAULT_CACHE_BYTES = 256 * 1024 * 1024;
export const DEFAULT_INDEX_MAX_AGE_MS = 5 * 60_000;
export const DEFAULT_REFRESH_MIN_INTERVAL_MS = 5_000;
export const DEFAULT_LOAD_TIMEOUT_MS = 120_000;

/** One loaded index; the generation counts loads of this repository. */
interface IndexState {
  index: ContentIndex;
  generation: number;
  loadedAt: number;
}

/** The manifests of one index generation, and the snapshots among them. */
interface ManifestState {
  generation: number;
  manifests: Manifest[];
  snapshots: Snapshot[];
}

/*
 * Estimated sizes in the shared budget. An index counts its packed entries (45 B per entry with
 * kopia's default hashes, see index.ts) plus its pack names. A parsed directory entry was measured
 * here (Node 24, 100,000 entries, heap after gc) at 240 B with 87 characters of strings (name,
 * mtime, object id): about 150 B of object, slot and string headers plus one byte per character.
 * The estimate takes 184 B plus the characters (two bytes each for names beyond Latin-1), an
 * overestimate of ~10%. Manifests and snapshots count twice their JSON text (directory JSON parsed
 * to 1.34x its text in the same measurement).
 */
const DIR_ENTRY_BYTES = 184;
const PACK_NAME_BYTES = 64;

function dirEntriesBytes(entries: DirEntry[]): number {
  let n = 64;
  for (const e of entries) {
    // eslint-disable-next-line no-control-regex -- Latin-1 strings are one byte per character in V8
    n += DIR_ENTRY_BYTES + e.mtime.length + e.objectID.length + (/^[\u0000-\u00ff]*$/.test(e.name) ? e.name.length : 2 * e.name.length);
  }
  return n;
}

/** Deep-freezes what the cache hands out to every caller: one caller's change must not reach the others. */
function frozen<T>(value: T): T {
  if (typeof value === 'object' && value !== null && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const v of Object.values(value)) frozen(v);
  }
  return value;
}

/** Errors that say the index may be stale: a pack it names is gone (maintenance rewrote it), or a content is not in it. */
function staleIndexError(err: unknown): boolean {
  return err instanceof KopiaNotFoundError && (err.what === 'blob' || err.what === 'content');
}

/**
 * A read-only kopia repository. Open it with `openRepository` (or through a RepositoryPool); the
 * format key is derived once. The content index, directory objects and manifests live in a memory
 * budget (ByteLRU) and are loaded again when dropped from it; the index is also reloaded when older
 * than its maximum age, when a snapshot id is unknown, and when a pack it names is gone before the
 * first byte of an answer (then the read is tried once more). Everything returned is read-only.
 */
export class Repository {
  readonly format: RepositoryFormat;
  readonly #blobs: BlobStorage;
  readonly #decryptor: ContentDecryptor;
  readonly #cache: ByteLRU;
  readonly #owner: number;
  readonly #now: () => number;
  readonly #maxAge: number;
  readonly #minInterval: number;
  readonly #loads: Flights<'index'>;
  /** Of the latest load, kept here since the cache may drop the index itself. */
  #generation = 0;
  #loadedAt = -Infinity;
  /** Index loads done (for tests and metrics). */
  #loadCount = 0;

  private constructor(blobs: BlobStorage, format: RepositoryFormat, opts: RepositoryCacheOptions) {
    this.#blobs = blobs;
    this.format = format;
    this.#decryptor = new ContentDecryptor(format.encryption, format.masterKey);
    this.#cache = opts.cache ?? new ByteLRU(DEFAULT_CACHE_BYTES);
    this.#owner = this.#cache.newOwner();
    this.#now = opts.now ?? Date.now;
    this.#maxAge = opts.indexMaxAgeMs ?? DEFAULT_INDEX_MAX_AGE_MS;
    this.#minInterval = opts.refreshMinIntervalMs ?? DEFAULT_REFRESH_MIN_INTERVAL_MS;
    this.#loads = new Flights(opts.loadTimeoutMs ?? DEFAULT_LOAD_TIMEOUT_MS);
  }

  /** @internal use openRepository */
  static async open(blobs: BlobStorage, password: string, signal: AbortSignal, keys?: KeyCache, cacheOptions: RepositoryCacheOptions = {}): Promise<Repository> {
    const format = await readFormat(blobs, password, signal, keys === undefined ? undefined : (algo, pw, salt) => keys.derive(algo, pw, salt));
    const repo = new Repository(blobs, format, cacheOptions);
    await repo.#load(signal);
    return repo;
  }

  async #load(signal: AbortSignal): Promise<IndexState> {
    const selection = this.format.epochsEnabled ? await selectEpochIndexBlobs(this.#blobs, signal) : await selectLegacyIndexBlobs(this.#blobs, this.#decryptor, signal);
    const index = await loadContentIndex(this.#blobs, this.#decryptor, selection, signal);
    this.#loadCount++;
    const state: IndexState = { index, generation: ++this.#generation, loadedAt: this.#now() };
    this.#loadedAt = state.loadedAt;
    this.#cache.set(this.#owner, 'index', state, index.byteLength + index.packCount * PACK_NAME_BYTES);
    return state;
  }

  /** Loads the index again, shared with every caller asking meanwhile; the caller's abort ends only its own wait. */
  #reload(signal: AbortSignal): Promise<IndexState> {
    return this.#loads.run('index', 'loading the repository index', signal, (s) => this.#load(s));
  }

  /** The index to use now: the cached one unless dropped from the cache or past its maximum age. */
  async #state(signal: AbortSignal): Promise<IndexState> {
    const cached = this.#cache.get<IndexState>(this.#owner, 'index');
    if (cached && this.#now() - cached.loadedAt < this.#maxAge) return cached;
    return this.#reload(signal);
  }

  /**
   * A newer index than `seen`, if there may be one: a load done since, or a new load unless `seen`
   * is younger than the minimum interval (then `seen` itself).
   */
  async #newerThan(seen: IndexState, signal: AbortSignal): Promise<IndexState> {
    if (this.#generation !== seen.generation) return this.#state(signal);
    if (this.#now() - this.#loadedAt < this.#minInterval) return seen;
    return this.#reload(signal);
  }

  /**
   * Runs `op` on the current index; when it fails because a pack is gone or a content is unknown
   * (maintenance rewrote packs since the index was loaded), runs it once more on a newer index.
   */
  async #withIndex<T>(signal: AbortSignal, op: (state: IndexState) => Promise<T>): Promise<T> {
    const state = await this.#state(signal);
    try {
      return await op(state);
    } catch (err) {
      if (!staleIndexError(err)) throw err;
      const newer = await this.#newerThan(state, signal);
      if (newer === state) throw err;
      return op(newer);
    }
  }

  /** Reloads the content index now (new snapshots, maintenance), sharing a load in progress. */
  async refresh(signal: AbortSignal): Promise<void> {
    await this.#reload(signal);
  }

  /** The merged content index (loaded again if dropped from the cache or too old). */
  async contentIndex(signal: AbortSignal): Promise<ContentIndex> {
    return (await this.#state(signal)).index;
  }

  /** Index loads done so far (the open's included). */
  get indexLoads(): number {
    return this.#loadCount;
  }

  /** Drops this repository's entries from the shared cache (the pool does when the repository leaves it). */
  dropCaches(): void {
    this.#cache.deleteOwner(this.#owner);
  }

  #readContent(index: ContentIndex, contentID: string, signal: AbortSignal): Promise<Buffer> {
    const info = index.get(contentID);
    return this.#blobs.read(info.packBlobID, signal, { offset: info.packOffset, length: info.packedLength }).then((raw) => {
      const plain = this.#decryptor.decrypt(raw, contentIV(parseContentID(contentID).hash), `content ${contentID} in pack ${info.packBlobID}`);
      if (info.compressionHeaderID !== 0) return decompress(plain, `content ${contentID}`, info.compressionHeaderID, info.originalLength);
      if (plain.length !== info.originalLength) {
        throw new CorruptRepositoryError('malformed', `content ${contentID} is ${plain.length} bytes, the index says ${info.originalLength}`);
      }
      return plain;
    });
  }

  /** The content reader and direct-length lookup over one index. */
  #over(index: ContentIndex): { read: ContentReader; directLength: (oid: ObjectID) => number | undefined } {
    return {
      read: (id, signal) => this.#readContent(index, id, signal),
      directLength: (oid) => (oid.compressed ? undefined : index.get(oid.contentID).originalLength),
    };
  }

  /** One content's plaintext: read from its pack, authenticated, decrypted, decompressed. */
  readContent(contentID: string, signal: AbortSignal): Promise<Buffer> {
    return this.#withIndex(signal, ({ index }) => this.#readContent(index, contentID, signal));
  }

  /** Resolves an object id to its pieces (reads indirect lists, never file data). */
  resolveObject(objectID: string, signal: AbortSignal): Promise<ResolvedObject> {
    return this.#withIndex(signal, ({ index }) => {
      const { read, directLength } = this.#over(index);
      return resolveObject(objectID, read, signal, directLength);
    });
  }

  /**
   * Streams an object, or the inclusive byte range of it. The first content is read before this
   * resolves, so a missing pack (looked up once more in a newer index) or a damaged first content
   * is an error here; a later failure destroys the stream, never ends it short.
   */
  openObject(objectID: string, opts: { signal: AbortSignal; range?: { start: number; end?: number } }): Promise<{ size: number; range: { start: number; end: number }; stream: Readable }> {
    return this.#withIndex(opts.signal, async ({ index }) => {
      const { read, directLength } = this.#over(index);
      const obj = await resolveObject(objectID, read, opts.signal, directLength);
      const range = fitObjectRange(obj.length, opts.range);
      const first = await readFirstPiece(obj, range, read, opts.signal);
      return { size: obj.length, range, stream: streamObject(obj, range, read, opts.signal, first) };
    });
  }

  /** A whole object in memory (directories, manifests; not file data). */
  readObject(objectID: string, signal: AbortSignal): Promise<Buffer> {
    return this.#withIndex(signal, async ({ index }) => {
      const { read, directLength } = this.#over(index);
      return readWhole(await resolveObject(objectID, read, signal, directLength), read, signal);
    });
  }

  /** The manifests and snapshots of the current index, read once per index generation. */
  async #manifestState(signal: AbortSignal): Promise<ManifestState> {
    return this.#withIndex(signal, async ({ index, generation }) => {
      const cached = this.#cache.get<ManifestState>(this.#owner, 'manifests');
      if (cached?.generation === generation) return cached;
      const parsed: { contentID: string; json: unknown }[] = [];
      let bytes = 0;
      for (const info of [...index.withPrefix('m')]) {
        if (info.deleted) continue;
        const raw = await this.#readContent(index, info.contentID, signal);
        try {
          const json = raw[0] === 0x1f && raw[1] === 0x8b ? gunzipSync(raw) : raw;
          bytes += json.length;
          parsed.push({ contentID: info.contentID, json: JSON.parse(json.toString('utf8')) as unknown });
        } catch (err) {
          throw new CorruptRepositoryError('malformed', `manifest content ${info.contentID} is not gzipped JSON`, { cause: err });
        }
      }
      const manifests = mergeManifests(parsed);
      const snapshots = manifests
        .filter((m) => m.labels.type === 'snapshot')
        .map((m) => toSnapshot(m.id, m.labels, m.data))
        .sort((a, b) => (a.startTime < b.startTime ? -1 : a.startTime > b.startTime ? 1 : a.id < b.id ? -1 : 1));
      const state: ManifestState = frozen({ generation, manifests, snapshots });
      this.#cache.set(this.#owner, 'manifests', state, 1024 + 4 * bytes);
      return state;
    });
  }

  /**
   * Every live manifest (repo/manifest): the `m`-prefixed contents each hold a gzipped
   * `{"entries":[{id, labels, modified, deleted, data}]}`; of entries with the same id the latest
   * `modified` wins, and a winner marked deleted is gone.
   */
  async manifests(signal: AbortSignal): Promise<Manifest[]> {
    return [...(await this.#manifestState(signal)).manifests];
  }

  /** Snapshot manifests, oldest first (by start time, then id). */
  async snapshots(signal: AbortSignal): Promise<Snapshot[]> {
    return [...(await this.#manifestState(signal)).snapshots];
  }

  /**
   * One snapshot by manifest id. An id the current index does not know reloads the index (at most
   * once per minimum interval, see RepositoryCacheOptions) and is looked up again: a backup newer
   * than the cache is found. KopiaNotFoundError('snapshot') when there is none.
   */
  async snapshot(id: string, signal: AbortSignal): Promise<Snapshot> {
    const find = (m: ManifestState): Snapshot | undefined => m.snapshots.find((s) => s.id === id);
    const seen = await this.#manifestState(signal);
    let found = find(seen);
    if (!found) {
      const state = await this.#state(signal);
      const newer = state.generation !== seen.generation ? state : await this.#newerThan(state, signal);
      if (newer.generation !== seen.generation) found = find(await this.#manifestState(signal));
    }
    if (!found) throw new KopiaNotFoundError('snapshot', `snapshot ${id} does not exist`);
    return found;
  }

  /** The entries of a directory object, in the order kopia stored them (not always by name); cached by object id (contents never change). */
  async readDirectory(objectID: string, signal: AbortSignal): Promise<DirEntry[]> {
    const cached = this.#cache.get<DirEntry[]>(this.#owner, `d${objectID}`);
    if (cached) return [...cached];
    const raw = await this.readObject(objectID, signal);
    let parsed: unknown;
    try {
      parsed = JSON.parse(raw.toString('utf8')) as unknown;
    } catch (err) {
      throw new CorruptRepositoryError('malformed', `directory ${objectID} is not JSON`, { cause: err });
    }
    // An empty directory is written with `"entries":null` (Go's nil slice).
    if (!isRecord(parsed) || parsed.stream !== 'kopia:directory' || !(Array.isArray(parsed.entries) || parsed.entries === null)) {
      throw new CorruptRepositoryError('malformed', `object ${objectID} is not a kopia directory`);
    }
    const entries = frozen(((parsed.entries ?? []) as unknown[]).map((e) => toDirEntry(e, `directory ${objectID}`)));
    this.#cache.set(this.#owner, `d${objectID}`, entries, dirEntriesBytes(entries));
    return [...entries];
  }

  /**
   * The entry at `path` inside the snapshot ('' or '/' is the root). Symlinks are never followed:
   * a symlink as the last segment is returned as such, one in the middle is KopiaNotFoundError.
   */
  async stat(snapshot: Snapshot, path: string, signal: AbortSignal): Promise<DirEntry> {
    let entry = snapshot.rootEntry;
    const segments = snapshotPathSegments(path);
    for (const [i, name] of segments.entries()) {
      if (entry.type !== 'd') {
        throw new KopiaNotFoundError('path', `${segments.slice(0, i).join('/')} is not a directory (type ${entry.type}) in snapshot ${snapshot.id}`);
      }
      const next = (await this.readDirectory(entry.objectID, signal)).find((e) => e.name === name);
      if (!next) throw new KopiaNotFoundError('path', `${segments.slice(0, i + 1).join('/')} does not exist in snapshot ${snapshot.id}`);
      entry = next;
    }
    return entry;
  }

  /** The entries of the directory at `path`. */
  async listDirectory(snapshot: Snapshot, path: string, signal: AbortSignal): Promise<DirEntry[]> {
    const entry = await this.stat(snapshot, path, signal);
    if (entry.type !== 'd') throw new InvalidRequestError(`${path} is not a directory (type ${entry.type})`);
    return this.readDirectory(entry.objectID, signal);
  }

  /** A symlink's target, as stored (never resolved). */
  async readLink(snapshot: Snapshot, path: string, signal: AbortSignal): Promise<string> {
    const entry = await this.stat(snapshot, path, signal);
    if (entry.type !== 's') throw new InvalidRequestError(`${path} is not a symlink (type ${entry.type})`);
    return (await this.readObject(entry.objectID, signal)).toString('utf8');
  }

  /** Opens the regular file at `path` for streaming, optionally an inclusive byte range of it. */
  async openFile(snapshot: Snapshot, path: string, opts: { signal: AbortSignal; range?: { start: number; end?: number } }): Promise<OpenedFile> {
    const entry = await this.stat(snapshot, path, opts.signal);
    if (entry.type !== 'f') throw new InvalidRequestError(`${path} is not a regular file (type ${entry.type})`);
    const opened = await this.openObject(entry.objectID, opts);
    return { entry, ...opened };
  }
}

/** One live manifest entry (repo/manifest). */
export interface Manifest {
  id: string;
  labels: Record<string, string>;
  /** RFC 3339 with nanoseconds. */
  modified: string;
  data: unknown;
}

/** Orders kopia's RFC 3339 times with up to nanoseconds (Date keeps milliseconds only). */
function compareTimes(a: string, b: string): number {
  const ms = Date.parse(a) - Date.parse(b);
  if (ms !== 0 || Number.isNaN(ms)) return Number.isNaN(ms) ? (a < b ? -1 : a > b ? 1 : 0) : ms;
  const frac = (t: string): string => (/\.(\d+)/.exec(t)?.[1] ?? '').padEnd(9, '0');
  return frac(a) < frac(b) ? -1 : frac(a) > frac(b) ? 1 : 0;
}

/**
 * Merges the entries of manifest contents (`{"entries":[{id, labels, modified, deleted, data}]}`)
 * as kopia's committed manifest manager does: per id the latest `modified` wins, and an id whose
 * winner is marked deleted is gone.
 */
export function mergeManifests(contents: { contentID: string; json: unknown }[]): Manifest[] {
  const byID = new Map<string, Manifest & { deleted: boolean }>();
  for (const { contentID, json } of contents) {
    if (!isRecord(json) || !Array.isArray(json.entries)) throw new CorruptRepositoryError('malformed', `manifest content ${contentID} has no entries`);
    for (const e of json.entries as unknown[]) {
      if (!isRecord(e) || typeof e.id !== 'string') continue;
      const modified = typeof e.modified === 'string' ? e.modified : '';
      const prev = byID.get(e.id);
      if (prev && compareTimes(prev.modified, modified) >= 0) continue;
      const labels: Record<string, string> = {};
      if (isRecord(e.labels)) for (const [k, v] of Object.entries(e.labels)) if (typeof v === 'string') labels[k] = v;
      byID.set(e.id, { id: e.id, labels, modified, deleted: e.deleted === true, data: e.data });
    }
  }
  return [...byID.values()].filter((m) => !m.deleted).map(({ id, labels, modified, data }) => ({ id, labels, modified, data }));
}

function toSnapshot(id: string, labels: Record<string, string>, data: unknown): Snapshot {
  if (!isRecord(data) || !isRecord(data.source) || !isRecord(data.rootEntry)) {
    throw new CorruptRepositoryError('malformed', `snapshot manifest ${id} lacks source or rootEntry`);
  }
  const src = data.source;
  const tags: Record<string, string> = {};
  for (const [k, v] of Object.entries(labels)) if (k.startsWith('tag:')) tags[k] = v;
  if (isRecord(data.tags)) for (const [k, v] of Object.entries(data.tags)) if (typeof v === 'string') tags[k] = v;
  return {
    id,
    source: {
      host: typeof src.host === 'string' ? src.host : '',
      userName: typeof src.userName === 'string' ? src.userName : '',
      path: typeof src.path === 'string' ? src.path : '',
    },
    description: typeof data.description === 'string' ? data.description : '',
    startTime: typeof data.startTime === 'string' ? data.startTime : '',
    endTime: typeof data.endTime === 'string' ? data.endTime : '',
    incomplete: typeof data.incomplete === 'string' && data.incomplete !== '' ? data.incomplete : undefined,
    tags,
    pins: Array.isArray(data.pins) ? data.pins.filter((p): p is string => typeof p === 'string') : [],
    rootEntry: toDirEntry(data.rootEntry, `snapshot ${id}`),
  };
}

/**
 * Opens a kopia repository read-only through any ObjectStore: reads and decrypts its format with
 * `password` (key derivation costs ~0.1-0.3 s and, for scrypt, 64 MiB), then loads its index.
 * Throws WrongPasswordError, UnsupportedFeatureError (naming the feature), KopiaNotFoundError
 * (no repository there) or CorruptRepositoryError.
 */
export async function openRepository(store: ObjectStore, options: OpenRepositoryOptions): Promise<Repository> {
  options.signal.throwIfAborted();
  const blobs = blobStorage(store, { prefix: options.prefix ?? '', naming: options.naming ?? 'object' });
  const { cache, indexMaxAgeMs, refreshMinIntervalMs, loadTimeoutMs, now } = options;
  return Repository.open(blobs, options.password, options.signal, options.keys, { cache, indexMaxAgeMs, refreshMinIntervalMs, loadTimeoutMs, now });
}
