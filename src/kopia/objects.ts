import { Readable } from 'node:stream';
import { decompress } from './compression.ts';
import { parseContentID } from './content-id.ts';
import { CorruptRepositoryError, InvalidRequestError } from './errors.ts';

/**
 * An object id (repo/object/objectid.go): `I` once per level of indirection, then `Z` when the
 * object's bytes are compressed at the object level (format v1 repositories), then a content id.
 */
export interface ObjectID {
  indirection: number;
  compressed: boolean;
  contentID: string;
}

export function parseObjectID(id: string): ObjectID {
  let i = 0;
  while (id[i] === 'I') i++;
  const compressed = id[i] === 'Z';
  const contentID = id.slice(compressed ? i + 1 : i);
  parseContentID(contentID); // throws InvalidRequestError on a malformed id
  return { indirection: i, compressed, contentID };
}

/** What objects need of the repository: one content's plaintext, verified and decompressed. */
export type ContentReader = (contentID: string, signal: AbortSignal) => Promise<Buffer>;

/** One direct piece of an object: bytes [start, start+length) are the direct object `objectID`. */
interface Segment {
  start: number;
  length: number;
  objectID: string;
}

/** An object resolved to its direct pieces (one for a direct object), in order. */
export interface ResolvedObject {
  length: number;
  segments: Segment[];
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** The bytes of a direct object (no `I`): its content, decompressed when `Z`. */
async function readDirect(oid: ObjectID, readContent: ContentReader, signal: AbortSignal): Promise<Buffer> {
  const data = await readContent(oid.contentID, signal);
  return oid.compressed ? decompress(data, `object Z${oid.contentID}`) : data;
}

/**
 * Resolves an object to its direct pieces. An indirect object's list
 * (`{"stream":"kopia:indirect","entries":[{"s","l","o"}]}`) is the object one level down; its
 * entries may themselves be indirect. The pieces must tile the object without gap or overlap.
 */
export async function resolveObject(
  id: string,
  readContent: ContentReader,
  signal: AbortSignal,
  directLength: (oid: ObjectID) => number | undefined,
): Promise<ResolvedObject> {
  const oid = parseObjectID(id);
  if (oid.indirection === 0) {
    const known = directLength(oid);
    const length = known ?? (await readDirect(oid, readContent, signal)).length;
    return { length, segments: [{ start: 0, length, objectID: id }] };
  }
  const listID = id.slice(1);
  const listObject = await resolveObject(listID, readContent, signal, directLength);
  const listBytes = await readWhole(listObject, readContent, signal);
  let parsed: unknown;
  try {
    parsed = JSON.parse(listBytes.toString('utf8')) as unknown;
  } catch (err) {
    throw new CorruptRepositoryError('malformed', `indirect object ${id}: its list is not JSON`, { cause: err });
  }
  if (!isRecord(parsed) || parsed.stream !== 'kopia:indirect' || !Array.isArray(parsed.entries)) {
    throw new CorruptRepositoryError('malformed', `indirect object ${id}: not a kopia:indirect list`);
  }
  const segments: Segment[] = [];
  let pos = 0;
  for (const e of parsed.entries as unknown[]) {
    if (!isRecord(e) || typeof e.o !== 'string') throw new CorruptRepositoryError('malformed', `indirect object ${id}: bad entry`);
    const start = typeof e.s === 'number' ? e.s : 0;
    const length = typeof e.l === 'number' ? e.l : -1;
    if (start !== pos || length < 0) throw new CorruptRepositoryError('malformed', `indirect object ${id}: entries do not tile the object at ${pos}`);
    const inner = parseObjectID(e.o);
    if (inner.indirection > 0) {
      const sub = await resolveObject(e.o, readContent, signal, directLength);
      if (sub.length !== length) throw new CorruptRepositoryError('malformed', `indirect object ${id}: entry ${e.o} is ${sub.length} bytes, the list says ${length}`);
      for (const s of sub.segments) segments.push({ ...s, start: s.start + start });
    } else {
      segments.push({ start, length, objectID: e.o });
    }
    pos += length;
  }
  return { length: pos, segments };
}

/** Index of the segment that holds byte `offset` (binary search). */
function segmentAt(segments: Segment[], offset: number): number {
  let lo = 0;
  let hi = segments.length - 1;
  while (lo < hi) {
    const mid = (lo + hi + 1) >>> 1;
    if ((segments[mid]?.start ?? 0) <= offset) lo = mid;
    else hi = mid - 1;
  }
  return lo;
}

async function readSegment(seg: Segment, readContent: ContentReader, signal: AbortSignal): Promise<Buffer> {
  const data = await readDirect(parseObjectID(seg.objectID), readContent, signal);
  if (data.length !== seg.length) {
    throw new CorruptRepositoryError('malformed', `object piece ${seg.objectID} is ${data.length} bytes, its list says ${seg.length}`);
  }
  return data;
}

/** The whole object in memory: for directories and lists, never for file data. */
export async function readWhole(obj: ResolvedObject, readContent: ContentReader, signal: AbortSignal): Promise<Buffer> {
  const parts: Buffer[] = [];
  for (const seg of obj.segments) parts.push(await readSegment(seg, readContent, signal));
  return Buffer.concat(parts, obj.length);
}

/**
 * Streams bytes [start, end] (inclusive) of an object, content by content: it seeks to the piece
 * holding `start` without reading those before it, and fetches at most one piece ahead of the one
 * the consumer holds. Memory per stream: the piece the consumer holds plus the one fetched into
 * the stream's buffer, each one content (DYNAMIC-4M-BUZHASH cuts 4 MiB on average, at most 8 MiB;
 * the fixtures hold an 8 MiB one), plus that content's ciphertext while it decrypts: about 3 contents
 * at the worst moment, 24 MiB with kopia's default splitter.
 * Destroying the stream aborts the fetch in flight.
 */
export function streamObject(
  obj: ResolvedObject,
  range: { start: number; end: number },
  readContent: ContentReader,
  signal: AbortSignal,
  /** The piece holding `range.start`, already read (see readFirstPiece). */
  first?: Buffer,
): Readable {
  const controller = new AbortController();
  const inner = AbortSignal.any([signal, controller.signal]);
  let next = segmentAt(obj.segments, range.start);
  let prefetched = first;
  // One piece at a time: Readable calls read() again only after a push, and only while its buffer
  // (highWaterMark 1 byte) is empty, that is once the consumer took the last piece: one content is
  // read ahead, no more.
  const stream = new Readable({
    highWaterMark: 1,
    read() {
      const seg = obj.segments[next];
      if (range.end < range.start || !seg || seg.start > range.end) {
        this.push(null);
        return;
      }
      const piece = prefetched ? Promise.resolve(prefetched) : readSegment(seg, readContent, inner);
      prefetched = undefined;
      piece.then(
        (data) => {
          next++;
          this.push(data.subarray(Math.max(range.start - seg.start, 0), Math.min(range.end - seg.start + 1, seg.length)));
        },
        (err: unknown) => this.destroy(err instanceof Error ? err : new Error(String(err))),
      );
    },
    destroy(err, cb) {
      // Destroyed (consumer gone, error, end): abort the fetch in flight, if any.
      signal.removeEventListener('abort', onAbort);
      controller.abort(new Error('object stream closed'));
      cb(err);
    },
  });
  const onAbort = (): void => {
    stream.destroy(signal.reason instanceof Error ? signal.reason : new Error('aborted'));
  };
  if (signal.aborted) onAbort();
  else signal.addEventListener('abort', onAbort, { once: true });
  return stream;
}

/**
 * Reads the piece that holds byte `range.start` (undefined for an empty range): done before a
 * stream is handed out, so that a missing or damaged first content is an error before any byte,
 * never a broken transfer, and a pack moved by maintenance can still be looked up again.
 */
export async function readFirstPiece(obj: ResolvedObject, range: { start: number; end: number }, readContent: ContentReader, signal: AbortSignal): Promise<Buffer | undefined> {
  const seg = obj.segments[segmentAt(obj.segments, range.start)];
  if (range.end < range.start || !seg) return undefined;
  return readSegment(seg, readContent, signal);
}

/** Checks and clamps a byte range against an object's length, as the stores do. */
export function fitObjectRange(length: number, range?: { start: number; end?: number }): { start: number; end: number } {
  if (!range) return { start: 0, end: length - 1 };
  if (!Number.isSafeInteger(range.start) || range.start < 0 || (length > 0 && range.start >= length) || (length === 0 && range.start > 0)) {
    throw new InvalidRequestError(`range start ${range.start} is outside the object (${length} bytes)`);
  }
  const end = range.end === undefined ? length - 1 : Math.min(range.end, length - 1);
  if (end < range.start - 1) throw new InvalidRequestError(`range end ${String(range.end)} is before its start ${range.start}`);
  return { start: range.start, end };
}
