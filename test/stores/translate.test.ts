import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { classifyStatus, parseRetryAfter } from '../../src/stores/translate.ts';

describe('classifyStatus', () => {
  const codes = { notFound: new Set(['NoSuchKey']), denied: new Set(['AccessDenied']), throttled: new Set(['SlowDown', 'rateLimitExceeded']), timeout: new Set(['OperationTimedOut']), range: new Set(['InvalidRange']) };
  const cases: [number | undefined, string | undefined, ReturnType<typeof classifyStatus>][] = [
    [404, undefined, 'notFound'],
    [400, 'NoSuchKey', 'notFound'],
    [416, undefined, 'range'],
    [400, 'InvalidRange', 'range'],
    [301, undefined, 'redirect'],
    [307, undefined, 'redirect'],
    [401, undefined, 'denied'],
    [403, undefined, 'denied'],
    [400, 'AccessDenied', 'denied'],
    [403, 'rateLimitExceeded', 'throttled'],
    [429, undefined, 'throttled'],
    [503, undefined, 'throttled'],
    [500, 'SlowDown', 'throttled'],
    [408, undefined, 'timeout'],
    [504, undefined, 'timeout'],
    [500, 'OperationTimedOut', 'timeout'],
    [500, undefined, 'other'],
    [undefined, undefined, 'other'],
  ];
  for (const [status, code, kind] of cases) test(`${String(status)} ${code ?? ''} → ${kind}`, () => assert.equal(classifyStatus(status, code, codes), kind));
});

describe('parseRetryAfter', () => {
  test('seconds, dates, junk', () => {
    assert.equal(parseRetryAfter('7'), 7);
    assert.equal(parseRetryAfter(' 0 '), 0);
    assert.equal(parseRetryAfter(undefined), undefined);
    assert.equal(parseRetryAfter(null), undefined);
    assert.equal(parseRetryAfter(''), undefined);
    assert.equal(parseRetryAfter('soon'), undefined);
    const inTen = parseRetryAfter(new Date(Date.now() + 10_500).toUTCString())!;
    assert.ok(inTen >= 9 && inTen <= 11, String(inTen));
    assert.equal(parseRetryAfter(new Date(Date.now() - 60_000).toUTCString()), 0);
  });
});
