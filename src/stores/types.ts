import type { PromiseOr } from '../util/promise-or.ts';
import type { Readable } from 'node:stream';

/** An inclusive byte range, already validated against the object's size. */
export interface ByteRange {
  start: number;
  /** Inclusive end offset. */
  end: number;
}

/** What a store knows about one object without reading it. */
export interface ObjectInfo {
  size: number;
  /** Strong entity tag, quoted as it goes on the wire (e.g. `"5d41-18c"`). */
  etag?: string;
  lastModified?: Date;
}

/**
 * Reads of an open object at absolute offsets into the caller's buffers, for stores that can (files):
 * the gateway then recycles a few buffers instead of allocating one per chunk, which is what makes a
 * Node file server as fast as nginx (see bench/).
 */
export interface ObjectReader {
  /** Reads up to `length` bytes at `position` into the start of `buffer`; resolves 0 at the end of the object. */
  read(buffer: Buffer, length: number, position: number): Promise<number>;
  /**
   * Present only where a read is made on the spot (the filesystem store in sync mode): reads up to
   * `length` (at most {@link SYNC_READ_MAX}) bytes at `position` and returns how many, 0 at the end;
   * throws what `read` would reject with. A small object is then sent whole in the turn that opened
   * it, with no promise and no pooled buffer.
   */
  readSync?: (buffer: Buffer, length: number, position: number) => number;
  /** Releases the object; idempotent. A reader that reads on the spot releases it at once. */
  close(): PromiseOr<void>;
}

/** The most one `readSync` may be asked for: 64 KiB keeps a read on the event loop short. */
export const SYNC_READ_MAX = 64 * 1024;

interface BodyInfo extends ObjectInfo {
  /** The range actually delivered; absent for the whole object. */
  range?: ByteRange;
}

/** An object's bytes as a stream: what network stores deliver. */
export interface StreamBody extends BodyInfo {
  kind: 'stream';
  /**
   * The bytes; it errors (never ends quietly) when the upstream delivers fewer bytes than announced.
   * It owns the object: it releases it on end, error or destroy.
   */
  body: Readable;
}

/**
 * An object that can be read at absolute offsets (an open file). The consumer takes one way to its
 * bytes, never both: `reader` (it then checks the byte count itself and releases the object with
 * `close()`), or `stream()`, a length-checked stream of the range that releases the object as a
 * `StreamBody`'s does.
 */
export interface ReaderBody extends BodyInfo {
  kind: 'reader';
  reader: ObjectReader;
  stream: () => Readable;
}

/** One object, or one byte range of it, ready to be sent: a stream, or positional reads. */
export type ObjectBody = StreamBody | ReaderBody;

export interface StatOptions {
  signal: AbortSignal;
}

export interface GetOptions {
  signal: AbortSignal;
  /**
   * At most one range. `start` must be below the object's size (else InvalidRangeError); an `end`
   * past the last byte is clamped to it. The result's `range` says what is actually delivered.
   */
  range?: ByteRange;
}

export interface ListOptions {
  signal: AbortSignal;
  /** Start strictly after this key (a key an earlier listing returned), to resume; it must be a valid key. */
  after?: string;
  /**
   * Objects asked of the store per request (1-1000; default 1000, the most S3 and GCS return). Only
   * tests and tuning set it: the listing is the same whatever the page size.
   */
  pageSize?: number;
}

/** One object of a listing: `key` is relative to the location's root or prefix, as `get` takes it. */
export interface ListedObject extends ObjectInfo {
  key: string;
}

/**
 * Read-only access to one location's objects. Keys are relative to the location's root or prefix;
 * an implementation refuses any key that would leave it (InvalidKeyError). Every call fails fast
 * when `signal` is already aborted, and aborting `signal` mid-stream destroys `body` and releases
 * the underlying file handle or socket.
 */
export interface ObjectStore {
  /** Size, etag, last-modified of one object; throws ObjectNotFoundError. */
  stat(key: string, opts: StatOptions): Promise<ObjectInfo>;
  /**
   * Streams one object, or one byte range of it; throws (or rejects with) ObjectNotFoundError. A
   * body ready without waiting (the filesystem store's sync mode) comes at once, not as a promise.
   */
  get(key: string, opts: GetOptions): PromiseOr<ObjectBody>;
  /**
   * The objects whose keys start with `prefix` (a plain string prefix: `backups/a` also matches
   * `backups/ab/x`), in ascending Unicode code point order of their keys (which is UTF-8 byte order),
   * fetched a page at a time as the caller iterates, so memory stays bounded whatever the count. Only
   * keys `get` accepts are listed. A prefix that would leave the location throws InvalidKeyError; an
   * aborted `signal` ends the iteration with its reason and leaves no request or handle open.
   */
  list(prefix: string, opts: ListOptions): AsyncIterable<ListedObject>;
}
