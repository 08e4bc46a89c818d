/**
 * Kubernetes mode through the real wiring, against the Kubernetes API test double: who may download
 * what (a table in the spirit of kube-rbac-proxy's), and that a denied caller learns nothing.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import request from 'supertest';
import { BACKUP, NS, RESTORE, kubeFixture } from '../support/kube-fixture.ts';
import type { KubeFixture } from '../support/kube-fixture.ts';
import { binary } from '../support/http.ts';
import { inProcessGateway } from '../support/in-process.ts';
import type { InProcessGateway } from '../support/in-process.ts';

describe('kubernetes mode: authentication and authorization', () => {
  let fx: KubeFixture;
  let gw: InProcessGateway;
  before(async () => {
    fx = await kubeFixture({ apiAudiences: ['https://kubernetes.default.svc'] });
    gw = await inProcessGateway(fx.args());
  });
  after(() => fx.close());

  const base = `/v1/namespaces/${NS}`;
  type Row = [name: string, path: string, auth: string | undefined, status: number, reason?: string];
  const rows = (): Row[] => [
    ['no token', `${base}/backups/${BACKUP}/log`, undefined, 401, 'Unauthorized'],
    ['malformed header', `${base}/backups/${BACKUP}/log`, `Basic ${fx.tokens.alice}`, 401, 'Unauthorized'],
    ['unknown token', `${base}/backups/${BACKUP}/log`, 'Bearer not-a-token-anyone-issued', 401, 'Unauthorized'],
    ['token for another audience', `${base}/backups/${BACKUP}/log`, `Bearer ${fx.tokens.erin}`, 401, 'Unauthorized'],
    ['allowed', `${base}/backups/${BACKUP}/log`, `Bearer ${fx.tokens.alice}`, 200],
    ['allowed contents', `${base}/backups/${BACKUP}/contents`, `Bearer ${fx.tokens.alice}`, 200],
    ['denied', `${base}/backups/${BACKUP}/log`, `Bearer ${fx.tokens.carol}`, 403, 'Forbidden'],
    ['allowed for log', `${base}/backups/${BACKUP}/log`, `Bearer ${fx.tokens.bob}`, 200],
    ['but denied for contents', `${base}/backups/${BACKUP}/contents`, `Bearer ${fx.tokens.bob}`, 403, 'Forbidden'],
    ['denied in another namespace', `/v1/namespaces/team-b/backups/${BACKUP}/log`, `Bearer ${fx.tokens.alice}`, 403, 'Forbidden'],
    ['group-based grant', `${base}/backups/${BACKUP}/log`, `Bearer ${fx.tokens.dave}`, 200],
    ['restore log through its backup', `${base}/restores/${RESTORE}/log`, `Bearer ${fx.tokens.alice}`, 200],
    ['a restore artifact needs restores/<artifact>', `${base}/restores/${RESTORE}/log`, `Bearer ${fx.tokens.bob}`, 403, 'Forbidden'],
    ['downloadrequest', `${base}/downloadrequests/dr-log`, `Bearer ${fx.tokens.dave}`, 200],
    ['downloadrequest without get on downloadrequests', `${base}/downloadrequests/dr-log`, `Bearer ${fx.tokens.bob}`, 403, 'Forbidden'],
    ['missing downloadrequest', `${base}/downloadrequests/nope`, `Bearer ${fx.tokens.alice}`, 404, 'NotFound'],
    ['missing backup, allowed caller', `${base}/backups/does-not-exist/log`, `Bearer ${fx.tokens.alice}`, 404, 'NotFound'],
  ];

  test('the table', async () => {
    for (const [name, path, auth, status, reason] of rows()) {
      const req = request(gw.app).get(path);
      if (auth) req.set('Authorization', auth);
      const res = await req;
      assert.equal(res.status, status, `${name}: ${res.text}`);
      if (reason) assert.equal((res.body as { reason: string }).reason, reason, name);
    }
  });

  test('the bytes are the backup\'s', async () => {
    const res = await binary(request(gw.app).get(`${base}/backups/${BACKUP}/contents`).set('Authorization', `Bearer ${fx.tokens.alice}`));
    assert.equal(res.status, 200);
    assert.deepEqual(res.body, fx.files.contents);
  });

  test('a denied caller gets the same 403 for a missing and an existing backup, and it names user, verb and resource', async () => {
    const a = await request(gw.app).get(`${base}/backups/${BACKUP}/contents`).set('Authorization', `Bearer ${fx.tokens.bob}`);
    const b = await request(gw.app).get(`${base}/backups/no-such-backup/contents`).set('Authorization', `Bearer ${fx.tokens.bob}`);
    assert.equal(a.status, 403);
    assert.equal(b.status, 403);
    const msg = (a.body as { message: string }).message;
    assert.match(msg, /User "bob" cannot get resource "backups\/contents" in API group "velero.io" in the namespace "velero"/);
    assert.equal((b.body as { message: string }).message, msg.replace(`"${BACKUP}"`, '"no-such-backup"'));
  });

  test('the SubjectAccessReview carries the user and the resource attributes', async () => {
    await request(gw.app).get(`${base}/backups/${BACKUP}/results`).set('Authorization', `Bearer ${fx.tokens.dave}`);
    const sar = fx.api.calls.subjectAccessReviews().map((b) => b as { spec: { user: string; groups: string[]; resourceAttributes: Record<string, string> } }).find((b) => b.spec.resourceAttributes.subresource === 'results');
    assert.ok(sar);
    assert.equal(sar.spec.user, 'dave');
    assert.ok(sar.spec.groups.includes('backup-readers'));
    assert.deepEqual(sar.spec.resourceAttributes, { group: 'velero.io', resource: 'backups', subresource: 'results', verb: 'get', namespace: NS, name: BACKUP });
  });

  test('no token appears in the log', () => {
    for (const t of Object.values(fx.tokens)) assert.ok(!gw.rawLog().includes(t));
  });
});
