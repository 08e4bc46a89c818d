/**
 * The HTTPS listener and request handling of the test API server: authentication of every caller
 * (bearer token from the token table, or an x509 client certificate signed by the test CA), optional
 * RBAC on the caller, injected faults, discovery, TokenReview, SubjectAccessReview and the REST verbs
 * on the store, including WATCH as a stream of JSON lines.
 */
import { createServer } from 'node:https';
import type { Server } from 'node:https';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { TLSSocket } from 'node:tls';
import { setTimeout as delay } from 'node:timers/promises';
import type { TestPki } from '../test-ca.ts';
import { requestInfo } from './control.ts';
import type { CallLog, CallRecord, Faults, RequestInfo } from './control.ts';
import { ApiError, badRequest, forbidden, injected, invalid, methodNotAllowed, noRoute, notFound, unauthorized } from './errors.ts';
import type { Rbac } from './rbac.ts';
import { REVIEWS, apiVersionOf, discovery, findResource } from './resources.ts';
import type { ResourceType } from './resources.ts';
import { selector } from './selectors.ts';
import type { KubeObject, Store, WatchEvent } from './store.ts';
import { userInfo } from './tokens.ts';
import type { TokenTable, UserInfo } from './tokens.ts';

export interface ServerParts {
  pki: TestPki;
  store: Store;
  tokens: TokenTable;
  rbac: Rbac;
  faults: Faults;
  calls: CallLog;
  /** Check every caller's own RBAC permission (403 when missing), as a real server does. */
  authorizeCallers: boolean;
  /** Interval of BOOKMARK events on watches that ask for them (`allowWatchBookmarks=true`). */
  bookmarkIntervalMs: number;
}

const PUBLIC = new Set(['/version', '/healthz', '/livez', '/readyz']);
const MAX_BODY = 3 * 1024 * 1024;
const ANONYMOUS: UserInfo = { username: 'system:anonymous', groups: ['system:unauthenticated'] };

export class ApiServer {
  readonly #p: ServerParts;
  #server: Server | undefined;
  #lifetime = new AbortController();
  #port = 0;

  constructor(parts: ServerParts) {
    this.#p = parts;
  }

  get port(): number {
    return this.#port;
  }

  get listening(): boolean {
    return this.#server !== undefined;
  }

  /** Listens on 127.0.0.1:`port` (0: a free port, the first time); returns the port. */
  async listen(port = this.#port): Promise<number> {
    const { pki } = this.#p;
    const server = createServer({ key: pki.key, cert: pki.cert, ca: [pki.caCert], requestCert: true, rejectUnauthorized: false }, (req, res) => {
      void this.#handle(req, res);
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, '127.0.0.1', () => resolve());
    });
    this.#server = server;
    this.#port = (server.address() as AddressInfo).port;
    return this.#port;
  }

  /** Ends every open watch cleanly, as kube-apiserver does when a watch's time is up (and drops requests a delay fault holds); keeps listening. */
  endWatches(): void {
    const ending = this.#lifetime;
    this.#lifetime = new AbortController();
    ending.abort();
  }

  /** Ends every watch, drops every connection and stops listening. */
  async close(): Promise<void> {
    const server = this.#server;
    if (!server) return;
    this.#server = undefined;
    this.#lifetime.abort();
    this.#lifetime = new AbortController();
    const closed = new Promise<void>((resolve) => server.close(() => resolve()));
    server.closeAllConnections();
    await closed;
  }

  async #handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'https://127.0.0.1');
    const info = requestInfo(req.method ?? 'GET', url);
    const signal = this.#lifetime.signal;
    let call: CallRecord | undefined;
    try {
      const raw = await readBody(req);
      const caller = this.#authenticate(req);
      call = this.#p.calls.add({ ...info, query: url.search, code: 0, ...(caller ? { user: caller.username } : {}), ...(raw ? { body: parseQuietly(raw) } : {}) });
      const fault = this.#p.faults.take(call);
      if (fault?.delayMs) await delay(fault.delayMs, undefined, { signal });
      if (fault?.reset) return void req.socket.destroy();
      if (fault?.status) throw injected(fault.status, fault.message, fault.retryAfterSeconds);
      if (caller === null || (caller === undefined && !PUBLIC.has(info.path))) throw unauthorized();
      const user = caller ?? ANONYMOUS;
      if (this.#p.authorizeCallers && !this.#callerMay(user, info)) throw forbidden(user.username, info);
      this.#route(info, raw, req, res, call);
    } catch (err) {
      if (signal.aborted) return void res.destroy();
      const e = err instanceof ApiError ? err : new ApiError(500, `Internal error occurred: ${(err as Error).message}`);
      if (res.headersSent) return void res.destroy();
      const retry = e.status.details?.retryAfterSeconds;
      reply(res, call, e.code, e.status, retry === undefined ? {} : { 'Retry-After': String(retry) });
    }
  }

  /** The caller: a UserInfo, undefined without credentials (anonymous), null for a bad token. */
  #authenticate(req: IncomingMessage): UserInfo | undefined | null {
    const auth = req.headers.authorization;
    if (auth?.startsWith('Bearer ')) return this.#p.tokens.authenticate(auth.slice(7).trim()) ?? null;
    const socket = req.socket as TLSSocket;
    if (!socket.authorized) return undefined;
    const subject = socket.getPeerCertificate().subject as unknown as { CN?: string; O?: string | string[] };
    if (!subject.CN) return undefined;
    return userInfo({ username: subject.CN, groups: subject.O === undefined ? [] : [subject.O].flat() });
  }

  /** Discovery, version and health are open to every authenticated user, as the default ClusterRoles make them. */
  #callerMay(u: UserInfo, i: RequestInfo): boolean {
    if (!i.resourceRequest && (PUBLIC.has(i.path) || /^\/apis?(\/|$)/.test(i.path))) return true;
    const base = { user: u.username, groups: u.groups, verb: i.verb };
    const attrs = i.resourceRequest
      ? { ...base, namespace: i.namespace, group: i.group, resource: i.resource, subresource: i.subresource, name: i.name }
      : { ...base, path: i.path };
    return this.#p.rbac.authorize(attrs).allowed;
  }

  #route(info: RequestInfo, raw: string, req: IncomingMessage, res: ServerResponse, call: CallRecord): void {
    const { store } = this.#p;
    if (!info.resourceRequest) {
      if (info.method !== 'GET') throw methodNotAllowed();
      if (['/healthz', '/livez', '/readyz'].includes(info.path)) {
        call.code = 200;
        res.writeHead(200, { 'Content-Type': 'text/plain; charset=utf-8' }).end('ok');
        return;
      }
      const doc = discovery(info.path, store, `127.0.0.1:${this.#port}`);
      if (!doc) throw noRoute();
      return reply(res, call, 200, doc);
    }
    const review = REVIEWS[info.resource as keyof typeof REVIEWS];
    if (review && review.group === info.group && review.version === info.version && !info.namespace && !info.name) {
      if (info.verb !== 'create') throw methodNotAllowed();
      return reply(res, call, 201, info.resource === 'tokenreviews' ? this.#tokenReview(parseBody(raw)) : this.#subjectAccessReview(parseBody(raw)));
    }
    const rt = findResource(info.group, info.version, info.resource);
    if (!rt || !store.served(rt)) throw noRoute();
    const clusterPathOk = !info.namespace || (rt.resource === 'namespaces' && info.namespace === info.name);
    if (rt.namespaced ? !info.namespace && !['list', 'watch'].includes(info.verb) : !clusterPathOk) throw noRoute();
    const ns = rt.namespaced ? info.namespace : '';
    const sub = info.subresource;
    if (sub && (sub !== 'status' || !store.hasStatus(rt))) throw noRoute();
    switch (info.verb) {
      case 'get': {
        const obj = store.get(rt, ns, info.name);
        if (!obj) throw notFound(rt, info.name);
        return reply(res, call, 200, obj);
      }
      case 'list': {
        const matches = selector(info.query.get('labelSelector'), info.query.get('fieldSelector'), rt.resource);
        const items = store.list(rt, ns, matches).map((o) => (rt.custom ? o : withoutType(o)));
        return reply(res, call, 200, { apiVersion: apiVersionOf(rt), kind: `${rt.kind}List`, metadata: { resourceVersion: store.resourceVersion }, items });
      }
      case 'watch':
        return this.#watch(rt, ns, info, res, call);
      case 'create':
        if (info.name) throw methodNotAllowed();
        return reply(res, call, 201, store.create(rt, ns, parseBody(raw) as KubeObject));
      case 'update':
        return reply(res, call, 200, store.update(rt, ns, info.name, parseBody(raw) as KubeObject, sub));
      case 'patch':
        return reply(res, call, 200, store.patch(rt, ns, info.name, req.headers['content-type'] ?? '', parseBody(raw), sub));
      case 'delete': {
        if (sub) throw methodNotAllowed();
        const obj = store.delete(rt, ns, info.name);
        const pending = obj.metadata.deletionTimestamp !== undefined && !!obj.metadata.finalizers?.length;
        if (rt.returnDeletedObject || pending) return reply(res, call, 200, obj);
        const details = { name: info.name, ...(rt.group ? { group: rt.group } : {}), kind: rt.resource, uid: obj.metadata.uid };
        return reply(res, call, 200, { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Success', details });
      }
      default:
        throw methodNotAllowed();
    }
  }

  #watch(rt: ResourceType, ns: string, info: RequestInfo, res: ServerResponse, call: CallRecord): void {
    const { store } = this.#p;
    const matches = selector(info.query.get('labelSelector'), info.query.get('fieldSelector'), rt.resource);
    const rv = info.query.get('resourceVersion') ?? '';
    if (rv && !/^\d+$/.test(rv)) throw badRequest(`invalid resource version: ${rv}`);
    // Headers go out now, not with the first event: an informer's start() waits for them.
    res.writeHead(200, { 'Content-Type': 'application/json', 'Cache-Control': 'no-cache, private' });
    res.flushHeaders();
    call.code = 200;
    const send = (e: WatchEvent): void => void res.write(`${JSON.stringify(e)}\n`);
    const cleanups: (() => void)[] = [];
    const lifetime = this.#lifetime.signal;
    const end = (): void => {
      cleanups.forEach((c) => c());
      lifetime.removeEventListener('abort', end);
      if (!res.writableEnded) res.end();
    };
    res.on('close', end);
    lifetime.addEventListener('abort', end);
    try {
      cleanups.push(store.watch(rt, ns, matches, rv, send));
    } catch (err) {
      if (!(err instanceof ApiError)) throw err;
      send({ type: 'ERROR', object: err.status });
      return end();
    }
    if (info.query.get('allowWatchBookmarks') === 'true') {
      const bookmark = { kind: rt.kind, apiVersion: apiVersionOf(rt) };
      const timer = setInterval(() => send({ type: 'BOOKMARK', object: { ...bookmark, metadata: { resourceVersion: store.resourceVersion } } }), this.#p.bookmarkIntervalMs);
      cleanups.push(() => clearInterval(timer));
    }
    const timeout = Number(info.query.get('timeoutSeconds') ?? 0);
    if (timeout > 0) {
      const timer = setTimeout(end, timeout * 1000);
      cleanups.push(() => clearTimeout(timer));
    }
  }

  #tokenReview(body: unknown): object {
    const spec = (body as { spec?: { token?: string; audiences?: string[] } }).spec ?? {};
    if (!spec.token) throw badRequest('token is required for TokenReview in authentication');
    const status = this.#p.tokens.review(spec.token, spec.audiences ?? []);
    return { kind: 'TokenReview', apiVersion: 'authentication.k8s.io/v1', metadata: { creationTimestamp: null }, spec, status };
  }

  #subjectAccessReview(body: unknown): object {
    type Spec = {
      user?: string;
      groups?: string[];
      resourceAttributes?: { namespace?: string; verb?: string; group?: string; resource?: string; subresource?: string; name?: string };
      nonResourceAttributes?: { path?: string; verb?: string };
    };
    const spec = (body as { spec?: Spec }).spec ?? {};
    const ra = spec.resourceAttributes;
    const nra = spec.nonResourceAttributes;
    const t = { kind: 'SubjectAccessReview', group: 'authorization.k8s.io' };
    if (!ra === !nra) throw invalid(t, '', 'spec.resourceAttributes', 'Invalid value: "null": exactly one of nonResourceAttributes or resourceAttributes must be specified');
    if (!spec.user && !spec.groups?.length) throw invalid(t, '', 'spec.user', 'Invalid value: "": at least one of user or group must be specified');
    const decision = this.#p.rbac.authorize({
      user: spec.user ?? '',
      groups: spec.groups ?? [],
      ...(ra
        ? { verb: ra.verb ?? '', namespace: ra.namespace ?? '', group: ra.group ?? '', resource: ra.resource ?? '', subresource: ra.subresource ?? '', name: ra.name ?? '' }
        : { verb: nra?.verb ?? '', path: nra?.path ?? '' }),
    });
    // Go's omitempty: `denied` (never set by RBAC) and an empty `reason` are absent from the wire.
    const status = { allowed: decision.allowed, ...(decision.reason ? { reason: decision.reason } : {}) };
    return { kind: 'SubjectAccessReview', apiVersion: 'authorization.k8s.io/v1', metadata: { creationTimestamp: null }, spec, status };
  }
}

function reply(res: ServerResponse, call: CallRecord | undefined, code: number, body: unknown, headers: Record<string, string> = {}): void {
  if (call) call.code = code;
  res.writeHead(code, { 'Content-Type': 'application/json', ...headers }).end(JSON.stringify(body));
}

/** Built-in list items carry no kind/apiVersion on the wire; CRD list items do. */
function withoutType(o: KubeObject): KubeObject {
  const { apiVersion: _a, kind: _k, ...rest } = o;
  return rest;
}

async function readBody(req: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > MAX_BODY) throw new ApiError(413, 'Request entity too large: limit is 3145728', 'RequestEntityTooLarge');
    chunks.push(chunk);
  }
  return Buffer.concat(chunks).toString('utf8');
}

function parseBody(raw: string): unknown {
  try {
    const v: unknown = JSON.parse(raw);
    if (typeof v !== 'object' || v === null) throw new Error('not an object');
    return v;
  } catch (err) {
    throw badRequest(`the body of the request could not be decoded: ${(err as Error).message}`);
  }
}

function parseQuietly(raw: string): unknown {
  try {
    return JSON.parse(raw) as unknown;
  } catch {
    return raw;
  }
}
