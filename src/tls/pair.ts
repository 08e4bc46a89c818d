import { X509Certificate, createPrivateKey } from 'node:crypto';
import type { KeyObject } from 'node:crypto';
import { createSecureContext } from 'node:tls';
import { CertificateError } from './errors.ts';
import { certificateFingerprint } from './fingerprint.ts';
import { secureContextOptions } from './options.ts';
import type { CertificatePair, LoadedCertificate } from './types.ts';

/** Where a pair came from, so errors can name the files. */
export interface PairSource {
  certFile: string;
  keyFile: string;
}

function describe(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/**
 * Checks that `pair` can serve TLS: the certificate parses, the key parses, the key belongs to the
 * certificate, and a secure context (with the listener's options) can be built from them. Expiry is
 * not checked: that is the caller's policy. Throws a CertificateError naming `source`'s files.
 */
export function loadCertificatePair(pair: CertificatePair, source?: PairSource): LoadedCertificate {
  const certName = source?.certFile ?? 'certificate';
  const keyName = source?.keyFile ?? 'private key';
  const files = source ? [source.certFile, source.keyFile] : [];

  let cert: X509Certificate;
  try {
    cert = new X509Certificate(pair.certPem);
  } catch (err) {
    throw new CertificateError('InvalidCertificate', `${certName} does not hold a PEM certificate: ${describe(err)}`, files, { cause: err });
  }
  let key: KeyObject;
  try {
    key = createPrivateKey(pair.keyPem);
  } catch (err) {
    throw new CertificateError('InvalidPrivateKey', `${keyName} does not hold an unencrypted PEM private key: ${describe(err)}`, files, { cause: err });
  }
  let matches: boolean;
  try {
    matches = cert.checkPrivateKey(key);
  } catch {
    matches = false;
  }
  if (!matches) {
    throw new CertificateError('KeyMismatch', `the private key in ${keyName} does not belong to the certificate in ${certName}`, files);
  }
  try {
    createSecureContext(secureContextOptions(pair));
  } catch (err) {
    throw new CertificateError('CertificateUnusable', `${certName} and ${keyName} cannot serve TLS: ${describe(err)}`, files, { cause: err });
  }
  return Object.freeze({
    certPem: pair.certPem,
    keyPem: pair.keyPem,
    fingerprint: certificateFingerprint(cert),
    notAfter: cert.validToDate,
  });
}
