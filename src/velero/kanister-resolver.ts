/**
 * Kubernetes mode's Kanister Profiles: a Profile (`cr.kanister.io/v1alpha1`, `profiles`) and the
 * credential Secret it names become a tenant's store, with the rules of a tenant's
 * BackupStorageLocation.
 *
 * Who reaches it: a caller the HTTP layer has already allowed `get` on `profiles/<subresource>` for
 * this Profile (no Profile or Secret is read before that). What it reads: the Profile in the request's
 * namespace (through the shared object cache, rate-limited and time-bounded like BSL reads) and the
 * one Secret its credential names, in the same namespace. What it trusts: nothing in either beyond a
 * checked value (kanister.ts).
 *
 * Every Profile is a tenant's, the gateway's own namespace included: its store never falls back on
 * the gateway's default credential, its endpoint goes through the tenant endpoint guard (HTTPS only,
 * no cluster-internal, loopback or metadata address unless --tenant-endpoint-allow says so), file-
 * valued settings are refused by the store factory (`tenant: true`), and the Secrets it names are
 * read only in its own namespace and never in the gateway's, where the Secrets are the gateway's and
 * Velero's own (serving key, signing keys, Velero's cloud credential, repository password). A
 * reference to another namespace is refused (403), not followed.
 */
import type { ObjectReader, ProfileReader } from '../kube/objects.ts';
import { nonEmptyString } from '../util/strings.ts';
import { NotFoundError, TenancyError, UnsupportedVolumeError } from './errors.ts';
import { credentialFile, kanisterStoreSpec, keyPairData, KanisterLocationError, locationFromProfile } from './kanister.ts';
import type { KanisterLocationType } from './kanister.ts';
import { KANISTER_GROUP } from './kanister-profiles.ts';
import type { ProfileLocation, ProfileRepository, ProfileRepositoryOf, ProfileResolver } from './kanister-profiles.ts';
import { checkServed, inNamespace, refuseOtherNamespace } from './kube-resolver.ts';

/** The Kanister credential Secret type each location type takes (`credential.type: secret`). */
const SECRET_TYPES: Record<KanisterLocationType, string> = {
  s3: 'secrets.kanister.io/aws',
  s3Compliant: 'secrets.kanister.io/aws',
  gcs: 'secrets.kanister.io/gcp',
  azure: 'secrets.kanister.io/azure',
};

/** The longest prefix a Profile may name (S3's and GCS's limit for a whole object name). */
const MAX_PREFIX_BYTES = 1024;

export interface KubeProfileResolverOptions {
  /** Namespaces served; others answer 404. */
  serves: (namespace: string) => boolean;
  /** The gateway's own namespace: no Profile reads a Secret there. */
  ownNamespace: string;
  /** The Kopia repository step (snapshots under a Profile); absent, `repository` answers 501. */
  repositoryOf?: ProfileRepositoryOf;
}

/** A Secret as the resolver hands it on: its type and decoded data, never logged. */
interface SecretContent {
  type?: string;
  data: Record<string, Uint8Array>;
}

interface ProfileRef {
  name?: unknown;
  namespace?: unknown;
}

interface ProfileCredential {
  type?: unknown;
  keyPair?: { idField?: unknown; secretField?: unknown; secret?: ProfileRef };
  secret?: ProfileRef;
}

const shown = (v: unknown): string => JSON.stringify(typeof v === 'string' ? v.slice(0, 64) : (v ?? ''));

export class KubeProfileResolver implements ProfileResolver {
  readonly #objects: ProfileReader & Pick<ObjectReader, 'secret'>;
  readonly #opts: KubeProfileResolverOptions;

  constructor(objects: ProfileReader & Pick<ObjectReader, 'secret'>, opts: KubeProfileResolverOptions) {
    this.#objects = objects;
    this.#opts = opts;
  }

  async location(namespace: string, profile: string, signal: AbortSignal): Promise<ProfileLocation> {
    return (await this.#read(namespace, profile, signal)).location;
  }

  async repository(namespace: string, profile: string, signal: AbortSignal): Promise<ProfileRepository> {
    const { location, annotations } = await this.#read(namespace, profile, signal);
    const repositoryOf = this.#opts.repositoryOf;
    if (!repositoryOf) throw new UnsupportedVolumeError('Kopia snapshots under Kanister Profiles are not available in this gateway');
    return repositoryOf(location, annotations, (name, s) => this.#secretIfAny(namespace, { name }, `profile "${profile}" repository`, s), signal);
  }

  /** The Profile, read once per request, as a location (tenant rules applied) and its annotations. */
  async #read(namespace: string, name: string, signal: AbortSignal): Promise<{ location: ProfileLocation; annotations: Record<string, string> }> {
    checkServed(this.#opts.serves, namespace);
    const found = await this.#objects.profile(namespace, name, signal);
    if (!found) throw new NotFoundError(`profiles.${KANISTER_GROUP} "${name}" not found in namespace "${namespace}"`, { group: KANISTER_GROUP, kind: 'profiles', name });
    const obj = inNamespace(found, namespace, `profiles.${KANISTER_GROUP} "${name}"`);
    const where = `profile "${namespace}/${name}"`;
    const loc = locationFromProfile(obj, where);
    if (Buffer.byteLength(loc.prefix) > MAX_PREFIX_BYTES) throw new KanisterLocationError(`${where}: the location's prefix is longer than ${MAX_PREFIX_BYTES} bytes`);
    const data = await this.#credentialData(namespace, obj.credential as ProfileCredential | undefined, loc.type, where, signal);
    const spec = kanisterStoreSpec(`${namespace}/profiles/${name}`, loc, credentialFile(loc, data, where), data, true, where);
    // The store's root is the location's prefix (spec.prefix): the store itself keeps every key under it.
    return { location: { namespace, profile: name, spec, prefix: '' }, annotations: { ...obj.metadata?.annotations } };
  }

  /** The credential's data under the keys kanister.ts reads, from a keyPair or a Kanister credential Secret. */
  async #credentialData(namespace: string, c: ProfileCredential | undefined, type: KanisterLocationType, where: string, signal: AbortSignal): Promise<Readonly<Record<string, string | Uint8Array>>> {
    switch (c?.type) {
      case 'keyPair': {
        const idField = nonEmptyString(c.keyPair?.idField);
        const secretField = nonEmptyString(c.keyPair?.secretField);
        if (!idField || !secretField) throw new KanisterLocationError(`${where}: credential.keyPair needs idField and secretField`);
        const what = `${where} credential.keyPair.secret`;
        const secret = await this.#secret(namespace, c.keyPair?.secret, what, signal);
        const [id, value] = [secret.data[idField], secret.data[secretField]];
        if (id === undefined || value === undefined) {
          const missing = id === undefined ? idField : secretField;
          const secretName = String(c.keyPair?.secret?.name);
          throw new NotFoundError(`${what}: secret "${secretName}" has no key ${shown(missing)}`, { kind: 'secrets', name: secretName });
        }
        return keyPairData(type, id, value);
      }
      case 'secret': {
        const secret = await this.#secret(namespace, c.secret, `${where} credential.secret`, signal);
        const wanted = SECRET_TYPES[type];
        if (secret.type !== wanted) {
          throw new KanisterLocationError(`${where}: credential.secret has type ${shown(secret.type)}; a ${type} location takes a Secret of type ${wanted}`);
        }
        return secret.data;
      }
      case 'kopia':
        throw new KanisterLocationError(`${where}: a kopia credential names a Kopia repository server, not a store`);
      default:
        throw new KanisterLocationError(`${where}: credential type ${shown(c?.type)} is not one of keyPair, secret`);
    }
  }

  /**
   * A Secret the Profile names, in the Profile's own namespace only, and never in the gateway's.
   * Missing: 404 naming it, as a BackupStorageLocation's missing credential Secret is.
   */
  async #secret(namespace: string, ref: ProfileRef | undefined, what: string, signal: AbortSignal): Promise<SecretContent> {
    const secret = await this.#secretIfAny(namespace, ref, what, signal);
    if (!secret) throw new NotFoundError(`${what}: secret "${String(ref?.name)}" not found in namespace "${namespace}"`, { kind: 'secrets', name: String(ref?.name) });
    return secret;
  }

  /** The same, undefined when the Secret does not exist (the repository step decides what that means). */
  async #secretIfAny(namespace: string, ref: ProfileRef | undefined, what: string, signal: AbortSignal): Promise<SecretContent | undefined> {
    const name = nonEmptyString(ref?.name);
    if (!name) throw new KanisterLocationError(`${what} names no Secret`);
    refuseOtherNamespace(ref?.namespace, namespace, what);
    if (namespace === this.#opts.ownNamespace) {
      throw new TenancyError(
        `${what}: Profiles in the gateway's own namespace "${namespace}" may not use its Secrets (they are the gateway's and Velero's own); keep Profiles and their Secrets in another namespace`,
      );
    }
    const secret = await this.#objects.secret(namespace, name, signal);
    if (!secret) return undefined;
    const data: Record<string, Uint8Array> = {};
    for (const [k, v] of Object.entries(secret.data ?? {})) data[k] = Buffer.from(v, 'base64');
    return { ...(secret.type !== undefined && { type: secret.type }), data };
  }
}
