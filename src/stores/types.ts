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
  /** Releases the object; idempotent. */
  close(): Promise<void>;
}

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

/**
 * Read-only access to one location's objects. Keys are relative to the location's root or prefix;
 * an implementation refuses any key that would leave it (InvalidKeyError). Every call fails fast
 * when `signal` is already aborted, and aborting `signal` mid-stream destroys `body` and releases
 * the underlying file handle or socket.
 */
export interface ObjectStore {
  /** Size, etag, last-modified of one object; throws ObjectNotFoundError. */
  stat(key: string, opts: StatOptions): Promise<ObjectInfo>;
  /** Streams one object, or one byte range of it; throws ObjectNotFoundError. */
  get(key: string, opts: GetOptions): Promise<ObjectBody>;
}
