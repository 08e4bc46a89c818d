/**
 * The chart as the real helm renders it, for the default values and every documented variant:
 * `helm lint --strict`, `helm template --kube-version <the API server's>`, what each rendering must
 * contain, the RBAC it grants (read from the rendered Roles and bindings), and every rendered object
 * applied with server-side dry run to a real kube-apiserver, which checks it against its own schemas
 * and those of the ServiceMonitor, PrometheusRule and Certificate CRDs (test/fixtures/chart-crds).
 * One API server serves the whole file.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { FLAGS } from '../../src/config/config.ts';
import { missingTools, startRealCluster } from '../support/real-cluster.ts';
import type { RealCluster } from '../support/real-cluster.ts';
import {
  CHART_DIR, NAMESPACE, RBAC_KINDS, RELEASE, SIGNING_KEY_SECRET,
  argsOf, boundRoles, deploymentOf, dryRunApply, helmTemplate, installChartCrds, render, runHelm, serverVersion,
} from './chart.ts';
import type { BoundRole, Manifest, PolicyRule, Values } from './chart.ts';

type Spec<T> = Manifest & { spec: T };
const find = <T = Record<string, unknown>>(docs: Manifest[], kind: string, name?: string): Spec<T> => {
  const d = docs.find((x) => x.kind === kind && (name === undefined || x.metadata.name === name));
  assert.ok(d, `${kind}${name ? ` ${name}` : ''} rendered (got ${docs.map((x) => `${x.kind}/${x.metadata.name}`).join(', ')})`);
  return d as Spec<T>;
};
type ServiceSpec = { type: string; ports: { name: string; port: number; targetPort: string; nodePort?: number }[]; loadBalancerIP?: string; loadBalancerSourceRanges?: string[]; externalTrafficPolicy?: string };
type Hook = { clientConfig: { service: { name: string; namespace: string; path: string; port: number }; caBundle?: string }; failurePolicy: string; sideEffects: string; rules: { operations: string[]; resources: string[] }[]; namespaceSelector: Record<string, unknown> };
type Mwc = Manifest & { webhooks: Hook[] };
const mwcOf = (docs: Manifest[]): Mwc => find(docs, 'MutatingWebhookConfiguration') as unknown as Mwc;

/** Objects created in namespaces other than the release namespace: the tests create these namespaces. */
const OTHER_NAMESPACES = ['team-a', 'team-b', 'monitoring'];
const FULLNAME = RELEASE;
/** The service account the rendered Deployment runs as. */
const saOf = (docs: Manifest[]): { namespace: string; name: string } => ({ namespace: NAMESPACE, name: deploymentOf(docs).spec.template.spec.serviceAccountName });

interface Variant {
  values: Values;
  /** Exactly the kinds rendered. */
  kinds: string[];
  check?: (docs: Manifest[]) => void;
}

type AlertRule = { alert: string; expr: string; for: string; labels: Record<string, string>; annotations: { summary: string; description: string } };
/** The alerts of the rendered PrometheusRule, each with a severity, a summary and a description. */
function alertsOf(docs: Manifest[]): AlertRule[] {
  const groups = find<{ groups: { name: string; rules: AlertRule[] }[] }>(docs, 'PrometheusRule').spec.groups;
  assert.equal(groups.length, 1);
  for (const r of groups[0]!.rules) {
    assert.match(r.labels.severity ?? '', /^\w+$/, `${r.alert}: severity`);
    assert.ok(r.annotations.summary && r.annotations.description, `${r.alert}: summary and description`);
  }
  return groups[0]!.rules;
}

/** Pod: the `helm test` hook (helm template renders test hooks). */
const BASE_KINDS = ['ClusterRole', 'ClusterRoleBinding', 'Deployment', 'Pod', 'PodDisruptionBudget', 'Role', 'RoleBinding', 'Service', 'ServiceAccount'];
const WEBHOOK_KINDS = ['MutatingWebhookConfiguration', 'ValidatingAdmissionPolicy', 'ValidatingAdmissionPolicyBinding'];

/** The namespaces where the rendered RBAC lets the gateway read Velero's objects; undefined: every namespace. */
function watchedNamespaces(docs: Manifest[]): (string | undefined)[] {
  return boundRoles(docs, saOf(docs))
    .filter((r) => r.rules.some((x) => x.apiGroups?.includes('velero.io') && x.resources?.includes('backups') && x.verbs.includes('get')))
    .map((r) => r.namespace)
    .sort();
}

/** The webhook as the chart must register it; `selector` is the namespaces it applies to. */
function checkWebhook(docs: Manifest[], selector: Record<string, unknown>): void {
  const hook = mwcOf(docs).webhooks[0]!;
  assert.equal(hook.failurePolicy, 'Ignore', 'a gateway that is down never blocks Velero');
  assert.equal(hook.sideEffects, 'None');
  assert.deepEqual(hook.rules[0]!.operations, ['CREATE', 'UPDATE']);
  assert.deepEqual(hook.rules[0]!.resources, ['downloadrequests', 'downloadrequests/status']);
  assert.ok(!('caBundle' in hook.clientConfig), 'no caBundle rendered: an upgrade must not blank the one the gateway (or cert-manager) keeps');
  assert.deepEqual(hook.namespaceSelector, selector);
  // Its own Service, never the download Service (which service.type and the Ingress expose).
  const svc = hook.clientConfig.service;
  assert.deepEqual(svc, { name: `${FULLNAME}-webhook`, namespace: NAMESPACE, path: '/admission/downloadrequests', port: 443 });
  const webhookSvc = find<ServiceSpec>(docs, 'Service', svc.name);
  assert.equal(webhookSvc.spec.type, 'ClusterIP');
  assert.deepEqual(webhookSvc.spec.ports.map((p) => [p.port, p.targetPort]), [[443, 'webhook']]);
  for (const ing of docs.filter((d) => d.kind === 'Ingress')) assert.ok(!JSON.stringify(ing).includes(svc.name), 'the Ingress never routes to the webhook');
  const args = argsOf(docs);
  assert.equal(args.get('webhook-service-name'), svc.name);
  assert.match(args.get('webhook-listen') ?? '', /:9443$/);
  const vap = find<{ failurePolicy: string; validations: unknown[] }>(docs, 'ValidatingAdmissionPolicy');
  assert.equal(vap.spec.failurePolicy, 'Fail', 'the API server\'s own guard holds when the webhook is down');
  assert.equal(vap.spec.validations.length, 4);
  const binding = find<{ policyName: string; validationActions: string[]; matchResources: { namespaceSelector: unknown } }>(docs, 'ValidatingAdmissionPolicyBinding');
  assert.equal(binding.spec.policyName, vap.metadata.name);
  assert.deepEqual(binding.spec.validationActions, ['Deny']);
  assert.deepEqual(binding.spec.matchResources.namespaceSelector, selector, 'the policy guards the namespaces the webhook serves');
}

/** The rules of the gateway's roles that name Secret `name`, with the namespaces of their roles. */
function secretRules(docs: Manifest[], name: string): { namespace: string | undefined; verbs: string[]; resourceNames: string[] | undefined }[] {
  return boundRoles(docs, saOf(docs)).flatMap((r) =>
    r.rules.filter((x) => x.resources?.includes('secrets') && x.resourceNames?.includes(name)).map((x) => ({ namespace: r.namespace, verbs: x.verbs, resourceNames: x.resourceNames })),
  );
}

type TestPod = Spec<{
  restartPolicy: string;
  automountServiceAccountToken: boolean;
  containers: { image: string; command: string[]; volumeMounts: { name: string; mountPath: string; readOnly?: boolean }[]; securityContext: Record<string, unknown> }[];
  volumes: ({ name: string } & Record<string, unknown>)[];
}>;
const testPodOf = (docs: Manifest[]): TestPod => find<TestPod['spec']>(docs, 'Pod');
const selects = (selector: Record<string, string>, labels: Record<string, string> | undefined): boolean =>
  Object.entries(selector).every(([k, v]) => labels?.[k] === v);

/**
 * The `helm test` Pod: the gateway's own image running its probe (no shell) against /readyz of the
 * metrics Service, trusting only the CA in `caVolume` for the main Service's name; and never selected by
 * anything that selects the gateway's pods (a ready test Pod behind a Service would get downloads).
 */
function checkTestPod(docs: Manifest[], caVolume: Record<string, unknown>): void {
  const pod = testPodOf(docs);
  assert.equal(pod.metadata.annotations?.['helm.sh/hook'], 'test');
  assert.match(pod.metadata.annotations?.['helm.sh/hook-delete-policy'] ?? '', /before-hook-creation/);
  assert.equal(pod.spec.restartPolicy, 'Never');
  assert.equal(pod.spec.automountServiceAccountToken, false, 'it calls no Kubernetes API: no token in the Pod');
  const c = pod.spec.containers[0]!;
  const gateway = deploymentOf(docs).spec.template.spec.containers[0]!;
  assert.equal(c.image, gateway.image, 'the gateway\'s own image');
  const metricsSvc = find<ServiceSpec>(docs, 'Service', `${FULLNAME}-metrics`);
  const port = metricsSvc.spec.ports[0]!.port;
  assert.deepEqual(c.command, [
    '/nodejs/bin/node', 'dist/healthcheck.js', `https://${FULLNAME}-metrics.${NAMESPACE}.svc:${port}/readyz`,
    '--ca=/etc/velero-download-server/ca/ca.crt', `--servername=${FULLNAME}.${NAMESPACE}.svc`,
  ]);
  assert.deepEqual(c.volumeMounts, [{ name: 'ca', mountPath: '/etc/velero-download-server/ca', readOnly: true }]);
  const { name: _, ...source } = pod.spec.volumes.find((v) => v.name === 'ca')!;
  assert.deepEqual(source, caVolume, 'ca.crt only: never tls.key');
  assert.equal(c.securityContext.readOnlyRootFilesystem, true);
  assert.equal(c.securityContext.allowPrivilegeEscalation, false);
  for (const d of docs.filter((x) => x.kind === 'Service' || x.kind === 'PodDisruptionBudget')) {
    const selector = (d as Spec<{ selector: Record<string, string> & { matchLabels?: Record<string, string> } }>).spec.selector;
    assert.ok(!selects(selector.matchLabels ?? selector, pod.metadata.labels), `${d.kind} ${d.metadata.name} does not select the test Pod`);
  }
  assert.ok(!selects(deploymentOf(docs).spec.selector.matchLabels, pod.metadata.labels), 'the Deployment does not select it');
}

const byName = (...names: string[]): Record<string, unknown> => ({ matchExpressions: [{ key: 'kubernetes.io/metadata.name', operator: 'In', values: names }] });

const VARIANTS: Record<string, Variant> = {
  defaults: {
    values: {},
    kinds: BASE_KINDS,
    check(docs) {
      assert.equal(find<ServiceSpec>(docs, 'Service', FULLNAME).spec.type, 'ClusterIP');
      assert.deepEqual(watchedNamespaces(docs), [NAMESPACE]);
      const args = argsOf(docs);
      for (const f of ['webhook-listen', 'webhook-service-name', 'webhook-configuration', 'fqdn', 'watch-namespaces', 'tenant-filesystem-allow']) assert.ok(!args.has(f), `--${f} not passed`);
      assert.equal(args.get('tls-validity'), '8760h');
      assert.equal(deploymentOf(docs).spec.replicas, 2);
      // The two replicas preferably on two nodes; one node still runs both.
      assert.deepEqual(deploymentOf(docs).spec.template.spec.affinity, {
        podAntiAffinity: {
          preferredDuringSchedulingIgnoredDuringExecution: [{
            weight: 100,
            podAffinityTerm: { topologyKey: 'kubernetes.io/hostname', labelSelector: { matchLabels: deploymentOf(docs).spec.selector.matchLabels } },
          }],
        },
      });
      // Velero's default credential Secret (as `velero install` names it), and a missing one reported at start.
      assert.equal(args.get('default-credentials-file'), '/credentials/cloud');
      const creds = deploymentOf(docs).spec.template.spec.volumes.find((v) => v.name === 'cloud-credentials');
      assert.deepEqual(creds?.secret, { secretName: 'cloud-credentials', optional: true, items: [{ key: 'cloud', path: 'cloud' }] });
      assert.ok(deploymentOf(docs).spec.template.spec.containers[0]!.volumeMounts.some((m) => m.name === 'cloud-credentials' && m.mountPath === '/credentials'));
      checkTestPod(docs, { configMap: { name: args.get('ca-configmap'), items: [{ key: 'ca.crt', path: 'ca.crt' }] } });
      // Access users: the Secret by its default name, read and watched by that name only, in the release namespace.
      assert.equal(args.get('access-users-secret'), 'velero-download-server-users');
      for (const f of ['access-users-allow-plaintext', 'access-users-seed-username']) assert.ok(!args.has(f), `--${f} not passed`);
      assert.deepEqual(secretRules(docs, 'velero-download-server-users'), [{ namespace: NAMESPACE, verbs: ['get', 'watch'], resourceNames: ['velero-download-server-users'] }]);
    },
  },
  accessUsersSeed: {
    values: { accessUsers: { secretName: 'ci-users', allowPlaintext: true, seedUsername: 'robot' } },
    kinds: BASE_KINDS,
    check(docs) {
      const args = argsOf(docs);
      assert.deepEqual([args.get('access-users-secret'), args.get('access-users-allow-plaintext'), args.get('access-users-seed-username')], ['ci-users', '', 'robot']);
      assert.deepEqual(secretRules(docs, 'ci-users'), [{ namespace: NAMESPACE, verbs: ['get', 'watch'], resourceNames: ['ci-users'] }]);
      assert.deepEqual(secretRules(docs, 'velero-download-server-users'), []);
    },
  },
  accessUsersOff: {
    values: { accessUsers: { secretName: '' } },
    kinds: BASE_KINDS,
    check(docs) {
      assert.equal(argsOf(docs).get('access-users-secret'), '', 'access users off');
      assert.deepEqual(secretRules(docs, ''), [], 'no rule naming an empty Secret');
      assert.deepEqual(secretRules(docs, 'velero-download-server-users'), []);
    },
  },
  nodePort: {
    values: { service: { type: 'NodePort', nodePort: 30443, externalTrafficPolicy: 'Local', labels: { exposure: 'nodes' } } },
    kinds: BASE_KINDS,
    check(docs) {
      const svc = find<ServiceSpec>(docs, 'Service', FULLNAME);
      assert.equal(svc.spec.type, 'NodePort');
      assert.deepEqual(svc.spec.ports.map((p) => [p.name, p.nodePort]), [['https', 30443]], 'the gateway picks the port named https for its URLs');
      assert.equal(svc.spec.externalTrafficPolicy, 'Local');
      assert.equal(svc.metadata.labels?.exposure, 'nodes');
    },
  },
  loadBalancer: {
    values: {
      service: {
        type: 'LoadBalancer', loadBalancerIP: '198.51.100.7', loadBalancerSourceRanges: ['203.0.113.0/24'],
        annotations: { 'service.beta.kubernetes.io/aws-load-balancer-type': 'nlb' },
      },
    },
    kinds: BASE_KINDS,
    check(docs) {
      const svc = find<ServiceSpec>(docs, 'Service', FULLNAME);
      assert.equal(svc.spec.type, 'LoadBalancer');
      assert.equal(svc.spec.loadBalancerIP, '198.51.100.7');
      assert.deepEqual(svc.spec.loadBalancerSourceRanges, ['203.0.113.0/24']);
      assert.equal(svc.metadata.annotations?.['service.beta.kubernetes.io/aws-load-balancer-type'], 'nlb');
      // Metrics stay inside the cluster whatever exposes the download API.
      assert.equal(find<ServiceSpec>(docs, 'Service', `${FULLNAME}-metrics`).spec.type, 'ClusterIP');
    },
  },
  ingressPassthrough: {
    values: {
      configuration: { fqdn: 'downloads.example.com' },
      ingress: { enabled: true, className: 'nginx', annotations: { 'nginx.ingress.kubernetes.io/ssl-passthrough': 'true' } },
    },
    kinds: [...BASE_KINDS, 'Ingress'],
    check(docs) {
      const ing = find<{ ingressClassName: string; tls?: unknown; rules: { host: string; http: { paths: { backend: { service: { name: string; port: { name: string } } } }[] } }[] }>(docs, 'Ingress');
      assert.equal(ing.spec.ingressClassName, 'nginx');
      assert.equal(ing.spec.tls, undefined, 'passthrough: the controller does not terminate TLS');
      assert.equal(ing.spec.rules[0]!.host, 'downloads.example.com');
      assert.deepEqual(ing.spec.rules[0]!.http.paths[0]!.backend.service, { name: FULLNAME, port: { name: 'https' } });
      assert.equal(argsOf(docs).get('fqdn'), 'downloads.example.com');
    },
  },
  ingressReencrypt: {
    values: {
      configuration: { fqdn: 'backups.example.com:8443' },
      ingress: {
        enabled: true, tlsMode: 'reencrypt', tlsSecretName: 'public-cert',
        annotations: { 'nginx.ingress.kubernetes.io/backend-protocol': 'HTTPS', 'nginx.ingress.kubernetes.io/proxy-ssl-verify': 'on' },
      },
    },
    kinds: [...BASE_KINDS, 'Ingress'],
    check(docs) {
      const ing = find<{ tls: { hosts: string[]; secretName: string }[]; rules: { host: string }[] }>(docs, 'Ingress');
      assert.deepEqual(ing.spec.tls, [{ hosts: ['backups.example.com'], secretName: 'public-cert' }]);
      assert.equal(ing.spec.rules[0]!.host, 'backups.example.com', 'the host without the port');
      assert.equal(argsOf(docs).get('fqdn'), 'backups.example.com:8443');
    },
  },
  certManager: {
    values: {
      configuration: { fqdn: 'backups.example.com' },
      tls: { mode: 'certManager', extraSans: ['203.0.113.10', 'backup.internal'], certManager: { issuerRef: { name: 'internal-ca', kind: 'ClusterIssuer' } } },
      admissionWebhook: { enabled: true },
    },
    kinds: [...BASE_KINDS, ...WEBHOOK_KINDS, 'Certificate'],
    check(docs) {
      const cert = find<{ secretName: string; dnsNames: string[]; ipAddresses: string[]; issuerRef: Record<string, string> }>(docs, 'Certificate');
      const args = argsOf(docs);
      assert.equal(cert.spec.secretName, args.get('tls-secret'), 'cert-manager writes the Secret the gateway reads');
      for (const name of [FULLNAME, `${FULLNAME}.${NAMESPACE}.svc`, 'backups.example.com', 'backup.internal']) assert.ok(cert.spec.dnsNames.includes(name), name);
      assert.deepEqual(cert.spec.ipAddresses, ['203.0.113.10']);
      assert.deepEqual(cert.spec.issuerRef, { name: 'internal-ca', kind: 'ClusterIssuer', group: 'cert-manager.io' });
      // cert-manager's CA injector fills the webhook's caBundle from the Certificate: the gateway does not.
      assert.equal(mwcOf(docs).metadata.annotations?.['cert-manager.io/inject-ca-from'], `${NAMESPACE}/${cert.metadata.name}`);
      assert.ok(!args.has('webhook-configuration'));
      assert.ok(!args.has('tls-validity'), 'the validity is cert-manager\'s');
      checkWebhook(docs, byName(NAMESPACE));
    },
  },
  webhookWatchByName: {
    values: { configuration: { watchNamespaces: ['team-a', 'team-b'] }, admissionWebhook: { enabled: true, timeoutSeconds: 3 } },
    kinds: [...BASE_KINDS, ...WEBHOOK_KINDS],
    check(docs) {
      checkWebhook(docs, byName(NAMESPACE, 'team-a', 'team-b'));
      const args = argsOf(docs);
      assert.equal(args.get('watch-namespaces'), 'team-a,team-b');
      assert.equal(args.get('webhook-configuration'), mwcOf(docs).metadata.name, 'the gateway keeps the caBundle of the configuration the chart registered');
      assert.deepEqual(watchedNamespaces(docs), [NAMESPACE, 'team-a', 'team-b'].sort());
      assert.ok(!mwcOf(docs).metadata.annotations?.['cert-manager.io/inject-ca-from']);
    },
  },
  watchGlob: {
    values: { configuration: { watchNamespaces: ['team-*', 'velero-tenants'] }, admissionWebhook: { enabled: true } },
    kinds: [...BASE_KINDS, ...WEBHOOK_KINDS],
    check(docs) {
      assert.equal(argsOf(docs).get('watch-namespaces'), 'team-*,velero-tenants');
      assert.deepEqual(watchedNamespaces(docs), [undefined], 'a glob: the watched rules are granted cluster-wide, no Role per namespace');
      assert.ok(!docs.some((d) => d.kind === 'Role' && d.metadata.name.endsWith('-watched')));
      checkWebhook(docs, {});
    },
  },
  watchAll: {
    values: { configuration: { watchNamespaces: ['*'] } },
    kinds: BASE_KINDS,
    check(docs) {
      assert.equal(argsOf(docs).get('watch-namespaces'), '*');
      assert.deepEqual(watchedNamespaces(docs), [undefined]);
    },
  },
  filesystem: {
    values: {
      filesystem: {
        volumes: [
          { name: 'nfs', bucket: 'velero-nfs', nfs: { server: 'nfs.example.internal', path: '/exports/velero' } },
          { name: 'host', bucket: 'velero-hostpath', hostPath: { path: '/var/velero', type: 'Directory' } },
          { name: 'pvc', bucket: 'velero-pvc', persistentVolumeClaim: { claimName: 'velero-backups' } },
        ],
      },
    },
    kinds: BASE_KINDS,
    check(docs) {
      const pod = deploymentOf(docs).spec.template.spec;
      const mounts = pod.containers[0]!.volumeMounts.filter((m) => ['nfs', 'host', 'pvc'].includes(m.name));
      assert.deepEqual(mounts, [
        { name: 'nfs', mountPath: '/mnt/velero/velero-nfs', readOnly: true },
        { name: 'host', mountPath: '/mnt/velero/velero-hostpath', readOnly: true },
        { name: 'pvc', mountPath: '/mnt/velero/velero-pvc', readOnly: true },
      ]);
      assert.deepEqual(pod.volumes.find((v) => v.name === 'nfs')?.nfs, { server: 'nfs.example.internal', path: '/exports/velero' });
      assert.deepEqual(pod.volumes.find((v) => v.name === 'host')?.hostPath, { path: '/var/velero', type: 'Directory' });
      assert.deepEqual(pod.volumes.find((v) => v.name === 'pvc')?.persistentVolumeClaim, { claimName: 'velero-backups' });
      assert.equal(argsOf(docs).get('fs-root'), '/mnt/velero');
    },
  },
  filesystemAtRoot: {
    values: { filesystem: { root: '/data/velero', volumes: [{ name: 'backups', persistentVolumeClaim: { claimName: 'velero-backups', readOnly: true } }] } },
    kinds: BASE_KINDS,
    check(docs) {
      const mount = deploymentOf(docs).spec.template.spec.containers[0]!.volumeMounts.find((m) => m.name === 'backups');
      assert.deepEqual(mount, { name: 'backups', mountPath: '/data/velero', readOnly: true }, 'a volume without a bucket is the root itself');
      assert.equal(argsOf(docs).get('fs-root'), '/data/velero');
    },
  },
  // The kubelet's budget covers the preStop sleep, the gateway's own pause and the drain.
  rolloutPreStopSleep: {
    values: { preStopSleepSeconds: 10, configuration: { shutdownDelay: '1.5m', shutdownGrace: '500ms' } },
    kinds: BASE_KINDS,
    check(docs) {
      const pod = deploymentOf(docs).spec.template.spec as unknown as { terminationGracePeriodSeconds: number; containers: { lifecycle?: unknown }[] };
      assert.deepEqual(pod.containers[0]!.lifecycle, { preStop: { sleep: { seconds: 10 } } });
      assert.equal(pod.terminationGracePeriodSeconds, 10 + 90 + 1 + 5, 'sleep + delay + grace (rounded up) + 5 s to exit');
      assert.equal(argsOf(docs).get('shutdown-delay'), '1.5m');
    },
  },
  metricsPlainHttp: {
    values: { metrics: { plainHttp: { enabled: true, port: 9100 } }, networkPolicy: { enabled: true, metricsFrom: [{ podSelector: { matchLabels: { app: 'prometheus' } } }] }, podAnnotations: { team: 'backup' } },
    kinds: [...BASE_KINDS, 'NetworkPolicy'],
    check(docs) {
      assert.equal(argsOf(docs).get('metrics-plain-http-port'), '9100');
      const template = deploymentOf(docs).spec.template as unknown as { metadata: { annotations: Record<string, string> }; spec: { containers: { ports: { name: string; containerPort: number }[] }[] } };
      assert.deepEqual(template.metadata.annotations, { 'prometheus.io/scrape': 'true', 'prometheus.io/port': '9100', 'prometheus.io/path': '/metrics', team: 'backup' });
      assert.ok(template.spec.containers[0]!.ports.some((p) => p.name === 'metrics-http' && p.containerPort === 9100));
      const ingress = find<{ ingress: { ports: { port: string }[]; from?: unknown[] }[] }>(docs, 'NetworkPolicy').spec.ingress;
      // The scrapers' rule (the helm test Pod has a rule of its own, to the HTTPS metrics port only).
      const scrapers = ingress.filter((r) => JSON.stringify(r.from).includes('prometheus'));
      assert.deepEqual(scrapers.map((r) => r.ports.map((p) => p.port)), [['metrics', 'metrics-http']], 'the scrapers admitted to the plain port, no one else');
      assert.ok(!ingress.some((r) => !JSON.stringify(r.from).includes('prometheus') && r.ports.some((p) => p.port === 'metrics-http')), 'only the scrapers reach the plain port');
    },
  },
  serviceMonitor: {
    values: { metrics: { serviceMonitor: { enabled: true, additionalLabels: { release: 'prometheus' } } } },
    kinds: [...BASE_KINDS, 'ServiceMonitor'],
    check(docs) {
      type SmSpec = { selector: { matchLabels: Record<string, string> }; namespaceSelector: { matchNames: string[] }; endpoints: { port: string; scheme: string; tlsConfig: { ca: { configMap?: { name: string; key: string }; secret?: unknown }; serverName: string } }[] };
      const sm = find<SmSpec>(docs, 'ServiceMonitor');
      assert.equal(sm.metadata.labels?.release, 'prometheus');
      const ep = sm.spec.endpoints[0]!;
      assert.equal(ep.scheme, 'https');
      // Prometheus trusts the CA the gateway publishes in --ca-configmap, and never reads the certificate Secret.
      assert.deepEqual(ep.tlsConfig.ca, { configMap: { name: argsOf(docs).get('ca-configmap'), key: 'ca.crt' } });
      assert.equal(ep.tlsConfig.serverName, `${FULLNAME}.${NAMESPACE}.svc`);
      // It selects the metrics Service, and only that one.
      const services = docs.filter((d) => d.kind === 'Service' && d.metadata.namespace === sm.spec.namespaceSelector.matchNames[0]);
      const selected = services.filter((s) => Object.entries(sm.spec.selector.matchLabels).every(([k, v]) => s.metadata.labels?.[k] === v));
      assert.deepEqual(selected.map((s) => s.metadata.name), [`${FULLNAME}-metrics`]);
      assert.ok((find<ServiceSpec>(docs, 'Service', `${FULLNAME}-metrics`).spec.ports).some((p) => p.name === ep.port));
    },
  },
  serviceMonitorElsewhere: {
    values: {
      tls: { caConfigMap: '' },
      metrics: { serviceMonitor: { enabled: true, namespace: 'monitoring', tlsConfig: { insecureSkipVerify: false, ca: { configMap: { name: 'gateway-ca', key: 'ca.crt' } }, serverName: 'velero-download-server.velero.svc' } } },
    },
    kinds: [...BASE_KINDS, 'ServiceMonitor'],
    check(docs) {
      const sm = find<{ endpoints: { tlsConfig: unknown }[] }>(docs, 'ServiceMonitor');
      assert.equal(sm.metadata.namespace, 'monitoring');
      assert.deepEqual(sm.spec.endpoints[0]!.tlsConfig, { insecureSkipVerify: false, ca: { configMap: { name: 'gateway-ca', key: 'ca.crt' } }, serverName: 'velero-download-server.velero.svc' });
      assert.equal(argsOf(docs).get('ca-configmap'), '', 'no CA ConfigMap published');
      checkTestPod(docs, { secret: { secretName: argsOf(docs).get('tls-secret'), items: [{ key: 'ca.crt', path: 'ca.crt' }] } });
      assert.ok(!boundRoles(docs, saOf(docs)).some((r) => r.rules.some((x) => x.resources?.includes('configmaps'))), 'no ConfigMap rules when none is published');
    },
  },
  prometheusRule: {
    values: {
      metrics: {
        prometheusRule: {
          enabled: true, additionalLabels: { release: 'prometheus' }, alertLabels: { team: 'backup' },
          errorRatio: { threshold: 0.07, window: '10m', for: '15m', severity: 'critical' },
          certificateExpiry: { days: 21 },
        },
      },
    },
    kinds: [...BASE_KINDS, 'PrometheusRule'],
    check(docs) {
      const rules = alertsOf(docs);
      assert.equal(find(docs, 'PrometheusRule').metadata.labels?.release, 'prometheus');
      assert.deepEqual(rules.map((r) => r.alert), ['VeleroDownloadServerErrors', 'VeleroDownloadServerCertificateExpiry', 'VeleroDownloadServerKubeReviewErrors']);
      const [errors, expiry, reviews] = rules as [AlertRule, AlertRule, AlertRule];
      // The tuned values land in the expression, the duration and the labels; the others keep their defaults.
      assert.match(errors.expr, /http_requests_total\{code=~"5\.\.",namespace="velero"\}\[10m\]\)\)\s+\/\s+sum by \(namespace, job\) \(rate\(velero_download_server_http_requests_total\{namespace="velero"\}\[10m\]\)\)\s+> 0\.07\s*$/);
      assert.deepEqual([errors.for, errors.labels], ['15m', { severity: 'critical', team: 'backup' }]);
      assert.match(errors.annotations.summary, /More than 7% of/, 'the threshold as a percentage, without float noise');
      assert.equal(expiry.expr.trim(), 'velero_download_server_tls_certificate_expiry_timestamp_seconds{namespace="velero"} - time() < 21 * 86400');
      assert.match(expiry.annotations.summary, /within 21 days/);
      assert.match(reviews.expr, /review_duration_seconds_count\{outcome="error",namespace="velero"\}\[5m\]/);
      assert.deepEqual([reviews.for, reviews.labels], ['10m', { severity: 'warning', team: 'backup' }]);
      // Prometheus' own template syntax reaches the rule as written (helm must not have eaten it).
      for (const r of rules) assert.match(r.annotations.description, /\{\{ \$(value|labels)[^}]*\}\}/, `${r.alert}: description`);
    },
  },
  prometheusRuleElsewhere: {
    values: {
      metrics: {
        prometheusRule: {
          enabled: true, namespace: 'monitoring', annotations: { owner: 'platform' }, selector: 'job="vds-metrics",namespace=~"velero|backup"',
          errorRatio: { enabled: false }, kubeReviewErrors: { enabled: false },
        },
      },
    },
    kinds: [...BASE_KINDS, 'PrometheusRule'],
    check(docs) {
      const pr = find(docs, 'PrometheusRule');
      assert.equal(pr.metadata.namespace, 'monitoring');
      assert.equal(pr.metadata.annotations?.owner, 'platform');
      const rules = alertsOf(docs);
      assert.deepEqual(rules.map((r) => r.alert), ['VeleroDownloadServerCertificateExpiry'], 'only the alerts left on');
      assert.match(rules[0]!.expr, /_seconds\{job="vds-metrics",namespace=~"velero\|backup"\} - time\(\) < 14 \* 86400/);
    },
  },
  networkPolicy: {
    values: {
      networkPolicy: {
        enabled: true,
        from: [{ namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': 'team-a' } }, podSelector: { matchLabels: { app: 'backup-client' } } }],
        cidrs: ['192.0.2.0/24'],
        metricsFrom: [{ namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': 'monitoring' } } }],
      },
      admissionWebhook: { enabled: true },
    },
    kinds: [...BASE_KINDS, ...WEBHOOK_KINDS, 'NetworkPolicy'],
    check(docs) {
      const np = find<{ policyTypes: string[]; ingress: { from?: unknown[]; ports: { port: string }[] }[] }>(docs, 'NetworkPolicy');
      assert.deepEqual(np.spec.policyTypes, ['Ingress']);
      const byPort = Object.fromEntries(np.spec.ingress.map((r) => [r.ports.map((p) => p.port).join(','), r.from]));
      assert.deepEqual(byPort.https, [
        { namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': 'team-a' } }, podSelector: { matchLabels: { app: 'backup-client' } } },
        { ipBlock: { cidr: '192.0.2.0/24' } },
      ]);
      const metricsRules = np.spec.ingress.filter((r) => r.ports.some((p) => p.port === 'metrics'));
      assert.deepEqual(metricsRules.map((r) => r.ports.map((p) => p.port)), [['metrics'], ['metrics']], 'the test Pod gets the metrics port, and nothing else');
      const [testRule, monitoring] = metricsRules as unknown as [{ from: { podSelector: { matchLabels: Record<string, string> } }[] }, { from: unknown[] }];
      assert.deepEqual(monitoring.from, [{ namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': 'monitoring' } } }]);
      assert.equal(testRule.from.length, 1);
      const testSelector = testRule.from[0]!.podSelector.matchLabels;
      assert.ok(selects(testSelector, testPodOf(docs).metadata.labels), 'the rule admits this release\'s test Pod');
      assert.equal(testSelector['app.kubernetes.io/component'], 'test');
      assert.ok(!selects(testSelector, deploymentOf(docs).spec.template.metadata.labels), 'and not the gateway\'s own pods');
      // Only the webhook port is open to every peer: the API server's address cannot be named portably.
      assert.ok('webhook' in byPort && byPort.webhook === undefined);
      assert.equal(np.spec.ingress.length, 4);
    },
  },
  networkPolicyClosed: {
    values: { networkPolicy: { enabled: true }, tests: { enabled: false } },
    kinds: [...BASE_KINDS.filter((k) => k !== 'Pod'), 'NetworkPolicy'],
    check(docs) {
      assert.deepEqual(find<{ ingress: unknown[] }>(docs, 'NetworkPolicy').spec.ingress, [], 'no peers: nothing may connect');
    },
  },
  limitsAndTenants: {
    values: {
      configuration: {
        bindAddress: '::',
        requestTimeout: '10s', sendStallTimeout: '2m', maxConnections: 2048, maxConnectionsPerClient: 16, maxConcurrentDownloads: 128,
        trustedProxies: ['10.42.0.0/16', '192.0.2.1'],
        watchNamespaces: ['team-a', 'team-b'],
        tenantEndpointAllow: ['10.0.0.0/8', '*.minio.svc.cluster.local'],
        tenantFilesystemAllow: { 'team-a': ['velero-nfs'], 'team-b': ['velero-nfs', 'scratch/team-b'] },
        tokenAudiences: ['velero-download-server'], serveAllLocations: true, auditLogFile: '/var/lib/velero-download-server/audit.log',
        logLevel: 'debug', shutdownGrace: '40s', browserPage: false, sessionMaxAge: '30m', extraArgs: ['--authz-allowed-ttl=1m'], extraEnvVars: { NODE_OPTIONS: '--max-old-space-size=384' },
      },
      terminationGracePeriodSeconds: 60,
      caBundle: { existingSecret: 'store-ca' },
      tls: { extraSans: ['203.0.113.10'], validity: '2160h' },
    },
    kinds: BASE_KINDS,
    check(docs) {
      const args = argsOf(docs);
      assert.deepEqual(Object.fromEntries([...args].filter(([k]) => k !== 'mode' && k !== 'state-dir' && k !== 'fs-root' && k !== 'service-name' && k !== 'tls-secret' && k !== 'ca-configmap')), {
        listen: '[::]:8443', 'metrics-listen': '[::]:8085', 'log-level': 'debug', 'shutdown-delay': '5s', 'shutdown-grace': '40s', 'session-max-age': '30m', 'no-ui': '',
        'request-timeout': '10s', 'send-stall-timeout': '2m', 'max-connections': '2048', 'max-connections-per-client': '16', 'max-concurrent-downloads': '128',
        'trusted-proxies': '10.42.0.0/16,192.0.2.1', 'tls-validity': '2160h', 'tls-extra-sans': '203.0.113.10', 'watch-namespaces': 'team-a,team-b',
        'serve-all-locations': '', 'tenant-endpoint-allow': '10.0.0.0/8,*.minio.svc.cluster.local',
        'tenant-filesystem-allow': 'team-a=velero-nfs,team-b=velero-nfs,team-b=scratch/team-b',
        'token-audiences': 'velero-download-server', 'audit-log': '/var/lib/velero-download-server/audit.log',
        'access-users-secret': 'velero-download-server-users', 'ca-bundle': '/etc/velero-download-server/ca-bundle/ca.crt', 'authz-allowed-ttl': '1m',
        'default-credentials-file': '/credentials/cloud',
      });
      const pod = deploymentOf(docs).spec.template.spec;
      assert.ok(pod.containers[0]!.env.some((e) => e.name === 'NODE_OPTIONS' && e.value === '--max-old-space-size=384'));
      assert.deepEqual(pod.volumes.find((v) => v.name === 'ca-bundle')?.secret, { secretName: 'store-ca' });
      assert.equal((pod as unknown as { terminationGracePeriodSeconds: number }).terminationGracePeriodSeconds, 60);
      assert.deepEqual(watchedNamespaces(docs), [NAMESPACE, 'team-a', 'team-b'].sort());
    },
  },
  customNames: {
    values: {
      fullnameOverride: 'vds', tls: { secretName: 'my-certs', caConfigMap: 'my-ca' }, admissionWebhook: { enabled: true },
      image: { repository: 'registry.example/vds', digest: `sha256:${'a'.repeat(64)}` }, podDisruptionBudget: { minAvailable: 1 },
      userRoles: { aggregateLogsToView: true, aggregateToEdit: true },
    },
    kinds: [...BASE_KINDS, ...WEBHOOK_KINDS],
    check(docs) {
      const args = argsOf(docs);
      assert.deepEqual([args.get('tls-secret'), args.get('ca-configmap'), args.get('service-name'), args.get('webhook-configuration')], ['my-certs', 'my-ca', 'vds', `${NAMESPACE}-vds`]);
      assert.equal(mwcOf(docs).metadata.name, `${NAMESPACE}-vds`);
      const c = deploymentOf(docs).spec.template.spec.containers[0]!;
      assert.equal(c.image, `registry.example/vds@sha256:${'a'.repeat(64)}`);
      assert.deepEqual(find<Record<string, unknown>>(docs, 'PodDisruptionBudget').spec.minAvailable, 1);
      const view = docs.find((d) => d.kind === 'ClusterRole' && d.metadata.name === `${NAMESPACE}-vds-logs`);
      assert.equal(view?.metadata.labels?.['rbac.authorization.k8s.io/aggregate-to-view'], 'true');
    },
  },
  minimal: {
    values: {
      rbac: { create: false }, serviceAccount: { create: false, name: 'existing-sa' }, metrics: { enabled: false },
      podDisruptionBudget: { enabled: false }, credentials: { useSecret: false }, userRoles: { create: false }, replicaCount: 1,
    },
    kinds: ['Deployment', 'Service'],
    check(docs) {
      assert.equal(deploymentOf(docs).spec.template.spec.serviceAccountName, 'existing-sa');
      assert.equal(docs.filter((d) => d.kind === 'Service').length, 1, 'no metrics Service');
      assert.ok(!deploymentOf(docs).spec.template.spec.volumes.some((v) => v.name === 'cloud-credentials'));
      assert.ok(!argsOf(docs).has('default-credentials-file'), 'no Secret mounted: no default credential expected');
    },
  },
  placement: {
    values: { podAntiAffinity: 'hard', credentials: { existingSecret: 'velero', key: 'aws' }, tests: { enabled: false } },
    kinds: BASE_KINDS.filter((k) => k !== 'Pod'),
    check(docs) {
      assert.deepEqual(deploymentOf(docs).spec.template.spec.affinity, {
        podAntiAffinity: { requiredDuringSchedulingIgnoredDuringExecution: [{ topologyKey: 'kubernetes.io/hostname', labelSelector: { matchLabels: deploymentOf(docs).spec.selector.matchLabels } }] },
      });
      // The Velero chart's naming: its Secret is named after its release.
      const creds = deploymentOf(docs).spec.template.spec.volumes.find((v) => v.name === 'cloud-credentials');
      assert.deepEqual(creds?.secret, { secretName: 'velero', optional: true, items: [{ key: 'aws', path: 'cloud' }] });
      assert.equal(argsOf(docs).get('default-credentials-file'), '/credentials/cloud');
    },
  },
  ownAffinity: {
    values: { affinity: { nodeAffinity: { requiredDuringSchedulingIgnoredDuringExecution: { nodeSelectorTerms: [{ matchExpressions: [{ key: 'backup', operator: 'Exists' }] }] } } }, podAntiAffinity: 'hard' },
    kinds: BASE_KINDS,
    check(docs) {
      assert.deepEqual(deploymentOf(docs).spec.template.spec.affinity, VARIANTS.ownAffinity!.values.affinity, 'a given affinity replaces the default entirely');
    },
  },
};

/** Every rendering: the Deployment passes only flags the gateway has, and runs hardened. */
function checkDeployment(docs: Manifest[]): void {
  const known = new Map(Object.values(FLAGS).map((f) => [f.name, f.kind]));
  for (const [flag, value] of argsOf(docs)) {
    // A switch may be negated (`--no-ui`), as the gateway's parser allows.
    const name = flag.startsWith('no-') && known.get(flag.slice(3)) === 'boolean' ? flag.slice(3) : flag;
    assert.ok(known.has(name), `--${flag} is not a flag of the gateway`);
    // node:util parseArgs refuses `--switch=value`: switches are passed bare.
    if (known.get(name) === 'boolean') assert.equal(value, '', `--${flag} is a switch: passed bare`);
  }
  assert.equal(argsOf(docs).get('mode'), 'kubernetes');
  const pod = deploymentOf(docs).spec.template.spec;
  const c = pod.containers[0]!;
  for (const [probe, path] of [['startupProbe', '/healthz'], ['livenessProbe', '/healthz'], ['readinessProbe', '/readyz']] as const) {
    assert.deepEqual((c[probe] as { httpGet: unknown }).httpGet, { path, port: 'metrics', scheme: 'HTTPS' }, probe);
  }
  assert.deepEqual(c.env.find((e) => e.name === 'POD_NAMESPACE')?.valueFrom, { fieldRef: { fieldPath: 'metadata.namespace' } });
  assert.equal(pod.securityContext.runAsNonRoot, true);
  assert.equal(pod.securityContext.runAsUser, 65532);
  assert.deepEqual(pod.securityContext.seccompProfile, { type: 'RuntimeDefault' });
  assert.equal(c.securityContext.readOnlyRootFilesystem, true);
  assert.equal(c.securityContext.allowPrivilegeEscalation, false);
  assert.deepEqual((c.securityContext.capabilities as { drop: string[] }).drop, ['ALL']);
  // State only where the root filesystem is not read-only.
  assert.equal(argsOf(docs).get('state-dir'), c.volumeMounts.find((m) => m.name === 'state')?.mountPath);
}

const grants = (r: PolicyRule, group: string, resource: string): boolean => (r.apiGroups ?? []).includes(group) && (r.resources ?? []).includes(resource);

/**
 * Least privilege, on the RBAC the chart rendered for the gateway's service account, against the
 * object names the rendered Deployment passes the gateway (so a rule naming another object fails).
 */
function checkRbac(docs: Manifest[]): void {
  const roles = boundRoles(docs, saOf(docs));
  const args = argsOf(docs);
  const certificate = args.get('tls-secret')!;
  const accessUsers = args.get('access-users-secret');
  const caConfigMap = args.get('ca-configmap')!;
  const service = args.get('service-name')!;
  const webhookConfiguration = args.get('webhook-configuration');
  const rules = (where: (r: BoundRole) => boolean): PolicyRule[] => roles.filter(where).flatMap((r) => r.rules);
  const all = rules(() => true);
  assert.ok(all.length > 0);
  for (const r of all) {
    for (const field of [r.verbs, r.apiGroups ?? [], r.resources ?? []]) assert.ok(!field.includes('*'), `no wildcards: ${JSON.stringify(r)}`);
    assert.ok(!r.verbs.some((v) => ['delete', 'deletecollection', 'escalate', 'bind', 'impersonate'].includes(v)), JSON.stringify(r));
    assert.equal(r.nonResourceURLs, undefined);
  }
  const inRelease = (r: BoundRole): boolean => r.namespace === NAMESPACE && r.kind === 'Role';
  // Secrets: created (RBAC cannot limit create by name) and updated, never patched, only in the
  // release namespace; update and watch only on the gateway's own; elsewhere read one by one by name.
  const secretRules = all.filter((r) => grants(r, '', 'secrets'));
  assert.ok(!secretRules.some((r) => r.verbs.includes('list') || r.verbs.includes('patch')), 'no list or patch on Secrets');
  for (const r of secretRules.filter((x) => x.verbs.includes('update'))) assert.deepEqual(r.resourceNames, [certificate, SIGNING_KEY_SECRET]);
  // Watched: the certificate Secret and, when access users are on, their Secret; each by its name only.
  const watched = secretRules.filter((x) => x.verbs.includes('watch'));
  assert.deepEqual(watched.map((r) => r.resourceNames), [[certificate], ...(accessUsers ? [[accessUsers]] : [])]);
  for (const role of roles.filter((x) => !inRelease(x))) {
    for (const r of role.rules.filter((x) => grants(x, '', 'secrets'))) assert.deepEqual(r.verbs, ['get'], `${role.kind} ${role.name}: Secrets read by name only`);
  }
  assert.ok(rules(inRelease).some((r) => grants(r, '', 'secrets') && r.verbs.includes('create')), 'create on Secrets in the release namespace');
  // The CA ConfigMap: created, then read and updated by name; none of it when none is published.
  const cm = all.filter((r) => grants(r, '', 'configmaps'));
  if (caConfigMap) {
    assert.deepEqual(rules(inRelease).filter((r) => grants(r, '', 'configmaps')), cm, 'ConfigMaps in the release namespace only');
    assert.deepEqual(cm.map((r) => [r.verbs, r.resourceNames]), [[['create'], undefined], [['get', 'update'], [caConfigMap]]]);
  } else {
    assert.deepEqual(cm, []);
  }
  // Its own Service, by name, in the release namespace.
  assert.deepEqual(all.filter((r) => grants(r, '', 'services')), [{ apiGroups: [''], resources: ['services'], resourceNames: [service], verbs: ['list', 'watch'] }]);
  assert.deepEqual(rules(inRelease).filter((r) => grants(r, '', 'services')).length, 1);
  // The webhook configuration: read and patched by name, only when the gateway keeps its caBundle.
  const mwc = all.filter((r) => grants(r, 'admissionregistration.k8s.io', 'mutatingwebhookconfigurations'));
  assert.deepEqual(mwc, webhookConfiguration ? [{ apiGroups: ['admissionregistration.k8s.io'], resources: ['mutatingwebhookconfigurations'], resourceNames: [webhookConfiguration], verbs: ['get', 'patch'] }] : []);
  const crd = all.filter((r) => grants(r, 'apiextensions.k8s.io', 'customresourcedefinitions'));
  assert.deepEqual(crd.map((r) => [r.resourceNames, r.verbs]), [[['downloadrequests.velero.io'], ['get']]]);
  // Volume data: a backup's PodVolumeBackups and DataUploads listed (never watched, never read by
  // name) wherever its Velero objects are read, and Velero's repository password read by name in the
  // release namespace only.
  const volumeRules = roles.filter((x) => x.rules.some((r) => grants(r, 'velero.io', 'podvolumebackups') || grants(r, 'velero.io', 'datauploads')));
  assert.deepEqual(volumeRules.map((x) => x.namespace).sort(), watchedNamespaces(docs));
  for (const r of all.filter((x) => grants(x, 'velero.io', 'podvolumebackups') || grants(x, 'velero.io', 'datauploads'))) {
    assert.deepEqual(r, { apiGroups: ['velero.io'], resources: ['podvolumebackups', 'datauploads'], verbs: ['list'] });
  }
  // The catalog: Backups and Restores listed (never watched) wherever they are read.
  const catalogRoles = roles.filter((x) => x.rules.some((r) => grants(r, 'velero.io', 'backups') && r.verbs.includes('list')));
  assert.deepEqual(catalogRoles.map((x) => x.namespace).sort(), watchedNamespaces(docs));
  for (const r of all.filter((x) => (grants(x, 'velero.io', 'backups') || grants(x, 'velero.io', 'restores')) && x.verbs.includes('list'))) {
    assert.deepEqual(r, { apiGroups: ['velero.io'], resources: ['backups', 'restores'], verbs: ['list'] });
  }
  // Kanister Profiles: read by name (get) wherever Velero's objects are read; never listed or watched.
  const profileRoles = roles.filter((x) => x.rules.some((r) => grants(r, 'cr.kanister.io', 'profiles')));
  assert.deepEqual(profileRoles.map((x) => x.namespace).sort(), watchedNamespaces(docs));
  for (const r of all.filter((x) => (x.apiGroups ?? []).includes('cr.kanister.io'))) {
    assert.deepEqual(r, { apiGroups: ['cr.kanister.io'], resources: ['profiles'], verbs: ['get'] });
  }
  const repoPassword = { apiGroups: [''], resources: ['secrets'], resourceNames: [REPOSITORY_PASSWORD_SECRET], verbs: ['get'] };
  assert.deepEqual(rules(inRelease).filter((r) => r.resourceNames?.includes(REPOSITORY_PASSWORD_SECRET)), [repoPassword]);
  assert.deepEqual(all.filter((r) => r.resourceNames?.includes(REPOSITORY_PASSWORD_SECRET)), [repoPassword], 'named in the release namespace only');
}

/** Velero's repository password Secret, which every Kopia repository Velero makes is keyed with. */
const REPOSITORY_PASSWORD_SECRET = 'velero-repo-credentials';

/**
 * The users' ClusterRoles: backups/volumedata (every file of the backed-up volumes) is granted by
 * -volumedata alone, profiles/snapshots (files of Kanister's Kopia snapshots) by -profile-snapshots
 * alone; like -contents, no value aggregates them into a built-in role.
 */
function checkUserRoles(docs: Manifest[]): void {
  const roles = docs.filter((d) => d.kind === 'ClusterRole' && /-(stock-cli|logs|artifacts|contents|volumedata|profile-snapshots)$/.test(d.metadata.name));
  assert.deepEqual(roles.map((r) => r.metadata.name.replace(/^.*-/, '')).sort(), ['artifacts', 'cli', 'contents', 'logs', 'snapshots', 'volumedata']);
  const grantsSnapshots = roles.filter((r) => (r.rules as PolicyRule[]).some((x) => x.resources?.includes('profiles/snapshots')));
  assert.deepEqual(grantsSnapshots.map((r) => r.metadata.name.replace(/^.*-/, '')), ['snapshots'], 'only -profile-snapshots grants profiles/snapshots');
  assert.deepEqual(grantsSnapshots[0]!.rules, [{ apiGroups: ['cr.kanister.io'], resources: ['profiles/snapshots'], verbs: ['get'] }]);
  const grantsVolumeData = roles.filter((r) => (r.rules as PolicyRule[]).some((x) => x.resources?.includes('backups/volumedata')));
  assert.deepEqual(grantsVolumeData.map((r) => r.metadata.name.replace(/^.*-/, '')), ['volumedata'], 'only -volumedata grants backups/volumedata');
  assert.deepEqual(grantsVolumeData[0]!.rules, [{ apiGroups: ['velero.io'], resources: ['backups/volumedata'], verbs: ['get'] }]);
  for (const r of roles.filter((x) => /-(contents|volumedata|profile-snapshots)$/.test(x.metadata.name))) {
    assert.ok(!Object.keys(r.metadata.labels ?? {}).some((l) => l.startsWith('rbac.authorization.k8s.io/aggregate-to')), `${r.metadata.name} is never aggregated`);
  }
}

describe('the chart, rendered by helm and dry-run applied to the real API server', { skip: missingTools('helm', 'kube-apiserver', 'etcd') }, () => {
  let k: RealCluster;
  let kubeVersion: string;
  const rendered = new Map<string, Manifest[]>();

  before(async () => {
    k = await startRealCluster();
    kubeVersion = await serverVersion(k);
    await installChartCrds(k);
    for (const ns of OTHER_NAMESPACES) await k.namespace(ns);
    // Every namespace of a real cluster has the service account `default` (the controller manager
    // creates it; this API server runs without one): the test Pod runs as it, and admission looks it up.
    const sa = await k.rest('POST', `/api/v1/namespaces/${NAMESPACE}/serviceaccounts`, { apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name: 'default' } });
    assert.ok(sa.status === 201 || sa.status === 409, `ServiceAccount default: HTTP ${sa.status}`);
  });
  after(() => k?.close());

  test('helm is the built release, and renders for the API server\'s version', async () => {
    const v = await runHelm(['version', '--template', '{{ .Version }}']);
    assert.match(v.stdout, /^v4\.\d+\.\d+$/);
    assert.match(kubeVersion, /^v1\.\d+\.\d+$/);
    const docs = await render({}, { kubeVersion, args: ['--set', 'admissionWebhook.enabled=true'] });
    assert.ok(docs.some((d) => d.kind === 'ValidatingAdmissionPolicy'));
  });

  for (const [name, variant] of Object.entries(VARIANTS)) {
    test(`${name}: helm lint --strict passes`, async () => {
      const r = await runHelm(['lint', '--strict', CHART_DIR, '--namespace', NAMESPACE, '--kube-version', kubeVersion, '--values', '-'], { input: JSON.stringify(variant.values) });
      assert.equal(r.code, 0, r.stdout + r.stderr);
    });

    test(`${name}: helm template renders what the values ask for, and the API server accepts every object`, async () => {
      const docs = await render(variant.values, { kubeVersion });
      rendered.set(name, docs);
      // The users' ClusterRoles are the same in every variant: only their presence is checked here.
      assert.deepEqual([...new Set(docs.map((d) => d.kind))].sort(), [...variant.kinds].sort(), 'the kinds rendered');
      for (const d of docs) {
        assert.equal(d.metadata.labels?.['app.kubernetes.io/managed-by'], 'Helm', `${d.kind} ${d.metadata.name} labelled`);
        // part-of names the application this belongs to; which piece an object is, is its component.
        assert.equal(d.metadata.labels?.['app.kubernetes.io/part-of'], 'velero', `${d.kind} ${d.metadata.name}: part-of velero`);
        assert.match(d.metadata.labels?.['app.kubernetes.io/component'] ?? '', /^(gateway|metrics|admission-webhook|test)$/, `${d.kind} ${d.metadata.name}: component`);
      }
      checkDeployment(docs);
      if ((variant.values.rbac as { create?: boolean } | undefined)?.create === false) {
        assert.ok(!docs.some((d) => RBAC_KINDS.has(d.kind)));
      } else {
        checkRbac(docs);
      }
      if ((variant.values.userRoles as { create?: boolean } | undefined)?.create !== false) checkUserRoles(docs);
      variant.check?.(docs);
      const rejected: string[] = [];
      for (const d of docs) await dryRunApply(k, d).catch((err: Error) => rejected.push(err.message));
      assert.deepEqual(rejected, [], 'every rendered object passes the API server\'s validation');
    });
  }

  test('every variant was rendered', () => {
    assert.deepEqual([...rendered.keys()].sort(), Object.keys(VARIANTS).sort());
  });

  test('metrics over plain HTTP are off by default: no flag, no port, no annotations', async () => {
    const docs = await render({}, { kubeVersion });
    assert.ok(!argsOf(docs).has('metrics-plain-http-port'));
    const template = deploymentOf(docs).spec.template as unknown as { metadata: { annotations?: unknown }; spec: { containers: { ports: { name: string }[] }[] } };
    assert.equal(template.metadata.annotations, undefined);
    assert.ok(!template.spec.containers[0]!.ports.some((p) => p.name === 'metrics-http'));
  });

  test('rollouts by default: a 5 s pause, no preStop hook, a termination grace of pause + drain + 5 s; a set one is kept', async () => {
    const docs = await render({}, { kubeVersion });
    const pod = deploymentOf(docs).spec.template.spec as unknown as { terminationGracePeriodSeconds: number; containers: { lifecycle?: unknown }[] };
    assert.equal(argsOf(docs).get('shutdown-delay'), '5s');
    assert.equal(pod.containers[0]!.lifecycle, undefined, 'distroless has no shell; the sleep action is opt-in');
    assert.equal(pod.terminationGracePeriodSeconds, 5 + 25 + 5);
    const set = deploymentOf(await render({ terminationGracePeriodSeconds: 30 }, { kubeVersion })).spec.template.spec as unknown as { terminationGracePeriodSeconds: number };
    assert.equal(set.terminationGracePeriodSeconds, 30, 'exactly the pause + drain is enough');
  });

  test('tenantFilesystemAllow false and {} pass no flag', async () => {
    for (const value of [false, {}]) {
      const args = argsOf(await render({ configuration: { tenantFilesystemAllow: value } }, { kubeVersion }));
      assert.ok(!args.has('tenant-filesystem-allow'), JSON.stringify(value));
    }
  });

  test('helm template refuses values the schema rejects and settings that cannot work', async () => {
    for (const [values, why] of [
      [{ replicaCount: 'many' }, /replicaCount/],
      [{ service: { type: 'ExternalName' } }, /service/],
      [{ ingress: { enabled: true } }, /ingress\.enabled needs configuration\.fqdn/],
      [{ tls: { mode: 'certManager' } }, /needs tls\.certManager\.issuerRef\.name/],
      [{ ingress: { enabled: true, tlsMode: 'reencrypt' }, configuration: { fqdn: 'a.example.com' } }, /reencrypt needs ingress\.tlsSecretName/],
      [{ configuration: { tenantFilesystemAllow: true } }, /tenantFilesystemAllow/],
      [{ terminationGracePeriodSeconds: 29 }, /less than preStopSleepSeconds \+ configuration\.shutdownDelay \+ configuration\.shutdownGrace = 30 s/],
      [{ configuration: { shutdownDelay: '11m' } }, /at most 10m/],
      [{ configuration: { shutdownDelay: 5 } }, /shutdownDelay/],
      [{ preStopSleepSeconds: -1 }, /preStopSleepSeconds/],
      [{ metrics: { plainHttp: { enabled: true, port: 8085 } } }, /metrics\.plainHttp\.port must be a port of its own/],
      [{ podAntiAffinity: 'always' }, /podAntiAffinity/],
      [{ tests: { image: 'busybox' } }, /tests': additional properties 'image'/],
      [{ metrics: { prometheusRule: { enabled: true, selector: 'a="b"} or vector(1) > 0 or x{a="b"' } } }, /prometheusRule\/selector/],
      [{ metrics: { prometheusRule: { enabled: true, alertLabels: { severity: 'none' } } } }, /invalid propertyName 'severity'/],
      [{ metrics: { prometheusRule: { enabled: true, errorRatio: { threshold: 5 } } } }, /errorRatio\/threshold/],
      [{ metrics: { prometheusRule: { enabled: true, errorRatio: { enabled: false }, certificateExpiry: { enabled: false }, kubeReviewErrors: { enabled: false } } } }, /with every alert disabled/],
      [{ filesystem: { volumes: [{ name: 'a', pvc: {} }] } }, /filesystem\/volumes\/0': additional properties 'pvc'/],
      [{ filesystem: { volumes: [{ name: 'a', persistentVolumeClaim: { claimName: 'a' } }, { name: 'b', bucket: 'b', persistentVolumeClaim: { claimName: 'b' } }] } }, /has no bucket/],
    ] as const) {
      const r = await helmTemplate(values, { kubeVersion });
      assert.notEqual(r.code, 0, `${JSON.stringify(values)} rendered`);
      assert.match(r.stderr, why);
    }
    // The schema-less path: the template's own check of the old all-or-nothing switch.
    const skipped = await helmTemplate({ configuration: { tenantFilesystemAllow: true } }, { kubeVersion, args: ['--skip-schema-validation'] });
    assert.notEqual(skipped.code, 0);
    assert.match(skipped.stderr, /true no longer/);
    // Without the schema the template still refuses a selector that could reshape an expression.
    for (const selector of ['a="b"} or vector(1) > 0 or x{a="b"', 'a="b" # the rest', 'a="b"\n']) {
      const r = await helmTemplate({ metrics: { prometheusRule: { enabled: true, selector } } }, { kubeVersion, args: ['--skip-schema-validation'] });
      assert.notEqual(r.code, 0, `${JSON.stringify(selector)} rendered`);
      assert.match(r.stderr, /selector holds label matchers only/);
    }
    // The webhook without the API server's own guard (ValidatingAdmissionPolicy, 1.30+) is refused.
    const old = await helmTemplate({ admissionWebhook: { enabled: true } }, { kubeVersion: 'v1.29.0' });
    assert.notEqual(old.code, 0);
    assert.match(old.stderr, /needs Kubernetes 1\.30 or later/);
  });

  test('the dry run fails with the API server\'s message for an object it rejects', async () => {
    const docs = await render(VARIANTS.serviceMonitor!.values, { kubeVersion });
    const svc = find<ServiceSpec>(docs, 'Service', FULLNAME);
    await assert.rejects(dryRunApply(k, { ...svc, spec: { ...svc.spec, type: 'Bogus' } }), /Service velero\/velero-download-server \(HTTP 422\): .*Unsupported value: "Bogus"/);
    // An unknown field (strict field validation), in a built-in kind and in a CRD's schema.
    const deployment = deploymentOf(docs);
    await assert.rejects(dryRunApply(k, { ...deployment, spec: { ...deployment.spec, replica: 2 } }), /\.spec\.replica: field not declared in schema/);
    const sm = find<{ endpoints: Record<string, unknown>[] }>(docs, 'ServiceMonitor');
    await assert.rejects(dryRunApply(k, { ...sm, spec: { ...sm.spec, endpoints: [{ ...sm.spec.endpoints[0], scheme: 'gopher' }] } }), /ServiceMonitor .*scheme/);
    const pr = find<{ groups: { name: string; rules: Record<string, unknown>[] }[] }>(await render(VARIANTS.prometheusRule!.values, { kubeVersion }), 'PrometheusRule');
    const group = pr.spec.groups[0]!;
    await assert.rejects(dryRunApply(k, { ...pr, spec: { groups: [{ ...group, rules: [{ ...group.rules[0], for: 'ten minutes' }] }] } }), /PrometheusRule .*for/);
    // And nothing was persisted by the dry runs.
    assert.equal((await k.rest('GET', `/apis/apps/v1/namespaces/${NAMESPACE}/deployments/${FULLNAME}`)).status, 404);
  });
});
