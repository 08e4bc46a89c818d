/**
 * Azure Blob storage (providers `azure`, `velero.io/azure`) through @azure/storage-blob, configured the
 * way Velero's Azure plugin reads a BackupStorageLocation: the bucket is the container, objects are
 * `<prefix>/<key>`, the account and endpoint come from `spec.config`, the credential from the dotenv
 * credential file.
 */
import http from 'node:http';
import https from 'node:https';
import { Socket } from 'node:net';
import type { Readable } from 'node:stream';
import {
  AzureAuthorityHosts,
  ClientCertificateCredential,
  ClientSecretCredential,
  DefaultAzureCredential,
} from '@azure/identity';
import type { TokenCredential, TokenCredentialOptions } from '@azure/identity';
import { BlobServiceClient, isRestError, newPipeline, StorageSharedKeyCredential } from '@azure/storage-blob';
import type {
  BlobDownloadResponseParsed,
  ContainerClient,
  RequestPolicy,
  RequestPolicyFactory,
  RestError,
  StoragePipelineOptions,
  WebResource,
} from '@azure/storage-blob';
import type { AdapterOptions, ClosableStore, Timeouts } from './adapter.ts';
import { azureAuthFor, parseAzureCredentialFile } from './credentials/azure.ts';
import type { AzureAuth, AzureCredentialValues } from './credentials/azure.ts';
import { checkEndpoint, endpointRefusal, guardAgent } from './endpoint-guard.ts';
import {
  AccessDeniedError,
  InvalidKeyError,
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
import { listAzure } from './azure-list.ts';
import { joinKey, normalizePrefix } from './keys.ts';
import { withLengthCheck } from './length-check.ts';
import type { StoreSpec } from './spec.ts';
import { agentTlsOptions, tlsFailureCode, tlsFailureMessage } from './trust.ts';
import type { ByteRange, GetOptions, ListedObject, ListOptions, ObjectBody, ObjectInfo, StatOptions } from './types.ts';

/** Velero's provider names for Azure Blob storage. */
export const AZURE_PROVIDERS: ReadonlySet<string> = new Set(['azure', 'velero.io/azure']);

/**
 * The `spec.config` keys Velero's Azure plugin accepts, plus `insecureSkipTLSVerify` (every provider
 * of this gateway) and `apiVersion` (x-ms-version override, e.g. for Azure Stack Hub). `resourceGroup`,
 * `subscriptionId`, `blockSizeInBytes` and `credentialsFile` are accepted and not needed for reads.
 */
export const AZURE_CONFIG_KEYS: ReadonlySet<string> = new Set([
  'storageAccount',
  'storageAccountURI',
  'storageAccountKeyEnvVar',
  'useAAD',
  'activeDirectoryAuthorityURI',
  'resourceGroup',
  'subscriptionId',
  'blockSizeInBytes',
  'credentialsFile',
  'apiVersion',
  'insecureSkipTLSVerify',
]);

interface Cloud {
  blobSuffix: string;
  authorityHost: string;
}

const PUBLIC: Cloud = { blobSuffix: 'blob.core.windows.net', authorityHost: AzureAuthorityHosts.AzurePublicCloud };
const US_GOVERNMENT: Cloud = { blobSuffix: 'blob.core.usgovcloudapi.net', authorityHost: AzureAuthorityHosts.AzureGovernment };
const CHINA: Cloud = { blobSuffix: 'blob.core.chinacloudapi.cn', authorityHost: AzureAuthorityHosts.AzureChina };

const WELL_KNOWN_AUTHORITIES: ReadonlySet<string> = new Set([PUBLIC.authorityHost, US_GOVERNMENT.authorityHost, CHINA.authorityHost]);

// AZURE_CLOUD_NAME as Velero matches it: case-insensitive, with the older spellings.
const CLOUDS: ReadonlyMap<string, Cloud> = new Map([
  ['', PUBLIC],
  ['AZURECLOUD', PUBLIC],
  ['AZUREPUBLICCLOUD', PUBLIC],
  ['AZUREUSGOVERNMENT', US_GOVERNMENT],
  ['AZUREUSGOVERNMENTCLOUD', US_GOVERNMENT],
  ['AZURECHINACLOUD', CHINA],
]);

/** Retries kept small: a broken endpoint fails fast instead of after the SDK's 4 tries with 4 s waits. */
const SDK_RETRIES = { maxTries: 2, retryDelayInMs: 200, maxRetryDelayInMs: 1000 };
/**
 * A body whose stream errors mid-way is resumed by the SDK (a range request with If-Match on the etag)
 * at most this many times. A connection the store closes early is not resumed: Node reports it as
 * 'aborted', which the SDK treats as final, and the body errors.
 */
const BODY_RESUMES = 2;

// Container names: 3-63 lowercase letters, digits and single hyphens, starting and ending with a letter or digit.
const CONTAINER = /^(?:[a-z0-9](?:[a-z0-9]|-(?=[a-z0-9])){2,62}|\$root|\$web|\$logs)$/;
// The account becomes a host name label when there is no storageAccountURI.
const ACCOUNT = /^[a-z0-9]{3,24}$/;
const API_VERSION = /^\d{4}-\d{2}-\d{2}$/;

const NOT_FOUND = new Set(['BlobNotFound', 'ContainerNotFound', 'ResourceNotFound']);
const DENIED = new Set([
  'AuthenticationFailed',
  'AuthorizationFailure',
  'AuthorizationPermissionMismatch',
  'AuthorizationProtocolMismatch',
  'AuthorizationResourceTypeMismatch',
  'AuthorizationServiceMismatch',
  'AuthorizationSourceIPMismatch',
  'InsufficientAccountPermissions',
  'InvalidAuthenticationInfo',
  'NoAuthenticationInformation',
  'AccountIsDisabled',
  'KeyBasedAuthenticationNotPermitted',
]);
const THROTTLED = new Set(['ServerBusy', 'TooManyRequests']);
const BAD_NAME = new Set(['InvalidResourceName', 'InvalidUri', 'OutOfRangeInput']);
const AZURE_CODES = { notFound: NOT_FOUND, denied: DENIED, throttled: THROTTLED, timeout: new Set(['OperationTimedOut']), range: new Set(['InvalidRange']) };
const TIMEOUT_CODES = new Set(['ETIMEDOUT', 'ESOCKETTIMEDOUT', 'TIMEOUT']);

function fail(location: string, what: string): never {
  throw new InvalidLocationError(`location ${location}: ${what}`);
}

function checkConfig(config: Record<string, string>, location: string): void {
  const unknown = Object.keys(config).filter((k) => !AZURE_CONFIG_KEYS.has(k));
  if (unknown.length > 0) {
    fail(location, `unknown Azure config key(s) ${unknown.map((k) => JSON.stringify(k)).join(', ')}; known: ${[...AZURE_CONFIG_KEYS].join(', ')}`);
  }
  const apiVersion = config.apiVersion ?? '';
  if (apiVersion !== '' && !API_VERSION.test(apiVersion)) fail(location, 'config apiVersion must look like 2021-08-06');
  // Checked even when the credential is a shared key: a bad value is a mistake waiting for the switch to Azure AD.
  authorityHostFor(config, undefined, location);
}

/** The blob endpoint: storageAccountURI as given (scheme optional), else the account in the credential's cloud. */
function endpointFor(config: Record<string, string>, cloud: Cloud | undefined, location: string): string {
  const account = config.storageAccount ?? '';
  const given = (config.storageAccountURI ?? '').trim();
  if (given !== '') {
    let url: URL;
    try {
      // Velero's own docs show the URI without a scheme.
      url = new URL(/^[a-z][a-z0-9+.-]*:\/\//i.test(given) ? given : `https://${given}`);
    } catch {
      fail(location, 'config storageAccountURI is not a URL');
    }
    if (url.protocol !== 'https:' && url.protocol !== 'http:') fail(location, 'config storageAccountURI must be an http(s) URL');
    // A SAS token or user info there would be a credential in configuration, and in every log line that shows the endpoint.
    if (url.username !== '' || url.password !== '' || url.search !== '' || url.hash !== '') {
      fail(location, 'config storageAccountURI must not carry user info, a query (SAS token) or a fragment');
    }
    return url.href.replace(/\/+$/, '');
  }
  if (!ACCOUNT.test(account)) fail(location, 'config storageAccount must be 3-24 lowercase letters and digits');
  if (cloud === undefined) {
    fail(location, 'AZURE_CLOUD_NAME in the credential file names a cloud this gateway does not know (AzurePublicCloud, AzureUSGovernmentCloud, AzureChinaCloud); set config storageAccountURI');
  }
  return `https://${account}.${cloud.blobSuffix}`;
}

function authorityHostFor(config: Record<string, string>, cloud: Cloud | undefined, location: string): string | undefined {
  const given = (config.activeDirectoryAuthorityURI ?? '').trim();
  if (given === '') return cloud?.authorityHost;
  let url: URL;
  try {
    url = new URL(given);
  } catch {
    fail(location, 'config activeDirectoryAuthorityURI is not a URL');
  }
  if (url.protocol !== 'https:') fail(location, 'config activeDirectoryAuthorityURI must be an https URL');
  return url.href.replace(/\/+$/, '');
}

function connectTimeoutError(ms: number): Error {
  return Object.assign(new Error(`connection not established within ${ms} ms`), { code: 'ETIMEDOUT' });
}

/** Destroys a socket that has not connected (and, for TLS, finished its handshake) within `ms`. */
function armConnectTimeout(socket: unknown, ms: number, ready: 'connect' | 'secureConnect'): void {
  if (!(socket instanceof Socket)) return;
  const timer = setTimeout(() => socket.destroy(connectTimeoutError(ms)), ms);
  const clear = (): void => clearTimeout(timer);
  socket.once(ready, clear);
  socket.once('close', clear);
}

/** Node's agents take no connect timeout; this one adds it. */
class TimedHttpAgent extends http.Agent {
  readonly #connectMs: number;
  constructor(options: http.AgentOptions, connectMs: number) {
    super(options);
    this.#connectMs = connectMs;
  }
  override createConnection(...args: Parameters<http.Agent['createConnection']>): ReturnType<http.Agent['createConnection']> {
    const socket = super.createConnection(...args);
    armConnectTimeout(socket, this.#connectMs, 'connect');
    return socket;
  }
}

class TimedHttpsAgent extends https.Agent {
  readonly #connectMs: number;
  constructor(options: https.AgentOptions, connectMs: number) {
    super(options);
    this.#connectMs = connectMs;
  }
  override createConnection(...args: Parameters<https.Agent['createConnection']>): ReturnType<https.Agent['createConnection']> {
    const socket = super.createConnection(...args);
    armConnectTimeout(socket, this.#connectMs, 'secureConnect');
    return socket;
  }
}

interface Agents {
  http: http.Agent;
  https: https.Agent;
}

function agentFor(agents: Agents, url: string): http.Agent {
  return url.startsWith('https:') ? agents.https : agents.http;
}

/** The part of a request's abort signal this file touches (the SDK types it as AbortSignalLike). */
interface HasAbortSignal {
  abortSignal?: { readonly aborted: boolean; addEventListener(type: 'abort', listener: () => void): void } | undefined;
}

/**
 * Runs `send` with `request.abortSignal` replaced by one that also aborts after `ms`, the timer ending
 * when `send` settles (at the response headers). The SDK's own `request.timeout` is not used: its timer
 * outlives a request that fails to connect and keeps the process alive for the whole timeout.
 */
async function withDeadline<T>(request: HasAbortSignal, ms: number, send: () => Promise<T>): Promise<T> {
  const deadline = new AbortController();
  const timer = setTimeout(() => deadline.abort(), ms);
  const original = request.abortSignal;
  if (original === undefined) {
    request.abortSignal = deadline.signal;
  } else if (original instanceof AbortSignal) {
    request.abortSignal = AbortSignal.any([original, deadline.signal]);
  } else {
    const forward = new AbortController();
    const abort = (): void => forward.abort();
    original.addEventListener('abort', abort);
    deadline.signal.addEventListener('abort', abort);
    if (original.aborted) abort();
    request.abortSignal = forward.signal;
  }
  try {
    return await send();
  } finally {
    clearTimeout(timer);
  }
}

/**
 * The per-client transport: @azure/storage-blob has no agent option, but its pipeline honours a
 * request's `agent`, so this policy (placed before the retry policy, so every try uses it) gives each
 * request this location's agent (its CA bundle, keep-alive, socket limit), a deadline for the response
 * headers over all tries, and the x-ms-version override when configured.
 */
function transportPolicy(agents: Agents, requestMs: number, apiVersion: string | undefined): RequestPolicyFactory {
  return {
    create(next: RequestPolicy): RequestPolicy {
      return {
        sendRequest(request: WebResource) {
          request.agent = agentFor(agents, request.url);
          if (apiVersion !== undefined) request.headers.set('x-ms-version', apiVersion);
          return withDeadline(request, requestMs, () => next.sendRequest(request));
        },
      };
    },
  };
}

/**
 * A client-certificate credential whose PEM is read from AZURE_CLIENT_CERTIFICATE_PATH through
 * readLocationFile (a regular file of at most 1 MiB, never for a tenant) and handed to @azure/identity
 * as the PEM itself: the SDK never opens a path (given a path, it would read a FIFO, /dev/zero or any
 * file without a bound). The file is read again at each token request (the pipeline asks for a token
 * only when the one it holds nears expiry), as the SDK did, so a rotated certificate is picked up; the
 * SDK credential, with its token cache, is kept while the PEM stays the same.
 */
class CertificateFileCredential implements TokenCredential {
  readonly #read: () => Promise<string>;
  readonly #build: (pem: string) => TokenCredential;
  #pem: string | undefined;
  #inner: TokenCredential | undefined;
  constructor(read: () => Promise<string>, build: (pem: string) => TokenCredential) {
    this.#read = read;
    this.#build = build;
  }
  async getToken(...args: Parameters<TokenCredential['getToken']>): ReturnType<TokenCredential['getToken']> {
    const pem = await this.#read();
    if (this.#inner === undefined || pem !== this.#pem) {
      this.#pem = pem;
      this.#inner = this.#build(pem);
    }
    return this.#inner.getToken(...args);
  }
}

function tokenCredentialFor(auth: Exclude<AzureAuth, { kind: 'sharedKey' }>, common: TokenCredentialOptions, spec: StoreSpec): TokenCredential {
  switch (auth.kind) {
    case 'clientSecret':
      return new ClientSecretCredential(auth.tenantId, auth.clientId, auth.clientSecret, {
        ...common,
        additionallyAllowedTenants: auth.additionallyAllowedTenants,
      });
    case 'clientCertificate': {
      const options = { ...common, sendCertificateChain: auth.sendCertificateChain, additionallyAllowedTenants: auth.additionallyAllowedTenants };
      const password = auth.certificatePassword === undefined ? {} : { certificatePassword: auth.certificatePassword };
      if ('pem' in auth.certificate) {
        return new ClientCertificateCredential(auth.tenantId, auth.clientId, { certificate: auth.certificate.pem, ...password }, options);
      }
      const path = auth.certificate.path;
      return new CertificateFileCredential(
        async () => (await readLocationFile(spec, 'Azure credential variable AZURE_CLIENT_CERTIFICATE_PATH', path)).toString('utf8'),
        (pem) => new ClientCertificateCredential(auth.tenantId, auth.clientId, { certificate: pem, ...password }, options),
      );
    }
    case 'ambient':
      return new DefaultAzureCredential({
        ...common,
        ...(auth.tenantId === undefined ? {} : { tenantId: auth.tenantId }),
        ...(auth.clientId === undefined ? {} : { managedIdentityClientId: auth.clientId, workloadIdentityClientId: auth.clientId }),
      });
  }
}

/** `a-b/total` of a Content-Range header. */
function parseContentRange(value: string | undefined): { start: number; end: number; total: number | undefined } | undefined {
  const m = /^bytes (\d+)-(-?\d+)\/(\d+|\*)$/.exec(value?.trim() ?? '');
  if (!m) return undefined;
  return { start: Number(m[1]), end: Number(m[2]), total: m[3] === '*' ? undefined : Number(m[3]) };
}

function strongEtag(etag: string | undefined): string | undefined {
  if (etag === undefined || etag === '' || etag.startsWith('W/')) return undefined;
  return etag.startsWith('"') ? etag : `"${etag}"`;
}

function infoOf(size: number, etag: string | undefined, lastModified: Date | undefined): ObjectInfo {
  const info: ObjectInfo = { size };
  const tag = strongEtag(etag);
  if (tag !== undefined) info.etag = tag;
  if (lastModified instanceof Date && !Number.isNaN(lastModified.getTime())) info.lastModified = lastModified;
  return info;
}

function checkRange(range: ByteRange): void {
  const { start, end } = range;
  if (!Number.isSafeInteger(start) || !Number.isSafeInteger(end) || start < 0 || end < start) {
    throw new InvalidRangeError(`invalid byte range ${start}-${end}`);
  }
}

function errorCode(err: RestError): string | undefined {
  if (typeof err.code === 'string' && err.code !== '') return err.code;
  // HEAD answers have no body: the code travels in x-ms-error-code, which the SDK puts in details.
  const details = err.details as { errorCode?: unknown } | undefined;
  if (typeof details?.errorCode === 'string') return details.errorCode;
  return err.response?.headers.get('x-ms-error-code') ?? undefined;
}


/** A copy of a transport error without the SDK's request and response (their headers carry the Authorization). */
function transportCause(err: unknown): Error | undefined {
  if (!(err instanceof Error)) return undefined;
  const code = (err as { code?: unknown }).code;
  return Object.assign(new Error(err.message), typeof code === 'string' ? { code } : {});
}

function abortError(signal: AbortSignal): Error {
  return Object.assign(new Error('The operation was aborted', { cause: signal.reason }), { name: 'AbortError', code: 'ABORT_ERR' });
}

/**
 * Destroys the body when it delivers no bytes for `ms` while its consumer is asking for them (a paused
 * body, waiting on a slow client, is not idle).
 */
function watchIdle(body: Readable, ms: number, onIdle: () => void): void {
  const timer = setTimeout(function check() {
    if (body.destroyed || body.readableEnded) return;
    if (body.isPaused()) {
      timer.refresh();
      return;
    }
    onIdle();
  }, ms);
  // The body's socket keeps the process alive while it matters; the timer alone must not.
  timer.unref();
  body.on('data', () => timer.refresh());
  body.once('close', () => clearTimeout(timer));
}

/**
 * An ObjectStore over one Azure Blob container. Built from AdapterOptions: `spec.config` as Velero's
 * Azure plugin reads it (`storageAccount` required; `storageAccountURI`, `storageAccountKeyEnvVar`,
 * `useAAD`, `activeDirectoryAuthorityURI`, ...), `spec.credential` the dotenv credential file, `trust`
 * and the timeouts applied to this client's own agents. Throws InvalidLocationError for a bad spec.
 */
export class AzureBlobStore implements ClosableStore {
  /** The blob service endpoint (never carries a credential). */
  readonly endpoint: string;
  /** Which credential the store signs with. */
  readonly authKind: AzureAuth['kind'];
  readonly #name: string;
  readonly #prefix: string;
  readonly #containerName: string;
  readonly #container: ContainerClient;
  readonly #agents: Agents;
  readonly #timeouts: Timeouts;
  #closed = false;

  constructor(options: AdapterOptions) {
    const { spec, trust, timeouts, maxSockets } = options;
    const location = spec.name;
    if (!AZURE_PROVIDERS.has(spec.provider)) fail(location, `provider "${spec.provider}" is not Azure`);
    checkConfig(spec.config, location);
    if ((spec.config.storageAccount ?? '').trim() === '') fail(location, 'config storageAccount is required');
    if (!CONTAINER.test(spec.bucket)) {
      fail(location, 'the bucket must be an Azure container name (3-63 lowercase letters, digits and single hyphens)');
    }
    this.#name = location;
    this.#containerName = spec.bucket;
    try {
      this.#prefix = normalizePrefix(spec.prefix);
    } catch (err) {
      fail(location, (err as Error).message);
    }
    this.#timeouts = timeouts;

    const values: AzureCredentialValues | undefined =
      spec.credential === undefined ? undefined : parseAzureCredentialFile(spec.credential, location);
    const cloud = CLOUDS.get((values?.AZURE_CLOUD_NAME ?? '').trim().toUpperCase());
    this.endpoint = endpointFor(spec.config, cloud, location);
    checkEndpoint(options.endpointPolicy, location, new URL(this.endpoint));
    const auth = azureAuthFor(values, spec.config, location, options.ambientCredentials);
    this.authKind = auth.kind;

    const agentOptions = { keepAlive: true, maxSockets, scheduling: 'lifo' as const };
    this.#agents = {
      http: guardAgent(new TimedHttpAgent(agentOptions, timeouts.connectMs), options.endpointPolicy, location),
      https: guardAgent(
        new TimedHttpsAgent(
          {
            ...agentOptions,
            ...agentTlsOptions(trust),
          },
          timeouts.connectMs,
        ),
        options.endpointPolicy,
        location,
      ),
    };
    const apiVersion = spec.config.apiVersion || undefined;
    const transport = transportPolicy(this.#agents, timeouts.requestMs, apiVersion);

    let credential: StorageSharedKeyCredential | TokenCredential;
    if (auth.kind === 'sharedKey') {
      credential = new StorageSharedKeyCredential((spec.config.storageAccount ?? '').trim(), auth.accountKey);
    } else {
      const authorityHost = authorityHostFor(spec.config, cloud, location);
      if (authorityHost === undefined) {
        fail(location, 'AZURE_CLOUD_NAME names a cloud this gateway does not know; set config activeDirectoryAuthorityURI');
      }
      const agents = this.#agents;
      const common: TokenCredentialOptions & { disableInstanceDiscovery: boolean } = {
        authorityHost,
        // MSAL asks login.microsoftonline.com about any other authority host; a private one (Azure Stack
        // Hub, a test double) is taken as given instead.
        disableInstanceDiscovery: !WELL_KNOWN_AUTHORITIES.has(authorityHost),
        retryOptions: { maxRetries: 1 },
        // Redirects are never followed, for token requests either.
        redirectOptions: { maxRetries: 0 },
        // Token requests go through this location's agents too, so its CA bundle covers a private authority.
        additionalPolicies: [
          {
            position: 'perCall',
            policy: {
              name: 'velero-download-server-transport',
              sendRequest(request, next) {
                request.agent = agentFor(agents, request.url);
                return withDeadline(request, timeouts.requestMs, () => next(request));
              },
            },
          },
        ],
      };
      credential = tokenCredentialFor(auth, common, spec);
    }
    // Redirects are never followed: the core pipeline's redirect policy would follow a 3xx of the same
    // origin. `redirectOptions` is read by the client (core-http-compat) although the type lacks it.
    const pipelineOptions: StoragePipelineOptions & { redirectOptions: { handleRedirects: boolean } } = {
      retryOptions: SDK_RETRIES,
      keepAliveOptions: { enable: true },
      redirectOptions: { handleRedirects: false },
    };
    const pipeline = newPipeline(credential, pipelineOptions);
    // Appended before the first client is built from the pipeline, which is when the SDK reads its factories.
    pipeline.factories.push(transport);
    this.#container = new BlobServiceClient(this.endpoint, pipeline).getContainerClient(spec.bucket);
  }

  #objectName(key: string): string {
    const name = joinKey(this.#prefix, key);
    if (this.#closed) throw new StoreUnavailableError(`location ${this.#name}: the store client is closed`);
    return name;
  }

  async stat(key: string, { signal }: StatOptions): Promise<ObjectInfo> {
    signal.throwIfAborted();
    const blob = this.#container.getBlobClient(this.#objectName(key));
    try {
      const props = await blob.getProperties({ abortSignal: signal });
      if (props.contentLength === undefined) {
        throw new StoreUnavailableError(`location ${this.#name}: the store sent no size for object ${JSON.stringify(key)}`);
      }
      return infoOf(props.contentLength, props.etag, props.lastModified);
    } catch (err) {
      throw this.#translate(err, key, signal);
    }
  }

  async get(key: string, { signal, range }: GetOptions): Promise<ObjectBody> {
    signal.throwIfAborted();
    const blob = this.#container.getBlobClient(this.#objectName(key));
    if (range !== undefined) checkRange(range);

    // The SDK gets its own signal, aborted only after the body is destroyed: the caller's abort then
    // always reaches the consumer as an AbortError, and the socket goes with the body.
    const sdk = new AbortController();
    let body: Readable | undefined;
    const onAbort = (): void => {
      body?.destroy(abortError(signal));
      sdk.abort();
    };
    signal.addEventListener('abort', onAbort, { once: true });
    const forget = (): void => signal.removeEventListener('abort', onAbort);

    let res: BlobDownloadResponseParsed;
    try {
      res = await blob.download(range?.start ?? 0, range === undefined ? undefined : range.end - range.start + 1, {
        abortSignal: sdk.signal,
        maxRetryRequests: BODY_RESUMES,
      });
    } catch (err) {
      forget();
      throw this.#translate(err, key, signal);
    }
    const source = res.readableStreamBody as Readable | undefined;
    try {
      signal.throwIfAborted();
      if (source === undefined) throw new StoreUnavailableError(`location ${this.#name}: the store sent no body for object ${JSON.stringify(key)}`);
      const { size, delivered } = this.#delivered(res, key, range);
      const expected = delivered === undefined ? size : delivered.end - delivered.start + 1;
      if (res.contentLength !== expected) {
        throw new StoreUnavailableError(
          `location ${this.#name}: the store announced ${String(res.contentLength)} bytes for object ${JSON.stringify(key)}, expected ${expected}`,
        );
      }
      // Registered before withLengthCheck pipes the source, so this listener runs before the pipe's and
      // the consumer sees a store error, not the SDK's (a dropped connection surfaces as an AbortError).
      source.once('error', (err: unknown) => body?.destroy(this.#bodyError(err, key)));
      const checked = withLengthCheck(source, expected);
      body = checked;
      // Watched after withLengthCheck has piped it: a 'data' listener on an unpiped stream would start it flowing.
      watchIdle(source, this.#timeouts.socketIdleMs, () => {
        source.destroy(
          new StoreTimeoutError(
            `location ${this.#name}: no bytes of object ${JSON.stringify(key)} for ${this.#timeouts.socketIdleMs} ms`,
          ),
        );
      });
      checked.once('close', forget);
      const info = infoOf(size, res.etag, res.lastModified);
      return delivered === undefined ? { ...info, body } : { ...info, body, range: delivered };
    } catch (err) {
      forget();
      // An empty answer is complete: reading it returns the socket to the pool; anything else goes with the socket.
      if (source !== undefined) {
        if (res.contentLength === 0) source.resume();
        else source.destroy();
      }
      throw signal.aborted ? signal.reason : err;
    }
  }

  /** The object's size and the range delivered, checked against what was asked. */
  #delivered(res: BlobDownloadResponseParsed, key: string, asked: ByteRange | undefined): { size: number; delivered?: ByteRange } {
    const length = res.contentLength ?? 0;
    if (asked === undefined) return { size: length };
    const shown = JSON.stringify(key);
    const cr = parseContentRange(res.contentRange);
    if (cr === undefined) {
      // A 200 with the whole object: fine when the range asked starts at 0 (its end is clamped to the size).
      if (res._response.status === 200 && asked.start === 0 && length > 0) {
        return { size: length, delivered: { start: 0, end: length - 1 } };
      }
      if (res._response.status === 200 && length === 0) {
        throw new InvalidRangeError(`location ${this.#name}: object ${shown} is empty; no byte range fits it`);
      }
      throw new StoreUnavailableError(`location ${this.#name}: the store ignored the byte range asked of object ${shown}`);
    }
    const size = cr.total ?? length;
    // Azurite answers a range starting at the size (and any range of an empty blob) with 206 and
    // `bytes <size>-<size-1>/<size>`, where Azure answers 416.
    if (cr.start >= size || cr.end < cr.start) {
      throw new InvalidRangeError(`location ${this.#name}: byte range starts at ${asked.start}, past the ${size} bytes of object ${shown}`);
    }
    if (cr.start !== asked.start || cr.end > asked.end) {
      throw new StoreUnavailableError(`location ${this.#name}: the store sent another byte range of object ${shown} than asked`);
    }
    return { size, delivered: { start: cr.start, end: cr.end } };
  }

  /** What a body that fails mid-way errors with. */
  #bodyError(err: unknown, key: string): Error {
    if (isStoreError(err)) return err;
    // A resumed read refused (412: the object changed meanwhile) or failing otherwise.
    if (isRestError(err) && err.statusCode !== undefined) {
      const translated = this.#translate(err, key, new AbortController().signal);
      if (translated instanceof Error) return translated;
    }
    const code = (err as { code?: unknown } | null)?.code;
    const detail = typeof code === 'string' ? ` (${code})` : '';
    return new StoreUnavailableError(
      `location ${this.#name}: the store connection broke while sending object ${JSON.stringify(key)}${detail}`,
      { cause: isRestError(err) ? transportCause(err) : err },
    );
  }

  #translate(err: unknown, key: string, signal: AbortSignal): unknown {
    if (isStoreError(err)) return err;
    if (signal.aborted) return signal.reason;
    const refused = endpointRefusal(err, this.#name);
    if (refused !== undefined) return refused;
    const where = `location ${this.#name}`;
    const object = `object ${JSON.stringify(key)}`;

    if (isRestError(err) && err.statusCode !== undefined) {
      const status = err.statusCode;
      const code = errorCode(err);
      const answered = code === undefined ? `${status}` : `${status} ${code}`;
      if (code === 'ContainerNotFound') return new ObjectNotFoundError(`${where}: container ${this.#containerName} not found`);
      switch (classifyStatus(status, code, AZURE_CODES)) {
        case 'redirect':
          return new StoreUnavailableError(`${where}: the store answered with a redirect (${answered}) reading ${object}, which is not followed`);
        case 'notFound':
          return new ObjectNotFoundError(`${where}: ${object} not found`);
        case 'range':
          return new InvalidRangeError(`${where}: the byte range asked of ${object} starts past its end`);
        case 'denied':
          return new AccessDeniedError(`${where}: the store refused the credential reading ${object} (${answered})`);
        case 'throttled':
          return new ThrottledError(`${where}: the store is busy (${answered}) reading ${object}`, parseRetryAfter(err.response?.headers.get('retry-after')));
        case 'timeout':
          return new StoreTimeoutError(`${where}: the store timed out (${answered}) reading ${object}`);
        default:
      }
      if (status === 400 && code !== undefined && BAD_NAME.has(code)) {
        return new InvalidKeyError(`${where}: the store refused the name of ${object} (${answered})`);
      }
      return new StoreUnavailableError(`${where}: the store answered ${answered} reading ${object}`);
    }

    const tls = tlsFailureCode(err);
    if (tls !== undefined) return new StoreUnavailableError(tlsFailureMessage(this.#name, tls), { cause: transportCause(err) });

    const name = err instanceof Error ? err.name : undefined;
    const code = (err as { code?: unknown } | null)?.code;
    if (name === 'AuthenticationError') {
      // @azure/identity: Azure AD answered the token request; its error code (e.g. invalid_client) only,
      // since descriptions quote request details.
      const { statusCode, errorResponse } = err as { statusCode?: number; errorResponse?: { error?: string } };
      const aadCode = typeof errorResponse?.error === 'string' ? errorResponse.error : 'unknown error';
      if (statusCode !== undefined && statusCode >= 400 && statusCode < 500) {
        return new AccessDeniedError(`${where}: Azure AD refused the credential (${statusCode} ${aadCode}) reading ${object}`);
      }
      return new StoreUnavailableError(`${where}: cannot get an Azure AD token (${statusCode ?? 'no answer'} ${aadCode}) reading ${object}`);
    }
    if (name === 'AuthenticationRequiredError') {
      // MSAL's error for a refused token request (e.g. invalid_client) is the cause; its code only.
      const cause = (err as { cause?: { name?: unknown; errorCode?: unknown } }).cause;
      const aadCode = typeof cause?.errorCode === 'string' ? cause.errorCode : 'unknown error';
      if (cause?.name === 'ServerError') return new AccessDeniedError(`${where}: Azure AD refused the credential (${aadCode}) reading ${object}`);
      return new StoreUnavailableError(`${where}: cannot get an Azure AD token (${aadCode}) reading ${object}`);
    }
    if (name === 'CredentialUnavailableError' && (err as Error).message.startsWith('endpoints_resolution_error')) {
      // MSAL hides the cause (unreachable, TLS, not an authority); it only knows the metadata did not come.
      return new StoreUnavailableError(
        `${where}: cannot read the Azure AD authority's OpenID configuration (unreachable, untrusted TLS certificate or ` +
          `not an authority; check activeDirectoryAuthorityURI and the CA bundle) reading ${object}`,
      );
    }
    if (name === 'CredentialUnavailableError' || name === 'AggregateAuthenticationError') {
      return new StoreUnavailableError(`${where}: no Azure AD credential is available to read ${object} (${name})`);
    }
    if (name === 'AbortError' || (typeof code === 'string' && TIMEOUT_CODES.has(code))) {
      return new StoreTimeoutError(`${where}: the store did not answer in time reading ${object}`, { cause: transportCause(err) });
    }
    const detail = typeof code === 'string' ? code : (name ?? 'unknown error');
    return new StoreUnavailableError(`${where}: cannot reach the store reading ${object} (${detail})`, {
      cause: isRestError(err) ? transportCause(err) : undefined,
    });
  }

  list(prefix: string, opts: ListOptions): AsyncIterable<ListedObject> {
    const container = (): ContainerClient => {
      if (this.#closed) throw new StoreUnavailableError(`location ${this.#name}: the store client is closed`);
      return this.#container;
    };
    const translate = (err: unknown, signal: AbortSignal): unknown => this.#translate(err, prefix, signal);
    return listAzure({ location: this.#name, container, root: this.#prefix, info: infoOf, translate }, prefix, opts);
  }

  /** Closes the client's sockets; calls after close fail with StoreUnavailableError. */
  async close(): Promise<void> {
    this.#closed = true;
    this.#agents.http.destroy();
    this.#agents.https.destroy();
  }
}
