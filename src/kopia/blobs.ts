import type { Readable } from 'node:stream';
import type { ObjectBody, ObjectStore } from '../stores/types.ts';
import { CorruptRepositoryError, KopiaNotFoundError } from './errors.ts';

/**
 * How a repository's blob ids become object keys. Kopia's object-store backends (S3, Azure, GCS)
 * store blob `<id>` as the key `<prefix><id>`; its filesystem backend stores it as the file
 * `<id>.f`, flat (`--flat`) or cut into shard directories as its `.shards` file says (kopia's
 * default: `p/330/61650d….f` for blob `p33061650d…`).
 */
export type BlobNaming = 'object' | 'filesystem';

/** Read-only access to a repository's blobs by blob id, whatever the store and layout. */
export interface BlobStorage {
  /** The blob's bytes, or the `[offset, offset+length)` slice of them; short data is CorruptRepositoryError('truncated'). */
  read(id: string, signal: AbortSignal, slice?: { offset: number; length: number }): Promise<Buffer>;
  /** Blob ids that start with `prefix`, in ascending order, with their sizes. */
  list(prefix: string, signal: AbortSignal): AsyncIterable<{ id: string; size: number }>;
}

export interface BlobStorageOptions {
  /** Key prefix of the repository inside the store (`kopia/<ns>/` for Velero), '' for the root. */
  prefix?: string;
  naming?: BlobNaming;
}

/**
 * The sharding of a filesystem repository (repo/blob/sharded): ids longer than `unshardedLength`
 * lose their first `n` characters to a directory for each `n` of their shards (while more remain).
 */
interface Sharding {
  shards: number[];
  unshardedLength: number;
  overrides: { prefix: string; shards: number[] }[];
}

const FLAT: Sharding = { shards: [], unshardedLength: 0, overrides: [] };

function isShardList(v: unknown): v is number[] {
  return Array.isArray(v) && v.every((n) => Number.isSafeInteger(n) && (n as number) > 0);
}

/** The path of blob `id` under a sharding, without the `.f`. */
function shardedPath(sharding: Sharding, id: string): string {
  if (id.length <= sharding.unshardedLength) return id;
  const shards = sharding.overrides.find((o) => id.startsWith(o.prefix))?.shards ?? sharding.shards;
  let rest = id;
  let dir = '';
  for (const n of shards) {
    if (rest.length <= n) break;
    dir += `${rest.slice(0, n)}/`;
    rest = rest.slice(n);
  }
  return dir + rest;
}

/** `.shards` of a filesystem repository; none (older or hand-copied repositories) is flat. */
async function readSharding(store: ObjectStore, prefix: string, signal: AbortSignal): Promise<Sharding> {
  let body: ObjectBody;
  try {
    body = await store.get(`${prefix}.shards`, { signal });
  } catch (err) {
    if (isReason(err, 'ObjectNotFound')) return FLAT;
    throw err;
  }
  // kopia's is a line of JSON; whoever can write the store must not make every open read gigabytes
  if (body.size > 64 * 1024) {
    destroyBody(body);
    throw new CorruptRepositoryError('malformed', `the .shards file is ${body.size} bytes, not a kopia sharding`);
  }
  const raw = await readAll(body.kind === 'stream' ? body.body : body.stream());
  let p: unknown;
  try {
    p = JSON.parse(raw.toString('utf8'));
  } catch (err) {
    throw new CorruptRepositoryError('malformed', 'the .shards file is not JSON', { cause: err });
  }
  const rec = (typeof p === 'object' && p !== null ? p : {}) as Record<string, unknown>;
  const overrides = rec.overrides ?? [];
  const okOverrides =
    Array.isArray(overrides) &&
    overrides.every((o: unknown) => typeof o === 'object' && o !== null && typeof (o as { prefix?: unknown }).prefix === 'string' && isShardList((o as { shards?: unknown }).shards));
  if (!isShardList(rec.default ?? []) || !Number.isSafeInteger(rec.maxNonShardedLength ?? 0) || !okOverrides) {
    throw new CorruptRepositoryError('malformed', 'the .shards file is not a kopia sharding');
  }
  return { shards: (rec.default ?? []) as number[], unshardedLength: (rec.maxNonShardedLength ?? 0) as number, overrides: overrides as Sharding['overrides'] };
}

/** A `BlobStorage` over an `ObjectStore`: the only place that knows how blob ids map to keys. */
export function blobStorage(store: ObjectStore, options: BlobStorageOptions = {}): BlobStorage {
  const prefix = options.prefix ?? '';
  const filesystem = (options.naming ?? 'object') === 'filesystem';
  // Read once, on first use; a failure is not kept (the next call reads it again).
  let sharding: Promise<Sharding> | undefined;
  const shardingOf = (signal: AbortSignal): Promise<Sharding> => {
    if (!filesystem) return Promise.resolve(FLAT);
    sharding ??= readSharding(store, prefix, signal).catch((err: unknown) => {
      sharding = undefined;
      throw err;
    });
    return sharding;
  };
  const keyOf = async (id: string, signal: AbortSignal): Promise<string> => `${prefix}${shardedPath(await shardingOf(signal), id)}${filesystem ? '.f' : ''}`;
  return {
    async read(id, signal, slice) {
      let body: ObjectBody;
      try {
        body = await store.get(await keyOf(id, signal), {
          signal,
          ...(slice && slice.length > 0 ? { range: { start: slice.offset, end: slice.offset + slice.length - 1 } } : {}),
        });
      } catch (err) {
        if (isReason(err, 'ObjectNotFound')) throw new KopiaNotFoundError('blob', `blob ${id} is missing`, { cause: err });
        if (isReason(err, 'InvalidRange')) {
          throw new CorruptRepositoryError('truncated', `blob ${id} is shorter than the index says`, { cause: err });
        }
        throw err;
      }
      if (slice?.length === 0) {
        destroyBody(body);
        return Buffer.alloc(0);
      }
      const data = await readAll(body.kind === 'stream' ? body.body : body.stream());
      if (slice && data.length !== slice.length) {
        throw new CorruptRepositoryError('truncated', `blob ${id} is shorter than the index says (${data.length} of ${slice.length} bytes at ${slice.offset})`);
      }
      return data;
    },
    async *list(idPrefix, signal) {
      if (!filesystem) {
        for await (const obj of store.list(`${prefix}${idPrefix}`, { signal })) yield { id: obj.key.slice(prefix.length), size: obj.size };
        return;
      }
      // As kopia lists a sharded tree: a file's id is its path without the `/`s and the `.f`. Short
      // ids sit unsharded at the top, long ones under the shard directories of the prefix's own path.
      const s = await shardingOf(signal);
      const keyPrefixes = new Set([idPrefix, shardedPath({ ...s, unshardedLength: 0 }, idPrefix)]);
      const found = new Map<string, number>();
      for (const kp of keyPrefixes) {
        for await (const obj of store.list(`${prefix}${kp}`, { signal })) {
          const rel = obj.key.slice(prefix.length);
          if (!rel.endsWith('.f')) continue;
          const id = rel.slice(0, -2).replaceAll('/', '');
          if (id.startsWith(idPrefix)) found.set(id, obj.size);
        }
      }
      for (const id of [...found.keys()].sort()) yield { id, size: found.get(id) ?? 0 };
    },
  };
}

function isReason(err: unknown, reason: string): boolean {
  return typeof err === 'object' && err !== null && 'reason' in err && err.reason === reason;
}

function destroyBody(body: ObjectBody): void {
  if (body.kind === 'stream') body.body.destroy();
  else void body.reader.close();
}

async function readAll(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}
