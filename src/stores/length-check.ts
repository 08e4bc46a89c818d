import { pipeline, Transform } from 'node:stream';
import type { Readable, TransformCallback } from 'node:stream';
import { StoreUnavailableError } from './errors.ts';

class LengthCheck extends Transform {
  readonly #expected: number;
  #received = 0;

  constructor(expected: number, highWaterMark: number) {
    super({ highWaterMark });
    this.#expected = expected;
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    this.#received += chunk.length;
    if (this.#received > this.#expected) {
      callback(new StoreUnavailableError(`long read: got more than the ${this.#expected} bytes announced`));
      return;
    }
    callback(null, chunk);
  }

  override _flush(callback: TransformCallback): void {
    if (this.#received < this.#expected) {
      callback(new StoreUnavailableError(`short read: got ${this.#received} of ${this.#expected} bytes`));
      return;
    }
    callback();
  }
}

function ignore(): void {}

/**
 * Wraps `source`, which must deliver exactly `expectedBytes`, in a stream that passes its chunks on
 * unchanged and errors with a StoreUnavailableError when the source ends early or delivers more, so
 * a truncated upstream can never look like a complete object. A source that errors or closes without
 * ending errors the wrapper; destroying the wrapper destroys the source.
 */
export function withLengthCheck(source: Readable, expectedBytes: number): Readable {
  if (!Number.isSafeInteger(expectedBytes) || expectedBytes < 0) {
    throw new RangeError(`expected byte count must be a non-negative integer, got ${expectedBytes}`);
  }
  if (source.readableObjectMode) {
    throw new TypeError('withLengthCheck needs a byte stream, not an object-mode stream');
  }
  // Same buffer size as the source, so the wrapper never splits or re-batches its chunks.
  const checked = new LengthCheck(expectedBytes, source.readableHighWaterMark);
  // Errors reach the consumer through `checked` itself; the callback only keeps pipeline quiet.
  pipeline(source, checked, ignore);
  return checked;
}
