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

/**
 * Where the listeners' certificate comes from (files, a Secret): the pair in use now, a `change`
 * event with each newly swapped-in pair (for `server.setSecureContext`), and `stop`.
 */
export interface CertificateSource {
  readonly current: LoadedCertificate;
  on(event: 'change', listener: (cert: LoadedCertificate) => void): this;
  off(event: 'change', listener: (cert: LoadedCertificate) => void): this;
  stop(): void;
}
