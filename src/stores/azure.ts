/**
 * Azure Blob storage (providers `azure`, `velero.io/azure`) through @azure/storage-blob, configured the
 * way Velero's Azure plugin reads a BackupStorageLocation: the bucket is the container, objects are
 * `<prefix>/<key>`, the account and endpoint come from `spec.config`, the credential from the dotenv
 * credential file.
 */
import type { Readable } from 'node:stream';
import type { TokenCredential } from '@azure/identity';
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
import { authorityHostFor, azureAdCredential, azureAdError, CLOUDS } from './azure-ad.ts';
import type { Cloud } from './azure-ad.ts';
import { checkEndpoint } from './endpoint-guard.ts';
import { InvalidLocationError, isStoreError, StoreUnavailableError } from './errors.ts';
import { listAzure } from './azure-list.ts';
import { joinKey, normalizePrefix } from './keys.ts';
import { checkRange, reconcileRange } from './range.ts';
import { errnoOf, objectInfo, plainWord, translateFacts } from './translate.ts';
import type { ProviderFacts } from './translate.ts';
import { callStore, createAgents, parseEndpoint, upstreamBody } from './transport.ts';
import type { Agents } from './transport.ts';
import type { GetOptions, ListedObject, ListOptions, ObjectInfo, StatOptions, StreamBody } from './types.ts';

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

/**
 * The SDK's own retries are off: the transport's retry policy (retry.ts) is the only one. That includes
 * its resuming of a body that breaks mid-way: a body breaks for the client as it does from every store.
 */
const SDK_RETRIES = { maxTries: 1 };
const BODY_RESUMES = 0;

// Container names: 3-63 lowercase letters, digits and single hyphens, starting and ending with a letter or digit.
const CONTAINER = /^(?:[a-z0-9](?:[a-z0-9]|-(?=[a-z0-9])){2,62}|\$root|\$web|\$logs)$/;
// The account becomes a host name label when there is no storageAccountURI.
const ACCOUNT = /^[a-z0-9]{3,24}$/;
const API_VERSION = /^\d{4}-\d{2}-\d{2}$/;

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
const AZURE_CODES = {
  notFound: new Set(['BlobNotFound', 'ResourceNotFound']),
  noBucket: new Set(['ContainerNotFound']),
  denied: DENIED,
  throttled: new Set(['ServerBusy', 'TooManyRequests']),
  timeout: new Set(['OperationTimedOut']),
  range: new Set(['InvalidRange']),
  badKey: new Set(['InvalidResourceName', 'InvalidUri', 'OutOfRangeInput']),
};

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
  // Velero's own docs show the URI without a scheme.
  if (given !== '') return parseEndpoint(location, 'storageAccountURI', given, true).href.replace(/\/+$/, '');
  if (!ACCOUNT.test(account)) fail(location, 'config storageAccount must be 3-24 lowercase letters and digits');
  if (cloud === undefined) {
    fail(location, 'AZURE_CLOUD_NAME in the credential file names a cloud this gateway does not know (AzurePublicCloud, AzureUSGovernmentCloud, AzureChinaCloud); set config storageAccountURI');
  }
  return `https://${account}.${cloud.blobSuffix}`;
}

/**
 * @azure/storage-blob has no agent option, but its pipeline honours a request's `agent`: this policy
 * (placed before the SDK's retry policy, so every try uses it) gives each request this location's
 * agent, and the x-ms-version override when configured.
 */
function transportPolicy(agents: Agents, apiVersion: string | undefined): RequestPolicyFactory {
  return {
    create(next: RequestPolicy): RequestPolicy {
      return {
        sendRequest(request: WebResource) {
          request.agent = agents.for(request.url);
          if (apiVersion !== undefined) request.headers.set('x-ms-version', apiVersion);
          return next.sendRequest(request);
        },
      };
    },
  };
}

function errorCode(err: RestError): string | undefined {
  if (typeof err.code === 'string' && err.code !== '') return err.code;
  // HEAD answers have no body: the code travels in x-ms-error-code, which the SDK puts in details.
  const details = err.details as { errorCode?: unknown } | undefined;
  if (typeof details?.errorCode === 'string') return details.errorCode;
  return err.response?.headers.get('x-ms-error-code') ?? undefined;
}


function factsOf(err: unknown): ProviderFacts {
  if (isRestError(err) && err.statusCode !== undefined) {
    return {
      status: err.statusCode,
      code: plainWord(errorCode(err)),
      retryAfter: err.response?.headers.get('retry-after'),
      requestId: plainWord(err.response?.headers.get('x-ms-request-id'), /^[\w-]{1,64}$/),
    };
  }
  return { errno: errnoOf(err) };
}

function abortError(signal: AbortSignal): Error {
  return Object.assign(new Error('The operation was aborted', { cause: signal.reason }), { name: 'AbortError', code: 'ABORT_ERR' });
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
    const { spec, timeouts } = options;
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

    this.#agents = createAgents(options);
    const agents = this.#agents;
    const transport = transportPolicy(agents, spec.config.apiVersion || undefined);

    let credential: StorageSharedKeyCredential | TokenCredential;
    if (auth.kind === 'sharedKey') {
      credential = new StorageSharedKeyCredential((spec.config.storageAccount ?? '').trim(), auth.accountKey);
    } else {
      credential = azureAdCredential(auth, { spec, cloud, agents, requestMs: timeouts.requestMs });
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
      const props = await this.#call(signal, (s) => blob.getProperties({ abortSignal: s }));
      if (props.contentLength === undefined) {
        throw new StoreUnavailableError(`location ${this.#name}: the store sent no size for object ${JSON.stringify(key)}`);
      }
      return objectInfo(props.contentLength, props.etag, props.lastModified);
    } catch (err) {
      throw this.#translate(err, key, signal);
    }
  }

  async get(key: string, { signal, range }: GetOptions): Promise<StreamBody> {
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
      const count = range === undefined ? undefined : range.end - range.start + 1;
      res = await this.#call(signal, (s) =>
        blob.download(range?.start ?? 0, count, { abortSignal: AbortSignal.any([sdk.signal, s]), maxRetryRequests: BODY_RESUMES }),
      );
    } catch (err) {
      forget();
      throw this.#translate(err, key, signal);
    }
    const source = res.readableStreamBody as Readable | undefined;
    const what = `location ${this.#name}: object ${JSON.stringify(key)}`;
    try {
      signal.throwIfAborted();
      if (source === undefined) throw new StoreUnavailableError(`${what}: the store sent no body`);
      const { size, sent, want } = reconcileRange(
        range,
        { contentRange: res.contentRange, contentLength: res.contentLength },
        (problem) => new StoreUnavailableError(`${what}: ${problem}`),
      );
      body = upstreamBody(source, { sent, want }, { what, idleMs: this.#timeouts.socketIdleMs });
      body.once('close', forget);
      return { ...objectInfo(size, res.etag, res.lastModified), kind: 'stream', body, ...(want && { range: want }) };
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

  /** One SDK call under the transport's header deadline and retry policy. */
  #call<T>(signal: AbortSignal, send: (signal: AbortSignal) => Promise<T>): Promise<T> {
    return callStore(this.#timeouts.requestMs, signal, AZURE_CODES, factsOf, send);
  }

  #translate(err: unknown, key: string, signal: AbortSignal): unknown {
    if (isStoreError(err)) return err;
    if (signal.aborted) return signal.reason;
    const doing = `reading object ${JSON.stringify(key)}`;
    return (
      azureAdError(err, `location ${this.#name}: ${doing}`) ??
      translateFacts(err, factsOf(err), AZURE_CODES, { location: this.#name, doing, bucket: `container ${JSON.stringify(this.#containerName)}` })
    );
  }

  list(prefix: string, opts: ListOptions): AsyncIterable<ListedObject> {
    const container = (): ContainerClient => {
      if (this.#closed) throw new StoreUnavailableError(`location ${this.#name}: the store client is closed`);
      return this.#container;
    };
    const translate = (err: unknown, signal: AbortSignal): unknown => this.#translate(err, prefix, signal);
    const call = <T>(signal: AbortSignal, attempt: (signal: AbortSignal) => Promise<T>): Promise<T> => this.#call(signal, attempt);
    return listAzure({ location: this.#name, container, root: this.#prefix, info: objectInfo, translate, call }, prefix, opts);
  }

  /** Closes the client's sockets; calls after close fail with StoreUnavailableError. */
  async close(): Promise<void> {
    this.#closed = true;
    this.#agents.destroy();
  }
}
