/**
 * The one rule for ranges, by table: what a store answers (Content-Range, Content-Length) against what
 * was asked. Each row is a shape some store really sends (S3, Azure, Azurite, GCS, s3rver).
 */
import assert from 'node:assert/strict';
import { Readable } from 'node:stream';
import { describe, test } from 'node:test';
import { InvalidRangeError, StoreUnavailableError } from '../../src/stores/errors.ts';
import { checkRange, cut, fitRange, reconcileRange } from '../../src/stores/range.ts';
import type { ByteRange } from '../../src/stores/types.ts';
import { collect, drain } from '../support/streams.ts';

const fail = (what: string): StoreUnavailableError => new StoreUnavailableError(what);

describe('checkRange and fitRange', () => {
  test('a range that cannot be one is refused before any I/O', () => {
    for (const r of [{ start: -1, end: 3 }, { start: 4, end: 3 }, { start: 0.5, end: 3 }, { start: 0, end: Infinity }]) {
      assert.throws(() => checkRange(r), InvalidRangeError, JSON.stringify(r));
    }
  });
  test('the end is clamped to the last byte; a start at or past the size is refused', () => {
    assert.deepEqual(fitRange({ start: 5, end: 1000 }, 10), { start: 5, end: 9 });
    assert.throws(() => fitRange({ start: 10, end: 12 }, 10), InvalidRangeError);
    assert.throws(() => fitRange({ start: 0, end: 0 }, 0), InvalidRangeError);
  });
});

describe('reconcileRange', () => {
  const ok: { name: string; asked?: ByteRange; contentRange?: string; contentLength?: number; want: ReturnType<typeof reconcileRange> }[] = [
    { name: 'whole object, 200', contentLength: 10, want: { size: 10, sent: { start: 0, end: 9 }, want: undefined } },
    { name: 'empty object, 200', contentLength: 0, want: { size: 0, sent: { start: 0, end: -1 }, want: undefined } },
    {
      name: 'the range asked, 206',
      asked: { start: 2, end: 4 },
      contentRange: 'bytes 2-4/10',
      contentLength: 3,
      want: { size: 10, sent: { start: 2, end: 4 }, want: { start: 2, end: 4 } },
    },
    {
      name: 'an end past the object, clamped by the store',
      asked: { start: 7, end: 100 },
      contentRange: 'bytes 7-9/10',
      want: { size: 10, sent: { start: 7, end: 9 }, want: { start: 7, end: 9 } },
    },
    {
      name: 'a store that widens the range (s3rver sends all of bytes=0-0): cut to the range asked',
      asked: { start: 0, end: 0 },
      contentRange: 'bytes 0-9/10',
      want: { size: 10, sent: { start: 0, end: 9 }, want: { start: 0, end: 0 } },
    },
    {
      name: 'a 200 with the whole object to a range request: cut to the range asked, whatever its start',
      asked: { start: 3, end: 5 },
      contentLength: 10,
      want: { size: 10, sent: { start: 0, end: 9 }, want: { start: 3, end: 5 } },
    },
  ];
  for (const c of ok) {
    test(c.name, () => assert.deepEqual(reconcileRange(c.asked, { contentRange: c.contentRange, contentLength: c.contentLength }, fail), c.want));
  }

  const invalidRange: { name: string; asked: ByteRange; contentRange?: string; contentLength?: number }[] = [
    { name: 'a 416-less answer past the end (Azurite: bytes <size>-<size-1>/<size>)', asked: { start: 10, end: 20 }, contentRange: 'bytes 10-9/10' },
    { name: 'a range of an empty object (s3rver: bytes 0-0/0)', asked: { start: 0, end: 0 }, contentRange: 'bytes 0-0/0' },
    { name: 'a range of an empty object (Azurite: bytes 0--1/0)', asked: { start: 0, end: 0 }, contentRange: 'bytes 0--1/0' },
    { name: 'a range of an empty object answered 200', asked: { start: 0, end: 5 }, contentLength: 0 },
  ];
  for (const c of invalidRange) {
    test(`${c.name} → InvalidRangeError`, () => {
      assert.throws(() => reconcileRange(c.asked, { contentRange: c.contentRange, contentLength: c.contentLength }, fail), InvalidRangeError);
    });
  }

  const untrusted: { name: string; asked?: ByteRange; contentRange?: string; contentLength?: number }[] = [
    { name: 'no length at all', contentLength: undefined },
    { name: 'a malformed Content-Range', asked: { start: 0, end: 1 }, contentRange: 'bytes */10' },
    { name: 'a Content-Range past its own size', asked: { start: 0, end: 1 }, contentRange: 'bytes 0-10/10' },
    { name: 'a Content-Length that disagrees with the Content-Range', asked: { start: 0, end: 1 }, contentRange: 'bytes 0-1/10', contentLength: 5 },
    { name: 'part of the object, unasked', contentRange: 'bytes 0-4/10' },
    { name: 'another range than asked', asked: { start: 5, end: 6 }, contentRange: 'bytes 0-1/10' },
    { name: 'less than asked (the range must be covered, not shortened)', asked: { start: 2, end: 8 }, contentRange: 'bytes 2-5/10' },
  ];
  for (const c of untrusted) {
    test(`${c.name} → the store's answer is refused`, () => {
      assert.throws(() => reconcileRange(c.asked, { contentRange: c.contentRange, contentLength: c.contentLength }, fail), StoreUnavailableError);
    });
  }
});

describe('cut', () => {
  const bytes = Buffer.from('0123456789');
  const source = (): Readable => Readable.from([bytes.subarray(0, 4), bytes.subarray(4)], { objectMode: false });

  test('exactly the range wanted out of a wider body', async () => {
    assert.equal((await collect(cut(source(), { start: 0, end: 9 }, { start: 3, end: 6 }))).toString(), '3456');
  });
  test('a body shorter than it should be errors, never ends quietly', async () => {
    const short = Readable.from([bytes.subarray(0, 4)], { objectMode: false });
    const { error } = await drain(cut(short, { start: 0, end: 9 }, undefined));
    assert.ok(error instanceof StoreUnavailableError, String(error));
  });
});
