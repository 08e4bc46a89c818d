/**
 * End to end in kubernetes mode against a real kube-apiserver: the real gateway process, twice (two
 * replicas started together), with a kubeconfig of its own service account whose rights are real
 * Roles and a ClusterRole; users' tokens from the API server's static token file and TokenRequest;
 * downloads by the real curl. What this proves for real: TokenReview with audiences, the
 * SubjectAccessReviews decided by real RBAC (`backups/log` vs `backups/contents`), the certificate
 * Secret and CA ConfigMap created by two replicas racing, the DownloadRequest annotation on Velero's
 * own CRD, and the gateway URL discovered from real Service and Node objects.
 */
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { connect } from 'node:tls';
import { after, before, describe, test } from 'node:test';
import { parse } from 'yaml';
import { certificateFingerprint } from '../../src/tls/fingerprint.ts';
import { curl, startGateway } from '../support/processes.ts';
import type { GatewayProcess } from '../support/processes.ts';
import { missingTools, startRealCluster } from '../support/real-cluster.ts';
import type { RealCluster } from '../support/real-cluster.ts';
import {
  BACKUP,
  CA_CONFIGMAP,
  CERT_SECRET,
  NS,
  RESTORE,
  SERVICE,
  SIGNING_KEY_SECRET,
  createBarrier,
  eventually,
  gatewayAuditLog,
  gatewayRights,
  grant,
  installVelero,
  velero,
} from '../support/real-velero.ts';
import type { AuditLog, CreateBarrier, RealVelero } from '../support/real-velero.ts';

const URL_ANNOTATION = 'download-server.velero.io/url';
const FINGERPRINT_ANNOTATION = 'download-server.velero.io/tls-fingerprint';
const MERGE = { contentType: 'application/merge-patch+json' };
const VARIANT_CRD = new URL('../fixtures/velero-crd-variants/velero.io_downloadrequests.with-veleroserverurl.yaml', import.meta.url);

interface Info {
  tlsFingerprint: string;
  caCert?: string;
  url: string;
  urlSource: string;
  urlDetail: string;
}

describe('kubernetes mode against a real API server', { skip: missingTools('kube-apiserver', 'etcd') }, () => {
  let k: RealCluster;
  let v: RealVelero;
  let audit: AuditLog;
  let barrier: CreateBarrier;
  /** Two replicas: `gw` asks TokenReview for the API server's audiences, `gwAud` for velero-download-server. */
  let gw: GatewayProcess;
  let gwAud: GatewayProcess;
  let cacert: string;

  before(async () => {
    audit = await gatewayAuditLog();
    k = await startRealCluster({ apiServerArgs: audit.args });
    v = await installVelero(k);
    // Requests that exist before the gateway starts: its first list must handle them.
    await k.apply(
      velero('DownloadRequest', 'dr-log', { target: { kind: 'BackupLog', name: BACKUP } }),
      velero('DownloadRequest', 'dr-plain', { target: { kind: 'BackupLog', name: 'plain-backup' } }),
    );
    barrier = await createBarrier(k, { namespace: NS, names: [CERT_SECRET, CA_CONFIGMAP, SIGNING_KEY_SECRET], parties: 2 });
    const started = await Promise.allSettled([startGateway(v.args()), startGateway(v.args('--token-audiences', 'velero-download-server'))]);
    // A replica that started is stopped by after() even when the other failed.
    [gw, gwAud] = started.map((s) => (s.status === 'fulfilled' ? s.value : undefined)) as [GatewayProcess, GatewayProcess];
    const failed = started.find((s) => s.status === 'rejected');
    if (failed) throw failed.reason;
    cacert = await v.caFile();
  });
  after(async () => {
    await gw?.stop();
    await gwAud?.stop();
    await barrier?.close().catch(() => {});
    await k?.close();
    await v?.close();
    await audit?.close();
  });

  /** One request by the real curl: status and body. */
  const send = async (g: GatewayProcess, authorization: string | undefined, path: string, ...extra: string[]): Promise<{ status: number; body: Buffer }> => {
    const r = await curl(['--cacert', cacert, ...(authorization ? ['-H', `Authorization: ${authorization}`] : []), '-w', '\n%{http_code}', ...extra, `${g.url}${path}`]);
    assert.equal(r.code, 0, r.stderr);
    const cut = r.stdout.lastIndexOf('\n');
    return { status: Number(r.stdout.subarray(cut + 1).toString()), body: r.stdout.subarray(0, cut) };
  };
  const get = (g: GatewayProcess, token: string | undefined, path: string, ...extra: string[]): Promise<{ status: number; body: Buffer }> =>
    send(g, token === undefined ? undefined : `Bearer ${token}`, path, ...extra);
  const info = async (g: GatewayProcess): Promise<Info> => JSON.parse((await get(g, undefined, '/v1/info')).body.toString()) as Info;
  const reason = (body: Buffer): string => (JSON.parse(body.toString()) as { reason: string }).reason;
  const message = (body: Buffer): string => (JSON.parse(body.toString()) as { message: string }).message;
  const servedFingerprint = async (g: GatewayProcess): Promise<string> => {
    const ca = await readFile(cacert, 'utf8');
    const socket = connect({ host: '127.0.0.1', port: g.port, ca, servername: 'localhost' });
    try {
      await new Promise((resolve, reject) => socket.once('secureConnect', resolve).once('error', reject));
      return certificateFingerprint(new X509Certificate(socket.getPeerCertificate().raw));
    } finally {
      socket.destroy();
    }
  };
  const base = `/v1/namespaces/${NS}`;

  test('two replicas started together raced to create the certificate Secret (and the CA ConfigMap and the signing-key Secret): one won, both serve its certificate, and the CA ConfigMap is published', async () => {
    // Both asked to create each object (the barrier held the first create until the second came).
    const creates = async (resource: string, name: string): Promise<number[]> =>
      (await audit.events({ verb: 'create', resource, stage: 'ResponseComplete' })).filter((e) => e.objectRef?.name === name).map((e) => e.responseStatus?.code ?? 0).sort();
    for (const [resource, name] of [['secrets', CERT_SECRET], ['configmaps', CA_CONFIGMAP], ['secrets', SIGNING_KEY_SECRET]] as const) {
      assert.equal(barrier.arrived.get(name), 2, name);
      assert.deepEqual(await creates(resource, name), [201, 409], name);
    }
    const actions = [gw, gwAud].map((g) => g.logs.filter((l) => typeof l.msg === 'string' && l.msg.startsWith('serving certificate ')).map((l) => l.msg));
    assert.deepEqual(actions.flat().sort(), ['serving certificate created', 'serving certificate loaded']);

    const secret = await k.rest<{ metadata: { annotations?: Record<string, string> }; data: Record<string, string> }>('GET', `/api/v1/namespaces/${NS}/secrets/${CERT_SECRET}`);
    const fingerprint = secret.body.metadata.annotations?.[FINGERPRINT_ANNOTATION];
    assert.equal(fingerprint, certificateFingerprint(Buffer.from(secret.body.data['tls.crt']!, 'base64').toString()));
    for (const g of [gw, gwAud]) {
      assert.equal(await servedFingerprint(g), fingerprint);
      assert.equal((await info(g)).tlsFingerprint, fingerprint);
    }
    const ca = Buffer.from(secret.body.data['ca.crt']!, 'base64').toString();
    const cm = await eventually('the CA ConfigMap', async () => {
      const r = await k.rest<{ metadata: { annotations?: Record<string, string> }; data?: Record<string, string> }>('GET', `/api/v1/namespaces/${NS}/configmaps/${CA_CONFIGMAP}`);
      return r.status === 200 && r.body.data?.['ca.crt'] === ca ? r.body : undefined;
    });
    assert.equal(cm.metadata.annotations?.[FINGERPRINT_ANNOTATION], fingerprint);
    assert.equal((await info(gw)).caCert, ca);
  });

  test('TokenReview with audiences: a TokenRequest token is accepted only by the replica that asks for its audience', async () => {
    await k.apply(...grant('reader-logs', [{ apiGroups: ['velero.io'], resources: ['backups/log'], verbs: ['get'] }], [{ kind: 'ServiceAccount', name: 'reader', namespace: NS }], NS));
    const forUs = await k.serviceAccountToken(NS, 'reader', ['velero-download-server']);
    const forApi = await k.serviceAccountToken(NS, 'reader');
    const forBoth = await k.serviceAccountToken(NS, 'reader', ['velero-download-server', 'https://kubernetes.default.svc']);
    const forOthers = await k.serviceAccountToken(NS, 'reader', ['something-else']);
    const log = `${base}/backups/${BACKUP}/log`;
    const status = async (g: GatewayProcess, token: string): Promise<number> => (await get(g, token, log)).status;

    // Without --token-audiences the review asks for the API server's own audience.
    assert.equal(await status(gw, forApi), 200);
    assert.equal(await status(gw, forBoth), 200);
    assert.equal(await status(gw, forUs), 401);
    assert.equal(await status(gw, forOthers), 401);
    // With --token-audiences velero-download-server, only tokens issued for it.
    assert.equal(await status(gwAud, forUs), 200);
    assert.equal(await status(gwAud, forBoth), 200);
    assert.equal(await status(gwAud, forApi), 401);
    assert.equal(await status(gwAud, forOthers), 401);
    const denied = await get(gwAud, forOthers, log);
    assert.equal(reason(denied.body), 'Unauthorized');

    // A static token has no audience of its own: the API server accepts it for its own audiences only.
    assert.equal(await status(gw, k.tokens.bob!), 200);
    assert.equal(await status(gwAud, k.tokens.bob!), 401);
    for (const g of [gw, gwAud]) for (const t of [forUs, forApi, forBoth, forOthers, k.tokens.bob!]) assert.ok(!g.output().includes(t), 'a token in the log');
  });

  test('SubjectAccessReviews decided by real Roles and RoleBindings: backups/log is not backups/contents', async () => {
    const erin = await k.serviceAccountToken(NS, 'erin');
    const frank = await k.serviceAccountToken(NS, 'frank');
    const t = k.tokens;
    type Row = [name: string, path: string, token: string | undefined, status: number, reason?: string];
    const rows: Row[] = [
      ['no token', `${base}/backups/${BACKUP}/log`, undefined, 401, 'Unauthorized'],
      ['unknown token', `${base}/backups/${BACKUP}/log`, 'not-a-token-anyone-issued', 401, 'Unauthorized'],
      ['alice: a missing DownloadRequest', `${base}/downloadrequests/nope`, t.alice, 404, 'NotFound'],
      ['alice: log', `${base}/backups/${BACKUP}/log`, t.alice, 200],
      ['alice: contents', `${base}/backups/${BACKUP}/contents`, t.alice, 200],
      ['alice: restore log, through its backup', `${base}/restores/${RESTORE}/log`, t.alice, 200],
      ['alice: a missing backup', `${base}/backups/does-not-exist/log`, t.alice, 404, 'NotFound'],
      ['alice: another namespace', `/v1/namespaces/team-b/backups/${BACKUP}/log`, t.alice, 403, 'Forbidden'],
      ['bob: log', `${base}/backups/${BACKUP}/log`, t.bob, 200],
      ['bob: but not contents', `${base}/backups/${BACKUP}/contents`, t.bob, 403, 'Forbidden'],
      ['bob: nor a restore log (restores/log)', `${base}/restores/${RESTORE}/log`, t.bob, 403, 'Forbidden'],
      ['bob: nor a DownloadRequest', `${base}/downloadrequests/dr-log`, t.bob, 403, 'Forbidden'],
      ['carol: nothing', `${base}/backups/${BACKUP}/log`, t.carol, 403, 'Forbidden'],
      ['dave, through group backup-readers: log', `${base}/backups/${BACKUP}/log`, t.dave, 200],
      ['dave: a DownloadRequest', `${base}/downloadrequests/dr-log`, t.dave, 200],
      ['dave: not results', `${base}/backups/${BACKUP}/results`, t.dave, 403, 'Forbidden'],
      ['erin, get on backups: not the log', `${base}/backups/${BACKUP}/log`, erin, 403, 'Forbidden'],
      ['frank, backups/log of nightly by name: that log', `${base}/backups/${BACKUP}/log`, frank, 200],
      ['frank: not the log of another backup', `${base}/backups/plain-backup/log`, frank, 403, 'Forbidden'],
    ];
    for (const [name, path, token, status, why] of rows) {
      const r = await get(gw, token, path);
      assert.equal(r.status, status, `${name}: ${r.body.toString()}`);
      if (why) assert.equal(reason(r.body), why, name);
    }
    const basic = await send(gw, `Basic ${t.alice}`, `${base}/backups/${BACKUP}/log`);
    assert.deepEqual([basic.status, reason(basic.body)], [401, 'Unauthorized'], 'a token in another scheme');
    // erin's Role does grant the Backup itself: what it lacks is the subresource.
    assert.equal((await k.rest('GET', `/apis/velero.io/v1/namespaces/${NS}/backups/${BACKUP}`, undefined, { token: erin })).status, 200);
    assert.equal((await k.rest('GET', `/apis/velero.io/v1/namespaces/${NS}/backups/${BACKUP}`, undefined, { token: t.bob })).status, 403);

    // The refusal names user, verb and resource, and is the same for a backup that does not exist.
    const a = await get(gw, t.bob, `${base}/backups/${BACKUP}/contents`);
    const b = await get(gw, t.bob, `${base}/backups/no-such-backup/contents`);
    assert.match(message(a.body), /User "bob" cannot get resource "backups\/contents" in API group "velero.io" in the namespace "velero"/);
    assert.equal(message(b.body), message(a.body).replace(`"${BACKUP}"`, '"no-such-backup"'));
    for (const token of [...Object.values(t), erin, frank]) assert.ok(!gw.output().includes(token), 'a token in the log');
  });

  test('the bytes are the backup\'s: log, contents, a range, a restore log and a DownloadRequest', async () => {
    const t = k.tokens;
    assert.deepEqual((await get(gw, t.alice, `${base}/backups/${BACKUP}/log`)).body, v.files.log);
    assert.deepEqual((await get(gw, t.alice, `${base}/backups/${BACKUP}/contents`)).body, v.files.contents);
    const range = await get(gw, t.alice, `${base}/backups/${BACKUP}/contents`, '-r', '100-199');
    assert.equal(range.status, 206);
    assert.deepEqual(range.body, v.files.contents.subarray(100, 200));
    assert.deepEqual((await get(gwAud, t.alice, `${base}/backups/${BACKUP}/log`)).status, 401, 'a static token, audiences asked');
    assert.deepEqual((await get(gw, t.alice, `${base}/restores/${RESTORE}/log`)).body, v.files.restoreLog);
    assert.deepEqual((await get(gw, t.dave, `${base}/downloadrequests/dr-log`)).body, v.files.log);
  });

  test("Velero's DownloadRequest CRD: the gateway writes only the URL annotation; a status field it does not declare would be pruned", async () => {
    const { url } = await info(gw);
    const dr = async (name: string): Promise<{ metadata: { annotations?: Record<string, string> }; status?: Record<string, unknown> }> =>
      (await k.rest<{ metadata: { annotations?: Record<string, string> }; status?: Record<string, unknown> }>('GET', `/apis/velero.io/v1/namespaces/${NS}/downloadrequests/${name}`)).body;
    const annotated = (name: string) => async (): Promise<string | undefined> => (await dr(name)).metadata.annotations?.[URL_ANNOTATION];
    // Created before the start, on the opted-in location: annotated; on the other: left alone.
    assert.equal(await eventually('dr-log annotated', annotated('dr-log')), `${url}${base}/downloadrequests/dr-log`);
    // Created now: annotated too.
    await k.apply(velero('DownloadRequest', 'dr-new', { target: { kind: 'BackupContents', name: BACKUP } }));
    assert.equal(await eventually('dr-new annotated', annotated('dr-new')), `${url}${base}/downloadrequests/dr-new`);
    assert.equal(await annotated('dr-plain')(), undefined);

    // Velero's controller processes the request, as Velero's service account, patching the main resource.
    const owned = { phase: 'Processed', downloadURL: 'https://s3.example.com/bucket/x?X-Amz-Signature=abc', expiration: new Date(Date.now() + 600_000).toISOString().replace(/\.\d+Z$/, 'Z') };
    const patched = await k.rest('PATCH', `/apis/velero.io/v1/namespaces/${NS}/downloadrequests/dr-new`, { status: owned }, { ...MERGE, token: k.tokens['system:serviceaccount:velero:velero'] });
    assert.equal(patched.status, 200, JSON.stringify(patched.body));
    // A value written to status.veleroServerURL is pruned: the CRD does not declare it.
    const pruned = await k.rest('PATCH', `/apis/velero.io/v1/namespaces/${NS}/downloadrequests/dr-new`, { status: { veleroServerURL: 'https://pruned.example.com' } }, MERGE);
    assert.equal(pruned.status, 200);
    const after = await dr('dr-new');
    assert.deepEqual(after.status, owned);
    assert.equal(after.metadata.annotations?.[URL_ANNOTATION], `${url}${base}/downloadrequests/dr-new`);

    // What the gateway sent: merge patches of metadata only, never a status, never to /status.
    const patches = await audit.events({ verb: 'patch', resource: 'downloadrequests', stage: 'ResponseComplete' });
    assert.ok(patches.length >= 2, `${patches.length} patches`);
    for (const p of patches) {
      assert.equal(p.objectRef?.subresource, undefined);
      assert.deepEqual(Object.keys(p.requestObject as object), ['metadata'], JSON.stringify(p.requestObject));
    }
    assert.ok(!patches.some((p) => p.objectRef?.name === 'dr-plain'));
    for (const g of [gw, gwAud]) assert.ok(!g.logs.some((l) => l.level === 40 || l.level === 50), JSON.stringify(g.logs.filter((l) => Number(l.level) >= 40)));
  });

  test('the gateway URL from real Service and Node objects: /v1/info says which and why, follows every change, and so do the DownloadRequests', async () => {
    const svcPath = `/api/v1/namespaces/${NS}/services/${SERVICE}`;
    const until = async (what: string, check: (i: Info) => boolean): Promise<Info> => eventually(what, async () => ((i) => (check(i) ? i : undefined))(await info(gw)));
    const annotationOf = async (name: string): Promise<string | undefined> =>
      (await k.rest<{ metadata: { annotations?: Record<string, string> } }>('GET', `/apis/velero.io/v1/namespaces/${NS}/downloadrequests/${name}`)).body.metadata.annotations?.[URL_ANNOTATION];

    let i = await info(gw);
    assert.deepEqual([i.url, i.urlSource], [`https://${SERVICE}.${NS}.svc`, 'clusterIP']);
    assert.match(i.urlDetail, /not found/);

    const service = (type: string, port: Record<string, unknown> = {}): object => ({
      apiVersion: 'v1',
      kind: 'Service',
      metadata: { name: SERVICE, namespace: NS },
      spec: { type, selector: { app: SERVICE }, ports: [{ name: 'metrics', port: 8085, targetPort: 8085 }, { name: 'https', port: 8443, targetPort: 8443, ...port }] },
    });
    await k.apply(service('ClusterIP'));
    i = await until('the ClusterIP Service', (x) => x.urlDetail.includes('ClusterIP'));
    assert.deepEqual([i.url, i.urlSource], [`https://${SERVICE}.${NS}.svc:8443`, 'clusterIP']);

    // Nodes as a kubelet registers them: the addresses in the Node's status, written through /status.
    const nodeStatus = async (name: string, addresses: { type: string; address: string }[]): Promise<void> => {
      const r = await k.rest('PATCH', `/api/v1/nodes/${name}/status`, { status: { addresses } }, MERGE);
      assert.equal(r.status, 200, JSON.stringify(r.body));
    };
    for (const name of ['node-a', 'node-b']) await k.rest('POST', '/api/v1/nodes', { apiVersion: 'v1', kind: 'Node', metadata: { name } });
    await nodeStatus('node-a', [{ type: 'InternalIP', address: '10.0.0.1' }, { type: 'Hostname', address: 'node-a' }]);
    await nodeStatus('node-b', [{ type: 'InternalIP', address: '10.0.0.2' }, { type: 'ExternalIP', address: '203.0.113.20' }]);
    await k.apply(service('NodePort', { nodePort: 30443 }));
    i = await until('the NodePort on an ExternalIP', (x) => x.urlSource === 'nodePort');
    assert.equal(i.url, 'https://203.0.113.20:30443');
    assert.match(i.urlDetail, /node node-b \(ExternalIP/);
    // Unexpired DownloadRequests get the new URL.
    assert.equal(await eventually('dr-log to follow', async () => ((a) => (a?.startsWith('https://203.0.113.20:30443/') ? a : undefined))(await annotationOf('dr-log'))), `https://203.0.113.20:30443${base}/downloadrequests/dr-log`);

    await nodeStatus('node-b', [{ type: 'InternalIP', address: '10.0.0.2' }]);
    i = await until('an InternalIP once no node has an ExternalIP', (x) => x.url === 'https://10.0.0.1:30443');
    assert.match(i.urlDetail, /node node-a \(InternalIP/);

    await k.apply(service('LoadBalancer', { nodePort: 30443 }));
    i = await until('the pending load balancer', (x) => x.urlDetail.includes('pending'));
    assert.deepEqual([i.url, i.urlSource], [`https://${SERVICE}.${NS}.svc:8443`, 'clusterIP']);
    const lbStatus = async (ingress: object[]): Promise<void> => {
      const r = await k.rest('PATCH', `${svcPath}/status`, { status: { loadBalancer: { ingress } } }, MERGE);
      assert.equal(r.status, 200, JSON.stringify(r.body));
    };
    await lbStatus([{ ip: '198.51.100.7' }]);
    i = await until('the load balancer IP', (x) => x.urlSource === 'loadBalancer');
    assert.equal(i.url, 'https://198.51.100.7:8443');
    assert.match(i.urlDetail, /load balancer ingress IP 198\.51\.100\.7/);
    await lbStatus([{ hostname: 'abc123.elb.example.com' }]);
    i = await until('the load balancer hostname', (x) => x.url === 'https://abc123.elb.example.com:8443');
    assert.match(i.urlDetail, /hostname abc123\.elb\.example\.com/);
    assert.equal(await eventually('dr-log to follow', async () => ((a) => (a?.startsWith('https://abc123.elb.example.com:8443/') ? a : undefined))(await annotationOf('dr-log'))), `https://abc123.elb.example.com:8443${base}/downloadrequests/dr-log`);
    // Both replicas computed the same URL from the same objects.
    await eventually('the other replica to compute the same URL', async () => (await info(gwAud)).url === i.url);

    await k.rest('DELETE', svcPath);
    i = await until('the deleted Service', (x) => x.urlDetail.includes('not found'));
    assert.equal(i.url, `https://${SERVICE}.${NS}.svc`);
    // Its rights name the one Service: every list and watch it made selected it by name.
    const reads = [...(await audit.events({ resource: 'services', verb: 'list' })), ...(await audit.events({ resource: 'services', verb: 'watch' }))];
    assert.ok(reads.length >= 2 && reads.every((e) => e.responseStatus?.code === 200 && e.requestURI.includes(`fieldSelector=metadata.name%3D${SERVICE}`)), JSON.stringify(reads.map((e) => [e.requestURI, e.responseStatus?.code])));
  });

  test('a CRD that declares status.veleroServerURL with a /status subresource: a replica started on it writes the field through /status', async () => {
    // The variant CRD, with the subresource added here: on such a CRD the object's own status is ignored on writes.
    const crd = parse(await readFile(VARIANT_CRD, 'utf8')) as { spec: { versions: { name: string; subresources?: object }[] } };
    crd.spec.versions.find((x) => x.name === 'v1')!.subresources = { status: {} };
    await k.apply(crd, ...gatewayRights({ statusSubresource: true }));
    await k.apply(velero('DownloadRequest', 'probe', { target: { kind: 'BackupLog', name: 'plain-backup' } }));
    const statusOf = async (name: string): Promise<Record<string, unknown> | undefined> =>
      (await k.rest<{ status?: Record<string, unknown> }>('GET', `/apis/velero.io/v1/namespaces/${NS}/downloadrequests/${name}`)).body.status;
    await eventually('the /status subresource in force', async () => {
      await k.rest('PATCH', `/apis/velero.io/v1/namespaces/${NS}/downloadrequests/probe/status`, { status: { veleroServerURL: 'https://probe' } }, MERGE);
      return (await statusOf('probe'))?.veleroServerURL === 'https://probe';
    });
    // On the object itself a status write is now ignored.
    await k.rest('PATCH', `/apis/velero.io/v1/namespaces/${NS}/downloadrequests/probe`, { status: { veleroServerURL: 'https://ignored' } }, MERGE);
    assert.equal((await statusOf('probe'))?.veleroServerURL, 'https://probe');

    const gw3 = await startGateway(v.args());
    try {
      const { url } = await info(gw3);
      await k.apply(velero('DownloadRequest', 'dr-status', { target: { kind: 'BackupResults', name: BACKUP } }));
      await eventually('status.veleroServerURL', async () => (await statusOf('dr-status'))?.veleroServerURL === `${url}${base}/downloadrequests/dr-status`);
      const throughStatus = (await audit.events({ verb: 'patch', resource: 'downloadrequests', subresource: 'status', stage: 'ResponseComplete' })).filter((e) => e.objectRef?.name === 'dr-status');
      assert.deepEqual(throughStatus.map((e) => e.responseStatus?.code), [200]);
      assert.deepEqual((throughStatus[0]!.requestObject as { status: unknown }).status, { veleroServerURL: `${url}${base}/downloadrequests/dr-status` });
      // The object's own patches (by any replica) carry no status.
      for (const e of (await audit.events({ verb: 'patch', resource: 'downloadrequests', subresource: '' })).filter((x) => x.objectRef?.name === 'dr-status')) {
        assert.deepEqual(Object.keys(e.requestObject as object), ['metadata']);
      }
      assert.ok(!gw3.logs.some((l) => Number(l.level) >= 40), JSON.stringify(gw3.logs.filter((l) => Number(l.level) >= 40)));
    } finally {
      await gw3.stop();
    }
  });
});
