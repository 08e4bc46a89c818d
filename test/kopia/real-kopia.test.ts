/**
 * The reader against repositories the real kopia makes while the test runs, read through the real
 * FilesystemStore: kopia's defaults with a > 1 GiB sparse file; Velero's settings with AES and five
 * snapshots of one changing source, zstd / s2-default / gzip set per source, then a snapshot
 * deleted and full maintenance with --safety=none (packs rewritten, contents collected, index epochs
 * advanced and compacted); Velero's settings with ChaCha20; and Velero's fork (`kopia-velero`) with
 * Velero's layout (`velero/kopia/<ns>/`, default@default, Velero's tags). Every snapshot id and
 * source must be what `kopia snapshot list --json` says, every directory what lstat says of the
 * source (names, types, sizes, modes, mtimes, owners, symlink targets), every file's bytes the
 * source's (SHA-256 of the stream), and ranges of the big files the source's bytes. Then bad input
 * on these repositories: a wrong password on the ChaCha20 one, a pack deleted after maintenance.
 *
 * kopia and kopia-velero come from `npm run tools`; without them these tests fail (never skip).
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { cp, mkdir, mkdtemp, open, readdir, rm, stat, unlink, utimes, writeFile, chmod, symlink, truncate } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { inspect } from 'node:util';
import { after, before, describe, test } from 'node:test';
import { CorruptRepositoryError, KopiaNotFoundError, WrongPasswordError } from '../../src/kopia/errors.ts';
import { openRepository } from '../../src/kopia/repository.ts';
import type { Repository } from '../../src/kopia/repository.ts';
import { FilesystemStore } from '../../src/stores/fs.ts';
import {
  KopiaCli,
  VELERO_PASSWORD,
  compareRanges,
  compareSnapshot,
  describeTree,
  rangesFor,
  sha256OfStream,
  unixNanos,
  veleroCreateFlags,
  writeOddTree,
} from '../support/kopia-cli.ts';
import type { SourceEntry } from '../support/kopia-cli.ts';

const MiB = 1024 * 1024;
/** The sparse file: past 1 GiB, so offsets beyond 2^30 and 2^31 - 1 bits of int32 are exercised. */
const SPARSE_BYTES = 1100 * MiB;
const signal = (): AbortSignal => new AbortController().signal;

let base = '';
let defaults: Awaited<ReturnType<typeof buildDefaults>>;
let aes: Awaited<ReturnType<typeof buildAes>>;
let chacha: Made;
let velero: Made;
// The four repositories are made side by side: kopia spends much of its time waiting on its own
// storage and key derivation, so together they take about as long as the longest. About 60 s of CPU
// in all; on a machine shared by several test runs that can exceed the suite's 120 s per hook, hence
// the hook's own limit (a hung kopia still fails the run).
before(
  async () => {
    base = await mkdtemp(join(tmpdir(), 'vds-real-kopia-'));
    [defaults, aes, chacha, velero] = await Promise.all([buildDefaults(), buildAes(), buildChacha(), buildVelero()]);
  },
  { timeout: 8 * 60_000 },
);
/** Aborted first in cleanup: kopia still running (a hook that timed out) is killed before its files go. */
const stop = new AbortController();
after(async () => {
  stop.abort(new Error('the tests are over'));
  if (base) await rm(base, { recursive: true, force: true });
});

/** A repository made here: how to open it, and each snapshot's source as it was when kopia read it. */
interface Made {
  cli: KopiaCli;
  storeRoot: string;
  prefix: string;
  password: string;
  sources: Map<string, { dir: string; tree: Map<string, SourceEntry> }>;
}

function openMade(made: Made, password = made.password): Promise<Repository> {
  return openRepository(new FilesystemStore({ root: made.storeRoot }), { prefix: made.prefix, naming: 'filesystem', password, signal: signal() });
}

async function snap(made: Made, dir: string, ...flags: string[]): Promise<string> {
  const id = await made.cli.snapshot(dir, ...flags);
  made.sources.set(id, { dir, tree: await describeTree(dir) });
  return id;
}

/**
 * The snapshots the reader lists are the ones `kopia snapshot list --all --json` lists, with the same
 * source, root object, start time, description, tags and pins; returns them by id.
 */
async function snapshotsAgree(made: Made, repo: Repository): Promise<void> {
  const kopia = await made.cli.snapshots();
  const ours = await repo.snapshots(signal());
  assert.deepEqual(ours.map((s) => s.id).sort(), kopia.map((s) => s.id).sort());
  for (const k of kopia) {
    const s = ours.find((o) => o.id === k.id);
    assert.ok(s);
    assert.deepEqual(s.source, k.source, k.id);
    assert.equal(s.rootEntry.objectID, k.rootEntry.obj, k.id);
    assert.equal(unixNanos(s.startTime), unixNanos(k.startTime), k.id);
    assert.equal(s.description, k.description ?? '', k.id);
    assert.deepEqual(s.pins, k.pins ?? [], k.id);
    assert.deepEqual(s.tags, k.tags ?? {}, k.id);
  }
}

/** Every snapshot of `ids` (default: all made) walked and compared with its source. */
async function treesAgree(made: Made, repo: Repository, skipBytes?: Set<string>, ids = [...made.sources.keys()]): Promise<number> {
  let entries = 0;
  for (const id of ids) {
    const source = made.sources.get(id);
    assert.ok(source, id);
    const result = await compareSnapshot(repo, await repo.snapshot(id, signal()), source.tree, { signal: signal(), ...(skipBytes && { skipBytes }) });
    assert.deepEqual(result.problems, [], `snapshot ${id}:\n${result.problems.join('\n')}`);
    entries += result.entries;
  }
  return entries;
}

/** Where kopia cut a file: the starts of its chunks after the first (none for a one-content file). */
async function chunkStarts(repo: Repository, objectID: string): Promise<number[]> {
  const resolved = await repo.resolveObject(objectID, signal());
  return resolved.segments.slice(1).map((s) => s.start);
}

function newMade(name: string, password: string, tool: 'kopia' | 'kopia-velero' = 'kopia', storeRoot = join(base, name, 'repo'), prefix = ''): Made {
  return { cli: new KopiaCli({ tool, work: join(base, name, 'client'), password, signal: stop.signal }), storeRoot, prefix, password, sources: new Map() };
}

// ---------------------------------------------------------------- kopia's defaults, a sparse file

/** Kopia's defaults (its filesystem storage shards blob files into directories); the odd tree and the sparse file. */
async function buildDefaults(): Promise<{ made: Made; src: string; snapshotMs: number }> {
  const made = newMade('defaults', 'defaults-passw0rd');
  const src = join(base, 'defaults', 'src');
  await made.cli.createFilesystem(made.storeRoot);
  await writeOddTree(src, randomBytes(10 * MiB + 12345));
  // The sparse file: holes, with random bytes at its start, past 1 GiB and at its very end.
  const sparse = join(src, 'sparse', 'huge.img');
  await mkdir(join(src, 'sparse'));
  await writeFile(sparse, randomBytes(MiB));
  await truncate(sparse, SPARSE_BYTES);
  const fh = await open(sparse, 'r+');
  await fh.write(randomBytes(MiB), 0, MiB, 1024 * MiB + 77);
  await fh.write(randomBytes(1000), 0, 1000, SPARSE_BYTES - 1000);
  await fh.close();
  const t0 = performance.now();
  await snap(made, src);
  return { made, src, snapshotMs: performance.now() - t0 };
}

describe("kopia's defaults (sharded filesystem layout): the odd tree and a sparse file past 1 GiB", () => {
  let made: Made;
  let repo: Repository;
  const src = (): string => defaults.src;

  before(async () => {
    made = defaults.made;
    repo = await openMade(made);
  });

  test('the snapshot is the one kopia lists (id, source, root, start time), read through shard directories', async (t) => {
    assert.ok((await readdir(made.storeRoot, { recursive: true })).some((f) => /^p\/[0-9a-f]{3}\/[0-9a-f-s]+\.f$/.test(f)), 'packs in shard directories');
    await snapshotsAgree(made, repo);
    assert.equal(made.sources.size, 1);
    // For the report: kopia's time to snapshot the tree with the sparse file (dedup keeps it cheap).
    t.diagnostic(`kopia snapshot of the tree with a ${SPARSE_BYTES} B sparse file: ${Math.round(defaults.snapshotMs)} ms`);
  });

  test('every entry equals the source: names, types, sizes, modes, mtimes, owners, symlink targets, bytes', async () => {
    assert.ok((await treesAgree(made, repo, new Set(['sparse/huge.img']))) > 60);
  });

  test('the sparse file streams whole with the source\'s SHA-256, and its ranges are the source\'s bytes', async () => {
    const s = (await repo.snapshots(signal()))[0];
    assert.ok(s);
    const want = made.sources.get(s.id)?.tree.get('sparse/huge.img');
    assert.ok(want?.sha256);
    const f = await repo.openFile(s, 'sparse/huge.img', { signal: signal() });
    assert.equal(f.size, SPARSE_BYTES);
    assert.equal(await sha256OfStream(f.stream), want.sha256);
    const boundaries = await chunkStarts(repo, f.entry.objectID);
    assert.ok(boundaries.length > 100, `${boundaries.length} chunk boundaries`);
    const near = [1024 * MiB + 77, 1024 * MiB + 77 + MiB, 2 ** 31 - 1].map((b) => ({ start: b - 3, end: b + 3 }));
    const ranges = [...rangesFor(SPARSE_BYTES, boundaries.filter((_, i) => i % 40 === 0), 12, 3 * MiB, 7), ...near.filter((r) => r.end < SPARSE_BYTES)];
    assert.deepEqual(await compareRanges(repo, s, 'sparse/huge.img', join(src(), 'sparse', 'huge.img'), ranges, signal()), []);
  });

  test('the random file is several chunks, and ranges across each boundary are the source\'s bytes', async () => {
    const s = (await repo.snapshots(signal()))[0];
    assert.ok(s);
    const entry = await repo.stat(s, 'random.bin', signal());
    assert.match(entry.objectID, /^I/, 'an indirect (multi-chunk) object');
    const boundaries = await chunkStarts(repo, entry.objectID);
    assert.ok(boundaries.length >= 1);
    assert.deepEqual(await compareRanges(repo, s, 'random.bin', join(src(), 'random.bin'), rangesFor(entry.size, boundaries, 10, 2 * MiB, 11), signal()), []);
  });
  test('bad input: a .shards file that is not kopia\'s sharding, or too big to be one, is a typed error', async () => {
    const copy = join(base, 'defaults-bad-shards');
    await cp(made.storeRoot, copy, { recursive: true });
    for (const [label, content] of [
      ['not JSON', '{"default":[1,3'],
      ['a shard of zero', '{"default":[1,0],"maxNonShardedLength":20}'],
      ['a string shard', '{"default":[1,"3"],"maxNonShardedLength":20}'],
      ['100 KiB', `{"default":[1,3],"maxNonShardedLength":20}${' '.repeat(100 * 1024)}`],
    ] as const) {
      await writeFile(join(copy, '.shards'), content);
      await assert.rejects(
        openRepository(new FilesystemStore({ root: copy }), { naming: 'filesystem', password: made.password, signal: signal() }),
        (e: unknown) => e instanceof CorruptRepositoryError && e.kind === 'malformed' && /\.shards/.test(e.message),
        label,
      );
    }
  });
});

// ---------------------------------------------------------------- Velero's settings, AES, maintenance

const COMPRESSIONS = [
  // kopia's compression header ids (repo/compression): gzip 0x1000-, zstd 0x1100-, s2 0x1200-
  { policy: 'zstd', ids: [0x1100, 0x1103] },
  { policy: 's2-default', ids: [0x1200, 0x1203] },
  { policy: 'gzip', ids: [0x1000, 0x1002] },
] as const;

/** Compressible, not repeating: numbered lines. */
function lines(label: string, bytes: number): Buffer {
  const parts: string[] = [];
  let n = 0;
  for (let i = 0; n < bytes; i++) {
    const l = `${label} line ${String(i).padStart(9, '0')}: the quick brown fox jumps over the lazy dog\n`;
    parts.push(l);
    n += l.length;
  }
  return Buffer.from(parts.join('')).subarray(0, bytes);
}

const aesTree = (): string => join(base, 'aes', 'tree');
const compDir = (policy: string): string => join(base, 'aes', `comp-${policy}`);
const blobs = async (made: Made): Promise<string[]> => (await readdir(made.storeRoot)).filter((f) => f.endsWith('.f')).sort();

/** Moves every blob's mtime (the filesystem storage's blob time) back 25 h, past the 24 h epoch minimum. */
async function ageBlobs(made: Made): Promise<void> {
  for (const f of await readdir(made.storeRoot)) {
    const p = join(made.storeRoot, f);
    const st = await stat(p);
    await utimes(p, st.atime, new Date(st.mtimeMs - 25 * 3600 * 1000));
  }
  // kopia's cached blob lists would keep the old times
  await rm(made.cli.cacheDir, { recursive: true, force: true });
}

/**
 * Velero's settings with AES: a snapshot per compression policy, five of one changing source, the
 * first deleted, then full maintenance until index epoch 0 is compacted.
 */
async function buildAes(): Promise<{ made: Made; deleted: string; blobsBefore: string[]; blobsAfter: string[] }> {
  const tree = aesTree;
  const made = newMade('aes', VELERO_PASSWORD);
  await made.cli.createFilesystem(made.storeRoot, ['--flat', ...veleroCreateFlags('AES256-GCM-HMAC-SHA256')]);
  // kopia's lowest advance count, so that a test-sized repository reaches a compacted epoch
  await made.cli.run('repository', 'set-parameters', '--epoch-advance-on-count=10');
  for (const c of COMPRESSIONS) {
    await mkdir(compDir(c.policy), { recursive: true });
    await writeFile(join(compDir(c.policy), 'lines.txt'), lines(c.policy, 10 * MiB));
    await writeFile(join(compDir(c.policy), 'small.txt'), `small and ${c.policy}\n`);
    await made.cli.run('policy', 'set', compDir(c.policy), `--compression=${c.policy}`);
    await snap(made, compDir(c.policy));
  }
  // five snapshots of one source, changed between them
  await writeOddTree(tree(), randomBytes(9 * MiB));
  const changes: (() => Promise<void>)[] = [
    async () => {
      await writeFile(join(tree(), 'hello.txt'), 'hello, second generation\n');
      await writeFile(join(tree(), 'added.txt'), 'added in generation 2\n');
    },
    async () => {
      await unlink(join(tree(), 'one'));
      await chmod(join(tree(), 'bin', 'run.sh'), 0o700);
      await unlink(join(tree(), 'links', 'relative'));
      await symlink('../added.txt', join(tree(), 'links', 'relative'));
    },
    async () => {
      const fh = await open(join(tree(), 'random.bin'), 'r+');
      await fh.write(randomBytes(4096), 0, 4096, 5 * MiB);
      await fh.close();
      await mkdir(join(tree(), 'new dir', 'sub'), { recursive: true });
      await writeFile(join(tree(), 'new dir', 'sub', 'file'), 'new\n');
    },
    async () => {
      await rm(join(tree(), 'odd names', '#hash'));
      await writeFile(join(tree(), 'zero'), 'not empty any more\n');
    },
  ];
  const firstTwo: string[] = [];
  for (let gen = 0; gen < 5; gen++) {
    if (gen > 0) await changes[gen - 1]?.();
    // snap() describes the source as kopia read it, before the next change
    const id = await snap(made, tree());
    if (gen < 2) firstTwo.push(id);
  }
  const deleted = firstTwo[0] ?? '';
  await made.cli.run('snapshot', 'delete', deleted, '--delete');
  made.sources.delete(deleted);
  const blobsBefore = await blobs(made);
  // Epoch 0 is past the advance count: age it, and maintenance advances to epoch 1.
  await ageBlobs(made);
  await made.cli.run('maintenance', 'run', '--full', '--safety=none');
  // Fill epoch 1 with index blobs (each policy change writes one), advance to epoch 2, and the
  // next maintenance compacts epoch 0 (xs0).
  for (let i = 0; (await blobs(made)).filter((b) => b.startsWith('xn1_')).length < 10; i++) {
    assert.ok(i < 30, 'kopia writes an index blob per policy change');
    await made.cli.run('policy', 'set', join(base, 'aes', 'filler'), `--keep-latest=${i + 11}`);
  }
  await ageBlobs(made);
  await made.cli.run('maintenance', 'run', '--full', '--safety=none');
  await made.cli.run('maintenance', 'run', '--full', '--safety=none');
  const blobsAfter = await blobs(made);
  return { made, deleted, blobsBefore, blobsAfter };
}

describe("Velero's settings with AES256-GCM: five snapshots of a changing source, compression per source, then full maintenance", () => {
  let made: Made;
  let repo: Repository;
  const tree = aesTree;

  before(async () => {
    made = aes.made;
    repo = await openMade(made);
  });

  test('maintenance rewrote packs, collected the deleted snapshot, advanced and compacted index epochs', async () => {
    const packs = (list: string[]): string[] => list.filter((b) => /^[pq]/.test(b));
    assert.ok(packs(aes.blobsBefore).some((p) => !aes.blobsAfter.includes(p)), 'some packs were removed');
    assert.ok(packs(aes.blobsAfter).some((p) => !aes.blobsBefore.includes(p)), 'some packs were written');
    for (const prefix of ['xs0_', 'xe2', 'xw']) assert.ok(aes.blobsAfter.some((b) => b.startsWith(prefix)), `a ${prefix} blob`);
    await assert.rejects(repo.snapshot(aes.deleted, signal()), (e: unknown) => e instanceof KopiaNotFoundError && e.what === 'snapshot');
  });

  test('the snapshots are the ones kopia lists after maintenance (id, source, root, time)', async () => {
    await snapshotsAgree(made, repo);
    assert.equal((await repo.snapshots(signal())).length, 7);
  });

  test('each of the four remaining snapshots of the changing source, and each compressed source, equals its source', async () => {
    assert.ok((await treesAgree(made, repo)) > 250);
  });

  test('the compressed sources are stored with their compression, and ranges across their chunks are the source\'s bytes', async () => {
    for (const c of COMPRESSIONS) {
      const id = [...made.sources].find(([, s]) => s.dir === compDir(c.policy))?.[0];
      assert.ok(id);
      const s = await repo.snapshot(id, signal());
      const entry = await repo.stat(s, 'lines.txt', signal());
      const resolved = await repo.resolveObject(entry.objectID, signal());
      assert.ok(resolved.segments.length >= 2, `${c.policy}: several chunks`);
      for (const seg of resolved.segments) {
        const contentID = seg.objectID.replace(/^Z/, '');
        const header = (await repo.contentIndex(signal())).get(contentID).compressionHeaderID;
        assert.ok(header >= c.ids[0] && header <= c.ids[1], `${c.policy}: content ${contentID} has compression header ${header.toString(16)}`);
      }
      const ranges = rangesFor(entry.size, resolved.segments.slice(1).map((g) => g.start), 6, MiB, 3);
      assert.deepEqual(await compareRanges(repo, s, 'lines.txt', join(compDir(c.policy), 'lines.txt'), ranges, signal()), []);
    }
  });

  test('bad input: a pack deleted after maintenance fails a file stored in it with a typed error naming the pack, never a short stream', async () => {
    const newest = (await repo.snapshots(signal())).filter((x) => x.source.path === tree()).at(-1);
    assert.ok(newest);
    // the pack maintenance wrote the random file's last chunk into, found through the intact copy
    const entry = await repo.stat(newest, 'random.bin', signal());
    const last = (await repo.resolveObject(entry.objectID, signal())).segments.at(-1);
    assert.ok(last);
    const packID = (await repo.contentIndex(signal())).get(last.objectID.replace(/^Z/, '')).packBlobID;
    assert.ok(aes.blobsAfter.includes(`${packID}.f`) && !aes.blobsBefore.includes(`${packID}.f`), 'a pack maintenance wrote');
    const copy = join(base, 'aes-broken');
    await cp(made.storeRoot, copy, { recursive: true });
    await unlink(join(copy, `${packID}.f`));

    const broken = await openRepository(new FilesystemStore({ root: copy }), { naming: 'filesystem', password: VELERO_PASSWORD, signal: signal() });
    const s = await broken.snapshot(newest.id, signal());
    assert.ok((await broken.listDirectory(s, '', signal())).some((e) => e.name === 'random.bin'), 'metadata packs are intact');
    let bytes = 0;
    const err: unknown = await broken.openFile(s, 'random.bin', { signal: signal() }).then(
      async (f) => {
        for await (const c of f.stream) bytes += (c as Buffer).length;
        return undefined;
      },
      (e: unknown) => e,
    ).catch((e: unknown) => e);
    assert.ok(err instanceof KopiaNotFoundError && err.what === 'blob', String(err));
    assert.match(err.message, new RegExp(packID));
    assert.ok(bytes < entry.size, `${bytes} of ${entry.size} bytes, then the error`);
  });
});

// ---------------------------------------------------------------- Velero's settings, ChaCha20

/** Velero's settings with ChaCha20: the odd tree, one snapshot. */
async function buildChacha(): Promise<Made> {
  const made = newMade('chacha', VELERO_PASSWORD);
  await made.cli.createFilesystem(made.storeRoot, ['--flat', ...veleroCreateFlags('CHACHA20-POLY1305-HMAC-SHA256')]);
  const src = join(base, 'chacha', 'src');
  await writeOddTree(src, randomBytes(9 * MiB + 1));
  await snap(made, src);
  return made;
}

describe("Velero's settings with CHACHA20-POLY1305", () => {
  let made: Made;
  let repo: Repository;

  before(async () => {
    made = chacha;
    repo = await openMade(made);
  });

  test('the format is ChaCha20 and the snapshot is the one kopia lists', async () => {
    assert.equal(repo.format.encryption, 'CHACHA20-POLY1305-HMAC-SHA256');
    await snapshotsAgree(made, repo);
  });

  test('every entry equals the source, bytes included', async () => {
    assert.ok((await treesAgree(made, repo)) > 60);
  });

  test('bad input: a wrong password is a WrongPasswordError that names neither password', async () => {
    const wrong = 'static-passw0rd-but-wrong';
    const err: unknown = await openMade(made, wrong).catch((e: unknown) => e);
    assert.ok(err instanceof WrongPasswordError, String(err));
    for (const text of [inspect(err), JSON.stringify(err), String(err)]) {
      assert.ok(!text.includes(wrong) && !text.includes(VELERO_PASSWORD), text);
    }
  });
});

// ---------------------------------------------------------------- Velero's fork, Velero's layout

const NS = 'app-ns';

/**
 * Velero's fork, as Velero's repository provider and uploader use it: the repository under
 * `<bsl prefix>/kopia/<namespace>/`, connected as default@default, one data-mover snapshot and one
 * pod-volume snapshot with the description, pin and tags Velero writes.
 */
async function buildVelero(): Promise<Made> {
  const storeRoot = join(base, 'velero-bsl');
  const made = newMade('velero', VELERO_PASSWORD, 'kopia-velero', storeRoot, `velero/kopia/${NS}/`);
  await made.cli.createFilesystem(join(storeRoot, 'velero', 'kopia', NS), [
    '--flat',
    ...veleroCreateFlags('AES256-GCM-HMAC-SHA256'),
    '--override-hostname=default',
    '--override-username=default',
  ]);
  // Velero's uploader (pkg/uploader/kopia/snapshot.go): description, pin and tags as it writes them
  const common = ['--description=Kopia Uploader', '--pin=velero-pin', '--tags=snapshot-uploader:kopia'];
  const du = join(base, 'velero', 'pvc-data');
  await writeOddTree(du, randomBytes(3 * MiB));
  await snap(made, du, `--override-source=default@default:snapshot-data-upload-download/kopia/${NS}/pvc-data`, ...common,
    '--tags=snapshot-requester:snapshot-data-upload-download');
  const pv = join(base, 'velero', 'pod-volume');
  await mkdir(pv);
  await writeFile(join(pv, 'data.db'), randomBytes(100_000));
  await snap(made, pv, `--override-source=default@default:snapshot-pod-volume/kopia/${NS}/pod-1/data`, ...common,
    '--tags=snapshot-requester:snapshot-pod-volume', '--tags=backup:nightly', '--tags=backup-uid:3f1b2c4d-0000-4000-8000-000000000001',
    `--tags=ns:${NS}`, '--tags=volume:data', '--tags=pod-uid:9a8b7c6d-0000-4000-8000-000000000002');
  return made;
}

describe("Velero's fork (kopia-velero) with Velero's layout: velero/kopia/<ns>/, default@default, Velero's tags", () => {
  let made: Made;
  let repo: Repository;

  before(async () => {
    made = velero;
    repo = await openMade(made);
  });

  test('the repository sits under the prefix, and the snapshots are the ones kopia-velero lists, tags included', async () => {
    assert.ok((await readdir(join(made.storeRoot, 'velero', 'kopia', NS))).includes('kopia.repository.f'));
    await snapshotsAgree(made, repo);
    const snaps = await repo.snapshots(signal());
    assert.deepEqual(snaps.map((s) => `${s.source.userName}@${s.source.host}:${s.source.path}`).sort(), [
      `default@default:snapshot-data-upload-download/kopia/${NS}/pvc-data`,
      `default@default:snapshot-pod-volume/kopia/${NS}/pod-1/data`,
    ]);
    const pod = snaps.find((s) => s.source.path.includes('pod-1'));
    assert.equal(pod?.tags['tag:backup'], 'nightly');
    assert.equal(pod?.tags['tag:snapshot-uploader'], 'kopia');
    assert.deepEqual(pod?.pins, ['velero-pin']);
    assert.equal(pod?.description, 'Kopia Uploader');
  });

  test('every entry of both snapshots equals its source, bytes included', async () => {
    assert.ok((await treesAgree(made, repo)) > 60);
  });
});
