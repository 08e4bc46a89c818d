import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { InvalidKeyError, InvalidLocationError } from '../../src/stores/errors.ts';
import { joinKey, keySegments, MAX_KEY_BYTES, normalizePrefix } from '../../src/stores/keys.ts';
import { ESCAPING_KEYS, ODD_LEGAL_KEYS } from './conformance.ts';

describe('keySegments', () => {
  for (const key of ESCAPING_KEYS) {
    test(`refuses ${JSON.stringify(key.slice(0, 40))}`, () => {
      assert.throws(() => keySegments(key), InvalidKeyError);
    });
  }

  test('splits legal keys into their segments', () => {
    assert.deepEqual(keySegments('backups/n/n-logs.gz'), ['backups', 'n', 'n-logs.gz']);
    assert.deepEqual(keySegments('a.b.c'), ['a.b.c']);
    for (const key of ODD_LEGAL_KEYS) assert.deepEqual(keySegments(key), key.split('/'));
  });

  test(`accepts ${MAX_KEY_BYTES} UTF-8 bytes and refuses one more`, () => {
    assert.equal(keySegments('x'.repeat(MAX_KEY_BYTES))[0]?.length, MAX_KEY_BYTES);
    assert.throws(() => keySegments('x'.repeat(MAX_KEY_BYTES + 1)), InvalidKeyError);
    // Counted in bytes, not characters: 'é' is two.
    assert.doesNotThrow(() => keySegments('é'.repeat(MAX_KEY_BYTES / 2)));
    assert.throws(() => keySegments('é'.repeat(MAX_KEY_BYTES / 2 + 1)), InvalidKeyError);
  });

  test('messages show the key escaped, never raw control characters', () => {
    assert.throws(() => keySegments('a\u0000b'), (err: Error) => err.message.includes('"a\\u0000b"'));
  });
});

describe('normalizePrefix', () => {
  const cases: [string, string][] = [
    ['', ''],
    ['/', ''],
    ['velero', 'velero'],
    ['/velero/', 'velero'],
    ['a//b/./c/', 'a/b/c'],
    ['./a', 'a'],
  ];
  for (const [prefix, want] of cases) {
    test(`${JSON.stringify(prefix)} → ${JSON.stringify(want)}`, () => {
      assert.equal(normalizePrefix(prefix), want);
    });
  }

  for (const prefix of ['..', 'a/..', '../a', 'a/../b', 'a\u0000', 'a\\b']) {
    test(`refuses ${JSON.stringify(prefix)} with InvalidLocationError`, () => {
      assert.throws(() => normalizePrefix(prefix), InvalidLocationError);
    });
  }
});

describe('joinKey', () => {
  test('joins a trimmed prefix and the key', () => {
    assert.equal(joinKey('velero', 'backups/b/b-logs.gz'), 'velero/backups/b/b-logs.gz');
    assert.equal(joinKey('/velero/cluster-1/', 'a'), 'velero/cluster-1/a');
    assert.equal(joinKey('', 'backups/b/b.tar.gz'), 'backups/b/b.tar.gz');
    assert.equal(joinKey('/', 'a'), 'a');
  });

  test('the key cannot leave the prefix', () => {
    for (const key of ['../x', 'a/../../x', '/etc/passwd', './a', 'a//b', '']) {
      assert.throws(() => joinKey('velero', key), InvalidKeyError, key);
    }
  });

  test('a climbing prefix is an invalid location', () => {
    assert.throws(() => joinKey('velero/..', 'x'), InvalidLocationError);
  });
});
