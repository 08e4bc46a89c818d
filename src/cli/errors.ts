/**
 * Exit codes of `velero-download` and the error type that carries one, plus the classification of
 * network failures that decides whether another URL is worth trying.
 */

/** Process exit codes: scripts branch on these, so they never change meaning. */
export const EXIT = {
  ok: 0,
  /** The backup, restore or artifact does not exist (and any failure without a better code). */
  notFound: 1,
  /** The command line (or the local situation it meets, e.g. an existing output file) is wrong. */
  usage: 2,
  /** Kubernetes or the download server refused the caller: no valid credentials, or no permission. */
  denied: 3,
  /** Nothing answered in time: API server, Velero, the store, or the download server; or TLS trust failed. */
  unreachable: 4,
  /** Stopped by SIGINT / SIGTERM (128 + signal number, as shells report it). */
  interrupted: 130,
} as const;

export type ExitCode = (typeof EXIT)[keyof typeof EXIT] | 143;

/** An error the command reports as one line on stderr and turns into its exit code. */
export class CliError extends Error {
  readonly exitCode: number;
  constructor(exitCode: number, message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = 'CliError';
    this.exitCode = exitCode;
  }
}

/** A wrong command line: exit 2, and the message says how to write it. */
export class UsageError extends CliError {
  constructor(message: string) {
    super(EXIT.usage, message);
    this.name = 'UsageError';
  }
}

/** The server's certificate matched neither the trusted CAs nor a pinned fingerprint. */
export class UntrustedCertificateError extends Error {
  readonly code = 'ERR_VDS_UNTRUSTED_CERTIFICATE';
  /** SHA-256 of the presented leaf certificate (lower-case hex), to show the user what to pin after checking. */
  readonly fingerprint: string;
  /** OpenSSL's or Node's reason (e.g. DEPTH_ZERO_SELF_SIGNED_CERT), or "fingerprint mismatch". */
  readonly reason: string;
  constructor(host: string, reason: string, fingerprint: string) {
    super(`the certificate of ${host} is not trusted (${reason})`);
    this.name = 'UntrustedCertificateError';
    this.reason = reason;
    this.fingerprint = fingerprint;
  }
}

/** Connecting, or waiting for the response headers, took too long. */
export class TimeoutError extends Error {
  readonly code = 'ETIMEDOUT';
  constructor(message: string) {
    super(message);
    this.name = 'TimeoutError';
  }
}

/** How a request failed below HTTP: the kinds a fallback to another URL is allowed for. */
export type NetworkFailure = 'dns' | 'connect' | 'tls' | 'timeout' | 'reset';

const DNS = new Set(['ENOTFOUND', 'EAI_AGAIN', 'EAI_FAIL', 'EAI_NODATA', 'EAI_NONAME']);
const CONNECT = new Set(['ECONNREFUSED', 'EHOSTUNREACH', 'ENETUNREACH', 'EADDRNOTAVAIL', 'EHOSTDOWN', 'ENETDOWN']);
const RESET = new Set(['ECONNRESET', 'EPIPE', 'ECONNABORTED', 'ERR_STREAM_PREMATURE_CLOSE', 'HPE_INVALID_CONSTANT', 'UND_ERR_SOCKET']);
// OpenSSL verification results Node reports as `code` when rejecting a certificate.
const CERT_CODES = new Set([
  'DEPTH_ZERO_SELF_SIGNED_CERT', 'SELF_SIGNED_CERT_IN_CHAIN', 'UNABLE_TO_VERIFY_LEAF_SIGNATURE', 'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY', 'CERT_HAS_EXPIRED', 'CERT_NOT_YET_VALID', 'CERT_UNTRUSTED', 'CERT_REJECTED',
  'CERT_SIGNATURE_FAILURE', 'INVALID_CA', 'HOSTNAME_MISMATCH',
]);

/** The network failure behind `err` (following `cause`), or undefined for anything else. */
export function networkFailure(err: unknown): NetworkFailure | undefined {
  for (let e: unknown = err, depth = 0; e && depth < 5; e = (e as { cause?: unknown }).cause, depth++) {
    if (e instanceof UntrustedCertificateError) return 'tls';
    if (e instanceof TimeoutError) return 'timeout';
    const code = (e as { code?: unknown }).code;
    if (typeof code !== 'string') continue;
    if (DNS.has(code)) return 'dns';
    if (CONNECT.has(code)) return 'connect';
    if (code === 'ETIMEDOUT' || code === 'UND_ERR_CONNECT_TIMEOUT') return 'timeout';
    if (RESET.has(code)) return 'reset';
    if (CERT_CODES.has(code) || code.startsWith('ERR_TLS_') || code.startsWith('ERR_SSL_')) return 'tls';
  }
  return undefined;
}

/** A short reason for a network failure, for messages: the system error code and text. */
export function describeFailure(err: unknown): string {
  const e = err as { code?: unknown; message?: unknown; cause?: unknown };
  if (e instanceof UntrustedCertificateError) return e.message;
  if (e?.cause && (e.message === 'fetch failed' || typeof e.code !== 'string')) {
    const inner = describeFailure(e.cause);
    if (inner) return inner;
  }
  return typeof e?.message === 'string' ? e.message : String(err);
}
