/** TtlCache: keys that never hold the parts, per-value TTLs, merged loads, errors never cached. */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { TtlCache } from '../../src/util/ttl-cache.ts';

describe('TtlCache', () => {
  test('keyOf: stable per cache, never contains the parts, differs between caches and between splits', () => {
    const a = new TtlCache<object>({ max: 10, ttl: () => 1000 });
    const b = new TtlCache<object>({ max: 10, ttl: () => 1000 });
    const token = 'eyJhbGciOiJSUzI1NiJ9.secret-token-value';
    assert.equal(a.keyOf('token', token), a.keyOf('token', token));
    assert.ok(!a.keyOf('token', token).includes('secret'));
    assert.match(a.keyOf('token', token), /^[A-Za-z0-9_-]{43}$/);
    assert.notEqual(a.keyOf('token', token), b.keyOf('token', token), 'salted per process (per cache)');
    assert.notEqual(a.keyOf('ab', 'c'), a.keyOf('a', 'bc'), 'parts are length-prefixed');
    assert.notEqual(a.keyOf('token', token), a.keyOf('token', `${token}x`));
  });

  test('concurrent gets of one key share one load; a value with TTL 0 and a thrown load are not cached', async () => {
    const cache = new TtlCache<{ v: number }>({ max: 10, ttl: (x) => (x.v < 0 ? 0 : 60_000) });
    let loads = 0;
    const load = async (): Promise<{ v: number }> => {
      loads++;
      await new Promise((r) => setTimeout(r, 5));
      return { v: 1 };
    };
    const [x, y] = await Promise.all([cache.get('k', load), cache.get('k', load)]);
    assert.equal(loads, 1);
    assert.equal(x, y);
    assert.equal(await cache.get('k', load), x);
    assert.deepEqual(cache.stats, { hits: 1, misses: 1, merged: 1 });

    await assert.rejects(cache.get('e', () => Promise.reject(new Error('api down'))));
    assert.deepEqual(await cache.get('e', async () => ({ v: 2 })), { v: 2 }, 'the error was not cached');
    await cache.get('n', async () => ({ v: -1 }));
    assert.deepEqual(await cache.get('n', async () => ({ v: 3 })), { v: 3 }, 'TTL 0 is not cached');
  });
});
