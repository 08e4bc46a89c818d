/**
 * The one watch helper against the Kubernetes API test double with the real client library, each
 * behaviour read from the double's call log: a watch the server ends is resumed from the last
 * resourceVersion without a relist, a 410 Gone after a compaction relists (and reports what vanished
 * meanwhile), errors are retried with a doubling delay, watches name no timeoutSeconds and ask for
 * bookmarks, and a stop ends everything, also a watch still connecting. The same behaviours against a
 * real kube-apiserver that cuts watches every few seconds and restarts are in
 * test/e2e/kubernetes-watches.test.ts.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, beforeEach, describe, test } from 'node:test';
import { createKubeClients } from '../../src/kube/client.ts';
import type { KubeClients } from '../../src/kube/client.ts';
import { WatchedCollection } from '../../src/kube/watch.ts';
import type { WatchEvent, WatchOptions } from '../../src/kube/watch.ts';
import { startKubeApiServer } from '../support/kube-apiserver/index.ts';
import type { KubeApiServer, KubeObject } from '../support/kube-apiserver/index.ts';

/** Each test watches a namespace of its own: a collection stopped at the end of the test before may still have a request on its way. */
const NAMESPACES = Array.from({ length: 10 }, (_, i) => `watch-${i}`);
let NS = '';
const configMap = (name: string, value: string): KubeObject => ({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name, namespace: NS }, data: { value } });

async function waitFor(cond: () => boolean, what: string, ms = 8_000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

describe('the watch helper', () => {
  let api: KubeApiServer;
  let kube: KubeClients;
  let dir: string;
  const running: WatchedCollection<KubeObject>[] = [];
  /** A watch of the ConfigMaps in the test's namespace, with what it reported. */
  const watch = async (opts: Partial<WatchOptions<KubeObject>> = {}, awaitStart = true) => {
    const ns = NS;
    const events: [WatchEvent, string, string][] = [];
    const errors: number[] = [];
    const w = new WatchedCollection<KubeObject>({
      kube,
      path: `/api/v1/namespaces/${ns}/configmaps`,
      list: (o) => kube.core.listNamespacedConfigMap({ namespace: ns, ...(opts.fieldSelector && { fieldSelector: opts.fieldSelector }) }, o) as never,
      onChange: (type, o) => events.push([type, o.metadata.name!, (o as { data?: { value?: string } }).data?.value ?? '']),
      onError: (_err, retryInMs) => errors.push(retryInMs),
      retryMs: 20,
      maxRetryMs: 80,
      ...opts,
    });
    running.push(w);
    const started = w.start();
    if (awaitStart) await started;
    return { w, events, errors, started };
  };
  const calls = (verb: 'list' | 'watch') => api.calls.list({ resource: 'configmaps', verb, namespace: NS });

  before(async () => {
    api = await startKubeApiServer({ velero: false, bookmarkIntervalMs: 60_000, namespaces: NAMESPACES });
    dir = await mkdtemp(join(tmpdir(), 'vds-watch-'));
    kube = createKubeClients({ kubeconfig: await api.writeKubeconfig(join(dir, 'kubeconfig'), api.kubeconfig(api.adminToken)), qps: 1000, burst: 1000, timeoutMs: 5_000 });
  });
  beforeEach(async () => {
    await Promise.all(running.splice(0).map((w) => w.stop()));
    await api.start();
    NS = NAMESPACES.shift()!;
    api.faults.clear();
    api.calls.clear();
  });
  after(async () => {
    await Promise.all(running.splice(0).map((w) => w.stop()));
    await api?.close();
    await rm(dir, { recursive: true, force: true });
  });

  test('lists, then follows: adds, updates and deletes, and the cache answers get and list', async () => {
    api.put(configMap('a', '1'));
    const { w, events } = await watch();
    assert.equal(w.synced, true);
    api.put(configMap('b', '1'));
    api.put(configMap('a', '2'));
    api.remove('v1', 'ConfigMap', 'b', NS);
    await waitFor(() => events.length === 4, 'four events');
    assert.deepEqual(events, [['add', 'a', '1'], ['add', 'b', '1'], ['update', 'a', '2'], ['delete', 'b', '1']]);
    assert.equal((w.get(NS, 'a') as { data?: { value?: string } }).data?.value, '2');
    assert.deepEqual(w.list().map((o) => o.metadata.name), ['a']);
  });

  test('a watch the server ends is resumed from the last resourceVersion, without a relist', async () => {
    api.put(configMap('a', '1'));
    const { events } = await watch();
    api.put(configMap('a', '2'));
    await waitFor(() => events.length === 2, 'the update');
    const seen = api.get('v1', 'ConfigMap', 'a', NS)!.metadata.resourceVersion;
    api.endWatches();
    await waitFor(() => calls('watch').length === 2, 'a second watch');
    assert.equal(new URLSearchParams(calls('watch')[1]!.query).get('resourceVersion'), seen);
    api.put(configMap('a', '3'));
    await waitFor(() => events.length === 3, 'the change after the cut');
    assert.deepEqual(events.at(-1), ['update', 'a', '3']);
    assert.equal(calls('list').length, 1);
  });

  test('410 Gone after a compaction: relisted, and what changed or vanished meanwhile is reported', async () => {
    api.put(configMap('a', '1'));
    api.put(configMap('b', '1'));
    const { events } = await watch();
    await api.stop();
    api.put(configMap('a', '2'));
    api.remove('v1', 'ConfigMap', 'b', NS);
    api.store.compact();
    await api.start();
    await waitFor(() => events.length === 4, 'the relist');
    assert.deepEqual(events.slice(2).sort(), [['delete', 'b', '1'], ['update', 'a', '2']]);
    assert.equal(calls('list').length, 2);
  });

  test('a failed list is retried after a doubling delay, reported each time; start resolves after the first attempt', async () => {
    api.put(configMap('a', '1'));
    const fault = api.faults.add({ match: { resource: 'configmaps', verb: 'list', namespace: NS }, status: 503, times: 4 });
    const { w, events, errors } = await watch();
    assert.equal(w.synced, false);
    await waitFor(() => w.synced, 'the list after the faults');
    assert.equal(fault.hits, 4);
    assert.deepEqual(errors, [20, 40, 80, 80]);
    await waitFor(() => events.length === 1, 'the object');
  });

  test('a refused watch is retried too, from where it was', async () => {
    api.put(configMap('a', '1'));
    const fault = api.faults.add({ match: { resource: 'configmaps', verb: 'watch', namespace: NS }, status: 500, times: 2 });
    const { events, errors } = await watch();
    await waitFor(() => errors.length === 2 && calls('watch').some((c) => c.code === 200), 'a watch that is served');
    assert.equal(fault.hits, 2);
    assert.deepEqual(errors, [20, 40]);
    api.put(configMap('a', '2'));
    await waitFor(() => events.length === 2, 'the update');
    assert.equal(calls('list').length, 1, 'the watch resumed without a relist');
  });

  test('watches name no timeoutSeconds, ask for bookmarks, and carry the field selector', async () => {
    api.put(configMap('a', '1'));
    api.put(configMap('b', '1'));
    const { w } = await watch({ fieldSelector: 'metadata.name=a' });
    assert.deepEqual(w.list().map((o) => o.metadata.name), ['a']);
    await waitFor(() => calls('watch').length === 1, 'the watch');
    const q = new URLSearchParams(calls('watch')[0]!.query);
    assert.equal(q.get('timeoutSeconds'), null);
    assert.equal(q.get('allowWatchBookmarks'), 'true');
    assert.equal(q.get('fieldSelector'), 'metadata.name=a');
  });

  test('stop ends the watch; a watch still connecting at the stop is ended when it connects; nothing starts again', async () => {
    api.faults.add({ match: { resource: 'configmaps', verb: 'watch', namespace: NS }, delayMs: 300, times: 1 });
    const { w, events, started } = await watch({}, false);
    await waitFor(() => calls('watch').length === 1, 'the watch request');
    await w.stop();
    await started;
    await new Promise((r) => setTimeout(r, 500));
    api.put(configMap('late', '1'));
    api.endWatches();
    await new Promise((r) => setTimeout(r, 200));
    assert.deepEqual(events, []);
    assert.equal(calls('watch').length, 1);
    assert.equal(calls('list').length, 1);
  });
});
