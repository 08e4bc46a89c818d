/**
 * Byte ranges, decided once for every store: what a requested range may be, how it fits an object,
 * and how an upstream's answer (Content-Range, Content-Length) is reconciled with what was asked.
 * Adapters only say what their provider answered; the rule below decides what the caller gets.
 */
import { Transform } from 'node:stream';
import type { Readable } from 'node:stream';
import { InvalidRangeError } from './errors.ts';
import type { StoreUnavailableError } from './errors.ts';
import { withLengthCheck } from './length-check.ts';
import type { ByteRange } from './types.ts';

/** Refuses a range that cannot be one, before any I/O (the object's size is not known yet). */
export function checkRange(range: ByteRange): ByteRange {
  const { start, end } = range;
  if (!Number.isSafeInteger(start) || !Number.isSafeInteger(end) || start < 0 || end < start) {
    throw new InvalidRangeError(`invalid byte range ${start}-${end}`);
  }
  return { start, end };
}

/** Fits a range to an object of `size` bytes: `start` must lie inside it, `end` is clamped to the last byte. */
export function fitRange(range: ByteRange, size: number, what = 'the object'): ByteRange {
  const { start, end } = checkRange(range);
  if (start >= size) throw new InvalidRangeError(`byte range starts at ${start}, past the ${size} bytes of ${what}`);
  return { start, end: Math.min(end, size - 1) };
}

/** What an upstream said about the bytes of its answer. */
export interface UpstreamShape {
  /** The Content-Range header, when the answer is partial. */
  contentRange?: string | null | undefined;
  /** The body's length (Content-Length), when known. */
  contentLength?: number | undefined;
}

/** The outcome: the object's size, what the body holds, and what the caller gets. */
export interface Reconciled {
  size: number;
  /** The bytes of the object the upstream's body holds (`0..-1` for an empty object). */
  sent: ByteRange;
  /** The range handed out (the asked one, clamped); undefined for the whole object. */
  want: ByteRange | undefined;
}

// Azurite answers a range of an empty blob with `bytes 0--1/0`: the end may be negative.
const CONTENT_RANGE = /^bytes (\d+)-(-?\d+)\/(\d+)$/;

/**
 * The one rule for an upstream's answer to a get. `fail(what)` builds the error for an answer that
 * cannot be trusted (it names the location and key; a StoreUnavailableError). The rule:
 * - a Content-Range gives the size; without it the answer is the whole object, of Content-Length bytes;
 * - a range asked whose start is at or past the size is an InvalidRangeError, whatever the store sent
 *   (some stores answer 206 with an empty or inverted range where others answer 416);
 * - the body must cover the asked range (clamped to the size); a store that widens or ignores the
 *   Range header sends more, and the caller gets exactly the range asked, cut from it (see `cut`);
 * - no range asked: the body must be the whole object;
 * - a Content-Range that does not parse, lies outside the size, or disagrees with Content-Length is refused.
 */
export function reconcileRange(
  asked: ByteRange | undefined,
  upstream: UpstreamShape,
  fail: (what: string) => StoreUnavailableError,
): Reconciled {
  const { contentRange, contentLength } = upstream;
  let size: number;
  let sent: ByteRange;
  if (contentRange !== undefined && contentRange !== null && contentRange !== '') {
    const m = CONTENT_RANGE.exec(contentRange.trim());
    if (!m) throw fail('the store sent a malformed Content-Range');
    const [start, end] = [Number(m[1]), Number(m[2])];
    size = Number(m[3]);
    if (asked !== undefined && asked.start >= size) throw fitRangeError(asked, size);
    if (end < start || end >= size || (contentLength !== undefined && contentLength !== end - start + 1)) {
      throw fail('the store sent an inconsistent Content-Range');
    }
    sent = { start, end };
  } else {
    if (contentLength === undefined || !Number.isSafeInteger(contentLength) || contentLength < 0) {
      throw fail('the store sent no object length');
    }
    size = contentLength;
    sent = { start: 0, end: size - 1 };
  }
  if (asked === undefined) {
    if (sent.start !== 0 || sent.end !== size - 1) throw fail('the store sent part of the object unasked');
    return { size, sent, want: undefined };
  }
  const want = fitRange(asked, size);
  if (sent.start > want.start || sent.end < want.end) throw fail('the store sent a byte range that does not cover the one asked');
  return { size, sent, want };
}

function fitRangeError(asked: ByteRange, size: number): InvalidRangeError {
  return new InvalidRangeError(`byte range starts at ${asked.start}, past the ${size} bytes of the object`);
}

/**
 * The body the caller gets from an upstream body holding `sent`: exactly the bytes of `want` (the whole
 * of `sent` when undefined), length-checked so that a short upstream errors instead of ending quietly.
 */
export function cut(source: Readable, sent: ByteRange, want: ByteRange | undefined): Readable {
  if (want === undefined || (want.start === sent.start && want.end === sent.end)) {
    return withLengthCheck(source, sent.end - sent.start + 1);
  }
  const length = want.end - want.start + 1;
  return withLengthCheck(slice(source, want.start - sent.start, length), length);
}

/**
 * Bytes `skip .. skip+length-1` of `source`, through a pipe: `source` is piped (flowing, paused only by
 * backpressure) like an uncut body, so the idle watchdog reads its state the same way, and a 'data'
 * listener cannot take chunks before the slice sees them. At the last byte the slice ends and destroys
 * `source`, which frees its socket; so does the slice's consumer going away.
 */
function slice(source: Readable, skip: number, length: number): Readable {
  let toSkip = skip;
  let left = length;
  const out = new Transform({
    highWaterMark: source.readableHighWaterMark,
    transform(chunk: Buffer, _encoding, done) {
      if (left === 0 || toSkip >= chunk.length) {
        if (left > 0) toSkip -= chunk.length;
        done();
        return;
      }
      const part = chunk.subarray(toSkip, toSkip + left);
      toSkip = 0;
      left -= part.length;
      this.push(part);
      if (left === 0) {
        this.push(null);
        source.unpipe(out);
        source.destroy();
      }
      done();
    },
  });
  source.pipe(out);
  out.once('close', () => source.destroy());
  return out;
}
