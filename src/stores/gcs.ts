/**
 * Google Cloud Storage adapter (providers `gcp`, `velero.io/gcp`): object metadata and media
 * download over the GCS JSON API.
 *
 * Transport: the requests go through gaxios (the Google SDKs' HTTP layer, as exported by
 * google-auth-library) with this location's own https.Agent, not through `@google-cloud/storage`.
 * That library (8.4.0, the current release) sends every JSON API request through teeny-request,
 * whose agent comes from a process-wide pool (`teeny-request` `getAgent` ignores any per-request agent), and takes no
 * AbortSignal: a per-location CA bundle, a socket pool per client and abort-on-disconnect are
 * impossible through it. The wire requests are the ones it makes (`GET /storage/v1/b/{b}/o/{o}`,
 * `...?alt=media` with `Range`); the tests run the real `@google-cloud/storage` against the same
 * test double to show it.
 *
 * Authentication: self-signed service-account JWTs or application default credentials (gcs-auth.ts).
 */
import type { Readable } from 'node:stream';
import { gaxios } from 'google-auth-library';
import type { AdapterOptions, ClosableStore, Timeouts } from './adapter.ts';
import { authHeaders, gcsAuth } from './gcs-auth.ts';
import type { AuthSource } from './gcs-auth.ts';
import { checkEndpoint } from './endpoint-guard.ts';
import { InvalidLocationError, StoreUnavailableError } from './errors.ts';
import { listGcs } from './gcs-list.ts';
import { joinKey, normalizePrefix } from './keys.ts';
import { checkRange, reconcileRange } from './range.ts';
import { errnoOf, systemCause, translateFacts } from './translate.ts';
import type { ProviderFacts } from './translate.ts';
import { callStore, createAgents, parseEndpoint, upstreamBody } from './transport.ts';
import type { Agents } from './transport.ts';
import type { GetOptions, ListedObject, ListOptions, ObjectInfo, StatOptions, StreamBody } from './types.ts';

/** GCS says "slow down" also as a 403 with reason rateLimitExceeded. */
const GCS_CODES = { throttled: new Set(['rateLimitExceeded', 'userRateLimitExceeded']) };

export { GCS_READ_SCOPE } from './gcs-auth.ts';

/** Velero provider names served by this adapter. */
export const GCS_PROVIDERS: ReadonlySet<string> = new Set(['gcp', 'velero.io/gcp']);

/**
 * Velero GCP plugin config keys (its ValidateObjectStoreConfigKeys list) plus insecureSkipTLSVerify,
 * which trustFor reads for every provider. For reads:
 * - `serviceAccount` is only what Velero signs URLs as under Workload Identity; the gateway signs
 *   nothing, so it is accepted and unused (it is not impersonation).
 * - `kmsKeyName` applies to writes; GCS decrypts CMEK objects for any reader with access.
 * - `credentialsFile` is a path inside Velero's pod; the gateway gets the credential's bytes.
 */
const CONFIG_KEYS: ReadonlySet<string> = new Set([
  'serviceAccount',
  'kmsKeyName',
  'credentialsFile',
  'storeEndpoint',
  'universeDomain',
  'insecureSkipTLSVerify',
]);

// Lowercase letters, digits, '-', '_' and '.', starting and ending with a letter or digit.
const BUCKET_NAME = /^[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]$/;
const ERROR_BODY_LIMIT = 64 * 1024;
const METADATA_LIMIT = 1024 * 1024;

/** The JSON API root (`https://storage.googleapis.com`), from `storeEndpoint` or the universe. */
function apiRoot(location: string, config: Record<string, string>, universe: string): string {
  const endpoint = config.storeEndpoint?.trim();
  if (!endpoint) return `https://storage.${universe}`;
  const url = parseEndpoint(location, 'storeEndpoint', endpoint);
  // The Go client Velero uses takes the JSON API base (`.../storage/v1/`); accept that and the bare host.
  const path = url.pathname.replace(/\/+$/, '').replace(/\/storage\/v1$/, '');
  return `${url.protocol}//${url.host}${path}`;
}

function checkConfig(location: string, config: Record<string, string>): void {
  const unknown = Object.keys(config).filter((k) => !CONFIG_KEYS.has(k));
  if (unknown.length > 0) {
    throw new InvalidLocationError(
      `location ${location}: unknown GCP config key(s) ${unknown.map((k) => JSON.stringify(k)).join(', ')}; ` +
        `known keys are ${[...CONFIG_KEYS].join(', ')}`,
    );
  }
}

/** Whole seconds: HTTP dates carry no more, so stat and get agree on the same object. */
function parseDate(value: string | null | undefined): Date | undefined {
  if (!value) return undefined;
  const ms = Date.parse(value);
  return Number.isNaN(ms) ? undefined : new Date(Math.floor(ms / 1000) * 1000);
}

/** `"<generation>"`: the generation changes with every new content of a name, and only then. */
function etagOf(generation: unknown): string | undefined {
  return typeof generation === 'string' && /^\d+$/.test(generation) ? `"${generation}"` : undefined;
}

async function readLimited(body: Readable, limit: number): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let total = 0;
  try {
    for await (const chunk of body) {
      const buf = chunk as Buffer;
      total += buf.length;
      if (total > limit) break;
      chunks.push(buf);
    }
  } finally {
    body.destroy();
  }
  return Buffer.concat(chunks);
}

/** The first `reason` of a JSON API error body, e.g. `notFound`, `rateLimitExceeded`. */
function errorReason(body: Buffer): string | undefined {
  try {
    const doc = JSON.parse(body.toString('utf8')) as { error?: { errors?: { reason?: unknown }[] } };
    return (doc.error?.errors ?? []).map((e) => e.reason).find((r): r is string => typeof r === 'string');
  } catch {
    return undefined;
  }
}

/** A non-success answer, its body read: carries only the facts the error table needs. */
class GcsAnswer extends Error {
  readonly facts: ProviderFacts;
  constructor(facts: ProviderFacts) {
    super(`HTTP ${facts.status}`);
    this.facts = facts;
  }
}

function factsOf(err: unknown): ProviderFacts {
  return err instanceof GcsAnswer ? err.facts : { errno: errnoOf(err) };
}

interface Response {
  status: number;
  headers: Headers;
  body: Readable;
}

/**
 * An ObjectStore over one GCS bucket and prefix. Holds its own socket pool (released by close())
 * and its own credential; two stores never share either.
 */
export class GcsStore implements ClosableStore {
  readonly #location: string;
  readonly #bucket: string;
  readonly #prefix: string;
  readonly #root: string;
  readonly #auth: AuthSource;
  readonly #agents: Agents;
  readonly #http = new gaxios.Gaxios();
  readonly #timeouts: Timeouts;

  constructor(options: AdapterOptions) {
    const { spec } = options;
    const location = spec.name;
    this.#location = location;
    if (!GCS_PROVIDERS.has(spec.provider)) {
      throw new InvalidLocationError(`location ${location}: provider "${spec.provider}" is not a GCS provider`);
    }
    checkConfig(location, spec.config);
    if (!BUCKET_NAME.test(spec.bucket)) {
      throw new InvalidLocationError(`location ${location}: ${JSON.stringify(spec.bucket)} is not a valid GCS bucket name`);
    }
    this.#bucket = spec.bucket;
    this.#prefix = normalizePrefix(spec.prefix);

    const { auth, universe } = gcsAuth(options);
    this.#auth = auth;
    this.#root = apiRoot(location, spec.config, universe);
    checkEndpoint(options.endpointPolicy, location, new URL(this.#root));
    this.#timeouts = options.timeouts;
    this.#agents = createAgents(options);
  }

  /** The JSON API URL of one object; the name is validated by joinKey, so it stays under the prefix. */
  #objectUrl(key: string): string {
    const name = joinKey(this.#prefix, key);
    return `${this.#root}/storage/v1/b/${encodeURIComponent(this.#bucket)}/o/${encodeURIComponent(name)}`;
  }

  #describe(key: string): string {
    return `location ${this.#location}: object ${JSON.stringify(key)}`;
  }

  /**
   * One GET, resolved at the response headers of an answer with one of the `ok` statuses; any other
   * answer, or a failure to get one, is a store error (after the retry policy had its say).
   */
  async #send(url: string, key: string, signal: AbortSignal, headers: Record<string, string>, ok: readonly number[]): Promise<Response> {
    try {
      return await callStore(this.#timeouts.requestMs, signal, GCS_CODES, factsOf, async (combined) => {
        const auth = await authHeaders(this.#auth, combined, this.#describe(key));
        const options = {
          url,
          method: 'GET',
          headers: { ...headers, ...auth },
          responseType: 'stream',
          signal: combined,
          agent: this.#agents.for(url),
          retry: false,
          validateStatus: () => true,
          redirect: 'manual',
          // node-fetch option: keep the stored bytes as they are (a gzip'd object stays gzip'd).
          compress: false,
        } as gaxios.GaxiosOptions;
        const res = await this.#http.request<Readable>(options);
        if (ok.includes(res.status)) return { status: res.status, headers: res.headers, body: res.data };
        const body = await readLimited(res.data, ERROR_BODY_LIMIT).catch(() => Buffer.alloc(0));
        throw new GcsAnswer({ status: res.status, code: errorReason(body), retryAfter: res.headers.get('retry-after') });
      });
    } catch (err) {
      if (signal.aborted) throw signal.reason;
      throw translateFacts(err, factsOf(err), GCS_CODES, { location: this.#location, doing: `reading object ${JSON.stringify(key)}` });
    }
  }

  async stat(key: string, { signal }: StatOptions): Promise<ObjectInfo> {
    signal.throwIfAborted();
    const res = await this.#send(this.#objectUrl(key), key, signal, { accept: 'application/json' }, [200]);
    let doc: { size?: unknown; generation?: unknown; updated?: unknown };
    try {
      doc = JSON.parse((await readLimited(res.body, METADATA_LIMIT)).toString('utf8')) as typeof doc;
    } catch (err) {
      if (signal.aborted) throw signal.reason;
      throw new StoreUnavailableError(`${this.#describe(key)}: the store sent unreadable object metadata`, {
        cause: systemCause(err),
      });
    }
    const size = typeof doc.size === 'string' && /^\d+$/.test(doc.size) ? Number(doc.size) : NaN;
    if (!Number.isSafeInteger(size)) {
      throw new StoreUnavailableError(`${this.#describe(key)}: the store's object metadata has no valid size`);
    }
    return this.#info(size, doc.generation, typeof doc.updated === 'string' ? doc.updated : undefined);
  }

  #info(size: number, generation: unknown, lastModified: string | null | undefined): ObjectInfo {
    const info: ObjectInfo = { size };
    const etag = etagOf(generation);
    if (etag !== undefined) info.etag = etag;
    const date = parseDate(lastModified);
    if (date !== undefined) info.lastModified = date;
    return info;
  }

  async get(key: string, { signal, range }: GetOptions): Promise<StreamBody> {
    signal.throwIfAborted();
    const url = `${this.#objectUrl(key)}?alt=media`;
    const asked = range === undefined ? undefined : checkRange(range);
    // `gzip` makes GCS send stored bytes as stored (no decompressive transcoding, which would
    // ignore Range and change the length); `compress: false` keeps them so on our side.
    const headers: Record<string, string> = { 'accept-encoding': 'gzip' };
    if (asked !== undefined) headers.range = `bytes=${asked.start}-${asked.end}`;
    const res = await this.#send(url, key, signal, headers, [200, 206]);
    try {
      const length = res.headers.get('content-length') ?? (res.status === 200 ? res.headers.get('x-goog-stored-content-length') : null);
      const { size, sent, want } = reconcileRange(
        asked,
        {
          contentRange: res.status === 206 ? res.headers.get('content-range') : undefined,
          contentLength: length !== null && /^\d+$/.test(length) ? Number(length) : undefined,
        },
        (what) => new StoreUnavailableError(`${this.#describe(key)}: ${what}`),
      );
      const body = upstreamBody(res.body, { sent, want }, { what: this.#describe(key), idleMs: this.#timeouts.socketIdleMs, signal });
      const info = this.#info(size, res.headers.get('x-goog-generation'), res.headers.get('last-modified'));
      return { ...info, kind: 'stream', body, ...(want && { range: want }) };
    } catch (err) {
      res.body.destroy();
      throw err;
    }
  }

  list(prefix: string, opts: ListOptions): AsyncIterable<ListedObject> {
    const send = async (url: string, signal: AbortSignal): Promise<Readable> =>
      (await this.#send(url, prefix, signal, { accept: 'application/json' }, [200])).body;
    const objectsUrl = `${this.#root}/storage/v1/b/${encodeURIComponent(this.#bucket)}/o`;
    return listGcs({ location: this.#location, objectsUrl, root: this.#prefix, send, etag: etagOf, date: parseDate }, prefix, opts);
  }

  async close(): Promise<void> {
    this.#agents.destroy();
  }
}
