/** Writes a --locations-file naming one S3 location (s3rver or the S3 double) trusted through its CA. */
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { startGateway } from './processes.ts';
import type { GatewayProcess } from './processes.ts';
import type { S3rverInstance } from './s3rver.ts';

export interface S3LocationFile {
  /** The location's name in the gateway's messages. */
  name: string;
  bucket: string;
  endpoint: string;
  region: string;
  accessKeyId: string;
  secretAccessKey: string;
  /** PEM of the CA that signed the endpoint's certificate. */
  caPem: string;
  prefix?: string;
}

/** Writes `locations.yaml`, its credential file and its CA file into `dir`; returns the YAML's path. */
export async function writeS3LocationsFile(dir: string, loc: S3LocationFile): Promise<string> {
  await writeFile(join(dir, 'ca.pem'), loc.caPem);
  await writeFile(join(dir, `${loc.name}-credentials`), `[default]\naws_access_key_id = ${loc.accessKeyId}\naws_secret_access_key = ${loc.secretAccessKey}\n`);
  const file = join(dir, 'locations.yaml');
  await writeFile(
    file,
    [
      'locations:',
      `  - name: ${loc.name}`,
      '    provider: aws',
      `    bucket: ${loc.bucket}`,
      `    prefix: ${loc.prefix ?? 'prod'}`,
      `    config: { region: ${loc.region}, s3Url: "${loc.endpoint}", s3ForcePathStyle: true }`,
      `    credentialFile: ${loc.name}-credentials`,
      '    caCertFile: ca.pem',
      '',
    ].join('\n'),
  );
  return file;
}

/**
 * The real gateway in local mode (data and state under `dir`) with s3rver as the location `minio`
 * (prefix `prod`); returns the process and its token.
 */
export async function startLocalWithS3rver(dir: string, s3: S3rverInstance, caPem: string, ...args: string[]): Promise<{ gw: GatewayProcess; token: string }> {
  await writeS3LocationsFile(dir, { name: 'minio', bucket: s3.bucket, endpoint: s3.endpoint, region: 'minio', accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER', caPem });
  const gw = await startGateway(['--mode', 'local', '--data-dir', join(dir, 'data'), '--state-dir', join(dir, 'state'), '--locations-file', join(dir, 'locations.yaml'), ...args]);
  return { gw, token: (await readFile(join(dir, 'state', 'tokens.csv'), 'utf8')).split(',')[0]! };
}
