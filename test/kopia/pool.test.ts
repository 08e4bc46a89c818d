/**
 * The repository pool and the reader's caches, on copies of the committed real-kopia repositories
 * through the real FilesystemStore (wrapped to count what reaches the store), and, where the
 * repository must change under a pool that has it open, with the real kopia CLI: a new snapshot, and
 * full maintenance that rewrites every pack and deletes the old ones (what Velero's maintenance does).
 * Time is an injected clock: nothing here waits for real time to pass.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { cp, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import { ByteLRU } from '../../src/kopia/byte-lru.ts';
import { KopiaNotFoundError, KopiaTimeoutError, WrongPasswordError } from '../../src/kopia/errors.ts';
import { RepositoryPool } from '../../src/kopia/pool.ts';
import type { RepositoryPoolOptions } from '../../src/kopia/pool.ts';
import type { Repository } from '../../src/kopia/repository.ts';
import { StoreUnavailableError } from '../../src/stores/errors.ts';
import type { GetOptions, ObjectBody, ObjectStore } from '../../src/stores/types.ts';
import { missingTools, toolPath } from '../support/real-cluster.ts';
import { PASSWORD, fsStore, loadManifest, readAll, recording, repoDir, signal } from './fixture-support.ts';
import type { Manifest } from './fixture-support.ts';

const FIXTURE = 'velero-aes256gcm';
const FORMAT_BLOB = 'kopia.repository.f';
const run = promisify(execFile);

let work: string;
let m: Manifest;
before(async () => {
  work = await mkdtemp(join(tmpdir(), 'vds-kopia-pool-'));
  m = await loadManifest(FIXTURE);
});
after(() => rm(work, { recursive: true, force: true }));

let copies = 0;
/** A private copy of a fixture repository (kopia may rewrite it). */
async function copy(name = FIXTURE): Promise<string> {
  const dir = join(work, `repo-${copies++}`);
  await cp(repoDir(name), dir, { recursive: true });
  return dir;
}

/** A manual clock. */
function clock(): { now: () => number; advance: (ms: number) => void } {
  let t = 1_000_000;
  return { now: () => t, advance: (ms) => (t += ms) };
}

function pool(opts: RepositoryPoolOptions = {}): RepositoryPool {
  return new RepositoryPool(opts);
}

const open = (p: RepositoryPool, store: ObjectStore, extra: { password?: string; signal?: AbortSignal } = {}): Promise<Repository> =>
  p.open(store, { prefix: '', naming: 'filesystem', password: extra.password ?? PASSWORD, signal: extra.signal ?? signal() });

/** Index loads seen at the store: each lists the uncompacted index blobs once. */
const indexLoads = (lists: string[]): number => lists.filter((l) => l === 'xn').length;

/**
 * A store whose gets of `key` wait for `release()`, or reject with their signal's reason when it
 * aborts; `signals` holds the signals those gets were given (the open's own).
 */
function gated(store: ObjectStore, key: string): { store: ObjectStore; signals: AbortSignal[]; release: () => void; reached: () => Promise<void> } {
  const signals: AbortSignal[] = [];
  let release!: () => void;
  const gate = new Promise<void>((resolve) => (release = resolve));
  let arrived!: () => void;
  const arrival = new Promise<void>((resolve) => (arrived = resolve));
  return {
    signals,
    release,
    /** Resolves once the gated key has been asked for (however many reads come before it). */
    reached: () => arrival,
    store: {
      stat: (k, o) => store.stat(k, o),
      list: (p, o) => store.list(p, o),
      get: async (k: string, o: GetOptions): Promise<ObjectBody> => {
        if (k === key) {
          signals.push(o.signal);
          arrived();
          await new Promise<void>((resolve, reject) => {
            // eslint-disable-next-line @typescript-eslint/prefer-promise-reject-errors -- the reason as a store gives it
            o.signal.addEventListener('abort', () => reject(o.signal.reason), { once: true });
            void gate.then(resolve);
          });
        }
        return store.get(k, o);
      },
    },
  };
}

const sha256 = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

describe('RepositoryPool: sharing and keys', () => {
  test('concurrent and later opens of one (store, prefix, password) share one repository, opened once', async () => {
    const r = recording(fsStore(repoDir(FIXTURE)));
    const p = pool();
    const [a, b] = await Promise.all([open(p, r.store), open(p, r.store)]);
    const c = await open(p, r.store);
    assert.equal(a, b);
    assert.equal(a, c);
    assert.equal(r.gets.filter((g) => g.key === FORMAT_BLOB).length, 1, 'the format blob is read once');
    assert.equal(indexLoads(r.lists), 1);
  });

  test('two store instances over the same files never share a repository (the store object is the key, not where it points)', async () => {
    const p = pool();
    const a = await open(p, fsStore(repoDir(FIXTURE)));
    const b = await open(p, fsStore(repoDir(FIXTURE)));
    assert.notEqual(a, b);
    assert.equal(p.size, 2);
  });

  test('a wrong password is refused even while the repository is open with the right one, and never echoed', async () => {
    const store = fsStore(repoDir(FIXTURE));
    const p = pool();
    await open(p, store);
    await assert.rejects(open(p, store, { password: 'not-the-password' }), (err: unknown) => {
      assert.ok(err instanceof WrongPasswordError);
      assert.ok(!err.message.includes('not-the-password'));
      return true;
    });
    assert.equal(p.size, 1, 'the failed open is not kept');
  });

  test('a different prefix is a different repository (here: none there)', async () => {
    const store = fsStore(repoDir(FIXTURE));
    const p = pool();
    await open(p, store);
    await assert.rejects(p.open(store, { prefix: 'other/', naming: 'filesystem', password: PASSWORD, signal: signal() }), KopiaNotFoundError);
  });

  test('a failed open is not kept: the next open tries again and succeeds', async () => {
    const r = recording(fsStore(repoDir(FIXTURE)));
    let failures = 1;
    const flaky: ObjectStore = {
      ...r.store,
      get: (k, o) => (k === FORMAT_BLOB && failures-- > 0 ? Promise.reject(new StoreUnavailableError('store down')) : r.store.get(k, o)),
    };
    const p = pool();
    await assert.rejects(open(p, flaky), StoreUnavailableError);
    assert.equal(p.size, 0);
    const repo = await open(p, flaky);
    assert.equal((await repo.snapshots(signal())).length, m.snapshots.length);
    assert.equal(r.gets.filter((g) => g.key === FORMAT_BLOB).length, 1, 'the second open read the format blob itself');
  });

  test('the first caller going away does not fail the others waiting for the same open; the open runs under the pool\'s signal', async () => {
    const g = gated(fsStore(repoDir(FIXTURE)), FORMAT_BLOB);
    const p = pool();
    const first = new AbortController();
    const a = open(p, g.store, { signal: first.signal });
    const b = open(p, g.store);
    await g.reached();
    assert.equal(g.signals.length, 1, 'one open in flight');
    first.abort(new Error('client went away'));
    await assert.rejects(a, /client went away/);
    assert.equal(g.signals[0]?.aborted, false, 'the open goes on for the caller still waiting');
    g.release();
    const repo = await b;
    assert.equal((await repo.snapshots(signal())).length, m.snapshots.length);
    assert.equal(await open(p, g.store), repo);
  });

  test('an open nobody waits for any more is abandoned, and the next caller starts afresh', async () => {
    const g = gated(fsStore(repoDir(FIXTURE)), FORMAT_BLOB);
    const p = pool();
    const only = new AbortController();
    const a = open(p, g.store, { signal: only.signal });
    await g.reached();
    only.abort(new Error('gone'));
    await assert.rejects(a, /gone/);
    assert.equal(g.signals[0]?.aborted, true, 'the abandoned open was aborted');
    g.release();
    await open(p, g.store);
    assert.equal(g.signals.length, 2, 'a new open, not the abandoned one');
  });

  test('an open past its time bound fails every waiter with KopiaTimeoutError (reason Timeout) and is not kept', async () => {
    const g = gated(fsStore(repoDir(FIXTURE)), FORMAT_BLOB);
    const p = pool({ openTimeoutMs: 50 });
    const waits = [open(p, g.store), open(p, g.store)];
    for (const w of waits) {
      await assert.rejects(w, (err: unknown) => err instanceof KopiaTimeoutError && err.reason === 'Timeout');
    }
    assert.equal(p.size, 0);
  });

  test('at most maxRepositories stay open; the least recently used leaves and takes its cache entries with it', async () => {
    const p = pool({ maxRepositories: 1 });
    const s1 = fsStore(repoDir(FIXTURE));
    const s2 = fsStore(repoDir('velero-chacha20'));
    const a = await open(p, s1);
    await a.snapshots(signal());
    const withA = p.cache.stats().entries;
    await open(p, s2);
    assert.equal(p.size, 1);
    assert.ok(p.cache.stats().entries < withA + 1, 'the first repository\'s index and manifests left the cache');
    assert.notEqual(await open(p, s1), a, 'reopened');
  });
});

describe('the shared cache budget', () => {
  test('one index per budget: the index of a repository pushed out is loaded again on its next use, not before', async () => {
    const r1 = recording(fsStore(repoDir(FIXTURE)));
    const r2 = recording(fsStore(repoDir('velero-chacha20')));
    // Measure both indexes in a roomy pool first.
    const roomy = pool();
    await open(roomy, r1.store);
    const one = roomy.cache.stats().bytes;
    await open(roomy, r2.store);
    const both = roomy.cache.stats().bytes;
    assert.ok(one > 4_000 && both - one > 1_000, `index bytes counted: ${one}, ${both - one}`);

    const tight = pool({ cacheBytes: Math.max(one, both - one) + 100 });
    const a = await open(tight, r1.store);
    await open(tight, r2.store);
    assert.equal(indexLoads(r1.lists), 2, 'before: one load each in the roomy pool and in the tight one');
    await a.snapshot(m.snapshots[0]!.id, signal());
    assert.equal(indexLoads(r1.lists), 3, 'evicted by the other repository\'s index: loaded again');
    assert.ok(tight.cache.stats().evictions >= 1);

    // In the roomy pool nothing was pushed out: no load.
    const roomyA = await open(roomy, r1.store);
    await roomyA.snapshot(m.snapshots[0]!.id, signal());
    assert.equal(indexLoads(r1.lists), 3);
  });

  test('directories and the snapshot list are read once, then served from the cache; a tight budget reads them again', async () => {
    const r = recording(fsStore(repoDir(FIXTURE)));
    const repo = await open(pool(), r.store);
    const snap = await repo.snapshot(m.snapshots[0]!.id, signal());
    const first = await repo.listDirectory(snap, 'big', signal());
    const gets = r.gets.length;
    assert.deepEqual(await repo.listDirectory(snap, 'big', signal()), first);
    await repo.snapshots(signal());
    await repo.snapshot(m.snapshots[1]!.id, signal());
    assert.equal(r.gets.length, gets, 'no read: directories and manifests came from the cache');

    // A budget that holds the index but not the directory beside it: the directory is read again
    // (directories live in the metadata packs, `q…`; index blobs are `x…`).
    const metadataReads = (gets: { key: string }[]): number => gets.filter((g) => g.key.startsWith('q')).length;
    const t = recording(fsStore(repoDir(FIXTURE)));
    const roomy = pool();
    await open(roomy, recording(fsStore(repoDir(FIXTURE))).store);
    const tight = pool({ cacheBytes: roomy.cache.stats().bytes + 200 });
    const small = await open(tight, t.store);
    const s = await small.snapshot(m.snapshots[0]!.id, signal());
    await small.listDirectory(s, 'big', signal());
    const before = metadataReads(t.gets);
    await small.listDirectory(s, 'big', signal());
    assert.ok(metadataReads(t.gets) > before, 'read again: the entries did not fit');
    const warm = metadataReads(r.gets);
    await repo.listDirectory(snap, 'big', signal());
    assert.equal(metadataReads(r.gets), warm, 'while the roomy cache still serves them');
  });

  test('what the cache hands out cannot be changed under other callers', async () => {
    const repo = await open(pool(), fsStore(repoDir(FIXTURE)));
    const snap = await repo.snapshot(m.snapshots[0]!.id, signal());
    const entries = await repo.listDirectory(snap, '', signal());
    entries.length = 0; // the caller's own copy of the list
    assert.throws(() => {
      (snap.rootEntry as { name: string }).name = 'x';
    }, TypeError);
    const again = await repo.listDirectory(snap, '', signal());
    assert.ok(again.length > 0);
    assert.throws(() => {
      (again[0] as { size: number }).size = 1;
    }, TypeError);
  });

  test('ByteLRU: least recently used first, entries over the whole budget not kept, owners dropped together', () => {
    const c = new ByteLRU(100);
    const a = c.newOwner();
    const b = c.newOwner();
    c.set(a, 'x', 1, 40);
    c.set(a, 'y', 2, 40);
    assert.equal(c.get(a, 'x'), 1); // x is now the most recent
    c.set(b, 'x', 3, 40); // pushes out a:y
    assert.equal(c.get(a, 'y'), undefined);
    assert.equal(c.get(a, 'x'), 1);
    assert.equal(c.get(b, 'x'), 3);
    c.set(b, 'huge', 4, 101);
    assert.equal(c.get(b, 'huge'), undefined);
    assert.equal(c.stats().bytes, 80);
    c.deleteOwner(a);
    assert.deepEqual({ ...c.stats(), hits: 0, misses: 0 }, { bytes: 40, entries: 1, hits: 0, misses: 0, evictions: 1 });
  });
});

describe('index age and refresh', () => {
  test('an index past its maximum age is loaded again before its next use, once for concurrent users', async () => {
    const r = recording(fsStore(repoDir(FIXTURE)));
    const t = clock();
    const repo = await open(pool({ now: t.now, indexMaxAgeMs: 60_000 }), r.store);
    t.advance(59_999);
    await repo.snapshots(signal());
    assert.equal(indexLoads(r.lists), 1);
    t.advance(1);
    await Promise.all([repo.snapshots(signal()), repo.snapshot(m.snapshots[0]!.id, signal()), repo.contentIndex(signal())]);
    assert.equal(indexLoads(r.lists), 2, 'one reload shared');
    await repo.snapshots(signal());
    assert.equal(indexLoads(r.lists), 2);
  });

  test('an unknown snapshot id reloads the index at most once per minimum interval, even under a stream of requests', async () => {
    const r = recording(fsStore(repoDir(FIXTURE)));
    const t = clock();
    const repo = await open(pool({ now: t.now, refreshMinIntervalMs: 5_000 }), r.store);
    const bogus = 'ffffffffffffffffffffffffffffffff';
    for (let i = 0; i < 5; i++) await assert.rejects(repo.snapshot(bogus, signal()), (e: unknown) => e instanceof KopiaNotFoundError && e.what === 'snapshot');
    assert.equal(indexLoads(r.lists), 1, 'the index is younger than the interval: no reload');
    t.advance(5_000);
    await Promise.all(Array.from({ length: 5 }, () => assert.rejects(repo.snapshot(bogus, signal()), KopiaNotFoundError)));
    assert.equal(indexLoads(r.lists), 2, 'one reload for the five');
    for (let i = 0; i < 5; i++) await assert.rejects(repo.snapshot(bogus, signal()), KopiaNotFoundError);
    assert.equal(indexLoads(r.lists), 2, 'and none again within the interval');
  });

  test('a caller that stops waiting for a shared index load fails alone', async () => {
    const g = gated(fsStore(repoDir(FIXTURE)), FORMAT_BLOB);
    g.release();
    const t = clock();
    const repo = await open(pool({ now: t.now, indexMaxAgeMs: 1_000 }), g.store);
    t.advance(1_000);
    const leaving = new AbortController();
    const a = repo.snapshots(leaving.signal);
    const b = repo.snapshots(signal());
    leaving.abort(new Error('left'));
    await assert.rejects(a, /left/);
    assert.equal((await b).length, m.snapshots.length);
  });
});

const kopiaSkip = missingTools('kopia');
describe('a repository changed by the real kopia under an open pool entry', { skip: kopiaSkip }, () => {
  const kopia = toolPath('kopia')!;
  /** Runs kopia connected to `dir` with a private config. */
  async function kopiaIn(dir: string, ...args: string[]): Promise<string> {
    const cfg = join(dir, '..', `${dir.split('/').pop()}.config`);
    const env = { ...process.env, KOPIA_PASSWORD: PASSWORD, KOPIA_CHECK_FOR_UPDATES: 'false', KOPIA_PERSIST_CREDENTIALS_ON_CONNECT: 'false', KOPIA_CACHE_DIRECTORY: `${cfg}.cache` };
    const base = [`--config-file=${cfg}`, `--log-dir=${cfg}.logs`, '--no-progress'];
    if (args[0] !== 'repository') await kopiaIn(dir, 'repository', 'connect', 'filesystem', `--path=${dir}`, `--password=${PASSWORD}`);
    return (await run(kopia, [...base, ...args], { env, maxBuffer: 16 << 20 })).stdout;
  }
  /** Full maintenance with no safety margin: every pack rewritten, the old ones deleted at once. */
  async function maintenance(dir: string): Promise<void> {
    await kopiaIn(dir, 'maintenance', 'set', '--owner=me');
    await kopiaIn(dir, 'maintenance', 'run', '--full', '--safety=none');
  }
  const packs = async (store: ObjectStore): Promise<string[]> => {
    const out: string[] = [];
    for await (const o of store.list('p', { signal: signal() })) out.push(o.key);
    return out;
  };

  test('a snapshot made after the index was loaded is found (the unknown id reloads the index)', async () => {
    const dir = await copy();
    const r = recording(fsStore(dir));
    const t = clock();
    const repo = await open(pool({ now: t.now }), r.store);
    const src = join(work, 'new-source');
    await mkdir(join(src, 'sub'), { recursive: true });
    await writeFile(join(src, 'sub', 'hello.txt'), 'hello from a newer backup\n');
    await kopiaIn(dir, 'snapshot', 'create', src);
    const listed = JSON.parse(await kopiaIn(dir, 'snapshot', 'list', '--all', '--json')) as { id: string }[];
    const fresh = listed.map((s) => s.id).filter((id) => !m.snapshots.some((s) => s.id === id));
    assert.equal(fresh.length, 1);
    t.advance(5_000);
    const snap = await repo.snapshot(fresh[0]!, signal());
    assert.equal(indexLoads(r.lists), 2);
    const f = await repo.openFile(snap, 'sub/hello.txt', { signal: signal() });
    assert.equal((await readAll(f.stream)).toString(), 'hello from a newer backup\n');
  });

  test('packs rewritten and deleted by maintenance: reads through the stale entry reload the index once and retry (directories, files, ranges)', async () => {
    const dir = await copy();
    const store = fsStore(dir);
    const r = recording(store);
    const t = clock();
    const p = pool({ now: t.now });
    const repo = await open(p, r.store);
    const ms = m.snapshots[0]!;
    const snap = await repo.snapshot(ms.id, signal());
    const before = await packs(store);
    await maintenance(dir);
    const afterPacks = await packs(store);
    assert.ok(before.every((k) => !afterPacks.includes(k)), `maintenance moved every pack: ${before.join(',')} -> ${afterPacks.join(',')}`);
    t.advance(5_000);

    const big = ms.entries.find((e) => e.path === 'big/volume.img')!;
    const f = await repo.openFile(snap, 'big/volume.img', { signal: signal() });
    assert.equal(sha256(await readAll(f.stream)), big.sha256);
    assert.equal(indexLoads(r.lists), 2, 'one reload');
    for (const e of ms.entries.filter((x) => x.type === 'f').slice(0, 5)) {
      const g = await repo.openFile(snap, e.path, { signal: signal(), range: { start: 0 } });
      assert.equal(sha256(await readAll(g.stream)), e.sha256, e.path);
    }
    assert.equal(indexLoads(r.lists), 2, 'the newer index serves the rest');
    assert.equal(await open(p, r.store), repo);
  });

  test('without a newer index to retry on (inside the minimum interval) the gone pack is the error, before any byte', async () => {
    const dir = await copy();
    const t = clock();
    const repo = await open(pool({ now: t.now }), fsStore(dir));
    const snap = await repo.snapshot(m.snapshots[0]!.id, signal());
    await maintenance(dir);
    await assert.rejects(repo.openFile(snap, 'big/volume.img', { signal: signal() }), (e: unknown) => e instanceof KopiaNotFoundError && e.what === 'blob');
  });

  test('a pack gone mid-stream destroys the stream (never a short end); the next open retries on a newer index', async () => {
    const dir = await copy();
    const t = clock();
    const repo = await open(pool({ now: t.now }), fsStore(dir));
    const ms = m.snapshots[0]!;
    const snap = await repo.snapshot(ms.id, signal());
    const big = ms.entries.find((e) => e.path === 'big/volume.img')!;
    assert.equal(big.chunks?.length, 2);
    const f = await repo.openFile(snap, 'big/volume.img', { signal: signal() });
    await maintenance(dir);
    t.advance(5_000);
    let got = 0;
    await assert.rejects(
      (async () => {
        for await (const c of f.stream) got += c.length;
      })(),
      (e: unknown) => e instanceof KopiaNotFoundError && e.what === 'blob',
    );
    assert.equal(got, big.chunks[0]?.length, 'the first content (read before the open resolved), then the error');
    const again = await repo.openFile(snap, 'big/volume.img', { signal: signal() });
    assert.equal(sha256(await readAll(again.stream)), big.sha256);
  });
});
