import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { InvalidKeyError, StoreUnavailableError } from '../../src/stores/errors.ts';
import { compareKeys, listPages } from '../../src/stores/listing.ts';
import type { ListPage, PageRequest } from '../../src/stores/listing.ts';
import type { ListOptions } from '../../src/stores/types.ts';

function signal(): AbortSignal {
  return new AbortController().signal;
}

/** A provider that answers each request with the next of `pages`, recording the requests. */
function source(pages: ListPage[], root = 'loc/pre') {
  const requests: Omit<PageRequest, 'signal'>[] = [];
  return {
    requests,
    src: {
      location: 'location test',
      root,
      async fetchPage({ signal: _s, ...request }: PageRequest): Promise<ListPage> {
        requests.push(request);
        const page = pages[requests.length - 1];
        assert.ok(page, 'no more pages than the provider has');
        return page;
      },
    },
  };
}

function page(names: string[], next?: string): ListPage {
  return { objects: names.map((name) => ({ name, info: { size: name.length } })), next };
}

async function keys(src: ReturnType<typeof source>['src'], prefix: string, opts: Partial<ListOptions> = {}): Promise<string[]> {
  const out: string[] = [];
  for await (const o of listPages(src, prefix, { signal: signal(), ...opts })) out.push(o.key);
  return out;
}

describe('compareKeys', () => {
  test('orders by code point (UTF-8 bytes), not UTF-16 code units', () => {
    const pairs: [string, string][] = [
      ['a', 'b'],
      ['a', 'a/'],
      ['a-b', 'a/x'],
      ['a/x', 'a0'],
      ['ü', '日'],
      // U+FF01 is one UTF-16 unit above the surrogates of U+1F600, but the lower code point.
      ['\uff01', '😀'],
      ['\ue000', '\u{10000}'],
      ['😀', '😁'],
    ];
    for (const [lo, hi] of pairs) {
      assert.ok(compareKeys(lo, hi) < 0, `${lo} < ${hi}`);
      assert.ok(compareKeys(hi, lo) > 0, `${hi} > ${lo}`);
      assert.equal(Math.sign(compareKeys(lo, hi)), Buffer.compare(Buffer.from(lo), Buffer.from(hi)));
    }
    assert.equal(compareKeys('same', 'same'), 0);
  });
});

describe('listPages', () => {
  test('asks page after page with the token, under <root>/<prefix>, and strips the root', async () => {
    const { src, requests } = source([page(['loc/pre/a/1', 'loc/pre/a/2'], 't1'), page(['loc/pre/a/3'])]);
    assert.deepEqual(await keys(src, 'a/', { pageSize: 2 }), ['a/1', 'a/2', 'a/3']);
    assert.deepEqual(requests, [
      { namePrefix: 'loc/pre/a/', startAfter: undefined, token: undefined, pageSize: 2 },
      { namePrefix: 'loc/pre/a/', startAfter: undefined, token: 't1', pageSize: 2 },
    ]);
  });

  test('the next page is asked for only when the caller reaches it', async () => {
    const { src, requests } = source([page(['loc/pre/1'], 't1'), page(['loc/pre/2'])]);
    const it = listPages(src, '', { signal: signal() });
    assert.equal((await it.next()).value?.key, '1');
    assert.equal(requests.length, 1);
    await it.return(undefined);
    assert.equal(requests.length, 1);
  });

  test('`after` goes to the first request only, and is applied to every name (inclusive providers)', async () => {
    const { src, requests } = source([page(['loc/pre/b', 'loc/pre/c'], 't'), page(['loc/pre/d'])]);
    assert.deepEqual(await keys(src, '', { after: 'b' }), ['c', 'd']);
    assert.equal(requests[0]?.startAfter, 'loc/pre/b');
    assert.equal(requests[1]?.startAfter, undefined);
  });

  test('names get would refuse are left out', async () => {
    const { src } = source([page(['loc/pre/a//b', 'loc/pre/b/', 'loc/pre/c', 'loc/pre/c/../d', 'loc/pre/e\\f', 'loc/pre/g'])]);
    assert.deepEqual(await keys(src, ''), ['c', 'g']);
  });

  test('a bucket root lists whole names', async () => {
    const { src, requests } = source([page(['x/1', 'y'])], '');
    assert.deepEqual(await keys(src, ''), ['x/1', 'y']);
    assert.equal(requests[0]?.namePrefix, '');
  });

  const broken: [string, ListPage[]][] = [
    ['a name out of order', [page(['loc/pre/b', 'loc/pre/a'])]],
    ['a name repeated across pages', [page(['loc/pre/a'], 't'), page(['loc/pre/a'])]],
    ['a name outside the prefix asked', [page(['loc/pre-other/a'])]],
    ['the same page token twice', [page(['loc/pre/a'], 't'), page(['loc/pre/b'], 't')]],
  ];
  for (const [name, pages] of broken) {
    test(`${name} → StoreUnavailableError`, async () => {
      await assert.rejects(keys(source(pages).src, ''), StoreUnavailableError);
    });
  }

  test('a page size outside 1-1000 is a programming error', async () => {
    for (const pageSize of [0, 1001, 1.5]) await assert.rejects(keys(source([page([])]).src, '', { pageSize }), RangeError);
  });

  test('bad prefixes and resume points are refused before any request', async () => {
    const { src, requests } = source([]);
    for (const prefix of ['../', '/', 'a/../..', 'a//']) await assert.rejects(keys(src, prefix), InvalidKeyError);
    await assert.rejects(keys(src, '', { after: '../a' }), InvalidKeyError);
    assert.equal(requests.length, 0);
  });
});
