/**
 * What a mode is: the parts the download routes are built from, and what runs beside them. `local`
 * and `kubernetes` are the two; the gateway (gateway.ts) starts whichever the configuration names
 * and knows nothing else of either.
 */
import type { KeyRing } from '../auth/signed-urls.ts';
import type { Authenticator, Authorizer } from '../auth/types.ts';
import type { KubeClients } from '../kube/client.ts';
import type { CachedObjectReader } from '../kube/objects.ts';
import type { AppDeps } from '../server/app.ts';
import type { WebhookDeps } from '../server/admission.ts';
import type { StoreFactory } from '../stores/spec.ts';
import type { Catalog } from '../velero/catalog.ts';
import type { ProfileResolver } from '../velero/kanister-profiles.ts';
import type { KubeResolver } from '../velero/kube-resolver.ts';
import type { Resolver } from '../velero/resolve.ts';
import type { VolumeResolver } from '../velero/volumes.ts';

export interface ModeParts {
  authenticator: Authenticator;
  /** HTTP Basic for access users, when the mode has a table of them (AppDeps.accessUsers). */
  accessUsers?: Authenticator;
  authorizer: Authorizer;
  resolver: Resolver;
  stores: StoreFactory;
  /** The volumes of backups and where their Kopia repositories are. */
  volumeResolver: VolumeResolver;
  /** The backups and restores the browser page lists (through the gateway's own access). */
  catalog: Catalog;
  /** Kanister Profiles as sources (kubernetes mode only; local mode has no Profiles). */
  profiles?: ProfileResolver;
  /** Kubernetes mode only: the clients, the shared object cache and the resolver as itself. */
  kube?: { clients: KubeClients; objects: CachedObjectReader; resolver: KubeResolver };
}

/** What a started mode adds to the routes, and the webhook's decision when the mode has one. */
export interface ModeServices {
  /** Signed DownloadRequest URLs, for the stock velero CLI. */
  signedUrls?: AppDeps['signedUrls'];
  /** The admission webhook's decision, served by the webhook listener. */
  admission?: WebhookDeps['admission'];
  /**
   * Keys every replica shares, for the browser page's session cookies (kubernetes mode: the signing
   * keys' Secret). Absent: a key made at start (local mode is one process).
   */
  sessionKeys?: () => KeyRing;
}

export interface Mode<Services extends ModeServices = ModeServices> {
  readonly name: 'local' | 'kubernetes';
  /** What the download routes are built from; ready once the mode is created. */
  readonly parts: ModeParts;
  /** Starts what the mode runs beside the routes; call once, before serving. */
  start(): Promise<Services>;
  /** Stops what start() started. */
  stop(): Promise<void>;
  /** The mode's own fields of GET /v1/info, read on every call. */
  info(): Record<string, unknown>;
}

/**
 * A configuration problem found only when a mode starts (a file's contents): reported as loadConfig's
 * problems are, every one at once, with exit 2.
 */
export class ConfigurationError extends Error {
  readonly problems: readonly string[];
  constructor(problems: readonly string[]) {
    super(problems.join('; '));
    this.name = 'ConfigurationError';
    this.problems = problems;
  }
}
