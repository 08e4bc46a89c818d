/**
 * kube's owned-object helper against the API test double with the real client library: read (404 →
 * undefined), create-if-absent (409 → the winner's), update on the read resourceVersion (409 → the
 * winner's, `won: false`), for Secrets and ConfigMaps alike, each call's status from the double's call
 * log, and failures on cue. Writers creating at once on a real API server (two gateway replicas, held
 * by an admission barrier until both have asked) are in test/e2e/kubernetes.test.ts.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, beforeEach, describe, test } from 'node:test';
import { createKubeClients } from '../../src/kube/client.ts';
import type { KubeClients } from '../../src/kube/client.ts';
import { OwnedObject } from '../../src/kube/owned.ts';
import type { OwnedKind } from '../../src/kube/owned.ts';
import { startKubeApiServer } from '../support/kube-apiserver/index.ts';
import type { KubeApiServer } from '../support/kube-apiserver/index.ts';

const NS = 'velero';
const NAME = 'owned-object';

describe('OwnedObject', () => {
  let api: KubeApiServer;
  let dir: string;
  let kubeconfig: string;
  before(async () => {
    api = await startKubeApiServer({ velero: false });
    dir = await mkdtemp(join(tmpdir(), 'vds-owned-'));
    kubeconfig = await api.writeKubeconfig(join(dir, 'kubeconfig'), api.kubeconfig(api.tokens.serviceAccount(NS, 'velero-download-server')));
  });
  after(async () => {
    await api.close();
    await rm(dir, { recursive: true, force: true });
  });
  beforeEach(() => {
    api.remove('v1', 'Secret', NAME, NS);
    api.remove('v1', 'ConfigMap', NAME, NS);
    api.faults.clear();
    api.calls.clear();
  });

  /** One writer: its own client, as another replica would have. */
  const writer = <K extends OwnedKind>(kind: K, timeoutMs = 5000): OwnedObject<K> => {
    const kube: KubeClients = createKubeClients({ kubeconfig, qps: 1000, burst: 1000, timeoutMs });
    return new OwnedObject(kube, { kind, namespace: NS, name: NAME });
  };

  for (const kind of ['Secret', 'ConfigMap'] as const) {
    const resource = kind === 'Secret' ? 'secrets' : 'configmaps';
    const body = (value: string): { data: Record<string, string> } => ({ data: { value: kind === 'Secret' ? Buffer.from(value).toString('base64') : value } });

    test(`${kind}: read is undefined while absent; create makes it; a second create gets the first one's`, async () => {
      const a = writer(kind);
      const b = writer(kind);
      assert.equal(await a.read(), undefined);
      const first = await a.create(body('a'));
      assert.equal(first.created, true);
      assert.deepEqual(first.object.data, body('a').data);
      const second = await b.create(body('b'));
      assert.equal(second.created, false, 'the second writer lost');
      assert.deepEqual(second.object.data, body('a').data, 'and got the winner\'s object');
      assert.deepEqual((await b.read())?.data, body('a').data);
      assert.deepEqual(api.calls.list({ resource, verb: 'create' }).map((c) => c.code), [201, 409]);
    });

    test(`${kind}: an update on a stale resourceVersion loses and returns the winner's version`, async () => {
      const a = writer(kind);
      const b = writer(kind);
      const { object } = await a.create(body('v1'));
      // Both read the same version; a writes first.
      const [readA, readB] = [structuredClone(object), structuredClone(object)];
      const wonA = await a.update({ ...readA, ...body('from-a') });
      assert.equal(wonA.won, true);
      const lostB = await b.update({ ...readB, ...body('from-b') });
      assert.equal(lostB.won, false);
      assert.deepEqual(lostB.object.data, body('from-a').data, 'b sees a\'s write, not its own');
      assert.equal(lostB.object.metadata?.resourceVersion, wonA.object.metadata?.resourceVersion);
      assert.deepEqual(api.calls.list({ resource, verb: 'update' }).map((c) => c.code), [200, 409]);
    });

    test(`${kind}: never a blind update; an update of a deleted object is an error`, async () => {
      const a = writer(kind);
      const { object } = await a.create(body('v1'));
      const { resourceVersion: _rv, ...meta } = object.metadata ?? {};
      await assert.rejects(a.update({ ...object, metadata: meta }), /no resourceVersion to update on/);
      assert.equal(api.calls.count({ resource, verb: 'update' }), 0);
      api.remove('v1', kind, NAME, NS);
      await assert.rejects(a.update(object), new RegExp(`updating ${kind} ${NS}/${NAME} failed \\(HTTP 404\\)`));
    });

    test(`${kind}: watch follows the one object through changes, deletion and re-creation, with get and watch only (no list)`, async () => {
      const a = writer(kind);
      api.put({ apiVersion: 'v1', kind, metadata: { name: 'neighbour', namespace: NS }, ...body('n') });
      const seen: string[] = [];
      const value = (o: { data?: Record<string, string> }): string => (kind === 'Secret' ? Buffer.from(o.data?.value ?? '', 'base64').toString() : (o.data?.value ?? ''));
      const w = a.watch({ onChange: (o) => seen.push(`change ${value(o)}`), onDelete: (o) => seen.push(`delete ${value(o)}`) });
      try {
        await w.start();
        assert.deepEqual(seen, [], 'absent at the start: nothing to tell');
        const { object } = await a.create(body('v1'));
        await a.update({ ...object, ...body('v2') });
        const until = async (n: number): Promise<void> => {
          for (let i = 0; i < 500 && seen.length < n; i++) await new Promise((r) => setTimeout(r, 10));
        };
        await until(2);
        api.remove('v1', kind, NAME, NS);
        await until(3);
        await a.create(body('v3'));
        await until(4);
        assert.deepEqual(seen, ['change v1', 'change v2', 'delete v2', 'change v3']);
        const verbs = new Set(api.calls.list({ resource, verb: ['get', 'list', 'watch'] }).map((c) => `${c.verb} ${c.name}`));
        assert.deepEqual([...verbs].sort(), [`get ${NAME}`, `watch ${NAME}`]);
      } finally {
        await w.stop();
      }
    });
  }

  test('failures name the object and the status, never the response body; a timeout says it timed out', async () => {
    const a = writer('ConfigMap', 200);
    api.faults.add({ match: { resource: 'configmaps', verb: 'get' }, status: 403, message: 'SECRET-BODY-TEXT', times: 1 });
    await assert.rejects(a.read(), (err: Error) => err.message === `reading ConfigMap ${NS}/${NAME} failed (HTTP 403)`);
    api.faults.add({ match: { resource: 'configmaps', verb: 'create' }, delayMs: 1000, times: 1 });
    await assert.rejects(a.create({ data: {} }), (err: Error) => err.message === `creating ConfigMap ${NS}/${NAME} failed (timed out)`);
  });
});
