/**
 * The DownloadRequest rules as pure functions: the requester record's encoding (which the chart's
 * ValidatingAdmissionPolicy recomputes with CEL) and its signature, and how a signed URL is judged
 * against a DownloadRequest source that counts its reads.
 */
import assert from 'node:assert/strict';
import { randomBytes, randomUUID } from 'node:crypto';
import { describe, test } from 'node:test';
import { keyRingSigner } from '../../src/auth/signed-urls.ts';
import type { KubeObject } from '../../src/kube/objects.ts';
import {
  REQUESTER_ANNOTATIONS,
  RECORD_SKEW_SECONDS,
  SignedUrls,
  downloadRequestUrl,
  encodeRequester,
  optsIn,
  requesterAnnotations,
  signedPath,
  verifyRequester,
} from '../../src/velero/downloadrequests.ts';
import type { DownloadRequestSource, Requester } from '../../src/velero/downloadrequests.ts';
import { CrossNamespaceError, NotFoundError, SignedUrlRefusedError } from '../../src/velero/errors.ts';
import type { Target } from '../../src/velero/artifacts.ts';

const signer = keyRingSigner(() => ({ current: Buffer.alloc(32, 1) }));
const NOW = 1_800_000_000;
const ID = { namespace: 'velero', name: 'nightly-1', kind: 'BackupLog', target: 'nightly' };

function drWith(annotations: Record<string, string>, over: Partial<{ name: string; kind: string; created: number; uid: string; downloadURL: string }> = {}): KubeObject {
  return {
    apiVersion: 'velero.io/v1',
    kind: 'DownloadRequest',
    metadata: { name: over.name ?? ID.name, namespace: ID.namespace, uid: over.uid ?? 'uid-1', creationTimestamp: new Date((over.created ?? NOW) * 1000).toISOString(), annotations },
    spec: { target: { kind: over.kind ?? ID.kind, name: ID.target } },
    ...(over.downloadURL && { status: { downloadURL: over.downloadURL } }),
  };
}

describe('the requester record', () => {
  const hostile: Requester[] = [
    { username: 'alice', groups: [] },
    { username: 'oidc:alice@example.com', uid: 'u-1', groups: ['a,b', 'c=d', '%2C', 'line\nbreak', '100%'] },
    { username: 'system:serviceaccount:ns:sa', groups: ['system:serviceaccounts'], extra: { 'authentication.kubernetes.io/pod-name': ['pod-1'], 'scopes.example/x=y': ['a,b', 'c'], empty: [] } },
  ];

  test('what is recorded is what is read back, whatever characters names hold', () => {
    for (const user of hostile) {
      const ann = requesterAnnotations(ID, user, NOW, signer)!;
      const r = verifyRequester(drWith(ann), signer);
      assert.ok('requester' in r, JSON.stringify(r));
      assert.deepEqual(r.requester, { ...user, ...(user.extra && { extra: user.extra }) });
    }
  });

  test('the encoding is injective where a naive join is not: one group "a,b" is not groups a and b', () => {
    assert.notEqual(encodeRequester({ username: 'x', groups: ['a,b'] })!.groups, encodeRequester({ username: 'x', groups: ['a', 'b'] })!.groups);
    assert.notEqual(encodeRequester({ username: 'x', groups: ['%2C'] })!.groups, encodeRequester({ username: 'x', groups: [','] })!.groups);
    assert.notEqual(
      encodeRequester({ username: 'x', groups: [], extra: { 'a=b': ['c'] } })!.extra,
      encodeRequester({ username: 'x', groups: [], extra: { a: ['b=c'] } })!.extra,
    );
    // What cannot be told apart is not recorded at all.
    assert.equal(encodeRequester({ username: 'x', groups: [''] }), undefined);
    assert.equal(encodeRequester({ username: 'x', groups: [], extra: { k: [''] } }), undefined);
    assert.equal(encodeRequester({ username: '', groups: [] }), undefined);
  });

  test('a record does not survive an edit, a move to another request or target, or a clock far from creation', () => {
    const ann = requesterAnnotations(ID, { username: 'bob', groups: ['dev'] }, NOW, signer)!;
    const cases: [string, KubeObject][] = [
      ['another user', drWith({ ...ann, [REQUESTER_ANNOTATIONS.user]: 'alice' })],
      ['another group', drWith({ ...ann, [REQUESTER_ANNOTATIONS.groups]: 'dev,system:masters' })],
      ['extra added', drWith({ ...ann, [REQUESTER_ANNOTATIONS.extra]: 'x=y' })],
      ['another name', drWith(ann, { name: 'nightly-2' })],
      ['another target kind', drWith(ann, { kind: 'BackupContents' })],
      ['created much later', drWith(ann, { created: NOW + RECORD_SKEW_SECONDS + 1 })],
      ['created much earlier', drWith(ann, { created: NOW - RECORD_SKEW_SECONDS - 1 })],
      ['no record', drWith({ ...ann, [REQUESTER_ANNOTATIONS.record]: '' })],
      ['another key', drWith(requesterAnnotations(ID, { username: 'bob', groups: ['dev'] }, NOW, keyRingSigner(() => ({ current: randomBytes(32) })))!)],
    ];
    assert.ok('requester' in verifyRequester(drWith(ann, { created: NOW + RECORD_SKEW_SECONDS }), signer));
    for (const [what, dr] of cases) assert.ok('why' in verifyRequester(dr, signer), what);
  });
});

describe('signed URLs against a counting DownloadRequest source', () => {
  function source(objects: { cached?: KubeObject; live?: KubeObject }) {
    const calls = { cached: 0, live: 0 };
    const s: DownloadRequestSource = {
      cached: () => (calls.cached++, objects.cached),
      live: async () => (calls.live++, objects.live),
    };
    return { s, calls };
  }
  const uid = randomUUID();
  const expires = NOW + 300;
  const path = signedPath({ ...ID, uid, expires }, signer);
  const query = Object.fromEntries(new URL(path, 'https://gw').searchParams);
  const carrying = drWith(requesterAnnotations(ID, { username: 'bob', groups: ['dev'] }, NOW, signer)!, { uid, downloadURL: `https://gw.example${path}` });
  const urls = (s: DownloadRequestSource) => new SignedUrls({ signer, serves: (ns) => ns === 'velero', downloadRequests: s, now: () => NOW * 1000 });
  const signal = new AbortController().signal;

  test('a match in the watch cache needs no read; the grant is the recorded requester and the signed target', async () => {
    const { s, calls } = source({ cached: carrying });
    const grant = await urls(s).verify('velero', ID.name, query, signal);
    assert.deepEqual(grant.requester, { username: 'bob', groups: ['dev'] });
    assert.deepEqual(grant.target, { namespace: 'velero', owner: 'backups', name: 'nightly', artifact: 'log' });
    assert.deepEqual(calls, { cached: 1, live: 0 });
  });

  test('a miss or a stale copy in the cache is read again live before the answer', async () => {
    for (const cached of [undefined, drWith({}, { uid })]) {
      const { s, calls } = source({ ...(cached && { cached }), live: carrying });
      assert.equal((await urls(s).verify('velero', ID.name, query, signal)).requester.username, 'bob');
      assert.equal(calls.live, 1);
    }
  });

  test('refusals: all the same error kind; a URL the gateway did not sign reads nothing', async () => {
    const { s, calls } = source({ cached: carrying, live: carrying });
    const bad = [
      { ...query, signature: 'A'.repeat(43) },
      { ...query, uid: randomUUID() },
      { ...query, kind: 'NoSuchKind' },
      { ...query, expires: 'soon' },
      { ...query, target: '../etc' },
      { ...query, signature: undefined },
    ];
    for (const q of bad) await assert.rejects(urls(s).verify('velero', ID.name, q, signal), SignedUrlRefusedError);
    await assert.rejects(urls(s).verify('velero', 'nightly-2', query, signal), SignedUrlRefusedError);
    await assert.rejects(urls(s).verify('other', ID.name, query, signal), SignedUrlRefusedError);
    assert.deepEqual(calls, { cached: 0, live: 0 });
    const expired = new SignedUrls({ signer, serves: () => true, downloadRequests: s, now: () => (expires + 1) * 1000 });
    await assert.rejects(expired.verify('velero', ID.name, query, signal), /expired/);
  });

  test('refusals after the MAC: gone, recreated, not carrying the URL, no valid record', async () => {
    const record = carrying.metadata!.annotations!;
    const cases: [string, KubeObject | undefined, RegExp][] = [
      ['gone', undefined, /no longer exists/],
      ['recreated', drWith(record, { uid: randomUUID(), downloadURL: `https://gw.example${path}` }), /deleted or changed/],
      ['not carrying', drWith(record, { uid, downloadURL: 'http://minio/x' }), /no longer carries/],
      ['no record', drWith({}, { uid, downloadURL: `https://gw.example${path}` }), /requester/],
    ];
    for (const [what, dr] of cases) {
      const { s, calls } = source({ ...(dr && { cached: dr, live: dr }) });
      await assert.rejects(urls(s).verify('velero', ID.name, query, signal), (err: Error) => err instanceof SignedUrlRefusedError && (err.message.match(cases.find((c) => c[0] === what)![2]) !== null), what);
      assert.equal(calls.live, 1, `${what}: read live before refusing`);
    }
  });
});

describe('the opt-in rule and the DownloadRequest URL', () => {
  const target: Target = { namespace: 'team-a', owner: 'restores', name: 'r', artifact: 'log' };
  const bsl = (enabled?: string): KubeObject => ({ metadata: { name: 'default', namespace: 'team-a', ...(enabled !== undefined && { annotations: { 'download-server.velero.io/enabled': enabled } }) } });
  const locations = (answer: () => KubeObject) => {
    const asked: Target[] = [];
    return { asked, storageLocationOf: async (t: Target) => (asked.push(t), answer()) };
  };
  const signal = new AbortController().signal;

  test('the location\'s annotation "true" opts in; anything else does not; serving all locations reads nothing', async () => {
    assert.equal(await optsIn(target, locations(() => bsl('true')), false, signal), true);
    for (const v of [undefined, 'false', 'TRUE', '']) assert.equal(await optsIn(target, locations(() => bsl(v)), false, signal), false, String(v));
    const l = locations(() => bsl());
    assert.equal(await optsIn(target, l, true, signal), true);
    assert.equal(l.asked.length, 0);
  });

  test('a broken chain or one leaving the namespace opts in to nothing; an API failure propagates', async () => {
    const missing = locations(() => {
      throw new NotFoundError('backups.velero.io "b" not found', { kind: 'backups', name: 'b' });
    });
    assert.equal(await optsIn(target, missing, false, signal), false);
    assert.deepEqual(missing.asked, [target]);
    const crossed = locations(() => {
      throw new CrossNamespaceError('elsewhere');
    });
    assert.equal(await optsIn(target, crossed, false, signal), false);
    const down = locations(() => {
      throw new Error('HTTP 503');
    });
    await assert.rejects(optsIn(target, down, false, signal), /503/);
  });

  test('one spelling of the URL: the base without its trailing slashes, then the path', () => {
    assert.equal(downloadRequestUrl('https://gw.example.com//', 'team-a', 'dr-1'), 'https://gw.example.com/v1/namespaces/team-a/downloadrequests/dr-1');
  });
});
