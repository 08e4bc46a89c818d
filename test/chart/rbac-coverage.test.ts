/**
 * The chart grants every Kubernetes API call the gateway makes, and nothing it does not make. The
 * list of calls is not written down here: it is read from the API test double's call log while a
 * representative workload runs through the gateway's real wiring (in-process, the real process with
 * everything the gateway process starts, and the certificate renewal, CA publication and key rotation those run
 * later, driven here with skewed clocks). The RBAC is what helm renders from the chart, applied to a
 * real kube-apiserver, whose own authorizer answers a SubjectAccessReview for every (verb, group,
 * resource, subresource, namespace, name) the gateway's service account used. A new API call without
 * a rule fails here; so does a rule wider than the calls: a verb no call used, or a verb on the
 * release namespace's or cluster-scoped objects granted for every name although every call named one
 * object.
 */
import assert from 'node:assert/strict';
import { cp, mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, test } from 'node:test';
import request from 'supertest';
import { DEFAULT_ROTATE_AFTER_MS, SIGNING_KEY_SECRET, SigningKeySource } from '../../src/auth/signing-keys.ts';
import { createKubeClients } from '../../src/kube/client.ts';
import { CachedObjectReader } from '../../src/kube/objects.ts';
import { KubeCatalog } from '../../src/velero/catalog.ts';
import { CaPublisher } from '../../src/tls/ca-publisher.ts';
import { SecretCertificateSource } from '../../src/tls/secret.ts';
import { group, user } from '../support/kube-apiserver/index.ts';
import type { Permission } from '../support/kube-apiserver/index.ts';
import { BACKUP, NS, RESTORE, kubeFixture, velero } from '../support/kube-fixture.ts';
import type { KubeFixture } from '../support/kube-fixture.ts';
import { binary } from '../support/http.ts';
import { kanisterProfile, keyPairCredential, secretOf } from '../support/kanister.ts';
import { inProcessGateway } from '../support/in-process.ts';
import { curl, startGateway } from '../support/processes.ts';
import { missingTools, startRealCluster } from '../support/real-cluster.ts';
import type { RealCluster } from '../support/real-cluster.ts';
import { CA_CONFIGMAP, RBAC_KINDS, boundRoles, collectionPath, render, serverVersion } from './chart.ts';
import type { Manifest, PolicyRule } from './chart.ts';

const SERVICE_ACCOUNT = 'velero-download-server';
const GATEWAY_USER = `system:serviceaccount:${NS}:${SERVICE_ACCOUNT}`;
const GATEWAY_GROUPS = ['system:serviceaccounts', `system:serviceaccounts:${NS}`, 'system:authenticated'];
const TENANT = 'team-a';
const TENANT_BACKUP = 'team-a-nightly';
const TENANT_RESTORE = 'team-a-restore';
const CERT_SECRET = 'velero-download-server-certs';
/** The access users' Secret (--access-users-secret's default): read and watched by name. */
const ACCESS_USERS_SECRET = 'velero-download-server-users';
/** The Secrets of the release namespace the gateway names itself. */
const OWN_SECRETS = new Set([CERT_SECRET, SIGNING_KEY_SECRET, ACCESS_USERS_SECRET, 'velero-repo-credentials']);
/** The chart's MutatingWebhookConfiguration: <release namespace>-<fullname>. */
const WEBHOOK_CONFIGURATION = `${NS}-velero-download-server`;
const URL_ANNOTATION = 'download-server.velero.io/url';
const b64 = (s: string | Buffer): string => Buffer.from(s).toString('base64');
const describePermission = (p: Permission): string =>
  `${p.verb} ${p.group || 'core'}/${p.resource}${p.subresource ? `/${p.subresource}` : ''}${p.name ? ` "${p.name}"` : ''} in ${p.namespace || '(cluster)'}`;

/** The values the workload's gateway runs with: the webhook on (so the gateway keeps its caBundle), these namespaces watched. */
const valuesFor = (watch: string): Record<string, unknown> => ({ configuration: { watchNamespaces: [watch] }, admissionWebhook: { enabled: true } });

const resourceOf = (p: Permission): string => (p.subresource ? `${p.resource}/${p.subresource}` : p.resource);

/** Does the real API server's authorizer let the gateway's service account do `p`? */
async function allowed(k: RealCluster, p: Permission): Promise<boolean> {
  const r = await k.rest<{ status?: { allowed?: boolean } }>('POST', '/apis/authorization.k8s.io/v1/subjectaccessreviews', {
    apiVersion: 'authorization.k8s.io/v1',
    kind: 'SubjectAccessReview',
    spec: { user: GATEWAY_USER, groups: GATEWAY_GROUPS, resourceAttributes: { verb: p.verb, group: p.group, resource: p.resource, subresource: p.subresource, namespace: p.namespace, name: p.name } },
  });
  if (r.status !== 201) throw new Error(`SubjectAccessReview: HTTP ${r.status} ${JSON.stringify(r.body)}`);
  return r.body.status?.allowed === true;
}

/** A permission the first rule of the role a binding names grants, where the binding applies. */
function probe(docs: Manifest[], binding: Manifest): Permission {
  const ref = binding.roleRef as { kind: string; name: string };
  const role = docs.find((d) => d.kind === ref.kind && d.metadata.name === ref.name && (ref.kind === 'ClusterRole' || d.metadata.namespace === binding.metadata.namespace))!;
  const rule = (role.rules as PolicyRule[])[0]!;
  const [resource, subresource = ''] = rule.resources![0]!.split('/') as [string, string?];
  return { verb: rule.verbs[0]!, group: rule.apiGroups![0]!, resource, subresource, namespace: binding.metadata.namespace ?? '', name: rule.resourceNames?.[0] ?? '' };
}

/**
 * The RBAC objects of one helm rendering, on the real API server: what an earlier rendering applied
 * and this one does not render is deleted, the rest applied; it returns once the authorizer (which
 * follows RBAC objects through its informers) decides by them.
 */
class AppliedRbac {
  #applied: Manifest[] = [];
  readonly k: RealCluster;
  constructor(k: RealCluster) {
    this.k = k;
  }

  async use(docs: Manifest[]): Promise<void> {
    const rbac = docs.filter((d) => RBAC_KINDS.has(d.kind));
    const key = (d: Manifest): string => `${d.kind}/${d.metadata.namespace ?? ''}/${d.metadata.name}`;
    const gone = this.#applied.filter((a) => !rbac.some((d) => key(d) === key(a)));
    for (const d of gone) {
      const r = await this.k.rest('DELETE', `${await collectionPath(this.k, d)}/${d.metadata.name}`);
      if (r.status >= 300) throw new Error(`delete ${key(d)}: HTTP ${r.status}`);
    }
    const isBinding = (d: Manifest): boolean => d.kind.endsWith('Binding');
    await this.#until(gone.filter(isBinding).map((b) => probe(this.#applied, b)), false);
    await this.k.apply(...rbac);
    this.#applied = rbac;
    await this.#until(rbac.filter(isBinding).map((b) => probe(rbac, b)), true);
  }

  async #until(probes: Permission[], want: boolean): Promise<void> {
    const deadline = Date.now() + 10_000;
    for (const p of probes) {
      while ((await allowed(this.k, p)) !== want) {
        if (Date.now() > deadline) throw new Error(`the authorizer still ${want ? 'denies' : 'allows'} ${describePermission(p)}`);
        await sleep(50);
      }
    }
  }
}

/** The permissions (of `used`) that the real authorizer refuses the gateway under the RBAC applied. */
async function ungranted(k: RealCluster, used: Permission[]): Promise<string[]> {
  const out: string[] = [];
  for (const p of used) if (!(await allowed(k, p))) out.push(describePermission(p));
  return out;
}

/**
 * Where `rules` grant more than the calls in `used` needed: a (verb, resource[, name]) no call used,
 * and a verb granted for every name although every call of it was on one and the same object (in one
 * namespace): such an object has a fixed name the rule can carry (create excepted: RBAC cannot limit
 * it by name). The workload reads Velero objects of several names in two namespaces, so their rules
 * are rightly unnamed; a verb used only on the gateway's own Secrets, however many, is not.
 */
function widerThanNeeded(rules: PolicyRule[], used: Permission[]): string[] {
  const out: string[] = [];
  for (const r of rules) {
    for (const verb of r.verbs) {
      for (const res of r.resources ?? []) {
        const calls = used.filter((p) => p.verb === verb && (r.apiGroups ?? []).includes(p.group) && resourceOf(p) === res);
        const names = r.resourceNames?.length ? r.resourceNames : [undefined];
        for (const name of names) {
          if (!calls.some((p) => name === undefined || p.name === name)) out.push(`${verb} ${res}${name ? ` "${name}"` : ''}: granted, never used`);
        }
        const objects = new Set(calls.map((p) => `${p.namespace}/${p.name}`));
        const oneObject = objects.size === 1 && calls.every((p) => p.name !== '');
        // The gateway's own objects, however many: their names are fixed, so a rule can carry them.
        const ownObjects = calls.every((p) => p.namespace === NS && OWN_SECRETS.has(p.name));
        if (!r.resourceNames?.length && verb !== 'create' && calls.length > 0 && (oneObject || ownObjects)) {
          const names = [...new Set(calls.map((p) => p.name))].sort();
          out.push(`${verb} ${res}: granted for every name, used only on ${names.map((n) => `"${n}"`).join(', ')} (add resourceNames)`);
        }
      }
    }
  }
  return out;
}

describe('the chart RBAC covers every API call the gateway makes', { skip: missingTools('helm', 'kube-apiserver', 'etcd') }, () => {
  let fx: KubeFixture;
  /** The real API server whose authorizer judges the rendered RBAC (the workload itself runs on the double, which logs every call). */
  let k: RealCluster;
  let rbac: AppliedRbac;
  /** helm's renderings: the watched namespace by name, and by glob. */
  const rendered: { byName: Manifest[]; byGlob: Manifest[] } = { byName: [], byGlob: [] };
  const tenantToken = { value: '' };
  const tenantFiles = { log: Buffer.from('tenant backup log\n'), restoreLog: Buffer.from('tenant restore log\n') };
  /** Everything the gateway's service account did, over every workload run. */
  const exercised: Permission[] = [];

  before(async () => {
    // The real API server starts while the double is set up (only RBAC is applied to it: no Velero CRDs).
    const real = (async () => {
      k = await startRealCluster({ velero: false });
      await k.namespace(NS);
      await k.namespace(TENANT);
      rbac = new AppliedRbac(k);
      const kubeVersion = await serverVersion(k);
      rendered.byName = await render(valuesFor(TENANT), { kubeVersion });
      rendered.byGlob = await render(valuesFor('team-*'), { kubeVersion });
    })();
    // A CRD with status.veleroServerURL and /status, so the DownloadRequest controller's widest path runs.
    fx = await kubeFixture({ namespaces: ['default', 'kube-system', NS, TENANT], downloadRequestCrd: { veleroServerURL: true, statusSubresource: true }, kanister: true });
    const api = fx.api;
    // The admin location opts in to gateway URLs for its DownloadRequests.
    const bsl = api.get('velero.io/v1', 'BackupStorageLocation', 'default', NS)!;
    api.put({ ...bsl, metadata: { ...bsl.metadata, annotations: { 'download-server.velero.io/enabled': 'true' } } });
    // A tenant with its own location, credential Secret, backup, restore and DownloadRequest.
    const dir = join(fx.fsRoot, 'tenant-bucket', 'backups', TENANT_BACKUP);
    await mkdir(dir, { recursive: true });
    await writeFile(join(dir, `${TENANT_BACKUP}-logs.gz`), tenantFiles.log);
    await mkdir(join(fx.fsRoot, 'tenant-bucket', 'restores', TENANT_RESTORE), { recursive: true });
    await writeFile(join(fx.fsRoot, 'tenant-bucket', 'restores', TENANT_RESTORE, `restore-${TENANT_RESTORE}-logs.gz`), tenantFiles.restoreLog);
    api.put({ apiVersion: 'v1', kind: 'Secret', metadata: { name: 'tenant-creds', namespace: TENANT }, data: { cloud: b64('[default]\naws_access_key_id=T\naws_secret_access_key=T\n') } });
    api.put(velero('BackupStorageLocation', 'default', { provider: 'replicated.com/hostpath', objectStorage: { bucket: 'tenant-bucket' }, credential: { name: 'tenant-creds', key: 'cloud' } }, TENANT));
    api.put(velero('Backup', TENANT_BACKUP, { storageLocation: 'default' }, TENANT));
    api.put(velero('Restore', TENANT_RESTORE, { backupName: TENANT_BACKUP }, TENANT));
    api.put(velero('DownloadRequest', 'team-a-dr', { target: { kind: 'BackupLog', name: TENANT_BACKUP } }, TENANT));
    tenantToken.value = api.tokens.user('tenant-user', [`${TENANT}-members`]);
    api.rbac.grant(group(`${TENANT}-members`), [{ apiGroups: ['velero.io'], resources: ['backups/log', 'restores/log', 'downloadrequests'], verbs: ['get'] }], TENANT);
    // A Kanister Profile with its credential Secret; its endpoint, the metadata address, is refused
    // only once both are read (the calls are the point here, not the bytes).
    api.put(secretOf(TENANT, 'kanister-keys', { aws_access_key_id: 'T', aws_secret_access_key: 'T' }));
    api.put(kanisterProfile(TENANT, 'objects', { location: { type: 's3Compliant', bucket: 'b', endpoint: 'https://169.254.169.254', region: 'r' }, credential: keyPairCredential('kanister-keys', 'aws_access_key_id', 'aws_secret_access_key') }));
    api.rbac.grant(group(`${TENANT}-members`), [{ apiGroups: ['cr.kanister.io'], resources: ['profiles/objects'], verbs: ['get'] }], TENANT);
    api.rbac.grant(user('alice'), [{ apiGroups: ['velero.io'], resources: ['restores/log', 'backups/volumedata'], verbs: ['get'] }], NS);
    // A file-system volume backup of BACKUP: the demo's Kopia repository in the admin location, its
    // PodVolumeBackup, and Velero's repository password Secret.
    const repo = join(fx.fsRoot, 'bsl-bucket', 'cluster-a', 'kopia', 'demo-app');
    await mkdir(repo, { recursive: true });
    await cp(fileURLToPath(new URL('../../demo/volume/repository/', import.meta.url)), repo, { recursive: true });
    const { snapshotID } = JSON.parse(await readFile(fileURLToPath(new URL('../../demo/volume/snapshot.json', import.meta.url)), 'utf8')) as { snapshotID: string };
    api.put({
      apiVersion: 'velero.io/v1', kind: 'PodVolumeBackup', metadata: { name: `${BACKUP}-web`, namespace: NS, labels: { 'velero.io/backup-name': BACKUP } },
      spec: { backupStorageLocation: 'default', pod: { kind: 'Pod', namespace: 'demo-app', name: 'web-0' }, volume: 'html', uploaderType: 'kopia' },
      status: { phase: 'Completed', snapshotID },
    });
    api.put({ apiVersion: 'v1', kind: 'Secret', metadata: { name: 'velero-repo-credentials', namespace: NS }, data: { 'repository-password': b64('static-passw0rd') } });
    // URL discovery: the gateway's own Service as a NodePort, and a node to take the address from.
    api.put({
      apiVersion: 'v1', kind: 'Service', metadata: { name: 'velero-download-server', namespace: NS },
      spec: { type: 'NodePort', ports: [{ name: 'https', port: 443, targetPort: 8443, nodePort: 30443 }] },
    });
    api.put({ apiVersion: 'v1', kind: 'Node', metadata: { name: 'node-1' }, status: { addresses: [{ type: 'InternalIP', address: '127.0.0.1' }] } });
    await real;
  });

  /** The webhook configuration as the chart renders it before the gateway's first start: no caBundle. */
  const putWebhookConfiguration = (): void => {
    fx.api.put({
      apiVersion: 'admissionregistration.k8s.io/v1', kind: 'MutatingWebhookConfiguration', metadata: { name: WEBHOOK_CONFIGURATION },
      webhooks: [{ name: 'downloadrequests.download-server.velero.io', admissionReviewVersions: ['v1'], sideEffects: 'None', clientConfig: { service: { name: 'velero-download-server', namespace: NS } } }],
    });
  };
  after(async () => {
    await fx?.close();
    await k?.close();
  });

  /** The rules the renderings give the gateway's service account, each once. */
  const renderedRules = (): PolicyRule[] => {
    const rules = [rendered.byName, rendered.byGlob].flatMap((docs) => boundRoles(docs, { namespace: NS, name: SERVICE_ACCOUNT }).flatMap((r) => r.rules));
    assert.ok(rules.length > 0, 'helm rendered RBAC for the gateway');
    return [...new Map(rules.map((r) => [JSON.stringify(r), r])).values()];
  };

  /** Downloads through every route, in the admin and the tenant namespace, through the in-process wiring. */
  async function inProcessWorkload(args: string[]): Promise<void> {
    const gw = await inProcessGateway(fx.args(...args));
    try {
      const get = (token: string, path: string) => binary(request(gw.app).get(path).set('Authorization', `Bearer ${token}`));
      const ok = async (token: string, path: string, body?: Buffer): Promise<void> => {
        const res = await get(token, path);
        assert.equal(res.status, 200, `${path}: ${String(res.body)}`);
        if (body) assert.deepEqual(res.body, body);
      };
      await ok(fx.tokens.alice, `/v1/namespaces/${NS}/backups/${BACKUP}/log`, fx.files.log);
      await ok(fx.tokens.alice, `/v1/namespaces/${NS}/restores/${RESTORE}/log`, fx.files.restoreLog);
      await ok(fx.tokens.dave, `/v1/namespaces/${NS}/downloadrequests/dr-log`, fx.files.log);
      await ok(tenantToken.value, `/v1/namespaces/${TENANT}/backups/${TENANT_BACKUP}/log`, tenantFiles.log);
      await ok(tenantToken.value, `/v1/namespaces/${TENANT}/restores/${TENANT_RESTORE}/log`, tenantFiles.restoreLog);
      await ok(tenantToken.value, `/v1/namespaces/${TENANT}/downloadrequests/team-a-dr`, tenantFiles.log);
      assert.equal((await get(fx.tokens.alice, `/v1/namespaces/${NS}/backups/missing/log`)).status, 404);
      const profile = await get(tenantToken.value, `/v1/namespaces/${TENANT}/profiles/objects/objects/x`);
      assert.equal(profile.status, 403, String(profile.body));
      assert.match(String(profile.body), /link-local|metadata/);
      // Profiles are read by the name a request gives: any name.
      assert.equal((await get(tenantToken.value, `/v1/namespaces/${TENANT}/profiles/missing/objects/x`)).status, 404);
      // Volume data: the list reads the backup's PodVolumeBackups and DataUploads, a file Velero's repository password.
      await ok(fx.tokens.alice, `/v1/namespaces/${NS}/backups/${BACKUP}/volumes`);
      const page = await get(fx.tokens.alice, `/v1/namespaces/${NS}/backups/${BACKUP}/volumes/demo-app:web-0:html/files/index.html`);
      assert.equal(page.status, 200, String(page.body));
      assert.match(String(page.body), /Hello from a Velero volume backup/);
      assert.equal((await get(fx.tokens.carol, `/v1/namespaces/${NS}/backups/${BACKUP}/log`)).status, 403);
    } finally {
      gw.factory.close();
    }
  }

  /** The same through the real process (everything the gateway process starts: certificate, CA publication, keys, controllers, webhook). */
  async function processWorkload(args: string[]): Promise<void> {
    const gw = await startGateway(fx.args(...args, '--tls-extra-sans', '127.0.0.1,localhost', '--webhook-configuration', WEBHOOK_CONFIGURATION));
    try {
      const caFile = join(fx.dir, 'gateway-ca.crt');
      const secret = fx.api.get('v1', 'Secret', CERT_SECRET, NS) as { data?: Record<string, string> } | undefined;
      const ca = secret?.data?.['ca.crt'];
      // The CA from the certificate Secret (kubernetes mode); a gateway keeping its certificate in --state-dir wrote it there.
      await writeFile(caFile, ca ? Buffer.from(ca, 'base64') : await readFile(join(fx.dir, 'state', 'tls.crt')));
      const get = async (token: string, path: string, body: Buffer): Promise<void> => {
        const r = await curl(['--cacert', caFile, '--fail', '-H', `Authorization: Bearer ${token}`, `${gw.url}${path}`]);
        assert.equal(r.code, 0, `${path}: ${r.stderr}`);
        assert.deepEqual(r.stdout, body);
      };
      await get(fx.tokens.alice, `/v1/namespaces/${NS}/backups/${BACKUP}/log`, fx.files.log);
      await get(fx.tokens.dave, `/v1/namespaces/${NS}/downloadrequests/dr-log`, fx.files.log);
      await get(tenantToken.value, `/v1/namespaces/${TENANT}/restores/${TENANT_RESTORE}/log`, tenantFiles.restoreLog);
      // What the API server sends the admission webhook when Velero writes status.downloadURL.
      const dr = fx.api.get('velero.io/v1', 'DownloadRequest', 'dr-log', NS)!;
      const review = {
        apiVersion: 'admission.k8s.io/v1', kind: 'AdmissionReview',
        request: {
          uid: 'b6a1c0de-0000-4000-8000-000000000001', kind: { group: 'velero.io', version: 'v1', kind: 'DownloadRequest' },
          resource: { group: 'velero.io', version: 'v1', resource: 'downloadrequests' }, subResource: 'status',
          namespace: NS, name: 'dr-log', operation: 'UPDATE', userInfo: { username: 'system:serviceaccount:velero:velero' },
          object: { ...dr, status: { phase: 'Processed', downloadURL: 'http://minio.velero.svc:9000/velero/x?X-Amz-Signature=s', expiration: new Date(Date.now() + 600_000).toISOString() } },
          oldObject: dr,
        },
      };
      const w = await curl(['--cacert', caFile, '-X', 'POST', '-H', 'Content-Type: application/json', '--data', JSON.stringify(review), '-w', '\n%{http_code}', `${gw.url}/admission/downloadrequests`]);
      console.log(`admission webhook answered HTTP ${w.stdout.toString().split('\n').at(-1)}`);
      // The DownloadRequest controller, when the gateway process runs it, records the gateway URL on opted-in requests.
      const deadline = Date.now() + 3_000;
      const annotated = (): boolean => fx.api.get('velero.io/v1', 'DownloadRequest', 'dr-log', NS)?.metadata?.annotations?.[URL_ANNOTATION] !== undefined;
      while (!annotated() && Date.now() < deadline) await sleep(50);
      console.log(annotated() ? 'the DownloadRequest controller annotated dr-log' : 'no DownloadRequest controller ran in the gateway process (not wired in src/compose/kubernetes.ts?)');
    } finally {
      assert.equal(await gw.stop(), 0);
    }
  }

  /**
   * What the gateway does later in its life, with the very components the gateway process runs and its service
   * account, on skewed clocks: the certificate renewed (and the CA ConfigMap updated with it), the
   * signing key's next key announced and rotated in.
   */
  async function laterWorkload(): Promise<void> {
    const kube = createKubeClients({ kubeconfig: fx.kubeconfigFile, qps: 100, burst: 100, timeoutMs: 5_000 });
    const source = await SecretCertificateSource.start(kube, { namespace: NS, extraSans: ['127.0.0.1', 'localhost'], now: () => new Date(Date.now() + 300 * 86_400_000), onError: () => {} });
    const publisher = await CaPublisher.start(kube, source, { namespace: NS, configMap: CA_CONFIGMAP, webhookConfiguration: WEBHOOK_CONFIGURATION });
    publisher.stop();
    source.stop();
    let skew = DEFAULT_ROTATE_AFTER_MS;
    const keys = new SigningKeySource(kube, { namespace: NS, now: () => Date.now() + skew });
    await keys.refresh();
    skew += 3_600_000;
    await keys.refresh();
  }

  /**
   * The catalog page's reads, made by KubeCatalog with the gateway's service account as the gateway
   * builds it (an object reader over its clients). Driven directly until the page's route is wired
   * into the gateway; then the workloads above should reach it through that route instead.
   */
  async function catalogWorkload(watch: string): Promise<void> {
    const kube = createKubeClients({ kubeconfig: fx.kubeconfigFile, qps: 100, burst: 100, timeoutMs: 5_000 });
    const catalog = new KubeCatalog(new CachedObjectReader(kube), { ownNamespace: NS, watchNamespaces: [watch] });
    const signal = AbortSignal.timeout(10_000);
    assert.deepEqual(await catalog.namespaces(signal), [TENANT, NS]);
    for (const ns of [NS, TENANT]) {
      assert.ok((await catalog.list('backups', ns, signal)).length > 0, `backups in ${ns}`);
      assert.ok((await catalog.list('restores', ns, signal)).length > 0, `restores in ${ns}`);
    }
  }

  async function run(watch: string): Promise<Permission[]> {
    fx.api.calls.clear();
    // Reset what a previous run created, so this run's start creates and reads it again.
    for (const name of [CERT_SECRET, SIGNING_KEY_SECRET]) fx.api.remove('v1', 'Secret', name, NS);
    fx.api.remove('v1', 'ConfigMap', CA_CONFIGMAP, NS);
    putWebhookConfiguration();
    for (const [ns, name] of [[NS, 'dr-log'], [TENANT, 'team-a-dr']] as const) {
      const dr = fx.api.get('velero.io/v1', 'DownloadRequest', name, ns)!;
      fx.api.put({ ...dr, metadata: { name, namespace: ns }, status: {} });
    }
    const args = ['--watch-namespaces', watch, '--tenant-filesystem-allow', `${TENANT}=tenant-bucket`];
    await inProcessWorkload(args);
    await processWorkload(args);
    await laterWorkload();
    await catalogWorkload(watch);
    const used = fx.api.calls.permissions({ user: GATEWAY_USER });
    exercised.push(...used);
    return used;
  }

  /** Sanity: a workload that made none of these calls proves nothing. */
  function assertRepresentative(used: Permission[]): void {
    const has = (verb: string, resource: string, namespace?: string): boolean =>
      used.some((p) => p.verb === verb && p.resource === resource && (namespace === undefined || p.namespace === namespace));
    assert.ok(has('create', 'tokenreviews'), 'TokenReviews were made');
    assert.ok(has('create', 'subjectaccessreviews'), 'SubjectAccessReviews were made');
    for (const r of ['backups', 'restores', 'downloadrequests', 'backupstoragelocations']) assert.ok(has('get', r, TENANT), `get ${r} in the tenant namespace`);
    assert.ok(has('get', 'secrets', TENANT), 'the tenant credential Secret was read');
    for (const r of ['backups', 'restores']) assert.ok(has('list', r, TENANT), `list ${r} in the tenant namespace (the catalog)`);
    assert.ok(has('get', 'profiles', TENANT), 'a Kanister Profile was read');
    for (const [what, resource, name] of [
      ['the certificate renewed', 'secrets', CERT_SECRET],
      ['the signing key rotated', 'secrets', SIGNING_KEY_SECRET],
      ['the CA ConfigMap updated', 'configmaps', CA_CONFIGMAP],
    ] as const) {
      assert.ok(used.some((p) => p.verb === 'update' && p.resource === resource && p.name === name), what);
    }
    assert.ok(used.some((p) => p.verb === 'patch' && p.resource === 'mutatingwebhookconfigurations' && p.name === WEBHOOK_CONFIGURATION), 'the webhook\'s caBundle patched');
    for (const verb of ['get', 'watch']) {
      assert.ok(used.some((p) => p.verb === verb && p.resource === 'secrets' && p.namespace === NS && p.name === ACCESS_USERS_SECRET), `${verb} on the access users' Secret`);
    }
    const caBundle = (fx.api.get('admissionregistration.k8s.io/v1', 'MutatingWebhookConfiguration', WEBHOOK_CONFIGURATION)?.webhooks as { clientConfig: { caBundle?: string } }[])[0]?.clientConfig.caBundle;
    const secretCa = (fx.api.get('v1', 'Secret', CERT_SECRET, NS)?.data as Record<string, string>)['ca.crt'];
    assert.equal(caBundle, secretCa, 'the webhook\'s caBundle is the Secret\'s ca.crt');
  }

  test('watched namespaces by name: Roles per namespace grant every call', async () => {
    const used = await run(TENANT);
    console.log(`calls of ${GATEWAY_USER}:\n  ${used.map(describePermission).join('\n  ')}`);
    assertRepresentative(used);
    await rbac.use(rendered.byName);
    assert.deepEqual(await ungranted(k, used), [], 'API calls the chart grants no rule for (add them to charts/velero-download-server/files/rules.yaml)');
  });

  test('watched namespaces by glob: the cluster-wide watched rules grant every call', async () => {
    const used = await run('team-*');
    assertRepresentative(used);
    await rbac.use(rendered.byGlob);
    assert.deepEqual(await ungranted(k, used), [], 'API calls the chart grants no rule for (add them to charts/velero-download-server/files/rules.yaml)');
  });

  test('no rule is wider than the calls need', async () => {
    const findings = widerThanNeeded(renderedRules(), exercised);
    assert.deepEqual(findings, [], 'rules wider than the gateway\'s calls (narrow them in charts/velero-download-server/files/rules.yaml)');
  });

  test('the width check fails for a rule wider than needed', () => {
    const wide: PolicyRule[] = [
      ...renderedRules(),
      // What the chart granted before: Secrets listed and watched in every watched namespace,
      { apiGroups: [''], resources: ['secrets'], verbs: ['get', 'list', 'watch'] },
      // patch on the two Secrets, and its own Service readable by any name.
      { apiGroups: [''], resources: ['secrets'], resourceNames: [CERT_SECRET, SIGNING_KEY_SECRET], verbs: ['patch'] },
      { apiGroups: [''], resources: ['services'], verbs: ['list'] },
    ];
    const findings = widerThanNeeded(wide, exercised);
    for (const expected of [
      'list secrets: granted, never used',
      `watch secrets: granted for every name, used only on "${CERT_SECRET}", "${ACCESS_USERS_SECRET}" (add resourceNames)`,
      `patch secrets "${CERT_SECRET}": granted, never used`,
      'list services: granted for every name, used only on "velero-download-server" (add resourceNames)',
    ]) {
      assert.ok(findings.includes(expected), `${expected} in:\n${findings.join('\n')}`);
    }
  });

  test('the check fails for a call no rule grants', async () => {
    const extra: Permission[] = [
      { verb: 'delete', group: '', resource: 'secrets', subresource: '', namespace: NS, name: CERT_SECRET },
      { verb: 'update', group: '', resource: 'secrets', subresource: '', namespace: NS, name: 'cloud-credentials' },
      { verb: 'get', group: 'velero.io', resource: 'backups', subresource: '', namespace: 'team-b', name: 'x' },
      { verb: 'list', group: '', resource: 'services', subresource: '', namespace: '', name: '' },
    ];
    await rbac.use(rendered.byName);
    // Every one is refused, while a call of the workload is allowed: the refusals are the rules', not a broken check.
    assert.deepEqual(await ungranted(k, extra), extra.map(describePermission));
    assert.deepEqual(await ungranted(k, exercised.slice(0, 1)), []);
  });
});
