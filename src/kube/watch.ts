/**
 * The one watch helper: a list+watch cache of one collection, on client-node's informer (the
 * `ListWatch` that `makeInformer` returns, built here directly because `makeInformer` takes no field
 * selector, and the gateway watches its Service and its certificate Secret by name).
 *
 * client-node's informer already resumes a watch the API server ends from the last resourceVersion
 * (no relist), relists after 410 Gone, and resumes at once after the client's inactivity timeout.
 * This module adds what it leaves to its user:
 * - one back-off: the informer stops on a failed list or watch, and here it is restarted after a
 *   delay of `retryMs` doubling to `maxRetryMs` (1 s to 30 s); a watch that ends cleanly but at once
 *   (sooner than {@link HEALTHY_WATCH_MS}) waits the same delay, so a server that drops every watch is
 *   not hammered. The delay is reset once a list succeeds, a watch delivers, or a watch lasted.
 * - a watch that ends cleanly after lasting resumes at once: the API server ending watches every 30
 *   to 60 minutes is no fault. The informer's own delay grows on every clean end without events, up
 *   to 30 s, however long the watch lasted: measured against the API test double with a quiet
 *   collection cut every 1.5 s, makeInformer as is stayed down 0, 1, 2, 4, 8, 16, 30, 30 s after
 *   successive cuts (changes meanwhile arrive that late), this helper about 10 ms each time;
 * - stopping: a watch still connecting when {@link WatchedCollection.stop} is called is ended as soon
 *   as it connects, and nothing starts after a stop;
 * - bookmarks are asked for, so a quiet collection's resourceVersion stays fresh (fewer 410s);
 * - lists and watches are charged to the client's background budget.
 * No `timeoutSeconds` is named: the API server then ends each watch after its --min-request-timeout
 * times a random factor of 1 to 2 (30 to 60 minutes by default), which spreads the reconnections of
 * many replicas and lets the cluster's operator set it; a silent, dead connection is caught by the
 * client's inactivity timeout either way.
 */
import { ListWatch, Watch } from '@kubernetes/client-node';
import type { ConfigurationOptions, KubernetesListObject, KubernetesObject } from '@kubernetes/client-node';
import { setTimeout as sleep } from 'node:timers/promises';
import type { KubeClients } from './client.ts';
import { describeApiFailure, statusOf } from './client.ts';

/** A watch that lasted this long and ended cleanly was healthy: the next one starts at once. */
export const HEALTHY_WATCH_MS = 1_000;

/** Objects a watch keeps: anything with a name, a namespace and a resourceVersion. */
export interface Watchable {
  metadata?: { name?: string; namespace?: string; resourceVersion?: string };
}

export type WatchEvent = 'add' | 'update' | 'delete';

/** A list: its items and the resourceVersion to watch from. */
export interface Listed<T> {
  metadata?: { resourceVersion?: string };
  items?: T[];
}

export interface WatchOptions<T extends Watchable> {
  kube: KubeClients;
  /** The collection's path, e.g. `/api/v1/namespaces/velero/services`. */
  path: string;
  /** Lists the collection (run under the client's limiter, signal and timeout), with the same field selector. */
  list: (options: ConfigurationOptions) => Promise<Listed<T>>;
  /** Restricts the watch, e.g. `metadata.name=velero-download-server`. */
  fieldSelector?: string;
  /** Every change, also those found by a relist (after a 410 Gone). Must not throw. */
  onChange: (type: WatchEvent, obj: T) => void;
  /** A failed list or watch; the watch is restarted after `retryInMs`. */
  onError?: (err: unknown, retryInMs: number) => void;
  /** First delay after an error (default 1 s), doubled up to maxRetryMs (default 30 s). */
  retryMs?: number;
  maxRetryMs?: number;
}

/** A short, token-free description of an API failure for logs and `detail`. */
export function describeApiError(err: unknown): string {
  // A watch that fails to start carries its status as statusCode.
  const watchStatus = (err as { statusCode?: unknown } | null)?.statusCode;
  return statusOf(err) === undefined && typeof watchStatus === 'number' ? `HTTP ${watchStatus}` : describeApiFailure(err);
}

type WatchCallback = Parameters<Watch['watch']>[2];
type DoneCallback = Parameters<Watch['watch']>[3];

/** client-node's Watch, made to stop with the collection, ask for bookmarks and wait for its budget. */
class BoundWatch extends Watch {
  /** When the last watch request was made, to tell a healthy watch from one that ends at once. */
  startedAt = 0;
  readonly #kube: KubeClients;
  readonly #signal: AbortSignal;
  readonly #delivered: () => void;

  constructor(kube: KubeClients, signal: AbortSignal, delivered: () => void) {
    super(kube.kc);
    this.#kube = kube;
    this.#signal = signal;
    this.#delivered = delivered;
  }

  override async watch(path: string, params: Record<string, unknown>, callback: WatchCallback, done: DoneCallback): Promise<AbortController> {
    const ended = new AbortController();
    ended.abort();
    try {
      await this.#kube.call(this.#signal, async () => undefined);
    } catch (err) {
      // Aborted: the collection was stopped, nothing is to be told.
      if (!this.#signal.aborted) done(err);
      return ended;
    }
    if (this.#signal.aborted) return ended;
    this.startedAt = Date.now();
    const delivering: WatchCallback = (phase, obj, raw) => {
      this.#delivered();
      callback(phase, obj, raw);
    };
    let controller: AbortController;
    try {
      controller = await super.watch(path, { ...params, allowWatchBookmarks: true }, delivering, done);
    } catch (err) {
      // Before any request (no cluster, credentials that cannot be loaded): the informer must hear of it, not throw.
      done(err);
      return ended;
    }
    // Stopped while connecting: the informer could not abort what it did not have yet.
    if (this.#signal.aborted) controller.abort();
    return controller;
  }
}

/**
 * A list+watch cache of one collection that keeps itself up to date until {@link stop}: `get`,
 * `list`, and `onChange` for every change.
 */
export class WatchedCollection<T extends Watchable> {
  readonly #opts: WatchOptions<T>;
  readonly #stop = new AbortController();
  readonly #informer: ListWatch<KubernetesObject>;
  readonly #watch: BoundWatch;
  readonly #baseRetryMs: number;
  #retryMs: number;
  #retryTimer: NodeJS.Timeout | undefined;
  #synced = false;
  #started: Promise<void> | undefined;

  constructor(opts: WatchOptions<T>) {
    this.#opts = opts;
    this.#baseRetryMs = opts.retryMs ?? 1_000;
    this.#retryMs = this.#baseRetryMs;
    const signal = this.#stop.signal;
    this.#watch = new BoundWatch(opts.kube, signal, () => (this.#retryMs = this.#baseRetryMs));
    const list = async (): Promise<KubernetesListObject<KubernetesObject>> => {
      const listed = await opts.kube.call(signal, (o) => opts.list(o));
      this.#synced = true;
      this.#retryMs = this.#baseRetryMs;
      return { metadata: listed.metadata ?? {}, items: listed.items ?? [] };
    };
    this.#informer = new ListWatch<KubernetesObject>(opts.path, this.#watch, list, false, undefined, opts.fieldSelector, {
      delayFn: () => this.#reconnectDelay(),
    });
    for (const type of ['add', 'update', 'delete'] as const) this.#informer.on(type, (obj) => opts.onChange(type, obj as T));
    this.#informer.on('error', (err: unknown) => this.#failed(err));
  }

  /** True once a list has succeeded. */
  get synced(): boolean {
    return this.#synced;
  }

  /** Starts watching; resolves after the first list (and watch) attempt, whether it succeeded or not (see `synced`). */
  start(): Promise<void> {
    this.#started ??= this.#informer.start();
    return this.#started;
  }

  /** Ends the watch and any retry; nothing starts afterwards. */
  async stop(): Promise<void> {
    this.#stop.abort();
    clearTimeout(this.#retryTimer);
    await this.#informer.stop();
  }

  get(namespace: string, name: string): T | undefined {
    return this.#informer.get(name, namespace) as T | undefined;
  }

  list(): T[] {
    return [...this.#informer.list()] as T[];
  }

  /** The current back-off delay; the next one is twice as long. */
  #backOff(): number {
    const delay = this.#retryMs;
    this.#retryMs = Math.min(delay * 2, this.#opts.maxRetryMs ?? 30_000);
    return delay;
  }

  /** The informer stopped on an error: start it again after the back-off delay. */
  #failed(err: unknown): void {
    if (this.#stop.signal.aborted) return;
    const delay = this.#backOff();
    this.#opts.onError?.(err, delay);
    clearTimeout(this.#retryTimer);
    this.#retryTimer = setTimeout(() => void this.#informer.start(), delay);
  }

  /** Before the informer watches again after a clean end: at once after a watch that lasted, else the back-off delay. */
  async #reconnectDelay(): Promise<void> {
    if (Date.now() - this.#watch.startedAt >= HEALTHY_WATCH_MS) {
      this.#retryMs = this.#baseRetryMs;
      return;
    }
    // Resolves (never rejects) on stop: the informer awaits this outside any catch.
    await sleep(this.#backOff(), undefined, { signal: this.#stop.signal }).catch(() => undefined);
  }
}
