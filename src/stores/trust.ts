/** TLS trust towards stores: system roots + an install-time bundle + the location's own bundle. */
import { X509Certificate } from 'node:crypto';
import { createSecureContext, rootCertificates } from 'node:tls';
import type { SecureContext } from 'node:tls';
import { InvalidLocationError } from './errors.ts';
import type { TrustOptions } from './adapter.ts';

const PEM_BLOCK = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g;

/** Splits a PEM bundle into certificates, checking each parses; errors name the source, not the content. */
export function splitPemBundle(pem: string, source: string): string[] {
  const blocks = pem.match(PEM_BLOCK) ?? [];
  if (blocks.length === 0) throw new InvalidLocationError(`${source}: no PEM certificate found in the CA bundle`);
  blocks.forEach((block, i) => {
    try {
      new X509Certificate(block);
    } catch {
      throw new InvalidLocationError(`${source}: certificate ${i + 1} of the CA bundle does not parse`);
    }
  });
  return blocks;
}

/**
 * Go's strconv.ParseBool, which the Velero plugins use for their boolean keys: 1, t, T, TRUE, true,
 * True and their false counterparts; anything else is a configuration error naming the key.
 */
export function parseBool(value: string, key: string, location: string): boolean {
  if (['1', 't', 'T', 'TRUE', 'true', 'True'].includes(value)) return true;
  if (['0', 'f', 'F', 'FALSE', 'false', 'False'].includes(value)) return false;
  throw new InvalidLocationError(`location ${location}: config ${key} must be true or false`);
}

/**
 * The trust for one location. `insecureSkipTLSVerify: "true"` in the location's config turns
 * verification off for that location only; a value that is not a boolean is refused, for every provider.
 */
export function trustFor(
  locationName: string,
  config: Record<string, string>,
  locationBundle: string | undefined,
  installBundle: string | undefined,
): TrustOptions {
  const setting = config.insecureSkipTLSVerify?.trim();
  const insecure = setting === undefined || setting === '' ? false : parseBool(setting, 'insecureSkipTLSVerify', locationName);
  const extra = [
    ...(installBundle ? splitPemBundle(installBundle, 'install-time CA bundle') : []),
    ...(locationBundle ? splitPemBundle(locationBundle, `location ${locationName}`) : []),
  ];
  const ca = extra.length === 0 ? undefined : [...rootCertificates, ...extra];
  return {
    ca,
    secureContext: ca === undefined ? undefined : createSecureContext({ ca, minVersion: MIN_STORE_TLS }),
    rejectUnauthorized: !insecure,
  };
}

/** The oldest TLS version spoken to a store. */
const MIN_STORE_TLS = 'TLSv1.2';

/** TLS options for a location's https.Agent: its trust as a prebuilt context, TLS 1.2 or later. */
export function agentTlsOptions(trust: TrustOptions | undefined): { secureContext?: SecureContext; rejectUnauthorized: boolean; minVersion: 'TLSv1.2' } {
  return {
    ...(trust?.secureContext === undefined ? {} : { secureContext: trust.secureContext }),
    rejectUnauthorized: trust?.rejectUnauthorized ?? true,
    minVersion: MIN_STORE_TLS,
  };
}

const TLS_CODES = new Set([
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'CERT_HAS_EXPIRED',
  'CERT_NOT_YET_VALID',
  'ERR_TLS_CERT_ALTNAME_INVALID',
  'CERT_SIGNATURE_FAILURE',
  'CERT_UNTRUSTED',
]);

/** The TLS verification failure code somewhere in an error's cause chain, if any. */
export function tlsFailureCode(err: unknown): string | undefined {
  for (let e = err, depth = 0; e && typeof e === 'object' && depth < 8; e = (e as { cause?: unknown }).cause, depth++) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === 'string' && TLS_CODES.has(code)) return code;
  }
  return undefined;
}

/** The message a user sees for an untrusted store certificate: what failed and what to do. */
export function tlsFailureMessage(locationName: string, code: string): string {
  return (
    `location ${locationName}: the store's TLS certificate is not trusted (${code}); ` +
    'give the location its CA bundle (objectStorage.caCert / caCertRef, or caCertFile in a locations file) or install one with --ca-bundle'
  );
}
