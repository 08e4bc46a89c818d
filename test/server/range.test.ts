import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { decideRange, notModified } from '../../src/server/range.ts';

const info = { size: 100, etag: '"abc"', lastModified: new Date('2026-01-02T03:04:05Z') };

describe('decideRange', () => {
  const cases: [header: string | undefined, expected: ReturnType<typeof decideRange>][] = [
    [undefined, { kind: 'full' }],
    ['bytes=0-9', { kind: 'partial', range: { start: 0, end: 9 } }],
    ['bytes=90-', { kind: 'partial', range: { start: 90, end: 99 } }],
    ['bytes=-10', { kind: 'partial', range: { start: 90, end: 99 } }],
    ['bytes=95-200', { kind: 'partial', range: { start: 95, end: 99 } }],
    ['bytes=100-', { kind: 'unsatisfiable' }],
    ['bytes=0-1,5-6', { kind: 'full' }],
    ['bytes=0-5,3-9', { kind: 'partial', range: { start: 0, end: 9 } }], // overlapping ranges combine into one
    ['bytes=abc', { kind: 'full' }],
    ['items=0-1', { kind: 'full' }],
  ];
  for (const [header, expected] of cases) {
    test(`${header}`, () => assert.deepEqual(decideRange(info, header, undefined), expected));
  }
  test('If-Range with the current ETag honours the range, with another one sends everything', () => {
    assert.equal(decideRange(info, 'bytes=0-1', '"abc"').kind, 'partial');
    assert.equal(decideRange(info, 'bytes=0-1', '"old"').kind, 'full');
    assert.equal(decideRange(info, 'bytes=0-1', 'W/"abc"').kind, 'full');
    assert.equal(decideRange(info, 'bytes=0-1', info.lastModified.toUTCString()).kind, 'partial');
    assert.equal(decideRange(info, 'bytes=0-1', new Date(0).toUTCString()).kind, 'full');
  });
  test('an empty object has no satisfiable range', () => {
    assert.equal(decideRange({ size: 0 }, 'bytes=0-', undefined).kind, 'unsatisfiable');
  });
});

describe('notModified', () => {
  test('If-None-Match', () => {
    assert.equal(notModified(info, '"abc"', undefined), true);
    assert.equal(notModified(info, 'W/"abc"', undefined), true);
    assert.equal(notModified(info, '"x", "abc"', undefined), true);
    assert.equal(notModified(info, '*', undefined), true);
    assert.equal(notModified(info, '"x"', undefined), false);
    // If-None-Match wins over If-Modified-Since.
    assert.equal(notModified(info, '"x"', new Date().toUTCString()), false);
  });
  test('If-Modified-Since', () => {
    assert.equal(notModified(info, undefined, info.lastModified.toUTCString()), true);
    assert.equal(notModified(info, undefined, new Date('2025-01-01').toUTCString()), false);
    assert.equal(notModified(info, undefined, 'garbage'), false);
  });
});
