import { X509Certificate, createHash } from 'node:crypto';

/** A certificate as PEM (the first certificate in it counts), DER, or an already parsed one. */
export type CertificateInput = string | Buffer | X509Certificate;

function parse(cert: CertificateInput): X509Certificate {
  return cert instanceof X509Certificate ? cert : new X509Certificate(cert);
}

/**
 * SHA-256 of the certificate's DER encoding as lower-case hex without colons: the format Kopia (and
 * so Velero's repository tooling) uses to pin a server certificate. Throws when `cert` does not parse.
 */
export function certificateFingerprint(cert: CertificateInput): string {
  return createHash('sha256').update(parse(cert).raw).digest('hex');
}

/** The certificate's notAfter. Throws when `cert` does not parse. */
export function certificateNotAfter(cert: CertificateInput): Date {
  return parse(cert).validToDate;
}
