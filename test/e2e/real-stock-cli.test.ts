/**
 * The stock velero CLI's path against the real kube-apiserver, the real gateway process and the
 * chart as the real helm renders it: nothing here plays the API server.
 *
 * - The chart's RBAC (rules.yaml), service account, user ClusterRoles, ValidatingAdmissionPolicy and
 *   MutatingWebhookConfiguration are rendered by helm and applied; the webhook's clientConfig is the
 *   gateway's webhook listener on loopback (no kubelet or kube-proxy here: Services do not route),
 *   and the gateway fills in its caBundle itself.
 * - The gateway runs with a TokenRequest token of the chart's service account and nothing else; the
 *   API server's audit log shows every call it made, and none may have been refused.
 * - Users are the API server's static tokens, bound to the chart's user roles; Velero's controller is
 *   played by its service account patching status on the main resource (the CRD has no status
 *   subresource); the CLI's download is the real curl with only --cacert.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { after, before, describe, test } from 'node:test';
import { gunzipSync, gzipSync } from 'node:zlib';
import { parseAllDocuments } from 'yaml';
import { REQUESTER_ANNOTATIONS, encodeRequester } from '../../src/velero/downloadrequests.ts';
import type { Requester } from '../../src/velero/downloadrequests.ts';
import { patchOf, review } from '../support/admission.ts';
import type { ReviewResponse } from '../support/admission.ts';
import { curl, freePort, startGateway } from '../support/processes.ts';
import type { GatewayProcess } from '../support/processes.ts';
import { missingTools, startRealCluster, toolPath } from '../support/real-cluster.ts';
import type { AuditEvent, RealCluster, RestOptions, RestResult } from '../support/real-cluster.ts';

const CHART = fileURLToPath(new URL('../../charts/velero-download-server', import.meta.url));
const NS = 'velero';
const RELEASE = 'velero-download-server';
/** The chart's service account (its fullname) and the user the API server sees. */
const GATEWAY_SA = RELEASE;
const GATEWAY_USER = `system:serviceaccount:${NS}:${GATEWAY_SA}`;
const VELERO_USER = 'system:serviceaccount:velero:velero';
/** The chart's cluster-scoped names (<namespace>-<fullname>): ClusterRoles, the webhook configuration. */
const CLUSTER_NAME = `${NS}-${RELEASE}`;
const BACKUP = 'nightly';
const DRS = `/apis/velero.io/v1/namespaces/${NS}/downloadrequests`;
const MERGE = 'application/merge-patch+json';
const POLICY_DENIED = /ValidatingAdmissionPolicy .* denied request/;
/** erin is admin impersonating a user whose groups and extra hold every separator of the record's encoding. */
const ERIN = {
  username: 'erin',
  uid: 'erin-uid',
  groups: ['ops,eu', 'team=a', '100%', 'system:authenticated'],
  extra: { 'example.com/reason': ['on-call,eu', 'x=y'] },
};
const erin: RestOptions = {
  headers: {
    'Impersonate-User': ERIN.username,
    'Impersonate-Uid': ERIN.uid,
    // The API server adds system:authenticated itself.
    'Impersonate-Group': ERIN.groups.slice(0, -1),
    'Impersonate-Extra-example.com%2freason': ERIN.extra['example.com/reason'],
  },
};

type Obj = { apiVersion: string; kind: string; metadata: { name: string; namespace?: string; uid?: string; annotations?: Record<string, string>; labels?: Record<string, string> }; [k: string]: unknown };
type DownloadRequest = Obj & { spec: { target: { kind: string; name: string } }; status?: { phase?: string; downloadURL?: string; expiration?: string } };
type Status = { kind: string; reason?: string; message: string; code: number };

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function until<T>(what: string, probe: () => Promise<T | undefined>, timeoutMs = 20_000, intervalMs = 100): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await probe();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(intervalMs);
  }
}

/** The chart's templates, rendered by the real helm for this release (as `helm install` would). */
async function helmTemplate(kubeVersion: string, templates: string[], set: string[]): Promise<Obj[]> {
  const { stdout } = await promisify(execFile)(
    toolPath('helm')!,
    ['template', RELEASE, CHART, '--namespace', NS, '--kube-version', kubeVersion, ...set.flatMap((s) => ['--set', s]), ...templates.flatMap((t) => ['--show-only', `templates/${t}`])],
    { maxBuffer: 16 * 1024 * 1024 },
  );
  return parseAllDocuments(stdout).map((d) => d.toJS() as Obj | null).filter((d): d is Obj => d !== null);
}

const subject = (kind: 'User' | 'Group', name: string) => ({ kind, apiGroup: 'rbac.authorization.k8s.io', name });
const velero = (namespace: string, kind: string, name: string, spec: object, annotations?: Record<string, string>): Obj => ({
  apiVersion: 'velero.io/v1',
  kind,
  metadata: { name, namespace, ...(annotations && { annotations }) },
  spec,
});
/** A requester record as the webhook writes it, with a signature the gateway never made. */
function unsignedRecord(user: Requester): Record<string, string> {
  const f = encodeRequester(user)!;
  return {
    [REQUESTER_ANNOTATIONS.user]: f.user,
    [REQUESTER_ANNOTATIONS.uid]: f.uid,
    [REQUESTER_ANNOTATIONS.groups]: f.groups,
    [REQUESTER_ANNOTATIONS.extra]: f.extra,
    [REQUESTER_ANNOTATIONS.record]: `${Math.floor(Date.now() / 1000)}.${'A'.repeat(43)}`,
  };
}

/** One request per rule of the chart's Roles and ClusterRoles bound to the gateway's service account that a SubjectAccessReview does not allow yet. */
async function ungranted(k: RealCluster, chart: Obj[]): Promise<string[]> {
  type Rule = { apiGroups: string[]; resources: string[]; verbs: string[]; resourceNames?: string[] };
  type Binding = Obj & { roleRef: { kind: string; name: string }; subjects: { kind: string; name: string; namespace?: string }[] };
  const bindings = chart.filter((d): d is Binding => d.kind.endsWith('Binding') && d.kind !== 'ValidatingAdmissionPolicyBinding');
  const mine = bindings.filter((b) => b.subjects.some((x) => x.kind === 'ServiceAccount' && x.name === GATEWAY_SA && x.namespace === NS));
  assert.ok(mine.length > 0, 'the chart binds roles to its service account');
  const out: string[] = [];
  for (const b of mine) {
    const role = chart.find((d) => d.kind === b.roleRef.kind && d.metadata.name === b.roleRef.name) as (Obj & { rules: Rule[] }) | undefined;
    assert.ok(role, `${b.kind} ${b.metadata.name} refers to a rendered ${b.roleRef.kind}`);
    for (const rule of role.rules) {
      const [resource, subresource] = rule.resources[0]!.split('/');
      const attrs = { verb: rule.verbs[0], group: rule.apiGroups[0], resource, subresource, name: rule.resourceNames?.[0], namespace: b.kind === 'RoleBinding' ? b.metadata.namespace : undefined };
      const r = await k.rest<{ status: { allowed: boolean } }>('POST', '/apis/authorization.k8s.io/v1/subjectaccessreviews', {
        apiVersion: 'authorization.k8s.io/v1',
        kind: 'SubjectAccessReview',
        spec: { user: GATEWAY_USER, groups: ['system:serviceaccounts', `system:serviceaccounts:${NS}`, 'system:authenticated'], resourceAttributes: attrs },
      });
      if (!r.body.status.allowed) out.push(JSON.stringify(attrs));
    }
  }
  return out;
}

const as = (token: string): RestOptions => ({ token });
const statusOf = (body: Buffer): Status => JSON.parse(body.toString()) as Status;

interface InstallOptions {
  /** Where the DownloadRequests, the Backup and its location live, and the users' bindings. */
  namespace: string;
  /** configuration.watchNamespaces (--watch-namespaces). */
  watch?: string[];
  /**
   * --fqdn 127.0.0.1:<port> (default); false: no fqdn, the chart's Services applied, and the gateway
   * finds its URL from its Service (cluster DNS name), which curl reaches with --connect-to.
   */
  fqdn?: boolean;
}

type Tokens = Record<'alice' | 'bob' | 'carol' | 'dave' | 'velero' | 'creator', string>;

/**
 * One installation: a real API server (audited), the chart's objects as helm renders them, Velero's
 * objects and a backup's files in `namespace`, users bound to the chart's roles, and the real gateway
 * running as the chart's service account; returned once the API server calls the webhook and
 * enforces the policy. Its methods are the REST calls of users, the CLI and Velero.
 */
async function install(opts: InstallOptions) {
  const { namespace } = opts;
  const drs = `/apis/velero.io/v1/namespaces/${namespace}/downloadrequests`;
  const tenant = namespace !== NS;
  const fqdn = opts.fqdn ?? true;
  const k = await startRealCluster({ audit: true });
  let gw: GatewayProcess | undefined;
  const dir = await mkdtemp(join(tmpdir(), 'vds-real-stock-cli-'));
  const close = async (): Promise<void> => {
    await gw?.stop();
    await k.close();
    await rm(dir, { recursive: true, force: true });
  };
  try {
    const kubeVersion = (await k.rest<{ gitVersion: string }>('GET', '/version')).body.gitVersion;
    if (tenant) await k.namespace(namespace);

    // The backup's files, where a hostpath BSL keeps them.
    const fsRoot = join(dir, 'mnt');
    const bucket = `${namespace}-backups`;
    const backupDir = join(fsRoot, bucket, 'cluster-a', 'backups', BACKUP);
    await mkdir(backupDir, { recursive: true });
    const logText = `time="2026-12-05T10:00:00Z" level=info msg="Backup completed" backup=${namespace}/${BACKUP}\n`.repeat(50);
    const files = { logText, log: gzipSync(logText), contents: gzipSync(Buffer.from(randomUUID().repeat(8000))) };
    await writeFile(join(backupDir, `${BACKUP}-logs.gz`), files.log);
    await writeFile(join(backupDir, `${BACKUP}.tar.gz`), files.contents);

    // The chart, as helm renders it for release velero-download-server in velero, webhook on.
    const [port, webhookPort] = [await freePort(), await freePort()];
    const webhookUrl = `https://127.0.0.1:${webhookPort}/admission/downloadrequests`;
    const chart = await helmTemplate(
      kubeVersion,
      ['serviceaccount.yaml', 'rbac.yaml', 'userroles.yaml', 'validatingadmissionpolicy.yaml', 'mutatingwebhookconfiguration.yaml', ...(fqdn ? [] : ['service.yaml'])],
      [
        'admissionWebhook.enabled=true',
        `admissionWebhook.veleroServiceAccount.namespace=${NS}`,
        'admissionWebhook.veleroServiceAccount.name=velero',
        ...(opts.watch ? [`configuration.watchNamespaces={${opts.watch.join(',')}}`] : []),
      ],
    );
    for (const doc of chart) {
      if (doc.kind !== 'MutatingWebhookConfiguration') continue;
      // As rendered, but called at the gateway's loopback listener: Services do not route here.
      for (const w of doc.webhooks as { clientConfig: object }[]) w.clientConfig = { url: webhookUrl };
    }
    const policy = chart.find((d) => d.kind === 'ValidatingAdmissionPolicy');
    assert.ok(JSON.stringify(policy).includes(GATEWAY_USER), 'the policy lets the gateway\'s service account write');
    await k.apply(...chart);
    // The RBAC authorizer reads bindings from its informers: wait until every rule the chart grants
    // the gateway is in force, as it is by the time a pod starts, so that a refusal later is a
    // missing rule and not a race.
    await until('the chart\'s RBAC in force', async () => ((await ungranted(k, chart)).length === 0 ? true : undefined));

    // Velero and the users. Velero's server has cluster-admin in a real install; its DownloadRequest
    // work needs no more than this.
    const role = (name: string, resources: string[], verbs: string[]): Obj => ({
      apiVersion: 'rbac.authorization.k8s.io/v1',
      kind: 'Role',
      metadata: { name, namespace },
      rules: [{ apiGroups: ['velero.io'], resources, verbs }],
    });
    const chartRole = (suffix: string) => ({ kind: 'ClusterRole' as const, name: `${CLUSTER_NAME}-${suffix}` });
    const bind = (name: string, roleRef: { kind: 'ClusterRole' | 'Role'; name: string }, subjects: object[]): Obj => ({
      apiVersion: 'rbac.authorization.k8s.io/v1',
      kind: 'RoleBinding',
      metadata: { name, namespace },
      roleRef: { apiGroup: 'rbac.authorization.k8s.io', ...roleRef },
      subjects,
    });
    await k.apply(
      velero(namespace, 'BackupStorageLocation', 'default', {
        provider: 'replicated.com/hostpath',
        objectStorage: { bucket, prefix: 'cluster-a' },
        // A tenant's location carries its own credential, never the gateway's.
        ...(tenant && { credential: { name: 'store', key: 'cloud' } }),
      }, { 'download-server.velero.io/enabled': 'true' }),
      velero(namespace, 'Backup', BACKUP, { storageLocation: 'default' }),
      ...(tenant ? [{ apiVersion: 'v1', kind: 'Secret', metadata: { name: 'store', namespace }, stringData: { cloud: 'unused by a filesystem store' } }] : []),
      role('velero-server', ['downloadrequests'], ['get', 'list', 'watch', 'update', 'patch', 'delete']),
      // What the built-in `edit` role grants on DownloadRequests: the policy, not RBAC, must stop them.
      role('downloadrequest-editors', ['downloadrequests'], ['update', 'patch']),
      bind('velero-server', { kind: 'Role', name: 'velero-server' }, [{ kind: 'ServiceAccount', name: 'velero', namespace: NS }]),
      bind('editors', { kind: 'Role', name: 'downloadrequest-editors' }, [subject('User', 'alice'), subject('User', 'bob')]),
      bind('stock-cli', chartRole('stock-cli'), [...['alice', 'bob', 'carol', 'erin'].map((u) => subject('User', u)), subject('Group', 'backup-readers'), { kind: 'ServiceAccount', name: 'creator', namespace: NS }]),
      bind('artifacts', chartRole('artifacts'), [subject('User', 'alice')]),
      bind('contents', chartRole('contents'), [subject('User', 'alice')]),
      // bob, dave (through his group only) and erin (through a group with a comma in its name): logs, never the contents.
      bind('logs', chartRole('logs'), [subject('User', 'bob'), subject('Group', 'backup-readers'), subject('Group', 'ops,eu')]),
    );
    const tokens: Tokens = {
      alice: k.tokens.alice!,
      bob: k.tokens.bob!,
      carol: k.tokens.carol!,
      dave: k.tokens.dave!,
      velero: k.tokens[VELERO_USER]!,
      creator: await k.serviceAccountToken(NS, 'creator'),
    };

    // The gateway, with the flags the chart's Deployment gives it, and the chart service account's token only.
    const kubeconfig = await k.kubeconfig(await k.serviceAccountToken(NS, GATEWAY_SA), 'gateway');
    gw = await startGateway([
      '--mode', 'kubernetes', '--kubeconfig', kubeconfig, '--namespace', NS, '--state-dir', join(dir, 'state'), '--fs-root', fsRoot,
      '--listen', `127.0.0.1:${port}`, ...(fqdn ? ['--fqdn', `127.0.0.1:${port}`] : []), '--webhook-listen', `127.0.0.1:${webhookPort}`,
      '--service-name', RELEASE, '--webhook-service-name', `${RELEASE}-webhook`, '--tls-secret', 'velero-download-server-certs',
      '--ca-configmap', 'velero-download-server-ca', '--webhook-configuration', CLUSTER_NAME, '--tls-extra-sans', '127.0.0.1,localhost',
      ...(opts.watch ? ['--watch-namespaces', opts.watch.join(',')] : []),
      ...(tenant ? ['--tenant-filesystem-allow', `${namespace}=${bucket}`] : []),
    ]);
    const gateway = gw;
    const gatewayBase = String(gateway.logs.find((l) => l.msg === 'gateway URL')?.url);
    assert.equal(gatewayBase, fqdn ? `https://127.0.0.1:${port}` : `https://${RELEASE}.${NS}.svc`);
    // Without a kube-proxy, the Service's name is reached on the gateway's port.
    const connectTo = fqdn ? [] : ['--connect-to', `${RELEASE}.${NS}.svc:443:127.0.0.1:${port}`];

    const create = (who: RestOptions, name: string, kind: string, extra: { annotations?: Record<string, string>; status?: object; generateName?: boolean } = {}) =>
      k.rest<DownloadRequest & Status>(
        'POST',
        drs,
        {
          apiVersion: 'velero.io/v1',
          kind: 'DownloadRequest',
          metadata: { ...(extra.generateName ? { generateName: name } : { name }), ...(extra.annotations && { annotations: extra.annotations }) },
          spec: { target: { kind, name: BACKUP } },
          ...(extra.status && { status: extra.status }),
        },
        who,
      );
    const patch = (who: RestOptions, name: string, body: object) => k.rest<DownloadRequest & Status>('PATCH', `${drs}/${name}`, body, { ...who, contentType: MERGE });
    const read = async (name: string): Promise<DownloadRequest> => (await k.rest<DownloadRequest>('GET', `${drs}/${name}`)).body;
    /** Velero's DownloadRequest controller: a merge patch of status on the main resource, as Velero's service account. */
    const veleroProcesses = (name: string, storeUrl = `http://minio.velero.svc:9000/${bucket}/cluster-a/backups/${BACKUP}/${BACKUP}-logs.gz?X-Amz-Signature=abc`) =>
      patch({ token: tokens.velero }, name, { status: { phase: 'Processed', downloadURL: storeUrl, expiration: new Date(Date.now() + 600_000).toISOString() } });
    const webhookConfiguration = () =>
      k.rest<{ webhooks: { clientConfig: { url?: string; caBundle?: string } }[] }>('GET', `/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/${CLUSTER_NAME}`);
    /** Whether the API server currently sends DownloadRequest CREATEs to the gateway: a probe by alice. */
    const webhookCalled = async (): Promise<boolean> => {
      const name = `probe-${randomUUID().slice(0, 8)}`;
      const r = await create(as(tokens.alice), name, 'BackupLog');
      assert.equal(r.status, 201, JSON.stringify(r.body));
      await k.rest('DELETE', `${drs}/${name}`);
      return r.body.metadata.annotations?.[REQUESTER_ANNOTATIONS.user] === 'alice';
    };

    // The CA a user trusts: the ConfigMap the gateway publishes.
    const cm = await until('the CA ConfigMap', async () => (await k.rest<{ data?: { 'ca.crt'?: string } }>('GET', `/api/v1/namespaces/${NS}/configmaps/velero-download-server-ca`)).body.data?.['ca.crt']);
    const caFile = join(dir, 'ca.crt');
    await writeFile(caFile, cm);
    // The gateway fills in the webhook's caBundle; then the API server's admission picks it up.
    await until('the caBundle', async () => (await webhookConfiguration()).body.webhooks[0]?.clientConfig.caBundle);
    await until('the API server calling the webhook', async () => ((await webhookCalled()) ? true : undefined));
    // The policy binding is enforced once the policy is compiled: a URL set at creation is refused.
    await until('the policy enforced', async () => {
      const name = `probe-${randomUUID().slice(0, 8)}`;
      const r = await create(as(tokens.alice), name, 'BackupLog', { status: { downloadURL: 'https://elsewhere/x' } });
      if (r.status === 201) await k.rest('DELETE', `${drs}/${name}`);
      return r.status === 403 ? true : undefined;
    });

    return {
      k,
      gw: gateway,
      namespace,
      files,
      tokens,
      caFile,
      webhookUrl,
      gatewayBase,
      close,
      create,
      patch,
      read,
      veleroProcesses,
      webhookConfiguration,
      webhookCalled,
      /** The gateway URL its DownloadRequest controller records on a request, once it has. */
      urlAnnotation: (name: string): Promise<string> => until(`the URL annotation of ${name}`, async () => (await read(name)).metadata.annotations?.['download-server.velero.io/url']),
      /** A DownloadRequest created by `who` and processed by Velero: the stored gateway URL. */
      async processed(who: RestOptions, kind: string, name = `${kind.toLowerCase()}-${randomUUID().slice(0, 8)}`): Promise<{ name: string; url: string }> {
        const made = await create(who, name, kind);
        assert.equal(made.status, 201, JSON.stringify(made.body));
        const done = await veleroProcesses(name);
        assert.equal(done.status, 200, JSON.stringify(done.body));
        const url = (await read(name)).status?.downloadURL ?? '';
        assert.ok(url.startsWith(`${gatewayBase}/v1/namespaces/${namespace}/downloadrequests/${name}?`), `a gateway URL: ${url}`);
        return { name, url };
      },
      /** The CLI's GET: only --cacert, no token. */
      async download(url: string): Promise<{ code: number; body: Buffer }> {
        const out = join(dir, `download-${randomUUID()}`);
        const r = await curl(['--cacert', caFile, ...connectTo, '-o', out, '-w', '%{http_code}', url]);
        assert.equal(r.code, 0, r.stderr);
        const body = await readFile(out);
        await rm(out);
        return { code: Number(r.stdout.toString()), body };
      },
      /**
       * Checks that the API server refused none of the gateway's calls (its audit log), nor did the
       * gateway log a refusal; returns the calls it made ("verb resource[/subresource]").
       */
      async gatewayCalls(): Promise<Set<string>> {
        // The log is written as each request completes: once a marker request is in it, so are the
        // gateway's calls, which completed before.
        const marker = `/api/v1/namespaces/${NS}/configmaps/audit-marker-${randomUUID()}`;
        await k.rest('GET', marker);
        const events = await until('the audit marker', async () => {
          const all = await k.auditEvents();
          return all.some((e) => e.requestURI === marker) ? all : undefined;
        });
        const mine = events.filter((e: AuditEvent) => e.user.username === GATEWAY_USER);
        const refused = mine.filter((e) => e.responseStatus?.code === 403);
        assert.deepEqual(refused.map((e) => `${e.verb} ${e.requestURI}: ${e.responseStatus?.message ?? ''}`), []);
        // Nor did the gateway report a refusal (its warnings carry the API server's answer).
        const warnings = gateway.logs.filter((l) => l.level === 'warn' || l.level === 'error');
        assert.deepEqual(warnings.filter((l) => /forbidden|HTTP 403/i.test(JSON.stringify(l))), []);
        return new Set(mine.map((e) => `${e.verb} ${e.objectRef?.resource ?? e.requestURI}${e.objectRef?.subresource ? `/${e.objectRef.subresource}` : ''}`));
      },
    };
  } catch (err) {
    await close();
    throw err;
  }
}
type Installation = Awaited<ReturnType<typeof install>>;

describe('the stock velero CLI through a real kube-apiserver, the real gateway and the chart as helm renders it', { skip: missingTools('kube-apiserver', 'etcd', 'helm') }, () => {
  let x: Installation;
  before(async () => (x = await install({ namespace: NS })));
  after(() => x?.close());

  const create: Installation['create'] = (...a) => x.create(...a);
  const patch: Installation['patch'] = (...a) => x.patch(...a);
  const read: Installation['read'] = (name) => x.read(name);
  const veleroProcesses: Installation['veleroProcesses'] = (...a) => x.veleroProcesses(...a);
  const processed: Installation['processed'] = (...a) => x.processed(...a);
  const download: Installation['download'] = (url) => x.download(url);
  const webhookCalled: Installation['webhookCalled'] = () => x.webhookCalled();
  const webhookConfiguration: Installation['webhookConfiguration'] = () => x.webhookConfiguration();

  test('alice creates a DownloadRequest: the API server calls the webhook and stores her requester record', async () => {
    const name = `alice-${randomUUID().slice(0, 8)}`;
    const r = await create(as(x.tokens.alice), name, 'BackupLog');
    assert.equal(r.status, 201);
    const a = (await read(name)).metadata.annotations ?? {};
    assert.equal(a[REQUESTER_ANNOTATIONS.user], 'alice');
    assert.equal(a[REQUESTER_ANNOTATIONS.uid], 'alice-uid');
    assert.equal(a[REQUESTER_ANNOTATIONS.groups], 'system:authenticated');
    assert.equal(a[REQUESTER_ANNOTATIONS.extra], '');
    assert.match(a[REQUESTER_ANNOTATIONS.record] ?? '', /^\d+\.[A-Za-z0-9_-]{43}$/);
    // The gateway's DownloadRequest controller sees it through its watch and records its URL.
    assert.equal(await x.urlAnnotation(name), `${x.gatewayBase}/v1/namespaces/${NS}/downloadrequests/${name}`);
    // The API server's own account of it: the chart's webhook mutated the create.
    const event = await until('the audit event of the create', async () =>
      (await x.k.auditEvents()).find((e) => e.verb === 'create' && e.objectRef?.name === name && e.stage === 'ResponseComplete'),
    );
    const mutation = Object.entries(event.annotations ?? {}).find(([key]) => key.startsWith('mutation.webhook.admission.k8s.io/'))?.[1];
    assert.ok(mutation, JSON.stringify(event.annotations));
    assert.deepEqual(JSON.parse(mutation) as object, { configuration: CLUSTER_NAME, webhook: 'downloadrequests.download-server.velero.io', mutated: true });
  });

  test('the stock CLI: it polls `get` every 25 ms while Velero patches status; it only ever sees the gateway URL, and curl with only --cacert gets the log', async () => {
    const name = `${BACKUP}-${randomUUID().slice(0, 8)}`;
    assert.equal((await create(as(x.tokens.alice), name, 'BackupLog')).status, 201);
    const seen: string[] = [];
    const polling = until(
      'status.downloadURL',
      async () => {
        const r = await x.k.rest<DownloadRequest>('GET', `${DRS}/${name}`, undefined, as(x.tokens.alice));
        assert.equal(r.status, 200, 'the chart\'s stock-cli role lets her get it');
        const url = r.body.status?.downloadURL;
        if (url) seen.push(url);
        return url;
      },
      10_000,
      25,
    );
    await sleep(150);
    const velero = await veleroProcesses(name);
    assert.equal(velero.status, 200, JSON.stringify(velero.body));
    const url = await polling;
    assert.deepEqual([...new Set(seen)], [url], 'the store URL was never stored');
    assert.equal(velero.body.status?.downloadURL, url, 'the API server answered Velero with the mutated object');
    const stored = await read(name);
    const expires = Math.floor(Date.parse(stored.status!.expiration!) / 1000);
    const u = new URL(url);
    assert.equal(u.origin, x.gatewayBase);
    assert.equal(u.pathname, `/v1/namespaces/${NS}/downloadrequests/${name}`);
    assert.equal(u.searchParams.get('uid'), stored.metadata.uid);
    assert.equal(u.searchParams.get('kind'), 'BackupLog');
    assert.equal(u.searchParams.get('target'), BACKUP);
    assert.equal(Number(u.searchParams.get('expires')), expires, 'the URL expires with the DownloadRequest');
    const logged = x.gw.logs.length;
    const got = await download(url);
    assert.equal(got.code, 200, got.body.toString());
    assert.deepEqual(got.body, x.files.log);
    assert.equal(gunzipSync(got.body).toString(), x.files.logText);
    // The same signature on another request's path is refused.
    const elsewhere = await download(url.replace(`/downloadrequests/${name}?`, '/downloadrequests/other?'));
    assert.equal(elsewhere.code, 403);

    // The audit trail: who asked, what was minted for whom, who downloaded (the recorded requester).
    const audits = x.gw.logs.filter((l) => typeof l.audit === 'string');
    const recorded = audits.find((l) => l.audit === 'downloadrequest-recorded' && l.downloadRequest === `${NS}/${name}`);
    assert.equal(recorded?.user, 'alice');
    const minted = audits.find((l) => l.audit === 'signed-url-minted' && l.downloadRequest === `${NS}/${name}`);
    assert.equal(minted?.user, 'alice');
    assert.equal(minted.target, `backups/${BACKUP}/log`);
    assert.equal(minted.expires, new Date(expires * 1000).toISOString());
    const downloaded = await until('the download audit line', async () => x.gw.logs.slice(logged).find((l) => l.audit === 'download' && l.status === 200));
    assert.equal(downloaded.via, 'signed-url');
    assert.equal(downloaded.target, `backups/${BACKUP}`);
    assert.equal(downloaded.artifact, 'log');
    assert.equal(downloaded.user, 'alice', 'the recorded requester, not a synthetic user');
    assert.deepEqual(downloaded.groups, ['system:authenticated']);
    assert.equal(downloaded.remote, '127.0.0.1');
  });

  test('the chart\'s policy in the API server: a user who may update DownloadRequests cannot touch the record or the URL; Velero can', async () => {
    const name = `edit-${randomUUID().slice(0, 8)}`;
    assert.equal((await create(as(x.tokens.alice), name, 'BackupLog')).status, 201);
    const refused = async (what: string, r: Promise<RestResult<DownloadRequest & Status>>): Promise<void> => {
      const res = await r;
      assert.equal(res.status, 403, `${what}: ${JSON.stringify(res.body)}`);
      assert.match(res.body.message, POLICY_DENIED, `${what}: refused by the policy, not by RBAC`);
    };
    assert.equal((await patch(as(x.tokens.alice), name, { metadata: { labels: { team: 'a' } } })).status, 200, 'other edits go through');
    await refused('alice rewrites the record', patch(as(x.tokens.alice), name, { metadata: { annotations: { [REQUESTER_ANNOTATIONS.user]: 'bob' } } }));
    await refused('alice removes the record', patch(as(x.tokens.alice), name, { metadata: { annotations: { [REQUESTER_ANNOTATIONS.record]: null } } }));
    await refused('alice widens her groups', patch(as(x.tokens.alice), name, { metadata: { annotations: { [REQUESTER_ANNOTATIONS.groups]: 'system:masters' } } }));
    await refused('alice writes status.downloadURL', patch(as(x.tokens.alice), name, { status: { downloadURL: 'https://evil.example/x' } }));
    await refused('bob writes status.downloadURL of her request', patch(as(x.tokens.bob), name, { status: { downloadURL: 'https://evil.example/x' } }));
    assert.equal((await veleroProcesses(name)).status, 200, 'Velero writes status');
    const url = (await read(name)).status?.downloadURL;
    assert.ok(url?.startsWith(x.gatewayBase), url);
    // Her overwrite is an UPDATE like Velero's: the webhook swaps in the gateway URL for this request,
    // the very one stored (same expiration), so the write goes through and changes nothing.
    const overwrite = await patch(as(x.tokens.alice), name, { status: { downloadURL: 'https://evil.example/y' } });
    assert.equal(overwrite.status, 200, JSON.stringify(overwrite.body));
    assert.equal(overwrite.body.status?.downloadURL, url);
    await refused('alice clears it', patch(as(x.tokens.alice), name, { status: { downloadURL: null } }));
    const after = await read(name);
    assert.equal(after.status?.downloadURL, url);
    assert.equal(after.metadata.annotations?.[REQUESTER_ANNOTATIONS.user], 'alice');
    await refused('a URL set at creation', create(as(x.tokens.alice), `url-${randomUUID().slice(0, 8)}`, 'BackupLog', { status: { downloadURL: 'https://evil.example/x' } }));
  });

  test('on CREATE the record always names the creator: the webhook replaces a forged one, the policy refuses one the webhook cannot see', async () => {
    // With a name, the webhook rewrites the record keys with the real requester.
    const name = `forged-${randomUUID().slice(0, 8)}`;
    const made = await create(as(x.tokens.carol), name, 'BackupContents', { annotations: { ...unsignedRecord({ username: 'alice', uid: 'alice-uid', groups: ['system:authenticated'] }), keep: 'me' } });
    assert.equal(made.status, 201, JSON.stringify(made.body));
    assert.equal(made.body.metadata.annotations?.[REQUESTER_ANNOTATIONS.user], 'carol');
    assert.equal(made.body.metadata.annotations?.keep, 'me');
    // With generateName the webhook sees no name yet and records nothing: the forged record reaches
    // the policy, which refuses it; the same request without a record is created, unrecorded.
    const generated = await create(as(x.tokens.carol), 'forged-', 'BackupContents', { generateName: true, annotations: unsignedRecord({ username: 'alice', uid: 'alice-uid', groups: ['system:authenticated'] }) });
    assert.equal(generated.status, 403, JSON.stringify(generated.body));
    assert.match(generated.body.message, POLICY_DENIED);
    assert.match(generated.body.message, /must name the user creating it/);
    const unrecorded = await create(as(x.tokens.carol), 'plain-', 'BackupContents', { generateName: true });
    assert.equal(unrecorded.status, 201);
    assert.equal(unrecorded.body.metadata.annotations?.[REQUESTER_ANNOTATIONS.user], undefined);
  });

  test('a user whose groups and extra hold the encoding\'s separators is recorded, accepted by the policy, and authorized through those groups', async () => {
    const { name, url } = await processed(erin, 'BackupLog');
    const a = (await read(name)).metadata.annotations ?? {};
    assert.equal(a[REQUESTER_ANNOTATIONS.user], 'erin');
    assert.equal(a[REQUESTER_ANNOTATIONS.groups], 'ops%2Ceu,team%3Da,100%25,system:authenticated');
    assert.equal(a[REQUESTER_ANNOTATIONS.extra], 'example.com/reason=on-call%2Ceu,x%3Dy');
    // Her only grant is the chart's -logs role bound to group "ops,eu": the SAR carries the recorded groups.
    const got = await download(url);
    assert.equal(got.code, 200, got.body.toString());
    assert.deepEqual(got.body, x.files.log);
    // A TokenRequest service account: its extra (credential-id "JTI=…") is recorded and accepted.
    const sa = await processed(as(x.tokens.creator), 'BackupLog');
    assert.match((await read(sa.name)).metadata.annotations?.[REQUESTER_ANNOTATIONS.extra] ?? '', /^authentication\.kubernetes\.io\/credential-id=JTI%3D/);
  });

  test('per-user SAR at download: bob (logs only) gets a URL for the contents, and a 403 naming him; his log, dave\'s through his group, alice\'s contents work', async () => {
    const contents = await processed(as(x.tokens.bob), 'BackupContents');
    const refused = await download(contents.url);
    assert.equal(refused.code, 403);
    assert.match(statusOf(refused.body).message, /User "bob" cannot get resource "backups\/contents"/);
    const log = await processed(as(x.tokens.bob), 'BackupLog');
    assert.equal((await download(log.url)).code, 200);
    const daves = await processed(as(x.tokens.dave), 'BackupLog');
    assert.deepEqual((await download(daves.url)).body, x.files.log);
    const carols = await processed(as(x.tokens.carol), 'BackupLog');
    assert.equal((await download(carols.url)).code, 403, 'carol may create DownloadRequests but read nothing');
    const alices = await processed(as(x.tokens.alice), 'BackupContents');
    const all = await download(alices.url);
    assert.equal(all.code, 200);
    assert.deepEqual(all.body, x.files.contents);
  });

  test('a bearer token works as well, reviewed by the API server: alice reads the contents, bob gets a 403', async () => {
    const url = `${x.gatewayBase}/v1/namespaces/${NS}/backups/${BACKUP}/contents`;
    const ok = await curl(['--cacert', x.caFile, '--fail', '-H', `Authorization: Bearer ${x.tokens.alice}`, url]);
    assert.equal(ok.code, 0, ok.stderr);
    assert.deepEqual(ok.stdout, x.files.contents);
    const no = await curl(['--cacert', x.caFile, '-w', '\n%{http_code}', '-H', `Authorization: Bearer ${x.tokens.bob}`, url]);
    assert.equal(no.stdout.toString().split('\n').at(-1), '403');
  });

  test('the URL stops working when its DownloadRequest is deleted, and stays refused when one of the same name is recreated', async () => {
    const first = await processed(as(x.tokens.alice), 'BackupLog');
    assert.equal((await download(first.url)).code, 200);
    // Velero's garbage collection deletes processed requests.
    assert.equal((await x.k.rest('DELETE', `${DRS}/${first.name}`, undefined, as(x.tokens.velero))).status, 200);
    const gone = await download(first.url);
    assert.equal(gone.code, 403);
    assert.match(statusOf(gone.body).message, /no longer exists/);
    const second = await processed(as(x.tokens.alice), 'BackupLog', first.name);
    assert.notEqual(second.url, first.url);
    const old = await download(first.url);
    assert.equal(old.code, 403);
    assert.match(statusOf(old.body).message, /deleted or changed/);
    assert.equal((await download(second.url)).code, 200);
  });

  test('a forged AdmissionReview posted straight to the webhook port mints a URL no stored object carries: refused at download', async () => {
    const name = `victim-${randomUUID().slice(0, 8)}`;
    assert.equal((await create(as(x.tokens.alice), name, 'BackupContents')).status, 201);
    const live = await read(name);
    const post = async (body: unknown): Promise<ReviewResponse> => {
      const r = await curl(['--cacert', x.caFile, '-H', 'Content-Type: application/json', '--data-binary', JSON.stringify(body), '-w', '\n%{http_code}', x.webhookUrl]);
      const lines = r.stdout.toString().split('\n');
      return { status: Number(lines.pop()), body: JSON.parse(lines.join('\n')) as ReviewResponse['body'] };
    };
    // carol read alice's object (uid and record) and forges Velero's status write.
    const forged = await post(review('UPDATE', NS, { ...live, status: { phase: 'Processed', downloadURL: 'http://minio/x', expiration: new Date(Date.now() + 600_000).toISOString() } }, { username: VELERO_USER, groups: ['system:serviceaccounts'] }));
    assert.equal(forged.status, 200);
    const minted = patchOf(forged)?.[0]?.value;
    assert.equal(typeof minted, 'string', 'the webhook cannot tell a forged review from the API server\'s');
    const res = await download(String(minted));
    assert.equal(res.code, 403);
    assert.match(statusOf(res.body).message, /no longer carries this URL/);
    assert.equal((await read(name)).status?.downloadURL, undefined, 'nothing was stored');
    // A forged CREATE claiming to be alice gets a record the gateway signed; carol's request with it
    // is recorded as hers all the same.
    const other = `other-${randomUUID().slice(0, 8)}`;
    const claimed = await post(review('CREATE', NS, { apiVersion: 'velero.io/v1', kind: 'DownloadRequest', metadata: { name: other, namespace: NS }, spec: { target: { kind: 'BackupContents', name: BACKUP } } }, { username: 'alice', uid: 'alice-uid', groups: ['system:authenticated'] }));
    const record = (patchOf(claimed)?.[0]?.value ?? {}) as Record<string, string>;
    assert.equal(record[REQUESTER_ANNOTATIONS.user], 'alice');
    const made = await create(as(x.tokens.carol), other, 'BackupContents', { annotations: record });
    assert.equal(made.body.metadata.annotations?.[REQUESTER_ANNOTATIONS.user], 'carol');
  });

  test('with the webhook down (failurePolicy Ignore) the policy alone holds: records must name the creator, URLs are Velero\'s to write', async () => {
    const url = (await webhookConfiguration()).body.webhooks[0]!.clientConfig.url!;
    const names: string[] = [];
    const served = await processed(as(x.tokens.alice), 'BackupLog');
    const setUrl = (to: string) =>
      x.k.rest('PATCH', `/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/${CLUSTER_NAME}`, [{ op: 'replace', path: '/webhooks/0/clientConfig/url', value: to }], { contentType: 'application/json-patch+json' });
    assert.equal((await setUrl(`https://127.0.0.1:${await freePort()}/admission/downloadrequests`)).status, 200);
    try {
      await until('the webhook out of the way', async () => ((await webhookCalled()) ? undefined : true));
      const alice: Requester = { username: 'alice', uid: 'alice-uid', groups: ['system:authenticated'] };
      const who = await x.k.rest<{ status: { userInfo: Requester } }>('POST', '/apis/authentication.k8s.io/v1/selfsubjectreviews', { apiVersion: 'authentication.k8s.io/v1', kind: 'SelfSubjectReview' }, as(x.tokens.creator));
      const sa = who.body.status.userInfo;
      assert.ok(sa.extra, 'a TokenRequest token has extra');
      const cases: [string, RestOptions, Record<string, string> | undefined, number][] = [
        ['alice without a record (unrecorded: she keeps Velero\'s URL)', as(x.tokens.alice), undefined, 201],
        ['alice with her own record', as(x.tokens.alice), unsignedRecord(alice), 201],
        ['alice with a record naming bob', as(x.tokens.alice), unsignedRecord({ username: 'bob', uid: 'bob-uid', groups: ['system:authenticated'] }), 403],
        ['alice with a record naming her in another group', as(x.tokens.alice), { ...unsignedRecord(alice), [REQUESTER_ANNOTATIONS.groups]: 'dev,system:masters' }, 403],
        ['alice with a record without her uid', as(x.tokens.alice), { ...unsignedRecord(alice), [REQUESTER_ANNOTATIONS.uid]: '' }, 403],
        ['alice with only some record keys', as(x.tokens.alice), { [REQUESTER_ANNOTATIONS.user]: 'alice' }, 403],
        ['erin with her own record (escaped separators)', erin, unsignedRecord(ERIN), 201],
        ['erin with her groups unescaped', erin, { ...unsignedRecord(ERIN), [REQUESTER_ANNOTATIONS.groups]: ERIN.groups.join(',') }, 403],
        ['a service account with its own record (extra)', as(x.tokens.creator), unsignedRecord(sa), 201],
        ['a service account with its extra altered', as(x.tokens.creator), { ...unsignedRecord(sa), [REQUESTER_ANNOTATIONS.extra]: 'authentication.kubernetes.io/credential-id=JTI%3Dforged' }, 403],
        ['a service account with its extra dropped', as(x.tokens.creator), { ...unsignedRecord(sa), [REQUESTER_ANNOTATIONS.extra]: '' }, 403],
      ];
      for (const [what, user, annotations, want] of cases) {
        const name = `down-${randomUUID().slice(0, 8)}`;
        const r = await create(user, name, 'BackupLog', annotations ? { annotations } : {});
        assert.equal(r.status, want, `${what}: ${JSON.stringify(r.body.message)}`);
        if (want === 403) assert.match(r.body.message, /must name the user creating it/, what);
        else names.push(name);
      }
      const [plain, own] = names;
      const refused = await create(as(x.tokens.alice), `down-${randomUUID().slice(0, 8)}`, 'BackupLog', { status: { downloadURL: 'https://evil.example/x' } });
      assert.equal(refused.status, 403, 'a URL set at creation');
      const added = await patch(as(x.tokens.alice), plain!, { metadata: { annotations: unsignedRecord(alice) } });
      assert.equal(added.status, 403, 'a record added later');
      assert.match(added.body.message, /cannot be changed/);
      assert.equal((await patch(as(x.tokens.alice), own!, { status: { downloadURL: 'https://evil.example/x' } })).status, 403);
      // No webhook to put the gateway's URL back: her overwrite of a stored gateway URL is the policy's to refuse.
      const overwrite = await patch(as(x.tokens.alice), served.name, { status: { downloadURL: 'https://evil.example/y' } });
      assert.equal(overwrite.status, 403);
      assert.match(overwrite.body.message, /written only by Velero and the download gateway/);
      assert.equal((await read(served.name)).status?.downloadURL, served.url);
      // Her own signed record, copied from another request: it names her, so the policy lets it in.
      const copy = `down-${randomUUID().slice(0, 8)}`;
      const signed = Object.fromEntries(Object.entries((await read(served.name)).metadata.annotations ?? {}).filter(([key]) => key.startsWith('download-server.velero.io/requester')));
      assert.equal((await create(as(x.tokens.alice), copy, 'BackupContents', { annotations: signed })).status, 201);
      names.push(copy);
    } finally {
      await setUrl(url);
    }
    await until('the webhook called again', async () => ((await webhookCalled()) ? true : undefined));
    // With the webhook back, none of these gets a gateway URL when Velero processes it: no record, a
    // record the gateway did not sign, a signed record of another request (it binds name and target).
    for (const name of [names[0]!, names[1]!, names.at(-1)!]) {
      assert.equal((await veleroProcesses(name, 'http://minio.velero.svc:9000/x')).status, 200);
      assert.equal((await read(name)).status?.downloadURL, 'http://minio.velero.svc:9000/x', name);
    }
  });

  test('the gateway ran with the chart\'s RBAC only: the API server refused none of its calls, and it made the calls the flows need', async () => {
    const used = await x.gatewayCalls();
    for (const call of ['create tokenreviews', 'create subjectaccessreviews', 'get mutatingwebhookconfigurations', 'patch mutatingwebhookconfigurations', 'get backups', 'get backupstoragelocations', 'list downloadrequests', 'watch downloadrequests', 'get downloadrequests', 'patch downloadrequests', 'create secrets', 'get secrets', 'create configmaps']) {
      assert.ok(used.has(call), `${call}: not among ${[...used].sort().join(', ')}`);
    }
  });
});

describe('the chart\'s RBAC with a `*` glob in watchNamespaces, for a tenant namespace, the URL from the chart\'s Service', { skip: missingTools('kube-apiserver', 'etcd', 'helm') }, () => {
  let x: Installation;
  before(async () => (x = await install({ namespace: 'team-a', watch: ['team-*'], fqdn: false })));
  after(() => x?.close());

  test('alice\'s DownloadRequest in team-a: recorded, the URL minted when Velero processes it, the log and the contents served; bob\'s contents refused', async () => {
    const { name, url } = await x.processed(as(x.tokens.alice), 'BackupLog');
    assert.equal((await x.read(name)).metadata.annotations?.[REQUESTER_ANNOTATIONS.user], 'alice');
    // The controller's cluster-wide watch delivers it, and its patch records the URL.
    assert.equal(await x.urlAnnotation(name), `https://${RELEASE}.${NS}.svc/v1/namespaces/team-a/downloadrequests/${name}`);
    const log = await x.download(url);
    assert.equal(log.code, 200, log.body.toString());
    assert.deepEqual(log.body, x.files.log);
    const contents = await x.download((await x.processed(as(x.tokens.alice), 'BackupContents')).url);
    assert.deepEqual(contents.body, x.files.contents, 'through the tenant\'s own credential Secret');
    const bobs = await x.download((await x.processed(as(x.tokens.bob), 'BackupContents')).url);
    assert.equal(bobs.code, 403);
    assert.match(statusOf(bobs.body).message, /User "bob" cannot get resource "backups\/contents"/);
  });

  test('the gateway ran with the chart\'s RBAC only: the API server refused none of its calls', async () => {
    const used = await x.gatewayCalls();
    for (const call of ['list downloadrequests', 'watch downloadrequests', 'get backups', 'get backupstoragelocations', 'get secrets', 'patch downloadrequests', 'list services', 'watch services']) {
      assert.ok(used.has(call), `${call}: not among ${[...used].sort().join(', ')}`);
    }
  });
});
