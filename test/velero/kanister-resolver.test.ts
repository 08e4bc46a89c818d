/**
 * KubeProfileResolver against the API test double through the real Kubernetes client: the location
 * (a tenant's store, the prefix as the store's root), the repository step it hands a Profile to
 * (the Profile read once, its annotations, a Secret reader confined to the Profile's namespace), and
 * the 501 while no repository step is wired. The routes' side is in test/e2e/profiles.test.ts.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { createKubeClients } from '../../src/kube/client.ts';
import { CachedObjectReader } from '../../src/kube/objects.ts';
import { mapError } from '../../src/server/status.ts';
import { TenancyError } from '../../src/velero/errors.ts';
import type { ProfileLocation, ProfileRepositoryOf } from '../../src/velero/kanister-profiles.ts';
import { KubeProfileResolver } from '../../src/velero/kanister-resolver.ts';
import { KANISTER_AWS, kanisterProfile, secretCredential, secretOf } from '../support/kanister.ts';
import { NS as OWN, kubeFixture } from '../support/kube-fixture.ts';
import type { KubeFixture } from '../support/kube-fixture.ts';

const NS = 'team-a';
const signal = (): AbortSignal => AbortSignal.timeout(10_000);

describe('KubeProfileResolver', () => {
  let fx: KubeFixture;
  let objects: CachedObjectReader;
  before(async () => {
    fx = await kubeFixture({ kanister: true, namespaces: ['default', OWN, NS] });
    fx.api.put(secretOf(NS, 'aws', { aws_access_key_id: 'AKIA1', aws_secret_access_key: 'S' }, KANISTER_AWS));
    fx.api.put(secretOf(NS, 'repo-password', { 'repo-password': 'pw' }));
    fx.api.put(
      kanisterProfile(
        NS,
        'p',
        { location: { type: 's3Compliant', bucket: 'b', endpoint: 'minio.example:9000', region: 'r', prefix: '/kanister/app/' }, credential: secretCredential('aws') },
        { 'example.com/root-path': 'repo' },
      ),
    );
    objects = newReader();
  });
  after(() => fx?.close());

  const newReader = (): CachedObjectReader => new CachedObjectReader(createKubeClients({ kubeconfig: fx.kubeconfigFile, qps: 100, burst: 100, timeoutMs: 5_000 }));

  const resolver = (repositoryOf?: ProfileRepositoryOf, reader = objects): KubeProfileResolver =>
    new KubeProfileResolver(reader, { serves: (ns) => ns === NS || ns === OWN, ownNamespace: OWN, ...(repositoryOf && { repositoryOf }) });

  test("the location: a tenant's store whose root is the Kanister prefix", async () => {
    const loc = await resolver().location(NS, 'p', signal());
    assert.equal(loc.prefix, '');
    assert.deepEqual({ ...loc.spec, credential: Buffer.from(loc.spec.credential!).toString() }, {
      name: `${NS}/profiles/p`,
      provider: 'aws',
      bucket: 'b',
      prefix: 'kanister/app',
      config: { region: 'r', s3Url: 'https://minio.example:9000', s3ForcePathStyle: 'true' },
      credential: '[default]\naws_access_key_id = AKIA1\naws_secret_access_key = S\n',
      allowDefaultCredential: false,
      tenant: true,
    });
  });

  test('without a repository step: 501, after the Profile was found', async () => {
    const err = await resolver().repository(NS, 'p', signal()).catch((e: unknown) => e);
    assert.equal(mapError(err).body.code, 501);
    assert.match(mapError(err).body.message, /not available/);
    assert.equal(mapError(await resolver().repository(NS, 'missing', signal()).catch((e: unknown) => e)).body.code, 404);
  });

  test("the repository step gets the location, the annotations and a reader of the Profile's namespace only", async () => {
    const fresh = newReader(); // nothing cached: the Profile reads are counted
    fx.api.calls.clear();
    const seen: { location?: ProfileLocation; annotations?: Readonly<Record<string, string>> } = {};
    const repo = await resolver(async (location, annotations, readSecret, s) => {
      Object.assign(seen, { location, annotations });
      const pw = await readSecret('repo-password', s);
      assert.equal(await readSecret('no-such-secret', s), undefined);
      return { location, prefix: `${annotations['example.com/root-path']}/`, password: Buffer.from(pw?.data['repo-password'] ?? '').toString() };
    }, fresh).repository(NS, 'p', signal());
    assert.deepEqual([repo.prefix, repo.password, seen.annotations], ['repo/', 'pw', { 'example.com/root-path': 'repo' }]);
    assert.equal(seen.location?.spec.tenant, true);
    assert.equal(fx.api.calls.count({ resource: 'profiles' }), 1, 'the Profile is read once');
    assert.ok(fx.api.calls.list({ resource: 'secrets' }).every((c) => c.namespace === NS));
    // In the gateway's own namespace, the reader refuses before reading.
    fx.api.put(secretOf(OWN, 'aws', { aws_access_key_id: 'AKIA1', aws_secret_access_key: 'S' }, KANISTER_AWS));
    fx.api.put(kanisterProfile(OWN, 'p', { location: { type: 's3Compliant', bucket: 'b', endpoint: 'e', region: 'r' }, credential: secretCredential('aws') }));
    await assert.rejects(resolver(() => Promise.reject(new Error('not reached'))).repository(OWN, 'p', signal()), TenancyError);
  });
});
