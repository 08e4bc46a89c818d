import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile, mkdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { describe, test } from 'node:test';
import { rootCertificates } from 'node:tls';
import type { AdapterOptions, ClosableStore } from '../../src/stores/adapter.ts';
import { InvalidKeyError, InvalidLocationError } from '../../src/stores/errors.ts';
import { DefaultStoreFactory, clientIdentity } from '../../src/stores/factory.ts';
import type { AdapterConstructor, FactoryOptions } from '../../src/stores/factory.ts';
import type { StoreSpec } from '../../src/stores/spec.ts';
import type { ListedObject, ObjectBody, ObjectInfo } from '../../src/stores/types.ts';
import { createTestPki } from '../support/test-ca.ts';

/** A fake network adapter: records how it was built and whether it was closed. */
class FakeClient implements ClosableStore {
  readonly opts: AdapterOptions;
  closed = false;
  bodies: PassThrough[] = [];
  constructor(opts: AdapterOptions) {
    this.opts = opts;
  }
  async stat(): Promise<ObjectInfo> {
    return { size: 3 };
  }
  async get(): Promise<ObjectBody> {
    const body = new PassThrough();
    this.bodies.push(body);
    return { size: 3, kind: 'stream', body };
  }
  async *list(): AsyncGenerator<ListedObject> {
    yield { key: 'k1', size: 3 };
    yield { key: 'k2', size: 3 };
  }
  async close(): Promise<void> {
    this.closed = true;
  }
}

function factory(extra: Partial<FactoryOptions> = {}) {
  const built: FakeClient[] = [];
  const ctor: AdapterConstructor = (o) => {
    const c = new FakeClient(o);
    built.push(c);
    return c;
  };
  const f = new DefaultStoreFactory({ fsRoot: '/nonexistent', adapters: { aws: async () => ctor }, ...extra });
  return { f, built };
}

const spec = (over: Partial<StoreSpec> = {}): StoreSpec => ({
  name: 'velero/default',
  provider: 'aws',
  bucket: 'b',
  prefix: 'p',
  config: { region: 'us-east-1' },
  credential: Buffer.from('[default]\naws_access_key_id=A\naws_secret_access_key=S\n'),
  ...over,
});
const signal = new AbortController().signal;

describe('DefaultStoreFactory', () => {
  test('one client per spec, built once even when asked concurrently', async () => {
    const { f, built } = factory();
    await Promise.all([f.forSpec(spec()), f.forSpec(spec()), f.forSpec({ ...spec(), provider: 'velero.io/aws' })]);
    assert.equal(built.length, 1);
    assert.equal(f.clientCount, 1);
  });

  test('every view of one cached client has the same identity; a rotated credential, another tenant or a plain store its own', async () => {
    const { f } = factory();
    const [a, b] = await Promise.all([f.forSpec(spec()), f.forSpec(spec())]);
    assert.notEqual(a, b, 'a view per request');
    assert.equal(clientIdentity(a), clientIdentity(b));
    const rotated = await f.forSpec(spec({ credential: Buffer.from('[default]\naws_access_key_id=B\naws_secret_access_key=T\n') }));
    assert.notEqual(clientIdentity(rotated), clientIdentity(a));
    const tenant = await f.forSpec(spec({ name: 'team-a/default', tenant: true, allowDefaultCredential: false }));
    assert.notEqual(clientIdentity(tenant), clientIdentity(a));
    const plain = new FakeClient({} as AdapterOptions);
    assert.equal(clientIdentity(plain), plain);
  });

  test('a known store comes at once: a spec seen before answers without a promise, and with its own client', async () => {
    const { f, built } = factory();
    const s = Object.freeze(spec());
    const first = f.forSpec(s);
    assert.ok(first instanceof Promise, 'the first use builds the client');
    const store = await first;
    const again = f.forSpec(s);
    assert.ok(!(again instanceof Promise), 'the same spec object: the client is known');
    assert.equal(clientIdentity(again), clientIdentity(store));
    const equal = f.forSpec(spec());
    assert.ok(!(equal instanceof Promise), 'an equal spec finds the cached client too');
    assert.equal(clientIdentity(equal), clientIdentity(store));
    assert.equal(built.length, 1);
    const fsSpec = { name: 'nfs', provider: 'replicated.com/nfs', bucket: 'b', prefix: '', config: {} };
    const fsStore = f.forSpec(fsSpec);
    assert.ok(!(fsStore instanceof Promise));
    assert.equal(f.forSpec(fsSpec), fsStore, 'one filesystem store per root');
  });

  test('config key order does not matter; a changed value does', async () => {
    const { f, built } = factory();
    await f.forSpec(spec({ config: { a: '1', b: '2' } }));
    await f.forSpec(spec({ config: { b: '2', a: '1' } }));
    assert.equal(built.length, 1);
    await f.forSpec(spec({ config: { a: '1', b: '3' } }));
    assert.equal(built.length, 2);
  });

  test('a rotated credential gets a new client; the old one closes only after its running download', async () => {
    const { f, built } = factory({ maxClients: 1 });
    const oldStore = await f.forSpec(spec());
    const running = await oldStore.get('k', { signal });
    const newStore = await f.forSpec(spec({ credential: Buffer.from('[default]\naws_access_key_id=B\naws_secret_access_key=T\n') }));
    assert.equal(built.length, 2);
    assert.notEqual(newStore, oldStore);
    // Evicted by the bound of one, but a body is still open on it.
    assert.equal(built[0]!.closed, false);
    assert.equal(running.kind, 'stream');
    running.body.resume();
    (running.body as PassThrough).end('abc');
    await new Promise((r) => running.body.once('close', r));
    await new Promise((r) => setImmediate(r));
    assert.equal(built[0]!.closed, true);
    assert.equal(built[1]!.closed, false);
  });

  test('a retired client stays open while a listing on it runs, and closes when it ends', async () => {
    const { f, built } = factory({ maxClients: 1 });
    const listing = (await f.forSpec(spec())).list('', { signal })[Symbol.asyncIterator]();
    assert.equal((await listing.next()).value?.key, 'k1');
    await f.forSpec(spec({ credential: Buffer.from('[default]\naws_access_key_id=B\naws_secret_access_key=T\n') }));
    assert.equal(built[0]!.closed, false);
    await listing.return?.(undefined);
    await new Promise((r) => setImmediate(r));
    assert.equal(built[0]!.closed, true);
  });

  test('the LRU bound closes idle clients at once', async () => {
    const { f, built } = factory({ maxClients: 2 });
    for (const bucket of ['a', 'b', 'c']) await (await f.forSpec(spec({ bucket }))).stat('k', { signal });
    await new Promise((r) => setImmediate(r));
    assert.deepEqual(built.map((c) => c.closed), [true, false, false]);
    assert.equal(f.clientCount, 2);
  });

  test('idle clients are closed after idleMs', async () => {
    const { f, built } = factory({ idleMs: 50 });
    await f.forSpec(spec());
    await new Promise((r) => setTimeout(r, 200));
    assert.equal(built[0]!.closed, true);
  });

  test('the default credential stands in only where allowed; tenants get neither it nor the ambient chain', async () => {
    const dflt = Buffer.from('[default]\naws_access_key_id=GATEWAY\naws_secret_access_key=X\n');
    const { f, built } = factory({ defaultCredential: dflt });
    await f.forSpec(spec({ credential: undefined }));
    await f.forSpec(spec({ credential: undefined, allowDefaultCredential: false, name: 'team-a/bsl' }));
    assert.deepEqual(built[0]!.opts.spec.credential, dflt);
    assert.equal(built[0]!.opts.ambientCredentials, false);
    assert.equal(built[1]!.opts.spec.credential, undefined);
    assert.equal(built[1]!.opts.ambientCredentials, false);
    const { f: g, built: b2 } = factory();
    await g.forSpec(spec({ credential: undefined }));
    assert.equal(b2[0]!.opts.ambientCredentials, true, 'no default file: the SDK chain may apply');
  });

  test('trust: location and install bundles are added to the system roots; insecure is reported once', async () => {
    const pki = await createTestPki();
    const insecure: string[] = [];
    const { f, built } = factory({ installCaBundle: pki.caCert, onInsecure: (l) => insecure.push(l) });
    await f.forSpec(spec({ caBundle: pki.caCert }));
    const ca = built[0]!.opts.trust.ca!;
    assert.equal(ca.length, rootCertificates.length + 2, 'system roots + install bundle + location bundle');
    assert.equal(ca.filter((c) => c.trim() === pki.caCert.trim()).length, 2);
    assert.equal(built[0]!.opts.trust.rejectUnauthorized, true);
    await f.forSpec(spec({ config: { insecureSkipTLSVerify: 'true' } }));
    await f.forSpec(spec({ config: { insecureSkipTLSVerify: 'true' } }));
    assert.deepEqual(insecure, ['velero/default']);
    assert.equal(built[1]!.opts.trust.rejectUnauthorized, false);
  });

  test('insecureSkipTLSVerify is read as a boolean for every provider; anything else is a location error', async () => {
    const built: FakeClient[] = [];
    const ctor: AdapterConstructor = (o) => {
      const c = new FakeClient(o);
      built.push(c);
      return c;
    };
    const f = new DefaultStoreFactory({ fsRoot: '/nonexistent', adapters: { aws: async () => ctor, azure: async () => ctor, gcp: async () => ctor } });
    for (const provider of ['aws', 'azure', 'gcp']) {
      await assert.rejects(
        async () => f.forSpec(spec({ provider, config: { insecureSkipTLSVerify: 'maybe' } })),
        (e: Error) => e instanceof InvalidLocationError && /config insecureSkipTLSVerify must be true or false/.test(e.message),
        provider,
      );
      await f.forSpec(spec({ provider, config: { insecureSkipTLSVerify: 'False' } }));
      await f.forSpec(spec({ provider, config: { insecureSkipTLSVerify: '1' } }));
    }
    assert.deepEqual(
      built.map((c) => c.opts.trust.rejectUnauthorized),
      [true, false, true, false, true, false],
    );
  });

  test('a malformed CA bundle is a location error that does not quote it', async () => {
    const { f } = factory();
    await assert.rejects(async () => f.forSpec(spec({ caBundle: 'not a pem SECRETISH' })), (e: Error) => e instanceof InvalidLocationError && !e.message.includes('SECRETISH'));
  });

  test('unknown providers are refused by name', async () => {
    const { f } = factory();
    await assert.rejects(async () => f.forSpec(spec({ provider: 'example.com/nope' })), /provider "example.com\/nope" is not supported/);
  });

  test('filesystem locations: bucket and prefix are directories under the mount root, and cannot climb out', async () => {
    const root = await mkdtemp(join(tmpdir(), 'vds-factory-'));
    try {
      await mkdir(join(root, 'nfs-bucket', 'cluster-a', 'backups', 'b'), { recursive: true });
      await writeFile(join(root, 'nfs-bucket', 'cluster-a', 'backups', 'b', 'b-logs.gz'), 'xyz');
      const f = new DefaultStoreFactory({ fsRoot: root });
      const store = await f.forSpec({ name: 'nfs', provider: 'replicated.com/nfs', bucket: 'nfs-bucket', prefix: '/cluster-a/', config: {} });
      assert.equal((await store.stat('backups/b/b-logs.gz', { signal })).size, 3);
      await assert.rejects(async () => f.forSpec({ name: 'x', provider: 'replicated.com/hostpath', bucket: '..', prefix: '', config: {} }), InvalidKeyError);
      await assert.rejects(async () => f.forSpec({ name: 'x', provider: 'filesystem', bucket: 'b', prefix: '../..', config: {} }), InvalidLocationError);
    } finally {
      await rm(root, { recursive: true, force: true });
    }
  });
});
