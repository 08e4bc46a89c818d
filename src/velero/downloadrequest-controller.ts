/**
 * The DownloadRequest controller: tells a Velero client where to fetch a DownloadRequest's file from
 * the gateway. For every request in the watched namespaces whose target resolves (Restore →
 * Backup → BackupStorageLocation) to a location that opts in, it records
 * `<base>/v1/namespaces/<ns>/downloadrequests/<name>` as the annotation
 * `download-server.velero.io/url`, and as `status.veleroServerURL` only when the installed CRD
 * declares that field (stock Velero's does not, and the API server would prune it silently).
 *
 * Velero's own controller owns `status.phase`, `status.downloadURL` and `status.expiration`: every
 * write here is a JSON merge patch naming only our two fields, carrying the resourceVersion it was
 * computed from, so a concurrent replica's identical write fails with 409 instead of landing twice.
 */
import { PatchStrategy, setHeaderOptions } from '@kubernetes/client-node';
import type { ConfigurationOptions } from '@kubernetes/client-node';
import type { Logger } from 'pino';
import type { KubeClients } from '../kube/client.ts';
import { statusOf } from '../kube/client.ts';
import type { KubeObject } from '../kube/objects.ts';
import type { GatewayUrl } from '../kube/url-discovery.ts';
import { WatchedCollection, describeApiError } from '../kube/watch.ts';
import type { WatchEvent } from '../kube/watch.ts';
import { URL_ANNOTATION, downloadRequestUrl, optsIn, targetOf } from './downloadrequests.ts';
import type { StorageLocations } from './downloadrequests.ts';
import { namespaceMatcher } from './namespaces.ts';
import { nonEmptyString } from '../util/strings.ts';

export const DOWNLOADREQUEST_CRD = 'downloadrequests.velero.io';

/** What the installed DownloadRequest CRD allows. */
export interface CrdCapabilities {
  /** `status.veleroServerURL` is declared in the v1 schema. */
  veleroServerURL: boolean;
  /** The v1 version has a `/status` subresource (then status is written there). */
  statusSubresource: boolean;
}

/** Reads the capabilities from a CustomResourceDefinition object (apiextensions.k8s.io/v1, as JSON). */
export function crdCapabilities(crd: unknown): CrdCapabilities {
  type Version = { name?: string; storage?: boolean; schema?: { openAPIV3Schema?: Schema }; subresources?: { status?: unknown } };
  type Schema = { properties?: Record<string, Schema | undefined> };
  const versions = ((crd as { spec?: { versions?: Version[] } } | null)?.spec?.versions ?? []);
  const v = versions.find((x) => x.name === 'v1') ?? versions.find((x) => x.storage);
  const status = v?.schema?.openAPIV3Schema?.properties?.status;
  return {
    veleroServerURL: status?.properties?.veleroServerURL !== undefined,
    statusSubresource: v?.subresources?.status !== undefined && v.subresources.status !== null,
  };
}

/** The part of UrlDiscovery the controller needs. */
export interface BaseUrlSource {
  readonly current: GatewayUrl;
  on(event: 'change', listener: (current: GatewayUrl, previous: GatewayUrl) => void): unknown;
  off(event: 'change', listener: (current: GatewayUrl, previous: GatewayUrl) => void): unknown;
}

export interface DownloadRequestControllerOptions {
  /** The gateway's own namespace, always watched. */
  namespace: string;
  /** `--watch-namespaces`: names and `*` globs. */
  watchNamespaces: readonly string[];
  /** `--serve-all-locations`: every location opts in, no annotation needed. */
  serveAllLocations: boolean;
  urls: BaseUrlSource;
  /** Finds a target's location for the opt-in rule: the resolver, so its namespace checks apply here too. */
  locations: StorageLocations;
  /** How often the CRD's schema is read again (default 5 min). */
  crdRecheckMs?: number;
  /** Retry delay after a failed write or read (default 1 s, doubling to maxRetryMs, default 60 s). */
  retryMs?: number;
  maxRetryMs?: number;
  /** Requests reconciled at once (default 4). */
  concurrency?: number;
  log?: Pick<Logger, 'info' | 'warn' | 'debug'>;
  /** The clock, for expiration (tests). */
  now?: () => number;
}

const GROUP = { group: 'velero.io', version: 'v1', plural: 'downloadrequests' } as const;
const MERGE = (o: ConfigurationOptions): ConfigurationOptions => setHeaderOptions('Content-Type', PatchStrategy.MergePatch, o);
const NO_CAPS: CrdCapabilities = { veleroServerURL: false, statusSubresource: false };
/** The controller's reads are the gateway's own work, not a caller's: they wait for their budget. */
const BACKGROUND = { budget: 'background' } as const;

/**
 * Watches DownloadRequests and records their gateway URL. Scope, chosen for least privilege: without
 * a glob in `--watch-namespaces`, one namespaced list/watch per namespace (a Role in each suffices);
 * with a glob, one cluster-wide list/watch filtered by name (namespaces created later match without a
 * restart, at the price of a ClusterRole to list and watch downloadrequests).
 */
export class DownloadRequestController {
  readonly #kube: KubeClients;
  readonly #opts: DownloadRequestControllerOptions;
  readonly #serves: (namespace: string) => boolean;
  readonly #stop = new AbortController();
  readonly #watches = new Map<string, WatchedCollection<KubeObject>>();
  readonly #clusterWide: boolean;
  #caps: CrdCapabilities = NO_CAPS;
  #capsTimer: NodeJS.Timeout | undefined;
  // Work queue: keys `ns/name`, each reconciled by at most one worker at a time.
  readonly #pending = new Set<string>();
  readonly #running = new Set<string>();
  readonly #retries = new Map<string, { attempt: number; timer: NodeJS.Timeout }>();
  /**
   * Versions of each request that our own writes have superseded: the cache may still hold one of them
   * until the events of those writes arrive, and acting on it would only earn a 409.
   */
  readonly #superseded = new Map<string, Set<string>>();
  #idle: (() => void)[] = [];
  readonly #onUrl = (current: GatewayUrl, previous: GatewayUrl): void => {
    if (current.baseUrl === previous.baseUrl) return;
    this.#opts.log?.info({ baseUrl: current.baseUrl, previous: previous.baseUrl }, 'gateway URL changed; updating unexpired DownloadRequests');
    this.#enqueueAll();
  };

  private constructor(kube: KubeClients, opts: DownloadRequestControllerOptions) {
    this.#kube = kube;
    this.#opts = opts;
    this.#serves = namespaceMatcher(opts.namespace, opts.watchNamespaces);
    this.#clusterWide = opts.watchNamespaces.some((p) => p.includes('*'));
  }

  /**
   * Reads the CRD, starts the watches and queues every existing request (those created before the
   * start included). Resolves after the first list of each watch was attempted; failures are retried.
   */
  static async start(kube: KubeClients, opts: DownloadRequestControllerOptions): Promise<DownloadRequestController> {
    const c = new DownloadRequestController(kube, opts);
    await c.#refreshCaps();
    c.#capsTimer = setInterval(() => void c.#refreshCaps(), opts.crdRecheckMs ?? 300_000);
    c.#capsTimer.unref();
    opts.urls.on('change', c.#onUrl);
    const namespaces = c.#clusterWide ? [''] : [...new Set([opts.namespace, ...opts.watchNamespaces])];
    for (const ns of namespaces) c.#watches.set(ns, c.#watchOf(ns));
    await Promise.all([...c.#watches.values()].map((r) => r.start()));
    opts.log?.info(
      { scope: c.#clusterWide ? 'cluster' : namespaces, serveAllLocations: opts.serveAllLocations, statusField: c.#caps.veleroServerURL },
      'DownloadRequest controller started',
    );
    return c;
  }

  /** A DownloadRequest as the watch last saw it, without an API call; undefined when not seen (yet). */
  get(namespace: string, name: string): KubeObject | undefined {
    return this.#cached(`${namespace}/${name}`);
  }

  /** The CRD capabilities as last read. */
  get capabilities(): CrdCapabilities {
    return this.#caps;
  }

  /** Resolves when no request is queued or being reconciled (scheduled retries aside). */
  whenIdle(): Promise<void> {
    if (this.#pending.size === 0 && this.#running.size === 0) return Promise.resolve();
    return new Promise((resolve) => this.#idle.push(resolve));
  }

  async stop(): Promise<void> {
    this.#stop.abort();
    this.#opts.urls.off('change', this.#onUrl);
    clearInterval(this.#capsTimer);
    for (const r of this.#retries.values()) clearTimeout(r.timer);
    this.#retries.clear();
    this.#pending.clear();
    await Promise.all([...this.#watches.values()].map((r) => r.stop()));
    this.#settle();
  }

  #watchOf(ns: string): WatchedCollection<KubeObject> {
    const kube = this.#kube;
    return new WatchedCollection<KubeObject>({
      kube,
      path: ns ? `/apis/velero.io/v1/namespaces/${ns}/downloadrequests` : '/apis/velero.io/v1/downloadrequests',
      list: (o) =>
        (ns ? kube.custom.listNamespacedCustomObject({ ...GROUP, namespace: ns }, o) : kube.custom.listClusterCustomObject(GROUP, o)) as Promise<{ items: KubeObject[] }>,
      onChange: (type, obj) => this.#onChange(type, obj),
      onError: (err, retryInMs) =>
        this.#opts.log?.warn({ namespace: ns || '*', err: describeApiError(err), retryInMs }, 'watching DownloadRequests failed; retrying'),
      ...(this.#opts.retryMs !== undefined && { retryMs: this.#opts.retryMs }),
    });
  }

  #onChange(type: WatchEvent, obj: KubeObject): void {
    const ns = obj.metadata?.namespace ?? '';
    if (!this.#serves(ns)) return;
    const key = `${ns}/${obj.metadata?.name ?? ''}`;
    if (type === 'delete') {
      this.#forget(key);
      return;
    }
    this.#enqueue(key);
  }

  #forget(key: string): void {
    const r = this.#retries.get(key);
    if (r) clearTimeout(r.timer);
    this.#retries.delete(key);
    this.#superseded.delete(key);
  }

  #cached(key: string): KubeObject | undefined {
    const [ns = '', name = ''] = key.split('/');
    return (this.#clusterWide ? this.#watches.get('') : this.#watches.get(ns))?.get(ns, name);
  }

  #enqueueAll(): void {
    for (const r of this.#watches.values()) {
      for (const o of r.list()) if (this.#serves(o.metadata?.namespace ?? '')) this.#enqueue(`${o.metadata?.namespace ?? ''}/${o.metadata?.name ?? ''}`);
    }
  }

  #enqueue(key: string): void {
    if (this.#stop.signal.aborted) return;
    this.#pending.add(key);
    this.#pump();
  }

  #pump(): void {
    const limit = this.#opts.concurrency ?? 4;
    for (const key of this.#pending) {
      if (this.#running.size >= limit) break;
      if (this.#running.has(key)) continue; // reconciled again once the current run ends
      this.#pending.delete(key);
      this.#running.add(key);
      void this.#work(key).finally(() => {
        this.#running.delete(key);
        this.#pump();
        this.#settle();
      });
    }
  }

  #settle(): void {
    if ((this.#pending.size > 0 && !this.#stop.signal.aborted) || this.#running.size > 0) return;
    const waiters = this.#idle;
    this.#idle = [];
    for (const w of waiters) w();
  }

  async #work(key: string): Promise<void> {
    try {
      await this.#reconcile(key);
      const r = this.#retries.get(key);
      if (r) clearTimeout(r.timer);
      this.#retries.delete(key);
    } catch (err) {
      if (this.#stop.signal.aborted) return;
      const attempt = (this.#retries.get(key)?.attempt ?? 0) + 1;
      const delay = Math.min((this.#opts.retryMs ?? 1_000) * 2 ** (attempt - 1), this.#opts.maxRetryMs ?? 60_000);
      this.#opts.log?.warn({ downloadRequest: key, err: describeApiError(err), retryInMs: delay }, 'recording the gateway URL on a DownloadRequest failed; retrying');
      const timer = setTimeout(() => this.#enqueue(key), delay);
      timer.unref();
      this.#retries.set(key, { attempt, timer });
    }
  }

  async #reconcile(key: string): Promise<void> {
    const dr = this.#cached(key);
    if (!dr?.metadata?.name || !dr.metadata.namespace) return;
    const meta = dr.metadata as NonNullable<KubeObject['metadata']> & { deletionTimestamp?: unknown };
    if (meta.deletionTimestamp || this.#expired(dr)) return;
    const rv = meta.resourceVersion ?? '';
    if (this.#superseded.get(key)?.has(rv)) return; // our own write's event is on its way
    // The cache only moves forward: once it holds a newer version, none of the superseded ones comes back.
    this.#superseded.delete(key);
    const { namespace, name } = meta as { namespace: string; name: string };
    const url = downloadRequestUrl(this.#opts.urls.current.baseUrl, namespace, name);
    const caps = this.#caps;
    const annotationOk = meta.annotations?.[URL_ANNOTATION] === url;
    const statusOk = !caps.veleroServerURL || dr.status?.veleroServerURL === url;
    if (annotationOk && statusOk) return;
    if (!(await this.#optedIn(dr, namespace))) return;

    const signal = this.#stop.signal;
    const statusOnMain = caps.veleroServerURL && !caps.statusSubresource && !statusOk;
    let current: KubeObject = dr;
    const superseded = (): void => {
      const set = this.#superseded.get(key) ?? new Set<string>();
      set.add(rv);
      this.#superseded.set(key, set);
    };
    try {
      if (!annotationOk || statusOnMain) {
        const body = {
          metadata: { resourceVersion: rv, annotations: { [URL_ANNOTATION]: url } },
          ...(statusOnMain ? { status: { veleroServerURL: url } } : {}),
        };
        current = (await this.#kube.call(signal, (o) => this.#kube.custom.patchNamespacedCustomObject({ ...GROUP, namespace, name, body }, MERGE(o)))) as KubeObject;
        superseded();
      }
      if (caps.veleroServerURL && caps.statusSubresource && !statusOk) {
        const from = current.metadata?.resourceVersion ?? rv;
        const body = { metadata: { resourceVersion: from }, status: { veleroServerURL: url } };
        current = (await this.#kube.call(signal, (o) => this.#kube.custom.patchNamespacedCustomObjectStatus({ ...GROUP, namespace, name, body }, MERGE(o)))) as KubeObject;
        superseded();
        this.#superseded.get(key)?.add(from);
      }
    } catch (err) {
      // Deleted meanwhile, or changed since we looked: the watch brings the newer version (or the delete).
      const code = statusOf(err);
      if (code === 404 || code === 409) return;
      throw err;
    }
    if (caps.veleroServerURL && current.status?.veleroServerURL !== url) {
      // The server dropped the field: the CRD changed under us. Stop writing it until it is declared again.
      this.#caps = { ...this.#caps, veleroServerURL: false };
      this.#opts.log?.warn({ crd: DOWNLOADREQUEST_CRD }, 'status.veleroServerURL was pruned by the API server; writing only the annotation');
    }
    this.#opts.log?.debug({ downloadRequest: key, url }, 'recorded the gateway URL');
  }

  #expired(dr: KubeObject): boolean {
    const exp = nonEmptyString(dr.status?.expiration);
    const t = exp === undefined ? NaN : Date.parse(exp);
    return Number.isFinite(t) && t <= (this.#opts.now ?? Date.now)();
  }

  /** Whether the request names a target the gateway serves and its location opts in. */
  async #optedIn(dr: KubeObject, namespace: string): Promise<boolean> {
    const t = targetOf(dr);
    return t !== undefined && optsIn({ namespace, ...t.target }, this.#opts.locations, this.#opts.serveAllLocations, this.#stop.signal, BACKGROUND);
  }

  /** Reads the CRD; a change of what it allows re-queues every request. Unreadable (e.g. no RBAC): annotation only. */
  async #refreshCaps(): Promise<void> {
    let next: CrdCapabilities;
    try {
      const crd: unknown = await this.#kube.call(this.#stop.signal, (o) =>
        this.#kube.custom.getClusterCustomObject({ group: 'apiextensions.k8s.io', version: 'v1', plural: 'customresourcedefinitions', name: DOWNLOADREQUEST_CRD }, o) as Promise<unknown>,
      );
      next = crdCapabilities(crd);
    } catch (err) {
      if (this.#stop.signal.aborted) return;
      this.#opts.log?.warn({ crd: DOWNLOADREQUEST_CRD, err: describeApiError(err) }, 'could not read the DownloadRequest CRD; recording the gateway URL as an annotation only');
      next = NO_CAPS;
    }
    const prev = this.#caps;
    this.#caps = next;
    if (prev.veleroServerURL !== next.veleroServerURL || prev.statusSubresource !== next.statusSubresource) {
      this.#opts.log?.info({ crd: DOWNLOADREQUEST_CRD, ...next }, 'DownloadRequest CRD capabilities');
      this.#enqueueAll();
    }
  }
}
