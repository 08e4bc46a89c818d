/**
 * Google Cloud Storage adapter (providers `gcp`, `velero.io/gcp`): object metadata and media
 * download over the GCS JSON API.
 *
 * Transport: the requests go through gaxios (the Google SDKs' HTTP layer, as exported by
 * google-auth-library) with this location's own https.Agent, not through `@google-cloud/storage`.
 * That library (8.x) sends every JSON API request through teeny-request, whose agent comes from a
 * process-wide pool (`teeny-request` `getAgent` ignores any per-request agent), and takes no
 * AbortSignal: a per-location CA bundle, a socket pool per client and abort-on-disconnect are
 * impossible through it. The wire requests are the ones it makes (`GET /storage/v1/b/{b}/o/{o}`,
 * `...?alt=media` with `Range`); the tests run the real `@google-cloud/storage` against the same
 * test double to show it.
 *
 * Authentication: with a service-account key, every request carries a self-signed JWT (RS256,
 * signed locally with the key, `scope` claim devstorage.read_only), which Google accepts as a bearer
 * token for Cloud Storage. There is no OAuth token exchange, so the credential works the same
 * against storage.googleapis.com, a private endpoint (`storeEndpoint`), another universe
 * (`universeDomain`, where self-signed JWTs are the only option anyway) and a test double offline.
 * Without a key and with `ambientCredentials`, application default credentials (GoogleAuth).
 */
import { Agent as HttpAgent } from 'node:http';
import type { ClientRequestArgs } from 'node:http';
import { Agent as HttpsAgent } from 'node:https';
import type { Duplex, Readable } from 'node:stream';
import { addAbortSignal } from 'node:stream';
import { GoogleAuth, JWT, gaxios } from 'google-auth-library';
import type { AdapterOptions, ClosableStore, Timeouts, TrustOptions } from './adapter.ts';
import { parseGcpServiceAccountKey } from './credentials/gcp.ts';
import { checkEndpoint, endpointRefusal, guardAgent } from './endpoint-guard.ts';
import {
  AccessDeniedError,
  InvalidLocationError,
  InvalidRangeError,
  isStoreError,
  ObjectNotFoundError,
  StoreTimeoutError,
  StoreUnavailableError,
  ThrottledError,
} from './errors.ts';
import { classifyStatus, parseRetryAfter } from './http-status.ts';
import { listGcs } from './gcs-list.ts';
import { joinKey, normalizePrefix } from './keys.ts';

/** GCS says "slow down" also as a 403 with reason rateLimitExceeded. */
const GCS_CODES = { throttled: new Set(['rateLimitExceeded']) };
import { withLengthCheck } from './length-check.ts';
import { agentTlsOptions, tlsFailureCode, tlsFailureMessage } from './trust.ts';
import type { ByteRange, GetOptions, ListedObject, ListOptions, ObjectBody, ObjectInfo, StatOptions } from './types.ts';

/** Velero provider names served by this adapter. */
export const GCS_PROVIDERS: ReadonlySet<string> = new Set(['gcp', 'velero.io/gcp']);

/** The only scope the gateway asks for: it never writes. */
export const GCS_READ_SCOPE = 'https://www.googleapis.com/auth/devstorage.read_only';

const DEFAULT_UNIVERSE = 'googleapis.com';

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
const UNIVERSE_DOMAIN = /^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)+$/i;
const CONTENT_RANGE = /^bytes (\d+)-(\d+)\/(\d+)$/;
const ERROR_BODY_LIMIT = 64 * 1024;
const METADATA_LIMIT = 1024 * 1024;

/** Something that yields the auth headers for the next request. */
interface AuthSource {
  headers(): Promise<Headers>;
}

/** Marks the errors our own timers and socket guards raise, so they map to StoreTimeoutError. */
class TimedOut extends Error {
  readonly code = 'ETIMEDOUT';
}

/**
 * Sockets of one location: keep-alive, a bounded pool, a connect timeout (a socket not connected in
 * time is destroyed) and an idle timeout (a socket silent that long before the response, or idle in
 * the pool, is destroyed; response bodies have their own watchdog).
 */
function guardSocket(socket: Duplex | null | undefined, secure: boolean, timeouts: Timeouts): void {
  if (!socket) return;
  const timer = setTimeout(
    () => socket.destroy(new TimedOut(`no connection to the store within ${timeouts.connectMs} ms`)),
    timeouts.connectMs,
  );
  const clear = (): void => clearTimeout(timer);
  socket.once(secure ? 'secureConnect' : 'connect', clear);
  socket.once('close', clear);
  // The agent's `timeout` option arms this timer (node-fetch clears it once the response arrives);
  // Node only reports it on a socket in use, so end the socket here.
  socket.on('timeout', () => socket.destroy(new TimedOut(`the store sent nothing for ${timeouts.socketIdleMs} ms`)));
}

/** The location's agent, with every socket it creates guarded by guardSocket. */
function guardedAgent(secure: boolean, timeouts: Timeouts, maxSockets: number, trust?: TrustOptions): HttpAgent {
  const common = { keepAlive: true, maxSockets, timeout: timeouts.socketIdleMs, scheduling: 'lifo' as const };
  const agent = secure
    ? new HttpsAgent({ ...common, ...agentTlsOptions(trust) })
    : new HttpAgent(common);
  const create = agent.createConnection.bind(agent);
  agent.createConnection = (options: ClientRequestArgs, callback?: (err: Error | null, stream: Duplex) => void): Duplex | null | undefined => {
    const socket = create(options, callback);
    guardSocket(socket, secure, timeouts);
    return socket;
  };
  return agent;
}

/** The JSON API root (`https://storage.googleapis.com`), from `storeEndpoint` or the universe. */
function apiRoot(location: string, config: Record<string, string>, universe: string): string {
  const endpoint = config.storeEndpoint?.trim();
  if (!endpoint) return `https://storage.${universe}`;
  let url: URL;
  try {
    url = new URL(endpoint);
  } catch {
    throw new InvalidLocationError(`location ${location}: config storeEndpoint is not a URL`);
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') {
    throw new InvalidLocationError(`location ${location}: config storeEndpoint must be an http or https URL`);
  }
  if (url.username !== '' || url.password !== '') {
    throw new InvalidLocationError(`location ${location}: config storeEndpoint must not contain user information`);
  }
  if (url.search !== '' || url.hash !== '') {
    throw new InvalidLocationError(`location ${location}: config storeEndpoint must not have a query or fragment`);
  }
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

function checkUniverse(location: string, value: string, source: string): string {
  if (!UNIVERSE_DOMAIN.test(value)) throw new InvalidLocationError(`location ${location}: ${source} is not a domain name`);
  return value.toLowerCase();
}

/** Validates the asked range before any I/O (the size is not known yet). */
function checkRange(range: ByteRange): ByteRange {
  const { start, end } = range;
  if (!Number.isSafeInteger(start) || !Number.isSafeInteger(end) || start < 0 || end < start) {
    throw new InvalidRangeError(`invalid byte range ${start}-${end}`);
  }
  return { start, end };
}


/** Whole seconds: HTTP dates carry no more, so stat and get agree on the same object. */
function toSeconds(date: Date): Date {
  return new Date(Math.floor(date.getTime() / 1000) * 1000);
}

function parseDate(value: string | null | undefined): Date | undefined {
  if (!value) return undefined;
  const ms = Date.parse(value);
  return Number.isNaN(ms) ? undefined : toSeconds(new Date(ms));
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

/** The `reason`s of a JSON API error body, e.g. `notFound`, `rateLimitExceeded`. */
function errorReasons(body: Buffer): string[] {
  try {
    const doc = JSON.parse(body.toString('utf8')) as { error?: { errors?: { reason?: unknown }[] } };
    return (doc.error?.errors ?? []).map((e) => e.reason).filter((r): r is string => typeof r === 'string');
  } catch {
    return [];
  }
}

/** The innermost error with a string `code` (a system or TLS error), for `cause`: it holds no headers. */
function systemCause(err: unknown): Error | undefined {
  let found: Error | undefined;
  for (let e = err, depth = 0; e instanceof Error && depth < 8; e = e.cause, depth++) {
    if (typeof (e as { code?: unknown }).code === 'string' && !(e instanceof gaxios.GaxiosError)) found = e;
  }
  return found;
}

function errorCode(err: unknown): string | undefined {
  for (let e = err, depth = 0; e && typeof e === 'object' && depth < 8; e = (e as { cause?: unknown }).cause, depth++) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === 'string' && code !== 'AbortError') return code;
  }
  return undefined;
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
  readonly #agent: HttpAgent;
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

    const configured = spec.config.universeDomain?.trim()
      ? checkUniverse(location, spec.config.universeDomain.trim(), 'config universeDomain')
      : undefined;

    let universe = configured ?? DEFAULT_UNIVERSE;
    if (spec.credential !== undefined) {
      const key = parseGcpServiceAccountKey(spec.credential, location);
      const fromKey = key.universeDomain ? checkUniverse(location, key.universeDomain, 'the credential\'s universe_domain') : undefined;
      if (configured !== undefined && fromKey !== undefined && configured !== fromKey) {
        throw new InvalidLocationError(
          `location ${location}: config universeDomain "${configured}" does not match the credential's universe_domain "${fromKey}"`,
        );
      }
      universe = configured ?? fromKey ?? DEFAULT_UNIVERSE;
      const jwt = new JWT({
        email: key.clientEmail,
        key: key.privateKey,
        keyId: key.privateKeyId,
        scopes: [GCS_READ_SCOPE],
        universeDomain: universe,
      });
      // Not a constructor option in google-auth-library 11: without it the JWT client exchanges the
      // key for an OAuth token at oauth2.googleapis.com.
      jwt.useJWTAccessWithScope = true;
      // No URL: the token then depends on the scope only, so one signature serves every object for its hour.
      this.#auth = { headers: () => jwt.getRequestHeaders() };
    } else if (options.ambientCredentials) {
      const adc = new GoogleAuth({ scopes: [GCS_READ_SCOPE], ...(configured ? { universeDomain: configured } : {}) });
      // A key file found through GOOGLE_APPLICATION_CREDENTIALS signs its own JWTs too.
      adc.useJWTAccessWithScope = true;
      this.#auth = { headers: () => adc.getRequestHeaders() };
    } else {
      throw new InvalidLocationError(
        `location ${location} needs a credential: give it a GCP service-account key (the BSL's spec.credential)`,
      );
    }

    this.#root = apiRoot(location, spec.config, universe);
    checkEndpoint(options.endpointPolicy, location, new URL(this.#root));
    this.#timeouts = options.timeouts;
    this.#agent = guardAgent(
      this.#root.startsWith('https:')
        ? guardedAgent(true, options.timeouts, options.maxSockets, options.trust)
        : guardedAgent(false, options.timeouts, options.maxSockets),
      options.endpointPolicy,
      location,
    );
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
   * One GET, resolved at the response headers. `signal` and a timer for the headers both abort it;
   * the timer stops once headers arrive, the caller's signal keeps covering the body.
   */
  async #send(url: string, key: string, signal: AbortSignal, headers: Record<string, string>): Promise<Response> {
    const timer = new AbortController();
    const pending = setTimeout(
      () => timer.abort(new TimedOut(`no response within ${this.#timeouts.requestMs} ms`)),
      this.#timeouts.requestMs,
    );
    const combined = AbortSignal.any([signal, timer.signal]);
    try {
      const auth = await this.#authHeaders(key, combined, signal);
      const options = {
        url,
        method: 'GET',
        headers: { ...headers, ...auth },
        responseType: 'stream',
        signal: combined,
        agent: this.#agent,
        retry: false,
        validateStatus: () => true,
        redirect: 'manual',
        // node-fetch option: keep the stored bytes as they are (a gzip'd object stays gzip'd).
        compress: false,
      } as gaxios.GaxiosOptions;
      const res = await this.#http.request<Readable>(options);
      return { status: res.status, headers: res.headers, body: res.data };
    } catch (err) {
      if (signal.aborted) throw signal.reason;
      if (isStoreError(err)) throw err;
      if (timer.signal.aborted) {
        throw new StoreTimeoutError(`${this.#describe(key)}: the store did not answer within ${this.#timeouts.requestMs} ms`);
      }
      throw this.#networkError(err, key);
    } finally {
      clearTimeout(pending);
    }
  }

  /** Authorization (and, for ADC user credentials with a quota project, x-goog-user-project). */
  async #authHeaders(key: string, combined: AbortSignal, signal: AbortSignal): Promise<Record<string, string>> {
    let headers: Headers;
    try {
      headers = await new Promise<Headers>((resolve, reject) => {
        const onAbort = (): void => reject(combined.reason as Error);
        combined.addEventListener('abort', onAbort, { once: true });
        this.#auth.headers().then(resolve, reject).finally(() => combined.removeEventListener('abort', onAbort));
      });
    } catch (err) {
      if (signal.aborted || combined.aborted) throw err;
      // google-auth-library's messages describe what is missing, never a token or key.
      throw new StoreUnavailableError(`${this.#describe(key)}: could not obtain GCP credentials`, {
        cause: err instanceof gaxios.GaxiosError ? systemCause(err) : err,
      });
    }
    const authorization = headers.get('authorization');
    if (!authorization) throw new StoreUnavailableError(`${this.#describe(key)}: GCP credentials gave no Authorization header`);
    const userProject = headers.get('x-goog-user-project');
    return userProject ? { authorization, 'x-goog-user-project': userProject } : { authorization };
  }

  #networkError(err: unknown, key: string): Error {
    const refused = endpointRefusal(err, this.#location);
    if (refused !== undefined) return refused;
    const tls = tlsFailureCode(err);
    if (tls !== undefined) return new StoreUnavailableError(tlsFailureMessage(this.#location, tls), { cause: systemCause(err) });
    const code = errorCode(err);
    if (code === 'ETIMEDOUT' || code === 'ESOCKETTIMEDOUT') {
      return new StoreTimeoutError(`${this.#describe(key)}: the store did not answer in time`, { cause: systemCause(err) });
    }
    return new StoreUnavailableError(`${this.#describe(key)}: cannot reach the store${code ? ` (${code})` : ''}`, {
      cause: systemCause(err),
    });
  }

  /** Maps a non-success response (its body already read) to a store error. */
  #statusError(res: Response, body: Buffer, key: string): Error {
    const { status } = res;
    const reasons = errorReasons(body);
    const what = this.#describe(key);
    const rateLimited = reasons.some((r) => /rateLimitExceeded/.test(r));
    switch (classifyStatus(status, rateLimited ? 'rateLimitExceeded' : undefined, GCS_CODES)) {
      case 'notFound':
        return new ObjectNotFoundError(`${what} not found`);
      case 'redirect':
        // Sent with redirect: 'manual': a 3xx comes back as it is, never followed.
        return new StoreUnavailableError(`${what}: the store answered with a redirect (HTTP ${status}), which is not followed`);
      case 'throttled':
        return new ThrottledError(`${what}: the store asked to slow down (HTTP ${status})`, parseRetryAfter(res.headers.get('retry-after')));
      case 'denied':
        return new AccessDeniedError(`${what}: the store refused the location's credentials (HTTP ${status})`);
      case 'range':
        return new InvalidRangeError(`${what}: the byte range starts past the end of the object`);
      case 'timeout':
        return new StoreTimeoutError(`${what}: the store timed out (HTTP ${status})`);
      default:
        return new StoreUnavailableError(`${what}: the store answered HTTP ${status}${reasons[0] ? ` (${reasons[0]})` : ''}`);
    }
  }

  async #fail(res: Response, key: string, signal: AbortSignal): Promise<never> {
    let body: Buffer = Buffer.alloc(0);
    try {
      body = await readLimited(res.body, ERROR_BODY_LIMIT);
    } catch {
      if (signal.aborted) throw signal.reason;
    }
    throw this.#statusError(res, body, key);
  }

  async stat(key: string, { signal }: StatOptions): Promise<ObjectInfo> {
    signal.throwIfAborted();
    const url = this.#objectUrl(key);
    const res = await this.#send(url, key, signal, { accept: 'application/json' });
    if (res.status !== 200) return this.#fail(res, key, signal);
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
    const info: ObjectInfo = { size };
    const etag = etagOf(doc.generation);
    if (etag !== undefined) info.etag = etag;
    const lastModified = parseDate(typeof doc.updated === 'string' ? doc.updated : undefined);
    if (lastModified !== undefined) info.lastModified = lastModified;
    return info;
  }

  async get(key: string, { signal, range }: GetOptions): Promise<ObjectBody> {
    signal.throwIfAborted();
    const url = `${this.#objectUrl(key)}?alt=media`;
    const asked = range === undefined ? undefined : checkRange(range);
    // `gzip` makes GCS send stored bytes as stored (no decompressive transcoding, which would
    // ignore Range and change the length); `compress: false` keeps them so on our side.
    const headers: Record<string, string> = { 'accept-encoding': 'gzip' };
    if (asked !== undefined) headers.range = `bytes=${asked.start}-${asked.end}`;
    const res = await this.#send(url, key, signal, headers);
    if (res.status !== 200 && res.status !== 206) return this.#fail(res, key, signal);
    try {
      const { size, delivered } = this.#shape(res, key, asked);
      const info: ObjectInfo = { size };
      const etag = etagOf(res.headers.get('x-goog-generation'));
      if (etag !== undefined) info.etag = etag;
      const lastModified = parseDate(res.headers.get('last-modified'));
      if (lastModified !== undefined) info.lastModified = lastModified;
      const expected = delivered === undefined ? size : delivered.end - delivered.start + 1;
      const body = addAbortSignal(signal, this.#watchdog(res.body, withLengthCheck(res.body, expected), key));
      return delivered === undefined ? { ...info, body } : { ...info, body, range: delivered };
    } catch (err) {
      res.body.destroy();
      throw err;
    }
  }

  /**
   * Ends `body` with StoreTimeoutError when `source` delivers nothing for socketIdleMs. node-fetch
   * clears the socket's own timeout once the response arrives, so the body needs its own. Like a
   * socket timeout, it also fires when the consumer has not read for that long.
   */
  #watchdog(source: Readable, body: Readable, key: string): Readable {
    const ms = this.#timeouts.socketIdleMs;
    const timer = setTimeout(() => {
      body.destroy(new StoreTimeoutError(`${this.#describe(key)}: the store sent nothing for ${ms} ms`));
    }, ms);
    timer.unref();
    // Attached after withLengthCheck piped the source, so this listener only watches the flow.
    source.on('data', () => timer.refresh());
    body.once('close', () => clearTimeout(timer));
    return body;
  }

  /** Size and delivered range from a 200 or 206 media response's headers. */
  #shape(res: Response, key: string, asked: ByteRange | undefined): { size: number; delivered?: ByteRange } {
    const what = this.#describe(key);
    if (res.status === 206) {
      const m = CONTENT_RANGE.exec(res.headers.get('content-range') ?? '');
      const [start, end, size] = m ? [Number(m[1]), Number(m[2]), Number(m[3])] : [NaN, NaN, NaN];
      if (asked === undefined || !(start === asked.start && end >= start && end < size && end <= asked.end)) {
        throw new StoreUnavailableError(`${what}: the store sent a partial response that does not match the range asked`);
      }
      return { size, delivered: { start, end } };
    }
    const length = res.headers.get('content-length') ?? res.headers.get('x-goog-stored-content-length');
    const size = length !== null && /^\d+$/.test(length) ? Number(length) : NaN;
    if (!Number.isSafeInteger(size)) throw new StoreUnavailableError(`${what}: the store sent no object length`);
    if (asked === undefined) return { size };
    // A whole-object answer to a range request: fine only when the range covered the whole object.
    if (asked.start >= size) throw new InvalidRangeError(`${what}: byte range starts at ${asked.start}, past the object's ${size} bytes`);
    if (asked.start !== 0 || asked.end < size - 1) {
      throw new StoreUnavailableError(`${what}: the store ignored the byte range asked`);
    }
    return { size, delivered: { start: 0, end: size - 1 } };
  }

  list(prefix: string, opts: ListOptions): AsyncIterable<ListedObject> {
    const send = async (url: string, signal: AbortSignal): Promise<Readable> => {
      const res = await this.#send(url, prefix, signal, { accept: 'application/json' });
      return res.status === 200 ? res.body : this.#fail(res, prefix, signal);
    };
    const objectsUrl = `${this.#root}/storage/v1/b/${encodeURIComponent(this.#bucket)}/o`;
    return listGcs({ location: this.#location, objectsUrl, root: this.#prefix, send, etag: etagOf, date: parseDate }, prefix, opts);
  }

  async close(): Promise<void> {
    this.#agent.destroy();
  }
}
