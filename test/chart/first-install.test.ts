/**
 * A first install works in one step, without `lookup` (empty on a first install, under `helm
 * template`, Argo CD and Flux): `helm install` of the chart with the admission webhook against a real
 * kube-apiserver registers the MutatingWebhookConfiguration without a caBundle; the gateway, started
 * as a local process with the flags of the installed Deployment and a token of the chart's own
 * service account (so only the chart's RBAC lets it do anything), creates its certificate Secret and
 * CA ConfigMap and fills the caBundle with its CA; `helm upgrade` afterwards leaves that caBundle be.
 * There is no kubelet: nothing waits for pods, and the gateway stands in for the one pod.
 */
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, test } from 'node:test';
import { curl, freePort, startGateway } from '../support/processes.ts';
import type { GatewayProcess } from '../support/processes.ts';
import { missingTools, startRealCluster } from '../support/real-cluster.ts';
import type { RealCluster } from '../support/real-cluster.ts';
import { CHART_DIR, NAMESPACE, RELEASE, runHelm } from './chart.ts';
import type { Deployment, Values } from './chart.ts';

type Mwc = { metadata: { name: string; resourceVersion: string }; webhooks: { name: string; timeoutSeconds: number; clientConfig: { caBundle?: string } }[] };
type Secret = { type: string; data: Record<string, string> };
type ConfigMap = { data: Record<string, string> };

const VALUES: Values = { admissionWebhook: { enabled: true } };

describe('a first helm install works in one step: the gateway, as the chart\'s service account, fills the webhook\'s caBundle', { skip: missingTools('helm', 'kube-apiserver', 'etcd') }, () => {
  let k: RealCluster;
  let dir: string;
  let adminKubeconfig: string;
  let gw: GatewayProcess | undefined;
  /** The chart's objects, by what the installed release says. */
  const names = { webhookConfiguration: '', certificateSecret: '', caConfigMap: '', serviceAccount: '' };

  before(async () => {
    [k, dir] = await Promise.all([startRealCluster(), mkdtemp(join(tmpdir(), 'vds-first-install-'))]);
    adminKubeconfig = await k.kubeconfig(k.tokens.admin!, 'admin');
  });
  after(async () => {
    await gw?.stop();
    await k?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  const helm = async (...args: string[]): Promise<void> => {
    const r = await runHelm([...args, RELEASE, CHART_DIR, '--namespace', NAMESPACE, '--kubeconfig', adminKubeconfig, '--values', '-'], { input: JSON.stringify(VALUES) });
    assert.equal(r.code, 0, `helm ${args.join(' ')}: ${r.stdout}${r.stderr}`);
  };
  const get = async <T>(path: string): Promise<T> => {
    const r = await k.rest<T>('GET', path);
    assert.equal(r.status, 200, `GET ${path}: HTTP ${r.status} ${JSON.stringify(r.body)}`);
    return r.body;
  };
  const mwc = (): Promise<Mwc> => get<Mwc>(`/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/${names.webhookConfiguration}`);
  const caBundles = async (): Promise<(string | undefined)[]> => (await mwc()).webhooks.map((w) => w.clientConfig.caBundle);

  test('helm install registers the webhook without a caBundle (no lookup, no wait: there is no kubelet)', async () => {
    await helm('install');
    const deployment = await get<Deployment>(`/apis/apps/v1/namespaces/${NAMESPACE}/deployments/${RELEASE}`);
    const args = new Map(deployment.spec.template.spec.containers[0]!.args.map((a) => a.replace(/^--/, '').split(/=(.*)/s, 2) as [string, string]));
    names.webhookConfiguration = args.get('webhook-configuration')!;
    names.certificateSecret = args.get('tls-secret')!;
    names.caConfigMap = args.get('ca-configmap')!;
    names.serviceAccount = deployment.spec.template.spec.serviceAccountName;
    assert.ok(names.webhookConfiguration && names.certificateSecret && names.caConfigMap, `the Deployment passes the names: ${[...args.keys()].join(' ')}`);
    assert.deepEqual(await caBundles(), [undefined], 'rendered without a caBundle');
    // Nothing of the gateway's own exists yet: the first start must create it.
    assert.equal((await k.rest('GET', `/api/v1/namespaces/${NAMESPACE}/secrets/${names.certificateSecret}`)).status, 404);
    assert.equal((await k.rest('GET', `/api/v1/namespaces/${NAMESPACE}/configmaps/${names.caConfigMap}`)).status, 404);
  });

  test('the gateway, with the installed Deployment\'s flags and only the service account\'s token, creates its Secret and CA ConfigMap and fills the caBundle', async () => {
    assert.ok(names.serviceAccount, 'installed');
    const token = await k.serviceAccountToken(NAMESPACE, names.serviceAccount);
    const me = await k.rest<{ status: { userInfo: { username: string } } }>('POST', '/apis/authentication.k8s.io/v1/selfsubjectreviews', { apiVersion: 'authentication.k8s.io/v1', kind: 'SelfSubjectReview' }, { token });
    assert.equal(me.body.status.userInfo.username, `system:serviceaccount:${NAMESPACE}:${names.serviceAccount}`);
    const kubeconfig = await k.kubeconfig(token, 'gateway');

    // The container's arguments, as installed, with its listeners on loopback and its paths in a temp dir.
    const deployment = await get<Deployment>(`/apis/apps/v1/namespaces/${NAMESPACE}/deployments/${RELEASE}`);
    const container = deployment.spec.template.spec.containers[0]!;
    const local: Record<string, string> = { 'state-dir': join(dir, 'state'), 'fs-root': join(dir, 'fs') };
    for (const flag of ['listen', 'metrics-listen', 'webhook-listen']) local[flag] = `127.0.0.1:${await freePort()}`;
    await mkdir(local['fs-root']!);
    // The mounted Velero credential Secret (credentials.useSecret, on by default), as the kubelet would write it.
    local['default-credentials-file'] = join(dir, 'cloud');
    await writeFile(local['default-credentials-file'], '[default]\naws_access_key_id = AKIDEXAMPLE\naws_secret_access_key = not-a-real-secret\n');
    const args = container.args.map((a) => {
      const flag = /^--([a-z-]+)=/.exec(a)?.[1];
      return flag && flag in local ? `--${flag}=${local[flag]}` : a;
    });
    assert.equal(args.filter((a, i) => a !== container.args[i]).length, Object.keys(local).length, 'every listener and path of the Deployment replaced');
    // Without Velero's credential Secret (the volume is optional, so the pod starts with /credentials
    // empty) the gateway stops at start (exit 2, as for every configuration error) and says what is missing, rather than leaving each store SDK
    // to find some other identity.
    const withoutSecret = args.map((a) => (a.startsWith('--default-credentials-file=') ? `--default-credentials-file=${join(dir, 'credentials-not-mounted', 'cloud')}` : a));
    await assert.rejects(
      startGateway([...withoutSecret, `--kubeconfig=${kubeconfig}`], { POD_NAMESPACE: NAMESPACE, KUBECONFIG: '' }),
      (err: Error) => /exited with 2 before listening/.test(err.message) && /--default-credentials-file: \S*credentials-not-mounted\/cloud does not exist/.test(err.message),
    );
    // What the Deployment's env gives the container: its namespace (fieldRef metadata.namespace).
    assert.deepEqual(container.env.map((e) => e.name), ['POD_NAMESPACE']);
    gw = await startGateway([...args, `--kubeconfig=${kubeconfig}`], { POD_NAMESPACE: NAMESPACE, KUBECONFIG: '' });

    // Its certificate Secret, created on the first start.
    const secret = await get<Secret>(`/api/v1/namespaces/${NAMESPACE}/secrets/${names.certificateSecret}`);
    assert.equal(secret.type, 'kubernetes.io/tls');
    const ca = secret.data['ca.crt'];
    assert.ok(ca && secret.data['tls.crt'] && secret.data['tls.key']);
    // The gateway serves with it, under its Service's name: its readiness, verified with that CA.
    const caFile = join(dir, 'ca.crt');
    await writeFile(caFile, Buffer.from(ca, 'base64'));
    const host = `${args.find((a) => a.startsWith('--service-name='))!.split('=')[1]!}.${NAMESPACE}.svc`;
    const port = local['metrics-listen']!.split(':')[1]!;
    const ready = await curl(['--cacert', caFile, '--fail', '--resolve', `${host}:${port}:127.0.0.1`, `https://${host}:${port}/readyz`]);
    assert.equal(ready.code, 0, ready.stderr);
    // The CA ConfigMap and the webhook's caBundle follow, published after the start.
    const deadline = Date.now() + 15_000;
    const published = async (): Promise<{ configMap?: string; caBundles: (string | undefined)[] }> => {
      const cm = await k.rest<ConfigMap>('GET', `/api/v1/namespaces/${NAMESPACE}/configmaps/${names.caConfigMap}`);
      return { ...(cm.status === 200 && { configMap: cm.body.data['ca.crt'] }), caBundles: await caBundles() };
    };
    let seen = await published();
    while ((seen.configMap === undefined || seen.caBundles.some((b) => b === undefined)) && Date.now() < deadline) {
      await sleep(100);
      seen = await published();
    }
    assert.equal(seen.configMap, Buffer.from(ca, 'base64').toString(), 'the CA ConfigMap holds the Secret\'s ca.crt');
    assert.deepEqual(seen.caBundles, [ca], 'the webhook\'s caBundle is the Secret\'s ca.crt');
    // With the service account's rights only, nothing it tried was refused.
    const refused = gw.logs.filter((l) => /forbidden|\b403\b/i.test(JSON.stringify(l)));
    assert.deepEqual(refused, [], 'no API call of the gateway was refused');
  });

  for (const [how, flags] of [['server-side apply', []], ['a client-side three-way merge', ['--server-side=false']]] as const) {
    test(`helm upgrade (${how}) leaves the caBundle the gateway set`, async () => {
      const before = await caBundles();
      assert.ok(before.every((b) => b), 'a caBundle to keep');
      // Stopped, so that nothing could put a blanked caBundle back before it is read.
      assert.equal(await gw?.stop(), 0);
      const timeout = how === 'server-side apply' ? 3 : 4;
      VALUES.admissionWebhook = { enabled: true, timeoutSeconds: timeout };
      await helm('upgrade', ...flags);
      const after = await mwc();
      assert.deepEqual(after.webhooks.map((w) => w.timeoutSeconds), [timeout], 'the upgrade did change the webhook configuration');
      assert.deepEqual(after.webhooks.map((w) => w.clientConfig.caBundle), before);
    });
  }
});
