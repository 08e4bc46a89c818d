/**
 * A Velero installation on the real API server (test/support/real-cluster.ts), for end-to-end tests of
 * the gateway process in kubernetes mode: a hostpath BackupStorageLocation whose files live under a
 * mount root (`--fs-root`), a Backup, a Restore, users' rights as real Roles and RoleBindings, and the
 * gateway's own service account with a kubeconfig for a TokenRequest token and the rights it needs,
 * granted with real Roles and a ClusterRole. Also: the API server's audit log, which is how a test sees
 * the calls the gateway made, and an admission barrier that holds creates until two arrive.
 *
 * The gateway's rights here are written by hand for these tests; the chart's own rules are applied
 * and checked by their own test.
 */
import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:https';
import type { Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stringify } from 'yaml';
import type { RealCluster } from './real-cluster.ts';
import { BACKUP, RESTORE, writeBackupFiles } from './kube-fixture.ts';
import { createTestPki } from './test-ca.ts';

export const NS = 'velero';
export { BACKUP, RESTORE };
export const GATEWAY_SA = 'velero-download-server';
export const GATEWAY_USER = `system:serviceaccount:${NS}:${GATEWAY_SA}`;
export const CERT_SECRET = 'velero-download-server-certs';
export const CA_CONFIGMAP = 'velero-download-server-ca';
export const SIGNING_KEY_SECRET = 'velero-download-server-signing-key';
export const SERVICE = 'velero-download-server';
/** Every backup artifact there is: a user granted them all may read anything of a backup. */
export const BACKUP_ARTIFACTS = ['log', 'contents', 'results', 'resourcelist', 'volumesnapshots', 'itemoperations', 'csivolumesnapshots', 'csivolumesnapshotcontents', 'volumeinfos'];

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Polls `check` until it gives a truthy value; throws naming `what` after `ms`. */
export async function eventually<T>(what: string, check: () => Promise<T> | T, ms = 15_000, every = 100): Promise<NonNullable<T>> {
  const end = Date.now() + ms;
  for (;;) {
    const last = await check();
    if (last) return last;
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${what} (last: ${JSON.stringify(last)})`);
    await sleep(every);
  }
}

export const velero = (kind: string, name: string, spec: Record<string, unknown>, extra: { annotations?: Record<string, string>; namespace?: string } = {}): object => ({
  apiVersion: 'velero.io/v1',
  kind,
  metadata: { name, namespace: extra.namespace ?? NS, ...(extra.annotations && { annotations: extra.annotations }) },
  spec,
});

interface Rule {
  apiGroups: string[];
  resources: string[];
  verbs: string[];
  resourceNames?: string[];
}
type Subject = { kind: 'User' | 'Group'; name: string } | { kind: 'ServiceAccount'; name: string; namespace: string };

/** A Role (or ClusterRole without a namespace) and its binding to `subjects`. */
export function grant(name: string, rules: Rule[], subjects: Subject[], namespace?: string): object[] {
  const rbac = 'rbac.authorization.k8s.io/v1';
  const meta = { name, ...(namespace && { namespace }) };
  const subs = subjects.map((s) => (s.kind === 'ServiceAccount' ? s : { apiGroup: 'rbac.authorization.k8s.io', ...s }));
  return [
    { apiVersion: rbac, kind: namespace ? 'Role' : 'ClusterRole', metadata: meta, rules },
    { apiVersion: rbac, kind: namespace ? 'RoleBinding' : 'ClusterRoleBinding', metadata: meta, roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: namespace ? 'Role' : 'ClusterRole', name }, subjects: subs },
  ];
}

/** What the gateway calls in these tests, and nothing more: its service account's rights. */
export function gatewayRights(opts: { statusSubresource?: boolean } = {}): object[] {
  const sa: Subject = { kind: 'ServiceAccount', name: GATEWAY_SA, namespace: NS };
  return [
    ...grant(
      'vds-test-gateway',
      [
        { apiGroups: ['authentication.k8s.io'], resources: ['tokenreviews'], verbs: ['create'] },
        { apiGroups: ['authorization.k8s.io'], resources: ['subjectaccessreviews'], verbs: ['create'] },
        { apiGroups: [''], resources: ['nodes'], verbs: ['list', 'watch'] },
        { apiGroups: ['apiextensions.k8s.io'], resources: ['customresourcedefinitions'], resourceNames: ['downloadrequests.velero.io'], verbs: ['get'] },
      ],
      [sa],
    ),
    ...grant(
      'vds-test-gateway',
      [
        { apiGroups: ['velero.io'], resources: ['backups', 'restores', 'backupstoragelocations'], verbs: ['get'] },
        { apiGroups: ['velero.io'], resources: ['downloadrequests'], verbs: ['get', 'list', 'watch', 'patch'] },
        ...(opts.statusSubresource ? [{ apiGroups: ['velero.io'], resources: ['downloadrequests/status'], verbs: ['patch'] }] : []),
        // Its Service by name only: a list or watch without the name's field selector is refused.
        { apiGroups: [''], resources: ['services'], resourceNames: [SERVICE], verbs: ['list', 'watch'] },
        { apiGroups: [''], resources: ['secrets', 'configmaps'], verbs: ['create'] },
        { apiGroups: [''], resources: ['secrets'], resourceNames: [CERT_SECRET, SIGNING_KEY_SECRET], verbs: ['get', 'update'] },
        { apiGroups: [''], resources: ['secrets'], resourceNames: [CERT_SECRET], verbs: ['watch'] },
        { apiGroups: [''], resources: ['configmaps'], resourceNames: [CA_CONFIGMAP], verbs: ['get', 'update'] },
      ],
      [sa],
      NS,
    ),
  ];
}

/**
 * Users' rights, as an administrator would grant them with Roles: alice every artifact of backups and
 * restores' logs and results and DownloadRequests; bob only backups/log; carol nothing; the group
 * backup-readers (dave) backups/log and DownloadRequests; service account `erin` `get` on backups,
 * which is not `get` on backups/log; service account `frank` backups/log of `nightly` only. Velero's service account patches DownloadRequests, as Velero does.
 */
export function userRights(): object[] {
  return [
    ...grant('alice-artifacts', [{ apiGroups: ['velero.io'], resources: [...BACKUP_ARTIFACTS.map((a) => `backups/${a}`), 'restores/log', 'restores/results', 'downloadrequests'], verbs: ['get'] }], [{ kind: 'User', name: 'alice' }], NS),
    ...grant('bob-logs', [{ apiGroups: ['velero.io'], resources: ['backups/log'], verbs: ['get'] }], [{ kind: 'User', name: 'bob' }], NS),
    ...grant('backup-readers', [{ apiGroups: ['velero.io'], resources: ['backups/log', 'downloadrequests'], verbs: ['get'] }], [{ kind: 'Group', name: 'backup-readers' }], NS),
    ...grant('erin-backups', [{ apiGroups: ['velero.io'], resources: ['backups'], verbs: ['get'] }], [{ kind: 'ServiceAccount', name: 'erin', namespace: NS }], NS),
    ...grant('frank-nightly-log', [{ apiGroups: ['velero.io'], resources: ['backups/log'], resourceNames: [BACKUP], verbs: ['get'] }], [{ kind: 'ServiceAccount', name: 'frank', namespace: NS }], NS),
    ...grant('velero-server', [{ apiGroups: ['velero.io'], resources: ['downloadrequests'], verbs: ['get', 'patch'] }], [{ kind: 'ServiceAccount', name: 'velero', namespace: NS }], NS),
  ];
}

export interface RealVelero {
  dir: string;
  fsRoot: string;
  /** Bytes of the backup's files, by artifact. */
  files: { log: Buffer; contents: Buffer; restoreLog: Buffer };
  /** The gateway's kubeconfig (its service account's TokenRequest token). */
  kubeconfig: string;
  /** Gateway arguments for kubernetes mode against this installation. */
  args(...extra: string[]): string[];
  /** The CA of the certificate Secret (ca.crt), written to a file for curl. */
  caFile(): Promise<string>;
  close(): Promise<void>;
}

/**
 * Velero's objects on `k`: BSL `default` (hostpath, opted in to the gateway) with Backup `nightly`
 * and Restore `nightly-restore`, the users' and the gateway's rights, the backup's files.
 */
export async function installVelero(k: RealCluster, opts: { statusSubresource?: boolean } = {}): Promise<RealVelero> {
  const dir = await mkdtemp(join(tmpdir(), 'vds-real-velero-'));
  const fsRoot = join(dir, 'mnt');
  const files = await writeBackupFiles(fsRoot);

  await k.apply(
    velero('BackupStorageLocation', 'default', { provider: 'replicated.com/hostpath', objectStorage: { bucket: 'bsl-bucket', prefix: 'cluster-a' } }, { annotations: { 'download-server.velero.io/enabled': 'true' } }),
    velero('BackupStorageLocation', 'plain', { provider: 'replicated.com/hostpath', objectStorage: { bucket: 'bsl-bucket', prefix: 'cluster-a' } }),
    velero('Backup', BACKUP, { storageLocation: 'default' }),
    velero('Backup', 'plain-backup', { storageLocation: 'plain' }),
    velero('Restore', RESTORE, { backupName: BACKUP }),
    ...userRights(),
    ...gatewayRights(opts),
  );
  for (const sa of ['erin', 'frank', 'velero']) {
    await k.rest('POST', `/api/v1/namespaces/${NS}/serviceaccounts`, { apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name: sa } });
  }
  const kubeconfig = await k.kubeconfig(await k.serviceAccountToken(NS, GATEWAY_SA), 'gateway');
  return {
    dir,
    fsRoot,
    files,
    kubeconfig,
    args: (...extra) => ['--mode', 'kubernetes', '--kubeconfig', kubeconfig, '--namespace', NS, '--fs-root', fsRoot, '--state-dir', join(dir, 'state'), '--tls-extra-sans', '127.0.0.1,localhost', ...extra],
    async caFile() {
      const s = await k.rest<{ data?: Record<string, string> }>('GET', `/api/v1/namespaces/${NS}/secrets/${CERT_SECRET}`);
      const ca = s.body.data?.['ca.crt'];
      if (!ca) throw new Error(`the certificate Secret has no ca.crt (HTTP ${s.status})`);
      const file = join(dir, `ca-${randomBytes(4).toString('hex')}.crt`);
      await writeFile(file, Buffer.from(ca, 'base64'));
      return file;
    },
    close: () => rm(dir, { recursive: true, force: true }),
  };
}

// --- the API server's audit log --------------------------------------------------------------------

export interface AuditEvent {
  stage: string;
  verb: string;
  user: { username: string };
  objectRef?: { resource?: string; subresource?: string; namespace?: string; name?: string };
  responseStatus?: { code?: number };
  requestObject?: unknown;
  requestURI: string;
}

export interface AuditLog {
  /** kube-apiserver flags (RealClusterOptions.apiServerArgs). */
  args: string[];
  /** The gateway's requests so far (every stage but RequestReceived). */
  events(filter?: Partial<{ verb: string; resource: string; subresource: string; name: string; stage: string }>): Promise<AuditEvent[]>;
  close(): Promise<void>;
}

/**
 * The API server's audit log of the gateway's service account: metadata of every request, and the
 * request body of its writes to DownloadRequests (never of Secrets, whose bodies hold keys).
 */
export async function gatewayAuditLog(): Promise<AuditLog> {
  const dir = await mkdtemp(join(tmpdir(), 'vds-audit-'));
  const policy = {
    apiVersion: 'audit.k8s.io/v1',
    kind: 'Policy',
    omitStages: ['RequestReceived'],
    rules: [
      { level: 'Request', users: [GATEWAY_USER], verbs: ['create', 'update', 'patch'], resources: [{ group: 'velero.io', resources: ['downloadrequests', 'downloadrequests/status'] }] },
      { level: 'Metadata', users: [GATEWAY_USER] },
      { level: 'None' },
    ],
  };
  await writeFile(join(dir, 'policy.yaml'), stringify(policy));
  const file = join(dir, 'audit.log');
  return {
    args: [`--audit-policy-file=${join(dir, 'policy.yaml')}`, `--audit-log-path=${file}`],
    async events(filter = {}) {
      const text = await readFile(file, 'utf8').catch(() => '');
      return text
        .split('\n')
        .filter((l) => l.startsWith('{'))
        .map((l) => JSON.parse(l) as AuditEvent)
        .filter(
          (e) =>
            (filter.verb === undefined || e.verb === filter.verb) &&
            (filter.stage === undefined || e.stage === filter.stage) &&
            (filter.resource === undefined || e.objectRef?.resource === filter.resource) &&
            (filter.subresource === undefined || (e.objectRef?.subresource ?? '') === filter.subresource) &&
            (filter.name === undefined || e.objectRef?.name === filter.name),
        );
    },
    close: () => rm(dir, { recursive: true, force: true }),
  };
}

// --- an admission barrier ---------------------------------------------------------------------------

export interface CreateBarrier {
  /** Creates the API server asked the barrier about, by object name. */
  readonly arrived: ReadonlyMap<string, number>;
  close(): Promise<void>;
}

/**
 * A validating admission webhook, registered with the real API server, that holds every CREATE of the
 * named Secrets and ConfigMaps in `namespace` until `parties` creates of that name have arrived (or
 * `holdMs` passed), then admits them all at once: replicas that start together then really race to
 * create the same object, and all but one get the API server's 409.
 */
export async function createBarrier(k: RealCluster, opts: { namespace: string; names: string[]; parties: number; holdMs?: number }): Promise<CreateBarrier> {
  const pki = await createTestPki('vds barrier webhook CA');
  const arrived = new Map<string, number>();
  const waiting = new Map<string, (() => void)[]>();
  const probe = `barrier-probe-${randomBytes(3).toString('hex')}`;
  const server: Server = createServer({ key: pki.key, cert: pki.cert }, (req, res) => {
    let body = '';
    req.on('data', (c: Buffer) => (body += c.toString()));
    req.on('end', () => {
      const review = JSON.parse(body) as { request: { uid: string; name?: string; object?: { metadata?: { name?: string } } } };
      const name = review.request.name || review.request.object?.metadata?.name || '';
      const answer = (): void => {
        res.setHeader('content-type', 'application/json');
        res.end(JSON.stringify({ apiVersion: 'admission.k8s.io/v1', kind: 'AdmissionReview', response: { uid: review.request.uid, allowed: true } }));
      };
      arrived.set(name, (arrived.get(name) ?? 0) + 1);
      if (!opts.names.includes(name)) return answer();
      const held = [...(waiting.get(name) ?? []), answer];
      if (held.length >= opts.parties) {
        waiting.delete(name);
        for (const release of held) release();
        return;
      }
      waiting.set(name, held);
      setTimeout(() => {
        if (waiting.get(name)?.includes(answer)) {
          waiting.set(name, waiting.get(name)!.filter((a) => a !== answer));
          answer();
        }
      }, opts.holdMs ?? 8_000);
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as AddressInfo;
  const config = `vds-test-barrier-${randomBytes(3).toString('hex')}`;
  await k.apply({
    apiVersion: 'admissionregistration.k8s.io/v1',
    kind: 'ValidatingWebhookConfiguration',
    metadata: { name: config },
    webhooks: [
      {
        name: 'barrier.vds-tests.example.com',
        clientConfig: { url: `https://127.0.0.1:${port}/`, caBundle: Buffer.from(pki.caCert).toString('base64') },
        rules: [{ operations: ['CREATE'], apiGroups: [''], apiVersions: ['v1'], resources: ['secrets', 'configmaps'] }],
        namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': opts.namespace } },
        failurePolicy: 'Fail',
        sideEffects: 'None',
        timeoutSeconds: 15,
        admissionReviewVersions: ['v1'],
      },
    ],
  });
  // The API server picks the configuration up asynchronously: probe until the webhook is asked.
  await eventually('the barrier webhook to be called', async () => {
    await k.rest('POST', `/api/v1/namespaces/${opts.namespace}/configmaps`, { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: probe } });
    await k.rest('DELETE', `/api/v1/namespaces/${opts.namespace}/configmaps/${probe}`);
    return arrived.has(probe);
  });
  return {
    arrived,
    async close() {
      await k.rest('DELETE', `/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations/${config}`);
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
    },
  };
}
