/**
 * S3 and S3-compatible stores (providers `aws` / `velero.io/aws`), configured with the keys of
 * Velero's AWS plugin so that an existing BackupStorageLocation works unchanged.
 */
import { Readable } from 'node:stream';
import { GetObjectCommand, HeadBucketCommand, HeadObjectCommand, S3Client } from '@aws-sdk/client-s3';
import type { S3ClientConfig } from '@aws-sdk/client-s3';
import { NodeHttpHandler } from '@smithy/node-http-handler';
import type { AdapterOptions, ClosableStore } from './adapter.ts';
import { DEFAULT_REGION, settingsFor } from './s3-settings.ts';
import type { Settings } from './s3-settings.ts';
import { checkEndpoint } from './endpoint-guard.ts';
import { InvalidLocationError, StoreUnavailableError } from './errors.ts';
import { readLocationFile } from './file-settings.ts';
import { joinKey } from './keys.ts';
import { listS3 } from './s3-list.ts';
import { abortable } from '../util/abortable.ts';
import { checkRange, reconcileRange } from './range.ts';
import type { StoreSpec } from './spec.ts';
import { errnoOf, objectInfo, plainWord, translateFacts } from './translate.ts';
import type { ProviderFacts } from './translate.ts';
import { callStore, createAgents, upstreamBody } from './transport.ts';
import type { Agents } from './transport.ts';
import { tlsFailureCode } from './trust.ts';
import type { GetOptions, ListedObject, ListOptions, ObjectInfo, StatOptions, StreamBody } from './types.ts';

/** Velero's provider names for this adapter. */
export const S3_PROVIDERS: ReadonlySet<string> = new Set(['aws', 'velero.io/aws']);


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

interface SseC {
  SSECustomerAlgorithm: 'AES256';
  /** Base64 of the 32 key bytes; the SDK adds the key's MD5. */
  SSECustomerKey: string;
}

interface Ready {
  client: S3Client;
  sse: SseC | Record<string, never>;
}

function emptyBody(): Readable {
  return Readable.from([], { objectMode: false });
}

const NOT_FOUND = new Set(['NoSuchKey', 'NotFound', 'NoSuchVersion']);
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
const S3_CODES = {
  notFound: NOT_FOUND,
  noBucket: new Set(['NoSuchBucket']),
  denied: DENIED,
  throttled: THROTTLED,
  timeout: new Set(['RequestTimeout']),
  range: new Set(['InvalidRange']),
};

/** What an SDK error carries that we may show: never the error itself (it can hold the access key id). */
function factsOf(err: unknown): ProviderFacts {
  const e = (typeof err === 'object' && err !== null ? err : {}) as {
    name?: unknown;
    $metadata?: { httpStatusCode?: unknown; requestId?: unknown };
    $response?: { headers?: Record<string, unknown> };
  };
  const status = typeof e.$metadata?.httpStatusCode === 'number' ? e.$metadata.httpStatusCode : undefined;
  const retryAfter = e.$response?.headers?.['retry-after'];
  return {
    status,
    // The SDK names a service error by the store's code; a network error only by its kind, which says nothing.
    code: status === undefined ? undefined : plainWord(e.name),
    requestId: plainWord(e.$metadata?.requestId, /^[\w./+=-]{1,128}$/),
    retryAfter: typeof retryAfter === 'string' ? retryAfter : undefined,
    errno: errnoOf(err),
  };
}

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
  #agents: Agents | undefined;
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
      const out = await this.#call(signal, (s) =>
        client.send(new HeadObjectCommand({ Bucket: this.#spec.bucket, Key: name, ...sse }), { abortSignal: s }),
      );
      if (out.ContentLength === undefined) throw this.#unavailable(key, 'the store sent no Content-Length');
      return objectInfo(out.ContentLength, out.ETag, out.LastModified);
    } catch (err) {
      throw this.#translate(err, key, signal);
    }
  }

  async get(key: string, { signal, range }: GetOptions): Promise<StreamBody> {
    signal.throwIfAborted();
    const name = joinKey(this.#spec.prefix, key);
    if (range !== undefined) checkRange(range);
    let body: Readable | undefined;
    try {
      const { client, sse } = await this.#ready(signal);
      const Range = range === undefined ? {} : { Range: `bytes=${range.start}-${range.end}` };
      const out = await this.#call(signal, (s) =>
        client.send(new GetObjectCommand({ Bucket: this.#spec.bucket, Key: name, ...Range, ...sse }), { abortSignal: s }),
      );
      body = out.Body as Readable | undefined;
      // A store that widens or ignores the Range header (s3rver sends all of `bytes=0-0`) sends more than wanted.
      const { size, sent, want } = reconcileRange(range, { contentRange: out.ContentRange, contentLength: out.ContentLength }, (what) =>
        this.#unavailable(key, what),
      );
      const info = objectInfo(size, out.ETag, out.LastModified);
      const source = body ?? emptyBody();
      body = undefined;
      const what = `location ${this.#spec.name}: object ${JSON.stringify(key)}`;
      const checked = upstreamBody(source, { sent, want }, { what, idleMs: this.#opts.timeouts.socketIdleMs, signal });
      return { ...info, kind: 'stream', body: checked, ...(want && { range: want }) };
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
        call: (signal, attempt) => this.#call(signal, attempt),
        info: objectInfo,
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
    this.#agents?.destroy();
  }

  /** One SDK call under the transport's header deadline and retry policy. */
  #call<T>(signal: AbortSignal, send: (signal: AbortSignal) => Promise<T>): Promise<T> {
    return callStore(this.#opts.timeouts.requestMs, signal, S3_CODES, factsOf, send);
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
    this.#agents = createAgents(this.#opts);
    // The transport's agents and timers only: the handler's own timeouts stay off.
    this.#handler = new NodeHttpHandler({ httpAgent: this.#agents.http, httpsAgent: this.#agents.https });
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
      // The transport's retry policy (retry.ts) is the only one.
      maxAttempts: 1,
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
      const out = await this.#call(new AbortController().signal, (s) => finder.send(new HeadBucketCommand({ Bucket: this.#spec.bucket }), { abortSignal: s }));
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
    return this.#translateFacts(err, `reading object ${JSON.stringify(key)}`);
  }

  /** Maps an SDK or network error to a store error whose message names the location, never a credential. */
  #translateFacts(err: unknown, doing: string): Error {
    if ((err as { name?: unknown } | null)?.name === 'CredentialsProviderError') {
      return new StoreUnavailableError(`location ${this.#spec.name}: ${doing}: no credentials found by the AWS SDK's default chain`);
    }
    return translateFacts(err, factsOf(err), S3_CODES, { location: this.#spec.name, doing, bucket: `bucket ${JSON.stringify(this.#spec.bucket)}` });
  }
}
