import type { SecureContext } from 'node:tls';
/**
 * What every network adapter (S3, Azure Blob, GCS) is built from. The factory derives these options
 * from a StoreSpec once per client; adapters never read global state, environment or files themselves,
 * except through the SDK default credential chain when `ambientCredentials` allows it, and the files
 * a setting names only through file-settings.ts readLocationFile (never for a tenant's location).
 */
import type { EndpointPolicy } from './endpoint-guard.ts';
import type { StoreSpec } from './spec.ts';
import type { ObjectStore } from './types.ts';

/** TLS trust for one location's HTTPS connections. */
export interface TrustOptions {
  /**
   * Certificates to trust: the system roots plus the install-time bundle plus the location's bundle.
   * Undefined means Node's default (system roots only), so agents stay shareable.
   */
  ca: string[] | undefined;
  /**
   * A TLS context built once from `ca`, for the agents: given `ca` itself, Node's https.Agent joins
   * every certificate into its pool key several times per request (3 ms per request with 120 roots).
   */
  secureContext: SecureContext | undefined;
  /** False only when the location says `insecureSkipTLSVerify: "true"`. */
  rejectUnauthorized: boolean;
}

export interface Timeouts {
  /** TCP + TLS connection establishment. */
  connectMs: number;
  /** From sending a request to the response headers. */
  requestMs: number;
  /** A body socket with no bytes for this long is broken. */
  socketIdleMs: number;
}

export const DEFAULT_TIMEOUTS: Timeouts = { connectMs: 5_000, requestMs: 30_000, socketIdleMs: 60_000 };

/** Concurrent sockets per client: sized for many parallel downloads, not the SDKs' defaults (50, or Infinity). */
export const DEFAULT_MAX_SOCKETS = 256;

export interface AdapterOptions {
  spec: StoreSpec;
  trust: TrustOptions;
  /**
   * True when the adapter may fall back to its SDK's default credential chain (environment, web
   * identity, instance role, application default credentials) because `spec.credential` is absent.
   * False for tenants' locations: they never borrow the gateway's own identity.
   */
  ambientCredentials: boolean;
  timeouts: Timeouts;
  maxSockets: number;
  /**
   * Set for tenants' locations: the endpoint must be HTTPS and every connection goes only to addresses
   * the policy allows (guardAgent). Undefined: the admin's own location, no restriction.
   */
  endpointPolicy?: EndpointPolicy;
}

/** A store holding network clients: `close()` releases them once nothing uses them any more. */
export interface ClosableStore extends ObjectStore {
  close(): Promise<void>;
}
