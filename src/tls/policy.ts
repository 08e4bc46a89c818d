/**
 * The serving certificate's policy as pure functions: which names a generated certificate covers,
 * whose Secret is the gateway's to renew, when a certificate is due, and what a renewal keeps (the CA,
 * the names, the older CAs clients may still trust). secret.ts persists what these decide.
 */
import { X509Certificate, createPrivateKey } from 'node:crypto';
import { isIP } from 'node:net';
import { MANAGED_BY, MANAGED_BY_LABEL } from '../kube/owned.ts';
import { DEFAULT_SERVICE_NAME } from '../util/names.ts';
import { normalizeHosts } from './generate.ts';
import { loadCertificatePair } from './pair.ts';
import type { CertificatePair } from './types.ts';

// The gateway's label on a certificate Secret means it generated the certificate and may renew it.
export { MANAGED_BY, MANAGED_BY_LABEL };
/** How far into its lifetime a gateway certificate is renewed. */
export const RENEW_FRACTION = 2 / 3;

const DAY_MS = 24 * 60 * 60 * 1000;
// cert-manager may keep labels it finds on a Secret it takes over; its annotation says who issues now.
const CERT_MANAGER_ANNOTATION = 'cert-manager.io/certificate-name';

/** Where a generated certificate is reached: the Service, the FQDN, more names. */
export interface HostOptions {
  /** The gateway's namespace, where its Service lives. */
  namespace: string;
  /** The Service whose DNS names a generated certificate covers; default {@link DEFAULT_SERVICE_NAME}. */
  serviceName?: string;
  /** The name users reach the gateway at (Ingress, DNS); a URL or host:port is reduced to its host. */
  fqdn?: string;
  /** More DNS names or IP addresses for a generated certificate. */
  extraSans?: readonly string[];
  /** Default `cluster.local`. */
  clusterDomain?: string;
}

/** The DNS names of a Service inside the cluster: `svc`, `svc.ns`, `svc.ns.svc`, `svc.ns.svc.<domain>`. */
export function serviceDnsNames(serviceName: string, namespace: string, clusterDomain = 'cluster.local'): string[] {
  return [serviceName, `${serviceName}.${namespace}`, `${serviceName}.${namespace}.svc`, `${serviceName}.${namespace}.svc.${clusterDomain}`];
}

/** The host of an `--fqdn` given as a name, `name:port` or a URL. */
export function fqdnHost(fqdn: string): string {
  const raw = fqdn.trim();
  if (isIP(raw) !== 0) return raw;
  try {
    return new URL(raw.includes('://') ? raw : `https://${raw}`).hostname;
  } catch {
    return raw; // normalizeHosts reports it
  }
}

/** The SANs a generated certificate gets: the Service's DNS names, the FQDN, the extra SANs (normalized). */
export function generatedCertificateHosts(opts: HostOptions): [string, ...string[]] {
  return normalizeHosts([
    ...serviceDnsNames(opts.serviceName ?? DEFAULT_SERVICE_NAME, opts.namespace, opts.clusterDomain),
    ...(opts.fqdn ? [fqdnHost(opts.fqdn)] : []),
    ...(opts.extraSans ?? []),
  ]);
}

/** True when the Secret is the gateway's own: it generated it and may renew and rewrite it. */
export function isManagedSecret(secret: { metadata?: { labels?: Record<string, string>; annotations?: Record<string, string> } }): boolean {
  const meta = secret.metadata;
  return meta?.labels?.[MANAGED_BY_LABEL] === MANAGED_BY && meta.annotations?.[CERT_MANAGER_ANNOTATION] === undefined;
}

/** When a certificate is due for renewal: two thirds of the way from notBefore to notAfter. */
export function renewalTime(cert: X509Certificate): Date {
  const from = cert.validFromDate.getTime();
  const to = cert.validToDate.getTime();
  return new Date(from + (to - from) * RENEW_FRACTION);
}

/** How soon a failed renewal is tried again (a certificate already due). */
export const RENEWAL_RETRY_MS = 60_000;

/**
 * When to look at the Secret next: every `checkIntervalMs`, and for the gateway's own certificate no
 * later than just after it falls due; one already due (its renewal just failed) is retried after
 * {@link RENEWAL_RETRY_MS}, not in a tight loop.
 */
export function nextCheckMs(cert: X509Certificate | undefined, now: Date, checkIntervalMs: number): number {
  if (cert === undefined) return checkIntervalMs;
  const due = renewalTime(cert).getTime() - now.getTime();
  return Math.min(checkIntervalMs, due > 0 ? due + 1000 : RENEWAL_RETRY_MS);
}

/** The certificates of a PEM bundle, each as its own PEM. */
export function splitPem(bundle: string | undefined): string[] {
  return bundle?.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g)?.map((c) => `${c}\n`) ?? [];
}

function parseCert(pem: string): X509Certificate | undefined {
  try {
    return new X509Certificate(pem);
  } catch {
    return undefined;
  }
}

/** The signing CA of a gateway-generated Secret: the first certificate of ca.crt with the ca.key it belongs to. */
function signingCa(caPem: string | undefined, caKeyPem: string | undefined, now: Date): { pair: CertificatePair; cert: X509Certificate } | undefined {
  const first = splitPem(caPem)[0];
  if (first === undefined || caKeyPem === undefined) return undefined;
  const cert = parseCert(first);
  if (!cert?.ca || cert.validToDate.getTime() <= now.getTime()) return undefined;
  try {
    if (!cert.checkPrivateKey(createPrivateKey(caKeyPem))) return undefined;
  } catch {
    return undefined;
  }
  return { pair: { certPem: first, keyPem: caKeyPem }, cert };
}

function sans(cert: X509Certificate): string[] {
  return (cert.subjectAltName ?? '')
    .split(', ')
    .map((s) => (s.startsWith('DNS:') ? s.slice(4) : s.startsWith('IP Address:') ? s.slice(11) : ''))
    .filter(Boolean);
}

function covers(cert: X509Certificate, host: string): boolean {
  return isIP(host) === 0 ? cert.checkHost(host, { subject: 'never' }) !== undefined : cert.checkIP(host) !== undefined;
}

/** What a gateway-generated Secret holds, as PEM text (any of it may be missing or broken). */
export interface HeldCertificate {
  certPem?: string | undefined;
  keyPem?: string | undefined;
  /** ca.crt: the signing CA first, then older CAs clients may still trust. */
  caPem?: string | undefined;
  caKeyPem?: string | undefined;
}

/** Why a gateway-generated certificate is replaced. */
export type RenewalReason = 'expiring' | 'hosts' | 'ca' | 'unusable';

/** A renewal due now: why, with which names, and with which CA. */
export interface Renewal {
  reason: RenewalReason;
  newCa: boolean;
  hosts: [string, ...string[]];
  /** The CA to keep, when `newCa` is false. */
  ca?: CertificatePair;
  /** ca.crt as it is, for carrying still-valid older CAs over. */
  oldCaPem?: string;
}

/**
 * Whether a gateway-generated certificate needs replacing at `now`, and how: unusable (no pair, or a
 * broken one), no longer chaining to its CA, past {@link renewalTime}, or missing a wanted name (then
 * the names it had are kept too). The CA is kept while it verifies the certificate and outlives the
 * next one (`validityDays`); otherwise a new CA signs it.
 */
export function planRenewal(held: HeldCertificate, wanted: [string, ...string[]], now: Date, validityDays: number): Renewal | undefined {
  const { certPem, keyPem, caPem } = held;
  const ca = signingCa(caPem, held.caKeyPem, now);
  let leaf: X509Certificate | undefined;
  try {
    if (certPem !== undefined && keyPem !== undefined) leaf = new X509Certificate(loadCertificatePair({ certPem, keyPem }).certPem);
  } catch {
    leaf = undefined;
  }
  // A leaf that no longer chains to ca.crt would fail every client trusting ca.crt.
  const caUsable = ca !== undefined && (leaf === undefined || (leaf.checkIssued(ca.cert) && leaf.verify(ca.cert.publicKey)));
  // A kept CA must outlive the certificate it signs next.
  const caFits = ca !== undefined && ca.cert.validToDate.getTime() >= now.getTime() + validityDays * DAY_MS;
  const base = { newCa: !caUsable || !caFits, ...(caUsable && caFits && { ca: ca.pair }), ...(caPem !== undefined && { oldCaPem: caPem }) };
  if (leaf === undefined) return { reason: 'unusable', hosts: wanted, ...base };
  if (!caUsable) return { reason: 'ca', hosts: wanted, ...base };
  if (now.getTime() >= renewalTime(leaf).getTime()) return { reason: 'expiring', hosts: wanted, ...base };
  // Adding rather than replacing names: two versions of the gateway during a rollout must not take turns.
  if (wanted.some((h) => !covers(leaf, h))) return { reason: 'hosts', hosts: normalizeHosts([...wanted, ...sans(leaf)]), ...base };
  return undefined;
}

/**
 * ca.crt after a renewal signed by `signerPem`: with a new CA, the new one and the old signing CA
 * (clients that fetched ca.crt before keep only the old one; a new fetch gets both); with the same
 * CA, the bundle as it was. Expired CAs are dropped either way.
 */
export function renewedCaBundle(signerPem: string, newCa: boolean, oldCaPem: string | undefined, now: Date): string {
  const bundle = newCa ? [signerPem, ...splitPem(oldCaPem).slice(0, 1)] : splitPem(oldCaPem);
  return bundle.filter((pem) => (parseCert(pem)?.validToDate.getTime() ?? 0) > now.getTime()).join('');
}
