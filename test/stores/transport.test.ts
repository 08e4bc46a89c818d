/**
 * The idle timeout of an upstream body, whichever way the body is cut and read: it fires when the store
 * goes quiet while the gateway wants bytes, and never while the gateway's own consumer holds back.
 * The conformance suite proves it through the fault proxy on whole bodies; a body cut to a range (a
 * store that ignored or widened `Range`) reads its source differently, so it is proven here directly.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { PassThrough, Writable } from 'node:stream';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, test } from 'node:test';
import { StoreTimeoutError } from '../../src/stores/errors.ts';
import { upstreamBody } from '../../src/stores/transport.ts';

const IDLE_MS = 150;
const opts = { what: 'location l: object "k"', idleMs: IDLE_MS };
/** The store answered with all 100 bytes; the caller asked for bytes 10..59. */
const widened = { sent: { start: 0, end: 99 }, want: { start: 10, end: 59 } };
const whole = { sent: { start: 0, end: 99 }, want: undefined };

/** Resolves with the body's error, or with 'no error' if it has none within `ms`. */
async function errorWithin(body: Readable, ms: number): Promise<unknown> {
  const ac = new AbortController();
  try {
    // The loser rejects with an AbortError when the other wins: caught, it means nothing.
    const failed = once(body, 'error', { signal: ac.signal }).then(([err]): unknown => err, () => undefined);
    const quiet = sleep(ms, 'no error', { signal: ac.signal }).catch(() => undefined);
    return await Promise.race([failed, quiet]);
  } finally {
    ac.abort();
  }
}

describe('upstream body idle timeout', () => {
  test('a body cut to a range: a store that goes quiet mid-body ends it with a timeout', async () => {
    const source = new PassThrough();
    const body = upstreamBody(source, widened, opts);
    const got: Buffer[] = [];
    body.pipe(new Writable({ write: (c: Buffer, _e, done) => void (got.push(c), done()) }));
    source.write(Buffer.alloc(20, 1));
    const err = await errorWithin(body, IDLE_MS * 10);
    assert.ok(err instanceof StoreTimeoutError, `expected a StoreTimeoutError, got ${String(err)}`);
    assert.equal(Buffer.concat(got).length, 10, 'the bytes of the range that came are handed out');
  });

  test('a body cut to a range: a consumer that holds back for several idle periods is not a store timeout', async () => {
    const CHUNK = 64 * 1024;
    const CHUNKS = 40;
    const size = CHUNK * CHUNKS;
    const source = new PassThrough();
    const body = upstreamBody(source, { sent: { start: 0, end: size - 1 }, want: { start: 10, end: size - 11 } }, opts);
    let received = 0;
    let first = true;
    // The gateway's client: takes its first chunk and then holds everything back for 4 idle periods.
    const sink = new Writable({
      write(chunk: Buffer, _enc, done) {
        received += chunk.length;
        if (first) setTimeout(done, IDLE_MS * 4);
        else done();
        first = false;
      },
    });
    const delivered = pipeline(body, sink);
    // The store keeps sending meanwhile, a chunk every 20 ms.
    for (let i = 0; i < CHUNKS; i++) {
      source.write(Buffer.alloc(CHUNK, i));
      await sleep(20);
    }
    source.end();
    await delivered;
    assert.equal(received, size - 20);
  });

  test('a whole body read by iteration: a store that goes quiet still ends it with a timeout', async () => {
    const source = new PassThrough();
    const body = upstreamBody(source, whole, opts);
    source.write(Buffer.alloc(30, 1));
    const read = (async () => {
      let n = 0;
      for await (const chunk of body) n += (chunk as Buffer).length;
      return n;
    })();
    await assert.rejects(read, StoreTimeoutError);
  });
});
