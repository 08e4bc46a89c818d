/**
 * The admission webhook as an attacker sees it: any pod can reach its port and post whatever it
 * likes. Replays the security review's findings: the webhook on the public download port, a forged
 * review minting a URL, the answer telling whether a backup exists, unbounded bodies; and checks what
 * a review it cannot decide gets (allowed, no patch, counted).
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import request from 'supertest';
import { REQUESTER_ANNOTATIONS } from '../../src/velero/downloadrequests.ts';
import { AdmissionFlow, patchOf, review } from '../support/admission.ts';
import type { ReviewResponse, ReviewUser } from '../support/admission.ts';
import { inProcessGateway } from '../support/in-process.ts';
import type { InProcessGateway } from '../support/in-process.ts';
import { BACKUP, NS, kubeFixture, velero } from '../support/kube-fixture.ts';
import type { KubeFixture } from '../support/kube-fixture.ts';

const ALICE: ReviewUser = { username: 'alice', groups: ['system:authenticated'] };
const MALLORY: ReviewUser = { username: 'system:serviceaccount:team-x:mallory', groups: ['system:serviceaccounts', 'system:authenticated'] };
const PATH = '/admission/downloadrequests';

type Status = { kind: string; reason: string; code: number };

describe('the admission webhook under attack', () => {
  let fx: KubeFixture;
  let gw: InProcessGateway;
  let flow: AdmissionFlow;
  const post = async (body: unknown): Promise<ReviewResponse> => {
    const res = await request(gw.webhook!).post(PATH).send(body as object);
    return { status: res.status, body: res.body as ReviewResponse['body'] };
  };
  const processedObject = (name: string, extra: Record<string, unknown> = {}) => ({
    ...velero('DownloadRequest', name, { target: { kind: 'BackupContents', name: BACKUP } }),
    status: { phase: 'Processed', downloadURL: 'http://minio.velero.svc:9000/velero/x', expiration: new Date(Date.now() + 600_000).toISOString() },
    ...extra,
  });

  before(async () => {
    fx = await kubeFixture();
    const bsl = fx.api.get('velero.io/v1', 'BackupStorageLocation', 'default', NS)!;
    fx.api.put({ ...bsl, metadata: { ...bsl.metadata, annotations: { 'download-server.velero.io/enabled': 'true' } } });
    gw = await inProcessGateway(fx.args('--fqdn', 'backups.example.com'), {}, { kubeServices: true });
    flow = new AdmissionFlow(fx.api, post, NS);
  });
  after(async () => {
    await gw?.stop();
    await fx?.close();
  });

  test('the download port does not serve the webhook: POST /admission/downloadrequests there is a 404 like any unknown path', async () => {
    const forged = review('UPDATE', NS, processedObject('dr-log'), MALLORY);
    const res = await request(gw.app).post(PATH).send(forged);
    assert.equal(res.status, 404);
    assert.equal((res.body as Status).kind, 'Status');
    assert.equal((res.body as Status).reason, 'NotFound');
  });

  test('the webhook port serves nothing else, refuses bodies over 64 KiB and anything that is not an AdmissionReview', async () => {
    const big = await request(gw.webhook!).post(PATH).set('Content-Type', 'application/json').send(JSON.stringify({ pad: 'x'.repeat(65 * 1024) }));
    assert.equal(big.status, 413);
    assert.equal((big.body as Status).reason, 'RequestEntityTooLarge');
    const garbage = await request(gw.webhook!).post(PATH).set('Content-Type', 'application/json').send('{not json');
    assert.equal(garbage.status, 400);
    const notReview = await request(gw.webhook!).post(PATH).send({ hello: 'world' });
    assert.equal(notReview.status, 400);
    assert.equal((notReview.body as Status).kind, 'Status');
    assert.equal((await request(gw.webhook!).get(PATH)).status, 405);
    for (const path of ['/v1/namespaces/velero/backups/nightly/log', '/v1/info', '/healthz', '/metrics']) {
      assert.equal((await request(gw.webhook!).get(path)).status, 404, path);
    }
  });

  test('a forged UPDATE review mints nothing: no record, a record the gateway did not sign, or a uid no DownloadRequest has', async () => {
    // A record the gateway signed for a forged CREATE claiming to be alice (the API server's policy
    // refuses such a record on a real object; here it is only ever posted to the webhook).
    const created = await post(review('CREATE', NS, velero('DownloadRequest', 'dr-log', { target: { kind: 'BackupContents', name: BACKUP } }), ALICE));
    const record = Object.fromEntries((patchOf(created) ?? []).map((op) => [op.path, op.value])) as Record<string, unknown>;
    const annotations = (record['/metadata/annotations'] ?? {}) as Record<string, string>;
    assert.equal(annotations[REQUESTER_ANNOTATIONS.user], 'alice', 'a forged CREATE gets a record naming whoever it claims');
    const withRecord = (extra: Record<string, unknown>) =>
      processedObject('dr-log', { metadata: { name: 'dr-log', namespace: NS, uid: randomUUID(), creationTimestamp: new Date().toISOString(), annotations, ...extra } });
    const cases = [
      processedObject('dr-log'), // the real DownloadRequest's name, claiming BackupContents
      withRecord({}), // with a gateway-signed record, but a uid of its own
      withRecord({ annotations: { ...annotations, [REQUESTER_ANNOTATIONS.record]: `${Math.floor(Date.now() / 1000)}.${'A'.repeat(43)}` } }),
    ];
    for (const object of cases) {
      const res = await post(review('UPDATE', NS, object, MALLORY));
      assert.equal(res.status, 200);
      assert.equal(res.body.response?.allowed, true);
      assert.equal(patchOf(res), undefined);
    }
  });

  test('no existence oracle: forged reviews for an existing and a missing backup get the same answer, and no Backup or location is read', async () => {
    fx.api.calls.clear();
    const answers: unknown[] = [];
    for (const backup of [BACKUP, 'no-such-backup']) {
      const object = { ...velero('DownloadRequest', `probe-${backup}`, { target: { kind: 'BackupLog', name: backup } }), metadata: { name: `probe-${backup}`, namespace: NS, uid: randomUUID() }, status: { downloadURL: 'http://x/y' } };
      const res = await post(review('UPDATE', NS, object, MALLORY));
      answers.push({ status: res.status, response: { ...res.body.response, uid: undefined } });
    }
    assert.deepEqual(answers[0], answers[1]);
    assert.equal(fx.api.calls.count({ resource: ['backups', 'restores', 'backupstoragelocations'] }), 0);
  });

  test('no amplification: a forged review costs at most one API read (the DownloadRequest), none when it carries no signed record', async () => {
    const made = await flow.create(ALICE, `amp-${randomUUID()}`, { kind: 'BackupLog', name: BACKUP });
    fx.api.calls.clear();
    // The live record with a uid no object has: one read of that one DownloadRequest, nothing else.
    const forged = { ...made, metadata: { ...made.metadata, uid: randomUUID() }, status: { downloadURL: 'http://x/y' } };
    assert.equal(patchOf(await post(review('UPDATE', NS, forged, MALLORY))), undefined);
    // (The DownloadRequest controller's own annotation patch may land meanwhile: only reads count.)
    const reads = fx.api.calls.list({ verb: ['get', 'list'] });
    assert.ok(reads.length <= 1, `${reads.length} API reads: ${JSON.stringify(reads.map((c) => [c.verb, c.resource, c.name]))}`);
    fx.api.calls.clear();
    for (let i = 0; i < 20; i++) await post(review('UPDATE', NS, processedObject(`none-${i}`), MALLORY));
    assert.equal(fx.api.calls.count({ verb: ['get', 'list'] }), 0, 'reviews without a signed record read nothing');
  });

  test('CREATE: the record always names the real requester; whatever the creator wrote in its keys is replaced', async () => {
    const name = `mine-${randomUUID()}`;
    const object = {
      ...velero('DownloadRequest', name, { target: { kind: 'BackupLog', name: BACKUP } }),
      metadata: { name, namespace: NS, annotations: { [REQUESTER_ANNOTATIONS.user]: 'alice', [REQUESTER_ANNOTATIONS.groups]: 'system:masters', keep: 'me' } },
    };
    const stored = await flow.create(MALLORY, name, { kind: 'BackupLog', name: BACKUP }, { metadata: object.metadata });
    const a = stored.metadata?.annotations ?? {};
    assert.equal(a[REQUESTER_ANNOTATIONS.user], MALLORY.username);
    assert.equal(a[REQUESTER_ANNOTATIONS.groups], 'system:serviceaccounts,system:authenticated');
    assert.equal(a.keep, 'me');
    // A user whose identity cannot be recorded unambiguously gets no record (and so no gateway URL).
    const odd = await post(review('CREATE', NS, velero('DownloadRequest', 'odd', { target: { kind: 'BackupLog', name: BACKUP } }), { username: 'x', groups: [''] }));
    assert.equal(patchOf(odd), undefined);
    // Not a DownloadRequest, another namespace, no name yet: allowed untouched.
    for (const object of [{ kind: 'Pod', metadata: { name: 'p', namespace: NS } }, { ...velero('DownloadRequest', 'x', { target: { kind: 'BackupLog', name: BACKUP } }, 'elsewhere') }, { kind: 'DownloadRequest', metadata: { generateName: 'x-', namespace: NS }, spec: { target: { kind: 'BackupLog', name: BACKUP } } }]) {
      const res = await post(review('CREATE', object.metadata.namespace ?? NS, object, ALICE));
      assert.equal(res.body.response?.allowed, true);
      assert.equal(patchOf(res), undefined);
    }
  });

  test('a review the webhook cannot decide in time is answered allowed without a patch, and counted as failed', async () => {
    const name = `slow-${randomUUID()}`;
    const made = await flow.create(ALICE, name, { kind: 'BackupLog', name: BACKUP });
    // The watch has it with its real uid; a review naming another uid needs a live read, which hangs.
    const fault = fx.api.faults.add({ match: { resource: 'downloadrequests', verb: 'get', name }, delayMs: 6_000 });
    try {
      const started = Date.now();
      const res = await post(review('UPDATE', NS, { ...made, metadata: { ...made.metadata, uid: randomUUID() }, status: { downloadURL: 'http://x/y' } }, MALLORY));
      const took = Date.now() - started;
      assert.equal(res.status, 200);
      assert.equal(res.body.response?.allowed, true);
      assert.equal(patchOf(res), undefined);
      assert.ok(took < 4_500, `answered after ${took} ms, within the API server's 5 s`);
    } finally {
      fault.remove();
    }
    const metrics = await gw.metrics.registry.getSingleMetricAsString('velero_download_server_admission_reviews_total');
    assert.match(metrics, /velero_download_server_admission_reviews_total\{operation="UPDATE",outcome="failed"\} [1-9]/);
    assert.match(metrics, /velero_download_server_admission_reviews_total\{operation="CREATE",outcome="recorded"\} [1-9]/);
  });
});
