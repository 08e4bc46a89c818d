/**
 * Why a certificate/key pair was refused. Stable strings: callers match on `reason`, never on the
 * message. Messages name the files involved and never contain key material.
 */
export type CertificateErrorReason =
  | 'CertificateUnreadable'
  | 'CertificateFilesIncomplete'
  | 'InvalidCertificate'
  | 'InvalidPrivateKey'
  | 'KeyMismatch'
  | 'CertificateUnusable'
  | 'CertificateExpired';

/** A certificate or key could not be read, parsed, matched or used. */
export class CertificateError extends Error {
  readonly reason: CertificateErrorReason;
  /** The files concerned, when the pair came from files. */
  readonly files: readonly string[];

  constructor(reason: CertificateErrorReason, message: string, files: readonly string[] = [], options?: ErrorOptions) {
    super(message, options);
    this.name = 'CertificateError';
    this.reason = reason;
    this.files = files;
  }
}

export function isCertificateError(err: unknown): err is CertificateError {
  return err instanceof CertificateError;
}
