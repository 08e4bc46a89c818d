/** A serving certificate (PEM, leaf first, optionally followed by its chain) and its private key (PEM). */
export interface CertificatePair {
  certPem: string;
  keyPem: string;
}

/** A pair that has been checked to be usable: the certificate parses and the key belongs to it. */
export interface LoadedCertificate extends CertificatePair {
  /** SHA-256 of the leaf certificate's DER, lower-case hex without colons (Kopia's pinning format). */
  fingerprint: string;
  /** End of the leaf certificate's validity. */
  notAfter: Date;
}
