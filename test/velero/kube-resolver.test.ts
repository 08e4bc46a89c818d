/**
 * KubeResolver on its own, over an in-memory ObjectReader (a test double of the project's own
 * interface, not of a server): a warm resolution comes at once (no promise), the store spec made of
 * a BSL object and its Secrets is built once and shared (frozen), and it follows a changed BSL or a
 * rotated Secret as soon as the reader hands out the new object. Resolution against the API server
 * itself is tested in test/kube/ (resolution-s3, tenancy).
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { V1Secret } from '@kubernetes/client-node';
import type { KubeObject, ObjectReader, VeleroPlural } from '../../src/kube/objects.ts';
import { KubeResolver } from '../../src/velero/kube-resolver.ts';
import type { Location } from '../../src/velero/resolve.ts';
import { TenancyError } from '../../src/velero/errors.ts';

const signal = new AbortController().signal;
const target = { namespace: 'velero', owner: 'backups', name: 'nightly', artifact: 'log' } as const;

/** Objects by `plural/namespace/name`; `async` answers each read as a promise, as a cache miss would. */
function reader(async = false): ObjectReader & { objects: Map<string, KubeObject | V1Secret> } {
  const objects = new Map<string, KubeObject | V1Secret>();
  const answer = <T>(v: T): T | Promise<T> => (async ? Promise.resolve(v) : v);
  return {
    objects,
    velero: (plural: VeleroPlural, namespace: string, name: string) => answer(objects.get(`${plural}/${namespace}/${name}`)),
    secret: (namespace: string, name: string) => answer(objects.get(`secrets/${namespace}/${name}`) as V1Secret | undefined),
    veleroList: () => Promise.resolve([]),
  };
}

function bsl(namespace: string, prefix: string, credential?: string): KubeObject {
  return {
    metadata: { name: 'default', namespace },
    spec: {
      provider: 'aws',
      objectStorage: { bucket: 'velero', prefix },
      config: { region: 'minio', s3Url: 'http://minio:9000' },
      ...(credential && { credential: { name: credential, key: 'cloud' } }),
    },
  };
}

const secret = (text: string): V1Secret => ({ data: { cloud: Buffer.from(text).toString('base64') } });

function cluster(async = false, namespace = 'velero'): ReturnType<typeof reader> {
  const r = reader(async);
  r.objects.set(`backups/${namespace}/nightly`, { metadata: { name: 'nightly', namespace }, spec: { storageLocation: 'default' } });
  r.objects.set(`backupstoragelocations/${namespace}/default`, bsl(namespace, 'cluster-a', 'cloud-credentials'));
  r.objects.set(`secrets/${namespace}/cloud-credentials`, secret('key-1'));
  return r;
}

const opts = { serves: () => true, ownNamespace: 'velero', isFilesystemProvider: (p: string) => p === 'filesystem', tenantFilesystemAllow: new Map() };

describe('KubeResolver', () => {
  test('cached objects: the location comes at once, not as a promise, with the BSL spec and the credential', () => {
    const location = new KubeResolver(cluster(), opts).resolve(target, signal);
    assert.ok(!(location instanceof Promise));
    assert.equal(location.key, 'backups/nightly/nightly-logs.gz');
    assert.equal(location.spec.name, 'velero/default');
    assert.equal(location.spec.prefix, 'cluster-a');
    assert.equal(Buffer.from(location.spec.credential!).toString(), 'key-1');
  });

  test('a reader answering with promises: the same location, as a promise', async () => {
    const pending = new KubeResolver(cluster(true), opts).resolve(target, signal);
    assert.ok(pending instanceof Promise);
    const location = await pending;
    assert.equal(location.spec.prefix, 'cluster-a');
    assert.equal(Buffer.from(location.spec.credential!).toString(), 'key-1');
  });

  test('the spec is built once for the same objects and frozen; a rotated Secret or a changed BSL gives a new one', () => {
    const objects = cluster();
    const resolver = new KubeResolver(objects, opts);
    const first = resolver.resolve(target, signal) as Location;
    const again = resolver.resolve(target, signal) as Location;
    assert.equal(again.spec, first.spec, 'the same objects: the same spec object');
    assert.ok(Object.isFrozen(first.spec) && Object.isFrozen(first.spec.config));
    assert.throws(() => {
      (first.spec as { prefix: string }).prefix = 'elsewhere';
    }, TypeError);

    objects.objects.set('secrets/velero/cloud-credentials', secret('key-2'));
    const rotated = resolver.resolve(target, signal) as Location;
    assert.notEqual(rotated.spec, first.spec);
    assert.equal(Buffer.from(rotated.spec.credential!).toString(), 'key-2');
    assert.equal(Buffer.from(first.spec.credential!).toString(), 'key-1', 'a spec handed out earlier is left as it was');

    objects.objects.set('backupstoragelocations/velero/default', bsl('velero', 'cluster-b', 'cloud-credentials'));
    const moved = resolver.resolve(target, signal) as Location;
    assert.equal(moved.spec.prefix, 'cluster-b');
    assert.equal(Buffer.from(moved.spec.credential!).toString(), 'key-2');
  });

  test("a tenant's rules are checked on every resolution, a spec made before notwithstanding", () => {
    const objects = cluster(false, 'team-a');
    const resolver = new KubeResolver(objects, opts);
    const tenant = { ...target, namespace: 'team-a' };
    const location = resolver.resolve(tenant, signal) as Location;
    assert.equal(location.spec.tenant, true);
    assert.equal(location.spec.allowDefaultCredential, false);
    // The same BSL object loses its credential reference: refused, although a spec was made of it before.
    const bare = bsl('team-a', 'cluster-a');
    objects.objects.set('backupstoragelocations/team-a/default', bare);
    assert.throws(() => resolver.resolve(tenant, signal), TenancyError);
  });
});
