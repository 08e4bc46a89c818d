/**
 * A TEST DOUBLE of the Kubernetes API server, for tests only: an in-process HTTPS server on
 * 127.0.0.1 with a test CA that speaks the real REST wire protocol (discovery, GET/LIST/WATCH/CREATE/
 * UPDATE/PATCH/DELETE with resourceVersions, `Status` errors, TokenReview, SubjectAccessReview), so the
 * real `@kubernetes/client-node` runs unmodified through a generated kubeconfig. It serves Velero's
 * backups, restores, downloadrequests and backupstoragelocations, Kanister's profiles (opt-in), core secrets, configmaps, services,
 * nodes and namespaces, MutatingWebhookConfigurations and CustomResourceDefinitions. Not a Kubernetes: no admission, no defaulting beyond
 * metadata, no controllers (a deleted namespace keeps its objects), no server-side apply, no paging.
 *
 * ```ts
 * const api = await startKubeApiServer();
 * const token = api.tokens.serviceAccount('velero', 'velero-download-server');
 * api.rbac.grant(user('alice'), [{ apiGroups: ['velero.io'], resources: ['backups/log'], verbs: ['get'] }], 'team-a');
 * api.put({ apiVersion: 'velero.io/v1', kind: 'Backup', metadata: { name: 'nightly', namespace: 'team-a' }, spec: {} });
 * await api.writeKubeconfig(file, api.kubeconfig(token));      // or api.kubeConfig(token) for a client-node KubeConfig
 * api.faults.add({ match: { resource: 'tokenreviews' }, status: 503, times: 1 });
 * api.calls.count({ resource: 'subjectaccessreviews' });
 * await api.stop(); await api.start();                           // down and back on the same port
 * await api.close();
 * ```
 */
import { randomBytes } from 'node:crypto';
import { KubeConfig } from '@kubernetes/client-node';
import { createTestPki } from '../test-ca.ts';
import type { TestPki } from '../test-ca.ts';
import { CallLog, Faults } from './control.ts';
import { buildKubeconfig, issueClientCertificate, kubeconfigYaml, writeKubeconfig } from './kubeconfig.ts';
import type { Kubeconfig, KubeconfigOptions } from './kubeconfig.ts';
import { Rbac, group } from './rbac.ts';
import { kanisterCrds, resourceForKind, veleroCrds } from './resources.ts';
import type { DownloadRequestCrdOptions } from './resources.ts';
import { ApiServer } from './server.ts';
import { Store } from './store.ts';
import type { KubeObject } from './store.ts';
import { TokenTable } from './tokens.ts';

export type { CallRecord, Fault, FaultSpec, Matcher, Permission } from './control.ts';
export type { Kubeconfig, KubeconfigOptions } from './kubeconfig.ts';
export type { Attributes, Decision, PolicyRule, RoleRef, Subject } from './rbac.ts';
export type { DownloadRequestCrdOptions } from './resources.ts';
export type { KubeObject, WatchEvent } from './store.ts';
export type { TokenUser, UserInfo } from './tokens.ts';
export { group, serviceAccount, user } from './rbac.ts';
export { downloadRequestCrd, kanisterCrds, veleroCrds } from './resources.ts';

export interface KubeApiServerOptions {
  /** Port on 127.0.0.1 (default 0: a free one, kept across stop/start). */
  port?: number;
  /** Certificates to serve with (default: a new test CA and server certificate). */
  pki?: TestPki;
  /** The API server's own token audiences (what a TokenReview without spec.audiences checks). */
  apiAudiences?: string[];
  /** Refuse (403) callers whose own RBAC lacks the permission, as a real server does (default false: any authenticated caller). */
  authorizeCallers?: boolean;
  /** Namespaces that exist at start (default default, kube-system, kube-public, velero). */
  namespaces?: string[];
  /** Install the Velero CRDs (default true); without them velero.io is not served. */
  velero?: boolean;
  /** Install Kanister's Profile CRD (default false): without it cr.kanister.io is not served. */
  kanister?: boolean;
  /** Shape of the installed DownloadRequest CRD (default: stock Velero, no veleroServerURL, no /status). */
  downloadRequestCrd?: DownloadRequestCrdOptions;
  /** Prune `status` fields a CRD's schema does not declare, as structural CRDs do (default true). */
  pruneUnknownStatusFields?: boolean;
  /** BOOKMARK interval for watches with allowWatchBookmarks=true (default 1000 ms). */
  bookmarkIntervalMs?: number;
}

export class KubeApiServer {
  readonly pki: TestPki;
  readonly store: Store;
  readonly tokens: TokenTable;
  readonly rbac: Rbac;
  readonly faults = new Faults();
  readonly calls = new CallLog();
  /** A token of `kubernetes-admin` in group system:masters (bound to cluster-admin). */
  readonly adminToken: string;
  readonly #server: ApiServer;

  constructor(pki: TestPki, opts: KubeApiServerOptions = {}) {
    this.pki = pki;
    this.store = new Store({ pruneUnknownStatusFields: opts.pruneUnknownStatusFields ?? true });
    this.tokens = new TokenTable(opts.apiAudiences ?? ['https://kubernetes.default.svc.cluster.local']);
    this.rbac = new Rbac()
      .clusterRole('cluster-admin', [{ apiGroups: ['*'], resources: ['*'], verbs: ['*'] }, { nonResourceURLs: ['*'], verbs: ['*'] }])
      .clusterRoleBinding('cluster-admin', 'cluster-admin', [group('system:masters')])
      .clusterRole('system:auth-delegator', [
        { apiGroups: ['authentication.k8s.io'], resources: ['tokenreviews'], verbs: ['create'] },
        { apiGroups: ['authorization.k8s.io'], resources: ['subjectaccessreviews'], verbs: ['create'] },
      ]);
    this.adminToken = this.tokens.add(`admin.${randomBytes(12).toString('hex')}`, { username: 'kubernetes-admin', groups: ['system:masters'] });
    for (const name of opts.namespaces ?? ['default', 'kube-system', 'kube-public', 'velero']) {
      this.put({ apiVersion: 'v1', kind: 'Namespace', metadata: { name }, status: { phase: 'Active' } });
    }
    if (opts.velero ?? true) for (const crd of veleroCrds(opts.downloadRequestCrd)) this.put(crd as KubeObject);
    if (opts.kanister) for (const crd of kanisterCrds()) this.put(crd as KubeObject);
    this.#server = new ApiServer({
      pki, store: this.store, tokens: this.tokens, rbac: this.rbac, faults: this.faults, calls: this.calls,
      authorizeCallers: opts.authorizeCallers ?? false, bookmarkIntervalMs: opts.bookmarkIntervalMs ?? 1000,
    });
  }

  get port(): number {
    return this.#server.port;
  }

  get url(): string {
    return `https://127.0.0.1:${this.port}`;
  }

  get caCert(): string {
    return this.pki.caCert;
  }

  get running(): boolean {
    return this.#server.listening;
  }

  // --- objects, bypassing the API (seeding and inspecting from tests; watches still see changes) ---

  /** Creates or replaces an object exactly as given (status kept), by its apiVersion and kind. */
  put<T extends KubeObject>(obj: T): T {
    return this.store.put(resourceForKind(obj.apiVersion ?? '', obj.kind ?? ''), obj) as T;
  }

  get(apiVersion: string, kind: string, name: string, namespace = ''): KubeObject | undefined {
    return this.store.get(resourceForKind(apiVersion, kind), namespace, name);
  }

  list(apiVersion: string, kind: string, namespace = ''): KubeObject[] {
    return this.store.list(resourceForKind(apiVersion, kind), namespace);
  }

  /** Deletes at once, finalizers or not. */
  remove(apiVersion: string, kind: string, name: string, namespace = ''): boolean {
    return this.store.remove(resourceForKind(apiVersion, kind), namespace, name);
  }

  // --- kubeconfigs ---

  /** A kubeconfig for a bearer-token user. */
  kubeconfig(token: string, opts?: KubeconfigOptions): Kubeconfig {
    return buildKubeconfig(this.url, this.caCert, { token }, opts);
  }

  /** A kubeconfig whose user has only a client certificate (CN = username, O = groups), which this server accepts. */
  async clientCertificateKubeconfig(username: string, groups: string[] = [], opts?: KubeconfigOptions): Promise<Kubeconfig> {
    return buildKubeconfig(this.url, this.caCert, await issueClientCertificate(this.pki, username, groups), { user: username, ...opts });
  }

  kubeconfigYaml(doc: Kubeconfig): string {
    return kubeconfigYaml(doc);
  }

  writeKubeconfig(file: string, doc: Kubeconfig): Promise<string> {
    return writeKubeconfig(file, doc);
  }

  /** A loaded client-node KubeConfig for a token (or a kubeconfig document). */
  kubeConfig(tokenOrDoc: string | Kubeconfig): KubeConfig {
    const kc = new KubeConfig();
    kc.loadFromString(kubeconfigYaml(typeof tokenOrDoc === 'string' ? this.kubeconfig(tokenOrDoc) : tokenOrDoc));
    return kc;
  }

  // --- lifecycle ---

  /** Listens (again) on the same port; the store, tokens, RBAC and logs are kept. */
  async start(port?: number): Promise<void> {
    if (!this.running) await this.#server.listen(port);
  }

  /** Ends every open watch cleanly (the server's --min-request-timeout come round); the server keeps serving. */
  endWatches(): void {
    this.#server.endWatches();
  }

  /** Simulates the API server going down: ends every watch, drops every connection, refuses new ones. */
  stop(): Promise<void> {
    return this.#server.close();
  }

  close(): Promise<void> {
    return this.stop();
  }
}

export async function startKubeApiServer(opts: KubeApiServerOptions = {}): Promise<KubeApiServer> {
  const api = new KubeApiServer(opts.pki ?? (await createTestPki('test kube-apiserver CA')), opts);
  await api.start(opts.port ?? 0);
  return api;
}
