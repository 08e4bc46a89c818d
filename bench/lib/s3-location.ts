/**
 * s3rver as a backup storage location of a local-mode gateway: s3rver in a child process (HTTPS with
 * a test CA unless `tls` is false), its credentials file and a `--locations-file` naming it, all in
 * `dir`. The gateway resolves backups under `prefix` there.
 */
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { GetObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { getSignedUrl } from '@aws-sdk/s3-request-presigner';
import { S3RVER_ACCESS_KEY_ID, S3RVER_SECRET_ACCESS_KEY, startS3rver } from '../../test/support/s3rver.ts';
import type { S3rverInstance } from '../../test/support/s3rver.ts';
import { createTestPki } from '../../test/support/test-ca.ts';

export interface S3Location {
  s3: S3rverInstance;
  /** For `--locations-file`. */
  locationsFile: string;
  /** The CA that signed s3rver's certificate (HTTPS only). */
  caFile: string | undefined;
  /** A pre-signed GET URL of a full key of the bucket, valid for an hour. */
  presign(key: string): Promise<string>;
  /** Stops s3rver and the signing client. */
  stop(): Promise<void>;
}

export async function startS3Location(dir: string, prefix: string, tls: boolean): Promise<S3Location> {
  const pki = await createTestPki('vds bench s3rver CA');
  const caFile = tls ? join(dir, 'ca.pem') : undefined;
  if (caFile) await writeFile(caFile, pki.caCert);
  const s3 = await startS3rver(tls ? { tls: { key: pki.key, cert: pki.cert, ca: pki.caCert } } : {});
  await writeFile(join(dir, 'credentials'), `[default]\naws_access_key_id = ${S3RVER_ACCESS_KEY_ID}\naws_secret_access_key = ${S3RVER_SECRET_ACCESS_KEY}\n`, { mode: 0o600 });
  const locationsFile = join(dir, 'locations.yaml');
  await writeFile(
    locationsFile,
    [
      'locations:',
      '  - name: s3rver',
      '    provider: aws',
      `    bucket: ${s3.bucket}`,
      `    prefix: ${prefix}`,
      `    config: { region: us-east-1, s3Url: "${s3.endpoint}", s3ForcePathStyle: "true" }`,
      '    credentialFile: credentials',
      ...(caFile ? ['    caCertFile: ca.pem'] : []),
      '',
    ].join('\n'),
  );
  const signer = new S3Client({
    region: 'us-east-1',
    endpoint: s3.endpoint,
    forcePathStyle: true,
    credentials: { accessKeyId: S3RVER_ACCESS_KEY_ID, secretAccessKey: S3RVER_SECRET_ACCESS_KEY },
  });
  return {
    s3,
    locationsFile,
    caFile,
    presign: (key) => getSignedUrl(signer, new GetObjectCommand({ Bucket: s3.bucket, Key: key }), { expiresIn: 3600 }),
    stop: async () => {
      signer.destroy();
      await s3.stop();
    },
  };
}
