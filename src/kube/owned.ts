/**
 * One namespaced Secret or ConfigMap that the gateway owns and that every replica may write (the
 * serving certificate, the URL-signing keys, the published CA). Replicas never coordinate: each
 * reads, creates when absent and updates on the resourceVersion it read, and whoever loses a race
 * (409) reads and uses the winner's object. That create-if-absent and conflict handling lives here
 * once; callers decide what to write.
 *
 * Errors name the object and the HTTP status (or "timed out", ...), never the response body.
 */
import type { V1ConfigMap, V1Secret } from '@kubernetes/client-node';
import type { KubeClients } from './client.ts';
import { describeApiFailure, statusOf } from './client.ts';
import { NEVER_ABORTED } from '../util/abortable.ts';

/** The kinds an owned object can be. */
export type OwnedKind = 'Secret' | 'ConfigMap';
/** The object type of a kind. */
export type OwnedObjectOf<K extends OwnedKind> = K extends 'Secret' ? V1Secret : V1ConfigMap;

/** The writer recorded in managedFields unless told otherwise. */
export const DEFAULT_FIELD_MANAGER = 'velero-download-server';

export interface OwnedObjectOptions<K extends OwnedKind> {
  kind: K;
  namespace: string;
  name: string;
  /** Recorded as the writer in managedFields; default {@link DEFAULT_FIELD_MANAGER}. */
  fieldManager?: string;
  /** Ends every call when aborted (the owner's lifetime); each call is also bounded by the client's timeout. */
  signal?: AbortSignal;
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
  read(kube: KubeClients, ns: string, name: string, o: Parameters<Parameters<KubeClients['call']>[1]>[0]): Promise<unknown>;
  create(kube: KubeClients, ns: string, body: unknown, fieldManager: string, o: Parameters<Parameters<KubeClients['call']>[1]>[0]): Promise<unknown>;
  replace(kube: KubeClients, ns: string, name: string, body: unknown, fieldManager: string, o: Parameters<Parameters<KubeClients['call']>[1]>[0]): Promise<unknown>;
}

const CALLS: Record<OwnedKind, Calls> = {
  Secret: {
    read: (k, namespace, name, o) => k.core.readNamespacedSecret({ namespace, name }, o),
    create: (k, namespace, body, fieldManager, o) => k.core.createNamespacedSecret({ namespace, body: body as V1Secret, fieldManager }, o),
    replace: (k, namespace, name, body, fieldManager, o) => k.core.replaceNamespacedSecret({ namespace, name, body: body as V1Secret, fieldManager }, o),
  },
  ConfigMap: {
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
}

function failed(doing: string, err: unknown): Error {
  return new Error(`${doing} failed (${describeApiFailure(err)})`, { cause: err });
}
