/**
 * The serving certificate in a Secret, against the Kubernetes API test double with the real client
 * library: generation, reuse, someone else's Secret, renewal (and CA renewal) with skewed clocks,
 * changes through the watch (also across an API server restart and a 410 Gone from a compaction made
 * on cue), a hot swap under a long download, and the fingerprint and CA checked with the real openssl
 * and curl. Two gateway replicas starting together, and the watch across cuts and restarts of a real
 * API server, are in test/e2e/kubernetes.test.ts and test/e2e/kubernetes-watches.test.ts.
 */
import assert from 'node:assert/strict';
import { X509Certificate, createPrivateKey } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { createServer, get } from 'node:https';
import type { IncomingMessage } from 'node:http';
import { join } from 'node:path';
import type { TLSSocket } from 'node:tls';
import { after, before, beforeEach, describe, test } from 'node:test';
import type { TestContext } from 'node:test';
import { createKubeClients } from '../../src/kube/client.ts';
import type { KubeClients } from '../../src/kube/client.ts';
import { CertificateError } from '../../src/tls/errors.ts';
import { certificateFingerprint } from '../../src/tls/fingerprint.ts';
import { generateCa, generateCaSigned, generateSelfSigned } from '../../src/tls/generate.ts';
import { tlsServerOptions } from '../../src/tls/options.ts';
import { MANAGED_BY, MANAGED_BY_LABEL, fqdnHost, generatedCertificateHosts } from '../../src/tls/policy.ts';
import { FINGERPRINT_ANNOTATION, SecretCertificateSource } from '../../src/tls/secret.ts';
import type { SecretCertificateEvent, SecretCertificateOptions } from '../../src/tls/secret.ts';
import type { CertificatePair, LoadedCertificate } from '../../src/tls/types.ts';
import type { KubeApiServer, KubeObject } from '../support/kube-apiserver/index.ts';
import { closeServer, execFileAsync, listen, peerFingerprint, servedFingerprint, sleep, startSecretsApi, stopSecretsApi, waitFor } from './helpers.ts';

const NS = 'velero';
const SECRET = 'velero-download-server-certs';
const SVC_HOST = 'velero-download-server.velero.svc';
const FQDN = 'downloads.example.com';
const GATEWAY_USER = `system:serviceaccount:${NS}:velero-download-server`;
const DAY_MS = 86_400_000;

let api: KubeApiServer;
let dir: string;
let kubeconfigFile: string;

before(async () => ({ api, dir, kubeconfigFile } = await startSecretsApi(NS)));
after(() => stopSecretsApi(api, dir));

beforeEach(() => {
  api.remove('v1', 'Secret', SECRET, NS);
  api.faults.clear();
  api.calls.clear();
});

/** One replica's Kubernetes client. */
function kube(): KubeClients {
  return createKubeClients({ kubeconfig: kubeconfigFile, qps: 1000, burst: 1000, timeoutMs: 5000 });
}

interface Started {
  source: SecretCertificateSource;
  errors: Error[];
  events: SecretCertificateEvent[];
  changes: LoadedCertificate[];
}

async function start(t: TestContext, opts: Partial<SecretCertificateOptions> = {}): Promise<Started> {
  const errors: Error[] = [];
  const events: SecretCertificateEvent[] = [];
  const changes: LoadedCertificate[] = [];
  const source = await SecretCertificateSource.start(kube(), {
    namespace: NS,
    fqdn: FQDN,
    extraSans: ['127.0.0.1'],
    onError: (e) => errors.push(e),
    onEvent: (e) => events.push(e),
    ...opts,
  });
  t.after(() => source.stop());
  source.on('change', (c) => changes.push(c));
  return { source, errors, events, changes };
}

/** Asserts that a start fails; a start that succeeds anyway is stopped, so no watch outlives the test. */
async function startFails(opts: Partial<SecretCertificateOptions>, check: (err: unknown) => boolean): Promise<void> {
  await assert.rejects(
    SecretCertificateSource.start(kube(), { namespace: NS, onError: () => {}, ...opts }).then((source) => {
      source.stop();
      throw new Error('the start succeeded');
    }),
    (err: unknown) => err instanceof Error && err.message !== 'the start succeeded' && check(err),
  );
}

function secret(): KubeObject | undefined {
  return api.get('v1', 'Secret', SECRET, NS);
}

function data(obj: KubeObject | undefined, key: string): string {
  const b64 = (obj?.data as Record<string, string> | undefined)?.[key];
  assert.ok(b64 !== undefined, `Secret has no ${key}`);
  return Buffer.from(b64, 'base64').toString('utf8');
}

const b64 = (s: string): string => Buffer.from(s).toString('base64');
const rv = (): string | undefined => secret()?.metadata.resourceVersion;
const writes = (): number => api.calls.count({ resource: 'secrets', verb: ['create', 'update', 'patch', 'delete'] });

function splitPem(bundle: string): X509Certificate[] {
  return (bundle.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? []).map((p) => new X509Certificate(p));
}

function sanList(cert: X509Certificate): string[] {
  return (cert.subjectAltName ?? '').split(', ');
}

let cas = 0;
/** A CA and a certificate it signs, issued as if at `now`, as the gateway lays them out in its Secret. */
async function managedSecret(opts: { now: Date; validityDays?: number; caValidityDays?: number; hosts?: string[] }): Promise<{ obj: KubeObject; ca: CertificatePair; leaf: CertificatePair }> {
  const ca = await generateCa({ commonName: `test CA ${++cas}`, validityDays: opts.caValidityDays ?? 3650, now: opts.now });
  const leaf = await generateCaSigned({ hosts: opts.hosts ?? generatedCertificateHosts({ namespace: NS, fqdn: FQDN, extraSans: ['127.0.0.1'] }), validityDays: opts.validityDays ?? 365, now: opts.now, ca });
  const obj: KubeObject = {
    apiVersion: 'v1',
    kind: 'Secret',
    metadata: { name: SECRET, namespace: NS, labels: { [MANAGED_BY_LABEL]: MANAGED_BY }, annotations: { [FINGERPRINT_ANNOTATION]: certificateFingerprint(leaf.certPem) } },
    type: 'kubernetes.io/tls',
    data: { 'tls.crt': b64(leaf.certPem), 'tls.key': b64(leaf.keyPem), 'ca.crt': b64(ca.certPem), 'ca.key': b64(ca.keyPem) },
  };
  return { obj, ca, leaf };
}

/** What another replica does when it renews: a new leaf from the Secret's CA, written to the Secret. */
async function rotateInPlace(): Promise<string> {
  const current = secret()!;
  const ca = { certPem: splitPem(data(current, 'ca.crt'))[0]!.toString(), keyPem: data(current, 'ca.key') };
  const leaf = await generateCaSigned({ hosts: generatedCertificateHosts({ namespace: NS, fqdn: FQDN, extraSans: ['127.0.0.1'] }), ca });
  const fp = certificateFingerprint(leaf.certPem);
  api.put({
    ...current,
    metadata: { ...current.metadata, annotations: { ...current.metadata.annotations, [FINGERPRINT_ANNOTATION]: fp } },
    data: { ...(current.data as Record<string, string>), 'tls.crt': b64(leaf.certPem), 'tls.key': b64(leaf.keyPem) },
  });
  return fp;
}

describe('SecretCertificateSource', () => {
  test('generates a CA and a serving certificate and creates the Secret when it is missing', async (t) => {
    const { source, events } = await start(t);
    const s = secret();
    assert.ok(s, 'the Secret was created');
    assert.equal(s.type, 'kubernetes.io/tls');
    assert.deepEqual(Object.keys(s.data as object).sort(), ['ca.crt', 'ca.key', 'tls.crt', 'tls.key']);
    assert.equal(s.metadata.labels?.[MANAGED_BY_LABEL], MANAGED_BY);

    const leaf = new X509Certificate(data(s, 'tls.crt'));
    const [ca, ...more] = splitPem(data(s, 'ca.crt'));
    assert.equal(more.length, 0);
    assert.equal(s.metadata.annotations?.[FINGERPRINT_ANNOTATION], certificateFingerprint(leaf));
    assert.equal(source.current.fingerprint, certificateFingerprint(leaf));
    assert.equal(source.current.keyPem, data(s, 'tls.key'));
    assert.equal(source.caPem, data(s, 'ca.crt'));
    assert.equal(source.managed, true);
    assert.deepEqual(events.map((e) => [e.action, e.managed, e.newCa]), [['created', true, true]]);

    const names = sanList(leaf);
    for (const host of ['velero-download-server', 'velero-download-server.velero', SVC_HOST, 'velero-download-server.velero.svc.cluster.local', FQDN]) {
      assert.ok(names.includes(`DNS:${host}`), `${host} in ${leaf.subjectAltName}`);
    }
    assert.ok(names.includes('IP Address:127.0.0.1'), leaf.subjectAltName);
    assert.equal(leaf.ca, false);
    assert.equal(createPrivateKey(data(s, 'tls.key')).asymmetricKeyDetails?.namedCurve, 'prime256v1');
    assert.ok(ca?.ca, 'ca.crt is a CA');
    assert.ok(leaf.checkIssued(ca) && leaf.verify(ca.publicKey), 'tls.crt is signed by ca.crt');
    assert.ok(ca.checkPrivateKey(createPrivateKey(data(s, 'ca.key'))));
    assert.ok(Math.abs(leaf.validToDate.getTime() - (Date.now() + 365 * DAY_MS)) < 60_000, leaf.validTo);
    assert.ok(ca.validToDate.getTime() > Date.now() + 3600 * DAY_MS, ca.validTo);
    assert.deepEqual(
      api.calls.list({ resource: 'secrets', verb: 'create' }).map((c) => c.code),
      [201],
    );
  });

  test('reuses a Secret that exists: no write, same certificate', async (t) => {
    const first = await start(t);
    const before = rv();
    api.calls.clear();
    const second = await start(t);
    assert.equal(second.source.current.fingerprint, first.source.current.fingerprint);
    assert.equal(second.source.caPem, first.source.caPem);
    assert.deepEqual(second.events.map((e) => e.action), ['loaded']);
    assert.equal(writes(), 0);
    assert.equal(rv(), before);
  });

  test('uses someone else\'s Secret as is and never writes it, not even after a renewal check', async (t) => {
    // Issued 300 days ago for a year: past two thirds of its life, which would renew one of ours.
    const pair = await generateSelfSigned({ hosts: ['foreign.example.com', '127.0.0.1'], now: new Date(Date.now() - 300 * DAY_MS) });
    api.put({
      apiVersion: 'v1',
      kind: 'Secret',
      metadata: { name: SECRET, namespace: NS, labels: { [MANAGED_BY_LABEL]: 'Helm' }, annotations: { 'cert-manager.io/issuer-name': 'corp' } },
      type: 'kubernetes.io/tls',
      data: { 'tls.crt': b64(pair.certPem), 'tls.key': b64(pair.keyPem) },
    });
    const before = structuredClone(secret());
    let skew = 0;
    const { source, events } = await start(t, { now: () => new Date(Date.now() + skew) });
    assert.equal(source.current.fingerprint, certificateFingerprint(pair.certPem));
    assert.equal(source.managed, false);
    assert.equal(source.caPem, undefined);
    assert.deepEqual(events.map((e) => [e.action, e.managed]), [['loaded', false]]);

    skew = 400 * DAY_MS; // expired by then
    assert.equal(await source.check(), false);
    assert.equal(writes(), 0);
    assert.deepEqual(secret(), before, 'resourceVersion, data, labels and annotations unchanged');
  });

  test('a cert-manager Secret is someone else\'s even when it carries the gateway\'s label', async (t) => {
    const { obj } = await managedSecret({ now: new Date(Date.now() - 300 * DAY_MS) });
    obj.metadata.annotations = { 'cert-manager.io/certificate-name': 'gateway' };
    api.put(obj);
    const before = rv();
    const { source } = await start(t);
    assert.equal(source.managed, false);
    await source.check();
    assert.equal(rv(), before);
    assert.equal(writes(), 0);
  });

  test('someone else\'s broken Secret stops the start with a CertificateError naming the Secret', async () => {
    const a = await generateSelfSigned({ hosts: ['a.example.com'] });
    const b = await generateSelfSigned({ hosts: ['b.example.com'] });
    api.put({ apiVersion: 'v1', kind: 'Secret', metadata: { name: SECRET, namespace: NS }, type: 'kubernetes.io/tls', data: { 'tls.crt': b64(a.certPem), 'tls.key': b64(b.keyPem) } });
    await startFails(
      {},
      (err: unknown) => err instanceof CertificateError && err.reason === 'KeyMismatch' && err.message.includes(`${NS}/${SECRET}`) && !err.message.includes('PRIVATE KEY'),
    );
    assert.equal(writes(), 0);
  });

  test('renews a gateway certificate past two thirds of its lifetime at start, keeping the CA', async (t) => {
    const old = await managedSecret({ now: new Date(Date.now() - 250 * DAY_MS) });
    api.put(old.obj);
    const { source, events } = await start(t);
    const s = secret()!;
    const leaf = new X509Certificate(data(s, 'tls.crt'));
    assert.notEqual(source.current.fingerprint, certificateFingerprint(old.leaf.certPem));
    assert.equal(source.current.fingerprint, certificateFingerprint(leaf));
    assert.equal(s.metadata.annotations?.[FINGERPRINT_ANNOTATION], source.current.fingerprint);
    assert.equal(data(s, 'ca.crt'), old.ca.certPem, 'the CA is kept');
    assert.equal(data(s, 'ca.key'), old.ca.keyPem);
    assert.ok(leaf.verify(new X509Certificate(old.ca.certPem).publicKey));
    assert.ok(leaf.validToDate.getTime() > Date.now() + 364 * DAY_MS);
    assert.deepEqual(events.map((e) => [e.action, e.reason, e.newCa]), [['renewed', 'expiring', false]]);
    assert.equal(api.calls.count({ resource: 'secrets', verb: 'update' }), 1);
  });

  test('a due renewal that cannot be written does not stop the start; a later check renews', async (t) => {
    const old = await managedSecret({ now: new Date(Date.now() - 250 * DAY_MS) });
    api.put(old.obj);
    const fault = api.faults.add({ match: { resource: 'secrets', verb: 'update' }, status: 403 });
    const { source, errors } = await start(t);
    assert.equal(source.current.fingerprint, certificateFingerprint(old.leaf.certPem), 'serves the old certificate meanwhile');
    assert.equal(errors.length, 1);
    assert.match(errors[0]!.message, /updating Secret velero\/velero-download-server-certs failed \(HTTP 403\)/);
    fault.remove();
    assert.equal(await source.check(), true);
    assert.equal(secret()!.metadata.annotations?.[FINGERPRINT_ANNOTATION], source.current.fingerprint);
    assert.notEqual(source.current.fingerprint, certificateFingerprint(old.leaf.certPem));
  });

  test('someone else\'s expired certificate is served (its issuer may be renewing it) and reported', async (t) => {
    const pair = await generateSelfSigned({ hosts: ['foreign.example.com'], validityDays: 1, now: new Date(Date.now() - 2 * DAY_MS) });
    api.put({ apiVersion: 'v1', kind: 'Secret', metadata: { name: SECRET, namespace: NS }, type: 'kubernetes.io/tls', data: { 'tls.crt': b64(pair.certPem), 'tls.key': b64(pair.keyPem) } });
    const { source, errors } = await start(t);
    assert.equal(source.current.fingerprint, certificateFingerprint(pair.certPem));
    assert.ok(errors.length === 1 && errors[0] instanceof CertificateError && errors[0].reason === 'CertificateExpired', errors.map((e) => e.message).join());
    assert.equal(writes(), 0);
  });

  test('does not renew a certificate before two thirds of its lifetime', async (t) => {
    api.put((await managedSecret({ now: new Date(Date.now() - 200 * DAY_MS) })).obj);
    const before = rv();
    const { source } = await start(t);
    assert.equal(await source.check(), false);
    assert.equal(rv(), before);
    assert.equal(writes(), 0);
  });

  test('renews the CA too when it would not outlive the new certificate; ca.crt keeps the old CA', async (t) => {
    const old = await managedSecret({ now: new Date(Date.now() - 250 * DAY_MS), caValidityDays: 400 });
    api.put(old.obj);
    const { source, events } = await start(t);
    const s = secret()!;
    const [newCa, oldCa, ...rest] = splitPem(data(s, 'ca.crt'));
    assert.equal(rest.length, 0);
    assert.equal(oldCa?.fingerprint256, new X509Certificate(old.ca.certPem).fingerprint256, 'the old CA stays trusted until it expires');
    assert.notEqual(newCa?.fingerprint256, oldCa?.fingerprint256);
    assert.notEqual(newCa?.subject, oldCa?.subject, 'CAs are told apart by subject');
    const leaf = new X509Certificate(data(s, 'tls.crt'));
    assert.ok(leaf.verify(newCa!.publicKey));
    assert.ok(newCa!.checkPrivateKey(createPrivateKey(data(s, 'ca.key'))));
    assert.equal(source.caPem, data(s, 'ca.crt'));
    assert.deepEqual(events.map((e) => [e.action, e.reason, e.newCa]), [['renewed', 'expiring', true]]);
  });

  test('reissues (same CA) when a wanted name is missing, keeping the names it had', async (t) => {
    const old = await managedSecret({ now: new Date(), hosts: ['velero-download-server', 'old-name.example.com'] });
    api.put(old.obj);
    const { source, events } = await start(t);
    const names = sanList(new X509Certificate(source.current.certPem));
    assert.ok(names.includes(`DNS:${FQDN}`) && names.includes('DNS:old-name.example.com') && names.includes('IP Address:127.0.0.1'), names.join());
    assert.equal(data(secret(), 'ca.crt'), old.ca.certPem);
    assert.deepEqual(events.map((e) => [e.action, e.reason]), [['renewed', 'hosts']]);
  });

  test('repairs a gateway Secret whose fingerprint annotation is wrong, without a new certificate', async (t) => {
    const old = await managedSecret({ now: new Date() });
    old.obj.metadata.annotations = {};
    api.put(old.obj);
    const { source, events } = await start(t);
    assert.equal(source.current.fingerprint, certificateFingerprint(old.leaf.certPem));
    assert.equal(secret()!.metadata.annotations?.[FINGERPRINT_ANNOTATION], source.current.fingerprint);
    assert.deepEqual(events.map((e) => e.action), ['loaded', 'annotated']);
  });

  test('renews on the timer when the clock reaches two thirds, and another replica picks it up', async (t) => {
    let skew = 0;
    const a = await start(t, { now: () => new Date(Date.now() + skew), checkIntervalMs: 100 });
    const b = await start(t);
    const original = a.source.current.fingerprint;
    const caBefore = a.source.caPem;
    skew = 250 * DAY_MS;
    await waitFor('the renewal', () => a.changes.length, (n) => n === 1, 3000);
    assert.notEqual(a.source.current.fingerprint, original);
    assert.equal(a.source.caPem, caBefore, 'CA kept');
    assert.equal(secret()!.metadata.annotations?.[FINGERPRINT_ANNOTATION], a.source.current.fingerprint);
    await waitFor('the other replica to see it', () => b.changes.length, (n) => n === 1, 3000);
    assert.equal(b.source.current.fingerprint, a.source.current.fingerprint);
    assert.deepEqual(a.events.map((e) => e.action), ['created', 'renewed']);
    assert.deepEqual(b.events.map((e) => e.action), ['loaded', 'changed']);
  });

  test('two replicas renewing at once: one update wins, both use its certificate', async (t) => {
    let skew = 0;
    const now = (): Date => new Date(Date.now() + skew);
    const [a, b] = await Promise.all([start(t, { now }), start(t, { now })]);
    api.calls.clear();
    skew = 250 * DAY_MS;
    await Promise.all([a.source.check(), b.source.check()]);
    assert.deepEqual(api.calls.list({ resource: 'secrets', verb: 'update' }).map((c) => c.code).sort(), [200, 409]);
    assert.equal(a.source.current.fingerprint, b.source.current.fingerprint);
    assert.equal(secret()!.metadata.annotations?.[FINGERPRINT_ANNOTATION], a.source.current.fingerprint);
  });

  test('picks up a changed Secret through the watch; ignores a broken one; follows a deletion', async (t) => {
    const { source, errors, changes, events } = await start(t, { recreateDelayMs: 200 });
    const fp = await rotateInPlace();
    await waitFor('the new certificate', () => source.current.fingerprint, (f) => f === fp, 3000);
    assert.deepEqual(changes.map((c) => c.fingerprint), [fp]);

    const other = await generateSelfSigned({ hosts: ['x.example.com'] });
    const s = secret()!;
    api.put({ ...s, data: { ...(s.data as Record<string, string>), 'tls.key': b64(other.keyPem) } });
    await waitFor('the refusal', () => errors.length, (n) => n === 1, 3000);
    assert.ok(errors[0] instanceof CertificateError && errors[0].reason === 'KeyMismatch', errors[0]?.message);
    assert.ok(errors[0].message.includes(`keeping the current certificate (sha256 ${fp})`), errors[0].message);
    assert.equal(source.current.fingerprint, fp);
    assert.equal(changes.length, 1);

    api.remove('v1', 'Secret', SECRET, NS);
    await waitFor('a new Secret', () => secret()?.metadata.labels?.[MANAGED_BY_LABEL], (l) => l === MANAGED_BY, 3000);
    await waitFor('its certificate', () => source.current.fingerprint, (f) => f === secret()!.metadata.annotations?.[FINGERPRINT_ANNOTATION], 3000);
    assert.deepEqual(events.map((e) => e.action), ['created', 'changed', 'deleted', 'created']);
  });

  test('the watch survives an API server restart and a compacted resourceVersion (410 Gone)', async (t) => {
    const { source } = await start(t);
    await sleep(100);
    await api.stop();
    // Changed while the watch is down, and the history it would resume from is gone.
    const fp = await rotateInPlace();
    api.store.compact();
    await sleep(300);
    api.calls.clear();
    await api.start();
    await waitFor('the certificate written during the outage', () => source.current.fingerprint, (f) => f === fp, 5000);
    // It came from reading the Secret afresh after the watch answered 410 Gone.
    assert.ok(api.calls.count({ user: GATEWAY_USER, verb: 'get', resource: 'secrets' }) >= 1);
    const fp2 = await rotateInPlace();
    await waitFor('a later change', () => source.current.fingerprint, (f) => f === fp2, 5000);
  });

  test('a server using the source swaps certificates while a download that began before keeps going', async (t) => {
    const { source } = await start(t);
    const caPem = source.caPem!;
    let release!: () => void;
    const released = new Promise<void>((r) => (release = r));
    const first = Buffer.alloc(64 * 1024, 'a');
    const second = Buffer.alloc(64 * 1024, 'b');
    const server = createServer(tlsServerOptions(source.current), (req, res) => {
      if (req.url !== '/slow') return void res.end('hello');
      res.writeHead(200, { 'content-length': first.length + second.length });
      res.write(first);
      void released.then(() => res.end(second));
    });
    source.on('change', (c) => server.setSecureContext(tlsServerOptions(c)));
    const port = await listen(server);
    t.after(() => closeServer(server));

    const res = await new Promise<IncomingMessage>((resolve, reject) => {
      get({ host: '127.0.0.1', port, path: '/slow', servername: SVC_HOST, ca: caPem, agent: false }, resolve).once('error', reject);
    });
    const chunks: Buffer[] = [];
    res.on('data', (c: Buffer) => chunks.push(c));
    const ended = new Promise<void>((resolve, reject) => res.once('end', resolve).once('error', reject));
    await waitFor('the first half', () => Buffer.concat(chunks).length, (n) => n >= first.length);
    const oldFp = peerFingerprint(res.socket as TLSSocket);
    assert.equal(oldFp, source.current.fingerprint);

    const fp = await rotateInPlace();
    await waitFor('the swap', () => source.current.fingerprint, (f) => f === fp, 3000);
    // New connections get the new certificate, verified against the same ca.crt.
    assert.equal(await servedFingerprint(port, { servername: SVC_HOST, ca: caPem }), fp);
    release();
    await ended;
    assert.ok(Buffer.concat(chunks).equals(Buffer.concat([first, second])), 'the download completed intact');
    assert.equal(peerFingerprint(res.socket as TLSSocket), oldFp);
  });

  test('the fingerprint is openssl\'s SHA-256 of the served certificate, and curl trusts ca.crt from the Secret', async (t) => {
    const { source } = await start(t);
    const server = createServer(tlsServerOptions(source.current), (_req, res) => res.end('hello over TLS'));
    const port = await listen(server);
    t.after(() => closeServer(server));

    const { stdout } = await execFileAsync('sh', [
      '-c',
      `openssl s_client -connect 127.0.0.1:${port} -servername ${SVC_HOST} </dev/null 2>/dev/null | openssl x509 -noout -fingerprint -sha256`,
    ]);
    const opensslFp = stdout.trim().split('=')[1]!.replaceAll(':', '').toLowerCase();
    assert.match(opensslFp, /^[0-9a-f]{64}$/);
    assert.equal(opensslFp, source.current.fingerprint);
    assert.equal(opensslFp, secret()!.metadata.annotations?.[FINGERPRINT_ANNOTATION]);

    const caFile = join(dir, `ca-${port}.crt`);
    await writeFile(caFile, data(secret(), 'ca.crt'));
    for (const host of [SVC_HOST, FQDN, 'velero-download-server.velero.svc.cluster.local']) {
      const { stdout: body } = await execFileAsync('curl', ['-sS', '--fail', '--cacert', caFile, '--resolve', `${host}:${port}:127.0.0.1`, `https://${host}:${port}/`]);
      assert.equal(body, 'hello over TLS', host);
    }
    await execFileAsync('curl', ['-sS', '--fail', '--cacert', caFile, `https://127.0.0.1:${port}/`]);
    // And a name the certificate does not cover is refused.
    await assert.rejects(execFileAsync('curl', ['-sS', '--fail', '--cacert', caFile, '--resolve', `other.example.com:${port}:127.0.0.1`, `https://other.example.com:${port}/`]));
  });

  test('uses only get, create, update and watch on secrets in its namespace', async (t) => {
    let skew = 0;
    const { source } = await start(t, { now: () => new Date(Date.now() + skew) });
    skew = 250 * DAY_MS;
    assert.equal(await source.check(), true);
    const used = api.calls.permissions({ user: GATEWAY_USER }).map((p) => `${p.verb} ${p.resource} ${p.namespace} ${p.name}`);
    assert.deepEqual([...new Set(used)].sort(), [`create secrets ${NS} `, `get secrets ${NS} ${SECRET}`, `update secrets ${NS} ${SECRET}`, `watch secrets ${NS} ${SECRET}`]);
    assert.ok(api.calls.list({ user: GATEWAY_USER, verb: 'watch' }).every((c) => c.query.includes(`fieldSelector=metadata.name%3D${SECRET}`)));
  });

  test('stop() ends the watch', async (t) => {
    const { source } = await start(t);
    await waitFor('the watch', () => api.calls.count({ user: GATEWAY_USER, verb: 'watch' }), (n) => n === 1);
    source.stop();
    await sleep(100);
    const before = source.current.fingerprint;
    await rotateInPlace();
    await sleep(500);
    assert.equal(source.current.fingerprint, before);
    assert.equal(api.calls.count({ user: GATEWAY_USER, verb: 'watch' }), 1);
  });

  test('refuses a validity under an hour and a CA shorter-lived than its certificates', async () => {
    await startFails({ validityDays: 0.01 }, (err) => err instanceof RangeError);
    await startFails({ validityDays: 30, caValidityDays: 10 }, (err) => err instanceof RangeError);
    assert.equal(writes(), 0);
  });

  test('generateCa makes a path-length-0 CA; generateCaSigned never outlives its CA', async () => {
    const ca = await generateCa({ commonName: 'short-lived test CA', validityDays: 10 });
    const caCert = new X509Certificate(ca.certPem);
    assert.equal(caCert.ca, true);
    assert.equal(caCert.subject, 'CN=short-lived test CA');
    const leaf = new X509Certificate((await generateCaSigned({ hosts: ['a.example.com'], validityDays: 365, ca })).certPem);
    assert.equal(leaf.validToDate.getTime(), caCert.validToDate.getTime());
    assert.equal(leaf.issuer, caCert.subject);
    assert.ok(leaf.verify(caCert.publicKey));
    const file = join(dir, 'short-lived-ca.crt');
    await writeFile(file, ca.certPem);
    const { stdout } = await execFileAsync('openssl', ['x509', '-in', file, '-noout', '-text']);
    assert.match(stdout, /CA:TRUE, pathlen:0/);
    assert.match(stdout, /Certificate Sign, CRL Sign/);
  });

  test('fqdnHost takes the host out of a URL or host:port', () => {
    assert.equal(fqdnHost('downloads.example.com'), 'downloads.example.com');
    assert.equal(fqdnHost('https://Downloads.example.com:8443/x'), 'downloads.example.com');
    assert.equal(fqdnHost('downloads.example.com:443'), 'downloads.example.com');
    assert.equal(fqdnHost('10.0.0.7'), '10.0.0.7');
    assert.equal(fqdnHost('[fd00::1]:8443'), '[fd00::1]');
  });
});
