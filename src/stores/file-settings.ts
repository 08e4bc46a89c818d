/**
 * Settings that name a file on the gateway or a program it would run, one table per provider, and
 * the two rules built on it:
 * - a tenant's location (`spec.tenant`, a BSL outside the gateway's namespace) with any of them is
 *   refused (TenantSettingRefusedError, 403) by the store factory before any adapter is built, so
 *   before any file is touched and before any connection: a setting from a tenant is data, never a
 *   path (Flux's multi-tenancy lockdown makes the same call);
 * - the gateway's own locations read the few it honours through readLocationFile: a regular file of at
 *   most 1 MiB (util/setting-file.ts), never a FIFO, a device, a socket or a directory.
 * Adapters read files only through readLocationFile, which refuses every tenant's location itself: a
 * row missing from the table can make a tenant's request fail, never read a file.
 */
import { SettingFileError, readSettingFile } from '../util/setting-file.ts';
import { awsProfileKeys } from './credentials/aws.ts';
import { parseAzureCredentialFile } from './credentials/azure.ts';
import { gcpCredentialFields } from './credentials/gcp.ts';
import { InvalidLocationError, TenantSettingRefusedError } from './errors.ts';
import { providerKind } from './spec.ts';
import type { StoreSpec } from './spec.ts';

/** What the gateway does with a setting on one of its own locations. */
export type AdminUse =
  /** Read through readLocationFile: a regular file of at most 1 MiB. */
  | 'read'
  /** Accepted as Velero accepts it, never read: the gateway takes the credential's bytes from the Secret. */
  | 'ignored'
  /** Refused for everyone (GCP credentials other than service-account keys). */
  | 'refused';

/** One row: a setting, or a family of them, that names a file on the gateway or runs a program. */
export interface FileSettingRule {
  /** Where it is written: the BSL's `spec.config`, or inside the credential (the Secret's bytes). */
  where: 'config' | 'credential';
  /** The key as the README and messages show it: a name, or a pattern such as `*_FILE` or `sso_*`. */
  key: string;
  /** Whether a config key, credential key or (GCP) field path falls under this row. */
  matches(name: string): boolean;
  /** What it would do on the gateway if a tenant's value were honoured. */
  effect: string;
  /** What the gateway does with it for its own locations. */
  admin: AdminUse;
}

const exact = (key: string): ((name: string) => boolean) => (name) => name === key;
const exactIgnoringCase = (key: string): ((name: string) => boolean) => (name) => name.toLowerCase() === key.toLowerCase();
const suffix = (end: string): ((name: string) => boolean) => (name) => name.toLowerCase().endsWith(end.toLowerCase()) && name.length > end.length;
const prefix = (start: string): ((name: string) => boolean) => (name) => name.toLowerCase().startsWith(start.toLowerCase());
/** A GCP field named `field` directly under a `credential_source` object, at any depth. */
const sourceField = (field: string): ((name: string) => boolean) => (name) => name === `credential_source.${field}` || name.endsWith(`.credential_source.${field}`);

/**
 * The rows, per provider kind (`aws`, `azure`, `gcp`; `velero.io/` prefixes dropped). Filesystem
 * providers have none the gateway reads: their bucket is a directory under --fs-root, and
 * local-volume-provider's `path` / `server` config is ignored (the mount is the chart's setting);
 * --tenant-filesystem-allow decides which namespace may use which bucket.
 */
export const FILE_SETTINGS: Readonly<Record<'aws' | 'azure' | 'gcp', readonly FileSettingRule[]>> = {
  aws: [
    { where: 'config', key: 'customerKeyEncryptionFile', matches: exact('customerKeyEncryptionFile'), admin: 'read', effect: 'reads an SSE-C key from this path and sends its first 32 bytes to the store with every request' },
    { where: 'config', key: 'credentialsFile', matches: exact('credentialsFile'), admin: 'ignored', effect: "reads the credential file from this path instead of the BSL's Secret" },
    { where: 'credential', key: 'credential_process', matches: exactIgnoringCase('credential_process'), admin: 'ignored', effect: 'runs this command line to obtain credentials' },
    { where: 'credential', key: 'web_identity_token_file', matches: exactIgnoringCase('web_identity_token_file'), admin: 'ignored', effect: 'reads a web identity token from this path and exchanges it at STS' },
    { where: 'credential', key: 'role_arn', matches: exactIgnoringCase('role_arn'), admin: 'ignored', effect: 'assumes a role with the credentials of another profile or of the gateway itself' },
    { where: 'credential', key: 'source_profile', matches: exactIgnoringCase('source_profile'), admin: 'ignored', effect: "takes the role's source credentials from another profile, possibly one of the gateway's own files" },
    { where: 'credential', key: 'credential_source', matches: exactIgnoringCase('credential_source'), admin: 'ignored', effect: "takes the role's source credentials from the gateway's environment, instance metadata or container role" },
    { where: 'credential', key: 'sso_*', matches: prefix('sso_'), admin: 'ignored', effect: 'reads an SSO token from the cache under ~/.aws/sso/cache on the gateway' },
    { where: 'credential', key: 'login_session', matches: exactIgnoringCase('login_session'), admin: 'ignored', effect: 'reads an `aws login` token from the cache under ~/.aws/login/cache on the gateway' },
    { where: 'credential', key: 'ca_bundle', matches: exactIgnoringCase('ca_bundle'), admin: 'ignored', effect: 'reads a CA bundle from this path' },
    { where: 'credential', key: '*_file', matches: suffix('_file'), admin: 'ignored', effect: 'names a file' },
    { where: 'credential', key: '*_path', matches: suffix('_path'), admin: 'ignored', effect: 'names a file' },
  ],
  azure: [
    { where: 'config', key: 'credentialsFile', matches: exact('credentialsFile'), admin: 'ignored', effect: "reads the credential file from this path instead of the BSL's Secret" },
    { where: 'credential', key: 'AZURE_CLIENT_CERTIFICATE_PATH', matches: exactIgnoringCase('AZURE_CLIENT_CERTIFICATE_PATH'), admin: 'read', effect: 'reads the client certificate and its key (PEM) from this path' },
    { where: 'credential', key: 'AZURE_FEDERATED_TOKEN_FILE', matches: exactIgnoringCase('AZURE_FEDERATED_TOKEN_FILE'), admin: 'ignored', effect: 'reads a workload identity token from this path' },
    { where: 'credential', key: '*_FILE', matches: suffix('_FILE'), admin: 'ignored', effect: 'names a file (e.g. AZURE_CREDENTIALS_FILE)' },
    { where: 'credential', key: '*_PATH', matches: suffix('_PATH'), admin: 'ignored', effect: 'names a file' },
    { where: 'credential', key: '*_DIR', matches: suffix('_DIR'), admin: 'ignored', effect: 'names a directory (e.g. AZURE_CONFIG_DIR, where the Azure CLI keeps its tokens)' },
  ],
  gcp: [
    { where: 'config', key: 'credentialsFile', matches: exact('credentialsFile'), admin: 'ignored', effect: "reads the service-account key from this path instead of the BSL's Secret" },
    { where: 'credential', key: 'credential_source.file', matches: sourceField('file'), admin: 'refused', effect: 'external_account: reads the subject token from this path' },
    { where: 'credential', key: 'credential_source.executable', matches: sourceField('executable'), admin: 'refused', effect: 'external_account: runs this command to obtain the subject token' },
    { where: 'credential', key: 'credential_source.url', matches: sourceField('url'), admin: 'refused', effect: 'external_account: fetches the subject token from this URL (e.g. the metadata server) from the gateway' },
    { where: 'credential', key: 'credential_source.environment_id', matches: sourceField('environment_id'), admin: 'refused', effect: "external_account: takes AWS credentials from the gateway's environment or instance metadata" },
    { where: 'credential', key: 'credential_source.certificate', matches: sourceField('certificate'), admin: 'refused', effect: 'external_account: reads an X.509 certificate configuration from the gateway' },
    { where: 'credential', key: '*_file', matches: (name) => suffix('_file')(name.slice(name.lastIndexOf('.') + 1)), admin: 'refused', effect: 'names a file (e.g. credential_source.executable.output_file)' },
    { where: 'credential', key: '*_path', matches: (name) => suffix('_path')(name.slice(name.lastIndexOf('.') + 1)), admin: 'refused', effect: 'names a file' },
  ],
};

/** A key as shown in a message: only name characters, bounded, so a hostile key cannot shape the text. */
function shown(name: string): string {
  const clean = name.replace(/[^\w.-]/g, '?');
  return clean.length > 80 ? `${clean.slice(0, 80)}…` : clean;
}

function nonEmpty(value: string | undefined): boolean {
  return value !== undefined && value.trim() !== '';
}

/**
 * The settings of `spec` that the table lists, named as messages show them (`config
 * customerKeyEncryptionFile`, `AWS credential key credential_process (profile "default")`, ...).
 * Empty values name nothing and are not listed. Parses the credential in memory; a malformed one
 * throws the InvalidLocationError its adapter would.
 */
export function fileSettingsOf(spec: StoreSpec): string[] {
  const kind = providerKind(spec.provider);
  if (kind !== 'aws' && kind !== 'azure' && kind !== 'gcp') return [];
  const rules = FILE_SETTINGS[kind];
  const listed = (where: FileSettingRule['where'], name: string): boolean => rules.some((r) => r.where === where && r.matches(name));
  const found: string[] = [];
  for (const [key, value] of Object.entries(spec.config)) {
    if (nonEmpty(value) && listed('config', key)) found.push(`config ${shown(key)}`);
  }
  if (spec.credential === undefined) return found;
  if (kind === 'aws') {
    const { profile, keys } = awsProfileKeys(spec.credential, spec.name, spec.config.profile ?? '');
    for (const key of keys) if (listed('credential', key)) found.push(`AWS credential key ${shown(key)} (profile "${shown(profile)}")`);
  } else if (kind === 'azure') {
    const values = parseAzureCredentialFile(spec.credential, spec.name);
    for (const [name, value] of Object.entries(values)) {
      if (nonEmpty(value) && listed('credential', name)) found.push(`Azure credential variable ${shown(name)}`);
    }
  } else {
    for (const field of gcpCredentialFields(spec.credential)) if (listed('credential', field)) found.push(`GCP credential field ${shown(field)}`);
  }
  return found;
}

/**
 * Throws TenantSettingRefusedError when `spec` is a tenant's location with a setting the table lists;
 * does nothing for the gateway's own locations. Reads no file and opens no connection.
 */
export function refuseTenantFileSettings(spec: StoreSpec): void {
  if (spec.tenant !== true) return;
  const found = fileSettingsOf(spec);
  if (found.length === 0) return;
  const list = found.length === 1 ? found[0] : `${found.slice(0, -1).join(', ')} and ${found.at(-1)}`;
  throw new TenantSettingRefusedError(
    `location ${spec.name}: ${list} ${found.length === 1 ? 'is' : 'are'} refused for locations outside the gateway's namespace: ` +
      "such settings would make the gateway read its own files, run programs or use its own identity; give values inline " +
      'where the provider allows it (e.g. AZURE_CLIENT_CERTIFICATE instead of AZURE_CLIENT_CERTIFICATE_PATH)',
    found,
  );
}

/**
 * The bytes of the file `setting` of location `spec` names: the only way an adapter reads a file.
 * A tenant's location is refused (TenantSettingRefusedError) without touching `path`; the gateway's
 * own locations get a regular file of at most 1 MiB, or an InvalidLocationError naming the location
 * and the setting (never the path or the content).
 */
export async function readLocationFile(spec: StoreSpec, setting: string, path: string): Promise<Buffer> {
  if (spec.tenant === true) {
    throw new TenantSettingRefusedError(
      `location ${spec.name}: ${setting} names a file on the gateway, which locations outside the gateway's namespace may not use`,
      [setting],
    );
  }
  try {
    return await readSettingFile(path, setting);
  } catch (err) {
    if (err instanceof SettingFileError) throw new InvalidLocationError(`location ${spec.name}: ${err.message}`, { cause: err });
    throw err;
  }
}
