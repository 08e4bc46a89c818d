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

    await assert.rejects(async () => cache.get('e', () => Promise.reject(new Error('api down'))));
    assert.deepEqual(await cache.get('e', async () => ({ v: 2 })), { v: 2 }, 'the error was not cached');
    await cache.get('n', async () => ({ v: -1 }));
    assert.deepEqual(await cache.get('n', async () => ({ v: 3 })), { v: 3 }, 'TTL 0 is not cached');
  });

  test('a hit is answered at once, not as a promise; a miss and a load in flight are promises', async () => {
    const cache = new TtlCache<{ v: number }>({ max: 10, ttl: () => 60_000 });
    const miss = cache.get('k', async () => ({ v: 1 }));
    assert.ok(miss instanceof Promise);
    assert.ok(cache.get('k', async () => ({ v: 2 })) instanceof Promise, 'joins the load in flight');
    const loaded = await miss;
    const hit = cache.get('k', () => Promise.reject(new Error('not called')));
    assert.ok(!(hit instanceof Promise));
    assert.equal(hit, loaded);
  });

  test('a load whose callers have all left is dropped (its signal aborts); one caller leaving alone does not drop it', async () => {
    const cache = new TtlCache<{ v: number }>({ max: 10, ttl: () => 60_000 });
    const seen: AbortSignal[] = [];
    const slow = (s: AbortSignal): Promise<{ v: number }> => {
      seen.push(s);
      return new Promise((resolve, reject) => {
        const t = setTimeout(() => resolve({ v: 1 }), 50);
        s.addEventListener('abort', () => (clearTimeout(t), reject(s.reason as Error)), { once: true });
      });
    };
    const a = new AbortController();
    const b = new AbortController();
    const first = cache.get('k', slow, { signal: a.signal });
    const second = cache.get('k', slow, { signal: b.signal });
    a.abort(new Error('a left'));
    await assert.rejects(async () => first, /a left/);
    assert.equal(seen[0]!.aborted, false, 'b still waits');
    assert.deepEqual(await second, { v: 1 });

    const c = new AbortController();
    const alone = cache.get('j', slow, { signal: c.signal });
    c.abort(new Error('c left'));
    await assert.rejects(async () => alone, /c left/);
    assert.equal(seen[1]!.aborted, true, 'nobody waits: the load is dropped');
    // The next caller starts a new load rather than joining the dropped one.
    assert.deepEqual(await cache.get('j', slow), { v: 1 });
    assert.equal(seen.length, 3);

    // A caller without a signal keeps a load alive whoever else leaves.
    const d = new AbortController();
    const pinned = cache.get('p', slow);
    const leaving = cache.get('p', slow, { signal: d.signal });
    d.abort(new Error('d left'));
    await assert.rejects(async () => leaving, /d left/);
    assert.deepEqual(await pinned, { v: 1 });
    assert.equal(seen[3]!.aborted, false);
  });

  test('admit runs only when a new load would start: not on a hit, not when joining a load in flight', async () => {
    const cache = new TtlCache<{ v: number }>({ max: 10, ttl: () => 60_000 });
    let admitted = 0;
    const admit = (): void => {
      admitted++;
      if (admitted > 1) throw new Error('refused');
    };
    const load = async (): Promise<{ v: number }> => {
      await new Promise((r) => setTimeout(r, 5));
      return { v: 1 };
    };
    await Promise.all([cache.get('k', load, { admit }), cache.get('k', load, { admit })]);
    await cache.get('k', load, { admit });
    assert.equal(admitted, 1);
    await assert.rejects(async () => cache.get('other', load, { admit }), /refused/);
    assert.equal(cache.size, 1, 'a refused call loads nothing');
  });
});
