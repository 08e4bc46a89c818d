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
import type { BlobNaming, BlobStorage } from './blobs.ts';
import { decompress } from './compression.ts';
import { ContentDecryptor, contentIV } from './content-crypto.ts';
import { parseContentID } from './content-id.ts';
import { CorruptRepositoryError, InvalidRequestError, KopiaNotFoundError } from './errors.ts';
import { readFormat } from './format.ts';
import type { KeyCache } from './key-cache.ts';
import type { RepositoryFormat } from './format.ts';
import type { ContentIndex } from './index.ts';
import { loadContentIndex, selectEpochIndexBlobs, selectLegacyIndexBlobs } from './index-blobs.ts';
import { fitObjectRange, readWhole, resolveObject, streamObject } from './objects.ts';
import type { ObjectID, ResolvedObject } from './objects.ts';

export interface OpenRepositoryOptions {
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

/**
 * A read-only kopia repository. Open it with `openRepository`; the format key is derived once and
 * the index loaded once (call `refresh()` to reload the index after new snapshots).
 */
export class Repository {
  readonly format: RepositoryFormat;
  readonly #blobs: BlobStorage;
  readonly #decryptor: ContentDecryptor;
  #index: ContentIndex;

  private constructor(blobs: BlobStorage, format: RepositoryFormat, index: ContentIndex) {
    this.#blobs = blobs;
    this.format = format;
    this.#decryptor = new ContentDecryptor(format.encryption, format.masterKey);
    this.#index = index;
  }

  /** @internal use openRepository */
  static async open(blobs: BlobStorage, password: string, signal: AbortSignal, keys?: KeyCache): Promise<Repository> {
    const format = await readFormat(blobs, password, signal, keys === undefined ? undefined : (algo, pw, salt) => keys.derive(algo, pw, salt));
    const index = await Repository.#loadIndex(blobs, format, signal);
    return new Repository(blobs, format, index);
  }

  static async #loadIndex(blobs: BlobStorage, format: RepositoryFormat, signal: AbortSignal): Promise<ContentIndex> {
    const decryptor = new ContentDecryptor(format.encryption, format.masterKey);
    const selection = format.epochsEnabled ? await selectEpochIndexBlobs(blobs, signal) : await selectLegacyIndexBlobs(blobs, decryptor, signal);
    return loadContentIndex(blobs, decryptor, selection, signal);
  }

  /** Reloads the content index (new snapshots, maintenance). */
  async refresh(signal: AbortSignal): Promise<void> {
    this.#index = await Repository.#loadIndex(this.#blobs, this.format, signal);
  }

  /** The merged content index. */
  get index(): ContentIndex {
    return this.#index;
  }

  /** One content's plaintext: read from its pack, authenticated, decrypted, decompressed. */
  async readContent(contentID: string, signal: AbortSignal): Promise<Buffer> {
    const info = this.#index.get(contentID);
    const raw = await this.#blobs.read(info.packBlobID, signal, { offset: info.packOffset, length: info.packedLength });
    const plain = this.#decryptor.decrypt(raw, contentIV(parseContentID(contentID).hash), `content ${contentID} in pack ${info.packBlobID}`);
    if (info.compressionHeaderID !== 0) return decompress(plain, `content ${contentID}`, info.compressionHeaderID, info.originalLength);
    if (plain.length !== info.originalLength) {
      throw new CorruptRepositoryError('malformed', `content ${contentID} is ${plain.length} bytes, the index says ${info.originalLength}`);
    }
    return plain;
  }

  readonly #reader = (id: string, signal: AbortSignal): Promise<Buffer> => this.readContent(id, signal);
  readonly #directLength = (oid: ObjectID): number | undefined => (oid.compressed ? undefined : this.#index.get(oid.contentID).originalLength);

  /** Resolves an object id to its pieces (reads indirect lists, never file data). */
  resolveObject(objectID: string, signal: AbortSignal): Promise<ResolvedObject> {
    return resolveObject(objectID, this.#reader, signal, this.#directLength);
  }

  /** Streams an object, or the inclusive byte range of it. */
  async openObject(objectID: string, opts: { signal: AbortSignal; range?: { start: number; end?: number } }): Promise<{ size: number; range: { start: number; end: number }; stream: Readable }> {
    const obj = await this.resolveObject(objectID, opts.signal);
    const range = fitObjectRange(obj.length, opts.range);
    return { size: obj.length, range, stream: streamObject(obj, range, this.#reader, opts.signal) };
  }

  /** A whole object in memory (directories, manifests; not file data). */
  async readObject(objectID: string, signal: AbortSignal): Promise<Buffer> {
    return readWhole(await this.resolveObject(objectID, signal), this.#reader, signal);
  }

  /**
   * Every live manifest (repo/manifest): the `m`-prefixed contents each hold a gzipped
   * `{"entries":[{id, labels, modified, deleted, data}]}`; of entries with the same id the latest
   * `modified` wins, and a winner marked deleted is gone.
   */
  async manifests(signal: AbortSignal): Promise<Manifest[]> {
    const parsed: { contentID: string; json: unknown }[] = [];
    for (const info of [...this.#index.withPrefix('m')]) {
      if (info.deleted) continue;
      const raw = await this.readContent(info.contentID, signal);
      try {
        const json = raw[0] === 0x1f && raw[1] === 0x8b ? gunzipSync(raw) : raw;
        parsed.push({ contentID: info.contentID, json: JSON.parse(json.toString('utf8')) as unknown });
      } catch (err) {
        throw new CorruptRepositoryError('malformed', `manifest content ${info.contentID} is not gzipped JSON`, { cause: err });
      }
    }
    return mergeManifests(parsed);
  }

  /** Snapshot manifests, oldest first (by start time, then id). */
  async snapshots(signal: AbortSignal): Promise<Snapshot[]> {
    const out: Snapshot[] = [];
    for (const m of await this.manifests(signal)) {
      if (m.labels.type !== 'snapshot') continue;
      out.push(toSnapshot(m.id, m.labels, m.data));
    }
    return out.sort((a, b) => (a.startTime < b.startTime ? -1 : a.startTime > b.startTime ? 1 : a.id < b.id ? -1 : 1));
  }

  /** One snapshot by manifest id; KopiaNotFoundError('snapshot') when there is none. */
  async snapshot(id: string, signal: AbortSignal): Promise<Snapshot> {
    const found = (await this.snapshots(signal)).find((s) => s.id === id);
    if (!found) throw new KopiaNotFoundError('snapshot', `snapshot ${id} does not exist`);
    return found;
  }

  /** The entries of a directory object, in kopia's order (by name). */
  async readDirectory(objectID: string, signal: AbortSignal): Promise<DirEntry[]> {
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
    return ((parsed.entries ?? []) as unknown[]).map((e) => toDirEntry(e, `directory ${objectID}`));
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
  return Repository.open(blobs, options.password, options.signal, options.keys);
}
