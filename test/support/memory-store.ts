/**
 * A test double of ObjectStore held in memory, with switches to make it fail in the ways real stores
 * do (before the first byte, or after some bytes). For handler tests; real adapters are tested against
 * real files and emulators.
 */
import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import { ObjectNotFoundError } from '../../src/stores/errors.ts';
import type { StoreSpec, StoreFactory } from '../../src/stores/spec.ts';
import { compareKeys, listPages } from '../../src/stores/listing.ts';
import type { GetOptions, ListedObject, ListOptions, ObjectBody, ObjectInfo, ObjectReader, ObjectStore, StatOptions } from '../../src/stores/types.ts';

export class MemoryStore implements ObjectStore, StoreFactory {
  readonly objects = new Map<string, { bytes: Buffer; lastModified: Date }>();
  /** Thrown by the next stat/get when set. */
  failWith: Error | undefined;
  /** When set, get() delivers this many bytes and then errors. */
  breakAfter: number | undefined;
  /** When set, get() also offers a reader (as the filesystem store does) whose first read rejects with this. */
  readerFailsWith: Error | undefined;
  calls: string[] = [];

  put(key: string, bytes: Buffer | string, lastModified = new Date('2026-01-01T00:00:00Z')): void {
    this.objects.set(key, { bytes: Buffer.from(bytes), lastModified });
  }

  async forSpec(_spec: StoreSpec): Promise<ObjectStore> {
    return this;
  }

  #info(key: string): ObjectInfo & { bytes: Buffer } {
    if (this.failWith) throw this.failWith;
    const o = this.objects.get(key);
    if (!o) throw new ObjectNotFoundError(`object ${key} not found`);
    return { size: o.bytes.length, etag: `"${createHash('sha1').update(o.bytes).digest('hex').slice(0, 16)}"`, lastModified: o.lastModified, bytes: o.bytes };
  }

  async stat(key: string, opts: StatOptions): Promise<ObjectInfo> {
    this.calls.push(`stat ${key}`);
    opts.signal.throwIfAborted();
    const { bytes: _b, ...info } = this.#info(key);
    return info;
  }

  /** Pages as a cloud store does: each page is cut from the objects present when it is asked for. */
  list(prefix: string, opts: ListOptions): AsyncIterable<ListedObject> {
    this.calls.push(`list ${prefix}`);
    return listPages(
      {
        location: 'memory store',
        root: '',
        fetchPage: async ({ namePrefix, startAfter, token, pageSize, signal }) => {
          signal.throwIfAborted();
          if (this.failWith) throw this.failWith;
          const from = token ?? startAfter;
          const names = [...this.objects.keys()]
            .filter((name) => name.startsWith(namePrefix) && (from === undefined || compareKeys(name, from) > 0))
            .sort(compareKeys)
            .slice(0, pageSize + 1);
          const page = names.slice(0, pageSize);
          const objects = page.map((name) => {
            const { bytes: _b, ...info } = this.#info(name);
            return { name, info };
          });
          return { objects, next: names.length > pageSize ? page.at(-1) : undefined };
        },
      },
      prefix,
      opts,
    );
  }

  async get(key: string, opts: GetOptions): Promise<ObjectBody> {
    this.calls.push(`get ${key}`);
    opts.signal.throwIfAborted();
    const { bytes, ...info } = this.#info(key);
    const start = opts.range?.start ?? 0;
    const end = Math.min(opts.range?.end ?? bytes.length - 1, bytes.length - 1);
    const slice = bytes.subarray(start, end + 1);
    const breakAfter = this.breakAfter;
    const body =
      breakAfter === undefined
        ? Readable.from([slice])
        : Readable.from(
            (async function* () {
              yield slice.subarray(0, breakAfter);
              await new Promise((r) => setTimeout(r, 20));
              throw new Error('upstream connection reset');
            })(),
          );
    const failure = this.readerFailsWith;
    const reader: ObjectReader | undefined = failure && { read: () => Promise.reject(failure), close: async () => undefined };
    return { ...info, body, ...(reader && { reader }), ...(opts.range && { range: { start, end } }) };
  }
}
