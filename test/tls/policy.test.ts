/**
 * The serving certificate's policy as pure functions, on certificates made for each case with a fixed
 * clock: the names a generated certificate covers, whose Secret is the gateway's, when a certificate
 * falls due, each reason a renewal plan gives (and what it keeps), the CA bundle after a renewal, and
 * when the Secret is looked at next. How the Secret source acts on these is test/tls/secret.test.ts.
 */
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { before, describe, test } from 'node:test';
import { generateCa, generateCaSigned, generateSelfSigned } from '../../src/tls/generate.ts';
import {
  MANAGED_BY,
  MANAGED_BY_LABEL,
  RENEWAL_RETRY_MS,
  generatedCertificateHosts,
  isManagedSecret,
  nextCheckMs,
  planRenewal,
  renewalTime,
  renewedCaBundle,
  splitPem,
} from '../../src/tls/policy.ts';
import type { HeldCertificate } from '../../src/tls/policy.ts';
import type { CertificatePair } from '../../src/tls/types.ts';

const DAY = 24 * 3600_000;
const T0 = new Date('2030-01-01T00:00:00Z');
const at = (days: number): Date => new Date(T0.getTime() + days * DAY);
const HOSTS = generatedCertificateHosts({ namespace: 'velero' });

describe('the names of a generated certificate', () => {
  test("the Service's cluster names, the FQDN's host, the extra names, normalized and without duplicates", () => {
    assert.deepEqual(HOSTS, ['velero-download-server', 'velero-download-server.velero', 'velero-download-server.velero.svc', 'velero-download-server.velero.svc.cluster.local']);
    assert.deepEqual(
      generatedCertificateHosts({ namespace: 'ns', serviceName: 'gw', clusterDomain: 'corp', fqdn: 'https://Downloads.Example.com:8443/', extraSans: ['[fd00::1]', 'gw', '10.0.0.1'] }),
      ['gw', 'gw.ns', 'gw.ns.svc', 'gw.ns.svc.corp', 'downloads.example.com', 'fd00::1', '10.0.0.1'],
    );
  });

  test("the gateway's label makes a Secret its own, unless cert-manager has taken it over", () => {
    assert.equal(isManagedSecret({ metadata: { labels: { [MANAGED_BY_LABEL]: MANAGED_BY } } }), true);
    assert.equal(isManagedSecret({ metadata: { labels: { [MANAGED_BY_LABEL]: MANAGED_BY }, annotations: { 'cert-manager.io/certificate-name': 'gw' } } }), false);
    assert.equal(isManagedSecret({ metadata: { labels: { [MANAGED_BY_LABEL]: 'Helm' } } }), false);
    assert.equal(isManagedSecret({}), false);
  });
});

describe('the renewal plan', () => {
  let ca: CertificatePair;
  let leaf: CertificatePair;
  let held: HeldCertificate;
  before(async () => {
    ca = await generateCa({ commonName: 'policy test CA', validityDays: 3650, now: T0 });
    leaf = await generateCaSigned({ hosts: HOSTS, validityDays: 90, now: T0, ca });
    held = { certPem: leaf.certPem, keyPem: leaf.keyPem, caPem: ca.certPem, caKeyPem: ca.keyPem };
  });

  test('due two thirds of the way from notBefore to notAfter; nothing to do before', () => {
    const cert = new X509Certificate(leaf.certPem);
    const span = cert.validToDate.getTime() - cert.validFromDate.getTime();
    assert.equal(renewalTime(cert).getTime(), cert.validFromDate.getTime() + (span * 2) / 3);
    assert.equal(planRenewal(held, HOSTS, at(59), 90), undefined);
  });

  test('expiring: the same CA signs again, with the wanted names', () => {
    const plan = planRenewal(held, HOSTS, at(61), 90);
    assert.equal(plan?.reason, 'expiring');
    assert.equal(plan.newCa, false);
    assert.equal(plan.ca?.certPem, splitPem(ca.certPem)[0]);
    assert.deepEqual(plan.hosts, HOSTS);
  });

  test('a wanted name missing: reissued with the names it had and the new one (a rollout must not take turns)', () => {
    const wanted = generatedCertificateHosts({ namespace: 'velero', fqdn: 'dl.example.com' });
    const plan = planRenewal({ ...held, certPem: leaf.certPem }, wanted, at(1), 90);
    assert.equal(plan?.reason, 'hosts');
    assert.deepEqual(plan.hosts, [...HOSTS, 'dl.example.com']);
    const fewer = planRenewal(held, [HOSTS[0]], at(1), 90);
    assert.equal(fewer, undefined, 'a name no longer wanted is no reason to reissue');
  });

  test('unusable: no pair, or a key that is not the certificate\'s', async () => {
    assert.equal(planRenewal({ ...held, certPem: undefined }, HOSTS, at(1), 90)?.reason, 'unusable');
    const other = await generateSelfSigned({ hosts: ['x.example.com'], now: T0 });
    const plan = planRenewal({ ...held, keyPem: other.keyPem }, HOSTS, at(1), 90);
    assert.equal(plan?.reason, 'unusable');
    assert.equal(plan.newCa, false, 'the CA is still good');
  });

  test('ca: a certificate that does not chain to ca.crt gets a new CA', async () => {
    const stranger = await generateCa({ commonName: 'another CA', validityDays: 3650, now: T0 });
    const plan = planRenewal({ ...held, caPem: stranger.certPem, caKeyPem: stranger.keyPem }, HOSTS, at(1), 90);
    assert.equal(plan?.reason, 'ca');
    assert.equal(plan.newCa, true);
    assert.equal(plan.ca, undefined);
  });

  test('a CA that would not outlive the next certificate is replaced; the old ca.crt is handed on', () => {
    const plan = planRenewal(held, HOSTS, at(3650 - 30), 90);
    assert.equal(plan?.reason, 'expiring');
    assert.equal(plan.newCa, true);
    assert.equal(plan.oldCaPem, ca.certPem);
  });

  test('ca.crt after a renewal: a new CA first with the old signing CA after it, expired CAs dropped; the same CA keeps the bundle', async () => {
    const next = await generateCa({ commonName: 'next CA', validityDays: 3650, now: at(100) });
    assert.deepEqual(splitPem(renewedCaBundle(next.certPem, true, ca.certPem, at(100))), [...splitPem(next.certPem), ...splitPem(ca.certPem)]);
    assert.deepEqual(splitPem(renewedCaBundle(next.certPem, true, ca.certPem, at(3651))), splitPem(next.certPem));
    assert.equal(renewedCaBundle(ca.certPem, false, ca.certPem, at(1)), splitPem(ca.certPem).join(''));
  });

  test('the next look: the interval, or just after the certificate falls due; a certificate already due is retried, not spun on', () => {
    const cert = new X509Certificate(leaf.certPem);
    const hour = 3600_000;
    assert.equal(nextCheckMs(undefined, at(1), hour), hour);
    assert.equal(nextCheckMs(cert, at(1), hour), hour);
    const due = renewalTime(cert);
    assert.equal(nextCheckMs(cert, new Date(due.getTime() - 5_000), hour), 6_000);
    assert.equal(nextCheckMs(cert, new Date(due.getTime() + 5_000), hour), RENEWAL_RETRY_MS);
  });
});
