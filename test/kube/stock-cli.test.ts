/**
 * The stock velero CLI through the gateway: the webhook records who created a DownloadRequest and,
 * when Velero writes its store URL, swaps in a gateway URL bound to that one DownloadRequest. A signed
 * URL is the recorded requester's, authorized like a bearer token, and only while the live object
 * carries it. The API server's admission calls are played by test/support/admission.ts.
 *
 * Replays the security review's findings on the signed route where the test must reach inside: a URL
 * serving another target than the one it was minted for (and costing no API read), a URL outliving its
 * DownloadRequest with the checks isolated, records that do not verify, expiry, key rotation. The
 * whole flow, per-user authorization at download, the audit lines and a forged review's URL are proven
 * against the real kube-apiserver in test/e2e/real-stock-cli.test.ts.
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import request from 'supertest';
import { keyRingSigner } from '../../src/auth/signed-urls.ts';
import { DEFAULT_REFRESH_MS, DEFAULT_ROTATE_AFTER_MS, SigningKeySource, announceLeadMs } from '../../src/auth/signing-keys.ts';
import { createKubeClients } from '../../src/kube/client.ts';
import { REQUESTER_ANNOTATIONS, signedPath } from '../../src/velero/downloadrequests.ts';
import { AdmissionFlow, applyJsonPatch, patchOf } from '../support/admission.ts';
import type { ReviewResponse, ReviewUser } from '../support/admission.ts';
import { binary } from '../support/http.ts';
import { inProcessGateway } from '../support/in-process.ts';
import type { InProcessGateway } from '../support/in-process.ts';
import { BACKUP, NS, kubeFixture, velero } from '../support/kube-fixture.ts';
import type { KubeFixture } from '../support/kube-fixture.ts';
import type { KubeObject } from '../support/kube-apiserver/index.ts';

const ALICE: ReviewUser = { username: 'alice', uid: 'uid-alice', groups: ['system:authenticated'] };
const BOB: ReviewUser = { username: 'bob', groups: ['system:authenticated'] };

type Status = { kind: string; reason: string; code: number; message: string };

describe('stock velero CLI: requester records and signed URLs', () => {
  let fx: KubeFixture;
  let gw: InProcessGateway;
  let flow: AdmissionFlow;
  const post = async (body: unknown): Promise<ReviewResponse> => {
    const res = await request(gw.webhook!).post('/admission/downloadrequests').send(body as object);
    return { status: res.status, body: res.body as ReviewResponse['body'] };
  };
  const urlOf = (dr: KubeObject): URL => new URL((dr.status as { downloadURL: string }).downloadURL);
  const get = async (u: URL): Promise<{ status: number; body: Buffer }> => {
    const res = await binary(request(gw.app).get(`${u.pathname}${u.search}`));
    return { status: res.status, body: res.body as Buffer };
  };
  const dr = (name: string) => fx.api.get('velero.io/v1', 'DownloadRequest', name, NS)!;

  before(async () => {
    fx = await kubeFixture();
    const bsl = fx.api.get('velero.io/v1', 'BackupStorageLocation', 'default', NS)!;
    fx.api.put({ ...bsl, metadata: { ...bsl.metadata, annotations: { 'download-server.velero.io/enabled': 'true' } } });
    gw = await inProcessGateway(fx.args('--fqdn', 'backups.example.com', '--object-cache-ttl', '300ms'), {}, { kubeServices: true });
    flow = new AdmissionFlow(fx.api, post, NS);
  });
  after(async () => {
    await gw?.stop();
    await fx?.close();
  });

  test('a URL is bound to its DownloadRequest: altered or foreign parameters, another name, a wrong key → 403, and no API read', async () => {
    const name = `${BACKUP}-${randomUUID()}`;
    await flow.create(ALICE, name, { kind: 'BackupLog', name: BACKUP });
    const good = urlOf((await flow.processed(name)).stored);
    assert.equal((await get(good)).status, 200);
    const variants: [string, (u: URL) => void][] = [
      ['another DownloadRequest', (u) => (u.pathname = u.pathname.replace(name, 'dr-log'))],
      ['another kind', (u) => u.searchParams.set('kind', 'BackupContents')],
      ['another target', (u) => u.searchParams.set('target', 'weekly')],
      ['another uid', (u) => u.searchParams.set('uid', randomUUID())],
      ['a later expiry', (u) => u.searchParams.set('expires', String(Number(u.searchParams.get('expires')) + 3600))],
      ['an altered signature', (u) => u.searchParams.set('signature', `${u.searchParams.get('signature')![0] === 'A' ? 'B' : 'A'}${u.searchParams.get('signature')!.slice(1)}`)],
      ['no signature', (u) => u.searchParams.delete('signature')],
      ['signed with another key', (u) => {
        const other = keyRingSigner(() => ({ current: Buffer.alloc(32, 7) }));
        const q = new URL(signedPath({ namespace: NS, name, uid: u.searchParams.get('uid')!, kind: 'BackupLog', target: BACKUP, expires: Number(u.searchParams.get('expires')) }, other), 'https://x');
        u.search = q.search;
      }],
    ];
    const reads = fx.api.calls.count({ resource: 'downloadrequests', verb: 'get' });
    for (const [what, alter] of variants) {
      const u = new URL(good);
      alter(u);
      const res = await get(u);
      assert.equal(res.status, 403, what);
      const status = JSON.parse(res.body.toString()) as Status;
      assert.equal(status.reason, 'Forbidden', what);
      assert.match(status.message, /not a valid signed DownloadRequest URL/, what);
    }
    assert.equal(fx.api.calls.count({ resource: 'downloadrequests', verb: 'get' }), reads, 'a URL the gateway did not sign costs no API read');
  });

  test('a DownloadRequest deleted and recreated under the same name (same or another target): the old URL is refused', async () => {
    const name = `${BACKUP}-${randomUUID()}`;
    await flow.create(ALICE, name, { kind: 'BackupLog', name: BACKUP });
    const url = urlOf((await flow.processed(name)).stored);
    assert.equal((await get(url)).status, 200);
    fx.api.remove('velero.io/v1', 'DownloadRequest', name, NS);
    const gone = await get(url);
    assert.equal(gone.status, 403);
    assert.match((JSON.parse(gone.body.toString()) as Status).message, /no longer exists/);
    // Recreated with the same target, then with another one; the old URL copied into status each time
    // (no real writer would: it isolates the uid and target checks from the "carries" check).
    for (const kind of ['BackupLog', 'BackupContents']) {
      fx.api.remove('velero.io/v1', 'DownloadRequest', name, NS);
      await flow.create(ALICE, name, { kind, name: BACKUP });
      fx.api.put({ ...dr(name), status: { phase: 'Processed', downloadURL: url.href } });
      const changed = await get(url);
      assert.equal(changed.status, 403, kind);
      assert.match((JSON.parse(changed.body.toString()) as Status).message, /deleted or changed/, kind);
    }
  });

  test('no valid requester record, no gateway URL: created while the webhook was down, or with a record copied from another request', async () => {
    const bare = `${BACKUP}-${randomUUID()}`;
    fx.api.put(velero('DownloadRequest', bare, { target: { kind: 'BackupLog', name: BACKUP } }));
    const { response } = await flow.processed(bare);
    assert.equal(patchOf(response), undefined);
    assert.equal(response.body.response?.allowed, true);

    const original = `${BACKUP}-${randomUUID()}`;
    const withRecord = await flow.create(ALICE, original, { kind: 'BackupLog', name: BACKUP });
    const copy = `${BACKUP}-${randomUUID()}`;
    fx.api.put(velero('DownloadRequest', copy, { target: { kind: 'BackupLog', name: BACKUP } }));
    const target = dr(copy);
    fx.api.put({ ...target, metadata: { ...target.metadata, annotations: withRecord.metadata?.annotations } });
    assert.equal(patchOf((await flow.processed(copy)).response), undefined, 'a record binds namespace, name, target and time');

    // A record edited after the fact (another group) no longer verifies.
    const edited = `${BACKUP}-${randomUUID()}`;
    const made = await flow.create(BOB, edited, { kind: 'BackupLog', name: BACKUP });
    fx.api.put({ ...made, metadata: { ...made.metadata, annotations: { ...made.metadata?.annotations, [REQUESTER_ANNOTATIONS.groups]: 'system:masters' } } });
    assert.equal(patchOf((await flow.processed(edited)).response), undefined);
  });

  test('the URL expires with the DownloadRequest (never later than 10 minutes)', async () => {
    const name = `${BACKUP}-${randomUUID()}`;
    await flow.create(ALICE, name, { kind: 'BackupLog', name: BACKUP });
    const far = new Date(Date.now() + 3 * 3600_000);
    const url = urlOf((await flow.processed(name, undefined, far)).stored);
    const expires = Number(url.searchParams.get('expires'));
    assert.ok(expires <= Date.now() / 1000 + 600 + 1 && expires >= Date.now() / 1000 + 590, `expires ${expires}`);
    // An already expired request gets no URL.
    const old = `${BACKUP}-${randomUUID()}`;
    await flow.create(ALICE, old, { kind: 'BackupLog', name: BACKUP });
    assert.equal(patchOf((await flow.processed(old, undefined, new Date(Date.now() - 1000))).response), undefined);
  });

  test('key rotation: records and URLs signed with the previous key stay valid', async () => {
    const name = `${BACKUP}-${randomUUID()}`;
    await flow.create(ALICE, name, { kind: 'BackupLog', name: BACKUP });
    const url = urlOf((await flow.processed(name)).stored);
    // A record made before the rotation, whose URL is minted after it.
    const later = `${BACKUP}-${randomUUID()}`;
    const made = await flow.create(ALICE, later, { kind: 'BackupLog', name: BACKUP });
    assert.ok(made.metadata?.annotations?.[REQUESTER_ANNOTATIONS.record]);
    const before = gw.services!.signingKeys.keys;
    // Another replica whose clock has reached the rotation period announces the next key, then
    // rotates it in (auth/signing-keys.ts).
    const clients = createKubeClients({ kubeconfig: fx.kubeconfigFile, qps: 50, burst: 50, timeoutMs: 5_000 });
    let skew = DEFAULT_ROTATE_AFTER_MS;
    const other = new SigningKeySource(clients, { namespace: NS, now: () => Date.now() + skew });
    await other.refresh();
    skew += announceLeadMs(DEFAULT_REFRESH_MS);
    await other.refresh();
    await gw.services!.signingKeys.refresh();
    assert.notDeepEqual(gw.services!.signingKeys.keys.current, before.current, 'rotated');
    assert.equal((await get(url)).status, 200);
    assert.equal((await get(urlOf((await flow.processed(later)).stored))).status, 200);
  });

  test('the JSON patch helper applies what the webhook answers (self-check of the test support)', () => {
    const obj = { metadata: { name: 'x', annotations: { a: '1' } }, status: { downloadURL: 'old' } };
    const out = applyJsonPatch(obj, [
      { op: 'add', path: '/metadata/annotations/download-server.velero.io~1requester', value: 'alice' },
      { op: 'replace', path: '/status/downloadURL', value: 'new' },
    ]);
    assert.deepEqual(out, { metadata: { name: 'x', annotations: { a: '1', 'download-server.velero.io/requester': 'alice' } }, status: { downloadURL: 'new' } });
    assert.throws(() => applyJsonPatch(obj, [{ op: 'replace', path: '/status/missing', value: 1 }]), /does not exist/);
  });
});
