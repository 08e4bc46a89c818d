/**
 * Test controls of the API server: what each request was (parsed like kube-apiserver's RequestInfo),
 * a log of every call (for counting reviews and for deriving the RBAC a client needs), and injected
 * faults (delay, error status, connection reset) chosen by a matcher.
 */

/** A request as kube-apiserver's RequestInfoFactory sees it. */
export interface RequestInfo {
  method: string;
  path: string;
  query: URLSearchParams;
  /** get/list/watch/create/update/patch/delete/deletecollection; for non-resource paths the lower-case method. */
  verb: string;
  resourceRequest: boolean;
  group: string;
  version: string;
  resource: string;
  subresource: string;
  /** As authorization sees it: for `namespaces/foo` it is `foo`. */
  namespace: string;
  name: string;
}

const VERBS: Record<string, string> = { GET: 'get', HEAD: 'get', POST: 'create', PUT: 'update', PATCH: 'patch', DELETE: 'delete' };

export function requestInfo(method: string, url: URL): RequestInfo {
  const decode = (p: string): string => {
    try {
      return decodeURIComponent(p);
    } catch {
      return p;
    }
  };
  const parts = url.pathname.split('/').filter(Boolean).map(decode);
  const info: RequestInfo = {
    method, path: url.pathname, query: url.searchParams, verb: method.toLowerCase(), resourceRequest: false,
    group: '', version: '', resource: '', subresource: '', namespace: '', name: '',
  };
  let rest: string[];
  if (parts[0] === 'api' && parts.length >= 3) [info.version, rest] = [parts[1]!, parts.slice(2)];
  else if (parts[0] === 'apis' && parts.length >= 4) [info.group, info.version, rest] = [parts[1]!, parts[2]!, parts.slice(3)];
  else return info;
  info.resourceRequest = true;
  info.verb = VERBS[method] ?? method.toLowerCase();
  if (rest[0] === 'namespaces' && rest.length > 1) {
    info.namespace = rest[1]!;
    if (rest.length > 2 && rest[2] !== 'status' && rest[2] !== 'finalize') rest = rest.slice(2);
  }
  [info.resource = '', info.name = ''] = rest;
  info.subresource = rest.slice(2).join('/');
  if (!info.name && method === 'GET') info.verb = ['true', '1'].includes(url.searchParams.get('watch') ?? '') ? 'watch' : 'list';
  if (!info.name && method === 'DELETE') info.verb = 'deletecollection';
  // As kube-apiserver's RequestInfoFactory: a list or watch selecting one name by field selector is
  // authorized as a request for that name, so RBAC resourceNames can grant it.
  if (info.verb === 'list' || info.verb === 'watch') info.name = selectedName(url.searchParams.get('fieldSelector')) ?? '';
  return info;
}

/** The name a field selector requires (`metadata.name=x` or `==`, among other terms), if any. */
function selectedName(fieldSelector: string | null): string | undefined {
  for (const term of (fieldSelector ?? '').split(',')) {
    const m = /^\s*metadata\.name\s*==?\s*([a-z0-9]([-a-z0-9.]*[a-z0-9])?)\s*$/.exec(term);
    if (m) return m[1];
  }
  return undefined;
}

/** Selects requests: every given field must match (arrays: any of), or a function decides. */
export type Matcher =
  | {
      method?: string;
      /** Exact path, or a RegExp tested against it. */
      path?: string | RegExp;
      verb?: string | string[];
      group?: string;
      resource?: string | string[];
      subresource?: string;
      namespace?: string;
      name?: string;
      /** The caller's username. */
      user?: string;
    }
  | ((call: CallRecord) => boolean);

const one = (want: string | string[] | undefined, got: string): boolean => want === undefined || (Array.isArray(want) ? want.includes(got) : want === got);

export function matches(m: Matcher | undefined, c: CallRecord): boolean {
  if (!m) return true;
  if (typeof m === 'function') return m(c);
  const pathOk = m.path === undefined || (typeof m.path === 'string' ? m.path === c.path : m.path.test(c.path));
  return pathOk && one(m.method, c.method) && one(m.verb, c.verb) && one(m.group, c.group) && one(m.resource, c.resource) &&
    one(m.subresource, c.subresource) && one(m.namespace, c.namespace) && one(m.name, c.name) && one(m.user, c.user ?? '');
}

/** One request as recorded: its RequestInfo fields, who called, the parsed body, and the status answered (0: connection reset or still open). */
export interface CallRecord extends Omit<RequestInfo, 'query'> {
  query: string;
  user?: string;
  body?: unknown;
  code: number;
}

/**
 * A permission a client used: what an RBAC rule must grant (name '' for create, and for list and
 * watch unless a field selector names one object, as RBAC sees them).
 */
export interface Permission {
  verb: string;
  group: string;
  resource: string;
  subresource: string;
  namespace: string;
  name: string;
}

export class CallLog {
  #calls: CallRecord[] = [];

  add(c: CallRecord): CallRecord {
    this.#calls.push(c);
    return c;
  }

  list(m?: Matcher): CallRecord[] {
    return this.#calls.filter((c) => matches(m, c));
  }

  count(m?: Matcher): number {
    return this.list(m).length;
  }

  clear(): void {
    this.#calls = [];
  }

  /** Request bodies of every TokenReview created. */
  tokenReviews(): unknown[] {
    return this.list({ resource: 'tokenreviews', verb: 'create' }).map((c) => c.body);
  }

  /** Request bodies of every SubjectAccessReview created. */
  subjectAccessReviews(): unknown[] {
    return this.list({ resource: 'subjectaccessreviews', verb: 'create' }).map((c) => c.body);
  }

  /** Distinct resource permissions used by the matching calls, sorted (e.g. all calls of the gateway's user). */
  permissions(m?: Matcher): Permission[] {
    const seen = new Map<string, Permission>();
    for (const c of this.list(m)) {
      if (!c.resourceRequest) continue;
      const p = { verb: c.verb, group: c.group, resource: c.resource, subresource: c.subresource, namespace: c.namespace, name: c.name };
      seen.set(JSON.stringify(p), p);
    }
    return [...seen.entries()].sort(([a], [b]) => a.localeCompare(b)).map(([, p]) => p);
  }
}

export interface FaultSpec {
  /** Which requests (default: all). */
  match?: Matcher;
  /** Hold the request this long before answering (or failing). */
  delayMs?: number;
  /** Answer with this status and a matching `Status` body instead of serving (e.g. 500, 503, 429). */
  status?: number;
  /** Sets `Retry-After` (and details.retryAfterSeconds). */
  retryAfterSeconds?: number;
  message?: string;
  /** Destroy the connection without an answer. */
  reset?: boolean;
  /** Apply to this many matching requests, then retire (default: until removed). */
  times?: number;
}

export interface Fault {
  /** Matching requests this fault has applied to so far. */
  readonly hits: number;
  remove(): void;
}

export class Faults {
  #rules: { spec: FaultSpec; hits: number }[] = [];

  add(spec: FaultSpec): Fault {
    const rule = { spec, hits: 0 };
    this.#rules.push(rule);
    return {
      get hits() {
        return rule.hits;
      },
      remove: () => {
        this.#rules = this.#rules.filter((r) => r !== rule);
      },
    };
  }

  /** The first live fault matching `c`, counted as applied. */
  take(c: CallRecord): FaultSpec | undefined {
    const rule = this.#rules.find((r) => (r.spec.times === undefined || r.hits < r.spec.times) && matches(r.spec.match, c));
    if (rule) rule.hits++;
    return rule?.spec;
  }

  clear(): void {
    this.#rules = [];
  }
}
