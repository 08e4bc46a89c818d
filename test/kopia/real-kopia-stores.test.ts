/**
 * A repository the real kopia makes now with all its defaults (the sharded filesystem layout),
 * copied blob by blob into each object store under a Velero-like prefix, and read through the real
 * store adapters with object naming: s3rver, Azurite, the GCS JSON API double, one at a time. Every
 * directory listing, every file's bytes and ranges across chunk boundaries must equal the source.
 *
 * Kopia's filesystem storage keeps blob `<id>` as the file `<id>.f`, cut into shard directories
 * (`p/330/61650d…f` for `p33061650d…`); its object stores keep it as the key `<prefix><id>`. The
 * copy walks the tree and joins the path back into the id, as kopia's own sharding does.
 *
 * kopia comes from `npm run tools`; without it these tests fail (never skip).
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { BlobServiceClient, StorageSharedKeyCredential, newPipeline } from '@azure/storage-blob';
import { openRepository } from '../../src/kopia/repository.ts';
import { DEFAULT_MAX_SOCKETS, DEFAULT_TIMEOUTS } from '../../src/stores/adapter.ts';
import type { AdapterOptions } from '../../src/stores/adapter.ts';
import { AzureBlobStore } from '../../src/stores/azure.ts';
import { GcsStore } from '../../src/stores/gcs.ts';
import { S3Store } from '../../src/stores/s3.ts';
import type { StoreSpec } from '../../src/stores/spec.ts';
import { trustFor } from '../../src/stores/trust.ts';
import type { ObjectStore } from '../../src/stores/types.ts';
import { AZURITE_ACCOUNT, AZURITE_KEY, startAzurite } from '../support/azurite.ts';
import { GcsJsonApiDouble, createTestServiceAccount } from '../support/gcs-server.ts';
import { KopiaCli, compareRanges, compareSnapshot, describeTree, rangesFor, writeOddTree } from '../support/kopia-cli.ts';
import type { SourceEntry } from '../support/kopia-cli.ts';
import { readShardedBlobs } from '../support/kopia-layout.ts';
import { S3RVER_ACCESS_KEY_ID, S3RVER_SECRET_ACCESS_KEY, startS3rver } from '../support/s3rver.ts';

const MiB = 1024 * 1024;
const PASSWORD = 'stores-passw0rd';
/** The BSL's prefix (the store spec's) and the repository's below it, as Velero lays them out. */
const BSL_PREFIX = 'cluster-1/velero';
const REPO_PREFIX = 'kopia/app-ns/';
const signal = (): AbortSignal => new AbortController().signal;

let base = '';
let src = '';
let snapshotID = '';
let tree: Map<string, SourceEntry>;
/** Every blob of the repository: id → bytes. */
let blobs = new Map<string, Buffer>();
let sharded = 0;

// kopia's create and snapshot: a few seconds alone, much longer on a machine shared by several test
// runs; the hook's own limit keeps the suite's 120 s from failing a slow but working kopia.
before(async () => {
  base = await mkdtemp(join(tmpdir(), 'vds-real-kopia-stores-'));
  const cli = new KopiaCli({ work: join(base, 'client'), password: PASSWORD, signal: stop.signal });
  const repoDir = join(base, 'repo');
  await cli.createFilesystem(repoDir);
  src = join(base, 'src');
  // a shorter chain of directories than on the filesystem: each level is one more request per path
  await writeOddTree(src, randomBytes(9 * MiB + 777), 12);
  snapshotID = await cli.snapshot(src);
  tree = await describeTree(src);
  ({ blobs, sharded } = await readShardedBlobs(repoDir));
}, { timeout: 5 * 60_000 });
/** Aborted first in cleanup: a kopia still running (a hook that timed out) is killed before its files go. */
const stop = new AbortController();
after(async () => {
  stop.abort(new Error('the tests are over'));
  if (base) await rm(base, { recursive: true, force: true });
});

function adapterOptions(spec: StoreSpec): AdapterOptions {
  return { spec, trust: trustFor(spec.name, spec.config, spec.caBundle, undefined), ambientCredentials: false, timeouts: DEFAULT_TIMEOUTS, maxSockets: DEFAULT_MAX_SOCKETS };
}

/** The whole snapshot and ranges of its random file, read through `store`, equal the source. */
async function readsBack(store: ObjectStore): Promise<void> {
  const repo = await openRepository(store, { prefix: REPO_PREFIX, naming: 'object', password: PASSWORD, signal: signal() });
  const snaps = await repo.snapshots(signal());
  assert.deepEqual(snaps.map((s) => s.id), [snapshotID]);
  const snap = snaps[0];
  assert.ok(snap);
  const { problems, entries } = await compareSnapshot(repo, snap, tree, { signal: signal() });
  assert.deepEqual(problems, []);
  assert.equal(entries, tree.size);
  const file = await repo.stat(snap, 'random.bin', signal());
  const resolved = await repo.resolveObject(file.objectID, signal());
  assert.ok(resolved.segments.length >= 2, 'several chunks');
  const ranges = rangesFor(file.size, resolved.segments.slice(1).map((s) => s.start), 6, MiB, 5);
  assert.deepEqual(await compareRanges(repo, snap, 'random.bin', join(src, 'random.bin'), ranges, signal()), []);
}

test('kopia wrote the repository sharded into subdirectories, and every blob id was recovered from its path', () => {
  assert.ok(sharded > 0, 'some blobs live in shard directories');
  assert.ok(blobs.has('kopia.repository'));
  assert.ok([...blobs.keys()].some((id) => /^p[0-9a-f]{32}-s[0-9a-f]+/.test(id)), 'a data pack');
  assert.ok([...blobs.keys()].some((id) => id.startsWith('xn0_')), 'an index blob');
});

/**
 * One store case: `start` runs the emulator, copies the blobs in under the BSL prefix and builds the
 * adapter, registering what to close; everything registered is closed after, whatever failed.
 */
function storeCase(name: string, start: (closers: (() => Promise<void>)[]) => Promise<ObjectStore>): void {
  describe(name, () => {
    const closers: (() => Promise<void>)[] = [];
    after(async () => {
      for (const close of closers.reverse()) await close();
    });
    test('the repository under a BSL prefix reads back equal to the source', async () => {
      await readsBack(await start(closers));
    });
  });
}

const key = (id: string): string => `${BSL_PREFIX}/${REPO_PREFIX}${id}`;

storeCase('S3 (s3rver)', async (closers) => {
  const srv = await startS3rver();
  closers.push(() => srv.stop());
  for (const [id, bytes] of blobs) await srv.put(key(id), bytes);
  const store = new S3Store(adapterOptions({
    name: 'velero/s3-kopia',
    provider: 'velero.io/aws',
    bucket: srv.bucket,
    prefix: BSL_PREFIX,
    config: { region: 'us-east-1', s3Url: srv.endpoint, s3ForcePathStyle: 'true' },
    credential: Buffer.from(`[default]\naws_access_key_id=${S3RVER_ACCESS_KEY_ID}\naws_secret_access_key=${S3RVER_SECRET_ACCESS_KEY}\n`),
  }));
  closers.push(() => store.close());
  return store;
});

storeCase('Azure Blob (Azurite)', async (closers) => {
  const azurite = await startAzurite();
  closers.push(() => azurite.stop());
  const writer = new BlobServiceClient(azurite.accountUrl(), newPipeline(new StorageSharedKeyCredential(AZURITE_ACCOUNT, AZURITE_KEY)));
  const container = writer.getContainerClient('backups');
  await container.create();
  for (const [id, bytes] of blobs) await container.getBlockBlobClient(key(id)).uploadData(bytes);
  const store = new AzureBlobStore(adapterOptions({
    name: 'velero/azure-kopia',
    provider: 'velero.io/azure',
    bucket: 'backups',
    prefix: BSL_PREFIX,
    config: { storageAccount: AZURITE_ACCOUNT, storageAccountURI: azurite.accountUrl(), storageAccountKeyEnvVar: 'AZURE_STORAGE_ACCOUNT_ACCESS_KEY' },
    credential: Buffer.from(`AZURE_CLOUD_NAME=AzurePublicCloud\nAZURE_STORAGE_ACCOUNT_ACCESS_KEY=${AZURITE_KEY}\n`),
  }));
  closers.push(() => store.close());
  return store;
});

storeCase('GCS (JSON API double)', async (closers) => {
  const account = createTestServiceAccount('kopia-reader@vds-test-project.iam.gserviceaccount.com');
  const double = await GcsJsonApiDouble.start();
  closers.push(() => double.close());
  double.addServiceAccount(account.email, account.publicKeyPem, account.keyId);
  double.createBucket('velero-gcs');
  for (const [id, bytes] of blobs) double.put('velero-gcs', key(id), bytes);
  const store = new GcsStore(adapterOptions({
    name: 'velero/gcs-kopia',
    provider: 'velero.io/gcp',
    bucket: 'velero-gcs',
    prefix: BSL_PREFIX,
    config: { storeEndpoint: double.url },
    credential: account.json,
  }));
  closers.push(() => store.close());
  return store;
});
