/**
 * Azure AD (Entra ID) credentials of an Azure Blob location: the clouds and their authorities, the
 * token credential for each kind of credential file, and the store error of a refused token request.
 * Token requests go through the location's own agents and header deadline, like its blob requests.
 */
import {
  AzureAuthorityHosts,
  ClientCertificateCredential,
  ClientSecretCredential,
  DefaultAzureCredential,
} from '@azure/identity';
import type { TokenCredential, TokenCredentialOptions } from '@azure/identity';
import type { AzureAuth } from './credentials/azure.ts';
import { AccessDeniedError, InvalidLocationError, StoreUnavailableError } from './errors.ts';
import type { StoreError } from './errors.ts';
import { readLocationFile } from './file-settings.ts';
import type { StoreSpec } from './spec.ts';
import type { Agents } from './transport.ts';

function fail(location: string, what: string): never {
  throw new InvalidLocationError(`location ${location}: ${what}`);
}

export interface Cloud {
  blobSuffix: string;
  authorityHost: string;
}

const PUBLIC: Cloud = { blobSuffix: 'blob.core.windows.net', authorityHost: AzureAuthorityHosts.AzurePublicCloud };
const US_GOVERNMENT: Cloud = { blobSuffix: 'blob.core.usgovcloudapi.net', authorityHost: AzureAuthorityHosts.AzureGovernment };
const CHINA: Cloud = { blobSuffix: 'blob.core.chinacloudapi.cn', authorityHost: AzureAuthorityHosts.AzureChina };

const WELL_KNOWN_AUTHORITIES: ReadonlySet<string> = new Set([PUBLIC.authorityHost, US_GOVERNMENT.authorityHost, CHINA.authorityHost]);

// AZURE_CLOUD_NAME as Velero matches it: case-insensitive, with the older spellings.
export const CLOUDS: ReadonlyMap<string, Cloud> = new Map([
  ['', PUBLIC],
  ['AZURECLOUD', PUBLIC],
  ['AZUREPUBLICCLOUD', PUBLIC],
  ['AZUREUSGOVERNMENT', US_GOVERNMENT],
  ['AZUREUSGOVERNMENTCLOUD', US_GOVERNMENT],
  ['AZURECHINACLOUD', CHINA],
]);

export function authorityHostFor(config: Record<string, string>, cloud: Cloud | undefined, location: string): string | undefined {
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

/** What the token credential of a location is built from. */
export interface AzureAdContext {
  spec: StoreSpec;
  cloud: Cloud | undefined;
  agents: Agents;
  requestMs: number;
}

/** The token credential of a location whose credential file names an Azure AD identity. */
export function azureAdCredential(auth: Exclude<AzureAuth, { kind: 'sharedKey' }>, { spec, cloud, agents, requestMs }: AzureAdContext): TokenCredential {
  const location = spec.name;
      const authorityHost = authorityHostFor(spec.config, cloud, location);
      if (authorityHost === undefined) {
        fail(location, 'AZURE_CLOUD_NAME names a cloud this gateway does not know; set config activeDirectoryAuthorityURI');
      }
      const common: TokenCredentialOptions & { disableInstanceDiscovery: boolean } = {
        authorityHost,
        // MSAL asks login.microsoftonline.com about any other authority host; a private one (Azure Stack
        // Hub, a test double) is taken as given instead.
        disableInstanceDiscovery: !WELL_KNOWN_AUTHORITIES.has(authorityHost),
        // Retried, if at all, with the whole read, by the one retry policy.
        retryOptions: { maxRetries: 0 },
        // Redirects are never followed, for token requests either.
        redirectOptions: { maxRetries: 0 },
        // Token requests go through this location's agents too, so its CA bundle covers a private authority.
        additionalPolicies: [
          {
            position: 'perCall',
            policy: {
              name: 'velero-download-server-transport',
              sendRequest(request, next) {
                request.agent = agents.for(request.url);
                // A token request has the header deadline of its own (AbortSignal.timeout does not keep the process alive).
                const deadline = AbortSignal.timeout(requestMs);
                const given = request.abortSignal;
                request.abortSignal = given instanceof AbortSignal ? AbortSignal.any([given, deadline]) : deadline;
                return next(request);
              },
            },
          },
        ],
      };
  return tokenCredentialFor(auth, common, spec);
}

export /**
 * The store error for a failed token request of @azure/identity or MSAL (their error codes only:
 * descriptions quote request details); undefined for any other error.
 */
function azureAdError(err: unknown, at: string): StoreError | undefined {
  const name = err instanceof Error ? err.name : undefined;
  if (name === 'AuthenticationError') {
    const { statusCode, errorResponse } = err as { statusCode?: number; errorResponse?: { error?: string } };
    const aadCode = typeof errorResponse?.error === 'string' ? errorResponse.error : 'unknown error';
    if (statusCode !== undefined && statusCode >= 400 && statusCode < 500) {
      return new AccessDeniedError(`${at}: Azure AD refused the credential (${statusCode} ${aadCode})`);
    }
    return new StoreUnavailableError(`${at}: cannot get an Azure AD token (${statusCode ?? 'no answer'} ${aadCode})`);
  }
  if (name === 'AuthenticationRequiredError') {
    // MSAL's error for a refused token request (e.g. invalid_client) is the cause.
    const cause = (err as { cause?: { name?: unknown; errorCode?: unknown } }).cause;
    const aadCode = typeof cause?.errorCode === 'string' ? cause.errorCode : 'unknown error';
    if (cause?.name === 'ServerError') return new AccessDeniedError(`${at}: Azure AD refused the credential (${aadCode})`);
    return new StoreUnavailableError(`${at}: cannot get an Azure AD token (${aadCode})`);
  }
  if (name === 'CredentialUnavailableError' && (err as Error).message.startsWith('endpoints_resolution_error')) {
    // MSAL hides the cause (unreachable, TLS, not an authority); it only knows the metadata did not come.
    return new StoreUnavailableError(
      `${at}: cannot read the Azure AD authority's OpenID configuration (unreachable, untrusted TLS certificate or ` +
        'not an authority; check activeDirectoryAuthorityURI and the CA bundle)',
    );
  }
  if (name === 'CredentialUnavailableError' || name === 'AggregateAuthenticationError') {
    return new StoreUnavailableError(`${at}: no Azure AD credential is available (${name})`);
  }
  return undefined;
}

