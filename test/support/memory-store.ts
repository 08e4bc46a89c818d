/**
 * A test double of ObjectStore held in memory, with switches to make it fail in the ways real stores
 * do (before the first byte, or after some bytes). For handler tests; it passes the store conformance
 * suite (test/stores/memory-store.test.ts), so handlers are tested against a store that keeps the contract.
 */
import { createHash } from 'node:crypto';
import { addAbortSignal, Readable } from 'node:stream';
import { ObjectNotFoundError, StoreUnavailableError, ThrottledError } from '../../src/stores/errors.ts';
import { keySegments } from '../../src/stores/keys.ts';
import { fitRange } from '../../src/stores/range.ts';
import type { StoreSpec, StoreFactory } from '../../src/stores/spec.ts';
import { compareKeys, listPages } from '../../src/stores/listing.ts';
import type { GetOptions, ListedObject, ListOptions, ObjectBody, ObjectInfo, ObjectReader, ObjectStore, StatOptions } from '../../src/stores/types.ts';

export class MemoryStore implements ObjectStore, StoreFactory {
  readonly objects = new Map<string, { bytes: Buffer; lastModified: Date }>();
  /** Thrown by the next stat/get when set. */
  failWith: Error | undefined;
  /** When set, get() delivers this many bytes and then errors, as a reset connection does. */
  breakAfter: number | undefined;
  /** When set, get() delivers this many bytes and then ends, short of the size it announced. */
  truncateAfter: number | undefined;
  /** When set, get() offers a reader (as the filesystem store does) whose first read rejects with this. */
  readerFailsWith: Error | undefined;
  /**
   * Offer a reader that reads on the spot (`readSync`, as the filesystem store's sync mode does), cut
   * short by `truncateAfter` or failing with `readerFailsWith`; `readerCloses` counts its closes.
   */
  syncReader = false;
  readerCloses = 0;
  calls: string[] = [];

  put(key: string, bytes: Uint8Array | string, lastModified = new Date('2026-01-01T00:00:00Z')): void {
    this.objects.set(key, { bytes: Buffer.from(bytes), lastModified });
  }

  async forSpec(_spec: StoreSpec): Promise<ObjectStore> {
    return this;
  }

  #info(key: string): ObjectInfo & { bytes: Buffer } {
    keySegments(key);
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
    const range = opts.range === undefined ? undefined : fitRange(opts.range, bytes.length);
    const slice = range === undefined ? bytes : bytes.subarray(range.start, range.end + 1);
    const body = addAbortSignal(opts.signal, Readable.from(chunks(slice, this.breakAfter, this.truncateAfter), { objectMode: false }));
    const got = { ...info, ...(range && { range }) };
    const failure = this.readerFailsWith;
    if (this.syncReader) return { ...got, kind: 'reader', reader: this.#syncReader(bytes, (range?.start ?? 0) + (this.truncateAfter ?? Infinity), failure), stream: () => body };
    if (failure === undefined) return { ...got, kind: 'stream', body };
    const reader: ObjectReader = { read: () => Promise.reject(failure), close: async () => undefined };
    return { ...got, kind: 'reader', reader, stream: () => body };
  }

  /** Positional reads of the whole object's `bytes` (as of a file), which end at `end`. */
  #syncReader(bytes: Buffer, end: number, failure: Error | undefined): ObjectReader {
    const available = Math.min(bytes.length, end);
    const readSync = (buffer: Buffer, length: number, position: number): number => {
      if (failure) throw failure;
      return position >= available ? 0 : bytes.copy(buffer, 0, position, Math.min(available, position + length));
    };
    return {
      readSync,
      read: (buffer, length, position) => new Promise((resolve) => resolve(readSync(buffer, length, position))),
      close: () => void this.readerCloses++,
    };
  }
}

/** The slice in chunks of 64 KiB, broken or cut short after `breakAfter` / `truncateAfter` bytes. */
async function* chunks(slice: Buffer, breakAfter: number | undefined, truncateAfter: number | undefined): AsyncGenerator<Buffer> {
  const end = Math.min(slice.length, breakAfter ?? Infinity, truncateAfter ?? Infinity);
  for (let at = 0; at < end; at += 64 * 1024) yield slice.subarray(at, Math.min(end, at + 64 * 1024));
  if (breakAfter !== undefined && breakAfter < slice.length) {
    await new Promise((r) => setTimeout(r, 20));
    throw new StoreUnavailableError('upstream connection reset');
  }
  if (truncateAfter !== undefined && truncateAfter < slice.length) {
    throw new StoreUnavailableError(`short read: got ${truncateAfter} of ${slice.length} bytes`);
  }
}

/** The store's switches as the conformance suite's faults (a memory store has no retries or idle timeout to show). */
export function memoryFaults(store: MemoryStore): { throttle(s: number): void; truncateAfter(n: number): void; resetAfter(n: number): void; clear(): void } {
  return {
    throttle: (seconds) => (store.failWith = new ThrottledError('slow down', seconds)),
    truncateAfter: (n) => (store.truncateAfter = n),
    resetAfter: (n) => (store.breakAfter = n),
    clear: () => {
      store.failWith = undefined;
      store.truncateAfter = undefined;
      store.breakAfter = undefined;
    },
  };
}
