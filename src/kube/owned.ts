/**
 * One namespaced Secret or ConfigMap that the gateway owns and that every replica may write (the
 * serving certificate, the URL-signing keys, the published CA). Replicas never coordinate: each
 * reads, creates when absent and updates on the resourceVersion it read, and whoever loses a race
 * (409) reads and uses the winner's object. That create-if-absent and conflict handling lives here
 * once, with the watch that follows the object; callers decide what to write.
 *
 * Errors name the object and the HTTP status (or "timed out", ...), never the response body.
 */
import type { V1ConfigMap, V1Secret } from '@kubernetes/client-node';
import type { KubeClients } from './client.ts';
import { describeApiFailure, statusOf } from './client.ts';
import { WatchedCollection } from './watch.ts';
import type { Listed } from './watch.ts';
import { NEVER_ABORTED } from '../util/abortable.ts';

/** The kinds an owned object can be. */
export type OwnedKind = 'Secret' | 'ConfigMap';
/** The object type of a kind. */
export type OwnedObjectOf<K extends OwnedKind> = K extends 'Secret' ? V1Secret : V1ConfigMap;

/** The writer recorded in managedFields unless told otherwise. */
export const DEFAULT_FIELD_MANAGER = 'velero-download-server';
/** The label (value {@link MANAGED_BY}) on the objects the gateway creates and keeps. */
export const MANAGED_BY_LABEL = 'app.kubernetes.io/managed-by';
export const MANAGED_BY = 'velero-download-server';

export interface OwnedObjectOptions<K extends OwnedKind> {
  kind: K;
  namespace: string;
  name: string;
  /** Recorded as the writer in managedFields; default {@link DEFAULT_FIELD_MANAGER}. */
  fieldManager?: string;
  /** Ends every call when aborted (the owner's lifetime); each call is also bounded by the client's timeout. */
  signal?: AbortSignal;
}

/** What {@link OwnedObject.watch} tells. Neither may throw. */
export interface OwnedWatchHandlers<T> {
  /** A version of the object seen: the one found when the watch starts, then every change. */
  onChange(object: T): void;
  /** The object disappeared (seen in the watch, or missing when read again after a 410 Gone). */
  onDelete(object: T): void;
  /** The watch failed; it is restarted after `retryInMs`. */
  onError?(err: unknown, retryInMs: number): void;
}

/**
 * Whether resourceVersion `a` is older than `b` of the same object. resourceVersions are opaque, but
 * etcd's are integers; this only guards against acting on a stale view, so anything else compares as
 * not older.
 */
export function isOlderVersion(a: string | undefined, b: string | undefined): boolean {
  if (a === undefined || b === undefined || !/^\d+$/.test(a) || !/^\d+$/.test(b)) return false;
  return BigInt(a) < BigInt(b);
}

/** The outcome of a create-if-absent. */
export interface Created<T> {
  /** The object as stored: ours, or the one another writer created first. */
  object: T;
  /** False when another writer created it first (409) and `object` is theirs. */
  created: boolean;
}

/** The outcome of an update on a read resourceVersion. */
export interface Updated<T> {
  /** The object as stored: ours, or the version another writer stored first. */
  object: T;
  /** False when another writer changed it since it was read (409) and `object` is theirs. */
  won: boolean;
}

interface Calls {
  plural: string;
  read(kube: KubeClients, ns: string, name: string, o: Parameters<Parameters<KubeClients['call']>[1]>[0]): Promise<unknown>;
  create(kube: KubeClients, ns: string, body: unknown, fieldManager: string, o: Parameters<Parameters<KubeClients['call']>[1]>[0]): Promise<unknown>;
  replace(kube: KubeClients, ns: string, name: string, body: unknown, fieldManager: string, o: Parameters<Parameters<KubeClients['call']>[1]>[0]): Promise<unknown>;
}

const CALLS: Record<OwnedKind, Calls> = {
  Secret: {
    plural: 'secrets',
    read: (k, namespace, name, o) => k.core.readNamespacedSecret({ namespace, name }, o),
    create: (k, namespace, body, fieldManager, o) => k.core.createNamespacedSecret({ namespace, body: body as V1Secret, fieldManager }, o),
    replace: (k, namespace, name, body, fieldManager, o) => k.core.replaceNamespacedSecret({ namespace, name, body: body as V1Secret, fieldManager }, o),
  },
  ConfigMap: {
    plural: 'configmaps',
    read: (k, namespace, name, o) => k.core.readNamespacedConfigMap({ namespace, name }, o),
    create: (k, namespace, body, fieldManager, o) => k.core.createNamespacedConfigMap({ namespace, body: body as V1ConfigMap, fieldManager }, o),
    replace: (k, namespace, name, body, fieldManager, o) => k.core.replaceNamespacedConfigMap({ namespace, name, body: body as V1ConfigMap, fieldManager }, o),
  },
};

/**
 * Read, create-if-absent and update-on-resourceVersion for one Secret or ConfigMap.
 *
 * - {@link read}: 404 → undefined.
 * - {@link create}: 409 (someone created it first) → the winner's object, `created: false`.
 * - {@link update}: an update carrying the resourceVersion that was read; 409 (someone wrote it
 *   since) → the winner's object, `won: false`. Never a blind overwrite.
 */
export class OwnedObject<K extends OwnedKind> {
  readonly kind: K;
  readonly namespace: string;
  readonly name: string;
  readonly #kube: KubeClients;
  readonly #fieldManager: string;
  readonly #signal: AbortSignal;

  constructor(kube: KubeClients, opts: OwnedObjectOptions<K>) {
    this.#kube = kube;
    this.kind = opts.kind;
    this.namespace = opts.namespace;
    this.name = opts.name;
    this.#fieldManager = opts.fieldManager ?? DEFAULT_FIELD_MANAGER;
    this.#signal = opts.signal ?? NEVER_ABORTED;
  }

  /** `Kind namespace/name`, for messages. */
  get ref(): string {
    return `${this.kind} ${this.namespace}/${this.name}`;
  }

  /** The object, or undefined when it does not exist. */
  async read(): Promise<OwnedObjectOf<K> | undefined> {
    try {
      return (await this.#kube.call(this.#signal, (o) => CALLS[this.kind].read(this.#kube, this.namespace, this.name, o))) as OwnedObjectOf<K>;
    } catch (err) {
      if (statusOf(err) === 404) return undefined;
      throw failed(`reading ${this.ref}`, err);
    }
  }

  /** Creates the object unless it exists; when another writer created it first, returns theirs. */
  async create(body: OwnedObjectOf<K>): Promise<Created<OwnedObjectOf<K>>> {
    const named = { ...body, metadata: { ...body.metadata, name: this.name, namespace: this.namespace } };
    try {
      const object = (await this.#kube.call(this.#signal, (o) => CALLS[this.kind].create(this.#kube, this.namespace, named, this.#fieldManager, o))) as OwnedObjectOf<K>;
      return { object, created: true };
    } catch (err) {
      if (statusOf(err) !== 409) throw failed(`creating ${this.ref}`, err);
    }
    const winner = await this.read();
    if (winner === undefined) throw new Error(`${this.ref} was created by another writer and deleted again meanwhile; try again`);
    return { object: winner, created: false };
  }

  /**
   * Writes `body`, which must carry the resourceVersion it was derived from; when the object changed
   * since (409), returns the version stored now instead, with `won: false`.
   */
  async update(body: OwnedObjectOf<K>): Promise<Updated<OwnedObjectOf<K>>> {
    // managedFields sent back would replace the server's record of field owners.
    const { managedFields: _m, ...meta } = body.metadata ?? {};
    if (!meta.resourceVersion) throw new Error(`updating ${this.ref}: no resourceVersion to update on (a blind update could overwrite another writer's)`);
    const named = { ...body, metadata: { ...meta, name: this.name, namespace: this.namespace } };
    try {
      const object = (await this.#kube.call(this.#signal, (o) => CALLS[this.kind].replace(this.#kube, this.namespace, this.name, named, this.#fieldManager, o))) as OwnedObjectOf<K>;
      return { object, won: true };
    } catch (err) {
      if (statusOf(err) !== 409) throw failed(`updating ${this.ref}`, err);
    }
    const winner = await this.read();
    if (winner === undefined) throw new Error(`${this.ref} was deleted while being updated`);
    return { object: winner, won: false };
  }

  /**
   * Follows the object through the watch helper; call `start` and `stop` on what is returned. The
   * watch selects the one name, and the "list" it starts from (and relists from after a 410 Gone) is
   * a read of that object: `get` and `watch` on that name are all the RBAC it needs.
   */
  watch(handlers: OwnedWatchHandlers<OwnedObjectOf<K>>, retry: { retryMs?: number; maxRetryMs?: number } = {}): WatchedCollection<OwnedObjectOf<K>> {
    const calls = CALLS[this.kind];
    return new WatchedCollection<OwnedObjectOf<K>>({
      kube: this.#kube,
      path: `/api/v1/namespaces/${encodeURIComponent(this.namespace)}/${calls.plural}`,
      fieldSelector: `metadata.name=${this.name}`,
      list: async (o): Promise<Listed<OwnedObjectOf<K>>> => {
        try {
          const object = (await calls.read(this.#kube, this.namespace, this.name, o)) as OwnedObjectOf<K>;
          // The object's own resourceVersion is a point in the collection's history to watch from.
          return { metadata: { resourceVersion: object.metadata?.resourceVersion ?? '' }, items: [object] };
        } catch (err) {
          // Absent: watched from "now" on, its creation arrives as an event.
          if (statusOf(err) === 404) return { metadata: { resourceVersion: '' }, items: [] };
          throw err;
        }
      },
      onChange: (type, object) => (type === 'delete' ? handlers.onDelete(object) : handlers.onChange(object)),
      ...(handlers.onError && { onError: (err: unknown, ms: number) => handlers.onError!(err, ms) }),
      ...retry,
    });
  }
}

function failed(doing: string, err: unknown): Error {
  return new Error(`${doing} failed (${describeApiFailure(err)})`, { cause: err });
}
