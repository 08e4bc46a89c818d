import { Readable } from 'node:stream';
import { describe, test } from 'node:test';
import { setImmediate as tick, setTimeout as sleep } from 'node:timers/promises';
import assert from 'node:assert/strict';
import { StoreUnavailableError } from '../../src/stores/errors.ts';
import { withLengthCheck } from '../../src/stores/length-check.ts';

function sourceOf(chunks: Buffer[]): Readable {
  return Readable.from(chunks, { objectMode: false });
}

/** The chunks as emitted (flowing mode, so none are merged) and how the stream finished. */
function chunksOf(stream: Readable): Promise<{ chunks: Buffer[]; error: unknown; ended: boolean }> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let ended = false;
    stream.on('data', (chunk: Buffer) => chunks.push(chunk));
    stream.on('end', () => {
      ended = true;
    });
    stream.on('error', (error) => resolve({ chunks, error, ended }));
    stream.on('close', () => resolve({ chunks, error: undefined, ended }));
  });
}

/** Resolves when the stream has closed, whether or not it errored. */
function closed(stream: Readable): Promise<void> {
  return stream.closed ? Promise.resolve() : new Promise((resolve) => stream.once('close', () => resolve()));
}

/** A source that produces 1 KiB chunks for ever, one per tick, counting what it produced. */
function endless(): { source: Readable; produced: () => number } {
  let produced = 0;
  const source = new Readable({
    read() {
      setImmediate(() => {
        if (this.destroyed) return;
        produced += 1024;
        this.push(Buffer.alloc(1024));
      });
    },
  });
  return { source, produced: () => produced };
}

describe('withLengthCheck', () => {
  test('passes exactly the announced bytes through, the same chunks uncopied', async () => {
    const parts = [Buffer.from('abc'), Buffer.from('defgh'), Buffer.from('ij')];
    const { chunks, error, ended } = await chunksOf(withLengthCheck(sourceOf(parts), 10));
    assert.equal(error, undefined);
    assert.equal(ended, true);
    assert.equal(chunks.length, parts.length);
    chunks.forEach((chunk, i) => assert.equal(chunk, parts[i], `chunk ${i} is the source's own buffer`));
  });

  test('zero bytes announced and none delivered ends cleanly', async () => {
    const { chunks, error, ended } = await chunksOf(withLengthCheck(sourceOf([]), 0));
    assert.equal(error, undefined);
    assert.equal(ended, true);
    assert.equal(chunks.length, 0);
  });

  test('a short source makes the stream error, after passing on what it got', async () => {
    const { chunks, error, ended } = await chunksOf(withLengthCheck(sourceOf([Buffer.from('abc'), Buffer.from('defg')]), 11));
    assert.ok(error instanceof StoreUnavailableError);
    assert.equal(error.message, 'short read: got 7 of 11 bytes');
    assert.equal(ended, false);
    assert.equal(Buffer.concat(chunks).toString(), 'abcdefg');
  });

  test('a source delivering more than announced makes the stream error', async () => {
    const { error, ended } = await chunksOf(withLengthCheck(sourceOf([Buffer.from('abcde'), Buffer.from('fgh')]), 7));
    assert.ok(error instanceof StoreUnavailableError);
    assert.match(error.message, /long read: got more than the 7 bytes announced/);
    assert.equal(ended, false);
  });

  test('one byte when zero were announced is an error', async () => {
    const { error } = await chunksOf(withLengthCheck(sourceOf([Buffer.from('x')]), 0));
    assert.ok(error instanceof StoreUnavailableError);
  });

  test("a source's error reaches the consumer unchanged", async () => {
    const boom = new Error('connection reset');
    const source = new Readable({
      read() {
        this.destroy(boom);
      },
    });
    const { error } = await chunksOf(withLengthCheck(source, 10));
    assert.equal(error, boom);
  });

  test('a source closed without ending makes the stream error, not end', async () => {
    const source = new Readable({ read() {} });
    const checked = withLengthCheck(source, 10);
    const result = chunksOf(checked);
    source.push(Buffer.from('abc'));
    await tick();
    source.destroy();
    const { error, ended } = await result;
    assert.ok(error instanceof Error, 'errored');
    assert.equal(ended, false);
  });

  test('destroying the wrapper destroys the source', async () => {
    const { source } = endless();
    const checked = withLengthCheck(source, 10 * 1024 * 1024);
    checked.resume();
    await sleep(5);
    assert.equal(source.destroyed, false);
    checked.destroy();
    await closed(source);
    assert.equal(source.destroyed, true);
  });

  test('destroying the wrapper with an error destroys the source and reports the error', async () => {
    const { source } = endless();
    const checked = withLengthCheck(source, 10 * 1024 * 1024);
    const result = chunksOf(checked);
    const reason = new Error('client went away');
    checked.destroy(reason);
    const { error } = await result;
    assert.equal(error, reason);
    await closed(source);
    assert.equal(source.destroyed, true);
  });

  test('an unread wrapper holds the source back (backpressure)', async () => {
    const { source, produced } = endless();
    const checked = withLengthCheck(source, 1024 * 1024 * 1024);
    await sleep(50);
    assert.ok(produced() <= 8 * source.readableHighWaterMark, `produced ${produced()} bytes unread`);
    checked.destroy();
  });

  test('refuses a bad byte count and object-mode sources', () => {
    assert.throws(() => withLengthCheck(sourceOf([]), -1), RangeError);
    assert.throws(() => withLengthCheck(sourceOf([]), 1.5), RangeError);
    assert.throws(() => withLengthCheck(Readable.from([{ a: 1 }]), 1), TypeError);
  });
});
