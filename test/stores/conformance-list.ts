/**
 * The `list` cases of the ObjectStore acceptance suite, registered by runStoreConformance for every
 * adapter. The expected orders are written out by hand (not computed with the code under test):
 * ascending Unicode code points, that is UTF-8 bytes.
 */
import { randomBytes } from 'node:crypto';
import { before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { AccessDeniedError, InvalidKeyError, StoreUnavailableError } from '../../src/stores/errors.ts';
import type { ListedObject, ListOptions, ObjectStore } from '../../src/stores/types.ts';
import { openFdCount, waitForFdCount } from '../support/streams.ts';

/** What the list cases need of a conformance fixture (StoreFixture extends it). */
export interface ListFixture {
  store: ObjectStore;
  put(key: string, bytes: Uint8Array): Promise<void>;
  putOutside?: (name: string, bytes: Uint8Array) => Promise<void>;
  /**
   * Seeds an object whose full name is the location's root or prefix followed directly by `suffix`
   * (`<prefix>-beside/x` for `-beside/x`): outside the location, yet matched by a plain string
   * comparison with the prefix. Only for locations with a prefix (a bucket root has no beside).
   */
  putBeside?: (suffix: string, bytes: Uint8Array) => Promise<void>;
  wrongCredentials?: () => ObjectStore | Promise<ObjectStore>;
  untrustedTls?: () => ObjectStore | Promise<ObjectStore>;
}

const ABORT_TIMEOUT_MS = 10_000;

/**
 * Keys under `lst/` in the order a listing must give them. The characters just below `/` (space, `%`,
 * `+`, `-`, `.`) make a directory `a` sort after the files `a b`...`a.b` and before `a0`: a walk that
 * sorts names without their `/` gets it wrong. `ü`, `日本語` and `😀` are one, three and four UTF-8
 * bytes (the last a UTF-16 surrogate pair).
 */
const SORTED = ['a b', 'a%2Fb', 'a+b', 'a-b', 'a.b', 'a/x', 'a/y/z', 'a0', 'ü', '日本語/x', '😀'].map((k) => `lst/${k}`);

/** Put in shuffled order, so nothing depends on the order objects were written in. */
const WRITE_ORDER = [...SORTED].reverse();

/** Objects in directories of their own, for paging: `pg/<i>/x`. */
const PAGED = [0, 1, 2, 3, 4, 5, 6].map((i) => `pg/${i}/x`);

const ESCAPING_PREFIXES: readonly string[] = [
  '/',
  '/etc',
  '.',
  './',
  '..',
  '../',
  '../x',
  'lst/../..',
  'lst/..',
  'lst/./a',
  'lst//a',
  'lst//',
  'a\\b',
  '..\\x',
  'a\u0000',
  'a\nb',
  'a\ud800',
];

function signal(): AbortSignal {
  return new AbortController().signal;
}

function bytesOf(key: string): Buffer {
  return Buffer.from(`object at ${key}`);
}

async function collect(items: AsyncIterable<ListedObject>): Promise<ListedObject[]> {
  const out: ListedObject[] = [];
  for await (const item of items) out.push(item);
  return out;
}

async function keys(store: ObjectStore, prefix: string, opts: Partial<ListOptions> = {}): Promise<string[]> {
  return (await collect(store.list(prefix, { signal: signal(), ...opts }))).map((o) => o.key);
}

function utf8Ascending(list: readonly string[]): boolean {
  return list.every((k, i) => i === 0 || Buffer.compare(Buffer.from(list[i - 1]!), Buffer.from(k)) < 0);
}

/** Forwards a listing, handing each error it ends with to `seen` (for the suites' secret checks). */
export async function* recordListErrors<T>(items: AsyncIterable<T>, seen: (err: unknown) => void): AsyncGenerator<T> {
  try {
    yield* items;
  } catch (err) {
    seen(err);
    throw err;
  }
}

/** Registers the list cases; called inside runStoreConformance's describe. */
export function registerListCases(fx: ListFixture): void {
  const { store } = fx;

  describe('list', () => {
    before(async () => {
      for (const key of [...WRITE_ORDER, ...PAGED]) await fx.put(key, bytesOf(key));
    });

    test('the empty prefix lists everything, sorted, each as stat describes it', async () => {
      const all = await collect(store.list('', { signal: signal() }));
      const listed = all.map((o) => o.key);
      assert.ok(utf8Ascending(listed), `sorted by UTF-8 bytes: ${JSON.stringify(listed)}`);
      for (const key of [...SORTED, ...PAGED]) assert.ok(listed.includes(key), `${key} is listed`);
      for (const object of all.filter((o) => o.key.startsWith('lst/'))) {
        const info = await store.stat(object.key, { signal: signal() });
        assert.equal(object.size, bytesOf(object.key).length);
        assert.equal(object.size, info.size);
        assert.equal(object.etag, info.etag, `etag of ${object.key}`);
        assert.equal(object.lastModified?.getTime(), info.lastModified?.getTime(), `lastModified of ${object.key}`);
      }
    });

    test('a directory-like prefix lists exactly its keys, in order', async () => {
      assert.deepEqual(await keys(store, 'lst/'), SORTED);
    });

    const narrowed: [string, string[]][] = [
      ['lst/a', ['a b', 'a%2Fb', 'a+b', 'a-b', 'a.b', 'a/x', 'a/y/z', 'a0']],
      ['lst/a/', ['a/x', 'a/y/z']],
      ['lst/a/y', ['a/y/z']],
      ['lst/a-', ['a-b']],
      ['lst/a/y/z', ['a/y/z']],
      ['lst/日本語/', ['日本語/x']],
      ['lst/ü', ['ü']],
      ['lst/nothing-here', []],
      ['lst/a/x/', []],
    ];
    for (const [prefix, want] of narrowed) {
      test(`prefix ${JSON.stringify(prefix)} narrows the listing (a plain string prefix)`, async () => {
        assert.deepEqual(await keys(store, prefix), want.map((k) => `lst/${k}`));
      });
    }

    test('a prefix without a slash matches names at the top of the location, as a repository lists its blobs (`xn`)', async () => {
      assert.deepEqual(await keys(store, 'lst'), SORTED);
      assert.deepEqual(await keys(store, 'ls', { pageSize: 3 }), SORTED);
    });

    test('small pages give the same listing (11 objects in pages of 1, 2, 3 and 4)', async () => {
      for (const pageSize of [1, 2, 3, 4]) assert.deepEqual(await keys(store, 'lst/', { pageSize }), SORTED, `pages of ${pageSize}`);
    });

    test('pages are fetched as the caller iterates: an object added ahead of it is listed', async () => {
      const late = 'pg/5/y';
      const seen: string[] = [];
      for await (const object of store.list('pg/', { signal: signal(), pageSize: 2 })) {
        if (seen.length === 0) await fx.put(late, bytesOf(late));
        seen.push(object.key);
      }
      assert.deepEqual(seen, ['pg/0/x', 'pg/1/x', 'pg/2/x', 'pg/3/x', 'pg/4/x', 'pg/5/x', late, 'pg/6/x']);
    });

    const resumed: [string, number][] = [
      ['lst/a-b', 4],
      ['lst/a/x', 6],
      ['lst/a/xx', 6],
      ['lst/a', 0],
      ['lst', 0],
      ['lst/a0', 8],
      ['lst/😀', 11],
      ['zzz', 11],
    ];
    for (const [after, from] of resumed) {
      test(`after ${JSON.stringify(after)} starts strictly after it`, async () => {
        for (const pageSize of [2, 1000]) {
          assert.deepEqual(await keys(store, 'lst/', { after, pageSize }), SORTED.slice(from), `pages of ${pageSize}`);
        }
      });
    }

    test('resuming after each key in turn lists the rest', async () => {
      for (let i = 0; i < SORTED.length; i++) {
        assert.deepEqual(await keys(store, 'lst/', { after: SORTED[i]!, pageSize: 3 }), SORTED.slice(i + 1));
      }
    });

    for (const prefix of ESCAPING_PREFIXES) {
      test(`prefix ${JSON.stringify(prefix)} → InvalidKeyError`, async () => {
        await assert.rejects(keys(store, prefix), InvalidKeyError);
      });
    }

    test('an `after` that is not a valid key → InvalidKeyError', async () => {
      for (const after of ['../x', '', 'lst/', '/lst/a']) await assert.rejects(keys(store, 'lst/', { after }), InvalidKeyError);
    });

    const { putOutside, putBeside } = fx;
    if (putOutside !== undefined || putBeside !== undefined) {
      test('objects outside the root or prefix are never listed, nor those that only share its spelling', async () => {
        const tag = `out${randomBytes(4).toString('hex')}`;
        await putOutside?.(tag, Buffer.from('secret'));
        await putBeside?.(`-${tag}/x`, Buffer.from('secret'));
        await putBeside?.(tag, Buffer.from('secret'));
        const listed = await keys(store, '');
        assert.deepEqual(listed.filter((k) => k.includes(tag)), []);
        assert.ok(listed.includes(SORTED[0]!));
      });
    }

    describe('abort', () => {
      test('an already-aborted signal rejects at once with its reason', async () => {
        const reason = new Error('client went away');
        await assert.rejects(keys(store, 'lst/', { signal: AbortSignal.abort(reason) }), (err) => err === reason);
        await assert.rejects(keys(store, '../x', { signal: AbortSignal.abort(reason) }), (err) => err === reason);
      });

      test('aborting mid-listing stops it with the reason and releases descriptors', { timeout: ABORT_TIMEOUT_MS }, async () => {
        await keys(store, 'pg/', { pageSize: 2 });
        const fdsBefore = openFdCount();
        const ac = new AbortController();
        const reason = new Error('client went away');
        const iterator = store.list('pg/', { signal: ac.signal, pageSize: 2 })[Symbol.asyncIterator]();
        const first = await iterator.next();
        assert.equal(first.done, false);
        ac.abort(reason);
        await assert.rejects(iterator.next(), (err) => err === reason);
        assert.deepEqual(await iterator.next(), { done: true, value: undefined });
        assert.ok((await waitForFdCount(fdsBefore)) <= fdsBefore, 'descriptors back to their count before the listing');
      });

      test('aborting while a page is being fetched rejects with the reason and releases descriptors', { timeout: ABORT_TIMEOUT_MS }, async () => {
        await keys(store, 'pg/', { pageSize: 2 });
        const fdsBefore = openFdCount();
        for (let i = 0; i < 3; i++) {
          const ac = new AbortController();
          const reason = new Error('client went away');
          const pending = store.list('pg/', { signal: ac.signal, pageSize: 2 })[Symbol.asyncIterator]().next();
          ac.abort(reason);
          await assert.rejects(pending, (err) => err === reason);
        }
        assert.ok((await waitForFdCount(fdsBefore)) <= fdsBefore, 'descriptors back to their count before the listings');
      });

      test('leaving a listing early (break) releases descriptors', { timeout: ABORT_TIMEOUT_MS }, async () => {
        await keys(store, 'pg/', { pageSize: 2 });
        const fdsBefore = openFdCount();
        for (let i = 0; i < 5; i++) {
          for await (const object of store.list('', { signal: signal(), pageSize: 2 })) {
            assert.ok(object.key !== '');
            break;
          }
        }
        assert.ok((await waitForFdCount(fdsBefore)) <= fdsBefore, 'descriptors back to their count before the listings');
      });
    });

    const { wrongCredentials, untrustedTls } = fx;
    if (wrongCredentials !== undefined) {
      test('wrong credentials → AccessDeniedError', async () => {
        await assert.rejects(keys(await wrongCredentials(), 'lst/'), AccessDeniedError);
      });
    }
    if (untrustedTls !== undefined) {
      test('an untrusted TLS certificate → StoreUnavailableError', async () => {
        await assert.rejects(keys(await untrustedTls(), 'lst/'), StoreUnavailableError);
      });
    }
  });
}
