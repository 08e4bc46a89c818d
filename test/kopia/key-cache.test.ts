/**
 * The key derivation cache: one derivation per (algorithm, salt, password), shared while it runs, a
 * bounded number at once with a bounded queue, failures not kept; and through a real repository, a
 * second open derives nothing.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { KeyDerivationBusyError, WrongPasswordError } from '../../src/kopia/errors.ts';
import { deriveFormatKey } from '../../src/kopia/format.ts';
import { KeyCache } from '../../src/kopia/key-cache.ts';
import type { Derive } from '../../src/kopia/key-cache.ts';
import { openRepository } from '../../src/kopia/repository.ts';
import { PASSWORD, fsStore, repoDir } from './fixture-support.ts';

interface Call {
  salt: string;
  resolve: (key: Buffer) => void;
  reject: (err: Error) => void;
}

/** A derivation the test finishes by hand, recording each call. */
function manualDerive(): { derive: Derive; calls: Call[] } {
  const calls: Call[] = [];
  const derive: Derive = (_algo, _password, salt) =>
    new Promise<Buffer>((resolve, reject) => calls.push({ salt: salt.toString(), resolve, reject }));
  return { derive, calls };
}

const ALGO = 'scrypt-65536-8-1';
const salt = (s: string): Buffer => Buffer.from(s);
/** A broken cache leaves some promise unresolved: the case then fails by its timeout instead of hanging. */
const T = { timeout: 5_000 };
const tick = (): Promise<void> => new Promise((r) => setImmediate(r));

describe('KeyCache', () => {
  test('callers asking while a derivation runs share it; later callers get the kept key', T, async () => {
    const { derive, calls } = manualDerive();
    const cache = new KeyCache(derive);
    const a = cache.derive(ALGO, 'pw', salt('s1'));
    const b = cache.derive(ALGO, 'pw', salt('s1'));
    await tick();
    assert.equal(calls.length, 1);
    calls[0]!.resolve(Buffer.from('key1'));
    assert.deepEqual(await a, Buffer.from('key1'));
    assert.deepEqual(await b, Buffer.from('key1'));
    assert.deepEqual(await cache.derive(ALGO, 'pw', salt('s1')), Buffer.from('key1'));
    assert.equal(calls.length, 1);
  });

  test('another password, salt or algorithm is another derivation', T, async () => {
    const { derive, calls } = manualDerive();
    const cache = new KeyCache(derive, { concurrency: 10 });
    void cache.derive(ALGO, 'pw', salt('s1'));
    void cache.derive(ALGO, 'other', salt('s1'));
    void cache.derive(ALGO, 'pw', salt('s2'));
    void cache.derive('pbkdf2-sha256-600000', 'pw', salt('s1'));
    await tick();
    assert.equal(calls.length, 4);
    for (const c of calls) c.resolve(Buffer.alloc(32));
  });

  test('at most `concurrency` run at once, at most `queue` wait, and the rest are refused at once', T, async () => {
    const { derive, calls } = manualDerive();
    const cache = new KeyCache(derive, { concurrency: 2, queue: 1 });
    const running = [cache.derive(ALGO, 'pw', salt('a')), cache.derive(ALGO, 'pw', salt('b'))];
    const queued = cache.derive(ALGO, 'pw', salt('c'));
    await assert.rejects(cache.derive(ALGO, 'pw', salt('d')), KeyDerivationBusyError);
    await tick();
    assert.deepEqual(calls.map((c) => c.salt), ['a', 'b'], 'the third waits for a slot');
    calls[0]!.resolve(Buffer.from('A'));
    await running[0];
    await tick();
    assert.deepEqual(calls.map((c) => c.salt), ['a', 'b', 'c'], 'a finished derivation frees its slot');
    calls[1]!.resolve(Buffer.from('B'));
    calls[2]!.resolve(Buffer.from('C'));
    assert.deepEqual(await queued, Buffer.from('C'));
    // A key already kept is served even while the queue is full.
    const busy = [cache.derive(ALGO, 'pw', salt('e')), cache.derive(ALGO, 'pw', salt('f')), cache.derive(ALGO, 'pw', salt('g'))];
    assert.deepEqual(await cache.derive(ALGO, 'pw', salt('a')), Buffer.from('A'));
    await tick();
    for (const c of calls.slice(3)) c.resolve(Buffer.alloc(1));
    await tick();
    for (const c of calls.slice(5)) c.resolve(Buffer.alloc(1));
    await Promise.all(busy);
  });

  test('a failed derivation is not kept: the next caller derives again', T, async () => {
    const { derive, calls } = manualDerive();
    const cache = new KeyCache(derive);
    const first = cache.derive(ALGO, 'pw', salt('s'));
    await tick();
    calls[0]!.reject(new Error('out of memory'));
    await assert.rejects(first, /out of memory/);
    const second = cache.derive(ALGO, 'pw', salt('s'));
    await tick();
    assert.equal(calls.length, 2);
    calls[1]!.resolve(Buffer.from('k'));
    assert.deepEqual(await second, Buffer.from('k'));
  });

  test('the least recently used key is dropped beyond `entries`', T, async () => {
    const { derive, calls } = manualDerive();
    const cache = new KeyCache(derive, { entries: 2, concurrency: 10 });
    const get = async (s: string): Promise<void> => {
      const p = cache.derive(ALGO, 'pw', salt(s));
      await tick();
      calls.at(-1)!.resolve(Buffer.from(s));
      await p;
    };
    await get('a');
    await get('b');
    await cache.derive(ALGO, 'pw', salt('a')); // a is now the most recent
    await get('c'); // drops b
    const before = calls.length;
    await cache.derive(ALGO, 'pw', salt('a'));
    await cache.derive(ALGO, 'pw', salt('c'));
    assert.equal(calls.length, before, 'a and c are kept');
    const b = cache.derive(ALGO, 'pw', salt('b'));
    await tick();
    assert.equal(calls.length, before + 1, 'b was dropped and is derived again');
    calls.at(-1)!.resolve(Buffer.from('b'));
    await b;
  });

  test('through a real repository: the second open derives nothing, and a wrong password stays wrong', T, async () => {
    let derivations = 0;
    const cache = new KeyCache((algo, pw, s) => {
      derivations++;
      return deriveFormatKey(algo, pw, s);
    });
    const open = (password: string): Promise<unknown> =>
      openRepository(fsStore(repoDir('velero-aes256gcm')), { naming: 'filesystem', password, signal: new AbortController().signal, keys: cache });
    await open(PASSWORD);
    await open(PASSWORD);
    assert.equal(derivations, 1);
    await assert.rejects(open('not-the-password'), WrongPasswordError);
    await assert.rejects(open('not-the-password'), WrongPasswordError);
    assert.equal(derivations, 2);
  });
});
