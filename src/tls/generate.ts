import { X509Certificate } from 'node:crypto';
import { isIP } from 'node:net';
import { generate } from 'selfsigned';
import type { CertificatePair } from './types.ts';

type SelfsignedOptions = NonNullable<Parameters<typeof generate>[1]>;
type Extension = NonNullable<SelfsignedOptions['extensions']>[number];
type AltName = Extract<Extension, { name: 'subjectAltName' }>['altNames'][number];

/** Validity of a generated certificate unless told otherwise. */
export const DEFAULT_VALIDITY_DAYS = 365;

// Back-date notBefore so a client whose clock runs a little behind ours still accepts a fresh certificate.
const CLOCK_SKEW_MS = 5 * 60 * 1000;
const DAY_MS = 24 * 60 * 60 * 1000;

/** What to put in a generated serving certificate. */
export interface GenerateOptions {
  /**
   * DNS names and IP addresses clients will connect to. IP addresses (IPv6 with or without brackets)
   * become IP SANs, everything else DNS SANs; the first becomes the subject CN. Duplicates are dropped.
   */
  hosts: readonly string[];
  /** Days from now until notAfter; default 365. */
  validityDays?: number;
  /** The current time; for tests and for planning rotation ahead. */
  now?: Date;
}

/**
 * Trims, lower-cases DNS names, strips brackets from IPv6 addresses and drops duplicates, keeping
 * the order. Throws on an empty list or a host that is neither an IP address nor a plausible DNS name.
 */
export function normalizeHosts(hosts: readonly string[]): [string, ...string[]] {
  const out: string[] = [];
  for (const raw of hosts) {
    let host = raw.trim();
    if (host.startsWith('[') && host.endsWith(']')) host = host.slice(1, -1);
    if (isIP(host) === 0) {
      // A trailing dot (fully qualified) is not how names appear in SANs.
      host = host.toLowerCase().replace(/\.$/, '');
      if (!/^(\*\.)?[a-z0-9_]([a-z0-9_.-]*[a-z0-9_])?$/.test(host) || host.length > 253 || host.includes('..')) {
        throw new Error(`invalid certificate host ${JSON.stringify(raw)}: not an IP address or DNS name`);
      }
    }
    if (!out.includes(host)) out.push(host);
  }
  const [first, ...rest] = out;
  if (first === undefined) throw new Error('a certificate needs at least one host');
  return [first, ...rest];
}

function subjectAltNames(hosts: readonly string[]): AltName[] {
  return hosts.map((h) => (isIP(h) === 0 ? { type: 2, value: h } : { type: 7, ip: h }));
}

// The serving profile.
function servingExtensions(hosts: readonly string[]): Extension[] {
  return [
    { name: 'basicConstraints', cA: false, critical: true },
    { name: 'keyUsage', digitalSignature: true, critical: true },
    { name: 'extKeyUsage', serverAuth: true },
    { name: 'subjectAltName', altNames: subjectAltNames(hosts) },
  ];
}

// The CA profile: signs serving certificates only (pathLen 0), never serves itself.
function caExtensions(): Extension[] {
  return [
    { name: 'basicConstraints', cA: true, pathLenConstraint: 0, critical: true },
    { name: 'keyUsage', keyCertSign: true, cRLSign: true, digitalSignature: true, critical: true },
  ];
}

interface IssueRequest {
  commonName: string;
  extensions: Extension[];
  notBefore: Date;
  notAfter: Date;
  /** Signs with this CA instead of self-signing. */
  signer?: CertificatePair;
}

function withFinalNewline(pem: string): string {
  return pem.endsWith('\n') ? pem : `${pem}\n`;
}

// The only call into selfsigned: a CA, or a serving certificate signed by one, is another IssueRequest.
async function issue(req: IssueRequest): Promise<CertificatePair> {
  const result = await generate([{ name: 'commonName', value: req.commonName }], {
    keyType: 'ec',
    curve: 'P-256',
    algorithm: 'sha256',
    notBeforeDate: req.notBefore,
    notAfterDate: req.notAfter,
    extensions: req.extensions,
    ...(req.signer ? { ca: { cert: req.signer.certPem, key: req.signer.keyPem } } : {}),
  });
  // selfsigned ends the certificate PEM without a newline, which breaks concatenation into a chain.
  return { certPem: withFinalNewline(result.cert), keyPem: withFinalNewline(result.private) };
}

function validity(opts: { validityDays?: number; now?: Date }): { notBefore: Date; notAfter: Date } {
  const days = opts.validityDays ?? DEFAULT_VALIDITY_DAYS;
  if (!Number.isFinite(days) || days <= 0) throw new Error(`validityDays must be a positive number, got ${days}`);
  const now = (opts.now ?? new Date()).getTime();
  return { notBefore: new Date(now - CLOCK_SKEW_MS), notAfter: new Date(now + days * DAY_MS) };
}

/**
 * A self-signed ECDSA P-256 / SHA-256 serving certificate for `hosts` (SANs; the first is also the
 * CN), with extKeyUsage serverAuth, valid from a few minutes ago for `validityDays` (default 365).
 * The key is unencrypted PKCS#8 PEM.
 */
export async function generateSelfSigned(opts: GenerateOptions): Promise<CertificatePair> {
  const hosts = normalizeHosts(opts.hosts);
  return issue({ commonName: hosts[0], extensions: servingExtensions(hosts), ...validity(opts) });
}

/** What to put in a generated certificate authority. */
export interface CaOptions {
  /**
   * Subject CN. Give every CA its own: OpenSSL finds trust anchors by subject name, so two CAs with
   * one name in a bundle can make verification pick the wrong one.
   */
  commonName: string;
  /** Days from now until notAfter; default 365. */
  validityDays?: number;
  /** The current time; for tests and for planning rotation ahead. */
  now?: Date;
}

/**
 * A self-signed ECDSA P-256 / SHA-256 certificate authority (basicConstraints cA, pathLen 0;
 * keyCertSign, cRLSign) for signing serving certificates with {@link generateCaSigned}.
 */
export async function generateCa(opts: CaOptions): Promise<CertificatePair> {
  const commonName = opts.commonName.trim();
  if (!commonName) throw new Error('a CA needs a common name');
  return issue({ commonName, extensions: caExtensions(), ...validity(opts) });
}

/** What to put in a serving certificate signed by a CA. */
export interface CaSignedOptions extends GenerateOptions {
  /** The signing CA: its certificate (the first in the PEM) and its private key. */
  ca: CertificatePair;
}

/**
 * An ECDSA P-256 / SHA-256 serving certificate for `hosts`, like {@link generateSelfSigned} but
 * signed by `ca`. Its notAfter never passes the CA's: a chain is only valid while every link is.
 */
export async function generateCaSigned(opts: CaSignedOptions): Promise<CertificatePair> {
  const hosts = normalizeHosts(opts.hosts);
  const { notBefore, notAfter } = validity(opts);
  const caNotAfter = new X509Certificate(opts.ca.certPem).validToDate;
  return issue({
    commonName: hosts[0],
    extensions: servingExtensions(hosts),
    notBefore,
    notAfter: notAfter.getTime() > caNotAfter.getTime() ? caNotAfter : notAfter,
    signer: opts.ca,
  });
}
