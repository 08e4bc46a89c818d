import type { Readable } from 'node:stream';
import type { ObjectBody, ObjectStore } from '../stores/types.ts';
import { CorruptRepositoryError, KopiaNotFoundError } from './errors.ts';

/**
 * How a repository's blob ids become object keys. Kopia's object-store backends (S3, Azure, GCS)
 * store blob `<id>` as the key `<prefix><id>`; its filesystem backend stores it as the file
 * `<id>.f` (flat; the repositories made with `--flat`, and Velero's, are flat).
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

/** A `BlobStorage` over an `ObjectStore`: the only place that knows how blob ids map to keys. */
export function blobStorage(store: ObjectStore, options: BlobStorageOptions = {}): BlobStorage {
  const prefix = options.prefix ?? '';
  const suffix = (options.naming ?? 'object') === 'filesystem' ? '.f' : '';
  const keyOf = (id: string): string => `${prefix}${id}${suffix}`;
  return {
    async read(id, signal, slice) {
      let body: ObjectBody;
      try {
        body = await store.get(keyOf(id), {
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
      for await (const obj of store.list(`${prefix}${idPrefix}`, { signal })) {
        const rel = obj.key.slice(prefix.length);
        if (suffix !== '') {
          if (!rel.endsWith(suffix)) continue;
          yield { id: rel.slice(0, -suffix.length), size: obj.size };
        } else {
          yield { id: rel, size: obj.size };
        }
      }
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
