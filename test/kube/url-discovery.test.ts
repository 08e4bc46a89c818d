/**
 * URL discovery: the choice itself as pure functions, and against the Kubernetes API test double
 * with the real client library what needs its call log or its faults: --fqdn reads nothing, nodes
 * are watched only for a NodePort, a pre-created Service `velero` is read by name, a failed first read
 * is retried. LoadBalancer, NodePort and ClusterIP Services, real Node objects and every change to
 * them are proven against a real API server in test/e2e/kubernetes.test.ts.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, beforeEach, describe, test } from 'node:test';
import { createKubeClients } from '../../src/kube/client.ts';
import type { KubeClients } from '../../src/kube/client.ts';
import { UrlDiscovery, parseFqdn, pickNodeAddress, urlFromFqdn, urlFromService } from '../../src/kube/url-discovery.ts';
import type { GatewayUrl, NodeLike, ServiceLike } from '../../src/kube/url-discovery.ts';
import { serviceAccount, startKubeApiServer } from '../support/kube-apiserver/index.ts';
import type { KubeApiServer, KubeObject } from '../support/kube-apiserver/index.ts';

const NS = 'velero';

const service = (name: string, spec: Record<string, unknown>, status: Record<string, unknown> = {}): KubeObject => ({
  apiVersion: 'v1',
  kind: 'Service',
  metadata: { name, namespace: NS },
  spec: { selector: { app: 'velero-download-server' }, ...spec },
  status,
});

const HTTPS_PORTS = [
  { name: 'metrics', port: 9090, targetPort: 9090, protocol: 'TCP' },
  { name: 'https', port: 8443, targetPort: 8443, protocol: 'TCP' },
];

/** The next `change` event, or a failure after a few seconds. */
async function nextChange(d: UrlDiscovery): Promise<GatewayUrl> {
  const [current] = (await once(d, 'change', { signal: AbortSignal.timeout(8_000) })) as [GatewayUrl];
  return current;
}

async function waitFor(cond: () => boolean, what: string, ms = 8_000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

describe('parsing --fqdn and choosing from a Service (pure)', () => {
  test('--fqdn forms', () => {
    assert.deepEqual(parseFqdn('velero.example.com'), { host: 'velero.example.com' });
    assert.deepEqual(parseFqdn('https://velero.example.com:8443/'), { host: 'velero.example.com', port: 8443 });
    assert.deepEqual(parseFqdn('[fd00::1]:9443'), { host: 'fd00::1', port: 9443 });
    assert.ok('error' in parseFqdn('http://velero.example.com'));
    assert.ok('error' in parseFqdn('velero.example.com/download'));
    assert.ok('error' in parseFqdn('velero.example.com:70000'));
    assert.ok('error' in parseFqdn('bad_name!'));
    assert.equal(urlFromFqdn('velero.example.com:443').baseUrl, 'https://velero.example.com');
    assert.equal(urlFromFqdn('[fd00::1]:9443').baseUrl, 'https://[fd00::1]:9443');
  });

  test('the Service port: named https, else the one targeting the listener, else the first', () => {
    const base = { namespace: NS, serviceName: 's' };
    const svc = (ports: unknown[]): ServiceLike => ({ spec: { type: 'ClusterIP', ports } as ServiceLike['spec'] });
    assert.equal(urlFromService({ ...base, service: svc(HTTPS_PORTS) }).baseUrl, 'https://s.velero.svc:8443');
    const unnamed = [{ port: 9090, targetPort: 9090 }, { port: 443, targetPort: 8443 }];
    assert.equal(urlFromService({ ...base, service: svc(unnamed), listenPort: 8443 }).baseUrl, 'https://s.velero.svc');
    assert.equal(urlFromService({ ...base, service: svc(unnamed) }).baseUrl, 'https://s.velero.svc:9090');
  });

  test('a pending LoadBalancer falls back to the cluster DNS name and says so', () => {
    const u = urlFromService({ namespace: NS, serviceName: 's', service: { spec: { type: 'LoadBalancer', ports: [{ name: 'https', port: 443 }] } } });
    assert.deepEqual([u.baseUrl, u.source], ['https://s.velero.svc', 'clusterIP']);
    assert.match(u.detail, /pending/);
  });

  test('node choice: Ready nodes in name order, ExternalIP before InternalIP, IPv6 bracketed', () => {
    const n = (name: string, addrs: [string, string][], ready = true): NodeLike => ({
      metadata: { name },
      status: { addresses: addrs.map(([type, address]) => ({ type, address })), conditions: [{ type: 'Ready', status: ready ? 'True' : 'False' }] },
    });
    const nodes = [n('b', [['InternalIP', '10.0.0.2'], ['ExternalIP', '203.0.113.2']]), n('a', [['InternalIP', '10.0.0.1']]), n('c', [['ExternalIP', '203.0.113.3']], false)];
    assert.deepEqual(pickNodeAddress(nodes), { node: 'b', address: '203.0.113.2', type: 'ExternalIP' });
    assert.deepEqual(pickNodeAddress([nodes[1]!, nodes[2]!]), { node: 'a', address: '10.0.0.1', type: 'InternalIP' });
    assert.equal(pickNodeAddress([]), undefined);
    const svc: ServiceLike = { spec: { type: 'NodePort', ports: [{ name: 'https', port: 443, nodePort: 30443 }] } };
    assert.equal(urlFromService({ namespace: NS, serviceName: 's', service: svc, nodes: [n('v6', [['InternalIP', 'fd00::5']])] }).baseUrl, 'https://[fd00::5]:30443');
    const none = urlFromService({ namespace: NS, serviceName: 's', service: svc, nodes: [] });
    assert.deepEqual([none.source, none.baseUrl], ['clusterIP', 'https://s.velero.svc']);
  });
});

describe('URL discovery against the API server', () => {
  let api: KubeApiServer;
  let kube: KubeClients;
  let dir: string;
  const running: UrlDiscovery[] = [];
  const discover = async (opts: Partial<Parameters<typeof UrlDiscovery.start>[1]> = {}): Promise<UrlDiscovery> => {
    const d = await UrlDiscovery.start(kube, { namespace: NS, retryMs: 50, maxRetryMs: 200, ...opts });
    running.push(d);
    return d;
  };

  before(async () => {
    api = await startKubeApiServer({ authorizeCallers: true });
    dir = await mkdtemp(join(tmpdir(), 'vds-url-'));
    const token = api.tokens.serviceAccount(NS, 'velero-download-server');
    // Least privilege: the Service by name in its own namespace; nodes only matter for a NodePort.
    api.rbac.grant(serviceAccount(NS, 'velero-download-server'), [{ apiGroups: [''], resources: ['services'], verbs: ['get', 'list', 'watch'] }], NS);
    api.rbac.grant(serviceAccount(NS, 'velero-download-server'), [{ apiGroups: [''], resources: ['nodes'], verbs: ['list', 'watch'] }]);
    kube = createKubeClients({ kubeconfig: await api.writeKubeconfig(join(dir, 'kubeconfig'), api.kubeconfig(token)), qps: 1000, burst: 1000, timeoutMs: 5_000 });
  });
  beforeEach(async () => {
    await Promise.all(running.splice(0).map((d) => d.stop()));
    for (const s of api.list('v1', 'Service', NS)) api.remove('v1', 'Service', s.metadata.name!, NS);
    for (const n of api.list('v1', 'Node')) api.remove('v1', 'Node', n.metadata.name!);
    api.faults.clear();
    api.calls.clear();
  });
  after(async () => {
    await Promise.all(running.splice(0).map((d) => d.stop()));
    await api?.close();
    await rm(dir, { recursive: true, force: true });
  });

  test('--fqdn wins over the Service, and nothing is read from the API', async () => {
    api.put(service('velero-download-server', { type: 'LoadBalancer', ports: HTTPS_PORTS }, { loadBalancer: { ingress: [{ ip: '198.51.100.7' }] } }));
    const d = await discover({ fqdn: 'velero.example.com' });
    assert.deepEqual(d.current, { baseUrl: 'https://velero.example.com', source: 'fqdn', detail: '--fqdn velero.example.com' });
    assert.equal((await discover({ fqdn: 'dl.example.com:9443' })).current.baseUrl, 'https://dl.example.com:9443');
    assert.equal(api.calls.count(), 0);
    const noKube = await UrlDiscovery.start(undefined, { namespace: NS, fqdn: 'x.example.com' });
    assert.equal(noKube.current.source, 'fqdn');
  });

  test('a LoadBalancer: nodes are not watched (only a NodePort needs them)', async () => {
    api.put(service('velero-download-server', { type: 'LoadBalancer', ports: [{ name: 'https', port: 443, targetPort: 8443 }] }, { loadBalancer: { ingress: [{ ip: '198.51.100.7' }] } }));
    const d = await discover();
    assert.deepEqual([d.current.baseUrl, d.current.source], ['https://198.51.100.7', 'loadBalancer']);
    assert.equal(api.calls.count({ resource: 'nodes' }), 0, 'nodes are not watched unless the Service is a NodePort');
  });

  test('a pre-created Service named velero, found with serviceName velero', async () => {
    api.put(service('velero-download-server', { type: 'ClusterIP', ports: HTTPS_PORTS }));
    api.put(service('velero', { type: 'LoadBalancer', ports: [{ name: 'https', port: 443 }] }, { loadBalancer: { ingress: [{ hostname: 'velero.lb.example.com' }] } }));
    const d = await discover({ serviceName: 'velero' });
    assert.deepEqual([d.current.baseUrl, d.current.source], ['https://velero.lb.example.com', 'loadBalancer']);
    assert.ok(api.calls.list({ resource: 'services' }).every((c) => /fieldSelector=metadata\.name%3Dvelero(&|$)/.test(c.query)), 'only the named Service is read');
  });

  test('a failed first read is retried; a watch cut by the API server going down is restarted', async () => {
    api.put(service('velero-download-server', { type: 'ClusterIP', ports: HTTPS_PORTS }));
    api.faults.add({ match: { resource: 'services', verb: 'list' }, status: 503, times: 2 });
    const d = await discover();
    assert.match(d.current.detail, /could not be read \(HTTP 503\)/);
    await waitFor(() => d.current.baseUrl === 'https://velero-download-server.velero.svc:8443' && !d.current.detail.includes('could not'), 'the retried read');

    await waitFor(() => api.calls.count({ resource: 'services', verb: 'watch', method: 'GET' }) > 0, 'a watch');
    await api.stop();
    api.put(service('velero-download-server', { type: 'LoadBalancer', ports: HTTPS_PORTS }, { loadBalancer: { ingress: [{ ip: '198.51.100.10' }] } }));
    const changed = nextChange(d);
    await api.start();
    assert.equal((await changed).baseUrl, 'https://198.51.100.10:8443');
  });
});
