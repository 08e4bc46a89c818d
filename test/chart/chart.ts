/**
 * Reading the Helm chart without helm (it cannot be installed here): its files, its values, the RBAC
 * rules of files/rules.yaml, and the RBAC manifests templates/rbac.yaml renders from them, rebuilt in
 * TypeScript so tests can check them. Where `helm` is on PATH, test/chart/helm.test.ts compares this
 * rebuild with helm's own rendering.
 */
import { execFile } from 'node:child_process';
import { access, readFile, readdir } from 'node:fs/promises';
import { constants } from 'node:fs';
import { delimiter, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse } from 'yaml';
import { SIGNING_KEY_SECRET } from '../../src/auth/signing-keys.ts';
import type { PolicyRule } from '../support/kube-apiserver/index.ts';

export const ROOT = fileURLToPath(new URL('../../', import.meta.url));
export const CHART_DIR = join(ROOT, 'charts', 'velero-download-server');

export const readChartFile = (rel: string): Promise<string> => readFile(join(CHART_DIR, rel), 'utf8');

export async function readYaml<T = unknown>(rel: string): Promise<T> {
  return parse(await readChartFile(rel)) as T;
}

/** Every template file (name → text), NOTES.txt and _helpers.tpl included. */
export async function templates(): Promise<Map<string, string>> {
  const dir = join(CHART_DIR, 'templates');
  const out = new Map<string, string>();
  for (const name of (await readdir(dir)).sort()) out.set(name, await readFile(join(dir, name), 'utf8'));
  return out;
}

/** The fixed name of the signing-key Secret: the gateway's (auth/signing-keys.ts), which templates/_helpers.tpl must match. */
export { SIGNING_KEY_SECRET };

/** The default tls.caConfigMap (--ca-configmap). */
export const CA_CONFIGMAP = 'velero-download-server-ca';

export interface ChartRules {
  cluster: PolicyRule[];
  watched: PolicyRule[];
  own: PolicyRule[];
  /** Added to the release namespace's Role when tls.caConfigMap is set. */
  caConfigMap: PolicyRule[];
  /** Added to the ClusterRole when the gateway keeps the webhook's caBundle. */
  webhookCaBundle: PolicyRule[];
}

/** The object names files/rules.yaml's placeholders stand for. */
export interface RuleNames {
  certificateSecret?: string;
  /** tls.caConfigMap; default {@link CA_CONFIGMAP}. */
  caConfigMap?: string;
  /** The MutatingWebhookConfiguration: include "velero-download-server.clusterName". */
  webhookConfiguration?: string;
  /** The gateway's Service (--service-name): include "velero-download-server.fullname". */
  service?: string;
}

/** files/rules.yaml with the object names filled in, as the _helpers.tpl "rules" template does. */
export async function chartRules(names: RuleNames | string = {}): Promise<ChartRules> {
  const n = typeof names === 'string' ? { certificateSecret: names } : names;
  const text = (await readChartFile('files/rules.yaml'))
    .replaceAll('__CERTIFICATE_SECRET__', n.certificateSecret ?? 'velero-download-server-certs')
    .replaceAll('__SIGNING_KEY_SECRET__', SIGNING_KEY_SECRET)
    .replaceAll('__CA_CONFIGMAP__', n.caConfigMap ?? CA_CONFIGMAP)
    .replaceAll('__SERVICE__', n.service ?? 'velero-download-server')
    .replaceAll('__WEBHOOK_CONFIGURATION__', n.webhookConfiguration ?? 'velero-velero-download-server');
  return parse(text) as ChartRules;
}

export interface RbacRenderOptions {
  releaseNamespace: string;
  /** The gateway's service account (in the release namespace). */
  serviceAccount: string;
  /** include "velero-download-server.fullname". */
  fullname: string;
  /** configuration.watchNamespaces. */
  watchNamespaces: string[];
  certificateSecret?: string;
  /** tls.caConfigMap; default {@link CA_CONFIGMAP}; empty: not published (no ConfigMap rules). */
  caConfigMap?: string;
  /** admissionWebhook.enabled with a tls.mode other than certManager: the gateway keeps the webhook's caBundle. */
  webhookCaBundle?: boolean;
}

type Manifest = { apiVersion: string; kind: string; metadata: { name: string; namespace?: string }; [k: string]: unknown };

/**
 * The RBAC objects templates/rbac.yaml renders, in the same order: cluster rules (with the webhook
 * configuration's when the gateway keeps its caBundle) bound cluster-wide; the watched rules in a Role
 * per watched namespace, or cluster-wide when a namespace is a `*` glob; the own rules (with the CA
 * ConfigMap's when it is published) in a Role of the release namespace.
 */
export async function renderRbac(o: RbacRenderOptions): Promise<Manifest[]> {
  const clusterName = `${o.releaseNamespace}-${o.fullname}`;
  const caConfigMap = o.caConfigMap ?? CA_CONFIGMAP;
  const rules = await chartRules({ ...(o.certificateSecret && { certificateSecret: o.certificateSecret }), caConfigMap, webhookConfiguration: clusterName, service: o.fullname });
  const subjects = [{ kind: 'ServiceAccount', name: o.serviceAccount, namespace: o.releaseNamespace }];
  const rbac = 'rbac.authorization.k8s.io/v1';
  const role = (kind: 'Role' | 'ClusterRole', name: string, r: PolicyRule[], namespace?: string): Manifest => ({
    apiVersion: rbac, kind, metadata: { name, ...(namespace ? { namespace } : {}) }, rules: r,
  });
  const binding = (kind: 'RoleBinding' | 'ClusterRoleBinding', name: string, roleKind: string, namespace?: string): Manifest => ({
    apiVersion: rbac, kind, metadata: { name, ...(namespace ? { namespace } : {}) },
    roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: roleKind, name }, subjects,
  });
  const clusterRules = o.webhookCaBundle ? [...rules.cluster, ...rules.webhookCaBundle] : rules.cluster;
  const ownRules = caConfigMap ? [...rules.own, ...rules.caConfigMap] : rules.own;
  const out: Manifest[] = [role('ClusterRole', clusterName, clusterRules), binding('ClusterRoleBinding', clusterName, 'ClusterRole')];
  if (o.watchNamespaces.some((ns) => ns.includes('*'))) {
    out.push(role('ClusterRole', `${clusterName}-watched`, rules.watched), binding('ClusterRoleBinding', `${clusterName}-watched`, 'ClusterRole'));
  } else {
    for (const ns of [...new Set([o.releaseNamespace, ...o.watchNamespaces])]) {
      out.push(role('Role', `${o.fullname}-watched`, rules.watched, ns), binding('RoleBinding', `${o.fullname}-watched`, 'Role', ns));
    }
  }
  out.push(role('Role', o.fullname, ownRules, o.releaseNamespace), binding('RoleBinding', o.fullname, 'Role', o.releaseNamespace));
  return out;
}

/** The absolute path of `helm` on PATH, or undefined. */
export async function findHelm(): Promise<string | undefined> {
  for (const dir of (process.env.PATH ?? '').split(delimiter).filter(Boolean)) {
    const file = join(dir, 'helm');
    try {
      await access(file, constants.X_OK);
      return file;
    } catch {
      // not in this directory
    }
  }
  return undefined;
}

/** Runs helm asynchronously; never throws for a non-zero exit. */
export function runHelm(helm: string, args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(helm, args, { maxBuffer: 16 * 1024 * 1024 }, (err, stdout, stderr) => {
      const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : 1) : 0;
      resolve({ code, stdout, stderr });
    });
  });
}
