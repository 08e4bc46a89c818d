/**
 * The AdmissionReview envelope as pure functions: what counts as a review, the operation label kept
 * bounded, and the answer (always allowed, a JSON patch only with a decision that has one). The
 * decision itself against forged and real reviews is test/kube/admission.test.ts and the stock-CLI
 * suites.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { parseReview, reviewResponse } from '../../src/velero/admission.ts';

const review = (request: unknown): unknown => ({ apiVersion: 'admission.k8s.io/v1', kind: 'AdmissionReview', request });

describe('the AdmissionReview envelope', () => {
  test('a v1 AdmissionReview with a request uid is a review; anything else is not', () => {
    const r = parseReview(review({ uid: 'u-1', operation: 'CREATE', namespace: 'velero' }));
    assert.deepEqual(r, { uid: 'u-1', operation: 'CREATE', request: { uid: 'u-1', operation: 'CREATE', namespace: 'velero' } });
    for (const body of [
      undefined,
      null,
      'text',
      { ...(review({ uid: 'u-1' }) as object), apiVersion: 'admission.k8s.io/v1beta1' },
      { ...(review({ uid: 'u-1' }) as object), kind: 'Other' },
      review(null),
      review({ uid: '' }),
      review({ uid: 7 }),
    ]) {
      assert.equal(parseReview(body), undefined, JSON.stringify(body));
    }
  });

  test('an operation that is no upper-case word is labelled other', () => {
    for (const operation of ['create', 'DELETE!', 'A'.repeat(17), 42, undefined]) {
      assert.equal(parseReview(review({ uid: 'u', operation }))?.operation, 'other', String(operation));
    }
    assert.equal(parseReview(review({ uid: 'u', operation: 'UPDATE' }))?.operation, 'UPDATE');
  });

  test('the answer is always allowed; a decision with a patch carries it base64-encoded, a skipped one none', () => {
    assert.deepEqual(reviewResponse('u-1'), { apiVersion: 'admission.k8s.io/v1', kind: 'AdmissionReview', response: { uid: 'u-1', allowed: true } });
    assert.deepEqual(reviewResponse('u-1', { outcome: 'skipped', why: 'x' }), reviewResponse('u-1'));
    const patch = [{ op: 'replace' as const, path: '/status/downloadURL', value: 'https://gw/x' }];
    const answer = reviewResponse('u-2', { outcome: 'minted', patch, downloadRequest: 'velero/d', requester: { username: 'alice', groups: [] }, target: 'backups/b/log', expires: new Date(0) });
    const response = answer.response as { uid: string; allowed: boolean; patchType: string; patch: string };
    assert.equal(response.patchType, 'JSONPatch');
    assert.deepEqual(JSON.parse(Buffer.from(response.patch, 'base64').toString()), patch);
    assert.equal(response.allowed, true);
  });
});
