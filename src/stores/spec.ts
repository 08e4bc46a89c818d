import type { PromiseOr } from '../util/promise-or.ts';
import type { ObjectStore } from './types.ts';

/**
 * One input describes a location, whether it comes from a BackupStorageLocation or from local
 * configuration. The factory turns it into an ObjectStore.
 */
export interface StoreSpec {
  /** A name for messages and logs (the BSL's `<namespace>/<name>`, or a local location's name). */
  name: string;
  /** Velero's `spec.provider`, e.g. `aws`, `velero.io/azure`, `replicated.com/nfs`, `filesystem`. */
  provider: string;
  /** Bucket, container, or (filesystem providers) a directory under the mount root; may be empty for the local data dir. */
  bucket: string;
  /** Prefix inside the bucket, without leading or trailing slashes; may be empty. */
  prefix: string;
  /** Velero's provider-specific `spec.config`. */
  config: Record<string, string>;
  /** The credential file's bytes (AWS INI, Azure dotenv, GCP JSON); never logged. */
  credential?: Uint8Array;
  /** PEM bundle trusted for this location's HTTPS connections. */
  caBundle?: string;
  /**
   * Whether the gateway's own default credential (--default-credentials-file, then the SDK's default
   * chain: environment, instance role, workload identity) may stand in for a missing `credential`.
   * False for tenants' locations, which never borrow the gateway's identity. Default true.
   */
  allowDefaultCredential?: boolean;
  /**
   * A tenant's location (a BSL outside the gateway's own namespace): its endpoint must be HTTPS and
   * every address its client connects to is checked against the tenant endpoint policy
   * (--tenant-endpoint-allow). Default false: the admin's own locations reach anything.
   */
  tenant?: boolean;
}

/** Turns a location into a store; implementations cache clients and build them lazily. */
export interface StoreFactory {
  forSpec(spec: StoreSpec): PromiseOr<ObjectStore>;
}

/** `velero.io/aws` and `aws` are the same provider, as in Velero. */
export function providerKind(provider: string): string {
  return provider.startsWith('velero.io/') ? provider.slice('velero.io/'.length) : provider;
}
