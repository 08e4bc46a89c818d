/**
 * The URL at which users reach the gateway: `--fqdn` (an
 * Ingress or DNS name) wins; otherwise the gateway's Service: a LoadBalancer's ingress hostname or IP,
 * else a NodePort on a node's ExternalIP (InternalIP as fallback), else the Service's cluster DNS name.
 * The choice is recomputed whenever the Service (or, for a NodePort, the nodes) changes, through
 * the watch helper (watch.ts), which restarts itself after errors.
 *
 * Every replica must compute the same URL from the same objects (otherwise they would take turns
 * rewriting DownloadRequests), so every choice here is deterministic: nodes are taken in name order.
 */
import { EventEmitter } from 'node:events';
import { isIP } from 'node:net';
import type { Logger } from 'pino';
import type { KubeClients } from './client.ts';
import { WatchedCollection, describeApiError } from './watch.ts';
import { parseFqdn } from '../util/fqdn.ts';
import { DEFAULT_SERVICE_NAME } from '../util/names.ts';

export { parseFqdn };

/** How the base URL was chosen. */
export type UrlSource = 'fqdn' | 'loadBalancer' | 'nodePort' | 'clusterIP';

/** The gateway's base URL (no trailing slash), how it was chosen, and a sentence for the log. */
export interface GatewayUrl {
  baseUrl: string;
  source: UrlSource;
  detail: string;
}

/** The fields of a Service this module reads; objects come from typed lists and raw watch events alike. */
export interface ServiceLike {
  metadata?: { name?: string; namespace?: string; resourceVersion?: string };
  spec?: {
    type?: string;
    ports?: { name?: string; port?: number; targetPort?: number | string; nodePort?: number }[];
  };
  status?: { loadBalancer?: { ingress?: { hostname?: string; ip?: string }[] } };
}

/** The fields of a Node this module reads. */
export interface NodeLike {
  metadata?: { name?: string; resourceVersion?: string; deletionTimestamp?: unknown };
  status?: { addresses?: { type?: string; address?: string }[]; conditions?: { type?: string; status?: string }[] };
}

// --- --fqdn -------------------------------------------------------------------------------------



/** `https://host[:port]`, with IPv6 literals bracketed and the default port 443 left out. */
export function httpsUrl(host: string, port?: number): string {
  const h = isIP(host) === 6 ? `[${host}]` : host;
  return `https://${h}${port === undefined || port === 443 ? '' : `:${port}`}`;
}

/** The base URL for `--fqdn`; throws for a value parseFqdn refuses (the config validates it first). */
export function urlFromFqdn(fqdn: string): GatewayUrl {
  const p = parseFqdn(fqdn);
  if ('error' in p) throw new Error(`--fqdn: ${p.error}`);
  return { baseUrl: httpsUrl(p.host, p.port), source: 'fqdn', detail: `--fqdn ${fqdn}` };
}

// --- choosing from the Service --------------------------------------------------------------------

export interface ServiceUrlInput {
  namespace: string;
  serviceName: string;
  /** The Service, or undefined when it does not exist (or has not been read yet). */
  service: ServiceLike | undefined;
  /** Nodes, consulted only for a NodePort Service. */
  nodes?: readonly NodeLike[];
  /** The gateway's HTTPS listener port: picks the Service port that targets it when none is named `https`. */
  listenPort?: number;
  /** Why the Service could not be read, when it could not (for `detail`). */
  serviceProblem?: string;
}

type ServicePort = NonNullable<NonNullable<ServiceLike['spec']>['ports']>[number];

/** The Service port that targets the gateway's HTTPS listener: the one named `https`, else the one targeting `listenPort`, else the first. */
export function pickServicePort(service: ServiceLike, listenPort?: number): ServicePort | undefined {
  const ports = service.spec?.ports ?? [];
  return (
    ports.find((p) => p.name === 'https') ??
    (listenPort === undefined ? undefined : ports.find((p) => p.targetPort === listenPort || (p.targetPort === undefined && p.port === listenPort))) ??
    ports[0]
  );
}

const isReady = (n: NodeLike): boolean => n.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True') === true;

/**
 * The node address a NodePort is reached at: among Ready nodes (all nodes when none is Ready), in
 * name order, the first ExternalIP, else the first InternalIP.
 */
export function pickNodeAddress(nodes: readonly NodeLike[]): { node: string; address: string; type: 'ExternalIP' | 'InternalIP' } | undefined {
  const live = nodes.filter((n) => n.metadata?.deletionTimestamp === undefined || n.metadata.deletionTimestamp === null);
  const ready = live.filter(isReady);
  const candidates = [...(ready.length > 0 ? ready : live)].sort((a, b) => (a.metadata?.name ?? '').localeCompare(b.metadata?.name ?? ''));
  for (const type of ['ExternalIP', 'InternalIP'] as const) {
    for (const n of candidates) {
      const address = n.status?.addresses?.find((a) => a.type === type && a.address)?.address;
      if (address) return { node: n.metadata?.name ?? '', address, type };
    }
  }
  return undefined;
}

/**
 * The base URL from the Service, in the order above (LoadBalancer, NodePort, cluster DNS name). A missing Service still yields its cluster
 * DNS name (on port 443): it is the name the Service will have once someone creates it, and `detail`
 * says it is missing.
 */
export function urlFromService(input: ServiceUrlInput): GatewayUrl {
  const { namespace, serviceName, service } = input;
  const dnsName = `${serviceName}.${namespace}.svc`;
  const ref = `service ${namespace}/${serviceName}`;
  if (!service) {
    const why = input.serviceProblem ? `could not be read (${input.serviceProblem})` : 'not found';
    return { baseUrl: httpsUrl(dnsName), source: 'clusterIP', detail: `${ref} ${why}; using its cluster DNS name on port 443` };
  }
  const port = pickServicePort(service, input.listenPort);
  const type = service.spec?.type ?? 'ClusterIP';
  const svcPort = port?.port ?? 443;
  const clusterIP = (why: string): GatewayUrl => ({
    baseUrl: httpsUrl(dnsName, svcPort),
    source: 'clusterIP',
    detail: `${ref} (${type}${port?.name ? `, port ${port.name}` : ''})${why}: its cluster DNS name`,
  });
  if (type === 'LoadBalancer') {
    const ingress = (service.status?.loadBalancer?.ingress ?? []).find((i) => i.hostname || i.ip);
    const host = ingress?.hostname || ingress?.ip;
    if (!host) return clusterIP(', load balancer ingress still pending');
    return { baseUrl: httpsUrl(host, svcPort), source: 'loadBalancer', detail: `${ref} load balancer ingress ${ingress?.hostname ? 'hostname' : 'IP'} ${host}` };
  }
  if (type === 'NodePort') {
    if (!port?.nodePort) return clusterIP(', no nodePort allocated yet');
    const node = pickNodeAddress(input.nodes ?? []);
    if (!node) return clusterIP(', no node with an ExternalIP or InternalIP');
    return {
      baseUrl: httpsUrl(node.address, port.nodePort),
      source: 'nodePort',
      detail: `${ref} nodePort ${port.nodePort} on node ${node.node} (${node.type} ${node.address})`,
    };
  }
  return clusterIP('');
}

// --- UrlDiscovery --------------------------------------------------------------------------------

export interface UrlDiscoveryOptions {
  /** The gateway's namespace, where its Service lives. */
  namespace: string;
  /** `--service-name` (default velero-download-server; `velero` for a pre-created Service of that name). */
  serviceName?: string;
  /** `--fqdn`: when set, it is the URL and nothing is watched. */
  fqdn?: string;
  /** The gateway's HTTPS listener port, to pick the Service port that targets it. */
  listenPort?: number;
  /** Retry delays of the watches after errors (defaults 1 s, doubling to 30 s). */
  retryMs?: number;
  maxRetryMs?: number;
  log?: Pick<Logger, 'info' | 'warn' | 'debug'>;
}

interface UrlEvents {
  change: [current: GatewayUrl, previous: GatewayUrl];
}

/**
 * The current base URL, kept up to date: `current`, and a `change` event whenever the base URL, its
 * source or its detail changes. Watches the Service by name (list/watch on services in the gateway's
 * namespace) and, only while the Service is a NodePort, the nodes (cluster-wide list/watch).
 */
export class UrlDiscovery extends EventEmitter<UrlEvents> {
  readonly #kube: KubeClients | undefined;
  readonly #opts: UrlDiscoveryOptions & { serviceName: string };
  #current: GatewayUrl;
  #service: WatchedCollection<ServiceLike> | undefined;
  #nodes: WatchedCollection<NodeLike> | undefined;
  #serviceProblem: string | undefined;
  #stopped = false;

  private constructor(kube: KubeClients | undefined, opts: UrlDiscoveryOptions) {
    super();
    this.#kube = kube;
    this.#opts = { ...opts, serviceName: opts.serviceName ?? DEFAULT_SERVICE_NAME };
    this.#current = opts.fqdn ? urlFromFqdn(opts.fqdn) : this.#compute();
  }

  /**
   * Starts discovery; resolves once the Service (and the nodes, for a NodePort) have been read once,
   * or the first attempt failed (then `current` is the cluster DNS name and watches keep retrying).
   * With `fqdn`, no Kubernetes call is made and `kube` may be undefined.
   */
  static async start(kube: KubeClients | undefined, opts: UrlDiscoveryOptions): Promise<UrlDiscovery> {
    const d = new UrlDiscovery(kube, opts);
    if (!opts.fqdn) {
      if (!kube) throw new Error('URL discovery without --fqdn needs a Kubernetes client');
      await d.#startService(kube);
    }
    return d;
  }

  get current(): GatewayUrl {
    return this.#current;
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    await Promise.all([this.#service?.stop(), this.#nodes?.stop()]);
    this.#nodes = undefined;
  }

  async #startService(kube: KubeClients): Promise<void> {
    const { namespace, serviceName } = this.#opts;
    const fieldSelector = `metadata.name=${serviceName}`;
    this.#service = new WatchedCollection<ServiceLike>({
      kube,
      path: `/api/v1/namespaces/${namespace}/services`,
      fieldSelector,
      list: (o) => kube.core.listNamespacedService({ namespace, fieldSelector }, o),
      onChange: () => {
        this.#serviceProblem = undefined;
        this.#update();
      },
      onError: (err, retryInMs) => {
        this.#serviceProblem = describeApiError(err);
        this.#opts.log?.warn({ service: `${namespace}/${serviceName}`, err: this.#serviceProblem, retryInMs }, 'watching the gateway Service failed; retrying');
        this.#update();
      },
      ...this.#retry(),
    });
    await this.#service.start();
    if (this.#service.synced) this.#serviceProblem = undefined;
    this.#update();
    if (this.#nodes) await this.#nodes.start();
    this.#update();
  }

  #retry(): { retryMs?: number; maxRetryMs?: number } {
    return {
      ...(this.#opts.retryMs !== undefined && { retryMs: this.#opts.retryMs }),
      ...(this.#opts.maxRetryMs !== undefined && { maxRetryMs: this.#opts.maxRetryMs }),
    };
  }

  #theService(): ServiceLike | undefined {
    return this.#service?.get(this.#opts.namespace, this.#opts.serviceName);
  }

  /** Nodes are watched only while they matter: a cluster-wide watch costs the API server and needs a ClusterRole. */
  #syncNodeWatch(): void {
    const want = this.#theService()?.spec?.type === 'NodePort' && !this.#stopped;
    if (want && !this.#nodes && this.#kube) {
      const kube = this.#kube;
      this.#nodes = new WatchedCollection<NodeLike>({
        kube,
        path: '/api/v1/nodes',
        list: (o) => kube.core.listNode({}, o),
        onChange: () => this.#update(),
        onError: (err, retryInMs) => this.#opts.log?.warn({ err: describeApiError(err), retryInMs }, 'watching nodes for the NodePort URL failed; retrying'),
        ...this.#retry(),
      });
      void this.#nodes.start();
    } else if (!want && this.#nodes) {
      void this.#nodes.stop();
      this.#nodes = undefined;
    }
  }

  #compute(): GatewayUrl {
    return urlFromService({
      namespace: this.#opts.namespace,
      serviceName: this.#opts.serviceName,
      service: this.#theService(),
      nodes: this.#nodes?.list() ?? [],
      ...(this.#opts.listenPort !== undefined && { listenPort: this.#opts.listenPort }),
      ...(this.#serviceProblem !== undefined && !this.#service?.synced && { serviceProblem: this.#serviceProblem }),
    });
  }

  #update(): void {
    if (this.#stopped) return;
    this.#syncNodeWatch();
    const next = this.#compute();
    const prev = this.#current;
    if (next.baseUrl === prev.baseUrl && next.source === prev.source && next.detail === prev.detail) return;
    this.#current = next;
    this.emit('change', next, prev);
  }
}
