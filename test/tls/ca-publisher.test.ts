/**
 * The CA published outside the certificate Secret, against the Kubernetes API test double with the
 * real client library: the ConfigMap `velero-download-server-ca` (ca.crt and the fingerprint) and the
 * caBundle of a MutatingWebhookConfiguration, kept in step with the Secret's ca.crt when the
 * certificate is created, loaded, renewed, changed or its CA rotated, for the gateway's own Secret and
 * someone else's; replicas racing; a stale replica; edits and deletions undone; what it may touch.
 * curl checks that the published ca.crt really verifies the served certificate.
 */
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { createServer } from 'node:https';
import { join } from 'node:path';
import { after, before, beforeEach, describe, test } from 'node:test';
import type { TestContext } from 'node:test';
import { createKubeClients } from '../../src/kube/client.ts';
import type { KubeClients } from '../../src/kube/client.ts';
import {
  CA_CONFIGMAP_KEY,
  CaPublisher,
  DEFAULT_CA_CONFIGMAP,
  SOURCE_UID_ANNOTATION,
  SOURCE_VERSION_ANNOTATION,
} from '../../src/tls/ca-publisher.ts';
import type { CaPublisherEvent, CaPublisherOptions } from '../../src/tls/ca-publisher.ts';
import { certificateFingerprint } from '../../src/tls/fingerprint.ts';
import { generateCa, generateCaSigned, generateSelfSigned } from '../../src/tls/generate.ts';
import { tlsServerOptions } from '../../src/tls/options.ts';
import { MANAGED_BY, MANAGED_BY_LABEL, generatedCertificateHosts } from '../../src/tls/policy.ts';
import { SecretCertificateSource } from '../../src/tls/secret.ts';
import { FINGERPRINT_ANNOTATION } from '../../src/util/names.ts';
import type { SecretCertificateOptions, TrustAnchor, TrustSource } from '../../src/tls/secret.ts';
import type { CertificatePair } from '../../src/tls/types.ts';
import type { KubeApiServer, KubeObject } from '../support/kube-apiserver/index.ts';
import { closeServer, execFileAsync, listen, startSecretsApi, stopSecretsApi, waitFor } from './helpers.ts';

const NS = 'velero';
const SECRET = 'velero-download-server-certs';
const MWC = 'velero-velero-download-server';
const GATEWAY_USER = `system:serviceaccount:${NS}:velero-download-server`;
const DAY_MS = 86_400_000;
const b64 = (s: string): string => Buffer.from(s).toString('base64');

let api: KubeApiServer;
let dir: string;
let kubeconfigFile: string;

before(async () => ({ api, dir, kubeconfigFile } = await startSecretsApi(NS)));
after(() => stopSecretsApi(api, dir));

beforeEach(() => {
  api.remove('v1', 'Secret', SECRET, NS);
  api.remove('v1', 'ConfigMap', DEFAULT_CA_CONFIGMAP, NS);
  api.remove('admissionregistration.k8s.io/v1', 'MutatingWebhookConfiguration', MWC);
  // As the chart renders it before the gateway's first start: no caBundle; and a field this client
  // library does not know, which a patch must keep.
  const webhook = (name: string): object => ({
    name,
    admissionReviewVersions: ['v1'],
    sideEffects: 'None',
    failurePolicy: 'Ignore',
    clientConfig: { service: { name: 'velero-download-server', namespace: NS, path: '/admission/downloadrequests', port: 443 } },
    rules: [{ apiGroups: ['velero.io'], apiVersions: ['v1'], operations: ['UPDATE'], resources: ['downloadrequests'] }],
    aFieldFromTheFuture: { keep: true },
  });
  api.put({ apiVersion: 'admissionregistration.k8s.io/v1', kind: 'MutatingWebhookConfiguration', metadata: { name: MWC, labels: { 'app.kubernetes.io/managed-by': 'Helm' } }, webhooks: [webhook('a.download-server.velero.io'), webhook('b.download-server.velero.io')] });
  api.faults.clear();
  api.calls.clear();
});

function kube(): KubeClients {
  return createKubeClients({ kubeconfig: kubeconfigFile, qps: 1000, burst: 1000, timeoutMs: 5000 });
}

interface Gateway {
  source: SecretCertificateSource;
  publisher: CaPublisher;
  events: CaPublisherEvent[];
  errors: Error[];
}

/** One replica: the certificate source and the publisher, as src/compose/certificate.ts wires them. */
async function gateway(t: TestContext, opts: Partial<SecretCertificateOptions> = {}, pub: Partial<CaPublisherOptions> = {}): Promise<Gateway> {
  return publish(t, await certificates(t, opts), pub);
}

async function certificates(t: TestContext, opts: Partial<SecretCertificateOptions> = {}): Promise<{ source: SecretCertificateSource; errors: Error[] }> {
  const errors: Error[] = [];
  const source = await SecretCertificateSource.start(kube(), { namespace: NS, extraSans: ['127.0.0.1'], onError: (e) => errors.push(e), ...opts });
  t.after(() => source.stop());
  return { source, errors };
}

async function publish(t: TestContext, { source, errors }: { source: SecretCertificateSource; errors: Error[] }, pub: Partial<CaPublisherOptions> = {}): Promise<Gateway> {
  const events: CaPublisherEvent[] = [];
  const publisher = await CaPublisher.start(kube(), source, { namespace: NS, configMap: DEFAULT_CA_CONFIGMAP, webhookConfiguration: MWC, onError: (e) => errors.push(e), onEvent: (e) => events.push(e), ...pub });
  t.after(() => publisher.stop());
  return { source, publisher, events, errors };
}

const secret = (): KubeObject | undefined => api.get('v1', 'Secret', SECRET, NS);
const configMap = (): KubeObject | undefined => api.get('v1', 'ConfigMap', DEFAULT_CA_CONFIGMAP, NS);
const webhookConfiguration = (): KubeObject => api.get('admissionregistration.k8s.io/v1', 'MutatingWebhookConfiguration', MWC)!;
const secretCa = (): string => Buffer.from((secret()!.data as Record<string, string>)['ca.crt']!, 'base64').toString('utf8');
const publishedCa = (): string | undefined => (configMap()?.data as Record<string, string> | undefined)?.[CA_CONFIGMAP_KEY];
const caBundles = (): (string | undefined)[] =>
  (webhookConfiguration().webhooks as { clientConfig: { caBundle?: string } }[]).map((w) => (w.clientConfig.caBundle === undefined ? undefined : Buffer.from(w.clientConfig.caBundle, 'base64').toString('utf8')));
const subjects = (pem: string): string[] => (pem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? []).map((c) => new X509Certificate(c).subject);

/** curl, trusting only `caPem`, against a server presenting `pair`: exit code 0 when it verifies. */
async function curlTrusts(t: TestContext, caPem: string, pair: CertificatePair): Promise<boolean> {
  const server = createServer(tlsServerOptions(pair), (_req, res) => res.end('ok'));
  const port = await listen(server);
  t.after(() => closeServer(server));
  const caFile = join(dir, `ca-${port}.crt`);
  await writeFile(caFile, caPem);
  try {
    await execFileAsync('curl', ['-sS', '--fail', '--cacert', caFile, `https://127.0.0.1:${port}/`]);
    return true;
  } catch {
    return false;
  }
}

let cas = 0;
async function managedSecret(opts: { now: Date; caValidityDays?: number }): Promise<{ obj: KubeObject; ca: CertificatePair; leaf: CertificatePair }> {
  const ca = await generateCa({ commonName: `publisher test CA ${++cas}`, validityDays: opts.caValidityDays ?? 3650, now: opts.now });
  const leaf = await generateCaSigned({ hosts: generatedCertificateHosts({ namespace: NS, extraSans: ['127.0.0.1'] }), validityDays: 365, now: opts.now, ca });
  const obj: KubeObject = {
    apiVersion: 'v1',
    kind: 'Secret',
    metadata: { name: SECRET, namespace: NS, labels: { [MANAGED_BY_LABEL]: MANAGED_BY }, annotations: { [FINGERPRINT_ANNOTATION]: certificateFingerprint(leaf.certPem) } },
    type: 'kubernetes.io/tls',
    data: { 'tls.crt': b64(leaf.certPem), 'tls.key': b64(leaf.keyPem), 'ca.crt': b64(ca.certPem), 'ca.key': b64(ca.keyPem) },
  };
  return { obj, ca, leaf };
}

describe('CaPublisher', () => {
  test('a created certificate: ca.crt and the fingerprint in the ConfigMap, ca.crt in every webhook\'s caBundle, the rest untouched', async (t) => {
    const { source, events, errors } = await gateway(t);
    const cm = configMap()!;
    assert.deepEqual(cm.data, { 'ca.crt': secretCa() });
    assert.equal(cm.metadata.annotations?.[FINGERPRINT_ANNOTATION], source.current.fingerprint);
    assert.equal(cm.metadata.labels?.[MANAGED_BY_LABEL], MANAGED_BY);
    assert.ok(!JSON.stringify(cm).includes('PRIVATE KEY'), 'no key material');
    assert.deepEqual(caBundles(), [secretCa(), secretCa()]);
    const mwc = webhookConfiguration();
    const first = (mwc.webhooks as Record<string, unknown>[])[0]!;
    assert.deepEqual(first.aFieldFromTheFuture, { keep: true }, 'a JSON patch keeps what the client library does not know');
    assert.equal((first.clientConfig as { service: { path: string } }).service.path, '/admission/downloadrequests');
    assert.equal(mwc.metadata.labels?.['app.kubernetes.io/managed-by'], 'Helm');
    assert.deepEqual(events.map((e) => [e.action, e.target, e.cas]), [
      ['created', `ConfigMap ${NS}/${DEFAULT_CA_CONFIGMAP}`, 1],
      ['patched', `MutatingWebhookConfiguration ${MWC}`, 1],
    ]);
    assert.deepEqual(errors, []);
    // What a user who may read only the ConfigMap gets is enough to trust the gateway.
    assert.ok(await curlTrusts(t, publishedCa()!, source.current));
  });

  test('a renewal updates the fingerprint; nothing is written when nothing changed', async (t) => {
    let skew = 0;
    const { source, publisher, events } = await gateway(t, { now: () => new Date(Date.now() + skew) });
    const ca = publishedCa();
    api.calls.clear();
    await publisher.sync();
    assert.equal(api.calls.count({ verb: ['create', 'update', 'patch'] }), 0, 'in step: no write');
    skew = 250 * DAY_MS;
    assert.equal(await source.check(), true);
    await publisher.sync();
    assert.equal(configMap()!.metadata.annotations?.[FINGERPRINT_ANNOTATION], source.current.fingerprint);
    assert.equal(publishedCa(), ca, 'same CA');
    assert.deepEqual(events.map((e) => e.action), ['created', 'patched', 'updated']);
  });

  test('a CA rotation: the ConfigMap and the webhook\'s caBundle hold the new and the old CA, which verify the new and the old certificate', async (t) => {
    // A CA that would not outlive the next certificate: renewal makes a new CA.
    const old = await managedSecret({ now: new Date(Date.now() - 250 * DAY_MS), caValidityDays: 400 });
    api.put(old.obj);
    const { source } = await gateway(t);
    const [newCa, oldCa, ...rest] = subjects(publishedCa()!);
    assert.equal(rest.length, 0);
    assert.equal(oldCa, new X509Certificate(old.ca.certPem).subject);
    assert.notEqual(newCa, oldCa);
    assert.equal(publishedCa(), secretCa());
    assert.deepEqual(caBundles(), [secretCa(), secretCa()], 'both CAs in every webhook');
    // Replicas still serving the old certificate and those serving the new one are both trusted.
    assert.ok(await curlTrusts(t, publishedCa()!, source.current));
    assert.ok(await curlTrusts(t, publishedCa()!, old.leaf));
    assert.equal(await curlTrusts(t, old.ca.certPem, source.current), false, 'the old CA alone does not verify the new certificate');
  });

  test('someone else\'s Secret (cert-manager): its ca.crt is published, the Secret is never written', async (t) => {
    const ca = await generateCa({ commonName: 'cert-manager issuer CA', validityDays: 30 });
    const leaf = await generateCaSigned({ hosts: ['127.0.0.1'], validityDays: 10, ca });
    api.put({
      apiVersion: 'v1', kind: 'Secret', type: 'kubernetes.io/tls',
      metadata: { name: SECRET, namespace: NS, annotations: { 'cert-manager.io/certificate-name': 'gateway' } },
      data: { 'tls.crt': b64(leaf.certPem), 'tls.key': b64(leaf.keyPem), 'ca.crt': b64(ca.certPem) },
    });
    const before = structuredClone(secret());
    const { source } = await gateway(t);
    assert.equal(source.managed, false);
    assert.equal(publishedCa(), ca.certPem);
    assert.equal(configMap()!.metadata.annotations?.[FINGERPRINT_ANNOTATION], certificateFingerprint(leaf.certPem));
    assert.deepEqual(caBundles(), [ca.certPem, ca.certPem]);
    assert.deepEqual(secret(), before);
    assert.equal(api.calls.count({ resource: 'secrets', verb: ['create', 'update', 'patch'] }), 0);

    // cert-manager reissues under another CA: the watch brings it, the publisher follows.
    const ca2 = await generateCa({ commonName: 'cert-manager issuer CA 2', validityDays: 30 });
    const leaf2 = await generateCaSigned({ hosts: ['127.0.0.1'], validityDays: 10, ca: ca2 });
    api.put({ ...secret()!, data: { 'tls.crt': b64(leaf2.certPem), 'tls.key': b64(leaf2.keyPem), 'ca.crt': b64(ca2.certPem) } });
    await waitFor('the new CA published', () => publishedCa(), (v) => v === ca2.certPem, 3000);
    await waitFor('and in the webhook', () => caBundles()[1], (v) => v === ca2.certPem, 3000);
  });

  test('someone else\'s Secret without ca.crt: the ConfigMap has the fingerprint only; the webhook\'s caBundle is left alone', async (t) => {
    const pair = await generateSelfSigned({ hosts: ['127.0.0.1'] });
    api.put({ apiVersion: 'v1', kind: 'Secret', type: 'kubernetes.io/tls', metadata: { name: SECRET, namespace: NS }, data: { 'tls.crt': b64(pair.certPem), 'tls.key': b64(pair.keyPem) } });
    const { events } = await gateway(t);
    assert.deepEqual(configMap()!.data ?? {}, {});
    assert.equal(configMap()!.metadata.annotations?.[FINGERPRINT_ANNOTATION], certificateFingerprint(pair.certPem));
    assert.deepEqual(caBundles(), [undefined, undefined]);
    assert.deepEqual(events.map((e) => e.action), ['created', 'skipped']);
  });

  test('a ca.crt that holds no valid certificate is not published: what was published stays, and it is reported', async (t) => {
    const ca = await generateCa({ commonName: 'good CA', validityDays: 30 });
    const leaf = await generateCaSigned({ hosts: ['127.0.0.1'], validityDays: 10, ca });
    api.put({ apiVersion: 'v1', kind: 'Secret', type: 'kubernetes.io/tls', metadata: { name: SECRET, namespace: NS }, data: { 'tls.crt': b64(leaf.certPem), 'tls.key': b64(leaf.keyPem), 'ca.crt': b64(ca.certPem) } });
    const { publisher, errors } = await gateway(t);
    const leaf2 = await generateCaSigned({ hosts: ['127.0.0.1'], validityDays: 10, ca });
    const broken = '-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n';
    api.put({ ...secret()!, data: { 'tls.crt': b64(leaf2.certPem), 'tls.key': b64(leaf2.keyPem), 'ca.crt': b64(broken) } });
    await waitFor('the report', () => errors.length, (n) => n === 1, 3000);
    await publisher.sync();
    assert.match(errors[0]!.message, /ca\.crt of Secret velero\/velero-download-server-certs holds no valid certificate, so it is not published/);
    assert.equal(publishedCa(), ca.certPem);
    assert.deepEqual(caBundles(), [ca.certPem, ca.certPem]);
    assert.equal(errors.length, 1, 'reported once');
  });

  test('two gateways starting together create the ConfigMap once; both renewing at once leave everything in step with the Secret', async (t) => {
    let skew = 0;
    const now = (): Date => new Date(Date.now() + skew);
    const sources = await Promise.all([certificates(t, { now }), certificates(t, { now })]);
    // Their first reads are held until both have asked (1 s: under a loaded suite a replica's start can lag 200 ms), so both find nothing and both write.
    api.calls.clear();
    api.faults.add({ match: { resource: 'configmaps', verb: 'get' }, delayMs: 1000, times: 2 });
    // And the first patch of the webhook configuration is held until the other replica has read it too.
    api.faults.add({ match: { resource: 'mutatingwebhookconfigurations', verb: 'patch' }, delayMs: 1000, times: 1 });
    const [a, b] = (await Promise.all(sources.map((s) => publish(t, s)))) as [Gateway, Gateway];
    assert.deepEqual(api.calls.list({ resource: 'configmaps', verb: 'create' }).map((c) => c.code).sort(), [201, 409]);
    // Both patched the version they read: one test of its resourceVersion failed, and that replica read again.
    assert.deepEqual(api.calls.list({ resource: 'mutatingwebhookconfigurations', verb: 'patch' }).map((c) => c.code).sort(), [200, 422]);
    assert.deepEqual(caBundles(), [secretCa(), secretCa()]);
    assert.equal(a.source.current.fingerprint, b.source.current.fingerprint);
    api.calls.clear();
    skew = 250 * DAY_MS;
    await Promise.all([a.source.check(), b.source.check()]);
    await Promise.all([a.publisher.sync(), b.publisher.sync()]);
    await waitFor('both replicas on the winner\'s certificate', () => b.source.current.fingerprint === a.source.current.fingerprint, (v) => v, 3000);
    await Promise.all([a.publisher.sync(), b.publisher.sync()]);
    assert.equal(configMap()!.metadata.annotations?.[FINGERPRINT_ANNOTATION], secret()!.metadata.annotations?.[FINGERPRINT_ANNOTATION]);
    assert.equal(configMap()!.metadata.annotations?.[FINGERPRINT_ANNOTATION], a.source.current.fingerprint);
    assert.equal(publishedCa(), secretCa());
    assert.ok(api.calls.list({ resource: 'configmaps', verb: 'update' }).filter((c) => c.code === 200).length >= 1);
  });

  test('a replica whose view is older than the published one never writes it back; a recreated Secret (new uid) is published', async (t) => {
    const { source } = await gateway(t);
    const current = source.trust;
    const stale: TrustAnchor = { ...current, caPem: (await generateCa({ commonName: 'stale CA', validityDays: 1 })).certPem, fingerprint: 'ab'.repeat(32), resourceVersion: String(Number(current.resourceVersion) - 1) };
    const standIn = (trust: TrustAnchor): TrustSource => ({ trust, on() { return this; }, off() { return this; } });
    const events: CaPublisherEvent[] = [];
    const staleReplica = await CaPublisher.start(kube(), standIn(stale), { namespace: NS, configMap: DEFAULT_CA_CONFIGMAP, webhookConfiguration: MWC, onEvent: (e) => events.push(e) });
    staleReplica.stop();
    assert.deepEqual(events.map((e) => e.action), ['superseded', 'superseded']);
    assert.equal(publishedCa(), current.caPem);
    assert.deepEqual(caBundles(), [current.caPem, current.caPem]);
    assert.equal(configMap()!.metadata.annotations?.[SOURCE_VERSION_ANNOTATION], current.resourceVersion);

    // The same Secret name with another uid (deleted and recreated, or restored) is another object: its
    // resourceVersion is not comparable, and it is published.
    const restored = await CaPublisher.start(kube(), standIn({ ...stale, uid: 'another-uid' }), { namespace: NS, configMap: DEFAULT_CA_CONFIGMAP, webhookConfiguration: MWC });
    restored.stop();
    assert.equal(publishedCa(), stale.caPem);
    assert.equal(configMap()!.metadata.annotations?.[SOURCE_UID_ANNOTATION], 'another-uid');
    assert.deepEqual(caBundles(), [stale.caPem, stale.caPem]);
  });

  test('an edited or deleted ConfigMap and an edited caBundle are restored at the next sync', async (t) => {
    const { publisher } = await gateway(t, {}, { resyncMs: 100 });
    const ca = publishedCa()!;
    const attacker = (await generateCa({ commonName: 'someone else\'s CA', validityDays: 1 })).certPem;
    api.put({ ...configMap()!, data: { 'ca.crt': attacker, extra: 'x' } });
    const mwc = webhookConfiguration();
    api.put({ ...mwc, webhooks: (mwc.webhooks as { clientConfig: object }[]).map((w) => ({ ...w, clientConfig: { ...w.clientConfig, caBundle: b64(attacker) } })) });
    await waitFor('the ConfigMap restored by the resync', () => publishedCa(), (v) => v === ca, 3000);
    await waitFor('the caBundle restored', () => caBundles().join(), (v) => v === `${ca},${ca}`, 3000);
    assert.deepEqual(configMap()!.data, { 'ca.crt': ca });
    api.remove('v1', 'ConfigMap', DEFAULT_CA_CONFIGMAP, NS);
    await publisher.sync();
    assert.equal(publishedCa(), ca);
  });

  test('a failed write is reported (object and status, no body) and retried; the certificate serves meanwhile', async (t) => {
    const fault = api.faults.add({ match: { resource: 'configmaps', verb: 'create' }, status: 403, message: 'BODY-TEXT' });
    api.remove('admissionregistration.k8s.io/v1', 'MutatingWebhookConfiguration', MWC);
    const { source, publisher, errors } = await gateway(t);
    assert.ok(source.current.fingerprint);
    assert.deepEqual(errors.map((e) => e.message), [
      `publishing the CA in ConfigMap ${NS}/${DEFAULT_CA_CONFIGMAP}: creating ConfigMap ${NS}/${DEFAULT_CA_CONFIGMAP} failed (HTTP 403); retrying at the next change or in a few minutes`,
      `publishing the CA in MutatingWebhookConfiguration ${MWC}: reading MutatingWebhookConfiguration ${MWC} failed (HTTP 404); retrying at the next change or in a few minutes`,
    ]);
    fault.remove();
    await publisher.sync();
    assert.equal(publishedCa(), secretCa());
  });

  test('a webhook configuration changed between read and patch: the patch\'s resourceVersion test fails, it reads again', async (t) => {
    // The first patch finds the object changed (as a 422 from the failed test), the retry succeeds.
    const fault = api.faults.add({ match: { resource: 'mutatingwebhookconfigurations', verb: 'patch' }, status: 422, times: 1 });
    await gateway(t);
    assert.equal(fault.hits, 1);
    assert.deepEqual(api.calls.list({ resource: 'mutatingwebhookconfigurations', verb: 'patch' }).map((c) => c.code), [422, 200]);
    assert.deepEqual(caBundles(), [secretCa(), secretCa()]);
    const [first, ...rest] = api.calls.list({ resource: 'mutatingwebhookconfigurations', verb: 'patch' })[1]!.body as { op: string; path: string; value: string }[];
    assert.equal(first?.op, 'test');
    assert.equal(first.path, '/metadata/resourceVersion');
    assert.ok(BigInt(first.value) < BigInt(webhookConfiguration().metadata.resourceVersion!), 'tested the version it read, the one before its write');
    assert.deepEqual(rest.filter((op) => op.path.endsWith('/caBundle')).map((op) => [op.op, op.path]), [['add', '/webhooks/0/clientConfig/caBundle'], ['add', '/webhooks/1/clientConfig/caBundle']]);
  });

  test('uses only get, create and update on its ConfigMap and get and patch on its MutatingWebhookConfiguration', async (t) => {
    let skew = 0;
    const { source, publisher } = await gateway(t, { now: () => new Date(Date.now() + skew) });
    skew = 250 * DAY_MS;
    await source.check();
    await publisher.sync();
    const used = api.calls
      .permissions({ user: GATEWAY_USER })
      .filter((p) => p.resource !== 'secrets')
      .map((p) => `${p.verb} ${p.resource} ${p.namespace} ${p.name}`);
    assert.deepEqual(used.sort(), [
      `create configmaps ${NS} `,
      `get configmaps ${NS} ${DEFAULT_CA_CONFIGMAP}`,
      `get mutatingwebhookconfigurations  ${MWC}`,
      `patch mutatingwebhookconfigurations  ${MWC}`,
      `update configmaps ${NS} ${DEFAULT_CA_CONFIGMAP}`,
    ]);
  });
});
