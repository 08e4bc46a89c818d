/**
 * The ObjectStore acceptance suite: every adapter runs it once, through a fixture that seeds objects
 * its own way. Capability cases (wrong credentials, untrusted TLS, an object outside the root) are
 * registered only when the fixture supplies what they need, so a missing capability shows up as
 * fewer tests, never as a skipped test counted as passed.
 */
import { randomBytes } from 'node:crypto';
import { finished } from 'node:stream/promises';
import { after, before, beforeEach, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import {
  AccessDeniedError,
  InvalidKeyError,
  InvalidRangeError,
  ObjectNotFoundError,
  StoreTimeoutError,
  StoreUnavailableError,
  ThrottledError,
} from '../../src/stores/errors.ts';
import { RETRIES } from '../../src/stores/retry.ts';
import type { ByteRange, ObjectBody, ObjectInfo, ObjectStore } from '../../src/stores/types.ts';
import type { Faults } from '../support/fault-proxy.ts';
import { bodyOf, collect, drain, firstChunk, openFdCount, sha256, waitForFdCount } from '../support/streams.ts';
import { registerListCases } from './conformance-list.ts';
import type { ListFixture } from './conformance-list.ts';

export interface StoreFixture extends ListFixture {
  /** The store under test; it reads what `put` writes. */
  store: ObjectStore;
  /** Seeds one object at a store-relative key (creating or replacing it). */
  put(key: string, bytes: Uint8Array): Promise<void>;
  /** Removes everything the fixture created; called once, after the suite. */
  cleanup(): Promise<void>;
  /**
   * Seeds an object named `name` just outside the store's root or prefix (its sibling), so the
   * escape cases can show that `../name` is refused rather than read.
   */
  putOutside?: (name: string, bytes: Uint8Array) => Promise<void>;
  /** A store over the same objects whose credentials the service refuses: reads → AccessDeniedError. */
  wrongCredentials?: () => ObjectStore | Promise<ObjectStore>;
  /** A store over the same objects whose TLS certificate it does not trust: reads → StoreUnavailableError. */
  untrustedTls?: () => ObjectStore | Promise<ObjectStore>;
  /** A store over the same objects with faults to switch on: through the fault proxy for network stores. */
  faulty?: FaultyStore;
}

/**
 * The faults a store can be put through. Each case is registered only for the faults supplied; a
 * fixture says in a comment why it lacks one.
 */
export interface FaultyStore {
  store: ObjectStore;
  faults: Partial<Omit<Faults, 'clear' | 'requests'>> & Pick<Faults, 'clear'> & { readonly requests?: number };
  /**
   * The store's idle timeout (socketIdleMs), for stores that have one: a body kept waiting by its
   * reader this long several times over must still arrive whole.
   */
  idleMs?: number;
}

const MiB = 1024 * 1024;
// A body that ignores its abort would otherwise hang the test until the runner's own timeout.
const ABORT_TIMEOUT_MS = 10_000;

/** Keys that must be refused with InvalidKeyError before any I/O. */
export const ESCAPING_KEYS: readonly string[] = [
  '',
  '.',
  '..',
  '../x',
  'a/../../x',
  'a/..',
  './a',
  'a/./b',
  'a//b',
  'a/',
  '/etc/passwd',
  '/',
  'a\u0000b',
  'a\\b',
  '..\\x',
  'a\nb',
  'a\u007fb',
  'a\u0085b',
  'a\ud800b',
  'x'.repeat(1025),
];

/** Keys that look odd but are legal object names. */
export const ODD_LEGAL_KEYS: readonly string[] = [
  'backups/n/n-logs.gz',
  'restores/r/restore-r-results.gz',
  'a.b.c',
  '..a',
  'a..',
  '...',
  '.hidden',
  'with space',
  'ünïcödé/日本語',
  'percent%2Fencoded',
  'sym:bols@+=,;~!$&()',
  '-leading-dash',
];

const ETAG = /^"[\x21\x23-\x7e\x80-\xff]*"$/;

function signal(): AbortSignal {
  return new AbortController().signal;
}

function describeKey(key: string): string {
  return JSON.stringify(key.length > 40 ? `${key.slice(0, 40)}…(${key.length})` : key);
}

function assertInfo(info: ObjectInfo, size: number): void {
  assert.equal(info.size, size);
  if (info.etag !== undefined) assert.match(info.etag, ETAG);
  if (info.lastModified !== undefined) {
    assert.ok(info.lastModified instanceof Date, 'lastModified is a Date');
    assert.ok(!Number.isNaN(info.lastModified.getTime()), 'lastModified is a valid date');
  }
}

/**
 * Every byte of a body, the way its kind offers them: a stream read to its end, or a positional
 * reader read over the range (the stream of a reader body is read by the abort and fault cases).
 */
async function readAll(result: ObjectBody): Promise<Buffer> {
  if (result.kind === 'stream') return collect(result.body);
  const { reader } = result;
  const start = result.range?.start ?? 0;
  const length = result.range === undefined ? result.size : result.range.end - result.range.start + 1;
  const out = Buffer.alloc(length);
  try {
    for (let got = 0; got < length; ) {
      const n = await reader.read(out.subarray(got), Math.min(64 * 1024, length - got), start + got);
      if (n === 0) throw new Error(`the reader ended at ${got} of ${length} bytes`);
      got += n;
    }
  } finally {
    await reader.close();
  }
  return out;
}

/** Registers the conformance cases for one adapter; `fixture` runs once, before the cases. */
export function runStoreConformance(name: string, fixture: () => Promise<StoreFixture>): void {
  describe(`ObjectStore conformance: ${name}`, async () => {
    const fx = await fixture();
    const { store } = fx;
    after(() => fx.cleanup());
    registerListCases(fx);

    const empty = Buffer.alloc(0);
    const one = Buffer.from([0x5a]);
    const small = randomBytes(3000);
    const large = randomBytes(5 * MiB + 7);
    const K = {
      empty: 'conformance/empty',
      one: 'conformance/one',
      small: 'conformance/small.bin',
      large: 'conformance/large.bin',
      dirChild: 'conformance/dirlike/child',
      dir: 'conformance/dirlike',
    };

    before(async () => {
      await fx.put(K.empty, empty);
      await fx.put(K.one, one);
      await fx.put(K.small, small);
      await fx.put(K.large, large);
      await fx.put(K.dirChild, one);
    });

    describe('missing objects', () => {
      for (const key of ['conformance/missing', 'conformance/nope/deeper/x', `${K.one}/child`, K.dir]) {
        test(`stat and get ${describeKey(key)} → ObjectNotFoundError`, async () => {
          await assert.rejects(store.stat(key, { signal: signal() }), ObjectNotFoundError);
          await assert.rejects(async () => store.get(key, { signal: signal() }), ObjectNotFoundError);
        });
      }
    });

    describe('whole objects', () => {
      test('empty object: size 0, zero bytes, no range', async () => {
        assertInfo(await store.stat(K.empty, { signal: signal() }), 0);
        const got = await store.get(K.empty, { signal: signal() });
        assertInfo(got, 0);
        assert.equal(got.range, undefined);
        assert.equal((await readAll(got)).length, 0);
      });

      test('1-byte object', async () => {
        assertInfo(await store.stat(K.one, { signal: signal() }), 1);
        const got = await store.get(K.one, { signal: signal() });
        assertInfo(got, 1);
        assert.deepEqual(await readAll(got), one);
      });

      test('multi-MiB object arrives intact (SHA-256), stat and get agree', async () => {
        const info = await store.stat(K.large, { signal: signal() });
        assertInfo(info, large.length);
        const got = await store.get(K.large, { signal: signal() });
        assertInfo(got, large.length);
        assert.equal(got.range, undefined);
        assert.equal(got.etag, info.etag);
        assert.equal(got.lastModified?.getTime(), info.lastModified?.getTime());
        const bytes = await readAll(got);
        assert.equal(bytes.length, large.length);
        assert.equal(sha256(bytes), sha256(large));
      });

      test('concurrent reads of one object each get every byte', async () => {
        const results = await Promise.all(
          [0, 1, 2, 3].map(async () => sha256(await readAll(await store.get(K.large, { signal: signal() })))),
        );
        assert.deepEqual(results, Array(4).fill(sha256(large)));
      });

      test('reads to the end and stats release their descriptors', { timeout: ABORT_TIMEOUT_MS }, async () => {
        // A first read lets a network store open the pooled connections it keeps; later reads must
        // reuse or close them, not add to them.
        await readAll(await store.get(K.small, { signal: signal() }));
        const fdsBefore = openFdCount();
        // Held until after the check so that garbage collection cannot close what the store leaked.
        const held: ObjectBody[] = [];
        for (let i = 0; i < 5; i++) {
          for (const [key, range] of [[K.large], [K.small, { start: 1, end: 10 }], [K.empty]] as const) {
            const got = await store.get(key, { signal: signal(), range });
            held.push(got);
            await readAll(got);
          }
          await store.stat(K.one, { signal: signal() });
        }
        assert.ok((await waitForFdCount(fdsBefore)) <= fdsBefore, 'descriptors back to their count before the reads');
        assert.equal(held.length, 15);
      });

      test('replacing an object changes its size and etag', async () => {
        const key = 'conformance/replaced';
        await fx.put(key, Buffer.from('first version'));
        const first = await store.stat(key, { signal: signal() });
        await fx.put(key, Buffer.from('second, longer version'));
        const second = await store.stat(key, { signal: signal() });
        assert.equal(second.size, 'second, longer version'.length);
        assert.notEqual(second.size, first.size);
        if (first.etag !== undefined || second.etag !== undefined) assert.notEqual(second.etag, first.etag);
        assert.deepEqual(await readAll(await store.get(key, { signal: signal() })), Buffer.from('second, longer version'));
      });
    });

    describe('ranges', () => {
      const S = small.length;
      const cases: { name: string; range: ByteRange; want: ByteRange }[] = [
        { name: 'a-b inside the object', range: { start: 10, end: 19 }, want: { start: 10, end: 19 } },
        { name: 'first byte only', range: { start: 0, end: 0 }, want: { start: 0, end: 0 } },
        { name: 'last byte only', range: { start: S - 1, end: S - 1 }, want: { start: S - 1, end: S - 1 } },
        { name: 'a- as a..size-1', range: { start: 100, end: S - 1 }, want: { start: 100, end: S - 1 } },
        {
          name: 'a- with an end far beyond the object is clamped',
          range: { start: 100, end: Number.MAX_SAFE_INTEGER },
          want: { start: 100, end: S - 1 },
        },
        { name: 'end one past the last byte is clamped', range: { start: S - 10, end: S }, want: { start: S - 10, end: S - 1 } },
        { name: 'the whole object as a range', range: { start: 0, end: S - 1 }, want: { start: 0, end: S - 1 } },
      ];
      for (const c of cases) {
        test(`${c.name}: ${c.range.start}-${c.range.end} of ${S}`, async () => {
          const got = await store.get(K.small, { signal: signal(), range: c.range });
          assertInfo(got, S);
          assert.deepEqual(got.range, c.want);
          assert.deepEqual(await readAll(got), small.subarray(c.want.start, c.want.end + 1));
        });
      }

      test('suffix -n from stat: size-n..size-1', async () => {
        const n = 500;
        const { size } = await store.stat(K.small, { signal: signal() });
        const got = await store.get(K.small, { signal: signal(), range: { start: size - n, end: size - 1 } });
        assert.equal(got.size, S);
        assert.deepEqual(got.range, { start: S - n, end: S - 1 });
        assert.deepEqual(await readAll(got), small.subarray(S - n));
      });

      test('range across MiB boundaries of a large object', async () => {
        const range = { start: MiB - 5, end: 3 * MiB + 7 };
        const got = await store.get(K.large, { signal: signal(), range });
        assert.equal(got.size, large.length);
        assert.deepEqual(got.range, range);
        const bytes = await readAll(got);
        assert.equal(bytes.length, range.end - range.start + 1);
        assert.equal(sha256(bytes), sha256(large.subarray(range.start, range.end + 1)));
      });

      test('tail of a large object with the end clamped', async () => {
        const L = large.length;
        const got = await store.get(K.large, { signal: signal(), range: { start: L - 3, end: L + 1000 } });
        assert.deepEqual(got.range, { start: L - 3, end: L - 1 });
        assert.deepEqual(await readAll(got), large.subarray(L - 3));
      });

      const invalid: { name: string; key: string; range: ByteRange }[] = [
        { name: 'start at the size', key: K.small, range: { start: S, end: S + 10 } },
        { name: 'start far beyond the end', key: K.small, range: { start: S + 1000, end: S + 2000 } },
        { name: 'any range of an empty object', key: K.empty, range: { start: 0, end: 0 } },
        { name: 'start after end', key: K.small, range: { start: 5, end: 4 } },
        { name: 'negative start', key: K.small, range: { start: -1, end: 4 } },
        { name: 'fractional offsets', key: K.small, range: { start: 1.5, end: 4 } },
      ];
      for (const c of invalid) {
        test(`${c.name} → InvalidRangeError`, async () => {
          await assert.rejects(async () => store.get(c.key, { signal: signal(), range: c.range }), InvalidRangeError);
        });
      }
    });

    describe('abort', () => {
      test('an already-aborted signal rejects at once, before touching the key', async () => {
        const aborted = AbortSignal.abort();
        const t0 = performance.now();
        for (const key of [K.large, 'conformance/missing', '../escape']) {
          await assert.rejects(store.stat(key, { signal: aborted }), { name: 'AbortError' });
          await assert.rejects(async () => store.get(key, { signal: aborted }), { name: 'AbortError' });
        }
        assert.ok(performance.now() - t0 < 1000, 'rejected without waiting on the store');
      });

      test("an already-aborted signal's own reason is what rejects", async () => {
        const reason = new Error('client went away');
        const aborted = AbortSignal.abort(reason);
        await assert.rejects(store.stat(K.one, { signal: aborted }), (err) => err === reason);
        await assert.rejects(async () => store.get(K.one, { signal: aborted }), (err) => err === reason);
      });

      test('abort mid-stream destroys the body and releases its descriptors', { timeout: ABORT_TIMEOUT_MS }, async () => {
        const fdsBefore = openFdCount();
        const ac = new AbortController();
        const got = await store.get(K.large, { signal: ac.signal });
        const chunk = await firstChunk(bodyOf(got));
        assert.ok(chunk.length > 0 && chunk.length < large.length, 'stopped part-way');
        ac.abort();
        const outcome = await finished(bodyOf(got)).then(
          () => 'ended',
          (err: unknown) => err,
        );
        assert.ok(outcome instanceof Error, `body did not end quietly (got ${String(outcome)})`);
        assert.ok((await waitForFdCount(fdsBefore)) <= fdsBefore, 'descriptors back to their count before the get');
        // Checked last, which also keeps `got` reachable: garbage collection must not be what closed it.
        assert.equal(bodyOf(got).readableEnded, false);
        assert.equal(bodyOf(got).destroyed, true);
      });

      test('abort before reading releases the descriptors', { timeout: ABORT_TIMEOUT_MS }, async () => {
        const fdsBefore = openFdCount();
        const ac = new AbortController();
        const got = await store.get(K.large, { signal: ac.signal });
        const ended = finished(bodyOf(got)).then(
          () => 'ended',
          (err: unknown) => err,
        );
        ac.abort();
        assert.ok((await ended) instanceof Error);
        assert.ok((await waitForFdCount(fdsBefore)) <= fdsBefore, 'descriptors back to their count before the get');
        assert.equal(bodyOf(got).destroyed, true);
      });

      test('destroying the body without aborting releases the descriptors', { timeout: ABORT_TIMEOUT_MS }, async () => {
        const fdsBefore = openFdCount();
        const got = await store.get(K.large, { signal: signal(), range: { start: 1, end: 4 * MiB } });
        await firstChunk(bodyOf(got));
        bodyOf(got).destroy();
        assert.ok((await waitForFdCount(fdsBefore)) <= fdsBefore, 'descriptors back to their count before the get');
        assert.equal(bodyOf(got).destroyed, true);
      });
    });

    describe('keys', () => {
      for (const key of ESCAPING_KEYS) {
        test(`${describeKey(key)} → InvalidKeyError`, async () => {
          await assert.rejects(store.stat(key, { signal: signal() }), InvalidKeyError);
          await assert.rejects(async () => store.get(key, { signal: signal() }), InvalidKeyError);
        });
      }

      for (const key of ODD_LEGAL_KEYS) {
        test(`odd but legal: ${describeKey(key)}`, async () => {
          const bytes = Buffer.from(`object at ${key}`);
          await fx.put(key, bytes);
          assertInfo(await store.stat(key, { signal: signal() }), bytes.length);
          assert.deepEqual(await readAll(await store.get(key, { signal: signal() })), bytes);
        });
      }

      const { putOutside } = fx;
      if (putOutside !== undefined) {
        test('an object just outside the root or prefix cannot be reached', async () => {
          const name = `outside-${randomBytes(4).toString('hex')}`;
          await putOutside(name, Buffer.from('secret'));
          for (const key of [`../${name}`, `conformance/../../${name}`, `./../${name}`]) {
            await assert.rejects(store.stat(key, { signal: signal() }), InvalidKeyError);
            await assert.rejects(async () => store.get(key, { signal: signal() }), InvalidKeyError);
          }
          // And it is really outside: the store does not see it under its bare name either.
          await assert.rejects(store.stat(name, { signal: signal() }), ObjectNotFoundError);
        });
      }
    });

    const { wrongCredentials, untrustedTls } = fx;
    if (wrongCredentials !== undefined) {
      test('wrong credentials → AccessDeniedError', async () => {
        const denied = await wrongCredentials();
        await assert.rejects(denied.stat(K.one, { signal: signal() }), AccessDeniedError);
        await assert.rejects(async () => denied.get(K.one, { signal: signal() }), AccessDeniedError);
      });
    }
    if (untrustedTls !== undefined) {
      test('an untrusted TLS certificate → StoreUnavailableError', async () => {
        const untrusting = await untrustedTls();
        await assert.rejects(untrusting.stat(K.one, { signal: signal() }), StoreUnavailableError);
        await assert.rejects(async () => untrusting.get(K.one, { signal: signal() }), StoreUnavailableError);
      });
    }

    const { faulty } = fx;
    if (faulty !== undefined) describeFaults(faulty, (key, bytes) => fx.put(key, bytes));
  });
}

/** The fault cases: every store fails the same way, by test (see FaultyStore). */
function describeFaults({ store, faults, idleMs }: FaultyStore, put: StoreFixture['put']): void {
  describe('faults', () => {
    const key = 'conformance/faults.bin';
    // Larger than the buffers between the store's socket and its body, so a paused reader holds the socket.
    const bytes = randomBytes(256 * 1024);
    const cut = 1000;
    const expectRequests = (n: number): void => {
      if (faults.requests !== undefined) assert.equal(faults.requests, n, 'requests that reached the store');
    };

    beforeEach(async () => {
      faults.clear();
      // Rewritten each time: the filesystem's truncation case really truncates it.
      await put(key, bytes);
    });
    after(() => faults.clear());

    if (faults.throttle !== undefined) {
      test('a throttle → ThrottledError with its Retry-After, at once, never retried into silence', async () => {
        faults.throttle?.(7);
        for (const call of [async () => store.stat(key, { signal: signal() }), async () => store.get(key, { signal: signal() })]) {
          await assert.rejects(call(), (err) => err instanceof ThrottledError && err.retryAfterSeconds === 7);
        }
        expectRequests(2);
      });
    }
    if (faults.serverErrors !== undefined) {
      test(`a 500 before the body is retried: one is absorbed, ${RETRIES + 1} in a row → StoreUnavailableError`, async () => {
        faults.serverErrors?.(1);
        assert.equal(sha256(await readAll(await store.get(key, { signal: signal() }))), sha256(bytes));
        expectRequests(2);
        faults.clear();
        faults.serverErrors?.(RETRIES + 1);
        await assert.rejects(async () => store.get(key, { signal: signal() }), StoreUnavailableError);
        expectRequests(RETRIES + 1);
      });
    }
    if (faults.stallAfter !== undefined) {
      test('a body that stalls mid-way → the body errors with StoreTimeoutError', async () => {
        faults.stallAfter?.(cut);
        const got = await store.get(key, { signal: signal() });
        const { bytes: n, error } = await drain(bodyOf(got));
        assert.ok(error instanceof StoreTimeoutError, `expected StoreTimeoutError, got ${String(error)}`);
        assert.equal(n, cut);
      });
    }
    for (const [name, fault] of [
      ['truncated (the connection ends early)', 'truncateAfter'],
      ['reset', 'resetAfter'],
    ] as const) {
      if (faults[fault] === undefined) continue;
      test(`a body ${name} mid-way → the body errors with StoreUnavailableError, never ends quietly`, async () => {
        faults[fault]?.(cut);
        const got = await store.get(key, { signal: signal() });
        assert.equal(got.size, bytes.length);
        const { bytes: n, error } = await drain(bodyOf(got));
        assert.ok(error instanceof StoreUnavailableError, `expected StoreUnavailableError, got ${String(error)}`);
        assert.ok(n < bytes.length, `got ${n} bytes`);
      });
    }
    if (idleMs !== undefined) {
      test('a reader that pauses longer than the idle timeout is not the store stalling: the body arrives whole', async () => {
        const got = await store.get(key, { signal: signal() });
        const body = bodyOf(got);
        const first = await firstChunk(body);
        await new Promise((resolve) => setTimeout(resolve, 3 * idleMs));
        assert.equal(sha256(Buffer.concat([first, await collect(body)])), sha256(bytes));
      });
    }
  });
}
