/**
 * The DownloadRequest controller against the Kubernetes API test double with the real client
 * library: the annotation for opted-in locations only (or all with serveAllLocations), Restore targets
 * resolved through their Backup, requests created before the start, replicas that never patch twice
 * (counted in the double's call log), namespace scope, a changed base URL, a CRD upgraded while it
 * runs, and API failures on cue. What the gateway writes on Velero's own CRD and on CRDs that declare
 * status.veleroServerURL (with and without /status) is proven against a real API server in
 * test/e2e/kubernetes.test.ts and test/e2e/kubernetes-watches.test.ts.
 */
import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { CustomObjectsApi, PatchStrategy, setHeaderOptions } from '@kubernetes/client-node';
import { createKubeClients } from '../../src/kube/client.ts';
import type { KubeClients } from '../../src/kube/client.ts';
import { CachedObjectReader } from '../../src/kube/objects.ts';
import type { ObjectReader } from '../../src/kube/objects.ts';
import { DownloadRequestController, crdCapabilities } from '../../src/velero/downloadrequest-controller.ts';
import type { DownloadRequestControllerOptions } from '../../src/velero/downloadrequest-controller.ts';
import { downloadRequestUrl } from '../../src/velero/downloadrequests.ts';
import { URL_ANNOTATION } from '../../src/util/names.ts';
import { KubeResolver } from '../../src/velero/kube-resolver.ts';
import { namespaceMatcher } from '../../src/velero/namespaces.ts';
import type { GatewayUrl } from '../../src/kube/url-discovery.ts';
import { downloadRequestCrd, serviceAccount, startKubeApiServer } from '../support/kube-apiserver/index.ts';
import type { CallRecord, KubeApiServer, KubeApiServerOptions, KubeObject } from '../support/kube-apiserver/index.ts';

const BASE = 'https://velero.example.com';
const FUTURE = (): string => new Date(Date.now() + 10 * 60_000).toISOString().replace(/\.\d{3}Z$/, 'Z');
const PAST = '2020-01-01T00:00:00Z';
const SA = serviceAccount('velero', 'velero-download-server');
const GATEWAY_USER = 'system:serviceaccount:velero:velero-download-server';

/** A stand-in for UrlDiscovery: a current URL that the test changes. */
class Urls extends EventEmitter<{ change: [GatewayUrl, GatewayUrl] }> {
  current: GatewayUrl = { baseUrl: BASE, source: 'fqdn', detail: '--fqdn velero.example.com' };
  set(baseUrl: string): void {
    const prev = this.current;
    this.current = { ...prev, baseUrl };
    this.emit('change', this.current, prev);
  }
}

interface LogEntry {
  level: string;
  obj: Record<string, unknown>;
  msg: string;
}
const recorder = (): { entries: LogEntry[]; log: DownloadRequestControllerOptions['log'] } => {
  const entries: LogEntry[] = [];
  const at = (level: string) => (obj: Record<string, unknown>, msg: string) => void entries.push({ level, obj, msg });
  return { entries, log: { info: at('info'), warn: at('warn'), debug: at('debug') } as unknown as DownloadRequestControllerOptions['log'] };
};

const velero = (kind: string, namespace: string, name: string, spec: Record<string, unknown>, extra: Partial<KubeObject> = {}): KubeObject => ({
  apiVersion: 'velero.io/v1',
  kind,
  ...extra,
  metadata: { name, namespace, ...extra.metadata },
  spec,
});

/** Two locations per namespace, one opted in; a backup on each; a restore of the opted-in backup. */
function seedNamespace(api: KubeApiServer, ns: string): void {
  const bsl = (name: string, annotations?: Record<string, string>): KubeObject =>
    velero('BackupStorageLocation', ns, name, { provider: 'aws', objectStorage: { bucket: name } }, annotations ? { metadata: { name, annotations } } : {});
  api.put(bsl('opted', { 'download-server.velero.io/enabled': 'true' }));
  api.put(bsl('plain'));
  api.put(bsl('disabled', { 'download-server.velero.io/enabled': 'false' }));
  api.put(velero('Backup', ns, 'b-opted', { storageLocation: 'opted' }));
  api.put(velero('Backup', ns, 'b-plain', { storageLocation: 'plain' }));
  api.put(velero('Backup', ns, 'b-disabled', { storageLocation: 'disabled' }));
  api.put(velero('Restore', ns, 'r-opted', { backupName: 'b-opted' }));
  api.put(velero('Restore', ns, 'r-plain', { backupName: 'b-plain' }));
}

const dr = (ns: string, name: string, kind: string, target: string, status?: Record<string, unknown>): KubeObject =>
  velero('DownloadRequest', ns, name, { target: { kind, name: target } }, status ? { status } : {});

interface Env {
  api: KubeApiServer;
  kube: KubeClients;
  urls: Urls;
  controllers: DownloadRequestController[];
  /** A controller; `reader` (default: a CachedObjectReader on the double) feeds its resolver. */
  start(opts?: Partial<DownloadRequestControllerOptions> & { reader?: ObjectReader }): Promise<DownloadRequestController>;
  get(ns: string, name: string): KubeObject;
  /** The gateway's patch calls against one request (main resource or /status), as the API server logged them. */
  patches(ns: string, name: string, subresource?: string): CallRecord[];
  close(): Promise<void>;
}

async function env(opts: KubeApiServerOptions & { grant?: (api: KubeApiServer) => void } = {}): Promise<Env> {
  const api = await startKubeApiServer({ namespaces: ['velero', 'team-a', 'team-b', 'other'], ...opts });
  const dir = await mkdtemp(join(tmpdir(), 'vds-drc-'));
  const token = api.tokens.serviceAccount('velero', 'velero-download-server');
  opts.grant?.(api);
  const kube = createKubeClients({ kubeconfig: await api.writeKubeconfig(join(dir, 'kubeconfig'), api.kubeconfig(token)), qps: 1000, burst: 1000, timeoutMs: 5_000 });
  const urls = new Urls();
  const controllers: DownloadRequestController[] = [];
  return {
    api,
    kube,
    urls,
    controllers,
    async start({ reader = new CachedObjectReader(kube), ...o } = {}) {
      const watchNamespaces = o.watchNamespaces ?? [];
      const locations = new KubeResolver(reader, {
        serves: namespaceMatcher('velero', watchNamespaces),
        ownNamespace: 'velero',
        isFilesystemProvider: () => false,
        tenantFilesystemAllow: new Map(),
      });
      const c = await DownloadRequestController.start(kube, { namespace: 'velero', watchNamespaces, serveAllLocations: false, urls, locations, retryMs: 20, maxRetryMs: 100, ...o });
      controllers.push(c);
      await c.whenIdle();
      return c;
    },
    get: (ns, name) => api.get('velero.io/v1', 'DownloadRequest', name, ns)!,
    patches: (ns, name, subresource = '') => api.calls.list({ verb: 'patch', resource: 'downloadrequests', namespace: ns, name, subresource, user: GATEWAY_USER }),
    async close() {
      await Promise.all(controllers.map((c) => c.stop()));
      await api.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

async function waitFor(cond: () => boolean, what: string, ms = 8_000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

const annotation = (o: KubeObject): string | undefined => o.metadata.annotations?.[URL_ANNOTATION];
const urlOf = (ns: string, name: string, base = BASE): string => downloadRequestUrl(base, ns, name);
const okPatches = (calls: CallRecord[]): CallRecord[] => calls.filter((c) => c.code === 200);

describe('crdCapabilities', () => {
  test('reads the v1 schema and subresources', () => {
    assert.deepEqual(crdCapabilities(downloadRequestCrd()), { veleroServerURL: false, statusSubresource: false });
    assert.deepEqual(crdCapabilities(downloadRequestCrd({ veleroServerURL: true })), { veleroServerURL: true, statusSubresource: false });
    assert.deepEqual(crdCapabilities(downloadRequestCrd({ veleroServerURL: true, statusSubresource: true })), { veleroServerURL: true, statusSubresource: true });
    assert.deepEqual(crdCapabilities(undefined), { veleroServerURL: false, statusSubresource: false });
  });
});

describe('stock Velero CRD, namespaced watches, least privilege', () => {
  let e: Env;
  let log: ReturnType<typeof recorder>;
  const veleroStatus = (): Record<string, unknown> => ({ phase: 'Processed', downloadURL: 'https://s3.example.com/bucket/b?X-Amz-Signature=abc', expiration: FUTURE() });
  let ownedBefore: Record<string, unknown>;

  before(async () => {
    e = await env({
      authorizeCallers: true,
      grant: (api) => {
        // Exactly what the controller needs without a glob: Roles per namespace, and the CRD by name.
        for (const ns of ['velero', 'team-a']) {
          api.rbac.grant(SA, [
            { apiGroups: ['velero.io'], resources: ['downloadrequests'], verbs: ['list', 'watch', 'patch'] },
            { apiGroups: ['velero.io'], resources: ['backups', 'restores', 'backupstoragelocations'], verbs: ['get'] },
          ], ns);
        }
        api.rbac.grant(SA, [{ apiGroups: ['apiextensions.k8s.io'], resources: ['customresourcedefinitions'], resourceNames: ['downloadrequests.velero.io'], verbs: ['get'] }]);
      },
    });
    for (const ns of ['velero', 'team-a', 'other']) seedNamespace(e.api, ns);
    ownedBefore = veleroStatus();
    // Created before the controller starts: the initial list must handle them.
    e.api.put(dr('velero', 'dr-opted', 'BackupLog', 'b-opted', ownedBefore));
    e.api.put(dr('velero', 'dr-plain', 'BackupLog', 'b-plain'));
    e.api.put(dr('velero', 'dr-disabled', 'BackupContents', 'b-disabled'));
    e.api.put(dr('velero', 'dr-restore', 'RestoreLog', 'r-opted'));
    e.api.put(dr('velero', 'dr-restore-plain', 'RestoreResults', 'r-plain'));
    e.api.put(dr('velero', 'dr-missing-backup', 'BackupLog', 'nope'));
    e.api.put(dr('velero', 'dr-unknown-kind', 'SomethingElse', 'b-opted'));
    e.api.put(dr('velero', 'dr-expired', 'BackupLog', 'b-opted', { phase: 'Processed', expiration: PAST }));
    e.api.put(dr('team-a', 'dr-team', 'BackupResults', 'b-opted'));
    e.api.put(dr('other', 'dr-other', 'BackupLog', 'b-opted'));
    log = recorder();
    await e.start({ watchNamespaces: ['team-a'], log: log.log });
  });
  after(() => e?.close());

  test('requests created before the start: annotated for opted-in locations only', () => {
    assert.equal(annotation(e.get('velero', 'dr-opted')), urlOf('velero', 'dr-opted'));
    assert.equal(annotation(e.get('team-a', 'dr-team')), urlOf('team-a', 'dr-team'));
    for (const name of ['dr-plain', 'dr-disabled', 'dr-restore-plain', 'dr-missing-backup', 'dr-unknown-kind', 'dr-expired']) {
      assert.equal(annotation(e.get('velero', name)), undefined, name);
      assert.equal(e.patches('velero', name).length, 0, name);
    }
  });

  test('a Restore target is resolved through its Backup to the location', () => {
    assert.equal(annotation(e.get('velero', 'dr-restore')), 'https://velero.example.com/v1/namespaces/velero/downloadrequests/dr-restore');
  });

  test('namespaces outside the watch list are ignored and never listed', () => {
    assert.equal(annotation(e.get('other', 'dr-other')), undefined);
    assert.equal(e.api.calls.count({ namespace: 'other' }), 0);
    assert.equal(e.api.calls.count({ resource: 'downloadrequests', namespace: '' }), 0, 'no cluster-wide list or watch without a glob');
    assert.equal(e.api.calls.list().filter((c) => c.code === 403).length, 0, 'namespaced Roles suffice');
  });

  test('a request created after the start is annotated, and each request was patched exactly once', async () => {
    e.api.put(dr('velero', 'dr-new', 'BackupVolumeInfos', 'b-opted'));
    await waitFor(() => annotation(e.get('velero', 'dr-new')) === urlOf('velero', 'dr-new'), 'the new request');
    await e.controllers[0]!.whenIdle();
    for (const [ns, name] of [['velero', 'dr-opted'], ['velero', 'dr-restore'], ['team-a', 'dr-team'], ['velero', 'dr-new']] as const) {
      assert.equal(e.patches(ns, name).length, 1, `${ns}/${name}`);
    }
  });

  test('a second replica (another controller instance) sends no patch', async () => {
    const before = e.api.calls.count({ verb: 'patch', user: GATEWAY_USER });
    await e.start({ watchNamespaces: ['team-a'] });
    assert.equal(e.api.calls.count({ verb: 'patch', user: GATEWAY_USER }), before);
  });

  test('Velero processing the request afterwards (a merge patch of its status) keeps the annotation and causes no new patch', async () => {
    const name = 'dr-new';
    const before = e.patches('velero', name).length;
    await e.api.kubeConfig(e.api.adminToken).makeApiClient(CustomObjectsApi).patchNamespacedCustomObject(
      { group: 'velero.io', version: 'v1', plural: 'downloadrequests', namespace: 'velero', name, body: { status: { phase: 'Processed', downloadURL: 'https://s3/x', expiration: FUTURE() } } },
      setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
    );
    await waitFor(() => (e.get('velero', name).status as { phase?: string } | undefined)?.phase === 'Processed', 'the status');
    // Give both controllers' watches time to deliver the event before asking whether they are idle.
    await new Promise((r) => setTimeout(r, 100));
    await Promise.all(e.controllers.map((c) => c.whenIdle()));
    assert.equal(annotation(e.get('velero', name)), urlOf('velero', name));
    assert.equal(e.patches('velero', name).length, before);
  });

  test('a changed base URL reaches unexpired requests; expired ones keep theirs', async () => {
    e.api.put({ ...e.get('team-a', 'dr-team'), status: { phase: 'Processed', expiration: PAST } });
    const next = 'https://10.0.0.7:30443';
    e.urls.set(next);
    await waitFor(() => annotation(e.get('velero', 'dr-opted')) === urlOf('velero', 'dr-opted', next), 'the new URL');
    await waitFor(() => annotation(e.get('velero', 'dr-restore')) === urlOf('velero', 'dr-restore', next), 'the new URL');
    await Promise.all(e.controllers.map((c) => c.whenIdle()));
    assert.equal(annotation(e.get('team-a', 'dr-team')), urlOf('team-a', 'dr-team'));
    assert.equal(annotation(e.get('velero', 'dr-plain')), undefined);
    // Two replicas saw the change: the requests were still written once each (the other got a 409 or saw it done).
    assert.equal(okPatches(e.patches('velero', 'dr-opted')).length, 2);
    assert.deepEqual(e.get('velero', 'dr-opted').status, ownedBefore);
    assert.ok(log.entries.some((l) => l.msg.includes('gateway URL changed')));
    assert.ok(!log.entries.some((l) => l.level === 'warn'), JSON.stringify(log.entries.filter((l) => l.level === 'warn')));
  });
});

describe('a CRD upgraded to declare status.veleroServerURL', () => {
  const statusOf = (o: KubeObject): Record<string, unknown> | undefined => o.status as Record<string, unknown> | undefined;
  test('a CRD upgraded later is noticed on the periodic re-check, and the status is filled in', async () => {
    const e = await env();
    try {
      seedNamespace(e.api, 'velero');
      e.api.put(dr('velero', 'dr', 'BackupLog', 'b-opted'));
      await e.start({ crdRecheckMs: 50 });
      assert.equal(annotation(e.get('velero', 'dr')), urlOf('velero', 'dr'));
      assert.equal(statusOf(e.get('velero', 'dr'))?.veleroServerURL, undefined);
      e.api.put(downloadRequestCrd({ veleroServerURL: true, statusSubresource: true }) as KubeObject);
      await waitFor(() => statusOf(e.get('velero', 'dr'))?.veleroServerURL === urlOf('velero', 'dr'), 'the status field');
      assert.equal(e.patches('velero', 'dr').length, 1);
      assert.equal(e.patches('velero', 'dr', 'status').length, 1);
    } finally {
      await e.close();
    }
  });
});

describe('serveAllLocations, globs, replicas starting together, API failures', () => {
  test('serveAllLocations annotates requests of every location', async () => {
    const e = await env();
    try {
      seedNamespace(e.api, 'velero');
      for (const [name, kind, target] of [['a', 'BackupLog', 'b-plain'], ['b', 'RestoreLog', 'r-plain'], ['c', 'BackupContents', 'b-disabled'], ['d', 'BackupLog', 'b-opted']]) {
        e.api.put(dr('velero', name!, kind!, target!));
      }
      e.api.put(dr('velero', 'unknown', 'NotAKind', 'b-plain'));
      await e.start({ serveAllLocations: true });
      for (const name of ['a', 'b', 'c', 'd']) assert.equal(annotation(e.get('velero', name)), urlOf('velero', name), name);
      assert.equal(annotation(e.get('velero', 'unknown')), undefined);
    } finally {
      await e.close();
    }
  });

  test('a glob watches cluster-wide and filters by namespace name', async () => {
    const e = await env();
    try {
      for (const ns of ['velero', 'team-a', 'team-b', 'other']) {
        seedNamespace(e.api, ns);
        e.api.put(dr(ns, 'dr', 'BackupLog', 'b-opted'));
      }
      await e.start({ watchNamespaces: ['team-*'] });
      for (const ns of ['velero', 'team-a', 'team-b']) assert.equal(annotation(e.get(ns, 'dr')), urlOf(ns, 'dr'), ns);
      assert.equal(annotation(e.get('other', 'dr')), undefined);
      assert.ok(e.api.calls.count({ resource: 'downloadrequests', verb: 'list', namespace: '' }) >= 1);
      assert.equal(e.api.calls.count({ namespace: 'other' }), 0, 'nothing is read for a namespace outside the list');
    } finally {
      await e.close();
    }
  });

  test('two replicas starting together: every request is written once (the loser gets a 409 and stays quiet)', async () => {
    const e = await env();
    try {
      seedNamespace(e.api, 'velero');
      const names = Array.from({ length: 12 }, (_, i) => `dr-${i}`);
      for (const n of names) e.api.put(dr('velero', n, 'BackupLog', 'b-opted'));
      const { entries, log } = recorder();
      await Promise.all([e.start({ log }), e.start({ log })]);
      for (const n of names) {
        assert.equal(annotation(e.get('velero', n)), urlOf('velero', n));
        assert.equal(okPatches(e.patches('velero', n)).length, 1, n);
        assert.ok(e.patches('velero', n).every((c) => c.code === 200 || c.code === 409), n);
      }
      assert.ok(!entries.some((l) => l.level === 'warn'));
    } finally {
      await e.close();
    }
  });

  test('a 404 (deleted meanwhile) is not an error; a 500 is retried until it succeeds', async () => {
    const e = await env();
    try {
      seedNamespace(e.api, 'velero');
      e.api.put(dr('velero', 'gone', 'BackupLog', 'b-opted'));
      e.api.put(dr('velero', 'flaky', 'BackupLog', 'b-opted'));
      e.api.faults.add({ match: { verb: 'patch', name: 'gone' }, status: 404, times: 1 });
      const flaky = e.api.faults.add({ match: { verb: 'patch', name: 'flaky' }, status: 500, times: 2 });
      const { entries, log } = recorder();
      const c = await e.start({ log });
      await waitFor(() => annotation(e.get('velero', 'flaky')) === urlOf('velero', 'flaky'), 'the retried patch');
      await c.whenIdle();
      assert.equal(flaky.hits, 2);
      assert.equal(e.patches('velero', 'gone').length, 1, 'no retry after a 404');
      const warns = entries.filter((l) => l.level === 'warn');
      assert.equal(warns.length, 2);
      assert.ok(warns.every((w) => w.obj.downloadRequest === 'velero/flaky' && w.obj.err === 'HTTP 500'));
    } finally {
      await e.close();
    }
  });

  test("the resolver's namespace check applies: a Backup read back from another namespace opts in to nothing", async () => {
    const e = await env();
    try {
      seedNamespace(e.api, 'velero');
      e.api.put(velero('Backup', 'velero', 'b-crossed', { storageLocation: 'opted' }));
      e.api.put(dr('velero', 'crossed', 'BackupLog', 'b-crossed'));
      e.api.put(dr('velero', 'straight', 'BackupLog', 'b-opted'));
      // What a confused cache or proxy could hand back: a Backup that says it lives in team-a.
      const inner = new CachedObjectReader(e.kube);
      const reader: ObjectReader = {
        secret: (ns, name, signal) => inner.secret(ns, name, signal),
        veleroList: (plural, ns, selector, signal) => inner.veleroList(plural, ns, selector, signal),
        async velero(plural, ns, name, signal, opts) {
          const o = await inner.velero(plural, ns, name, signal, opts);
          return o && name === 'b-crossed' ? { ...o, metadata: { ...o.metadata, namespace: 'team-a' } } : o;
        },
      };
      const { entries, log } = recorder();
      await e.start({ reader, log });
      assert.equal(annotation(e.get('velero', 'straight')), urlOf('velero', 'straight'));
      assert.equal(annotation(e.get('velero', 'crossed')), undefined);
      assert.equal(e.patches('velero', 'crossed').length, 0);
      assert.ok(!entries.some((l) => l.level === 'warn'), 'a refused chain is an answer, not an error to retry');
    } finally {
      await e.close();
    }
  });

  test('an unreadable CRD (no RBAC) means annotation only; a broken DownloadRequest watch is restarted', async () => {
    const e = await env({ downloadRequestCrd: { veleroServerURL: true, statusSubresource: true } });
    try {
      seedNamespace(e.api, 'velero');
      e.api.put(dr('velero', 'before', 'BackupLog', 'b-opted'));
      e.api.faults.add({ match: { resource: 'customresourcedefinitions' }, status: 403, times: 1 });
      const { entries, log } = recorder();
      const c = await e.start({ log, crdRecheckMs: 60_000 });
      assert.equal(c.capabilities.veleroServerURL, false);
      assert.equal(annotation(e.get('velero', 'before')), urlOf('velero', 'before'));
      assert.equal(e.api.calls.count({ subresource: 'status' }), 0);
      assert.ok(entries.some((l) => l.level === 'warn' && l.msg.includes('CRD')));

      await e.api.stop();
      e.api.put(dr('velero', 'while-down', 'BackupLog', 'b-opted'));
      await e.api.start();
      await waitFor(() => annotation(e.get('velero', 'while-down')) === urlOf('velero', 'while-down'), 'the request created while the API was down');
    } finally {
      await e.close();
    }
  });
});
