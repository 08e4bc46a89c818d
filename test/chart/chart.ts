/**
 * The Helm chart for tests: its files as they are, and its manifests as the real `helm` renders them
 * (built into the tools folder by `npm run tools`), applied with server-side dry run to a real API
 * server. Nothing here re-implements a template: what the tests check is what helm rendered.
 */
import { execFile } from 'node:child_process';
import { rmSync } from 'node:fs';
import { mkdtemp, readFile, readdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse, parseAllDocuments } from 'yaml';
import { SIGNING_KEY_SECRET } from '../../src/auth/signing-keys.ts';
import { toolPath } from '../support/real-cluster.ts';
import type { RealCluster } from '../support/real-cluster.ts';

export const ROOT = fileURLToPath(new URL('../../', import.meta.url));
export const CHART_DIR = join(ROOT, 'charts', 'velero-download-server');
const CRD_DIR = join(ROOT, 'test', 'fixtures', 'chart-crds');

export const readChartFile = (rel: string): Promise<string> => readFile(join(CHART_DIR, rel), 'utf8');

export async function readYaml<T = unknown>(rel: string): Promise<T> {
  return parse(await readChartFile(rel)) as T;
}

/** Every template file (path under templates/ → text), NOTES.txt, _helpers.tpl and tests/ included. */
export async function templates(): Promise<Map<string, string>> {
  const dir = join(CHART_DIR, 'templates');
  const out = new Map<string, string>();
  const entries = await readdir(dir, { recursive: true, withFileTypes: true });
  for (const name of entries.filter((e) => e.isFile()).map((e) => relative(dir, join(e.parentPath, e.name))).sort()) out.set(name, await readFile(join(dir, name), 'utf8'));
  return out;
}

/** The fixed name of the signing-key Secret: the gateway's (auth/signing-keys.ts), which the chart's RBAC must name. */
export { SIGNING_KEY_SECRET };

/** The default tls.caConfigMap (--ca-configmap). */
export const CA_CONFIGMAP = 'velero-download-server-ca';

/** The release and namespace the tests install and render as. */
export const RELEASE = 'velero-download-server';
export const NAMESPACE = 'velero';

export type Values = Record<string, unknown>;

export interface PolicyRule {
  apiGroups?: string[];
  resources?: string[];
  resourceNames?: string[];
  verbs: string[];
  nonResourceURLs?: string[];
}

/** One rendered object. */
export interface Manifest {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; labels?: Record<string, string>; annotations?: Record<string, string> };
  [k: string]: unknown;
}

export interface HelmResult {
  code: number;
  stdout: string;
  stderr: string;
}

let helmHome: Promise<string> | undefined;

/**
 * Runs the built helm asynchronously (a test may host a server helm talks to); never throws for a
 * non-zero exit. helm's config, cache and data folders are a temporary folder of this process, so a
 * test never reads or writes the user's own helm setup; `input` is helm's stdin (`--values -`).
 */
export async function runHelm(args: string[], opts: { input?: string; env?: NodeJS.ProcessEnv } = {}): Promise<HelmResult> {
  const helm = toolPath('helm');
  if (!helm) throw new Error('helm is not built: run npm run tools');
  helmHome ??= mkdtemp(join(tmpdir(), 'vds-helm-home-')).then((dir) => {
    process.once('exit', () => rmSync(dir, { recursive: true, force: true }));
    return dir;
  });
  const home = await helmHome;
  const env = { ...process.env, HELM_CONFIG_HOME: join(home, 'config'), HELM_CACHE_HOME: join(home, 'cache'), HELM_DATA_HOME: join(home, 'data'), ...opts.env };
  return new Promise((resolve) => {
    const child = execFile(helm, args, { env, maxBuffer: 16 * 1024 * 1024 }, (err, stdout, stderr) => {
      const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : 1) : 0;
      resolve({ code, stdout, stderr });
    });
    child.stdin!.end(opts.input ?? '');
  });
}

/** The objects of a multi-document YAML stream (empty documents dropped). */
export const manifests = (yaml: string): Manifest[] =>
  parseAllDocuments(yaml).map((d) => d.toJS() as Manifest | null).filter((d): d is Manifest => d !== null);

export interface RenderOptions {
  /** Capabilities.KubeVersion: the real API server's (see {@link serverVersion}). */
  kubeVersion: string;
  release?: string;
  namespace?: string;
  /** More helm arguments (`--set …`). */
  args?: string[];
}

/** `helm template` with `values`; rejects with helm's message when it refuses. */
export async function render(values: Values, o: RenderOptions): Promise<Manifest[]> {
  const r = await helmTemplate(values, o);
  if (r.code !== 0) throw new Error(`helm template failed (${r.code}): ${r.stderr}`);
  return manifests(r.stdout);
}

export function helmTemplate(values: Values, o: RenderOptions): Promise<HelmResult> {
  return runHelm(
    ['template', o.release ?? RELEASE, CHART_DIR, '--namespace', o.namespace ?? NAMESPACE, '--kube-version', o.kubeVersion, '--values', '-', ...(o.args ?? [])],
    { input: JSON.stringify(values) },
  );
}

/** The API server's own version (gitVersion, e.g. v1.37.2): what helm must render for. */
export async function serverVersion(k: RealCluster): Promise<string> {
  const v = await k.rest<{ gitVersion?: string }>('GET', '/version');
  if (!v.body.gitVersion) throw new Error(`GET /version: HTTP ${v.status}`);
  return v.body.gitVersion;
}

export type Deployment = Manifest & {
  spec: {
    replicas: number;
    selector: { matchLabels: Record<string, string> };
    template: {
      metadata: { labels?: Record<string, string> };
      spec: {
        serviceAccountName: string;
        affinity?: Record<string, unknown>;
        securityContext: Record<string, unknown>;
        containers: {
          args: string[];
          env: { name: string; value?: string; valueFrom?: unknown }[];
          securityContext: Record<string, unknown>;
          volumeMounts: { name: string; mountPath: string; readOnly?: boolean }[];
          [k: string]: unknown;
        }[];
        volumes: ({ name: string } & Record<string, unknown>)[];
      };
    };
  };
};

/** The one Deployment of a rendering. */
export function deploymentOf(docs: Manifest[]): Deployment {
  const all = docs.filter((d) => d.kind === 'Deployment');
  if (all.length !== 1) throw new Error(`${all.length} Deployments rendered`);
  return all[0] as Deployment;
}

/** The gateway container's arguments as flag → value ('' for a bare switch). */
export function argsOf(docs: Manifest[]): Map<string, string> {
  const out = new Map<string, string>();
  for (const a of deploymentOf(docs).spec.template.spec.containers[0]!.args) {
    const m = /^--([a-z0-9-]+)(?:=(.*))?$/s.exec(a);
    if (!m) throw new Error(`not a flag: ${a}`);
    if (out.has(m[1]!)) throw new Error(`--${m[1]} passed twice`);
    out.set(m[1]!, m[2] ?? '');
  }
  return out;
}

type Binding = Manifest & { roleRef: { kind: string; name: string }; subjects?: { kind: string; name: string; namespace?: string }[] };

/** A Role or ClusterRole bound to the service account, with where it applies: a namespace, or the cluster. */
export interface BoundRole {
  kind: 'Role' | 'ClusterRole';
  name: string;
  /** The namespace of a Role, or of a RoleBinding that binds a ClusterRole; undefined: cluster-wide. */
  namespace: string | undefined;
  rules: PolicyRule[];
}

/**
 * The rules the rendered bindings give service account `namespace/name`, read from the rendered
 * RoleBindings and ClusterRoleBindings and the Roles and ClusterRoles they name (all of them must be
 * in the rendering: the chart binds nothing it does not create).
 */
export function boundRoles(docs: Manifest[], serviceAccount: { namespace: string; name: string }): BoundRole[] {
  const out: BoundRole[] = [];
  for (const b of docs.filter((d): d is Binding => d.kind === 'RoleBinding' || d.kind === 'ClusterRoleBinding')) {
    if (!b.subjects?.some((s) => s.kind === 'ServiceAccount' && s.name === serviceAccount.name && (s.namespace ?? b.metadata.namespace) === serviceAccount.namespace)) continue;
    const bindingNs = b.kind === 'RoleBinding' ? (b.metadata.namespace ?? NAMESPACE) : undefined;
    const role = docs.find((d) => d.kind === b.roleRef.kind && d.metadata.name === b.roleRef.name && (d.kind === 'ClusterRole' || (d.metadata.namespace ?? NAMESPACE) === bindingNs));
    if (!role) throw new Error(`${b.kind} ${b.metadata.name} names ${b.roleRef.kind} ${b.roleRef.name}, which the chart did not render`);
    out.push({ kind: role.kind as BoundRole['kind'], name: role.metadata.name, namespace: bindingNs, rules: (role.rules as PolicyRule[] | undefined) ?? [] });
  }
  return out;
}

/** The RBAC kinds. */
export const RBAC_KINDS = new Set(['Role', 'RoleBinding', 'ClusterRole', 'ClusterRoleBinding']);

/** Installs the CRDs of test/fixtures/chart-crds (ServiceMonitor, PrometheusRule, Certificate) and waits until they are served. */
export async function installChartCrds(k: RealCluster): Promise<void> {
  const crds: Manifest[] = [];
  for (const file of (await readdir(CRD_DIR)).filter((f) => f.endsWith('.yaml')).sort()) crds.push(parse(await readFile(join(CRD_DIR, file), 'utf8')) as Manifest);
  await k.apply(...crds);
  const deadline = Date.now() + 30_000;
  for (const crd of crds) {
    const spec = crd.spec as { group: string; names: { plural: string }; versions: { name: string; served: boolean }[] };
    for (const v of spec.versions.filter((x) => x.served)) {
      for (;;) {
        const list = await k.rest<{ resources?: { name: string }[] }>('GET', `/apis/${spec.group}/${v.name}`);
        if (list.body.resources?.some((r) => r.name === spec.names.plural)) break;
        if (Date.now() > deadline) throw new Error(`${crd.metadata.name} not served in 30 s`);
        await new Promise((r) => setTimeout(r, 100));
      }
    }
  }
}

type ApiResource = { name: string; kind: string; namespaced: boolean };
const discovery = new WeakMap<RealCluster, Map<string, ApiResource[]>>();

/** The REST collection path of an object's kind, from the API server's discovery (cached per server and apiVersion). */
export async function collectionPath(k: RealCluster, doc: Manifest, namespace = NAMESPACE): Promise<string> {
  let byVersion = discovery.get(k);
  if (!byVersion) discovery.set(k, (byVersion = new Map<string, ApiResource[]>()));
  const base = doc.apiVersion.includes('/') ? `/apis/${doc.apiVersion}` : `/api/${doc.apiVersion}`;
  let resources = byVersion.get(doc.apiVersion);
  if (!resources) {
    const r = await k.rest<{ resources?: ApiResource[] }>('GET', base);
    if (r.status !== 200) throw new Error(`the API server serves no ${doc.apiVersion} (HTTP ${r.status}) for ${doc.kind} ${doc.metadata.name}`);
    byVersion.set(doc.apiVersion, (resources = r.body.resources ?? []));
  }
  const res = resources.find((x) => x.kind === doc.kind && !x.name.includes('/'));
  if (!res) throw new Error(`the API server serves no kind ${doc.kind} in ${doc.apiVersion}`);
  return `${base}${res.namespaced ? `/namespaces/${doc.metadata.namespace ?? namespace}` : ''}/${res.name}`;
}

/**
 * Server-side apply with `dryRun=All` and strict field validation: the API server decodes, defaults,
 * validates (OpenAPI and CRD schemas, unknown or duplicate fields, admission) and persists nothing.
 * Rejects with the server's own message. Namespaced objects without a namespace go where helm puts
 * them: the release namespace.
 */
export async function dryRunApply(k: RealCluster, doc: Manifest, namespace = NAMESPACE): Promise<void> {
  const path = `${await collectionPath(k, doc, namespace)}/${doc.metadata.name}`;
  const r = await k.rest<{ message?: string }>('PATCH', `${path}?dryRun=All&fieldManager=helm&fieldValidation=Strict&force=true`, doc, { contentType: 'application/apply-patch+yaml' });
  if (r.status >= 300) throw new Error(`the API server rejected ${doc.kind} ${doc.metadata.namespace ?? namespace}/${doc.metadata.name} (HTTP ${r.status}): ${r.body.message ?? JSON.stringify(r.body)}`);
}
