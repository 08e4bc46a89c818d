/**
 * sendFromReader, the recycled-buffer path for the filesystem store: against the real
 * FilesystemStore's reader and Writables that record what they are given.
 */
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, rm, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import { SEND_CHUNK, pooledBuffers, sendFromReader } from '../../src/server/send.ts';
import { StoreUnavailableError } from '../../src/stores/errors.ts';
import { FilesystemStore } from '../../src/stores/fs.ts';
import type { ObjectReader } from '../../src/stores/types.ts';

const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

/** A Writable that copies what it gets (the sender reuses its buffer) and can hold writes back. */
class Recorder extends Writable {
  readonly copies: Buffer[] = [];
  readonly arrayBuffers = new Set<ArrayBufferLike>();
  pending = 0;
  maxPending = 0;
  hold = false;
  readonly #held: (() => void)[] = [];

  constructor() {
    super({ highWaterMark: 1 });
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, callback: (err?: Error | null) => void): void {
    this.copies.push(Buffer.from(chunk));
    this.arrayBuffers.add(chunk.buffer);
    this.pending++;
    this.maxPending = Math.max(this.maxPending, this.pending);
    const done = (): void => {
      this.pending--;
      callback();
    };
    if (this.hold) this.#held.push(done);
    else setImmediate(done);
  }

  received(): Buffer {
    return Buffer.concat(this.copies);
  }
}

/** Counts reader calls and closes around a real reader. */
function counting(reader: ObjectReader): ObjectReader & { closes: number; reads: number } {
  const r = {
    closes: 0,
    reads: 0,
    read: (b: Buffer, l: number, p: number) => {
      r.reads++;
      return reader.read(b, l, p);
    },
    close: () => {
      r.closes++;
      return reader.close();
    },
  };
  return r;
}

describe('sendFromReader', () => {
  let root: string;
  let store: FilesystemStore;
  const signal = (): AbortSignal => new AbortController().signal;

  before(async () => {
    root = await mkdtemp(join(tmpdir(), 'vds-send-'));
    store = new FilesystemStore({ root });
  });
  after(() => rm(root, { recursive: true, force: true }));

  async function readerOf(name: string, bytes: Buffer, range?: { start: number; end: number }) {
    await writeFile(join(root, name), bytes);
    const obj = await store.get(name, { signal: signal(), ...(range && { range }) });
    assert.equal(obj.kind, 'reader', 'the filesystem store offers a reader');
    return { obj, reader: counting(obj.reader) };
  }

  test('sends every byte in order, in chunks of at most SEND_CHUNK, one write at a time, then ends', async () => {
    const bytes = randomBytes(5 * SEND_CHUNK + 12345);
    const { reader } = await readerOf('whole', bytes);
    const out = new Recorder();
    let counted = 0;
    await sendFromReader(reader, 0, bytes.length, out, (n) => (counted += n));
    assert.equal(sha(out.received()), sha(bytes));
    assert.equal(counted, bytes.length);
    assert.ok(out.copies.every((c) => c.length <= SEND_CHUNK));
    assert.equal(out.maxPending, 1, 'the next chunk is read only once the last one was taken');
    assert.equal(out.writableEnded, true);
    assert.equal(reader.closes, 1);
  });

  test('recycles one buffer for the whole object and returns it to the pool', async () => {
    const bytes = randomBytes(4 * SEND_CHUNK);
    const { reader } = await readerOf('recycled', bytes);
    const out = new Recorder();
    await sendFromReader(reader, 0, bytes.length, out, () => undefined);
    assert.equal(out.copies.length, 4);
    assert.equal(out.arrayBuffers.size, 1, 'all chunks came from the same buffer');
    const pooled = pooledBuffers();
    assert.ok(pooled >= 1);
    // The next download takes it from the pool instead of allocating.
    const next = await readerOf('recycled-2', randomBytes(100));
    const out2 = new Recorder();
    await sendFromReader(next.reader, 0, 100, out2, () => undefined);
    assert.ok(out.arrayBuffers.has([...out2.arrayBuffers][0]!), 'the pooled buffer was reused');
  });

  test('sends a range from its first byte', async () => {
    const bytes = randomBytes(3 * SEND_CHUNK);
    const { obj, reader } = await readerOf('ranged', bytes, { start: 1000, end: 2 * SEND_CHUNK + 7 });
    const out = new Recorder();
    const length = obj.range!.end - obj.range!.start + 1;
    await sendFromReader(reader, obj.range!.start, length, out, () => undefined);
    assert.deepEqual(out.received(), bytes.subarray(1000, 2 * SEND_CHUNK + 8));
  });

  test('a file that shrinks mid-send is a short read: rejects, does not end the output, closes the reader', async () => {
    const bytes = randomBytes(8 * SEND_CHUNK);
    const { reader } = await readerOf('shrinks', bytes);
    const out = new Recorder();
    let first = true;
    const sending = sendFromReader(reader, 0, bytes.length, out, () => {
      if (first) {
        first = false;
        void truncate(join(root, 'shrinks'), 2 * SEND_CHUNK);
      }
    });
    await assert.rejects(sending, (err: Error) => err instanceof StoreUnavailableError && /short read: got \d+ of 1048576 bytes/.test(err.message));
    assert.equal(out.writableEnded, false, 'a short object must never look complete');
    assert.ok(out.received().length < bytes.length);
    assert.equal(reader.closes, 1);
  });

  test('an output that closes while a write is pending stops the send; the buffer is not pooled', async () => {
    const bytes = randomBytes(4 * SEND_CHUNK);
    const { reader } = await readerOf('abandoned', bytes);
    const out = new Recorder();
    out.hold = true;
    const before = pooledBuffers();
    const sending = sendFromReader(reader, 0, bytes.length, out, () => undefined);
    while (out.pending === 0) await new Promise((r) => setImmediate(r));
    out.destroy();
    await assert.rejects(sending, /closed before the object was sent/);
    assert.equal(reader.closes, 1);
    assert.equal(reader.reads, 1, 'nothing was read after the output went away');
    assert.ok(pooledBuffers() <= before, 'a buffer a write may still hold is never handed out again');
  });

  test('a read error rejects with the store error and closes the reader', async () => {
    const out = new Recorder();
    let closes = 0;
    const failing: ObjectReader = {
      read: () => Promise.reject(new StoreUnavailableError('filesystem error reading object "x"')),
      close: async () => {
        closes++;
      },
    };
    await assert.rejects(sendFromReader(failing, 0, 10, out, () => undefined), StoreUnavailableError);
    assert.equal(closes, 1);
    assert.equal(out.writableEnded, false);
  });
});
