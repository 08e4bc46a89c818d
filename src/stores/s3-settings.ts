/**
 * The settings of an S3 location, read from its BackupStorageLocation the way Velero's AWS plugin
 * reads them, so that an existing location works unchanged.
 */
import { parseAwsCredentials } from './credentials/aws.ts';
import type { AwsCredentials } from './credentials/aws.ts';
import { InvalidLocationError } from './errors.ts';
import type { StoreSpec } from './spec.ts';
import { parseEndpoint } from './transport.ts';
import { parseBool } from './trust.ts';

/**
 * Every `spec.config` key Velero's AWS plugin accepts. Only `region`, `s3Url`, `s3ForcePathStyle`,
 * `profile` and `customerKeyEncryptionFile` change how objects are read; the others concern writing
 * or pre-signing and are accepted so that the same BSL works here. Anything else is refused, as the
 * plugin refuses it.
 */
export const S3_CONFIG_KEYS: ReadonlySet<string> = new Set([
  'region',
  's3Url',
  'publicUrl',
  's3ForcePathStyle',
  'insecureSkipTLSVerify',
  'profile',
  'credentialsFile',
  'serverSideEncryption',
  'kmsKeyId',
  'customerKeyEncryptionFile',
  'checksumAlgorithm',
  'tagging',
  'signatureVersion',
  'enableSharedConfig',
  'bucket',
  'prefix',
  'caCert',
]);

/** What Velero's plugin (and S3) use when an endpoint is given without a region. */
export const DEFAULT_REGION = 'us-east-1';

export interface Settings {
  /** Explicit region, or undefined when it must be discovered from the bucket. */
  region: string | undefined;
  endpoint: string | undefined;
  forcePathStyle: boolean;
  profile: string | undefined;
  customerKeyFile: string | undefined;
  credentials: AwsCredentials | undefined;
}

/** Validates the location's config and parses its credential; throws InvalidLocationError. */
export function settingsFor(spec: StoreSpec, ambientCredentials: boolean): Settings {
  const location = spec.name;
  const config = spec.config;
  const unknown = Object.keys(config).filter((key) => !S3_CONFIG_KEYS.has(key));
  if (unknown.length > 0) {
    throw new InvalidLocationError(`location ${location}: unknown config key(s) for provider ${spec.provider}: ${unknown.join(', ')}`);
  }
  if (spec.bucket === '') throw new InvalidLocationError(`location ${location}: the bucket is empty`);
  const value = (key: string): string | undefined => {
    const v = config[key]?.trim();
    return v === undefined || v === '' ? undefined : v;
  };
  const s3Url = value('s3Url');
  if (s3Url !== undefined) parseEndpoint(location, 's3Url', s3Url);
  const pathStyle = value('s3ForcePathStyle');
  const profile = value('profile');
  let credentials: AwsCredentials | undefined;
  if (spec.credential !== undefined) {
    credentials = parseAwsCredentials(spec.credential, location, profile);
  } else if (!ambientCredentials) {
    throw new InvalidLocationError(
      `location ${location} needs a credential: give it an AWS credentials file (spec.credential)`,
    );
  }
  return {
    region: value('region') ?? (s3Url === undefined ? undefined : DEFAULT_REGION),
    endpoint: s3Url,
    forcePathStyle: pathStyle === undefined ? false : parseBool(pathStyle, 's3ForcePathStyle', location),
    profile,
    customerKeyFile: value('customerKeyEncryptionFile'),
    credentials,
  };
}

