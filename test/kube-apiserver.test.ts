/**
 * Proves the Kubernetes API server test double with the real @kubernetes/client-node, unmodified,
 * through generated kubeconfigs: what passes here is what the gateway's own code can rely on.
 */
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import type { IncomingMessage } from 'node:http';
import { get } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { text } from 'node:stream/consumers';
import { after, before, describe, test } from 'node:test';
import {
  AdmissionregistrationV1Api,
  ApiException,
  ApiextensionsV1Api,
  AuthenticationV1Api,
  AuthorizationV1Api,
  CoreV1Api,
  CustomObjectsApi,
  KubeConfig,
  KubernetesObjectApi,
  PatchStrategy,
  VersionApi,
  Watch,
  makeInformer,
  setHeaderOptions,
} from '@kubernetes/client-node';
import type { Informer, KubernetesObject, ObjectCache, V1SubjectAccessReview } from '@kubernetes/client-node';
import { downloadRequestCrd, group, serviceAccount, startKubeApiServer, user } from './support/kube-apiserver/index.ts';
import type { KubeApiServer, KubeObject } from './support/kube-apiserver/index.ts';

const VELERO = { group: 'velero.io', version: 'v1' };
const MERGE = setHeaderOptions('Content-Type', PatchStrategy.MergePatch);
const JSON_PATCH = setHeaderOptions('Content-Type', PatchStrategy.JsonPatch);
const STRATEGIC = setHeaderOptions('Content-Type', PatchStrategy.StrategicMergePatch);

interface StatusBody {
  reason?: string;
  message?: string;
  details?: { name?: string; group?: string; kind?: string; retryAfterSeconds?: number };
}

/** The ApiException a call rejects with (its body is the raw `Status` JSON text). */
async function apiError(p: Promise<unknown>): Promise<{ code: number; status: StatusBody | undefined; headers: Record<string, string> }> {
  try {
    await p;
  } catch (err) {
    assert.ok(err instanceof ApiException, `expected an ApiException, got ${String(err)}`);
    const e = err as ApiException<unknown>;
    return { code: e.code, status: typeof e.body === 'string' && e.body ? (JSON.parse(e.body) as StatusBody) : undefined, headers: e.headers };
  }
  assert.fail('expected the call to fail');
}

function once<T extends KubernetesObject>(inf: Informer<T>, verb: 'add' | 'update' | 'delete', name: string): Promise<T> {
  return new Promise((resolve) => {
    const cb = (o: T): void => {
      if (o.metadata?.name !== name) return;
      inf.off(verb, cb);
      resolve(o);
    };
    inf.on(verb, cb);
  });
}

const backup = (name: string, namespace: string, labels: Record<string, string> = {}): KubeObject => ({
  apiVersion: 'velero.io/v1', kind: 'Backup', metadata: { name, namespace, labels }, spec: { storageLocation: 'default' },
});

describe('kube-apiserver test double', () => {
  let api: KubeApiServer;
  let kc: KubeConfig;
  let core: CoreV1Api;
  let custom: CustomObjectsApi;
  const informers: Informer<KubernetesObject>[] = [];
  const watches: AbortController[] = [];

  before(async () => {
    api = await startKubeApiServer({ namespaces: ['default', 'velero', 'team-a', 'team-b'], bookmarkIntervalMs: 50 });
    kc = api.kubeConfig(api.adminToken);
    core = kc.makeApiClient(CoreV1Api);
    custom = kc.makeApiClient(CustomObjectsApi);
  });

  after(async () => {
    for (const i of informers) await i.stop();
    for (const w of watches) w.abort();
    await api.close();
  });

  test('discovery, version and KubernetesObjectApi (which discovers before it reads)', async () => {
    const version = await kc.makeApiClient(VersionApi).getCode();
    assert.equal(version.major, '1');
    const coreList = await core.getAPIResources();
    assert.deepEqual(coreList.resources.map((r) => r.name).sort(), ['configmaps', 'namespaces', 'namespaces/status', 'nodes', 'nodes/status', 'secrets', 'services', 'services/status']);
    const crds = await kc.makeApiClient(ApiextensionsV1Api).getAPIResources();
    assert.ok(crds.resources.some((r) => r.name === 'customresourcedefinitions' && !r.namespaced));

    api.put(backup('discovered', 'velero'));
    const objects = KubernetesObjectApi.makeApiClient(kc);
    const read = await objects.read({ apiVersion: 'velero.io/v1', kind: 'Backup', metadata: { name: 'discovered', namespace: 'velero' } });
    assert.equal(read.metadata?.name, 'discovered');
    assert.ok(api.calls.count({ path: '/apis/velero.io/v1' }) >= 1, 'the client fetched the velero.io/v1 resource list');
    const veleroList = (await getJson(api, '/apis/velero.io/v1')) as { resources: { name: string }[] };
    // DataUploads are v2alpha1, so not in the v1 list.
    assert.deepEqual(veleroList.resources.map((r) => r.name), ['backups', 'restores', 'downloadrequests', 'backupstoragelocations', 'backupstoragelocations/status', 'podvolumebackups']);
  });

  test('CoreV1Api: secrets get / list with selectors / create / 409 / merge and strategic patch / stale update / delete', async () => {
    const body = { metadata: { name: 'creds', namespace: 'velero', labels: { app: 'vds' } }, stringData: { extra: 'hi' }, data: { cloud: Buffer.from('x').toString('base64') } };
    const created = await core.createNamespacedSecret({ namespace: 'velero', body });
    assert.ok(created.metadata?.uid && created.metadata.resourceVersion);
    assert.deepEqual([created.type, created.data?.extra, created.stringData], ['Opaque', 'aGk=', undefined], 'defaulted type, stringData folded into data');
    const dup = await apiError(core.createNamespacedSecret({ namespace: 'velero', body }));
    assert.equal(dup.code, 409);
    assert.equal(dup.status?.reason, 'AlreadyExists');
    assert.deepEqual(dup.status?.details, { name: 'creds', kind: 'secrets' });

    await core.createNamespacedSecret({ namespace: 'velero', body: { metadata: { name: 'other', labels: { app: 'else' } } } });
    const byLabel = await core.listNamespacedSecret({ namespace: 'velero', labelSelector: 'app in (vds,nothing)' });
    assert.deepEqual(byLabel.items.map((s) => s.metadata?.name), ['creds']);
    assert.equal(byLabel.items[0]?.kind, undefined, 'built-in list items carry no kind, as on the wire');
    const byName = await core.listNamespacedSecret({ namespace: 'velero', fieldSelector: 'metadata.name=other' });
    assert.deepEqual(byName.items.map((s) => s.metadata?.name), ['other']);
    assert.equal((await apiError(core.listNamespacedSecret({ namespace: 'velero', fieldSelector: 'spec.x=1' }))).code, 400);

    const merged = await core.patchNamespacedSecret({ name: 'creds', namespace: 'velero', body: { metadata: { annotations: { a: '1' } } } }, MERGE);
    assert.equal(merged.metadata?.annotations?.a, '1');
    assert.ok(Number(merged.metadata?.resourceVersion) > Number(created.metadata.resourceVersion));
    const strategic = await core.patchNamespacedSecret({ name: 'creds', namespace: 'velero', body: { metadata: { annotations: { b: '2' } } } }, STRATEGIC);
    assert.deepEqual(strategic.metadata?.annotations, { a: '1', b: '2' });

    const stale = await apiError(core.replaceNamespacedSecret({ name: 'creds', namespace: 'velero', body: { ...created, data: {} } }));
    assert.equal(stale.code, 409);
    assert.equal(stale.status?.reason, 'Conflict');
    const replaced = await core.replaceNamespacedSecret({ name: 'creds', namespace: 'velero', body: { ...strategic, data: { cloud: 'eQ==' } } });
    assert.equal(replaced.data?.cloud, 'eQ==');

    const deleted = await core.deleteNamespacedSecret({ name: 'creds', namespace: 'velero' });
    assert.equal(deleted.status, 'Success');
    const missing = await apiError(core.readNamespacedSecret({ name: 'creds', namespace: 'velero' }));
    assert.equal(missing.code, 404);
    assert.equal(missing.status?.message, 'secrets "creds" not found');
    assert.deepEqual(missing.status?.details, { name: 'creds', kind: 'secrets' });
  });

  test('CoreV1Api: configmaps create / 409 / get / update on a resourceVersion / delete', async () => {
    const created = await core.createNamespacedConfigMap({ namespace: 'velero', body: { metadata: { name: 'ca' }, data: { 'ca.crt': 'PEM' } } });
    assert.equal((await apiError(core.createNamespacedConfigMap({ namespace: 'velero', body: { metadata: { name: 'ca' } } }))).code, 409);
    assert.equal((await core.readNamespacedConfigMap({ namespace: 'velero', name: 'ca' })).data?.['ca.crt'], 'PEM');
    const updated = await core.replaceNamespacedConfigMap({ namespace: 'velero', name: 'ca', body: { ...created, data: { 'ca.crt': 'PEM2' } } });
    assert.equal(updated.data?.['ca.crt'], 'PEM2');
    assert.equal((await apiError(core.replaceNamespacedConfigMap({ namespace: 'velero', name: 'ca', body: { ...created, data: {} } }))).code, 409);
    assert.equal((await core.deleteNamespacedConfigMap({ namespace: 'velero', name: 'ca' })).status, 'Success');
    assert.equal((await apiError(core.readNamespacedConfigMap({ namespace: 'velero', name: 'ca' }))).code, 404);
  });

  test('MutatingWebhookConfigurations: cluster-scoped; a JSON patch whose test of the resourceVersion fails changes nothing', async () => {
    const admission = kc.makeApiClient(AdmissionregistrationV1Api);
    const webhook = { name: 'a.example.com', admissionReviewVersions: ['v1'], sideEffects: 'None', clientConfig: { service: { name: 's', namespace: 'velero' } } };
    const created = await admission.createMutatingWebhookConfiguration({ body: { metadata: { name: 'mwc' }, webhooks: [webhook] } });
    const rv = created.metadata!.resourceVersion!;
    const patched = await admission.patchMutatingWebhookConfiguration(
      { name: 'mwc', body: [{ op: 'test', path: '/metadata/resourceVersion', value: rv }, { op: 'add', path: '/webhooks/0/clientConfig/caBundle', value: 'UEVN' }] },
      JSON_PATCH,
    );
    assert.equal(patched.webhooks?.[0]?.clientConfig.caBundle, 'UEVN');
    const stale = await apiError(
      admission.patchMutatingWebhookConfiguration({ name: 'mwc', body: [{ op: 'test', path: '/metadata/resourceVersion', value: rv }, { op: 'add', path: '/webhooks/0/clientConfig/caBundle', value: 'T0xE' }] }, JSON_PATCH),
    );
    assert.equal(stale.code, 422);
    assert.equal((await admission.readMutatingWebhookConfiguration({ name: 'mwc' })).webhooks?.[0]?.clientConfig.caBundle, 'UEVN');
    assert.ok(api.calls.list({ resource: 'mutatingwebhookconfigurations' }).every((c) => c.namespace === ''));
    await admission.deleteMutatingWebhookConfiguration({ name: 'mwc' });
  });

  test('CustomObjectsApi: backups create / get / list in all namespaces / merge and JSON patch / delete', async () => {
    await custom.createNamespacedCustomObject({ ...VELERO, namespace: 'team-a', plural: 'backups', body: backup('b1', 'team-a', { tier: 'gold' }) });
    await custom.createNamespacedCustomObject({ ...VELERO, namespace: 'team-b', plural: 'backups', body: backup('b2', 'team-b') });
    const got = (await custom.getNamespacedCustomObject({ ...VELERO, namespace: 'team-a', plural: 'backups', name: 'b1' })) as KubeObject;
    assert.equal(got.kind, 'Backup');
    assert.equal(got.metadata.generation, 1);

    const all = (await custom.listClusterCustomObject({ ...VELERO, plural: 'backups', labelSelector: 'tier' })) as { kind: string; items: KubeObject[] };
    assert.equal(all.kind, 'BackupList');
    assert.deepEqual(all.items.map((b) => `${b.metadata.namespace}/${b.metadata.name}`), ['team-a/b1']);
    const everywhere = (await custom.listClusterCustomObject({ ...VELERO, plural: 'backups' })) as { items: KubeObject[] };
    assert.ok(['team-a/b1', 'team-b/b2'].every((n) => everywhere.items.some((b) => `${b.metadata.namespace}/${b.metadata.name}` === n)));

    const merged = (await custom.patchNamespacedCustomObject({ ...VELERO, namespace: 'team-a', plural: 'backups', name: 'b1', body: { spec: { ttl: '1h' } } }, MERGE)) as KubeObject;
    assert.deepEqual(merged.spec, { storageLocation: 'default', ttl: '1h' });
    assert.equal(merged.metadata.generation, 2, 'a spec change bumps the generation');
    // No Content-Type option: the client sends application/json-patch+json, so the body must be a JSON patch.
    const jsonPatched = (await custom.patchNamespacedCustomObject({
      ...VELERO, namespace: 'team-a', plural: 'backups', name: 'b1',
      body: [{ op: 'test', path: '/spec/ttl', value: '1h' }, { op: 'add', path: '/metadata/labels/extra', value: 'yes' }],
    })) as KubeObject;
    assert.equal(jsonPatched.metadata.labels?.extra, 'yes');
    const failedTest = await apiError(custom.patchNamespacedCustomObject({ ...VELERO, namespace: 'team-a', plural: 'backups', name: 'b1', body: [{ op: 'test', path: '/spec/ttl', value: '2h' }] }));
    assert.equal(failedTest.code, 422);
    const strategic = await apiError(custom.patchNamespacedCustomObject({ ...VELERO, namespace: 'team-a', plural: 'backups', name: 'b1', body: {} }, STRATEGIC));
    assert.equal(strategic.code, 415, 'custom resources refuse strategic merge patch, as on a real server');

    const unconditional = await apiError(custom.replaceNamespacedCustomObject({ ...VELERO, namespace: 'team-a', plural: 'backups', name: 'b1', body: backup('b1', 'team-a') }));
    assert.equal(unconditional.code, 422, 'custom resources need metadata.resourceVersion on update');
    const replaced = (await custom.replaceNamespacedCustomObject({ ...VELERO, namespace: 'team-a', plural: 'backups', name: 'b1', body: { ...jsonPatched, spec: {} } })) as KubeObject;
    assert.equal(replaced.metadata.generation, 3);

    const removed = (await custom.deleteNamespacedCustomObject({ ...VELERO, namespace: 'team-a', plural: 'backups', name: 'b1' })) as KubeObject;
    assert.equal(removed.metadata.name, 'b1');
    const gone = await apiError(custom.getNamespacedCustomObject({ ...VELERO, namespace: 'team-a', plural: 'backups', name: 'b1' }));
    assert.equal(gone.code, 404);
    assert.deepEqual(gone.status?.details, { name: 'b1', group: 'velero.io', kind: 'backups' });
    assert.equal(gone.status?.message, 'backups.velero.io "b1" not found');
  });

  test('DownloadRequest status: stock CRD prunes veleroServerURL and has no /status; an extended CRD keeps it', async () => {
    const dr = { apiVersion: 'velero.io/v1', kind: 'DownloadRequest', metadata: { name: 'dr1', namespace: 'velero' }, spec: { target: { kind: 'BackupLog', name: 'b' } } };
    const args = { ...VELERO, namespace: 'velero', plural: 'downloadrequests', name: 'dr1' };
    await custom.createNamespacedCustomObject({ ...VELERO, namespace: 'velero', plural: 'downloadrequests', body: dr });
    const patched = (await custom.patchNamespacedCustomObject({ ...args, body: { status: { phase: 'Processed', veleroServerURL: 'https://x' } } }, MERGE)) as KubeObject;
    assert.deepEqual(patched.status, { phase: 'Processed' }, 'unknown status field silently pruned');
    assert.equal((await apiError(custom.patchNamespacedCustomObjectStatus({ ...args, body: { status: {} } }, MERGE))).code, 404);

    const crds = kc.makeApiClient(ApiextensionsV1Api);
    const stock = await crds.readCustomResourceDefinition({ name: 'downloadrequests.velero.io' });
    assert.equal(stock.spec.versions[0]?.schema?.openAPIV3Schema?.properties?.status?.properties?.veleroServerURL, undefined);
    const extended = downloadRequestCrd({ veleroServerURL: true, statusSubresource: true }) as { spec: unknown };
    await crds.patchCustomResourceDefinition({ name: 'downloadrequests.velero.io', body: { spec: extended.spec } }, MERGE);

    const viaStatus = (await custom.patchNamespacedCustomObjectStatus({ ...args, body: { status: { veleroServerURL: 'https://gw/v1' } } }, MERGE)) as KubeObject;
    assert.deepEqual(viaStatus.status, { phase: 'Processed', veleroServerURL: 'https://gw/v1' });
    const viaMain = (await custom.patchNamespacedCustomObject({ ...args, body: { metadata: { annotations: { a: 'b' } }, status: { phase: 'New' } } }, MERGE)) as KubeObject;
    assert.equal((viaMain.status as { phase: string }).phase, 'Processed', 'with a status subresource, main-resource writes keep the stored status');
    const noop = (await custom.patchNamespacedCustomObject({ ...args, body: { metadata: { annotations: { a: 'b' } } } }, MERGE)) as KubeObject;
    assert.equal(noop.metadata.resourceVersion, viaMain.metadata.resourceVersion, 'a no-op write changes nothing');
    api.put(downloadRequestCrd() as KubeObject);
  });

  test('an informer sees ADDED, MODIFIED and DELETED; a namespace watch sees a namespace created later', { timeout: 10_000 }, async () => {
    const path = '/apis/velero.io/v1/namespaces/team-b/backups';
    const inf = makeInformer(kc, path, () => custom.listNamespacedCustomObject({ ...VELERO, namespace: 'team-b', plural: 'backups' }) as never);
    informers.push(inf);
    const initial = once(inf, 'add', 'b2');
    await inf.start();
    await initial;
    const added = once(inf, 'add', 'w1');
    await custom.createNamespacedCustomObject({ ...VELERO, namespace: 'team-b', plural: 'backups', body: backup('w1', 'team-b') });
    await added;
    const updated = once(inf, 'update', 'w1');
    await custom.patchNamespacedCustomObject({ ...VELERO, namespace: 'team-b', plural: 'backups', name: 'w1', body: { metadata: { labels: { x: 'y' } } } }, MERGE);
    assert.equal((await updated).metadata?.labels?.x, 'y');
    const deleted = once(inf, 'delete', 'w1');
    await custom.deleteNamespacedCustomObject({ ...VELERO, namespace: 'team-b', plural: 'backups', name: 'w1' });
    await deleted;
    assert.equal((inf as ObjectCache<KubernetesObject>).get('w1', 'team-b'), undefined);
    const watchCall = api.calls.list({ resource: 'backups', verb: 'watch' }).at(-1);
    assert.match(watchCall?.query ?? '', /watch=true/);
    assert.match(watchCall?.query ?? '', /resourceVersion=\d+/);

    const nsInf = makeInformer(kc, '/api/v1/namespaces', () => core.listNamespace());
    informers.push(nsInf);
    await nsInf.start();
    const appeared = once(nsInf, 'add', 'team-new');
    await core.createNamespace({ body: { metadata: { name: 'team-new' } } });
    assert.equal((await appeared).metadata?.name, 'team-new');
  });

  test('raw watch: resumes from a resourceVersion, selector enter and leave, BOOKMARK, 410 after compaction', { timeout: 10_000 }, async () => {
    const path = '/apis/velero.io/v1/namespaces/velero/backups';
    const list = (await custom.listNamespacedCustomObject({ ...VELERO, namespace: 'velero', plural: 'backups' })) as { metadata: { resourceVersion: string } };
    const from = list.metadata.resourceVersion;
    api.put(backup('r1', 'velero')); // not selected
    api.put(backup('r1', 'velero', { pick: 'me' })); // enters the selector
    const seen: string[] = [];
    let wake = (): void => {};
    const until = (entry: string): Promise<void> =>
      new Promise((resolve) => {
        wake = () => void (seen.includes(entry) && resolve());
        wake();
      });
    const onEvent = (type: string, obj: KubeObject): void => {
      seen.push(`${type} ${obj.metadata.name ?? ''}`.trim());
      wake();
    };
    watches.push(await new Watch(kc).watch(path, { resourceVersion: from, labelSelector: 'pick=me', allowWatchBookmarks: true }, onEvent, () => {}));
    await until('BOOKMARK');
    api.put(backup('r1', 'velero')); // leaves it
    await until('DELETED r1');
    assert.deepEqual(seen.filter((e) => e !== 'BOOKMARK'), ['ADDED r1', 'DELETED r1']);

    api.store.compact();
    const expired = new Promise<unknown>((resolve) => {
      const watch = new Watch(kc).watch(path, { resourceVersion: from }, (type, obj) => type === 'ERROR' && resolve(obj), () => {});
      void watch.then((c) => watches.push(c));
    });
    assert.deepEqual(await expired, { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message: `too old resource version: ${from} (${api.store.resourceVersion})`, reason: 'Expired', code: 410 });
  });

  test('TokenReview with and without audiences; unknown token', async () => {
    const authn = kc.makeApiClient(AuthenticationV1Api);
    const token = api.tokens.add('alice-token', { username: 'alice', uid: 'u-1', groups: ['team-a'], extra: { scopes: ['x'] }, audiences: ['vds', 'https://kubernetes.default.svc.cluster.local'] });
    const plain = await authn.createTokenReview({ body: { spec: { token } } });
    assert.equal(plain.status?.authenticated, true);
    assert.deepEqual({ ...plain.status?.user }, { username: 'alice', uid: 'u-1', groups: ['team-a', 'system:authenticated'], extra: { scopes: ['x'] } });
    assert.deepEqual(plain.status?.audiences, ['https://kubernetes.default.svc.cluster.local']);
    const aud = await authn.createTokenReview({ body: { spec: { token, audiences: ['other', 'vds'] } } });
    assert.equal(aud.status?.authenticated, true);
    assert.deepEqual(aud.status?.audiences, ['vds']);
    const wrongAudience = await authn.createTokenReview({ body: { spec: { token, audiences: ['other'] } } });
    assert.notEqual(wrongAudience.status?.authenticated, true);
    const unknown = await authn.createTokenReview({ body: { spec: { token: 'nope' } } });
    assert.equal(unknown.status?.authenticated, undefined, 'false is omitted on the wire, as by kube-apiserver');
    assert.ok(unknown.status?.error);
    assert.equal(api.calls.tokenReviews().length, 4);
    assert.deepEqual(api.calls.tokenReviews()[3], { spec: { token: 'nope' } });
  });

  test('SubjectAccessReview: subresources, names, namespaces, groups, service accounts', async () => {
    const authz = kc.makeApiClient(AuthorizationV1Api);
    api.rbac.role('team-a', 'log-reader', [{ apiGroups: ['velero.io'], resources: ['backups/log', 'backups/results'], verbs: ['get'] }]);
    api.rbac.roleBinding('team-a', 'alice-logs', { kind: 'Role', name: 'log-reader' }, [user('alice')]);
    api.rbac.clusterRole('backup-downloader', [{ apiGroups: ['velero.io'], resources: ['backups/contents', 'backups/*', '*/log'], verbs: ['get'] }]);
    api.rbac.roleBinding('team-b', 'dl', { kind: 'ClusterRole', name: 'backup-downloader' }, [user('bob')]);
    api.rbac.clusterRoleBinding('ops-everywhere', 'backup-downloader', [group('ops')]);
    api.rbac.grant(serviceAccount('team-a', 'ci'), [{ apiGroups: ['velero.io'], resources: ['backups/contents'], resourceNames: ['nightly'], verbs: ['get'] }], 'team-a');

    const sar = async (who: { user?: string; groups?: string[] }, namespace: string, subresource: string, name = 'nightly'): Promise<V1SubjectAccessReview> =>
      authz.createSubjectAccessReview({ body: { spec: { ...who, resourceAttributes: { group: 'velero.io', resource: 'backups', subresource, verb: 'get', namespace, name } } } });

    const allowed = await sar({ user: 'alice', groups: ['system:authenticated'] }, 'team-a', 'log');
    assert.deepEqual({ ...allowed.status }, { allowed: true, reason: 'RBAC: allowed by RoleBinding "alice-logs/team-a" of Role "log-reader" to User "alice"' });
    const contents = await sar({ user: 'alice' }, 'team-a', 'contents');
    assert.equal(contents.status?.allowed, false);
    assert.equal(contents.status?.denied, undefined, 'RBAC never denies outright: denied is omitted');
    assert.equal((await sar({ user: 'alice' }, 'team-b', 'log')).status?.allowed, false, 'a Role grants only in its namespace');
    assert.equal((await sar({ user: 'bob' }, 'team-b', 'contents')).status?.allowed, true);
    assert.equal((await sar({ user: 'bob' }, 'team-b', 'results')).status?.allowed, false, '`backups/*` is no wildcard in RBAC (`*/results` would be)');
    assert.equal((await sar({ user: 'bob' }, 'team-a', 'contents')).status?.allowed, false, 'a ClusterRole through a RoleBinding grants only there');
    const byGroup = await sar({ user: 'carol', groups: ['ops'] }, 'anywhere', 'log');
    assert.equal(byGroup.status?.reason, 'RBAC: allowed by ClusterRoleBinding "ops-everywhere" of ClusterRole "backup-downloader" to Group "ops"');
    assert.equal((await sar({ user: 'system:serviceaccount:team-a:ci' }, 'team-a', 'contents')).status?.allowed, true);
    assert.equal((await sar({ user: 'system:serviceaccount:team-a:ci' }, 'team-a', 'contents', 'weekly')).status?.allowed, false, 'resourceNames restrict');
    const noSubject = await apiError(authz.createSubjectAccessReview({ body: { spec: { resourceAttributes: { verb: 'get' } } } }));
    assert.equal(noSubject.code, 422);
    assert.equal(api.calls.subjectAccessReviews().length, 10);
    assert.equal(api.calls.count({ resource: 'subjectaccessreviews', user: 'kubernetes-admin' }), 10);
  });

  test('callers: unknown token → 401, client-certificate user authenticated by CN and O', async () => {
    const unknown = await apiError(api.kubeConfig('not-a-token').makeApiClient(CoreV1Api).listNamespace());
    assert.equal(unknown.code, 401);
    const doc = await api.clientCertificateKubeconfig('cert-user', ['cert-group']);
    assert.equal(doc.users[0]?.user.token, undefined);
    assert.ok(doc.users[0]?.user['client-certificate-data']);
    const before = api.calls.count({ user: 'cert-user' });
    await api.kubeConfig(doc).makeApiClient(CoreV1Api).listNamespace();
    assert.equal(api.calls.count({ user: 'cert-user' }), before + 1);

    const dir = await mkdtemp(join(tmpdir(), 'kubeconfig-'));
    try {
      const file = await api.writeKubeconfig(join(dir, 'config'), api.kubeconfig(api.adminToken, { namespace: 'velero' }));
      assert.equal((await stat(file)).mode & 0o777, 0o600);
      const loaded = new KubeConfig();
      loaded.loadFromFile(file);
      assert.equal(loaded.getContextObject(loaded.getCurrentContext())?.namespace, 'velero');
      assert.match(await readFile(file, 'utf8'), /certificate-authority-data/);
      await loaded.makeApiClient(CoreV1Api).readNamespace({ name: 'velero' });
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  test('faults: 503 once then recovery, 429 with Retry-After, delay, connection reset; hits counted', async () => {
    const read = (): Promise<unknown> => core.readNamespace({ name: 'default' });
    const once503 = api.faults.add({ match: { resource: 'namespaces', verb: 'get' }, status: 503, times: 1 });
    const e503 = await apiError(read());
    assert.equal(e503.code, 503);
    assert.equal(e503.status?.reason, 'ServiceUnavailable');
    await read();
    assert.equal(once503.hits, 1);

    const limited = api.faults.add({ match: { resource: 'namespaces' }, status: 429, retryAfterSeconds: 7 });
    const e429 = await apiError(read());
    assert.equal(e429.code, 429);
    assert.equal(e429.headers['retry-after'], '7');
    assert.equal(e429.status?.details?.retryAfterSeconds, 7);
    limited.remove();

    const slow = api.faults.add({ match: { path: /^\/api\/v1\/namespaces\/default$/ }, delayMs: 300, times: 1 });
    const t0 = Date.now();
    await read();
    assert.ok(Date.now() - t0 >= 280, 'the delay held the answer');
    assert.equal(slow.hits, 1);

    api.faults.add({ match: (c) => c.name === 'default' && c.resource === 'namespaces', reset: true, times: 1 });
    await assert.rejects(read(), (err: Error) => !(err instanceof ApiException));
    await read();
  });

  test('stop and restart on the same port: clients fail, then recover; data and informers resync', { timeout: 10_000 }, async () => {
    const port = api.port;
    const inf = makeInformer(kc, '/apis/velero.io/v1/namespaces/team-a/backups', () => custom.listNamespacedCustomObject({ ...VELERO, namespace: 'team-a', plural: 'backups' }) as never);
    informers.push(inf);
    await inf.start();
    const errored = new Promise<unknown>((resolve) => inf.on('error', resolve));
    await api.stop();
    assert.equal(api.running, false);
    await errored;
    await assert.rejects(core.readNamespace({ name: 'default' }));

    api.put(backup('while-down', 'team-a'));
    await api.start();
    assert.equal(api.port, port);
    assert.equal((await core.readNamespace({ name: 'default' })).metadata?.name, 'default');
    const resynced = once(inf, 'add', 'while-down');
    await inf.start();
    await resynced;
  });

  test('authorizeCallers: a caller without RBAC gets 403; the permissions it used are recorded', async () => {
    const strict = await startKubeApiServer({ pki: api.pki, authorizeCallers: true });
    try {
      const token = strict.tokens.serviceAccount('velero', 'vds');
      const sa = serviceAccount('velero', 'vds');
      strict.rbac.clusterRoleBinding('vds-delegator', 'system:auth-delegator', [sa]);
      strict.rbac.grant(sa, [{ apiGroups: ['velero.io'], resources: ['backups'], verbs: ['get', 'list', 'watch'] }], 'velero');
      const skc = strict.kubeConfig(token);
      await skc.makeApiClient(AuthenticationV1Api).createTokenReview({ body: { spec: { token } } });
      await skc.makeApiClient(CustomObjectsApi).listNamespacedCustomObject({ ...VELERO, namespace: 'velero', plural: 'backups' });
      const denied = await apiError(skc.makeApiClient(CoreV1Api).readNamespacedSecret({ name: 'cloud-credentials', namespace: 'velero' }));
      assert.equal(denied.code, 403);
      assert.equal(denied.status?.message, 'secrets "cloud-credentials" is forbidden: User "system:serviceaccount:velero:vds" cannot get resource "secrets" in API group "" in the namespace "velero"');
      await skc.makeApiClient(VersionApi).getCode();
      assert.deepEqual(strict.calls.permissions({ user: 'system:serviceaccount:velero:vds' }), [
        { verb: 'create', group: 'authentication.k8s.io', resource: 'tokenreviews', subresource: '', namespace: '', name: '' },
        { verb: 'get', group: '', resource: 'secrets', subresource: '', namespace: 'velero', name: 'cloud-credentials' },
        { verb: 'list', group: 'velero.io', resource: 'backups', subresource: '', namespace: 'velero', name: '' },
      ]);
      assert.equal(strict.calls.count({ user: 'system:serviceaccount:velero:vds', resource: 'secrets' }), 1);
      assert.equal(strict.calls.list({ resource: 'secrets' })[0]?.code, 403);

      // A list (or watch) selecting one name is authorized as a request for that name, as kube-apiserver
      // does: resourceNames can grant it, and it grants nothing wider.
      strict.rbac.grant(sa, [{ apiGroups: [''], resources: ['secrets'], resourceNames: ['mine'], verbs: ['list', 'watch'] }], 'velero');
      const skcCore = skc.makeApiClient(CoreV1Api);
      await skcCore.listNamespacedSecret({ namespace: 'velero', fieldSelector: 'metadata.name=mine' });
      assert.equal((await apiError(skcCore.listNamespacedSecret({ namespace: 'velero', fieldSelector: 'metadata.name=other' }))).code, 403);
      assert.equal((await apiError(skcCore.listNamespacedSecret({ namespace: 'velero' }))).code, 403);
      assert.deepEqual(
        strict.calls.permissions({ user: 'system:serviceaccount:velero:vds', resource: 'secrets', verb: 'list' }).map((p) => p.name),
        ['', 'mine', 'other'],
      );
    } finally {
      await strict.close();
    }
  });
});

/** Plain HTTPS with the admin token, trusting the test CA: what curl would do. */
async function getJson(api: KubeApiServer, path: string): Promise<unknown> {
  const res = await new Promise<IncomingMessage>((resolve, reject) => {
    get(`${api.url}${path}`, { ca: api.caCert, headers: { authorization: `Bearer ${api.adminToken}` } }, resolve).on('error', reject);
  });
  return JSON.parse(await text(res)) as unknown;
}
