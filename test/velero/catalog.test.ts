/**
 * The catalog of Backups and Restores (src/velero/catalog.ts). Kubernetes mode against the
 * Kubernetes API test double through the real client and object reader; local mode against a real
 * filesystem store in a temporary directory (the demo data, then hostile folders and files), and a
 * store that hands back keys no filesystem could hold. Untrusted fields of the wrong type are left
 * out, names that are not DNS-1123 are skipped, lists are sorted and capped.
 */
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readFile, readdir, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { createKubeClients } from '../../src/kube/client.ts';
import { KubeUnavailableError } from '../../src/kube/errors.ts';
import { CachedObjectReader } from '../../src/kube/objects.ts';
import type { CatalogPlural, CatalogReader, KubeObject } from '../../src/kube/objects.ts';
import { StoreUnavailableError } from '../../src/stores/errors.ts';
import { FilesystemStore } from '../../src/stores/fs.ts';
import type { StoreSpec } from '../../src/stores/spec.ts';
import type { ListedObject, ObjectStore } from '../../src/stores/types.ts';
import { KubeCatalog, LocalCatalog, MAX_CATALOG_ENTRIES, TooManyObjectsError } from '../../src/velero/catalog.ts';
import type { CatalogEntry } from '../../src/velero/catalog.ts';
import { DEMO_BACKUP, DEMO_RESTORE, writeDemoIfEmpty } from '../../src/velero/demo.ts';
import { NotFoundError } from '../../src/velero/errors.ts';
import type { KubeObject as ApiObject } from '../support/kube-apiserver/index.ts';
import { kubeFixture, velero } from '../support/kube-fixture.ts';
import type { KubeFixture } from '../support/kube-fixture.ts';
import { MemoryStore } from '../support/memory-store.ts';

const signal = AbortSignal.timeout(60_000);
const T0 = '2026-03-01T02:00:00Z';
const T1 = '2026-03-01T02:05:31Z';
const EXP = '2026-03-31T02:00:00Z';

const withStatus = (obj: ApiObject, status: unknown): ApiObject => ({ ...obj, status });

describe('KubeCatalog against the API test double', () => {
  let fx: KubeFixture;
  let reader: CachedObjectReader;

  before(async () => {
    fx = await kubeFixture({ namespaces: ['default', 'velero', 'team-a', 'team-b', 'other'] });
    const api = fx.api;
    // Replace the fixture's backup and restore with ones that have a status, and add more, out of order.
    api.put(withStatus(velero('Backup', 'nightly', { storageLocation: 'default' }), { phase: 'Completed', startTimestamp: T0, completionTimestamp: T1, expiration: EXP, errors: 0, warnings: 2 }));
    api.put(withStatus(velero('Backup', 'b-weekly', { storageLocation: 'secondary' }), { phase: 'InProgress', startTimestamp: T0 }));
    api.put(velero('Backup', 'a.manual', {}));
    api.put(velero('Backup', '0-first', { storageLocation: 'default' }));
    api.put(withStatus(velero('Restore', 'nightly-restore', { backupName: 'nightly' }), { phase: 'PartiallyFailed', startTimestamp: T0, completionTimestamp: T1, errors: 3, warnings: 1 }));
    api.put(withStatus(velero('Restore', 'orphan-restore', { backupName: 'deleted-backup' }), { phase: 'Completed' }));
    api.put(velero('Backup', 'team-a-daily', { storageLocation: 'default' }, 'team-a'));
    api.put(velero('Backup', 'team-b-daily', { storageLocation: 'default' }, 'team-b'));
    api.put(velero('Backup', 'elsewhere', { storageLocation: 'default' }, 'other'));
    // No caching: each test reads what the double holds now.
    reader = new CachedObjectReader(createKubeClients({ kubeconfig: fx.kubeconfigFile, qps: 1000, burst: 1000, timeoutMs: 5_000 }), { ttlMs: 0, missingTtlMs: 0, max: 100 });
  });
  after(() => fx?.close());

  test('backups: every field read, sorted by name (code point order)', async () => {
    const catalog = new KubeCatalog(reader, { ownNamespace: 'velero', watchNamespaces: [] });
    const entries = await catalog.list('backups', 'velero', signal);
    assert.deepEqual(entries, [
      { owner: 'backups', namespace: 'velero', name: '0-first', location: 'default' },
      { owner: 'backups', namespace: 'velero', name: 'a.manual' },
      { owner: 'backups', namespace: 'velero', name: 'b-weekly', phase: 'InProgress', started: T0, location: 'secondary' },
      { owner: 'backups', namespace: 'velero', name: 'nightly', phase: 'Completed', started: T0, completed: T1, expires: EXP, location: 'default', errors: 0, warnings: 2 },
    ]);
    assert.ok(fx.api.calls.count({ verb: 'list', resource: 'backups', namespace: 'velero' }) >= 1, 'listed through the API');
  });

  test('restores: spec.backupName, and the location of a backup that exists', async () => {
    const catalog = new KubeCatalog(reader, { ownNamespace: 'velero', watchNamespaces: [] });
    assert.deepEqual(await catalog.list('restores', 'velero', signal), [
      { owner: 'restores', namespace: 'velero', name: 'nightly-restore', phase: 'PartiallyFailed', started: T0, completed: T1, backup: 'nightly', location: 'default', errors: 3, warnings: 1 },
      { owner: 'restores', namespace: 'velero', name: 'orphan-restore', phase: 'Completed', backup: 'deleted-backup' },
    ]);
  });

  test('hostile and malformed objects: wrong types leave fields out, bad names are skipped, nothing throws', async () => {
    const api = fx.api;
    const ns = 'team-b';
    api.put({ apiVersion: 'velero.io/v1', kind: 'Backup', metadata: { name: 'status-string', namespace: ns }, spec: 'nope', status: 'Completed' });
    api.put({ apiVersion: 'velero.io/v1', kind: 'Backup', metadata: { name: 'status-array', namespace: ns }, spec: [], status: ['Completed'] });
    api.put({ apiVersion: 'velero.io/v1', kind: 'Backup', metadata: { name: 'status-null', namespace: ns }, spec: null, status: null });
    api.put(withStatus(velero('Backup', 'wrong-types', { storageLocation: 42 }, ns), {
      phase: { evil: true }, startTimestamp: 1_700_000_000, completionTimestamp: ['2026-01-01T00:00:00Z'], expiration: true, errors: '3', warnings: -1,
    }));
    api.put(withStatus(velero('Backup', 'bad-values', { storageLocation: '../etc' }, ns), {
      phase: '<script>alert(1)</script>', startTimestamp: 'yesterday', completionTimestamp: '2026-13-45T99:99:99Z', expiration: `${T0} `, errors: 1.5, warnings: Number.MAX_SAFE_INTEGER + 2,
    }));
    api.put(withStatus(velero('Backup', 'long-phase', { storageLocation: 'x'.repeat(254) }, ns), { phase: 'A'.repeat(65), startTimestamp: '2026-03-01T02:00:00.123456789+02:00' }));
    // Names the API server would refuse, as a hostile or broken source might still hand out.
    for (const name of ['Bad_Name', '..', 'UPPER', 'a'.repeat(254), '-lead']) api.put(velero('Backup', name, { storageLocation: 'default' }, ns));
    const catalog = new KubeCatalog(reader, { ownNamespace: 'velero', watchNamespaces: ['team-b'] });
    const entries = await catalog.list('backups', ns, signal);
    assert.deepEqual(entries, [
      { owner: 'backups', namespace: ns, name: 'bad-values' },
      { owner: 'backups', namespace: ns, name: 'long-phase', started: '2026-03-01T02:00:00.123456789+02:00' },
      { owner: 'backups', namespace: ns, name: 'status-array' },
      { owner: 'backups', namespace: ns, name: 'status-null' },
      { owner: 'backups', namespace: ns, name: 'status-string' },
      { owner: 'backups', namespace: ns, name: 'team-b-daily', location: 'default' },
      { owner: 'backups', namespace: ns, name: 'wrong-types' },
    ]);
  });

  test('a namespace not served, or no namespace name at all, is NotFoundError without an API call', async () => {
    const catalog = new KubeCatalog(reader, { ownNamespace: 'velero', watchNamespaces: ['team-*'] });
    fx.api.calls.clear();
    for (const ns of ['other', 'default', 'Velero', '', 'team-a/../other', 'team-']) {
      await assert.rejects(catalog.list('backups', ns, signal), (err: unknown) => err instanceof NotFoundError && err.details.kind === 'namespaces' && err.details.name === ns, ns);
    }
    assert.equal(fx.api.calls.count({ resource: 'backups' }), 0);
    // A glob-matched namespace is served.
    assert.deepEqual((await catalog.list('backups', 'team-a', signal)).map((e) => e.name), ['team-a-daily']);
  });

  test('namespaces: the named ones with no API call; with a glob, the matching namespaces that hold Backups', async () => {
    fx.api.calls.clear();
    const named = new KubeCatalog(reader, { ownNamespace: 'velero', watchNamespaces: ['team-b', 'team-a', 'velero'] });
    assert.deepEqual(await named.namespaces(signal), ['team-a', 'team-b', 'velero']);
    assert.equal(fx.api.calls.count(), 0, 'no API call for named namespaces');
    const globbed = new KubeCatalog(reader, { ownNamespace: 'velero', watchNamespaces: ['team-*', 'default'] });
    // `other` holds a Backup but is not served; `default` is named though it holds none.
    assert.deepEqual(await globbed.namespaces(signal), ['default', 'team-a', 'team-b', 'velero']);
    const lists = fx.api.calls.list({ verb: 'list', resource: 'backups' });
    assert.deepEqual(lists.map((c) => c.namespace), [''], 'one cluster-wide list');
    assert.match(lists[0]!.query, /limit=2001/);
  });

  test('the cap: more objects than the reader lists is TooManyObjectsError, as is more than the catalog keeps', async () => {
    const small = new CachedObjectReader(createKubeClients({ kubeconfig: fx.kubeconfigFile, qps: 1000, burst: 1000, timeoutMs: 5_000 }), { ttlMs: 0, missingTtlMs: 0, max: 100, maxListed: 3 });
    const overReader = new KubeCatalog(small, { ownNamespace: 'velero', watchNamespaces: [] });
    await assert.rejects(overReader.list('backups', 'velero', signal), TooManyObjectsError);
    const glob = new KubeCatalog(small, { ownNamespace: 'velero', watchNamespaces: ['team-*'] });
    await assert.rejects(glob.namespaces(signal), TooManyObjectsError);
    const overCatalog = new KubeCatalog(reader, { ownNamespace: 'velero', watchNamespaces: [], maxEntries: 3 });
    await assert.rejects(overCatalog.list('backups', 'velero', signal), /more than 3 backups\.velero\.io in namespace "velero"/);
    // At the cap exactly, all are listed.
    assert.equal((await new KubeCatalog(reader, { ownNamespace: 'velero', watchNamespaces: [], maxEntries: 4 }).list('backups', 'velero', signal)).length, 4);
    assert.equal(MAX_CATALOG_ENTRIES, 2_000);
  });

  test('an API failure surfaces as KubeUnavailableError', async () => {
    const catalog = new KubeCatalog(reader, { ownNamespace: 'velero', watchNamespaces: [] });
    const fault = fx.api.faults.add({ match: { resource: 'restores', verb: 'list' }, status: 500, times: 1 });
    try {
      await assert.rejects(catalog.list('restores', 'velero', signal), KubeUnavailableError);
    } finally {
      fault.remove();
    }
  });

  test('lists are cached: a second list within the TTL makes no API call', async () => {
    const cached = new CachedObjectReader(createKubeClients({ kubeconfig: fx.kubeconfigFile, qps: 1000, burst: 1000, timeoutMs: 5_000 }), { ttlMs: 60_000, missingTtlMs: 2_000, max: 100 });
    const catalog = new KubeCatalog(cached, { ownNamespace: 'velero', watchNamespaces: [] });
    fx.api.calls.clear();
    const first = await catalog.list('backups', 'velero', signal);
    const second = await catalog.list('backups', 'velero', signal);
    assert.deepEqual(second, first);
    assert.equal(fx.api.calls.count({ verb: 'list', resource: 'backups' }), 1);
  });
});

/** A CatalogReader handing back whatever a test gives it, as a broken or hostile source might. */
function fakeReader(items: Partial<Record<CatalogPlural, unknown[] | Error>>): CatalogReader {
  return {
    veleroCollection: async (plural: CatalogPlural) => {
      const v = items[plural] ?? [];
      if (v instanceof Error) throw v;
      return v as KubeObject[];
    },
  };
}

describe('KubeCatalog over a reader that hands back garbage', () => {
  test('items that are not objects, or with getters, other namespaces or duplicate names, never throw', async () => {
    let touched = false;
    const trap = Object.defineProperty({ metadata: { name: 'trap', namespace: 'velero' } }, 'status', {
      enumerable: true,
      get: () => {
        touched = true;
        throw new TypeError('a getter ran');
      },
    });
    const inherited = Object.create({ status: { phase: 'Completed' } }) as Record<string, unknown>;
    inherited.metadata = { name: 'inherited', namespace: 'velero' };
    const items = [
      null, 5, 'backup', [], true,
      { metadata: 'x' }, { metadata: null }, { metadata: { name: 7, namespace: 'velero' } },
      { metadata: { name: 'foreign', namespace: 'team-a' } },
      { metadata: { name: 'no-namespace' } },
      { metadata: { name: 'dup', namespace: 'velero' }, status: { phase: 'Completed' } },
      { metadata: { name: 'dup', namespace: 'velero' }, status: { phase: 'Failed' } },
      JSON.parse('{"metadata":{"name":"proto","namespace":"velero"},"status":{"__proto__":{"phase":"Completed"}}}'),
      trap,
      inherited,
    ];
    const catalog = new KubeCatalog(fakeReader({ backups: items }), { ownNamespace: 'velero', watchNamespaces: [] });
    const entries = await catalog.list('backups', 'velero', signal);
    assert.deepEqual(entries.map((e) => [e.name, e.phase]), [['dup', 'Completed'], ['inherited', undefined], ['proto', undefined], ['trap', undefined]]);
    assert.equal(touched, false, 'an accessor property is not read as a value');
  });

  test('restores are listed without locations when the backups cannot be listed', async () => {
    const restores = [{ metadata: { name: 'r1', namespace: 'velero' }, spec: { backupName: 'b1' } }];
    const failing = new KubeCatalog(fakeReader({ restores, backups: new TooManyObjectsError('too many') }), { ownNamespace: 'velero', watchNamespaces: [] });
    assert.deepEqual(await failing.list('restores', 'velero', signal), [{ owner: 'restores', namespace: 'velero', name: 'r1', backup: 'b1' }]);
    const working = new KubeCatalog(fakeReader({ restores, backups: [{ metadata: { name: 'b1', namespace: 'velero' }, spec: { storageLocation: 'loc' } }] }), { ownNamespace: 'velero', watchNamespaces: [] });
    assert.deepEqual(await working.list('restores', 'velero', signal), [{ owner: 'restores', namespace: 'velero', name: 'r1', backup: 'b1', location: 'loc' }]);
  });

  test('namespaces with a glob skip namespace values that are not served or not names', async () => {
    const backups = [
      { metadata: { name: 'a', namespace: 'team-x' } },
      { metadata: { name: 'a', namespace: 'Team-Y' } },
      { metadata: { name: 'a', namespace: 'team-' } },
      { metadata: { name: 'a', namespace: 5 } },
      { metadata: { name: 'a', namespace: 'prod' } },
      null,
    ];
    const catalog = new KubeCatalog(fakeReader({ backups }), { ownNamespace: 'velero', watchNamespaces: ['team-*'] });
    assert.deepEqual(await catalog.namespaces(signal), ['team-x', 'velero']);
  });

  test('an aborted signal rejects at once', async () => {
    const catalog = new KubeCatalog(fakeReader({}), { ownNamespace: 'velero', watchNamespaces: [] });
    const aborted = AbortSignal.abort(new Error('gone'));
    await assert.rejects(catalog.list('backups', 'velero', aborted), /gone/);
    await assert.rejects(catalog.namespaces(aborted), /gone/);
  });
});

/** Local mode's locations over filesystem directories. */
function fsLocations(...dirs: [name: string, root: string][]): { specs: StoreSpec[]; stores: { forSpec: (s: StoreSpec) => ObjectStore } } {
  const specs = dirs.map(([name]): StoreSpec => ({ name, provider: 'filesystem', bucket: '', prefix: '', config: {} }));
  const byName = new Map(dirs.map(([name, root]) => [name, new FilesystemStore({ root })]));
  return { specs, stores: { forSpec: (s) => byName.get(s.name)! } };
}

/** The summed size of the files in a directory (not recursive: Velero's folders are flat). */
async function folderSize(dir: string): Promise<number> {
  let n = 0;
  for (const f of await readdir(dir)) n += (await stat(join(dir, f))).size;
  return n;
}

async function put(root: string, key: string, body: string | Buffer): Promise<void> {
  const path = join(root, ...key.split('/'));
  await mkdir(join(path, '..'), { recursive: true });
  await writeFile(path, body);
}

const backupJson = (name: string, status: unknown, extra: Record<string, unknown> = {}): string =>
  JSON.stringify({ apiVersion: 'velero.io/v1', kind: 'Backup', metadata: { name, namespace: 'velero' }, spec: { storageLocation: 'default' }, status, ...extra });

describe('LocalCatalog on a filesystem store', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'vds-catalog-'));
  });
  after(() => rm(dir, { recursive: true, force: true }));

  test('the demo data: its backup with phase and times from velero-backup.json, its restore, sizes of their folders', async () => {
    const root = join(dir, 'demo');
    assert.ok((await writeDemoIfEmpty(root)).length > 0);
    const { specs, stores } = fsLocations(['data-dir', root]);
    const catalog = new LocalCatalog('velero', specs, stores);
    assert.deepEqual(await catalog.namespaces(signal), ['velero']);
    const [backup, ...more] = await catalog.list('backups', 'velero', signal);
    assert.deepEqual(more, []);
    const doc = JSON.parse(await readFile(join(root, 'backups', DEMO_BACKUP, 'velero-backup.json'), 'utf8')) as { status: { startTimestamp: string; completionTimestamp: string } };
    assert.deepEqual(backup, {
      owner: 'backups', namespace: 'velero', name: DEMO_BACKUP, phase: 'Completed',
      started: doc.status.startTimestamp, completed: doc.status.completionTimestamp,
      location: 'data-dir', size: await folderSize(join(root, 'backups', DEMO_BACKUP)),
    });
    assert.ok((backup?.size ?? 0) > 1000);
    assert.deepEqual(await catalog.list('restores', 'velero', signal), [
      { owner: 'restores', namespace: 'velero', name: DEMO_RESTORE, location: 'data-dir', size: await folderSize(join(root, 'restores', DEMO_RESTORE)) },
    ]);
  });

  test('a namespace not served is NotFoundError', async () => {
    const { specs, stores } = fsLocations(['data-dir', join(dir, 'demo')]);
    const catalog = new LocalCatalog('velero', specs, stores);
    for (const ns of ['other', '', '../velero']) {
      await assert.rejects(catalog.list('backups', ns, signal), (err: unknown) => err instanceof NotFoundError && err.details.name === ns);
    }
  });

  test('hostile folders and files: bad names skipped, broken, huge or foreign velero-backup.json leaves fields undefined', async () => {
    const root = join(dir, 'hostile');
    await put(root, 'backups/good/velero-backup.json', backupJson('good', { phase: 'Completed', startTimestamp: T0, completionTimestamp: T1, expiration: EXP, errors: 1, warnings: 4 }));
    await put(root, 'backups/good/good-logs.gz', 'x'.repeat(100));
    await put(root, 'backups/broken/velero-backup.json', '{"status": {"phase": "Compl');
    await put(root, 'backups/array/velero-backup.json', '[1,2,3]');
    await put(root, 'backups/nulls/velero-backup.json', 'null');
    await put(root, 'backups/types/velero-backup.json', backupJson('types', { phase: 7, startTimestamp: { t: 1 }, errors: '2', warnings: -3 }));
    await put(root, 'backups/status-string/velero-backup.json', backupJson('status-string', 'Completed'));
    // A copy of another backup's file: not trusted as this one's.
    await put(root, 'backups/impostor/velero-backup.json', backupJson('good', { phase: 'Completed' }));
    // Just over the 1 MiB bound, and valid JSON with a phase: never read.
    const huge = backupJson('huge', { phase: 'Completed', startTimestamp: T0 }, { padding: 'p'.repeat(1024 * 1024) });
    await put(root, 'backups/huge/velero-backup.json', huge);
    await put(root, 'backups/no-metadata/no-metadata-logs.gz', 'log');
    // Names that cannot be backups.
    for (const name of ['Bad_Name', 'UPPER', '-lead', 'a..b', 'dots.', 'sp ace', 'x'.repeat(254)]) await put(root, `backups/${name}/velero-backup.json`, backupJson(name, { phase: 'Completed' }));
    // A file at the top of backups/, and a nested folder.
    await put(root, 'backups/loose-file', 'x');
    await put(root, 'backups/nested/sub/velero-backup.json', backupJson('nested', { phase: 'Completed' }));
    // A symlink out of the root: the store does not follow it, so nothing of it is listed.
    const outside = join(dir, 'outside');
    await put(outside, 'velero-backup.json', backupJson('escape', { phase: 'Completed' }));
    await symlink(outside, join(root, 'backups', 'escape'));

    const { specs, stores } = fsLocations(['data-dir', root]);
    const entries = await new LocalCatalog('velero', specs, stores).list('backups', 'velero', signal);
    const size = (key: string): number => Buffer.byteLength(key);
    const e = (name: string, bytes: number, fields: Partial<CatalogEntry> = {}): CatalogEntry => ({ owner: 'backups', namespace: 'velero', name, location: 'data-dir', size: bytes, ...fields });
    assert.deepEqual(entries, [
      e('array', 7),
      e('broken', 27),
      e('good', size(backupJson('good', { phase: 'Completed', startTimestamp: T0, completionTimestamp: T1, expiration: EXP, errors: 1, warnings: 4 })) + 100, { phase: 'Completed', started: T0, completed: T1, expires: EXP, errors: 1, warnings: 4 }),
      e('huge', size(huge)),
      e('impostor', size(backupJson('good', { phase: 'Completed' }))),
      e('nested', size(backupJson('nested', { phase: 'Completed' }))),
      e('no-metadata', 3),
      e('nulls', 4),
      e('status-string', size(backupJson('status-string', 'Completed'))),
      e('types', size(backupJson('types', { phase: 7, startTimestamp: { t: 1 }, errors: '2', warnings: -3 }))),
    ]);
  });

  test('several locations: the first that has a name wins; names from all, sorted', async () => {
    const first = join(dir, 'loc-1');
    const second = join(dir, 'loc-2');
    await put(first, 'backups/shared/velero-backup.json', backupJson('shared', { phase: 'Completed' }));
    await put(first, 'restores/only-first/restore-only-first-logs.gz', 'ab');
    await put(second, 'backups/shared/velero-backup.json', backupJson('shared', { phase: 'Failed', startTimestamp: T0 }));
    await put(second, 'backups/shared/shared-logs.gz', 'a long log'.repeat(10));
    await put(second, 'backups/a-second/velero-backup.json', backupJson('a-second', { phase: 'Failed' }));
    await put(second, 'restores/b-second/restore-b-second-logs.gz', 'abc');
    const { specs, stores } = fsLocations(['data-dir', first], ['archive', second]);
    const catalog = new LocalCatalog('velero', specs, stores);
    assert.deepEqual(await catalog.list('backups', 'velero', signal), [
      { owner: 'backups', namespace: 'velero', name: 'a-second', phase: 'Failed', location: 'archive', size: Buffer.byteLength(backupJson('a-second', { phase: 'Failed' })) },
      { owner: 'backups', namespace: 'velero', name: 'shared', phase: 'Completed', location: 'data-dir', size: Buffer.byteLength(backupJson('shared', { phase: 'Completed' })) },
    ]);
    assert.deepEqual(await catalog.list('restores', 'velero', signal), [
      { owner: 'restores', namespace: 'velero', name: 'b-second', location: 'archive', size: 3 },
      { owner: 'restores', namespace: 'velero', name: 'only-first', location: 'data-dir', size: 2 },
    ]);
  });

  test('the caps: more names or more keys than allowed is TooManyObjectsError; at the cap all are listed', async () => {
    const root = join(dir, 'many');
    for (let i = 0; i < 5; i++) {
      await put(root, `backups/b${i}/velero-backup.json`, backupJson(`b${i}`, { phase: 'Completed' }));
      await put(root, `backups/b${i}/b${i}-logs.gz`, 'x');
    }
    const { specs, stores } = fsLocations(['data-dir', root]);
    await assert.rejects(new LocalCatalog('velero', specs, stores, { maxEntries: 4 }).list('backups', 'velero', signal), (err: unknown) => err instanceof TooManyObjectsError && /more than 4 backups/.test(err.message));
    await assert.rejects(new LocalCatalog('velero', specs, stores, { maxKeys: 9 }).list('backups', 'velero', signal), (err: unknown) => err instanceof TooManyObjectsError && /more than 9 objects under backups\//.test(err.message));
    const all = await new LocalCatalog('velero', specs, stores, { maxEntries: 5, maxKeys: 10 }).list('backups', 'velero', signal);
    assert.deepEqual(all.map((x) => [x.name, x.phase]), [0, 1, 2, 3, 4].map((i) => [`b${i}`, 'Completed']));
    // A per-list budget of metadata bytes: past it, the remaining backups are listed without fields.
    const one = Buffer.byteLength(backupJson('b0', { phase: 'Completed' }));
    const budgeted = await new LocalCatalog('velero', specs, stores, { maxMetadataBytesPerList: one * 2 }).list('backups', 'velero', signal);
    assert.deepEqual(budgeted.map((x) => x.phase), ['Completed', 'Completed', undefined, undefined, undefined]);
    // A lower per-file bound.
    const bounded = await new LocalCatalog('velero', specs, stores, { maxMetadataBytes: one - 1 }).list('backups', 'velero', signal);
    assert.deepEqual(bounded.map((x) => x.phase), [undefined, undefined, undefined, undefined, undefined]);
  });

  test('a listing is cached for a few seconds, and callers get their own copies', async () => {
    const root = join(dir, 'cached');
    await put(root, 'backups/one/velero-backup.json', backupJson('one', { phase: 'Completed' }));
    const { specs, stores } = fsLocations(['data-dir', root]);
    const catalog = new LocalCatalog('velero', specs, stores);
    const first = await catalog.list('backups', 'velero', signal);
    first[0]!.name = 'changed';
    await put(root, 'backups/two/velero-backup.json', backupJson('two', { phase: 'Completed' }));
    assert.deepEqual((await catalog.list('backups', 'velero', signal)).map((x) => x.name), ['one'], 'the cached listing, unchanged by a caller');
    const fresh = new LocalCatalog('velero', specs, stores, { ttlMs: 0 });
    assert.deepEqual((await fresh.list('backups', 'velero', signal)).map((x) => x.name), ['one', 'two']);
  });

  test('a location whose root does not exist holds nothing; one that cannot be listed fails the list', async () => {
    const { specs, stores } = fsLocations(['gone', join(dir, 'does-not-exist')], ['data-dir', join(dir, 'demo')]);
    assert.deepEqual((await new LocalCatalog('velero', specs, stores).list('backups', 'velero', signal)).map((e) => [e.name, e.location]), [[DEMO_BACKUP, 'data-dir']]);
    const down = new MemoryStore();
    down.failWith = new StoreUnavailableError('location down: connection refused');
    const both = [...specs, { ...specs[0]!, name: 'down' }];
    const catalog = new LocalCatalog('velero', both, { forSpec: (s) => (s.name === 'down' ? down : stores.forSpec(s)) });
    await assert.rejects(catalog.list('backups', 'velero', signal), StoreUnavailableError);
  });
});

/** A store that lists whatever keys it is given, as no conforming store would. */
function listingStore(keys: string[], files: Record<string, string> = {}): ObjectStore {
  const memory = new MemoryStore();
  for (const [k, v] of Object.entries(files)) memory.put(k, v);
  return {
    stat: (key, o) => memory.stat(key, o),
    get: (key, o) => memory.get(key, o),
    async *list(prefix: string): AsyncIterable<ListedObject> {
      for (const key of keys) if (key.startsWith(prefix)) yield { key, size: 1 };
    },
  };
}

describe('LocalCatalog over a store that lists keys trying path tricks', () => {
  test('only `<owner>/<dns-1123 name>/<file>` keys count', async () => {
    const keys = [
      'backups/../etc/velero-backup.json',
      'backups/./x/velero-backup.json',
      'backups//velero-backup.json',
      'backups/%2e%2e/velero-backup.json',
      'backups/a%2Fb/velero-backup.json',
      'backups/null\u0000byte/f',
      'backups/back\\slash/f',
      'backups/trailing/',
      'backups/no-folder',
      'backups/ok/velero-backup.json',
      'backups/ok/ok-logs.gz',
      'backupsX/sneaky/velero-backup.json',
    ];
    const store = listingStore(keys, { 'backups/ok/velero-backup.json': backupJson('ok', { phase: 'Completed' }) });
    const spec: StoreSpec = { name: 'data-dir', provider: 'filesystem', bucket: '', prefix: '', config: {} };
    const entries = await new LocalCatalog('velero', [spec], { forSpec: () => store }).list('backups', 'velero', signal);
    assert.deepEqual(entries, [{ owner: 'backups', namespace: 'velero', name: 'ok', location: 'data-dir', size: 2, phase: 'Completed' }]);
  });
});
