/**
 * S3 and S3-compatible stores (providers `aws` / `velero.io/aws`), configured with the keys of
 * Velero's AWS plugin so that an existing BackupStorageLocation works unchanged.
 */
import { Agent as HttpAgent } from 'node:http';
import { Agent as HttpsAgent } from 'node:https';
import { addAbortSignal, Readable } from 'node:stream';
import { GetObjectCommand, HeadBucketCommand, HeadObjectCommand, S3Client } from '@aws-sdk/client-s3';
import type { S3ClientConfig } from '@aws-sdk/client-s3';
import { NodeHttpHandler } from '@smithy/node-http-handler';
import type { RetryStrategyV2, RetryToken } from '@smithy/types';
import type { AdapterOptions, ClosableStore } from './adapter.ts';
import { parseAwsCredentials } from './credentials/aws.ts';
import type { AwsCredentials } from './credentials/aws.ts';
import { checkEndpoint, guardAgent } from './endpoint-guard.ts';
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
import { readLocationFile } from './file-settings.ts';
import { classifyStatus, parseRetryAfter } from './http-status.ts';
import { joinKey } from './keys.ts';
import { listS3 } from './s3-list.ts';
import { abortable } from '../util/abortable.ts';
import { withLengthCheck } from './length-check.ts';
import type { StoreSpec } from './spec.ts';
import { agentTlsOptions, tlsFailureCode, tlsFailureMessage } from './trust.ts';
import type { ByteRange, GetOptions, ListedObject, ListOptions, ObjectBody, ObjectInfo, StatOptions } from './types.ts';

/** Velero's provider names for this adapter. */
export const S3_PROVIDERS: ReadonlySet<string> = new Set(['aws', 'velero.io/aws']);

/**
 * Every `spec.config` key Velero's AWS plugin accepts. Only `region`, `s3Url`, `s3ForcePathStyle`,
 * `profile` and `customerKeyEncryptionFile` change how objects are read; the others concern writing
 * or pre-signing and are accepted so that the same BSL works here. Anything else is refused, as the
 * plugin refuses it.
 */
export const S3_CONFIG_KEYS: ReadonlySet<string> = new Set([
  'region',
  's3Url',
  'publicUrl',
  's3ForcePathStyle',
  'insecureSkipTLSVerify',
  'profile',
  'credentialsFile',
  'serverSideEncryption',
  'kmsKeyId',
  'customerKeyEncryptionFile',
  'checksumAlgorithm',
  'tagging',
  'signatureVersion',
  'enableSharedConfig',
  'bucket',
  'prefix',
  'caCert',
]);

/** What Velero's plugin (and S3) use when an endpoint is given without a region. */
const DEFAULT_REGION = 'us-east-1';

/** One retry: a blip is absorbed, while a dead store does not hold a download for several timeouts. */
const MAX_ATTEMPTS = 2;
const RETRY_DELAY_MS = 100;

/** SSE-C keys are AES-256 keys; the plugin reads exactly this many bytes of the key file. */
const SSE_C_KEY_BYTES = 32;

/** Test seams; production code passes none. */
export interface S3StoreTestHooks {
  /**
   * Where requests meant for AWS itself go (region discovery, and every request of a location
   * without `s3Url`), path-style; lets a test server play AWS.
   */
  awsEndpoint?: string;
}

interface Settings {
  /** Explicit region, or undefined when it must be discovered from the bucket. */
  region: string | undefined;
  endpoint: string | undefined;
  forcePathStyle: boolean;
  profile: string | undefined;
  customerKeyFile: string | undefined;
  credentials: AwsCredentials | undefined;
}

interface SseC {
  SSECustomerAlgorithm: 'AES256';
  /** Base64 of the 32 key bytes; the SDK adds the key's MD5. */
  SSECustomerKey: string;
}

interface Ready {
  client: S3Client;
  sse: SseC | Record<string, never>;
}

/** Go's strconv.ParseBool, which the plugin uses for its boolean keys. */
function parseBool(value: string, key: string, location: string): boolean {
  if (['1', 't', 'T', 'TRUE', 'true', 'True'].includes(value)) return true;
  if (['0', 'f', 'F', 'FALSE', 'false', 'False'].includes(value)) return false;
  throw new InvalidLocationError(`location ${location}: config ${key} must be true or false`);
}

function settingsFor(spec: StoreSpec, ambientCredentials: boolean): Settings {
  const location = spec.name;
  const config = spec.config;
  const unknown = Object.keys(config).filter((key) => !S3_CONFIG_KEYS.has(key));
  if (unknown.length > 0) {
    throw new InvalidLocationError(`location ${location}: unknown config key(s) for provider ${spec.provider}: ${unknown.join(', ')}`);
  }
  if (spec.bucket === '') throw new InvalidLocationError(`location ${location}: the bucket is empty`);
  const value = (key: string): string | undefined => {
    const v = config[key]?.trim();
    return v === undefined || v === '' ? undefined : v;
  };
  const s3Url = value('s3Url');
  if (s3Url !== undefined) {
    let url: URL | undefined;
    try {
      url = new URL(s3Url);
    } catch {
      url = undefined;
    }
    if (url === undefined || (url.protocol !== 'http:' && url.protocol !== 'https:') || url.hostname === '') {
      throw new InvalidLocationError(`location ${location}: config s3Url must be an http:// or https:// URL`);
    }
  }
  const pathStyle = value('s3ForcePathStyle');
  const insecure = value('insecureSkipTLSVerify');
  // Validated here for a clear error; trust (the factory's trustFor) is what applies it.
  if (insecure !== undefined) parseBool(insecure, 'insecureSkipTLSVerify', location);
  const profile = value('profile');
  let credentials: AwsCredentials | undefined;
  if (spec.credential !== undefined) {
    credentials = parseAwsCredentials(spec.credential, location, profile);
  } else if (!ambientCredentials) {
    throw new InvalidLocationError(
      `location ${location} needs a credential: give it an AWS credentials file (spec.credential)`,
    );
  }
  return {
    region: value('region') ?? (s3Url === undefined ? undefined : DEFAULT_REGION),
    endpoint: s3Url,
    forcePathStyle: pathStyle === undefined ? false : parseBool(pathStyle, 's3ForcePathStyle', location),
    profile,
    customerKeyFile: value('customerKeyEncryptionFile'),
    credentials,
  };
}

function checkRange(range: ByteRange): void {
  const { start, end } = range;
  if (!Number.isSafeInteger(start) || !Number.isSafeInteger(end) || start < 0 || end < start) {
    throw new InvalidRangeError(`invalid byte range ${start}-${end}`);
  }
}

const STRONG_ETAG = /^"[\x21\x23-\x7e\x80-\xff]*"$/;
const ETAG_CHARS = /^[\x21\x23-\x7e\x80-\xff]*$/;

/** S3 sends ETags quoted; some S3-compatible stores do not. Anything else is left out. */
function etagOf(raw: string | undefined): string | undefined {
  if (raw === undefined) return undefined;
  if (STRONG_ETAG.test(raw)) return raw;
  return ETAG_CHARS.test(raw) && raw !== '' ? `"${raw}"` : undefined;
}

const CONTENT_RANGE = /^bytes (\d+)-(\d+)\/(\d+)$/;

function emptyBody(): Readable {
  return Readable.from([], { objectMode: false });
}

/**
 * Bytes `skip .. skip+length-1` of `source`. Ending early (or being destroyed) ends the iteration,
 * which destroys `source` and so frees its socket.
 */
function slice(source: Readable, skip: number, length: number): Readable {
  async function* bytes(): AsyncGenerator<Buffer> {
    let toSkip = skip;
    let left = length;
    for await (const chunk of source) {
      let buf = chunk as Buffer;
      if (toSkip >= buf.length) {
        toSkip -= buf.length;
        continue;
      }
      buf = buf.subarray(toSkip, toSkip + left);
      toSkip = 0;
      left -= buf.length;
      yield buf;
      if (left === 0) return;
    }
  }
  return Readable.from(bytes(), { objectMode: false });
}

/** What an SDK error carries that we may show: never the error itself (it can hold the access key id). */
interface ErrorFacts {
  status: number | undefined;
  code: string | undefined;
  requestId: string | undefined;
  retryAfter: string | undefined;
  errno: string | undefined;
}

function factsOf(err: unknown): ErrorFacts {
  const e = (typeof err === 'object' && err !== null ? err : {}) as {
    name?: unknown;
    code?: unknown;
    $metadata?: { httpStatusCode?: unknown; requestId?: unknown };
    $response?: { headers?: Record<string, unknown> };
  };
  const status = typeof e.$metadata?.httpStatusCode === 'number' ? e.$metadata.httpStatusCode : undefined;
  // The code comes from the store; a hostile endpoint could make it anything, so only a plain word passes.
  const name = typeof e.name === 'string' && /^[A-Za-z0-9.]{1,64}$/.test(e.name) ? e.name : undefined;
  const requestId = typeof e.$metadata?.requestId === 'string' && /^[\w./+=-]{1,128}$/.test(e.$metadata.requestId)
    ? e.$metadata.requestId
    : undefined;
  const retryAfter = e.$response?.headers?.['retry-after'];
  return {
    status,
    code: name,
    requestId,
    retryAfter: typeof retryAfter === 'string' ? retryAfter : undefined,
    errno: typeof e.code === 'string' && /^[A-Z0-9_]{1,40}$/.test(e.code) ? e.code : undefined,
  };
}


const NOT_FOUND = new Set(['NoSuchKey', 'NotFound', 'NoSuchBucket', 'NoSuchVersion']);
const DENIED = new Set([
  'AccessDenied',
  'Forbidden',
  'InvalidAccessKeyId',
  'SignatureDoesNotMatch',
  'ExpiredToken',
  'InvalidToken',
  'TokenRefreshRequired',
  'AccountProblem',
  'AllAccessDisabled',
  'InvalidClientTokenId',
  'UnrecognizedClientException',
]);
const THROTTLED = new Set(['SlowDown', 'Throttling', 'ThrottlingException', 'TooManyRequests', 'RequestLimitExceeded', 'ServiceUnavailable']);
/** The Node HTTP handler names these "TimeoutError" too, but they are broken connections, not timeouts. */
const RESET = new Set(['ECONNRESET', 'EPIPE']);
const S3_CODES = { notFound: NOT_FOUND, denied: DENIED, throttled: THROTTLED, range: new Set(['InvalidRange']) };

function retryToken(count: number, delay: number): RetryToken {
  return { getRetryCount: () => count, getRetryDelay: () => delay };
}

/**
 * Retries a broken connection or a server error once, quickly. Throttling is not retried: the SDK's
 * own strategy would wait out Retry-After (up to seconds) while the download's client waits; a
 * ThrottledError hands Retry-After to the caller instead. A timeout is not retried either, so one
 * call never takes twice the configured time.
 */
const RETRY_ONCE: RetryStrategyV2 = {
  acquireInitialRetryToken: async () => retryToken(0, 0),
  refreshRetryTokenForRetry: async (token, info) => {
    const { code, errno } = factsOf(info.error);
    const timedOut = code === 'TimeoutError' && !RESET.has(errno ?? '');
    const retryable = info.errorType === 'TRANSIENT' || info.errorType === 'SERVER_ERROR';
    if (token.getRetryCount() + 1 >= MAX_ATTEMPTS || timedOut || !retryable) throw new Error('not retried');
    return retryToken(token.getRetryCount() + 1, RETRY_DELAY_MS);
  },
  recordSuccess: () => undefined,
};

/**
 * An ObjectStore over one S3 bucket (and prefix). The SDK client is built on first use: the SSE-C key
 * file is read then, and the bucket's region discovered when neither `region` nor `s3Url` is set.
 */
export class S3Store implements ClosableStore {
  readonly #spec: StoreSpec;
  readonly #opts: AdapterOptions;
  readonly #settings: Settings;
  readonly #hooks: S3StoreTestHooks;
  #handler: NodeHttpHandler | undefined;
  #building: Promise<Ready> | undefined;
  #client: S3Client | undefined;
  #closed = false;

  /** Validates the location's config and parses its credential; throws InvalidLocationError. */
  constructor(opts: AdapterOptions, testHooks: S3StoreTestHooks = {}) {
    if (!S3_PROVIDERS.has(opts.spec.provider)) {
      throw new InvalidLocationError(`location ${opts.spec.name}: provider "${opts.spec.provider}" is not an S3 provider`);
    }
    this.#spec = opts.spec;
    this.#opts = opts;
    this.#hooks = testHooks;
    this.#settings = settingsFor(opts.spec, opts.ambientCredentials);
    if (this.#settings.endpoint !== undefined) checkEndpoint(opts.endpointPolicy, opts.spec.name, new URL(this.#settings.endpoint));
  }

  async stat(key: string, { signal }: StatOptions): Promise<ObjectInfo> {
    signal.throwIfAborted();
    const name = joinKey(this.#spec.prefix, key);
    try {
      const { client, sse } = await this.#ready(signal);
      const out = await client.send(new HeadObjectCommand({ Bucket: this.#spec.bucket, Key: name, ...sse }), {
        abortSignal: signal,
      });
      if (out.ContentLength === undefined) throw this.#unavailable(key, 'the store sent no Content-Length');
      return this.#info(out.ContentLength, out.ETag, out.LastModified);
    } catch (err) {
      throw this.#translate(err, key, signal);
    }
  }

  async get(key: string, { signal, range }: GetOptions): Promise<ObjectBody> {
    signal.throwIfAborted();
    const name = joinKey(this.#spec.prefix, key);
    if (range !== undefined) checkRange(range);
    let body: Readable | undefined;
    try {
      const { client, sse } = await this.#ready(signal);
      const out = await client.send(
        new GetObjectCommand({
          Bucket: this.#spec.bucket,
          Key: name,
          ...(range === undefined ? {} : { Range: `bytes=${range.start}-${range.end}` }),
          ...sse,
        }),
        { abortSignal: signal },
      );
      body = out.Body as Readable | undefined;
      const { size, sent, want } = this.#ranges(key, range, out.ContentRange, out.ContentLength);
      const info = this.#info(size, out.ETag, out.LastModified);
      const source = body ?? emptyBody();
      body = undefined;
      let checked: Readable;
      if (want === undefined || (want.start === sent.start && want.end === sent.end)) {
        checked = withLengthCheck(source, sent.end - sent.start + 1);
      } else {
        const length = want.end - want.start + 1;
        checked = withLengthCheck(slice(source, want.start - sent.start, length), length);
      }
      addAbortSignal(signal, checked);
      return want === undefined ? { ...info, body: checked } : { ...info, body: checked, range: want };
    } catch (err) {
      // Refused after the headers arrived (a range past the end, a malformed answer): free the socket.
      body?.destroy();
      throw this.#translate(err, key, signal);
    }
  }

  list(prefix: string, opts: ListOptions): AsyncIterable<ListedObject> {
    const { name: location, bucket, prefix: root } = this.#spec;
    return listS3(
      {
        location,
        bucket,
        root,
        client: async (signal) => (await this.#ready(signal)).client,
        info: (size, etag, lastModified) => this.#info(size, etag, lastModified),
        translate: (err, signal) => this.#translate(err, prefix, signal),
      },
      prefix,
      opts,
    );
  }

  /** Destroys the client and its sockets; later calls fail with StoreUnavailableError. */
  async close(): Promise<void> {
    this.#closed = true;
    this.#client?.destroy();
    this.#client = undefined;
    this.#handler?.destroy();
    this.#handler = undefined;
  }

  /**
   * From the response headers: the whole object's size, the bytes the body holds (`sent`, an empty
   * range `0..-1` for an empty object) and the range to hand out (`want`: the asked one, clamped).
   * A store that widens or ignores the Range header (s3rver sends all of `bytes=0-0`) sends more
   * than wanted; the caller gets exactly `want`, cut from it.
   */
  #ranges(
    key: string,
    asked: ByteRange | undefined,
    contentRange: string | undefined,
    contentLength: number | undefined,
  ): { size: number; sent: ByteRange; want: ByteRange | undefined } {
    let size: number;
    let sent: ByteRange;
    if (contentRange !== undefined) {
      const m = CONTENT_RANGE.exec(contentRange.trim());
      if (!m) throw this.#unavailable(key, 'the store sent a malformed Content-Range');
      const [start, end] = [Number(m[1]), Number(m[2])];
      size = Number(m[3]);
      // S3 answers 416 itself; s3rver sends "bytes 0-0/0" for a range of an empty object instead.
      if (asked !== undefined && asked.start >= size) throw this.#pastEnd(asked, size);
      if (end < start || end >= size || (contentLength !== undefined && contentLength !== end - start + 1)) {
        throw this.#unavailable(key, 'the store sent an inconsistent Content-Range');
      }
      sent = { start, end };
    } else {
      if (contentLength === undefined) throw this.#unavailable(key, 'the store sent no Content-Length');
      size = contentLength;
      sent = { start: 0, end: size - 1 };
    }
    if (asked === undefined) {
      if (sent.start !== 0 || sent.end !== size - 1) throw this.#unavailable(key, 'the store sent part of the object unasked');
      return { size, sent, want: undefined };
    }
    if (asked.start >= size) throw this.#pastEnd(asked, size);
    const want = { start: asked.start, end: Math.min(asked.end, size - 1) };
    if (sent.start > want.start || sent.end < want.end) {
      throw this.#unavailable(key, 'the store sent a range that does not cover the one asked');
    }
    return { size, sent, want };
  }

  #pastEnd(asked: ByteRange, size: number): InvalidRangeError {
    return new InvalidRangeError(
      `location ${this.#spec.name}: byte range starts at ${asked.start}, past the object's ${size} bytes`,
    );
  }

  #info(size: number, etag: string | undefined, lastModified: Date | undefined): ObjectInfo {
    const info: ObjectInfo = { size };
    const tag = etagOf(etag);
    if (tag !== undefined) info.etag = tag;
    if (lastModified instanceof Date && !Number.isNaN(lastModified.getTime())) info.lastModified = lastModified;
    return info;
  }

  #unavailable(key: string, what: string): StoreUnavailableError {
    return new StoreUnavailableError(`location ${this.#spec.name}: reading object ${JSON.stringify(key)}: ${what}`);
  }

  #closedError(): StoreUnavailableError {
    return new StoreUnavailableError(`location ${this.#spec.name}: the store's client has been closed`);
  }

  #ready(signal: AbortSignal): Promise<Ready> {
    if (this.#closed) return Promise.reject(this.#closedError());
    // Built once and shared; a failed build (unreadable key file, discovery error) is retried next call.
    this.#building ??= this.#build().catch((err: unknown) => {
      this.#building = undefined;
      throw err;
    });
    return abortable(this.#building, signal);
  }

  #requestHandler(): NodeHttpHandler {
    if (this.#handler !== undefined) return this.#handler;
    // A build still running when close() came must not open a new pool nobody will close.
    if (this.#closed) throw this.#closedError();
    const { trust, maxSockets, timeouts, endpointPolicy } = this.#opts;
    const name = this.#spec.name;
    this.#handler = new NodeHttpHandler({
      httpAgent: guardAgent(new HttpAgent({ keepAlive: true, maxSockets }), endpointPolicy, name),
      httpsAgent: guardAgent(
        new HttpsAgent({
          keepAlive: true,
          maxSockets,
          ...agentTlsOptions(trust),
        }),
        endpointPolicy,
        name,
      ),
      connectionTimeout: timeouts.connectMs,
      // Time to the response headers; without throwOnRequestTimeout the SDK only logs a warning.
      requestTimeout: timeouts.requestMs,
      throwOnRequestTimeout: true,
      // Idle socket, also while the body streams.
      socketTimeout: timeouts.socketIdleMs,
    });
    return this.#handler;
  }

  #clientConfig(region: string): S3ClientConfig {
    const s = this.#settings;
    const aws = this.#hooks.awsEndpoint;
    const endpoint = s.endpoint ?? aws;
    return {
      region,
      ...(endpoint === undefined ? {} : { endpoint }),
      forcePathStyle: s.forcePathStyle || (s.endpoint === undefined && aws !== undefined),
      // No credentials given: the SDK's default chain (environment, web identity, instance role), with the profile named.
      ...(s.credentials === undefined ? (s.profile === undefined ? {} : { profile: s.profile }) : { credentials: s.credentials }),
      requestHandler: this.#requestHandler(),
      retryStrategy: RETRY_ONCE,
      // Reads only: whole-object checksums would not match ranged GETs, and validating them
      // would wrap every body in another stream.
      requestChecksumCalculation: 'WHEN_REQUIRED',
      responseChecksumValidation: 'WHEN_REQUIRED',
    };
  }

  async #build(): Promise<Ready> {
    const sse = await this.#readCustomerKey();
    const region = this.#settings.region ?? (await this.#discoverRegion());
    if (this.#closed) throw this.#closedError();
    this.#client = new S3Client(this.#clientConfig(region));
    return { client: this.#client, sse };
  }

  async #readCustomerKey(): Promise<SseC | Record<string, never>> {
    const file = this.#settings.customerKeyFile;
    if (file === undefined) return {};
    // A regular file of at most 1 MiB, and never for a tenant's location (the factory refused it already).
    const bytes = await readLocationFile(this.#spec, 'config customerKeyEncryptionFile', file);
    // Velero's plugin reads the first 32 bytes (and silently ignores the rest): objects it wrote
    // were encrypted with exactly those.
    if (bytes.length < SSE_C_KEY_BYTES) {
      throw new InvalidLocationError(
        `location ${this.#spec.name}: config customerKeyEncryptionFile names a file shorter than the ${SSE_C_KEY_BYTES}-byte key it must hold`,
      );
    }
    return { SSECustomerAlgorithm: 'AES256', SSECustomerKey: bytes.subarray(0, SSE_C_KEY_BYTES).toString('base64') };
  }

  /**
   * The bucket's region, as Velero's plugin finds it: a HeadBucket through us-east-1, whose answer
   * (200, or the 301/403 of a bucket elsewhere) carries `x-amz-bucket-region`.
   */
  async #discoverRegion(): Promise<string> {
    const finder = new S3Client(this.#clientConfig(DEFAULT_REGION));
    const what = `finding the region of bucket ${JSON.stringify(this.#spec.bucket)}`;
    try {
      const out = await finder.send(new HeadBucketCommand({ Bucket: this.#spec.bucket }));
      return out.BucketRegion ?? DEFAULT_REGION;
    } catch (err) {
      const header = (err as { $response?: { headers?: Record<string, unknown> } }).$response?.headers?.['x-amz-bucket-region'];
      if (typeof header === 'string' && /^[a-z0-9-]{1,40}$/.test(header)) return header;
      const translated = this.#translateFacts(err, what);
      if (translated instanceof StoreUnavailableError && tlsFailureCode(err) === undefined) {
        throw new StoreUnavailableError(`${translated.message}; set config region to skip the lookup`, { cause: translated });
      }
      throw translated;
    }
    // The finder shares the request handler and is not destroyed: that would close the store's sockets.
  }

  #translate(err: unknown, key: string, signal: AbortSignal): unknown {
    // The abort reason goes out as it came in, as signal.throwIfAborted() does.
    if (signal.aborted) return signal.reason;
    if (isStoreError(err)) return err;
    return this.#translateFacts(err, `reading object ${JSON.stringify(key)}`);
  }

  /** Maps an SDK or network error to a store error whose message names the location, never a credential. */
  #translateFacts(err: unknown, what: string): Error {
    if (isStoreError(err)) return err;
    const location = this.#spec.name;
    const tls = tlsFailureCode(err);
    if (tls !== undefined) return new StoreUnavailableError(tlsFailureMessage(location, tls));
    const f = factsOf(err);
    const detail = [f.code, f.status === undefined ? undefined : `HTTP ${f.status}`, f.requestId && `request id ${f.requestId}`]
      .filter((s) => s !== undefined && s !== '')
      .join(', ');
    const at = `location ${location}: ${what}`;
    const status = f.status;
    const code = f.code ?? '';
    switch (classifyStatus(status, code, S3_CODES)) {
      case 'notFound': {
        const bucket = code === 'NoSuchBucket' ? ` (bucket ${JSON.stringify(this.#spec.bucket)} does not exist)` : '';
        return new ObjectNotFoundError(`${at}: not found${bucket}`);
      }
      case 'range':
        return new InvalidRangeError(`${at}: the range is not satisfiable`);
      case 'redirect':
        // The SDK never follows a redirect (nor should it: it could lead anywhere); say so.
        return new StoreUnavailableError(`${at}: the store answered with a redirect (${detail}), which is not followed`);
      case 'denied':
        return new AccessDeniedError(`${at}: the store refused the location's credentials (${detail})`);
      case 'throttled':
        return new ThrottledError(`${at}: the store asks to slow down (${detail})`, parseRetryAfter(f.retryAfter));
      default:
    }
    if ((code === 'TimeoutError' && !RESET.has(f.errno ?? '')) || code === 'RequestTimeout') {
      return new StoreTimeoutError(`${at}: the store did not answer in time`);
    }
    if (code === 'CredentialsProviderError') {
      return new StoreUnavailableError(`${at}: no credentials found by the AWS SDK's default chain`);
    }
    if (status !== undefined) return new StoreUnavailableError(`${at}: the store answered with an error (${detail})`);
    if (f.errno !== undefined) {
      // A network error (refused, reset, DNS): Node's message names host and port, nothing secret.
      return new StoreUnavailableError(`${at}: the store cannot be reached (${f.errno})`, { cause: err });
    }
    return new StoreUnavailableError(`${at}: the request failed (${f.code ?? 'unknown error'})`);
  }
}
