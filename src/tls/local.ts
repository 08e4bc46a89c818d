import { randomBytes, X509Certificate } from 'node:crypto';
import { chmod, mkdir, open, readFile, rename, unlink } from 'node:fs/promises';
import { hostname } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { isIP } from 'node:net';
import { CertificateError } from './errors.ts';
import { generateSelfSigned, normalizeHosts } from './generate.ts';
import { loadCertificatePair } from './pair.ts';
import type { LoadedCertificate } from './types.ts';

/** File names inside the state directory (the names a kubernetes.io/tls Secret uses). */
export const CERT_FILE_NAME = 'tls.crt';
export const KEY_FILE_NAME = 'tls.key';

/** Options for {@link ensureLocalCertificate}. */
export interface LocalCertificateOptions {
  /** Extra DNS names / IP addresses for a generated certificate; they come first, so the first is the CN. */
  hosts?: readonly string[];
  /** Validity of a generated certificate in days; default 365. */
  validityDays?: number;
}

/** The serving certificate of local mode and where it lives. */
export interface LocalCertificate extends LoadedCertificate {
  certFile: string;
  keyFile: string;
  /** True when this call generated and wrote the pair; false when it reused the files. */
  generated: boolean;
  /**
   * Hosts a reused certificate does not cover (a host passed now, or a renamed machine): worth a
   * warning, since clients using them will fail hostname verification. Empty for a generated one.
   */
  missingHosts: string[];
}

/** The hosts a local certificate is generated for: loopback names and this machine's name. */
export function defaultLocalHosts(): string[] {
  const hosts = ['localhost', '127.0.0.1', '::1'];
  // A machine name that is not a valid DNS name cannot be a SAN; it must not stop local mode starting.
  try {
    hosts.push(...normalizeHosts([hostname()]));
  } catch {
    // leave it out
  }
  return hosts;
}

async function readIfExists(file: string): Promise<string | undefined> {
  try {
    return await readFile(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new CertificateError('CertificateUnreadable', `cannot read ${file}: ${(err as Error).message}`, [file], { cause: err });
  }
}

// Temp file in the same directory, then rename: a reader (or a crash) sees the old file or the whole
// new one, never half of it.
async function writeFileAtomic(file: string, data: string): Promise<void> {
  const tmp = join(dirname(file), `.${basename(file)}.${randomBytes(6).toString('hex')}.tmp`);
  const fh = await open(tmp, 'wx', 0o600);
  try {
    try {
      await fh.chmod(0o600); // the umask only ever removes bits; this pins the mode exactly
      await fh.writeFile(data);
      await fh.sync();
    } finally {
      await fh.close();
    }
    await rename(tmp, file);
  } catch (err) {
    await unlink(tmp).catch(() => {});
    throw err;
  }
}

async function syncDir(dir: string): Promise<void> {
  const fh = await open(dir, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

function uncovered(certPem: string, hosts: readonly string[]): string[] {
  const cert = new X509Certificate(certPem);
  return hosts.filter((h) => (isIP(h) === 0 ? cert.checkHost(h) === undefined : cert.checkIP(h) === undefined));
}

/**
 * The serving certificate for local mode, kept as `<stateDir>/tls.crt` and `<stateDir>/tls.key`.
 *
 * - Both files exist: they are reused when they parse, match and have not expired; otherwise this
 *   throws a CertificateError naming them.
 * - Neither exists: a self-signed pair is generated for `hosts` plus {@link defaultLocalHosts},
 *   `stateDir` is created (0700) if needed and both files are written atomically with mode 0600.
 * - Only one exists: throws a CertificateError. The user's files are never overwritten.
 */
export async function ensureLocalCertificate(stateDir: string, opts: LocalCertificateOptions = {}): Promise<LocalCertificate> {
  const certFile = join(stateDir, CERT_FILE_NAME);
  const keyFile = join(stateDir, KEY_FILE_NAME);
  const files = [certFile, keyFile];
  const hosts = normalizeHosts([...(opts.hosts ?? []), ...defaultLocalHosts()]);

  const [certPem, keyPem] = await Promise.all([readIfExists(certFile), readIfExists(keyFile)]);

  if (certPem !== undefined && keyPem !== undefined) {
    const loaded = loadCertificatePair({ certPem, keyPem }, { certFile, keyFile });
    if (loaded.notAfter.getTime() <= Date.now()) {
      throw new CertificateError(
        'CertificateExpired',
        `${certFile} expired on ${loaded.notAfter.toISOString()}; replace ${certFile} and ${keyFile}, or remove both to have a new pair generated`,
        files,
      );
    }
    return { ...loaded, certFile, keyFile, generated: false, missingHosts: uncovered(certPem, hosts) };
  }

  if (certPem !== undefined || keyPem !== undefined) {
    const [present, missing] = certPem !== undefined ? [certFile, keyFile] : [keyFile, certFile];
    throw new CertificateError(
      'CertificateFilesIncomplete',
      `${present} exists but ${missing} does not; refusing to generate over it: supply ${missing}, or remove ${present} to have a new pair generated`,
      files,
    );
  }

  const pair = await generateSelfSigned({ hosts, validityDays: opts.validityDays });
  const loaded = loadCertificatePair(pair);
  const created = await mkdir(stateDir, { recursive: true, mode: 0o700 });
  if (created !== undefined) await chmod(stateDir, 0o700);
  await writeFileAtomic(keyFile, pair.keyPem);
  await writeFileAtomic(certFile, pair.certPem);
  await syncDir(stateDir);
  return { ...loaded, certFile, keyFile, generated: true, missingHosts: [] };
}
