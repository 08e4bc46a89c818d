/**
 * Kanister's locations as store specs: a Profile (`cr.kanister.io/v1alpha1`) or a location Secret
 * (`secrets.kanister.io/storage-location`) with its credential Secret (`secrets.kanister.io/aws`,
 * `/azure`, `/gcp`) becomes the same StoreSpec a BackupStorageLocation does, so the same adapters,
 * transport, endpoint guard and tenancy rules apply.
 *
 * Who writes these objects: whoever may create Profiles and Secrets in a namespace (a tenant, in a
 * tenant's namespace). What is trusted: nothing beyond the namespace the request names; every value
 * is data. Hostile values: a credential value with a line break would add lines to the credential
 * file the adapters parse (a `role_arn`, an `AZURE_CLIENT_CERTIFICATE_PATH` naming a file on the
 * gateway): refused; an unknown location type, a missing bucket, a key spelled two ways with two
 * values: refused by name, never echoing a value. Kanister's code spellings are the keys; the
 * design document's `path`, `access-key` and `secret-acccess-key` are read as aliases; its `project-id`
 * (like Kanister's `gcp_project_id`) is not read: the service account's JSON names its project.
 */
import type { StoreSpec } from '../stores/spec.ts';

/** Kanister's location types this gateway reads (`filestore` needs a PVC mount: not served). */
export type KanisterLocationType = 's3' | 's3Compliant' | 'gcs' | 'azure';

export interface KanisterLocation {
  type: KanisterLocationType;
  bucket: string;
  endpoint?: string;
  prefix: string;
  region?: string;
  skipSSLVerify: boolean;
}

/**
 * A Kanister object this gateway cannot turn into a location. Answered 502, as a
 * BackupStorageLocation whose configuration the stores refuse: the namespace's configuration behind
 * the gateway is at fault, not the caller's request. The message names the object and the field,
 * never a Secret's value.
 */
export class KanisterLocationError extends Error {
  readonly reason = 'InvalidKanisterLocation';
  constructor(message: string) {
    super(message);
    this.name = 'KanisterLocationError';
  }
}

type SecretData = Readonly<Record<string, string | Uint8Array | undefined>>;

const text = (v: string | Uint8Array | undefined): string | undefined => (v === undefined ? undefined : typeof v === 'string' ? v : Buffer.from(v).toString('utf8'));

/**
 * One value under its key or its alias. Both present with different values is refused: which one
 * Kanister would use depends on the code path, and a silent choice could point at another bucket.
 */
function pick(data: SecretData, key: string, alias: string | undefined, where: string): string | undefined {
  const a = text(data[key]);
  const b = alias === undefined ? undefined : text(data[alias]);
  if (a !== undefined && b !== undefined && a !== b) throw new KanisterLocationError(`${where}: "${key}" and "${alias}" are both set, differently`);
  return a ?? b;
}

const LOCATION_TYPES: ReadonlySet<string> = new Set(['s3', 's3Compliant', 'gcs', 'azure']);

/** Values that end up in a credential file or a URL: printable, one line, bounded. */
function oneLine(value: string, what: string, where: string): string {
  if (value.length === 0 || value.length > 4096 || /\p{Cc}/u.test(value)) {
    throw new KanisterLocationError(`${where}: ${what} must be one line of printable characters`);
  }
  return value;
}

function checkLocation(loc: KanisterLocation, where: string): KanisterLocation {
  if (!LOCATION_TYPES.has(loc.type)) throw new KanisterLocationError(`${where}: location type "${loc.type.slice(0, 64)}" is not one of s3, s3Compliant, gcs, azure`);
  if (loc.bucket === '') throw new KanisterLocationError(`${where}: the location has no bucket`);
  oneLine(loc.bucket, 'bucket', where);
  if (loc.type === 's3Compliant' && !loc.endpoint) throw new KanisterLocationError(`${where}: an s3Compliant location needs an endpoint`);
  if (loc.type === 's3' && !loc.region) throw new KanisterLocationError(`${where}: an s3 location needs a region`);
  if (loc.endpoint !== undefined) oneLine(loc.endpoint, 'endpoint', where);
  if (loc.region !== undefined) oneLine(loc.region, 'region', where);
  if (loc.prefix.includes('\0')) throw new KanisterLocationError(`${where}: the prefix contains NUL`);
  return loc;
}

/** A location Secret's data (type `secrets.kanister.io/storage-location`). */
export function locationFromSecret(data: SecretData, where: string): KanisterLocation {
  const type = pick(data, 'type', undefined, where) ?? '';
  if (type === 'filestore') throw new KanisterLocationError(`${where}: filestore locations live on a PVC this gateway does not mount`);
  const endpoint = pick(data, 'endpoint', undefined, where);
  const region = pick(data, 'region', undefined, where);
  return checkLocation(
    {
      type: type as KanisterLocationType,
      bucket: pick(data, 'bucket', undefined, where) ?? '',
      ...(endpoint && { endpoint }),
      prefix: pick(data, 'prefix', 'path', where) ?? '',
      ...(region && { region }),
      skipSSLVerify: pick(data, 'skipSSLVerify', undefined, where) === 'true',
    },
    where,
  );
}

/** A Profile's `location` and `skipSSLVerify` (Profiles have no `s3` type: AWS is `s3Compliant`). */
export function locationFromProfile(profile: { location?: unknown; skipSSLVerify?: unknown }, where: string): KanisterLocation {
  const l = (profile.location ?? {}) as Record<string, unknown>;
  const str = (k: string): string | undefined => (typeof l[k] === 'string' && l[k] !== '' ? l[k] : undefined);
  const type = str('type') ?? '';
  if (type === 'kopia') throw new KanisterLocationError(`${where}: a kopia-server Profile names a Kopia repository server, not a store`);
  const endpoint = str('endpoint');
  const region = str('region');
  return checkLocation(
    {
      type: type as KanisterLocationType,
      bucket: str('bucket') ?? '',
      ...(endpoint && { endpoint }),
      prefix: str('prefix') ?? '',
      ...(region && { region }),
      skipSSLVerify: profile.skipSSLVerify === true,
    },
    where,
  );
}

/** The variable of the Azure credential file that holds the shared key. */
const AZURE_KEY_VARIABLE = 'AZURE_STORAGE_ACCOUNT_ACCESS_KEY';

/**
 * The credential file our adapters read (AWS INI, Azure dotenv, GCP service-account JSON) from a
 * Kanister credential Secret's data or a Profile keyPair's two values.
 */
export function credentialFile(loc: KanisterLocation, data: SecretData, where: string): Uint8Array {
  switch (loc.type) {
    case 's3':
    case 's3Compliant': {
      if (pick(data, 'role', undefined, where)) throw new KanisterLocationError(`${where}: an AWS role to assume is not supported; give static keys`);
      const id = pick(data, 'aws_access_key_id', 'access-key', where);
      const secret = pick(data, 'aws_secret_access_key', 'secret-acccess-key', where);
      if (!id || !secret) throw new KanisterLocationError(`${where}: the credential needs aws_access_key_id and aws_secret_access_key`);
      return Buffer.from(`[default]\naws_access_key_id = ${oneLine(id, 'aws_access_key_id', where)}\naws_secret_access_key = ${oneLine(secret, 'aws_secret_access_key', where)}\n`);
    }
    case 'azure': {
      const key = pick(data, 'azure_storage_key', undefined, where);
      if (!key) throw new KanisterLocationError(`${where}: the credential needs azure_storage_key`);
      const env = pick(data, 'azure_storage_environment', undefined, where);
      const lines = [`${AZURE_KEY_VARIABLE}=${oneLine(key, 'azure_storage_key', where)}`];
      if (env) lines.push(`AZURE_CLOUD_NAME=${oneLine(env, 'azure_storage_environment', where)}`);
      return Buffer.from(lines.join('\n') + '\n');
    }
    case 'gcs': {
      const json = pick(data, 'service-account.json', 'gcp_service_key', where);
      if (!json) throw new KanisterLocationError(`${where}: the credential needs service-account.json`);
      return Buffer.from(json);
    }
  }
}

/** The Azure storage account a credential names (`azure_storage_account_id`). */
export function azureAccount(data: SecretData, where: string): string {
  const account = pick(data, 'azure_storage_account_id', undefined, where);
  if (!account) throw new KanisterLocationError(`${where}: the credential needs azure_storage_account_id`);
  return oneLine(account, 'azure_storage_account_id', where);
}

/** An endpoint as our adapters take it: Kanister accepts one without a scheme (then HTTPS). */
function endpointURL(endpoint: string): string {
  return /^[a-z][a-z0-9+.-]*:\/\//i.test(endpoint) ? endpoint : `https://${endpoint}`;
}

/**
 * The store spec of a Kanister location in `namespace`. Like a BackupStorageLocation's: outside the
 * gateway's own namespace it is a tenant's (its own credential only, HTTPS endpoints through the
 * guard); the prefix is Kanister's, without leading or trailing slashes.
 */
export function kanisterStoreSpec(name: string, loc: KanisterLocation, credential: Uint8Array, data: SecretData, tenant: boolean, where: string): StoreSpec {
  const config: Record<string, string> = {};
  let provider: string;
  switch (loc.type) {
    case 's3':
    case 's3Compliant':
      provider = 'aws';
      if (loc.region) config.region = loc.region;
      else config.region = 'us-east-1';
      if (loc.endpoint) {
        config.s3Url = endpointURL(loc.endpoint);
        config.s3ForcePathStyle = 'true';
      }
      break;
    case 'gcs':
      provider = 'gcp';
      // Kanister's GCS has no endpoint; one given is a private endpoint, through the same guard.
      if (loc.endpoint) config.storeEndpoint = endpointURL(loc.endpoint);
      break;
    case 'azure':
      provider = 'azure';
      config.storageAccount = azureAccount(data, where);
      // The shared key is what credentialFile writes; the adapter takes it from the variable named here.
      config.storageAccountKeyEnvVar = AZURE_KEY_VARIABLE;
      if (loc.endpoint) config.storageAccountURI = endpointURL(loc.endpoint);
      break;
  }
  if (loc.skipSSLVerify) config.insecureSkipTLSVerify = 'true';
  return {
    name,
    provider,
    bucket: loc.bucket,
    prefix: loc.prefix.replace(/^\/+|\/+$/g, ''),
    config,
    credential,
    ...(tenant && { allowDefaultCredential: false, tenant: true }),
  };
}

/**
 * A Profile's `keyPair` credential as the credential Secret's data: the two values its `idField` and
 * `secretField` name in the referenced Secret, under the keys `kanctl create profile` uses.
 */
export function keyPairData(type: KanisterLocationType, id: string | Uint8Array, secret: string | Uint8Array): Record<string, string | Uint8Array> {
  switch (type) {
    case 's3':
    case 's3Compliant':
      return { aws_access_key_id: id, aws_secret_access_key: secret };
    case 'gcs':
      return { gcp_project_id: id, 'service-account.json': secret };
    case 'azure':
      return { azure_storage_account_id: id, azure_storage_key: secret };
  }
}
