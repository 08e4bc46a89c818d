/** The real API server harness itself: it starts, serves Velero's CRDs as published, and answers reviews. */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { missingTools, startRealCluster } from '../support/real-cluster.ts';
import type { RealCluster } from '../support/real-cluster.ts';

describe('the real kube-apiserver of the tests', { skip: missingTools('kube-apiserver', 'etcd') }, () => {
  let k: RealCluster;
  before(async () => (k = await startRealCluster()));
  after(() => k?.close());

  test('it reports the release it was built as, and serves Velero\'s DownloadRequest CRD without a status subresource', async () => {
    const v = await k.rest<{ gitVersion: string }>('GET', '/version');
    assert.match(v.body.gitVersion, /^v1\.\d+\.\d+$/);
    const crd = await k.rest<{ spec: { versions: { name: string; subresources?: { status?: unknown } }[] } }>('GET', '/apis/apiextensions.k8s.io/v1/customresourcedefinitions/downloadrequests.velero.io');
    assert.equal(crd.status, 200);
    assert.equal(crd.body.spec.versions.find((x) => x.name === 'v1')?.subresources?.status, undefined);
    const du = await k.rest('GET', '/apis/velero.io/v2alpha1');
    assert.equal(du.status, 200);
  });

  test('static tokens, TokenRequest with audiences, TokenReview and SubjectAccessReview answer for real', async () => {
    const token = await k.serviceAccountToken('velero', 'probe', ['velero-download-server']);
    const review = await k.rest<{ status: { authenticated?: boolean; audiences?: string[]; user?: { username: string } } }>('POST', '/apis/authentication.k8s.io/v1/tokenreviews', {
      apiVersion: 'authentication.k8s.io/v1',
      kind: 'TokenReview',
      spec: { token, audiences: ['velero-download-server'] },
    });
    assert.equal(review.body.status.authenticated, true);
    assert.equal(review.body.status.user?.username, 'system:serviceaccount:velero:probe');
    const wrongAudience = await k.rest<{ status: { authenticated?: boolean } }>('POST', '/apis/authentication.k8s.io/v1/tokenreviews', {
      apiVersion: 'authentication.k8s.io/v1',
      kind: 'TokenReview',
      spec: { token, audiences: ['something-else'] },
    });
    assert.notEqual(wrongAudience.body.status.authenticated, true);
    const sar = await k.rest<{ status: { allowed: boolean } }>('POST', '/apis/authorization.k8s.io/v1/subjectaccessreviews', {
      apiVersion: 'authorization.k8s.io/v1',
      kind: 'SubjectAccessReview',
      spec: { user: 'alice', groups: ['system:authenticated'], resourceAttributes: { group: 'velero.io', resource: 'backups', subresource: 'log', verb: 'get', namespace: 'velero', name: 'nightly' } },
    });
    assert.equal(sar.body.status.allowed, false);
    const me = await k.rest<{ status: { userInfo: { username: string; groups: string[] } } }>('POST', '/apis/authentication.k8s.io/v1/selfsubjectreviews', { apiVersion: 'authentication.k8s.io/v1', kind: 'SelfSubjectReview' }, { token: k.tokens.dave });
    assert.deepEqual(me.body.status.userInfo.groups, ['backup-readers', 'system:authenticated']);
  });
});
