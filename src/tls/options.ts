import type { ServerOptions } from 'node:https';
import type { SecureContextOptions } from 'node:tls';
import type { CertificatePair } from './types.ts';

/** The oldest protocol any listener accepts. */
export const MIN_TLS_VERSION = 'TLSv1.2';

/**
 * Options for `tls.createSecureContext` and `server.setSecureContext`. `minVersion` is repeated here
 * rather than left to Node's default, which `--tls-min-v1.0` or `tls.DEFAULT_MIN_VERSION` can lower.
 */
export function secureContextOptions(pair: CertificatePair): SecureContextOptions {
  return { cert: pair.certPem, key: pair.keyPem, minVersion: MIN_TLS_VERSION };
}

/**
 * Options for `https.createServer` (and, being a superset, for `server.setSecureContext`): every
 * listener is built from this, so all accept the same protocols.
 */
export function tlsServerOptions(pair: CertificatePair): ServerOptions {
  return { ...secureContextOptions(pair) };
}
