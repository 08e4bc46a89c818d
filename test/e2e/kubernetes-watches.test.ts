/**
 * The gateway process against a real kube-apiserver that ends every watch after a few seconds
 * (`--min-request-timeout`), and that is stopped and started again: the DownloadRequest controller,
 * URL discovery and the certificate Secret keep following what changes, across the cuts and across
 * the restart. The DownloadRequest CRD here is the variant that declares `status.veleroServerURL`, so
 * the gateway writes that field too.
 */
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { connect } from 'node:tls';
import { after, before, describe, test } from 'node:test';
import { parse } from 'yaml';
import { certificateFingerprint } from '../../src/tls/fingerprint.ts';
import { generateCaSigned } from '../../src/tls/generate.ts';
import { generatedCertificateHosts } from '../../src/tls/policy.ts';
import { curl, startGateway } from '../support/processes.ts';
import type { GatewayProcess } from '../support/processes.ts';
import { missingTools, startRealCluster } from '../support/real-cluster.ts';
import type { RealCluster } from '../support/real-cluster.ts';
import { BACKUP, CERT_SECRET, NS, SERVICE, eventually, gatewayAuditLog, installVelero, velero } from '../support/real-velero.ts';
import type { AuditLog, RealVelero } from '../support/real-velero.ts';

/** The API server ends a watch that names no timeout after 1× to 2× this. */
const CUT_SECONDS = 2;
const VARIANT_CRD = new URL('../fixtures/velero-crd-variants/velero.io_downloadrequests.with-veleroserverurl.yaml', import.meta.url);
const URL_ANNOTATION = 'download-server.velero.io/url';
const FINGERPRINT_ANNOTATION = 'download-server.velero.io/tls-fingerprint';
const MERGE = { contentType: 'application/merge-patch+json' };
/** The collections the gateway watches here. */
const WATCHED = ['downloadrequests', 'services', 'nodes', 'secrets'] as const;

interface DownloadRequest {
  metadata: { annotations?: Record<string, string> };
  status?: Record<string, unknown>;
}

describe('kubernetes mode against a real API server that cuts watches and restarts', { skip: missingTools('kube-apiserver', 'etcd') }, () => {
  let k: RealCluster;
  let v: RealVelero;
  let audit: AuditLog;
  let gw: GatewayProcess;
  let cacert: string;

  const drUrl = (base: string, name: string): string => `${base}/v1/namespaces/${NS}/downloadrequests/${name}`;
  const dr = async (name: string): Promise<DownloadRequest> => (await k.rest<DownloadRequest>('GET', `/apis/velero.io/v1/namespaces/${NS}/downloadrequests/${name}`)).body;
  const info = async (): Promise<{ url: string; urlDetail: string; tlsFingerprint: string }> => {
    const r = await curl(['--cacert', cacert, '--fail', `${gw.url}/v1/info`]);
    assert.equal(r.code, 0, r.stderr);
    return JSON.parse(r.stdout.toString()) as { url: string; urlDetail: string; tlsFingerprint: string };
  };
  const servedFingerprint = async (): Promise<string> => {
    const socket = connect({ host: '127.0.0.1', port: gw.port, ca: await readFile(cacert, 'utf8'), servername: 'localhost' });
    try {
      await new Promise((resolve, reject) => socket.once('secureConnect', resolve).once('error', reject));
      return certificateFingerprint(new X509Certificate(socket.getPeerCertificate().raw));
    } finally {
      socket.destroy();
    }
  };
  const nodeAddresses = async (name: string, addresses: { type: string; address: string }[]): Promise<void> => {
    const r = await k.rest('PATCH', `/api/v1/nodes/${name}/status`, { status: { addresses } }, MERGE);
    assert.equal(r.status, 200, JSON.stringify(r.body));
  };
  const service = (nodePort: number): object => ({
    apiVersion: 'v1',
    kind: 'Service',
    metadata: { name: SERVICE, namespace: NS },
    spec: { type: 'NodePort', selector: { app: SERVICE }, ports: [{ name: 'https', port: 443, targetPort: 8443, nodePort }] },
  });
  /** What another replica does when it renews: a new certificate from the Secret's CA, written to the Secret. */
  const renewAsAnotherReplica = async (): Promise<string> => {
    const s = await k.rest<{ metadata: { annotations?: Record<string, string> }; data: Record<string, string> }>('GET', `/api/v1/namespaces/${NS}/secrets/${CERT_SECRET}`);
    const text = (key: string): string => Buffer.from(s.body.data[key]!, 'base64').toString();
    const ca = { certPem: new X509Certificate(text('ca.crt')).toString(), keyPem: text('ca.key') };
    const leaf = await generateCaSigned({ hosts: generatedCertificateHosts({ namespace: NS, extraSans: ['127.0.0.1', 'localhost'] }), ca });
    const fingerprint = certificateFingerprint(leaf.certPem);
    const body = {
      ...s.body,
      metadata: { ...s.body.metadata, annotations: { ...s.body.metadata.annotations, [FINGERPRINT_ANNOTATION]: fingerprint } },
      data: { ...s.body.data, 'tls.crt': Buffer.from(leaf.certPem).toString('base64'), 'tls.key': Buffer.from(leaf.keyPem).toString('base64') },
    };
    const r = await k.rest('PUT', `/api/v1/namespaces/${NS}/secrets/${CERT_SECRET}`, body);
    assert.equal(r.status, 200, JSON.stringify(r.body));
    return fingerprint;
  };

  /**
   * Changes one thing of each kind the gateway follows and waits until it has followed: a new
   * DownloadRequest, a node's address, the Service's node port, the certificate in the Secret.
   */
  const everythingFollowed = async (round: string, nodePort: number, address: string, ms = 15_000): Promise<void> => {
    const name = `dr-${round}`;
    await k.apply(velero('DownloadRequest', name, { target: { kind: 'BackupLog', name: BACKUP } }));
    await nodeAddresses('node-a', [{ type: 'ExternalIP', address }]);
    await k.apply(service(nodePort));
    const fingerprint = await renewAsAnotherReplica();
    const base = `https://${address}:${nodePort}`;
    await eventually(`${round}: the URL from the changed Node and Service`, async () => (await info()).url === base, ms);
    const got = await eventually(`${round}: ${name} annotated with that URL`, async () => ((d) => (d.metadata.annotations?.[URL_ANNOTATION] === drUrl(base, name) ? d : undefined))(await dr(name)), ms);
    assert.equal(got.status?.veleroServerURL, drUrl(base, name));
    await eventually(`${round}: the renewed certificate served`, async () => (await servedFingerprint()) === fingerprint, ms);
    assert.equal((await info()).tlsFingerprint, fingerprint);
  };

  before(async () => {
    audit = await gatewayAuditLog();
    k = await startRealCluster({ minRequestTimeoutSeconds: CUT_SECONDS, apiServerArgs: audit.args });
    await k.apply(parse(await readFile(VARIANT_CRD, 'utf8')) as object);
    v = await installVelero(k);
    // The API server serves the new schema once it has rebuilt the resource's storage: a field it keeps.
    await k.apply(velero('DownloadRequest', 'probe', { target: { kind: 'BackupLog', name: 'plain-backup' } }));
    await eventually('the variant schema in force', async () => {
      await k.rest('PATCH', `/apis/velero.io/v1/namespaces/${NS}/downloadrequests/probe`, { status: { veleroServerURL: 'https://probe' } }, MERGE);
      return (await dr('probe')).status?.veleroServerURL === 'https://probe';
    });
    await k.rest('DELETE', `/apis/velero.io/v1/namespaces/${NS}/downloadrequests/probe`);
    await k.rest('POST', '/api/v1/nodes', { apiVersion: 'v1', kind: 'Node', metadata: { name: 'node-a' } });
    await nodeAddresses('node-a', [{ type: 'ExternalIP', address: '203.0.113.1' }]);
    await k.apply(service(30001));
    gw = await startGateway(v.args());
    cacert = await v.caFile();
  });
  after(async () => {
    await gw?.stop();
    await k?.close();
    await v?.close();
    await audit?.close();
  });

  test('a CRD that declares status.veleroServerURL: the gateway writes it with the annotation, in one patch of the object; Velero keeps its fields', async () => {
    const { url } = await info();
    assert.equal(url, 'https://203.0.113.1:30001');
    await k.apply(velero('DownloadRequest', 'dr-first', { target: { kind: 'BackupLog', name: BACKUP } }));
    const got = await eventually('the status field', async () => ((d) => (d.status?.veleroServerURL ? d : undefined))(await dr('dr-first')));
    assert.equal(got.metadata.annotations?.[URL_ANNOTATION], drUrl(url, 'dr-first'));
    assert.deepEqual(got.status, { veleroServerURL: drUrl(url, 'dr-first') });
    const owned = { phase: 'Processed', downloadURL: 'https://s3.example.com/x', expiration: new Date(Date.now() + 600_000).toISOString().replace(/\.\d+Z$/, 'Z') };
    const r = await k.rest('PATCH', `/apis/velero.io/v1/namespaces/${NS}/downloadrequests/dr-first`, { status: owned }, { ...MERGE, token: k.tokens['system:serviceaccount:velero:velero'] });
    assert.equal(r.status, 200);
    assert.deepEqual((await dr('dr-first')).status, { ...owned, veleroServerURL: drUrl(url, 'dr-first') });
    const patches = (await audit.events({ verb: 'patch', resource: 'downloadrequests', stage: 'ResponseComplete' })).filter((e) => e.objectRef?.name === 'dr-first');
    assert.equal(patches.length, 1);
    const body = patches[0]!.requestObject as { metadata: unknown; status: Record<string, unknown> };
    assert.deepEqual(Object.keys(body).sort(), ['metadata', 'status']);
    assert.deepEqual(body.status, { veleroServerURL: drUrl(url, 'dr-first') });
  });

  test('watches the API server ends every few seconds are resumed from where they were, and everything is still followed', async () => {
    const started = async (resource: string): Promise<number> => (await audit.events({ verb: 'watch', resource, stage: 'ResponseStarted' })).length;
    // Several cut periods: every watch was ended by the API server and started again, at least twice.
    for (const resource of WATCHED) await eventually(`three watches of ${resource}`, async () => (await started(resource)) >= 3, 30_000, 250);
    for (const resource of WATCHED) {
      const ended = await audit.events({ verb: 'watch', resource, stage: 'ResponseComplete' });
      assert.ok(ended.length >= 2 && ended.every((e) => e.responseStatus?.code === 200), `${resource}: ${JSON.stringify(ended.map((e) => e.responseStatus))}`);
    }
    // Resumed from the last resourceVersion, not relisted.
    for (const resource of ['downloadrequests', 'services', 'nodes']) {
      assert.equal((await audit.events({ verb: 'list', resource, stage: 'ResponseComplete' })).length, 1, resource);
    }
    await everythingFollowed('after-cuts', 30002, '203.0.113.2');
    assert.ok(!gw.logs.some((l) => Number(l.level) >= 40), JSON.stringify(gw.logs.filter((l) => Number(l.level) >= 40)));
  });

  test('across an API server restart: downloads answer 503 while it is down, and afterwards everything is followed again', async () => {
    const log = `/v1/namespaces/${NS}/backups/${BACKUP}/log`;
    /** One download as curl sees it: status, Retry-After, body. */
    const download = async (token: string): Promise<{ status: number; retryAfter: string | undefined; body: string }> => {
      const r = await curl(['--cacert', cacert, '-H', `Authorization: Bearer ${token}`, '-D', '-', `${gw.url}${log}`]);
      const text = r.stdout.toString('latin1');
      return { status: Number(/^HTTP\/1\.1 (\d{3})/.exec(text)?.[1]), retryAfter: /^retry-after:\s*(\S+)/im.exec(text)?.[1], body: text.slice(text.indexOf('\r\n\r\n') + 4) };
    };
    await k.stopApiServer();
    try {
      // Tokens no cache knows yet: their reviews cannot be made, each time.
      for (const token of [k.tokens.dave!, k.tokens.carol!, k.tokens.dave!]) {
        const down = await download(token);
        assert.equal(down.status, 503, down.body);
        assert.ok(down.retryAfter, 'Retry-After');
        assert.equal((JSON.parse(down.body) as { reason: string }).reason, 'ServiceUnavailable');
      }
      const health = await curl(['--cacert', cacert, '--fail', `${gw.url}/healthz`]);
      assert.equal(health.code, 0, health.stderr);
    } finally {
      await k.startApiServer();
    }
    // The gateway's watches retry with growing delays (up to 30 s) while the API server is away.
    await everythingFollowed('after-restart', 30003, '203.0.113.3', 45_000);
    assert.equal((await download(k.tokens.dave!)).status, 200);
    assert.equal(gw.proc.exitCode, null, 'the gateway is still running');
    for (const t of Object.values(k.tokens)) assert.ok(!gw.output().includes(t), 'a token in the log');
  });
});
