/**
 * Kubernetes mode's resolver: Restore → spec.backupName → Backup → spec.storageLocation →
 * BackupStorageLocation → store spec, with the credential from the BSL's `spec.credential` Secret
 * and the CA from `objectStorage.caCertRef` (which wins) or `caCert`, all in the request's namespace,
 * as Velero's own DownloadRequest controller resolves them.
 */
import type { V1Secret } from '@kubernetes/client-node';
import type { KubeObject, ObjectReader, ReadOptions, VeleroListedPlural, VeleroPlural } from '../kube/objects.ts';
import type { StoreFactory, StoreSpec } from '../stores/spec.ts';
import type { Target } from './artifacts.ts';
import { CrossNamespaceError, InvalidTargetError, NotFoundError, RepositoryPasswordUnavailableError, TenancyError } from './errors.ts';
import { BackupFileVolumes } from './volumes-files.ts';
import type { VolumeKind } from './volumes-files.ts';
import { BACKUP_NAME_LABEL, backupNameLabelValue, backupSelector, byId, uniqueVolumes, volumeOfDataUpload, volumeOfPodVolumeBackup } from './volumes-parse.ts';
import type { EntryContext, VolumeCandidate } from './volumes-parse.ts';
import { BaseVolumeResolver } from './volumes-resolver.ts';
import type { BackupVolume } from './volumes.ts';
import { targetOf } from './downloadrequests.ts';
import { artifactKey } from './resolve.ts';
import type { Location, Resolver } from './resolve.ts';
import { nonEmptyString } from '../util/strings.ts';
import { then } from '../util/promise-or.ts';
import type { PromiseOr } from '../util/promise-or.ts';

interface SecretKeySelector {
  name?: string;
  namespace?: string;
  key?: string;
  optional?: boolean;
}

export interface KubeResolverOptions {
  /** Namespaces served; others answer 404. */
  serves: (namespace: string) => boolean;
  /** The gateway's own namespace: BSLs elsewhere are tenants' and never borrow its credentials. */
  ownNamespace: string;
  /** True for providers whose bucket is a directory on the gateway's own filesystem. */
  isFilesystemProvider: (provider: string) => boolean;
  /**
   * Which filesystem buckets each tenant namespace may use (--tenant-filesystem-allow), by exact
   * namespace name; a namespace absent here may use none.
   */
  tenantFilesystemAllow: ReadonlyMap<string, ReadonlySet<string>>;
}

/** A namespace the gateway does not serve answers 404, whatever exists there. */
export function checkServed(serves: (namespace: string) => boolean, namespace: string): void {
  if (!serves(namespace)) {
    throw new NotFoundError(`namespace "${namespace}" is not served by this gateway`, { kind: 'namespaces', name: namespace });
  }
}

/** Whatever an object says, everything a request resolves lives in the request's namespace. */
export function inNamespace<T extends KubeObject>(obj: T, namespace: string, what: string): T {
  if (obj.metadata?.namespace !== undefined && obj.metadata.namespace !== namespace) {
    throw new CrossNamespaceError(`${what} resolved to namespace "${obj.metadata.namespace}", not "${namespace}"`);
  }
  return obj;
}

/**
 * A tenant never borrows another namespace's Secret: a reference that names a namespace other than
 * its object's own is refused (403), never followed. An absent or empty namespace means the object's own.
 */
export function refuseOtherNamespace(refNamespace: unknown, namespace: string, what: string): void {
  if (refNamespace !== undefined && refNamespace !== '' && refNamespace !== namespace) {
    throw new CrossNamespaceError(`${what} refers to namespace ${JSON.stringify(refNamespace)}; only Secrets in "${namespace}" are used`);
  }
}

export class KubeResolver implements Resolver {
  readonly #objects: ObjectReader;
  readonly #opts: KubeResolverOptions;
  /** The spec made of each BSL object, and the Secret objects it was made from (see #specOf). */
  readonly #specs = new WeakMap<KubeObject, { namespace: string; credentialSecret: V1Secret | undefined; caSecret: V1Secret | undefined; spec: StoreSpec }>();

  constructor(objects: ObjectReader, opts: KubeResolverOptions) {
    this.#objects = objects;
    this.#opts = opts;
  }

  /**
   * The location of a target. Each step answers at once when its objects are cached, so a warm
   * resolution runs in one turn with no promise (util/promise-or.ts); a miss waits for its read.
   */
  resolve(target: Target, signal: AbortSignal): PromiseOr<Location> {
    const key = artifactKey(target);
    return then(this.storageLocationOf(target, signal), (bsl) => then(this.#specOf(bsl, target.namespace, signal), (spec) => ({ spec, key })));
  }

  /** A target's BackupStorageLocation and the store spec made of it, with the tenancy rules applied. */
  locationOf(target: Target, signal: AbortSignal): PromiseOr<{ bsl: KubeObject; spec: StoreSpec }> {
    return then(this.storageLocationOf(target, signal), (bsl) => then(this.#specOf(bsl, target.namespace, signal), (spec) => ({ bsl, spec })));
  }

  /**
   * The BackupStorageLocation a target's data lives in: Restore → Backup → spec.storageLocation.
   * `read` says which API budget reads that miss the cache are charged to.
   */
  storageLocationOf(target: Target, signal: AbortSignal, read?: ReadOptions): PromiseOr<KubeObject> {
    const { namespace } = target;
    this.#checkServed(namespace);
    const backupName: PromiseOr<string> =
      target.owner === 'backups' ? target.name : then(this.#get('restores', namespace, target.name, signal, read), (restore) => this.#backupOfRestore(restore));
    return then(backupName, (name) =>
      then(this.#get('backups', namespace, name, signal, read), (backup) => {
        const bslName = nonEmptyString(backup.spec?.storageLocation);
        if (!bslName) throw new NotFoundError(`backup "${name}" names no storage location (spec.storageLocation)`, { group: 'velero.io', kind: 'backups', name });
        return this.#get('backupstoragelocations', namespace, bslName, signal, read);
      }),
    );
  }

  /**
   * The target of a DownloadRequest: its `spec.target.kind` mapped to an artifact. Throws NotFound when
   * the request does not exist, InvalidTarget when its kind is unknown.
   */
  async downloadRequestTarget(namespace: string, name: string, signal: AbortSignal): Promise<Target> {
    this.#checkServed(namespace);
    const dr = await this.#get('downloadrequests', namespace, name, signal);
    const t = targetOf(dr);
    if (!t) {
      const kind = (dr.spec?.target as { kind?: unknown } | undefined)?.kind;
      throw new InvalidTargetError(`downloadrequest "${name}" has no target this gateway can serve (spec.target.kind ${JSON.stringify(kind)})`);
    }
    return { namespace, ...t.target };
  }

  #checkServed(namespace: string): void {
    checkServed(this.#opts.serves, namespace);
  }

  #backupOfRestore(restore: KubeObject): string {
    const b = nonEmptyString(restore.spec?.backupName);
    if (!b) throw new NotFoundError(`restore "${restore.metadata?.name ?? ''}" names no backup (spec.backupName)`, { group: 'velero.io', kind: 'restores', name: restore.metadata?.name ?? '' });
    return b;
  }

  #get(plural: VeleroPlural, namespace: string, name: string, signal: AbortSignal, read?: ReadOptions): PromiseOr<KubeObject> {
    return then(this.#objects.velero(plural, namespace, name, signal, read), (obj) => {
      if (!obj) throw new NotFoundError(`${plural}.velero.io "${name}" not found in namespace "${namespace}"`, { group: 'velero.io', kind: plural, name });
      return inNamespace(obj, namespace, `${plural}.velero.io "${name}"`);
    });
  }

  /**
   * The store spec of a BSL, with the tenancy rules applied. Built once per BSL object and the Secret
   * objects it names, then handed out again while the object cache returns those same objects (a
   * changed BSL or Secret is a new object, so the spec follows it within the cache's lifetime, as
   * before): building it per request (the config copied, the credential decoded from base64, the
   * spec spread) was a fifth of a small download's allocations. Shared specs are frozen.
   */
  #specOf(bsl: KubeObject, namespace: string, signal: AbortSignal): PromiseOr<StoreSpec> {
    const name = bsl.metadata?.name ?? '';
    const spec = bsl.spec ?? {};
    const os = (spec.objectStorage ?? {}) as { bucket?: unknown; prefix?: unknown; caCert?: unknown; caCertRef?: SecretKeySelector };
    const provider = nonEmptyString(spec.provider);
    const bucket = nonEmptyString(os.bucket);
    if (!provider || !bucket) throw new NotFoundError(`backupstoragelocation "${name}" has no provider or bucket`, { group: 'velero.io', kind: 'backupstoragelocations', name });

    const tenant = namespace !== this.#opts.ownNamespace;
    if (tenant) {
      // A tenant's location never runs on the gateway's own identity or files.
      if (!(spec.credential as SecretKeySelector | undefined)?.name) {
        throw new TenancyError(
          `backupstoragelocation "${name}" in namespace "${namespace}" needs its own credential (spec.credential): ` +
            "the gateway's default credential is never used for locations outside its own namespace",
        );
      }
      // A filesystem bucket is a directory of the gateway's own mounts, with no credential of its own:
      // a namespace uses exactly the buckets it was given, compared as written (no normalizing, so
      // `shared/../other` or `./shared` is simply not `shared`).
      if (this.#opts.isFilesystemProvider(provider) && this.#opts.tenantFilesystemAllow.get(namespace)?.has(bucket) !== true) {
        throw new TenancyError(
          `backupstoragelocation "${name}" in namespace "${namespace}" uses filesystem bucket ${JSON.stringify(bucket)} (provider "${provider}"), ` +
            `which --tenant-filesystem-allow does not grant to namespace "${namespace}" (e.g. --tenant-filesystem-allow ${namespace}=<bucket>)`,
        );
      }
    }

    const credentialRef = spec.credential as SecretKeySelector | undefined;
    return then(this.#secretOf(namespace, credentialRef, `backupstoragelocation "${name}" spec.credential`, signal), (credentialSecret) =>
      then(os.caCertRef ? this.#secretOf(namespace, os.caCertRef, `backupstoragelocation "${name}" objectStorage.caCertRef`, signal) : undefined, (caSecret) => {
        const made = this.#specs.get(bsl);
        if (made && made.namespace === namespace && made.credentialSecret === credentialSecret && made.caSecret === caSecret) return made.spec;
        return this.#buildSpec(bsl, namespace, { provider, bucket, tenant }, credentialSecret, caSecret);
      }),
    );
  }

  /** #specOf's spec, made anew (and remembered) for a BSL object, what #specOf checked of it, and the Secret objects it names. */
  #buildSpec(bsl: KubeObject, namespace: string, checked: { provider: string; bucket: string; tenant: boolean }, credentialSecret: V1Secret | undefined, caSecret: V1Secret | undefined): StoreSpec {
    const { provider, bucket, tenant } = checked;
    const name = bsl.metadata?.name ?? '';
    const spec = bsl.spec ?? {};
    const os = (spec.objectStorage ?? {}) as { bucket?: unknown; prefix?: unknown; caCert?: unknown; caCertRef?: SecretKeySelector };
    const credentialRef = spec.credential as SecretKeySelector | undefined;
    const credentialWhat = `backupstoragelocation "${name}" spec.credential`;
    const caWhat = `backupstoragelocation "${name}" objectStorage.caCertRef`;
    const config: Record<string, string> = {};
    for (const [k, v] of Object.entries((spec.config ?? {}) as Record<string, unknown>)) if (typeof v === 'string') config[k] = v;
    const credential = secretKey(namespace, credentialRef, credentialSecret, credentialWhat);
    let caBundle: string | undefined;
    if (os.caCertRef) {
      caBundle = secretKey(namespace, os.caCertRef, caSecret, caWhat)?.toString('utf8');
    } else if (typeof os.caCert === 'string' && os.caCert !== '') {
      caBundle = Buffer.from(os.caCert, 'base64').toString('utf8');
    }
    const built: StoreSpec = Object.freeze({
      name: `${namespace}/${name}`,
      provider,
      bucket,
      prefix: nonEmptyString(os.prefix) ?? '',
      config: Object.freeze(config),
      ...(credential && { credential }),
      ...(caBundle && { caBundle }),
      ...(tenant && { allowDefaultCredential: false, tenant: true }),
    });
    this.#specs.set(bsl, { namespace, credentialSecret, caSecret, spec: built });
    return built;
  }

  /** The Secret a selector names in `namespace` (undefined: no selector, or no such Secret). */
  #secretOf(namespace: string, sel: SecretKeySelector | undefined, what: string, signal: AbortSignal): PromiseOr<V1Secret | undefined> {
    if (!sel?.name) return undefined;
    // A SecretKeySelector has no namespace; one that carries one anyway is refused, not followed.
    refuseOtherNamespace((sel as { namespace?: unknown }).namespace, namespace, what);
    return this.#objects.secret(namespace, sel.name, signal);
  }
}

/** The bytes of one key of a Secret read for `sel`; undefined only for an absent optional selector. */
function secretKey(namespace: string, sel: SecretKeySelector | undefined, secret: V1Secret | undefined, what: string): Buffer | undefined {
  if (!sel?.name) return undefined;
  const data = sel.key ? secret?.data?.[sel.key] : undefined;
  if (data !== undefined) return Buffer.from(data, 'base64');
  if (sel.optional) return undefined;
  throw new NotFoundError(
    secret ? `${what}: secret "${sel.name}" has no key "${sel.key ?? ''}"` : `${what}: secret "${sel.name}" not found in namespace "${namespace}"`,
    { kind: 'secrets', name: sel.name },
  );
}

/** Velero's repository password: one Secret in Velero's namespace keys every repository it makes. */
export const REPOSITORY_SECRET = { name: 'velero-repo-credentials', key: 'repository-password' } as const;

export interface KubeVolumeResolverOptions {
  /** The gateway's (and Velero's) namespace, where the repository password Secret lives. */
  ownNamespace: string;
  /** The password's Secret and key in ownNamespace (default REPOSITORY_SECRET). */
  repositorySecret?: { name: string; key: string };
  /** The cache of volumes read from backups' files (default: one of its own). */
  files?: BackupFileVolumes;
}

/**
 * Kubernetes mode's volumes of a backup. Who reaches it: a caller the HTTP layer has authorized for
 * `backups/volumedata` of the backup. What it reads: the backup's BSL and store spec through
 * KubeResolver (so a tenant's backup gets the tenant's location and credential, tenancy rules and
 * all), the backup's PodVolumeBackups (velero.io/v1) and DataUploads (velero.io/v2alpha1) in the
 * backup's own namespace by the `velero.io/backup-name` label, and, for each kind with none in the
 * cluster, the backup's files in that same location. What it trusts: nothing in those objects or
 * files beyond a checked name (volumes-parse.ts); an object from another namespace, owned by another
 * Backup or written to another location is left out. The repository password comes from Velero's
 * Secret in the gateway's own namespace, for tenants' repositories too: Velero keys every repository
 * with it, and it grants nothing by itself, since the store is still reached only with the location's
 * own credential.
 */
export class KubeVolumeResolver extends BaseVolumeResolver {
  readonly #locations: KubeResolver;
  readonly #objects: ObjectReader;
  readonly #stores: StoreFactory;
  readonly #ownNamespace: string;
  readonly #secret: { name: string; key: string };
  readonly #files: BackupFileVolumes;

  constructor(locations: KubeResolver, objects: ObjectReader, stores: StoreFactory, opts: KubeVolumeResolverOptions) {
    super();
    this.#locations = locations;
    this.#objects = objects;
    this.#stores = stores;
    this.#ownNamespace = opts.ownNamespace;
    this.#secret = opts.repositorySecret ?? REPOSITORY_SECRET;
    this.#files = opts.files ?? new BackupFileVolumes();
  }

  protected async volumesOf(namespace: string, backup: string, signal: AbortSignal): Promise<{ spec: StoreSpec; volumes: BackupVolume[] }> {
    const { bsl, spec } = await this.#locations.locationOf({ namespace, owner: 'backups', name: backup, artifact: 'volumedata' }, signal);
    const ctx: EntryContext = { backup, ...(bsl.metadata?.name !== undefined && { location: bsl.metadata.name }) };
    const [pvbs, dus] = await Promise.all([
      this.#listed('podvolumebackups', namespace, backup, signal, (o) => volumeOfPodVolumeBackup(o, ctx)),
      this.#listed('datauploads', namespace, backup, signal, (o) => volumeOfDataUpload(o, ctx)),
    ]);
    const missing = new Set<VolumeKind>();
    if (pvbs.length === 0) missing.add('PodVolumeBackup');
    if (dus.length === 0) missing.add('DataUpload');
    // The files are the location's own: the location name they recorded is the one their backup was
    // made with, which a cluster that synced the backup may call differently, so it is not compared.
    const fromFiles = missing.size > 0 ? await this.#files.get(spec, () => this.#stores.forSpec(spec), { backup }, missing, signal) : [];
    return { spec, volumes: [...pvbs, ...dus, ...fromFiles].sort(byId) };
  }

  /** The volumes of one listed kind; objects of another namespace or label value are left out, whatever the API said. */
  async #listed(plural: VeleroListedPlural, namespace: string, backup: string, signal: AbortSignal, parse: (o: KubeObject) => VolumeCandidate | undefined): Promise<BackupVolume[]> {
    const items = await this.#objects.veleroList(plural, namespace, backupSelector(backup), signal);
    const label = backupNameLabelValue(backup);
    return uniqueVolumes(items.filter((o) => o.metadata?.namespace === namespace && o.metadata.labels?.[BACKUP_NAME_LABEL] === label).map(parse));
  }

  /** The repository password, read through the object cache (seconds); its value is never put in a message. */
  protected async password(signal: AbortSignal): Promise<string> {
    const { name, key } = this.#secret;
    const secret = await this.#objects.secret(this.#ownNamespace, name, signal);
    const data = secret?.data?.[key];
    if (data === undefined || data === '') {
      throw new RepositoryPasswordUnavailableError(
        secret ? `secret "${name}" in namespace "${this.#ownNamespace}" has no key "${key}"` : `secret "${name}" (Velero's repository password) not found in namespace "${this.#ownNamespace}"`,
      );
    }
    return Buffer.from(data, 'base64').toString('utf8');
  }
}
