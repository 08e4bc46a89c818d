/**
 * Sends an object that offers positional reads (the filesystem store) with recycled buffers: read a
 * chunk into a buffer, write it, and read the next one into the same buffer once the socket has taken
 * the last (the write callback). Against `pipeline(createReadStream(..), res)` this allocates nothing
 * per chunk, so there is no garbage to collect, and a download holds one chunk however slow its
 * client is. It earns its keep: 1 GiB over HTTPS from the filesystem store (bench/results/latest.md,
 * section 1) costs the gateway 0.83 CPU-s/GiB at 747 MB/s, where bare Node piping createReadStream
 * with 1 MiB reads costs 1.34 CPU-s/GiB at 540 MB/s and nginx 1.06 CPU-s/GiB at 825 MB/s. 128 KiB
 * chunks were the fastest; larger ones cost the client more (cache misses), smaller ones cost the
 * server more (calls per byte).
 */
import type { Writable } from 'node:stream';
import { StoreUnavailableError } from '../stores/errors.ts';
import type { ObjectReader } from '../stores/types.ts';

export const SEND_CHUNK = 128 * 1024;

/** Free buffers kept for the next downloads: 64 × 128 KiB = 8 MiB at most. */
const POOL_MAX = 64;
const pool: Buffer[] = [];

function take(): Buffer {
  return pool.pop() ?? Buffer.allocUnsafeSlow(SEND_CHUNK);
}

function giveBack(buffer: Buffer): void {
  if (pool.length < POOL_MAX) pool.push(buffer);
}

/** How many free buffers the pool holds (tests). */
export function pooledBuffers(): number {
  return pool.length;
}

/**
 * Writes `length` bytes of `reader` from `position` to `out`, then ends `out`; `onChunk` sees each
 * chunk's size as it is written. Rejects, without ending `out`, when the object ends early (a
 * StoreUnavailableError: the caller must break the connection), when a read or a write fails, or
 * when `out` closes first. Always closes the reader. A buffer goes back to the pool only when no read
 * or write of it is still pending.
 */
export async function sendFromReader(
  reader: ObjectReader,
  position: number,
  length: number,
  out: Writable,
  onChunk: (bytes: number) => void,
): Promise<void> {
  const buffer = take();
  // A response whose connection goes away may never call back a pending write: 'close' fails it.
  let closed = false;
  let failPending: ((err: Error) => void) | undefined;
  const onClose = (): void => {
    closed = true;
    failPending?.(new Error('the response closed before the object was sent'));
  };
  out.once('close', onClose);
  let writing = false;
  try {
    let sent = 0;
    while (sent < length) {
      // Reads are not abandoned half-way: the buffer must not be written into after it is pooled.
      const n = await reader.read(buffer, Math.min(SEND_CHUNK, length - sent), position + sent);
      if (closed) throw new Error('the response closed before the object was sent');
      if (n === 0) throw new StoreUnavailableError(`short read: got ${sent} of ${length} bytes`);
      sent += n;
      onChunk(n);
      const chunk = n === buffer.length ? buffer : buffer.subarray(0, n);
      writing = true;
      await new Promise<void>((resolve, reject) => {
        failPending = reject;
        // The last chunk ends the response in the same call (one turn less per download; the whole of
        // a small object): its callback comes on 'finish', once the socket has taken everything.
        if (sent === length) out.end(chunk, () => resolve());
        else out.write(chunk, (err) => (err ? reject(err) : resolve()));
      });
      // Nothing pending any more: a 'close' now (as after every finished response) builds no Error.
      failPending = undefined;
      writing = false;
    }
    if (length === 0) out.end();
  } finally {
    out.off('close', onClose);
    // A write that failed or was abandoned may still hold the buffer: it is left to the collector.
    if (!writing) giveBack(buffer);
    await reader.close();
  }
}
