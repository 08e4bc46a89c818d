/**
 * `helm lint` and `helm template` with several value sets, where helm is on PATH (it cannot be
 * installed on the machines this project is built on; there the tests are not registered and a line
 * says so). The rendered RBAC must equal what test/chart/chart.ts rebuilds from files/rules.yaml,
 * which is what rbac-coverage.test.ts checks the gateway's API calls against.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { parseAllDocuments, stringify } from 'yaml';
import { CHART_DIR, findHelm, renderRbac, runHelm } from './chart.ts';

type Doc = { apiVersion: string; kind: string; metadata: { name: string; namespace?: string; annotations?: Record<string, string> }; [k: string]: unknown };
type Values = Record<string, unknown>;

const RELEASE = 'velero-download-server';
const NAMESPACE = 'velero';

const VALUE_SETS: Record<string, { values: Values; watch: string[]; kinds: string[] }> = {
  defaults: {
    values: {},
    watch: [],
    kinds: ['Deployment', 'Service', 'ServiceAccount', 'ClusterRole', 'ClusterRoleBinding', 'Role', 'RoleBinding', 'PodDisruptionBudget'],
  },
  exposed: {
    values: {
      service: { type: 'NodePort', nodePort: 30443 },
      configuration: { fqdn: 'downloads.example.com', watchNamespaces: ['team-a', 'team-b'], tenantFilesystemAllow: { 'team-a': ['velero-nfs'], 'team-b': ['velero-nfs', 'velero-pvc'] }, tenantEndpointAllow: ['10.0.0.0/8'] },
      ingress: { enabled: true, className: 'nginx', annotations: { 'nginx.ingress.kubernetes.io/ssl-passthrough': 'true' } },
      networkPolicy: {
        enabled: true,
        from: [{ namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': 'team-a' } }, podSelector: { matchLabels: { app: 'backup-client' } } }],
        cidrs: ['192.0.2.0/24'],
        metricsFrom: [{ namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': 'monitoring' } } }],
      },
      metrics: { serviceMonitor: { enabled: true, additionalLabels: { release: 'prometheus' } } },
      filesystem: {
        volumes: [
          { name: 'nfs', bucket: 'velero-nfs', nfs: { server: 'nfs.example.internal', path: '/exports/velero' } },
          { name: 'host', bucket: 'velero-hostpath', hostPath: { path: '/var/velero', type: 'Directory' } },
          { name: 'pvc', bucket: 'velero-pvc', persistentVolumeClaim: { claimName: 'velero-backups' } },
        ],
      },
      caBundle: { existingSecret: 'store-ca' },
      tls: { extraSans: ['203.0.113.10', 'backup.internal'] },
      admissionWebhook: { enabled: true },
    },
    watch: ['team-a', 'team-b'],
    kinds: ['Deployment', 'Service', 'Ingress', 'NetworkPolicy', 'ServiceMonitor', 'MutatingWebhookConfiguration', 'ValidatingAdmissionPolicy', 'ValidatingAdmissionPolicyBinding'],
  },
  clusterWide: {
    values: {
      service: { type: 'LoadBalancer', loadBalancerIP: '198.51.100.7', annotations: { 'service.beta.kubernetes.io/aws-load-balancer-type': 'nlb' } },
      configuration: { fqdn: 'backups.example.com:8443', watchNamespaces: ['team-*'], logLevel: 'debug' },
      tls: { mode: 'certManager', certManager: { issuerRef: { name: 'internal-ca', kind: 'ClusterIssuer' } } },
      ingress: { enabled: true, tlsMode: 'reencrypt', tlsSecretName: 'public-cert' },
      podDisruptionBudget: { minAvailable: 1 },
      admissionWebhook: { enabled: true },
    },
    watch: ['team-*'],
    kinds: ['Certificate', 'Ingress', 'MutatingWebhookConfiguration', 'ValidatingAdmissionPolicy', 'ClusterRole', 'ClusterRoleBinding'],
  },
  minimal: {
    values: {
      rbac: { create: false },
      serviceAccount: { create: false, name: 'existing-sa' },
      metrics: { enabled: false },
      podDisruptionBudget: { enabled: false },
      credentials: { useSecret: false },
      replicaCount: 1,
    },
    watch: [],
    kinds: ['Deployment', 'Service'],
  },
};

const helm = await findHelm();
if (!helm) {
  console.log('helm is not on PATH (it cannot be installed on this machine): helm lint / helm template tests not registered; chart.test.ts and rbac-coverage.test.ts check the chart without it');
} else {
  describe('helm lint and helm template', () => {
    let dir: string;
    const files: Record<string, string> = {};
    const rendered: Record<string, Doc[]> = {};

    before(async () => {
      dir = await mkdtemp(join(tmpdir(), 'vds-helm-'));
      for (const [name, set] of Object.entries(VALUE_SETS)) {
        files[name] = join(dir, `${name}.yaml`);
        await writeFile(files[name], stringify(set.values));
      }
    });
    after(() => rm(dir, { recursive: true, force: true }));

    const template = async (name: string, ...extra: string[]): Promise<{ code: number; stdout: string; stderr: string }> =>
      runHelm(helm, ['template', RELEASE, CHART_DIR, '--namespace', NAMESPACE, '--values', files[name]!, ...extra]);

    for (const [name, set] of Object.entries(VALUE_SETS)) {
      test(`${name}: helm lint --strict passes`, async () => {
        const r = await runHelm(helm, ['lint', '--strict', CHART_DIR, '--namespace', NAMESPACE, '--values', files[name]!]);
        assert.equal(r.code, 0, r.stdout + r.stderr);
      });

      test(`${name}: helm template renders the expected objects`, async () => {
        const r = await template(name);
        assert.equal(r.code, 0, r.stderr);
        const docs = parseAllDocuments(r.stdout).map((d) => d.toJS() as Doc | null).filter((d): d is Doc => d !== null);
        rendered[name] = docs;
        const kinds = new Set(docs.map((d) => d.kind));
        for (const k of set.kinds) assert.ok(kinds.has(k), `${k} rendered (got ${[...kinds].join(', ')})`);
        const deployment = docs.find((d) => d.kind === 'Deployment') as { spec: { template: { spec: { containers: { args: string[]; securityContext: Record<string, unknown> }[] } } } } & Doc;
        const container = deployment.spec.template.spec.containers[0]!;
        assert.ok(container.args.includes('--mode=kubernetes'));
        assert.equal(container.securityContext.readOnlyRootFilesystem, true);
        if (set.watch.length) assert.ok(container.args.includes(`--watch-namespaces=${set.watch.join(',')}`), container.args.join(' '));
        for (const np of docs.filter((d) => d.kind === 'NetworkPolicy') as ({ spec: { ingress: { from?: unknown[]; ports: { port: unknown }[] }[] } } & Doc)[]) {
          for (const rule of np.spec.ingress) {
            // Only the webhook port is open to every peer: the API server's address cannot be named portably.
            const webhookOnly = rule.ports.length === 1 && rule.ports[0]!.port === 'webhook';
            assert.ok(webhookOnly || (rule.from && rule.from.length > 0), 'a NetworkPolicy rule without peers would admit everyone');
          }
        }
        for (const wh of docs.filter((d) => d.kind === 'MutatingWebhookConfiguration') as ({ webhooks: Record<string, unknown>[] } & Doc)[]) {
          const hook = wh.webhooks[0]!;
          assert.equal(hook.failurePolicy, 'Ignore');
          assert.equal(hook.sideEffects, 'None');
          const svc = (hook.clientConfig as { service: { name: string; path: string; port: number } }).service;
          assert.equal(svc.path, '/admission/downloadrequests');
          // Its own Service, never the download Service (which the Ingress and service.type expose).
          assert.equal(svc.name, `${RELEASE}-webhook`);
          assert.equal(svc.port, 443);
          assert.deepEqual((hook.rules as { operations: string[] }[])[0]!.operations, ['CREATE', 'UPDATE']);
          assert.ok(!('caBundle' in (hook.clientConfig as object)), 'no caBundle rendered: an upgrade must not blank the one the gateway keeps');
          const webhookSvc = docs.find((d) => d.kind === 'Service' && d.metadata.name === svc.name) as ({ spec: { type: string; ports: { targetPort: string }[] } } & Doc) | undefined;
          assert.equal(webhookSvc?.spec.type, 'ClusterIP');
          assert.equal(webhookSvc?.spec.ports[0]!.targetPort, 'webhook');
          for (const ing of docs.filter((d) => d.kind === 'Ingress')) assert.ok(!JSON.stringify(ing).includes(svc.name), 'the Ingress never routes to the webhook');
          const vap = docs.find((d) => d.kind === 'ValidatingAdmissionPolicy') as ({ spec: { failurePolicy: string; validations: unknown[] } } & Doc) | undefined;
          assert.equal(vap?.spec.failurePolicy, 'Fail');
          assert.equal(vap?.spec.validations.length, 4);
          assert.ok(container.args.some((a) => /^--webhook-listen=/.test(a)) && container.args.includes(`--webhook-service-name=${RELEASE}-webhook`), container.args.join(' '));
        }
      });

      test(`${name}: the rendered RBAC is what the coverage test checks`, async () => {
        const docs = rendered[name] ?? [];
        const rbacKinds = new Set(['Role', 'RoleBinding', 'ClusterRole', 'ClusterRoleBinding']);
        const strip = (d: Doc): unknown => ({ ...d, metadata: { name: d.metadata.name, ...(d.metadata.namespace ? { namespace: d.metadata.namespace } : {}) } });
        // The ClusterRoles for users (userRoles) are not the gateway's own RBAC.
        const userRole = /-(stock-cli|logs|artifacts|contents)$/;
        const got = docs.filter((d) => rbacKinds.has(d.kind) && !userRole.test(d.metadata.name)).map(strip);
        if ((set.values.rbac as { create?: boolean } | undefined)?.create === false) {
          assert.deepEqual(got, []);
          return;
        }
        const sa = (set.values.serviceAccount as { name?: string } | undefined)?.name ?? RELEASE;
        const webhookCaBundle = (set.values.admissionWebhook as { enabled?: boolean } | undefined)?.enabled === true && (set.values.tls as { mode?: string } | undefined)?.mode !== 'certManager';
        const want = (await renderRbac({ releaseNamespace: NAMESPACE, serviceAccount: sa, fullname: RELEASE, watchNamespaces: set.watch, webhookCaBundle })).map(strip);
        // helm orders manifests by kind (install order), the rebuild by template: compare as sets.
        const order = (docs: unknown[]): unknown[] =>
          [...docs].sort((a, b) => {
            const k = (d: unknown): string => { const x = d as Doc; return `${x.kind}/${x.metadata.namespace ?? ''}/${x.metadata.name}`; };
            return k(a) < k(b) ? -1 : k(a) > k(b) ? 1 : 0;
          });
        assert.deepEqual(order(got), order(want));
      });
    }

    test('tenantFilesystemAllow becomes namespace=bucket pairs; false and {} pass no flag', async () => {
      const args = async (...extra: string[]): Promise<string[]> => {
        const r = await template('defaults', ...extra);
        assert.equal(r.code, 0, r.stderr);
        const deployment = parseAllDocuments(r.stdout).map((d) => d.toJS() as Doc | null).find((d) => d?.kind === 'Deployment') as
          { spec: { template: { spec: { containers: { args: string[] }[] } } } } & Doc;
        return deployment.spec.template.spec.containers[0]!.args.filter((a) => a.startsWith('--tenant-filesystem-allow'));
      };
      assert.deepEqual(await args('--values', files.exposed!), ['--tenant-filesystem-allow=team-a=velero-nfs,team-b=velero-nfs,team-b=velero-pvc']);
      assert.deepEqual(await args(), []);
      assert.deepEqual(await args('--set', 'configuration.tenantFilesystemAllow=false'), []);
    });

    test('helm template refuses values the schema rejects and settings that cannot work', async () => {
      for (const bad of [
        ['--set', 'replicaCount=many'],
        ['--set', 'service.type=ExternalName'],
        ['--set', 'ingress.enabled=true'],
        ['--set', 'tls.mode=certManager'],
        ['--set', 'ingress.enabled=true,configuration.fqdn=a.example.com,ingress.tlsMode=reencrypt'],
        // The webhook without the API server's own guard (ValidatingAdmissionPolicy, 1.30+) is refused.
        ['--set', 'admissionWebhook.enabled=true', '--kube-version', '1.29.0'],
        ['--set', 'configuration.tenantFilesystemAllow=true'],
        ['--set', 'configuration.tenantFilesystemAllow=true', '--skip-schema-validation'],
      ]) {
        const r = await template('defaults', ...bad);
        assert.notEqual(r.code, 0, `${bad.join(' ')} rendered`);
      }
    });
  });
}
