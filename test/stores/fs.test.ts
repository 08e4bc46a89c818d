import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmod, mkdir, mkdtemp, readFile, rename, rm, symlink, truncate, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { finished } from 'node:stream/promises';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import assert from 'node:assert/strict';
import {
  AccessDeniedError,
  InvalidKeyError,
  InvalidLocationError,
  InvalidRangeError,
  ObjectNotFoundError,
  StoreUnavailableError,
} from '../../src/stores/errors.ts';
import { FilesystemStore } from '../../src/stores/fs.ts';
import { SYNC_READ_MAX } from '../../src/stores/types.ts';
import type { ObjectStore } from '../../src/stores/types.ts';
import { collect, drain, firstChunk, openFdCount, sha256, waitForFdCount, bodyOf } from '../support/streams.ts';
import { NOBODY, readAsUnprivileged } from '../support/unprivileged.ts';
import { runStoreConformance } from './conformance.ts';

const execFileAsync = promisify(execFile);
const MiB = 1024 * 1024;

// A FileHandle the store forgot is closed by the garbage collector with a warning; that must never
// happen, and it would otherwise hide a leak from the descriptor counts below.
const closedByGc: string[] = [];
process.on('warning', (warning) => {
  if (/garbage collection/.test(warning.message)) closedByGc.push(warning.message);
});

function signal(): AbortSignal {
  return new AbortController().signal;
}

async function writeAt(root: string, key: string, bytes: Uint8Array): Promise<string> {
  const path = join(root, ...key.split('/'));
  await mkdir(dirname(path), { recursive: true });
  await writeFile(path, bytes);
  return path;
}

// Both ways of making metadata calls behave the same; `auto` picks one by filesystem type.
for (const metadata of ['sync', 'async'] as const) {
  runStoreConformance(`filesystem (metadata ${metadata})`, async () => {
    const base = await mkdtemp(join(tmpdir(), 'vds-fs-conformance-'));
    const root = join(base, 'root');
    await mkdir(root);
    const store = new FilesystemStore({ root, metadata });
    // A filesystem has no throttle, no server error and no connection to stall or reset: the fault it
    // shows is a file truncated while it is read (after the get has opened it and announced its size).
    let truncateTo: number | undefined;
    const faulty: ObjectStore = {
      stat: (key, opts) => store.stat(key, opts),
      list: (prefix, opts) => store.list(prefix, opts),
      async get(key, opts) {
        const got = await store.get(key, opts);
        if (truncateTo !== undefined) await truncate(join(root, ...key.split('/')), truncateTo);
        return got;
      },
    };
    return {
      store,
      put: async (key, bytes) => {
        await writeAt(root, key, bytes);
      },
      putOutside: (name, bytes) => writeFile(join(base, name), bytes),
      putBeside: async (suffix, bytes) => {
        await writeAt(base, `root${suffix}`, bytes);
      },
      cleanup: () => rm(base, { recursive: true, force: true }),
      faulty: {
        store: faulty,
        faults: {
          truncateAfter: (bytes) => (truncateTo = bytes),
          clear: () => (truncateTo = undefined),
        },
      },
    };
  });

  describe(`FilesystemStore (metadata ${metadata})`, () => {
    let base = '';
    let root = '';
    let outside = '';
    let store: FilesystemStore;

    before(async () => {
      base = await mkdtemp(join(tmpdir(), 'vds-fs-'));
      root = join(base, 'root');
      outside = join(base, 'outside');
      await mkdir(root);
      await mkdir(outside);
      store = new FilesystemStore({ root, metadata });
    });
    after(() => rm(base, { recursive: true, force: true }));

    describe('location', () => {
      test('a relative root is refused with InvalidLocationError', () => {
        assert.throws(() => new FilesystemStore({ root: 'relative/dir' }), InvalidLocationError);
      });

      test('a missing root → ObjectNotFoundError', async () => {
        const gone = new FilesystemStore({ root: join(base, 'does-not-exist'), metadata });
        await assert.rejects(gone.stat('a', { signal: signal() }), ObjectNotFoundError);
        await assert.rejects(async () => gone.get('a', { signal: signal() }), ObjectNotFoundError);
      });

      test('a root that is itself a symlink works', async () => {
        await writeAt(root, 'via-root-link', Buffer.from('hello'));
        await symlink(root, join(base, 'root-link'));
        const linked = new FilesystemStore({ root: join(base, 'root-link'), metadata });
        assert.equal((await linked.stat('via-root-link', { signal: signal() })).size, 5);
        assert.equal((await collect(bodyOf(await linked.get('via-root-link', { signal: signal() })))).toString(), 'hello');
      });
    });

    describe('reads on the spot', () => {
      test(metadata === 'sync' ? 'readSync reads a small object at once; the reader then closes at once and refuses reads' : 'no readSync on the thread pool: reads are promises', async () => {
        const bytes = randomBytes(SYNC_READ_MAX + 1);
        await writeAt(root, 'spot/file', bytes);
        const got = await store.get('spot/file', { signal: signal() });
        if (got.kind !== 'reader') throw new Error('the filesystem store offers a reader');
        const { reader } = got;
        if (metadata === 'async') {
          assert.equal(reader.readSync, undefined);
          const closing = reader.close();
          assert.ok(closing instanceof Promise);
          await closing;
          return;
        }
        const into = Buffer.alloc(100);
        assert.equal(reader.readSync!(into, 100, 1000), 100);
        assert.deepEqual(into, bytes.subarray(1000, 1100));
        assert.equal(reader.readSync!(into, 100, bytes.length), 0, 'at the end: 0');
        assert.throws(() => reader.readSync!(Buffer.alloc(SYNC_READ_MAX + 1), SYNC_READ_MAX + 1, 0), RangeError, 'never more than SYNC_READ_MAX on the event loop');
        const before = openFdCount();
        assert.equal(reader.close(), undefined, 'closed at once, not a promise');
        assert.equal(openFdCount(), before - 1, 'the descriptor is closed');
        assert.throws(() => reader.readSync!(into, 100, 0), (err: Error) => err instanceof StoreUnavailableError && /was closed/.test(err.message));
        await assert.rejects(reader.read(into, 100, 0), StoreUnavailableError);
        assert.equal(reader.close(), undefined, 'idempotent');
      });
    });

    describe('metadata', () => {
      test('etag is "<size hex>-<mtime ms hex>" and lastModified the mtime, from stat and get', async () => {
        const path = await writeAt(root, 'meta/file', Buffer.alloc(300, 1));
        const mtime = new Date(1_700_000_000_123);
        await utimes(path, mtime, mtime);
        const want = `"${(300).toString(16)}-${(1_700_000_000_123).toString(16)}"`;
        const info = await store.stat('meta/file', { signal: signal() });
        assert.equal(info.etag, want);
        assert.equal(info.lastModified?.getTime(), mtime.getTime());
        const got = await store.get('meta/file', { signal: signal() });
        assert.equal(got.etag, want);
        assert.equal(got.lastModified?.getTime(), mtime.getTime());
        bodyOf(got).destroy();
      });
    });

    describe('what is an object', () => {
      test('a directory → ObjectNotFoundError', async () => {
        await mkdir(join(root, 'adir', 'sub'), { recursive: true });
        for (const key of ['adir', 'adir/sub']) {
          await assert.rejects(store.stat(key, { signal: signal() }), ObjectNotFoundError);
          await assert.rejects(async () => store.get(key, { signal: signal() }), ObjectNotFoundError);
        }
      });

      test('a FIFO → ObjectNotFoundError, without blocking on open', { timeout: 10_000 }, async () => {
        await execFileAsync('mkfifo', [join(root, 'a-fifo')]);
        await assert.rejects(store.stat('a-fifo', { signal: signal() }), ObjectNotFoundError);
        await assert.rejects(async () => store.get('a-fifo', { signal: signal() }), ObjectNotFoundError);
      });

      test('a dangling symlink → ObjectNotFoundError', async () => {
        await symlink(join(root, 'nothing-here'), join(root, 'dangling'));
        await assert.rejects(store.stat('dangling', { signal: signal() }), ObjectNotFoundError);
        await assert.rejects(async () => store.get('dangling', { signal: signal() }), ObjectNotFoundError);
      });
    });

    describe('symlinks', () => {
      before(async () => {
        await writeFile(join(outside, 'secret'), 'outside the root');
        await writeAt(root, 'inside/target', Buffer.from('inside the root'));
        await symlink(join(outside, 'secret'), join(root, 'to-outside-file'));
        await symlink('../outside', join(root, 'to-outside-dir'));
        await symlink('to-outside-file', join(root, 'chain-to-outside'));
        await symlink('inside/target', join(root, 'to-inside-relative'));
        await symlink(join(root, 'inside', 'target'), join(root, 'to-inside-absolute'));
        await symlink('inside', join(root, 'to-inside-dir'));
        await symlink('.', join(root, 'self'));
      });

      for (const key of ['to-outside-file', 'to-outside-dir/secret', 'chain-to-outside']) {
        test(`${key} (leaves the root) → InvalidKeyError`, async () => {
          await assert.rejects(store.stat(key, { signal: signal() }), InvalidKeyError);
          await assert.rejects(async () => store.get(key, { signal: signal() }), InvalidKeyError);
        });
      }

      for (const key of ['to-inside-relative', 'to-inside-absolute', 'to-inside-dir/target', 'self/inside/target']) {
        test(`${key} (stays inside) is read`, async () => {
          assert.equal((await store.stat(key, { signal: signal() })).size, 'inside the root'.length);
          const got = await store.get(key, { signal: signal() });
          assert.equal((await collect(bodyOf(got))).toString(), 'inside the root');
        });
      }

      test('a symlink to the root itself is a directory → ObjectNotFoundError', async () => {
        await assert.rejects(store.stat('self', { signal: signal() }), ObjectNotFoundError);
        await assert.rejects(async () => store.get('self', { signal: signal() }), ObjectNotFoundError);
      });
    });

    describe('permissions', () => {
      // Root (CAP_DAC_OVERRIDE) reads a mode-000 file anyway, so there the EACCES path is checked in
      // a child process that drops to an unprivileged user (test/support/unprivileged.ts).
      test('an unreadable file → AccessDeniedError', { timeout: 30_000 }, async () => {
        const dir = await mkdtemp(join(tmpdir(), 'vds-fs-perm-'));
        try {
          await chmod(dir, 0o755);
          const bytes = Buffer.from('no peeking');
          const path = join(dir, 'locked');
          await writeFile(path, bytes);
          await chmod(path, 0o000);
          const local = new FilesystemStore({ root: dir, metadata });
          const privileged = await readFile(path).then(
            () => true,
            (err: NodeJS.ErrnoException) => {
              if (err.code === 'EACCES') return false;
              throw err;
            },
          );
          if (!privileged) {
            await assert.rejects(local.stat('locked', { signal: signal() }), AccessDeniedError);
            await assert.rejects(async () => local.get('locked', { signal: signal() }), AccessDeniedError);
            return;
          }
          // Privileged: the permission bits do not apply to us, and the store must not pretend they do.
          assert.equal((await local.stat('locked', { signal: signal() })).size, bytes.length);
          assert.deepEqual(await collect(bodyOf(await local.get('locked', { signal: signal() }))), bytes);

          const report = await readAsUnprivileged({ module: new URL('../../src/stores/fs.ts', import.meta.url), root: dir, key: 'locked', metadata });
          assert.deepEqual(report, { uid: NOBODY, stat: 'AccessDenied', get: 'AccessDenied' });
        } finally {
          await rm(dir, { recursive: true, force: true });
        }
      });
    });

    describe('reading', () => {
      test('a file truncated while it is read makes the body error, not end early', async () => {
        const size = 8 * MiB;
        const path = await writeAt(root, 'shrinking', randomBytes(size));
        const got = await store.get('shrinking', { signal: signal() });
        assert.equal(got.size, size);
        const first = await firstChunk(bodyOf(got));
        await truncate(path, 2 * MiB);
        const { bytes, error } = await drain(bodyOf(got));
        assert.ok(error instanceof StoreUnavailableError, `expected StoreUnavailableError, got ${String(error)}`);
        assert.match(error.message, /short read: got \d+ of 8388608 bytes/);
        assert.ok(first.length + bytes < size);
      });

      test('a range of a file truncated before it is read errors too', async () => {
        const path = await writeAt(root, 'shrinking-range', randomBytes(8 * MiB));
        const got = await store.get('shrinking-range', { signal: signal(), range: { start: MiB, end: 7 * MiB } });
        await truncate(path, 0);
        const { error } = await drain(bodyOf(got));
        assert.ok(error instanceof StoreUnavailableError, `expected StoreUnavailableError, got ${String(error)}`);
      });

      test('a file replaced after get still streams the bytes that were opened', async () => {
        const old = randomBytes(3 * MiB);
        const path = await writeAt(root, 'replaced', old);
        const got = await store.get('replaced', { signal: signal() });
        const next = join(root, 'replaced.next');
        await writeFile(next, Buffer.from('new and short'));
        await rename(next, path);
        assert.equal(got.size, old.length);
        assert.equal(sha256(await collect(bodyOf(got))), sha256(old));
        assert.equal((await store.stat('replaced', { signal: signal() })).size, 'new and short'.length);
      });
    });

    describe('descriptors', () => {
      test('failed gets and aborts at every point close every handle they opened', { timeout: 20_000 }, async () => {
        await mkdir(join(root, 'fd-dir'), { recursive: true });
        await writeAt(root, 'fd-file', randomBytes(2 * MiB));
        const fdsBefore = openFdCount();

        for (let i = 0; i < 10; i++) {
          await assert.rejects(async () => store.get('fd-dir', { signal: signal() }), ObjectNotFoundError);
          await assert.rejects(async () => store.get('fd-file', { signal: signal(), range: { start: 3 * MiB, end: 4 * MiB } }), InvalidRangeError);
          await assert.rejects(async () => store.get('fd-missing', { signal: signal() }), ObjectNotFoundError);
        }

        // Bodies are held until after the check so that garbage collection cannot close a leaked handle.
        const held: unknown[] = [];
        let rejected = 0;
        let destroyed = 0;
        for (let i = 0; i < 48; i++) {
          const ac = new AbortController();
          // In sync mode get() has opened and checked the file before it returns (no promise on the
          // way): the only abort that stops it is one made before the call.
          if (metadata === 'sync' && i % 12 === 0) ac.abort();
          const pending = (async () => store.get('fd-file', { signal: ac.signal }))();
          for (let j = 0; j < i % 12; j++) await new Promise((resolve) => setImmediate(resolve));
          // Every twelfth waits for get() to return, so some aborts hit the body however slow the
          // thread pool is (under load, eleven turns did not always reach it in async mode).
          if (i % 12 === 11) await pending.catch(() => undefined);
          ac.abort();
          const outcome = await pending.then(
            (got) => got,
            (err: unknown) => err,
          );
          if (outcome instanceof Error) {
            assert.equal(outcome.name, 'AbortError');
            rejected++;
          } else {
            const got = outcome as Awaited<typeof pending>;
            held.push(got);
            await finished(bodyOf(got)).catch(() => undefined);
            assert.equal(bodyOf(got).destroyed, true);
            destroyed++;
          }
        }
        assert.ok(rejected > 0, 'some aborts hit get() before it returned');
        assert.ok(destroyed > 0, 'some aborts hit the body');
        assert.ok((await waitForFdCount(fdsBefore)) <= fdsBefore, 'no descriptor left open');
        assert.equal(held.length, destroyed);
      });
    });
  });
}

describe('FilesystemStore metadata: auto', () => {
  test('a local filesystem gets sync metadata calls, anything else (procfs here) async', async () => {
    const { stdout } = await execFileAsync('stat', ['-f', '-c', '%T', tmpdir()]);
    const local = ['ext2/ext3', 'xfs', 'btrfs', 'tmpfs', 'ramfs', 'overlayfs', 'zfs', 'f2fs'].includes(stdout.trim());
    assert.equal(await new FilesystemStore({ root: tmpdir() }).metadataIsSync(), local, `tmpdir is on ${stdout.trim()}`);
    assert.equal(await new FilesystemStore({ root: '/proc' }).metadataIsSync(), false);
  });

  test('a root that does not exist yet is async until it does, then decided', async () => {
    const base = await mkdtemp(join(tmpdir(), 'vds-fs-auto-'));
    try {
      const store = new FilesystemStore({ root: join(base, 'later') });
      assert.equal(await store.metadataIsSync(), false);
      await mkdir(join(base, 'later'));
      assert.equal(await store.metadataIsSync(), await new FilesystemStore({ root: base }).metadataIsSync());
    } finally {
      await rm(base, { recursive: true, force: true });
    }
  });
});

test('no file handle was left for garbage collection to close', () => {
  assert.deepEqual(closedByGc, []);
});
