/**
 * The object store behind the test API server: one global resourceVersion counter, an event history
 * for watches that resume from a resourceVersion, and the write semantics code under test relies on:
 * AlreadyExists / Conflict / NotFound, status subresources (main-resource writes keep the stored status),
 * metadata.generation, no-op updates that change nothing (no new resourceVersion, no event), finalizers,
 * and structural pruning of unknown `status` fields as declared by the CRD in the store.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { isDeepStrictEqual } from 'node:util';
import { ApiError, alreadyExists, badRequest, conflict, gone, invalid, noRoute, notFound } from './errors.ts';
import { jsonPatch, mergePatch } from './patch.ts';
import { apiVersionOf, crdName, findResource } from './resources.ts';
import type { ResourceType, Served } from './resources.ts';
import type { Predicate } from './selectors.ts';

export interface ObjectMeta {
  name?: string;
  generateName?: string;
  namespace?: string;
  uid?: string;
  resourceVersion?: string;
  generation?: number;
  creationTimestamp?: string;
  deletionTimestamp?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  finalizers?: string[];
  [key: string]: unknown;
}

export interface KubeObject {
  apiVersion?: string;
  kind?: string;
  metadata: ObjectMeta;
  [key: string]: unknown;
}

export type EventType = 'ADDED' | 'MODIFIED' | 'DELETED' | 'BOOKMARK' | 'ERROR';
export interface WatchEvent {
  type: EventType;
  object: unknown;
}

interface Change {
  rv: number;
  rt: ResourceType;
  type: 'ADDED' | 'MODIFIED' | 'DELETED';
  object: KubeObject;
  old?: KubeObject;
}

interface Watcher {
  rt: ResourceType;
  namespace: string;
  matches: Predicate;
  send: (e: WatchEvent) => void;
}

const HISTORY_LIMIT = 10_000;
const DNS1123 = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const now = (): string => new Date().toISOString().replace(/\.\d{3}Z$/, 'Z');
const CRDS = findResource('apiextensions.k8s.io', 'v1', 'customresourcedefinitions')!;

export interface StoreOptions {
  /** Drop `status` fields the CRD's schema does not declare, as structural CRDs do (default true). */
  pruneUnknownStatusFields?: boolean;
}

export class Store implements Served {
  #rv = 0;
  #objects = new Map<string, KubeObject>();
  #history: Change[] = [];
  #compactedRv = 0;
  #watchers = new Set<Watcher>();
  #prune: boolean;

  constructor(opts: StoreOptions = {}) {
    this.#prune = opts.pruneUnknownStatusFields ?? true;
  }

  /** The latest resourceVersion handed out (what a LIST reports). */
  get resourceVersion(): string {
    return String(this.#rv);
  }

  // --- what is served -------------------------------------------------------------------------

  #crd(rt: ResourceType): KubeObject | undefined {
    return this.#objects.get(key(CRDS, '', crdName(rt)));
  }

  #crdVersion(rt: ResourceType): Record<string, unknown> | undefined {
    const versions = (this.#crd(rt)?.spec as { versions?: Record<string, unknown>[] } | undefined)?.versions;
    return versions?.find((v) => v.name === rt.version);
  }

  served(rt: ResourceType): boolean {
    return !rt.custom || this.#crd(rt) !== undefined;
  }

  hasStatus(rt: ResourceType): boolean {
    if (!rt.custom) return rt.statusSubresource === true;
    return (this.#crdVersion(rt)?.subresources as { status?: unknown } | undefined)?.status !== undefined;
  }

  // --- reads ----------------------------------------------------------------------------------

  get(rt: ResourceType, namespace: string, name: string): KubeObject | undefined {
    const o = this.#objects.get(key(rt, namespace, name));
    return o && structuredClone(o);
  }

  /** Objects of one type, in one namespace ('' = all), sorted by namespace and name. */
  list(rt: ResourceType, namespace = '', matches: Predicate = () => true): KubeObject[] {
    const prefix = `${rt.group}/${rt.resource}/`;
    return [...this.#objects.entries()]
      .filter(([k, o]) => k.startsWith(prefix) && (!namespace || o.metadata.namespace === namespace) && matches(o))
      .sort(([a], [b]) => a.localeCompare(b))
      .map(([, o]) => structuredClone(o));
  }

  // --- writes through the API -----------------------------------------------------------------

  create(rt: ResourceType, namespace: string, body: KubeObject): KubeObject {
    const obj = structuredClone(body);
    const meta = (obj.metadata ??= {});
    if (rt.namespaced && meta.namespace && meta.namespace !== namespace) {
      throw badRequest('the namespace of the provided object does not match the namespace sent on the request');
    }
    if (!meta.name && meta.generateName) meta.name = meta.generateName + randomBytes(4).toString('hex').slice(0, 5);
    const name = meta.name ?? '';
    if (!name) throw invalid(rt, '', 'metadata.name', 'Required value: name or generateName is required');
    if (name.length > 253 || !DNS1123.test(name)) {
      throw invalid(rt, name, 'metadata.name', `Invalid value: "${name}": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character`);
    }
    if (this.#objects.has(key(rt, namespace, name))) throw alreadyExists(rt, name);
    if (this.hasStatus(rt) && !rt.keepStatusOnCreate) delete obj.status;
    if (rt.resource === 'namespaces') obj.status = { phase: 'Active' };
    delete meta.deletionTimestamp;
    return this.#commit(rt, namespace, { ...obj, metadata: { ...meta, uid: randomUUID(), creationTimestamp: now(), generation: rt.custom ? 1 : undefined } }, undefined);
  }

  update(rt: ResourceType, namespace: string, name: string, body: KubeObject, subresource = ''): KubeObject {
    const old = this.#existing(rt, namespace, name, subresource);
    if (body.metadata?.name !== undefined && body.metadata.name !== name) {
      throw badRequest(`the name of the object (${body.metadata.name}) does not match the name on the URL (${name})`);
    }
    const rv = body.metadata?.resourceVersion;
    // Custom resources refuse unconditional updates; built-in types like Secret allow them.
    if (!rv && rt.custom) throw invalid(rt, name, 'metadata.resourceVersion', 'Invalid value: 0x0: must be specified for an update');
    if (rv && rv !== old.metadata.resourceVersion) throw conflict(rt, name);
    return this.#replace(rt, old, body, subresource);
  }

  /** PATCH with the request's Content-Type: merge, strategic merge (built-in types only) or JSON patch. */
  patch(rt: ResourceType, namespace: string, name: string, contentType: string, patch: unknown, subresource = ''): KubeObject {
    const old = this.#existing(rt, namespace, name, subresource);
    const type = contentType.split(';')[0]!.trim();
    let next: KubeObject;
    if (type === 'application/merge-patch+json' || (type === 'application/strategic-merge-patch+json' && !rt.custom)) {
      next = mergePatch(old, patch) as KubeObject;
    } else if (type === 'application/json-patch+json') {
      next = jsonPatch(old, patch) as KubeObject;
    } else {
      throw new ApiError(
        415,
        `the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json${rt.custom ? '' : ', application/strategic-merge-patch+json'}`,
        'UnsupportedMediaType',
      );
    }
    // A resourceVersion written by the patch is a precondition, as on a real server.
    const rv = next.metadata?.resourceVersion;
    if (rv !== undefined && rv !== old.metadata.resourceVersion) throw conflict(rt, name);
    return this.#replace(rt, old, next, subresource);
  }

  /** Deletes, or only marks for deletion while finalizers remain. Returns the object as last stored. */
  delete(rt: ResourceType, namespace: string, name: string): KubeObject {
    const old = this.#existing(rt, namespace, name, '');
    if (old.metadata.finalizers?.length) {
      if (old.metadata.deletionTimestamp) return old;
      return this.#commit(rt, namespace, { ...old, metadata: { ...old.metadata, deletionTimestamp: now(), deletionGracePeriodSeconds: 0 } }, old);
    }
    return this.#remove(rt, old);
  }

  // --- writes by tests (no API semantics) -----------------------------------------------------

  /** Creates or replaces an object as given (status included, no pruning, no preconditions). */
  put(rt: ResourceType, body: KubeObject): KubeObject {
    const obj = structuredClone(body);
    const namespace = rt.namespaced ? (obj.metadata.namespace ?? 'default') : '';
    const old = this.#objects.get(key(rt, namespace, obj.metadata.name ?? ''));
    const meta = { uid: randomUUID(), creationTimestamp: now(), generation: rt.custom ? 1 : undefined, ...old?.metadata, ...obj.metadata };
    return this.#commit(rt, namespace, { ...obj, metadata: meta }, old && structuredClone(old), false);
  }

  /** Removes an object whatever its finalizers; false when there was none. */
  remove(rt: ResourceType, namespace: string, name: string): boolean {
    const old = this.#objects.get(key(rt, rt.namespaced ? namespace : '', name));
    if (old) this.#remove(rt, structuredClone(old));
    return old !== undefined;
  }

  /** Forgets the event history: watches resuming from an older resourceVersion get 410 Gone. */
  compact(): void {
    this.#history = [];
    this.#compactedRv = this.#rv;
  }

  // --- watch ----------------------------------------------------------------------------------

  /**
   * Starts a watch. Without a resourceVersion (or with "0") the current objects come first as ADDED;
   * with one, the changes after it. Throws 410 Gone when that version has been compacted away.
   * Returns the function that ends the watch.
   */
  watch(rt: ResourceType, namespace: string, matches: Predicate, resourceVersion: string, send: (e: WatchEvent) => void): () => void {
    const w: Watcher = { rt, namespace, matches, send };
    if (!resourceVersion || resourceVersion === '0') {
      for (const object of this.list(rt, namespace, matches)) send({ type: 'ADDED', object });
    } else {
      const from = Number(resourceVersion);
      if (!Number.isInteger(from)) throw badRequest(`invalid resource version: ${resourceVersion}`);
      if (from < this.#compactedRv) throw gone(`too old resource version: ${from} (${this.#compactedRv})`);
      for (const c of this.#history) if (c.rv > from) deliver(w, c);
    }
    this.#watchers.add(w);
    return () => this.#watchers.delete(w);
  }

  // --- internals ------------------------------------------------------------------------------

  #existing(rt: ResourceType, namespace: string, name: string, subresource: string): KubeObject {
    if (subresource && (subresource !== 'status' || !this.hasStatus(rt))) throw noRoute();
    const o = this.get(rt, namespace, name);
    if (!o) throw notFound(rt, name);
    return o;
  }

  /** The write path shared by update and patch: subresource rules, generation, no-op detection, finalizers. */
  #replace(rt: ResourceType, old: KubeObject, body: KubeObject, subresource: string): KubeObject {
    let next: KubeObject;
    if (subresource === 'status') {
      next = { ...old, status: body.status };
      if (body.status === undefined) delete next.status;
    } else {
      const { uid, creationTimestamp, generation, deletionTimestamp, namespace, name } = old.metadata;
      next = { ...body, metadata: defined({ ...body.metadata, uid, creationTimestamp, generation, deletionTimestamp, namespace, name }) };
      if (this.hasStatus(rt)) {
        if (old.status === undefined) delete next.status;
        else next.status = old.status;
      }
      const withStatus = !this.hasStatus(rt);
      if (generation !== undefined && !isDeepStrictEqual(specOf(old, withStatus), specOf(next, withStatus))) next.metadata.generation = generation + 1;
    }
    next.apiVersion = apiVersionOf(rt);
    next.kind = rt.kind;
    next.metadata.resourceVersion = old.metadata.resourceVersion;
    this.#normalize(rt, next, true);
    if (next.metadata.deletionTimestamp && !next.metadata.finalizers?.length) return this.#remove(rt, next);
    if (isDeepStrictEqual(next, old)) return old;
    return this.#commit(rt, old.metadata.namespace ?? '', next, old);
  }

  /** What the server does to every written object: a Secret's stringData becomes data, CRD pruning. */
  #normalize(rt: ResourceType, obj: KubeObject, prune: boolean): void {
    if (rt.resource === 'secrets') {
      obj.type ??= 'Opaque';
      if (obj.stringData && typeof obj.stringData === 'object') {
        const data = (obj.data ?? {}) as Record<string, string>;
        for (const [k, v] of Object.entries(obj.stringData as Record<string, string>)) data[k] = Buffer.from(v).toString('base64');
        obj.data = data;
      }
      delete obj.stringData;
    }
    if (prune) this.#pruneStatus(rt, obj);
  }

  #pruneStatus(rt: ResourceType, obj: KubeObject): void {
    if (!this.#prune || !rt.custom || typeof obj.status !== 'object' || obj.status === null) return;
    const schema = (this.#crdVersion(rt)?.schema as { openAPIV3Schema?: { properties?: { status?: Record<string, unknown> } } } | undefined)
      ?.openAPIV3Schema?.properties?.status;
    const declared = schema?.properties as Record<string, unknown> | undefined;
    if (!declared || schema?.['x-kubernetes-preserve-unknown-fields'] === true) return;
    const status = obj.status as Record<string, unknown>;
    for (const k of Object.keys(status)) if (!(k in declared)) delete status[k];
  }

  #commit(rt: ResourceType, namespace: string, body: KubeObject, old: KubeObject | undefined, prune = true): KubeObject {
    this.#normalize(rt, body, prune);
    const { apiVersion: _a, kind: _k, metadata, ...rest } = body;
    const obj: KubeObject = { apiVersion: apiVersionOf(rt), kind: rt.kind, metadata: defined({ ...metadata, namespace: rt.namespaced ? namespace : undefined }), ...rest };
    obj.metadata.resourceVersion = String(++this.#rv);
    this.#objects.set(key(rt, namespace, obj.metadata.name ?? ''), structuredClone(obj));
    this.#record({ rv: this.#rv, rt, type: old ? 'MODIFIED' : 'ADDED', object: obj, ...(old ? { old } : {}) });
    return structuredClone(obj);
  }

  #remove(rt: ResourceType, obj: KubeObject): KubeObject {
    const namespace = obj.metadata.namespace ?? '';
    this.#objects.delete(key(rt, namespace, obj.metadata.name ?? ''));
    const gone = { ...obj, metadata: { ...obj.metadata, resourceVersion: String(++this.#rv) } };
    this.#record({ rv: this.#rv, rt, type: 'DELETED', object: gone, old: gone });
    return structuredClone(gone);
  }

  #record(c: Change): void {
    this.#history.push(c);
    if (this.#history.length > HISTORY_LIMIT) this.#compactedRv = this.#history.shift()!.rv;
    for (const w of this.#watchers) deliver(w, c);
  }
}

const key = (rt: ResourceType, namespace: string, name: string): string => `${rt.group}/${rt.resource}/${rt.namespaced ? namespace : ''}/${name}`;

/** `o` without its undefined-valued keys (so no-op detection compares what would go on the wire). */
function defined<T extends object>(o: T): T {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as T;
}

/** What metadata.generation counts changes of: all but metadata, and but status when it has its own subresource. */
function specOf(o: KubeObject, withStatus: boolean): unknown {
  const { metadata: _m, status, apiVersion: _a, kind: _k, ...rest } = o;
  return withStatus ? { ...rest, status } : rest;
}

/** A change as one watcher sees it: entering its selector is ADDED, leaving it is DELETED. */
function deliver(w: Watcher, c: Change): void {
  if (c.rt !== w.rt || (w.namespace && c.object.metadata.namespace !== w.namespace)) return;
  const now = c.type !== 'DELETED' && w.matches(c.object);
  const before = c.old !== undefined && w.matches(c.old);
  const type = c.type === 'DELETED' ? (before ? 'DELETED' : undefined) : now && before ? 'MODIFIED' : now ? 'ADDED' : before ? 'DELETED' : undefined;
  if (type) w.send({ type, object: structuredClone(c.object) });
}
