/**
 * The serving certificate of kubernetes mode, kept in a `kubernetes.io/tls` Secret that every replica
 * shares: generated (a CA and a serving certificate it signs) when the Secret is missing, renewed at
 * two thirds of its lifetime when the gateway generated it, used as is when someone else wrote it, and
 * followed through a watch so every replica swaps in a changed certificate within seconds.
 */
import { X509Certificate, createPrivateKey, randomBytes } from 'node:crypto';
import { isIP } from 'node:net';
import { Watch } from '@kubernetes/client-node';
import type { V1Secret } from '@kubernetes/client-node';
import type { KubeClients } from '../kube/client.ts';
import { OwnedObject } from '../kube/owned.ts';
import { CertificateError, isCertificateError } from './errors.ts';
import { DEFAULT_VALIDITY_DAYS, generateCa, generateCaSigned, normalizeHosts } from './generate.ts';
import { loadCertificatePair } from './pair.ts';
import type { CertificatePair, CertificateSource, LoadedCertificate } from './types.ts';
import { DEFAULT_SERVICE_NAME } from '../util/names.ts';

/** The Secret's name unless `--tls-secret` says otherwise. */
export const DEFAULT_TLS_SECRET = 'velero-download-server-certs';
/** Label (value {@link MANAGED_BY}) marking a Secret the gateway generated and may renew. */
export const MANAGED_BY_LABEL = 'app.kubernetes.io/managed-by';
export const MANAGED_BY = 'velero-download-server';
/** Annotation with the SHA-256 fingerprint (lower-case hex of the DER) of the Secret's tls.crt. */
export const FINGERPRINT_ANNOTATION = 'download-server.velero.io/tls-fingerprint';
/** The Secret's keys: the kubernetes.io/tls pair, the CA bundle clients trust, and the CA's key. */
export const SECRET_KEYS = { cert: 'tls.crt', key: 'tls.key', ca: 'ca.crt', caKey: 'ca.key' } as const;
/** How often the Secret is checked for renewal unless told otherwise. */
export const DEFAULT_CHECK_INTERVAL_MS = 60 * 60 * 1000;

const SECRET_TYPE = 'kubernetes.io/tls';
const DAY_MS = 24 * 60 * 60 * 1000;
const RENEW_FRACTION = 2 / 3;
// Below this, the few minutes a generated certificate is back-dated would make it due at once.
const MIN_VALIDITY_DAYS = 1 / 24;
const DEFAULT_RECREATE_DELAY_MS = 30_000;
const RETRY_MS = 60_000;
const WATCH_BACKOFF_MIN_MS = 250;
const WATCH_BACKOFF_MAX_MS = 30_000;
// cert-manager may keep labels it finds on a Secret it takes over; its annotation says who issues now.
const CERT_MANAGER_ANNOTATION = 'cert-manager.io/certificate-name';

/** Options for {@link SecretCertificateSource.start}. */
export interface SecretCertificateOptions {
  /** The gateway's namespace, where the Secret lives. */
  namespace: string;
  /** Default {@link DEFAULT_TLS_SECRET}. */
  secretName?: string;
  /** The Service whose DNS names a generated certificate covers; default {@link DEFAULT_SERVICE_NAME}. */
  serviceName?: string;
  /** The name users reach the gateway at (Ingress, DNS); a URL or host:port is reduced to its host. */
  fqdn?: string;
  /** More DNS names or IP addresses for a generated certificate. */
  extraSans?: readonly string[];
  /** Default `cluster.local`. */
  clusterDomain?: string;
  /** Validity of a generated serving certificate in days; default 365, at least one hour. */
  validityDays?: number;
  /** Validity of a generated CA in days; default ten times `validityDays`. */
  caValidityDays?: number;
  /** How often the Secret is re-read and a due renewal done; default one hour. Renewal is also timed to its due moment. */
  checkIntervalMs?: number;
  /** After the Secret is deleted, how long to wait (for another issuer) before creating a new one; default 30 s. */
  recreateDelayMs?: number;
  /** The clock renewal decisions and new certificates use; for tests. */
  now?: () => Date;
  /** A refused Secret or a failed API call after start (the current certificate stays); default `console.warn`. */
  onError?: (err: Error) => void;
  /** What happened to the certificate, for the log. */
  onEvent?: (event: SecretCertificateEvent) => void;
}

/** Why a gateway-generated certificate was replaced. */
export type RenewalReason = 'expiring' | 'hosts' | 'ca' | 'unusable';

/** One thing that happened to the Secret or the certificate in use; never carries key material. */
export interface SecretCertificateEvent {
  /**
   * `created`: generated and created the Secret; `loaded`: used the Secret found at start (or the one a
   * concurrent replica created first); `renewed`: replaced a gateway-generated certificate;
   * `annotated`: fixed the fingerprint annotation of a gateway-generated Secret; `changed`: picked up a
   * certificate written elsewhere (another replica, cert-manager, a person); `deleted`: the Secret
   * disappeared (the current certificate stays; a new Secret is created after `recreateDelayMs`).
   */
  action: 'created' | 'loaded' | 'renewed' | 'annotated' | 'changed' | 'deleted';
  /** `namespace/name`. */
  secret: string;
  /** Fingerprint of the certificate now in use. */
  fingerprint: string;
  notAfter: Date;
  /** Whether the Secret is the gateway's own (renewed by it) rather than someone else's. */
  managed: boolean;
  /** For `renewed`. */
  reason?: RenewalReason;
  /** For `created` and `renewed`: a new CA was generated too. */
  newCa?: boolean;
}

interface Settings {
  namespace: string;
  secretName: string;
  hosts: [string, ...string[]];
  validityDays: number;
  caValidityDays: number;
  checkIntervalMs: number;
  recreateDelayMs: number;
  now: () => Date;
  onError: (err: Error) => void;
  onEvent: (event: SecretCertificateEvent) => void;
}

/** What is in use: the pair, the CA bundle, and where it came from. */
interface State {
  loaded: LoadedCertificate;
  caPem: string | undefined;
  managed: boolean;
  resourceVersion: string | undefined;
  uid: string | undefined;
}

/**
 * What clients must trust, as the Secret in use says: its ca.crt and the fingerprint of the
 * certificate served, with the Secret's identity and version (so a publisher can tell an older view
 * from a newer one). Never key material.
 */
export interface TrustAnchor {
  /** The Secret's ca.crt (PEM bundle; during a CA rotation the new and the old CA); undefined when it has none. */
  caPem: string | undefined;
  /** SHA-256 fingerprint of the certificate in use. */
  fingerprint: string;
  /** `namespace/name` of the Secret. */
  secret: string;
  uid: string | undefined;
  resourceVersion: string | undefined;
}

/** Something that says what clients must trust and when that changes: the Secret source, or a test's stand-in. */
export interface TrustSource {
  readonly trust: TrustAnchor;
  on(event: 'trust', listener: (trust: TrustAnchor) => void): this;
  off(event: 'trust', listener: (trust: TrustAnchor) => void): this;
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
export function generatedCertificateHosts(opts: Pick<SecretCertificateOptions, 'namespace' | 'serviceName' | 'fqdn' | 'extraSans' | 'clusterDomain'>): [string, ...string[]] {
  return normalizeHosts([
    ...serviceDnsNames(opts.serviceName ?? DEFAULT_SERVICE_NAME, opts.namespace, opts.clusterDomain),
    ...(opts.fqdn ? [fqdnHost(opts.fqdn)] : []),
    ...(opts.extraSans ?? []),
  ]);
}

/** True when the Secret is the gateway's own: it generated it and may renew and rewrite it. */
export function isManagedSecret(secret: V1Secret): boolean {
  const meta = secret.metadata;
  return meta?.labels?.[MANAGED_BY_LABEL] === MANAGED_BY && meta.annotations?.[CERT_MANAGER_ANNOTATION] === undefined;
}

/** When a certificate is due for renewal: two thirds of the way from notBefore to notAfter. */
export function renewalTime(cert: X509Certificate): Date {
  const from = cert.validFromDate.getTime();
  const to = cert.validToDate.getTime();
  return new Date(from + (to - from) * RENEW_FRACTION);
}

function splitPem(bundle: string | undefined): string[] {
  return bundle?.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g)?.map((c) => `${c}\n`) ?? [];
}

function parseCert(pem: string): X509Certificate | undefined {
  try {
    return new X509Certificate(pem);
  } catch {
    return undefined;
  }
}

function decode(data: Record<string, string> | undefined, key: string): string | undefined {
  const b64 = data?.[key];
  return b64 === undefined ? undefined : Buffer.from(b64, 'base64').toString('utf8');
}

function encode(text: string): string {
  return Buffer.from(text, 'utf8').toString('base64');
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

interface Renewal {
  reason: RenewalReason;
  newCa: boolean;
  hosts: [string, ...string[]];
  /** The CA to keep, when `newCa` is false. */
  ca?: CertificatePair;
  /** ca.crt as it is, for carrying still-valid older CAs over. */
  oldCaPem?: string;
}

/** Whether a gateway-generated Secret needs a new certificate now, and with which CA and hosts. */
function planRenewal(secret: V1Secret, wanted: [string, ...string[]], now: Date, validityDays: number): Renewal | undefined {
  const certPem = decode(secret.data, SECRET_KEYS.cert);
  const keyPem = decode(secret.data, SECRET_KEYS.key);
  const caPem = decode(secret.data, SECRET_KEYS.ca);
  const ca = signingCa(caPem, decode(secret.data, SECRET_KEYS.caKey), now);
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

function isOlder(rv: string | undefined, than: string | undefined): boolean {
  // resourceVersions are opaque, but etcd's are integers; comparing them only guards against a stale event.
  if (rv === undefined || than === undefined || !/^\d+$/.test(rv) || !/^\d+$/.test(than)) return false;
  return BigInt(rv) < BigInt(than);
}

/**
 * The serving certificate of kubernetes mode, from the Secret `secretName` in `namespace`.
 *
 * - Missing at start: a CA and a serving certificate it signs (EC P-256, SANs from
 *   {@link generatedCertificateHosts}) are generated and the Secret is created, labelled
 *   {@link MANAGED_BY_LABEL}, with the {@link FINGERPRINT_ANNOTATION}. Create-if-absent through
 *   kube's {@link OwnedObject}: a replica that loses the race (409) reads and uses the winner's Secret.
 * - The gateway's own (the label): its certificate is renewed when two thirds of its lifetime have
 *   passed, when it no longer chains to the CA, or when a wanted SAN is missing; the CA is kept while
 *   it outlives the new certificate, otherwise a new CA signs it and ca.crt carries the old CA too until
 *   it expires. Writes are updates on the read resourceVersion; on a conflict the winner's is used.
 * - Someone else's (no label, or cert-manager's annotation): used as is and never written to, not even
 *   the fingerprint annotation.
 *
 * A watch on the one Secret delivers changes to every replica; a valid new pair becomes
 * {@link current} and the `change` listeners get it, a broken one goes to `onError` and the current
 * certificate stays. Call {@link stop} to end the watch and the timers.
 */
export class SecretCertificateSource implements CertificateSource, TrustSource {
  readonly namespace: string;
  readonly secretName: string;
  /** The SANs a certificate generated now gets. */
  readonly hosts: readonly string[];
  readonly #kube: KubeClients;
  readonly #s: Settings;
  readonly #secret: OwnedObject<'Secret'>;
  #state: State | undefined;
  #listeners = new Set<(cert: LoadedCertificate) => void>();
  #trustListeners = new Set<(trust: TrustAnchor) => void>();
  /** The trust last announced to the `trust` listeners. */
  #trusted: TrustAnchor | undefined;
  #queue: Promise<unknown> = Promise.resolve();
  #lifetime = new AbortController();
  #checkTimer: NodeJS.Timeout | undefined;
  #watchTimer: NodeJS.Timeout | undefined;
  #watch: AbortController | undefined;
  #watchRv: string | undefined;
  #watchBackoffMs = WATCH_BACKOFF_MIN_MS;

  private constructor(kube: KubeClients, s: Settings) {
    this.#kube = kube;
    this.#s = s;
    this.#secret = new OwnedObject(kube, { kind: 'Secret', namespace: s.namespace, name: s.secretName, signal: this.#lifetime.signal });
    this.namespace = s.namespace;
    this.secretName = s.secretName;
    this.hosts = s.hosts;
  }

  /**
   * Reads (or creates, or renews) the Secret and starts watching it. Rejects when no usable
   * certificate comes of it (API unreachable or forbidden, someone else's Secret broken): a server
   * must not start without one.
   */
  static async start(kube: KubeClients, opts: SecretCertificateOptions): Promise<SecretCertificateSource> {
    const validityDays = opts.validityDays ?? DEFAULT_VALIDITY_DAYS;
    if (!(validityDays >= MIN_VALIDITY_DAYS)) throw new RangeError(`the serving certificate's validity must be at least one hour, got ${validityDays} days`);
    const caValidityDays = opts.caValidityDays ?? validityDays * 10;
    if (!(caValidityDays >= validityDays)) throw new RangeError(`the CA's validity (${caValidityDays} days) must be at least the certificate's (${validityDays} days)`);
    const source = new SecretCertificateSource(kube, {
      namespace: opts.namespace,
      secretName: opts.secretName ?? DEFAULT_TLS_SECRET,
      hosts: generatedCertificateHosts(opts),
      validityDays,
      caValidityDays,
      checkIntervalMs: opts.checkIntervalMs ?? DEFAULT_CHECK_INTERVAL_MS,
      recreateDelayMs: opts.recreateDelayMs ?? DEFAULT_RECREATE_DELAY_MS,
      now: opts.now ?? (() => new Date()),
      onError: opts.onError ?? ((err) => console.warn(err.message)),
      onEvent: opts.onEvent ?? (() => {}),
    });
    try {
      await source.#reconcile(true);
    } catch (err) {
      source.stop();
      throw err;
    }
    source.#scheduleCheck();
    source.#startWatch();
    return source;
  }

  /** The pair in use: PEMs, fingerprint and notAfter. */
  get current(): LoadedCertificate {
    return this.#state!.loaded;
  }

  /** The Secret's ca.crt (PEM bundle) for clients to trust; undefined when the Secret has none. */
  get caPem(): string | undefined {
    return this.#state!.caPem;
  }

  /** True when the Secret in use is the gateway's own (it renews it); false for someone else's. */
  get managed(): boolean {
    return this.#state!.managed;
  }

  /** `namespace/name` of the Secret. */
  get secretRef(): string {
    return `${this.namespace}/${this.secretName}`;
  }

  /** What clients must trust now: ca.crt and the fingerprint of the certificate in use. */
  get trust(): TrustAnchor {
    const s = this.#state!;
    return { caPem: s.caPem, fingerprint: s.loaded.fingerprint, secret: this.secretRef, uid: s.uid, resourceVersion: s.resourceVersion };
  }

  /**
   * `change`: called with each newly swapped-in pair. `trust`: called whenever {@link trust} changes
   * in substance (ca.crt, the certificate, or the Secret itself): created, loaded, renewed or changed.
   */
  on(event: 'change', listener: (cert: LoadedCertificate) => void): this;
  on(event: 'trust', listener: (trust: TrustAnchor) => void): this;
  on(event: 'change' | 'trust', listener: ((cert: LoadedCertificate) => void) | ((trust: TrustAnchor) => void)): this {
    if (event === 'change') this.#listeners.add(listener as (cert: LoadedCertificate) => void);
    if (event === 'trust') this.#trustListeners.add(listener as (trust: TrustAnchor) => void);
    return this;
  }

  /** Removes a listener added with {@link on}. */
  off(event: 'change', listener: (cert: LoadedCertificate) => void): this;
  off(event: 'trust', listener: (trust: TrustAnchor) => void): this;
  off(event: 'change' | 'trust', listener: ((cert: LoadedCertificate) => void) | ((trust: TrustAnchor) => void)): this {
    if (event === 'change') this.#listeners.delete(listener as (cert: LoadedCertificate) => void);
    if (event === 'trust') this.#trustListeners.delete(listener as (trust: TrustAnchor) => void);
    return this;
  }

  /**
   * Re-reads the Secret now, as the periodic check does: creates it when missing, renews a due
   * gateway-generated certificate, swaps in a changed one. Resolves true when the certificate in use
   * changed; never rejects (failures go to `onError`).
   */
  check(): Promise<boolean> {
    return this.#enqueue(async () => {
      try {
        return await this.#reconcile(false);
      } catch (err) {
        if (!this.#stopped) this.#report(err);
        return false;
      } finally {
        this.#scheduleCheck();
      }
    });
  }

  /** Ends the watch and the timers; later changes are ignored and the process is free to exit. */
  stop(): void {
    if (this.#stopped) return;
    this.#lifetime.abort();
    clearTimeout(this.#checkTimer);
    clearTimeout(this.#watchTimer);
    this.#watch?.abort();
    this.#watch = undefined;
  }

  get #stopped(): boolean {
    return this.#lifetime.signal.aborted;
  }

  // Reconciles and watch events run one after another, so a renewal and an event cannot interleave a swap.
  #enqueue<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.#queue.then(fn, fn);
    this.#queue = run.catch(() => {});
    return run;
  }

  // --- reading and writing the Secret ---------------------------------------------------------

  async #reconcile(starting: boolean): Promise<boolean> {
    if (this.#stopped) return false;
    let secret = await this.#read();
    if (secret === undefined) {
      const { secret: s, created, newCa } = await this.#create();
      return this.#apply(s, created ? 'created' : starting ? 'loaded' : 'changed', { newCa });
    }
    if (!isManagedSecret(secret)) return this.#apply(secret, starting ? 'loaded' : 'changed');

    const plan = planRenewal(secret, this.#s.hosts, this.#s.now(), this.#s.validityDays);
    try {
      if (plan !== undefined) {
        const { secret: s, won } = await this.#renew(secret, plan);
        if (won) return this.#apply(s, 'renewed', { reason: plan.reason, newCa: plan.newCa });
        secret = s;
      } else {
        const { fingerprint } = this.#load(secret);
        if (secret.metadata?.annotations?.[FINGERPRINT_ANNOTATION] !== fingerprint) {
          const { secret: s, won } = await this.#replace(secret, {}, { [FINGERPRINT_ANNOTATION]: fingerprint });
          const changed = this.#apply(s, starting ? 'loaded' : 'changed');
          if (won) this.#event('annotated', {});
          return changed;
        }
      }
    } catch (err) {
      // A write that fails (RBAC, API trouble) must not stop a gateway whose certificate still serves;
      // the next check tries again.
      if (plan?.reason === 'unusable' || this.#stopped) throw err;
      this.#report(err);
    }
    return this.#apply(secret, starting ? 'loaded' : 'changed');
  }

  #read(): Promise<V1Secret | undefined> {
    return this.#secret.read();
  }

  async #issue(hosts: [string, ...string[]], ca: CertificatePair | undefined, oldCaPem: string | undefined): Promise<{ data: Record<string, string>; fingerprint: string }> {
    const now = this.#s.now();
    let signer = ca;
    let bundle: string[];
    if (signer === undefined) {
      const commonName = `${MANAGED_BY} CA ${now.toISOString().slice(0, 10)} ${randomBytes(4).toString('hex')}`;
      signer = await generateCa({ commonName, validityDays: this.#s.caValidityDays, now });
      // Clients that fetched ca.crt before this keep only the old CA; a new fetch gets both.
      bundle = [signer.certPem, ...splitPem(oldCaPem).slice(0, 1)];
    } else {
      bundle = splitPem(oldCaPem);
    }
    const stillValid = bundle.filter((pem) => (parseCert(pem)?.validToDate.getTime() ?? 0) > now.getTime());
    const leaf = await generateCaSigned({ hosts, validityDays: this.#s.validityDays, now, ca: signer });
    const fingerprint = loadCertificatePair(leaf).fingerprint;
    return {
      fingerprint,
      data: {
        [SECRET_KEYS.cert]: encode(leaf.certPem),
        [SECRET_KEYS.key]: encode(leaf.keyPem),
        [SECRET_KEYS.ca]: encode(stillValid.join('')),
        [SECRET_KEYS.caKey]: encode(signer.keyPem),
      },
    };
  }

  async #create(): Promise<{ secret: V1Secret; created: boolean; newCa: boolean }> {
    const { data, fingerprint } = await this.#issue(this.#s.hosts, undefined, undefined);
    const body: V1Secret = {
      apiVersion: 'v1',
      kind: 'Secret',
      metadata: { labels: { [MANAGED_BY_LABEL]: MANAGED_BY }, annotations: { [FINGERPRINT_ANNOTATION]: fingerprint } },
      type: SECRET_TYPE,
      data,
    };
    // When another replica created it first, its certificate is the one.
    const { object, created } = await this.#secret.create(body);
    return { secret: object, created, newCa: created };
  }

  async #renew(secret: V1Secret, plan: Renewal): Promise<{ secret: V1Secret; won: boolean }> {
    const { data, fingerprint } = await this.#issue(plan.hosts, plan.newCa ? undefined : plan.ca, plan.oldCaPem);
    return this.#replace(secret, data, { [FINGERPRINT_ANNOTATION]: fingerprint });
  }

  /** Updates on the read resourceVersion; on a conflict returns the winner's Secret instead. */
  async #replace(secret: V1Secret, data: Record<string, string>, annotations: Record<string, string>): Promise<{ secret: V1Secret; won: boolean }> {
    const meta = secret.metadata ?? {};
    const body: V1Secret = {
      ...secret,
      metadata: { ...meta, annotations: { ...meta.annotations, ...annotations } },
      data: { ...secret.data, ...data },
    };
    const { object, won } = await this.#secret.update(body);
    return { secret: object, won };
  }

  // --- using what the Secret holds ------------------------------------------------------------

  #load(secret: V1Secret): LoadedCertificate {
    const certPem = decode(secret.data, SECRET_KEYS.cert);
    const keyPem = decode(secret.data, SECRET_KEYS.key);
    const certFile = `Secret ${this.secretRef} key ${SECRET_KEYS.cert}`;
    const keyFile = `Secret ${this.secretRef} key ${SECRET_KEYS.key}`;
    if (certPem === undefined || keyPem === undefined) {
      const missing = [certPem === undefined && SECRET_KEYS.cert, keyPem === undefined && SECRET_KEYS.key].filter(Boolean).join(' and ');
      throw new CertificateError('CertificateFilesIncomplete', `Secret ${this.secretRef} has no ${missing}`, [certFile, keyFile]);
    }
    return loadCertificatePair({ certPem, keyPem }, { certFile, keyFile });
  }

  /**
   * Makes `secret`'s pair the one in use when it differs; throws a CertificateError when it is not
   * usable (the current pair stays). Returns true when it swapped.
   */
  #apply(secret: V1Secret, action: SecretCertificateEvent['action'], extra: Pick<SecretCertificateEvent, 'reason' | 'newCa'> = {}): boolean {
    const rv = secret.metadata?.resourceVersion;
    const old = this.#state;
    if (old !== undefined && isOlder(rv, old.resourceVersion)) return false;
    const loaded = this.#load(secret);
    const state: State = { loaded, caPem: decode(secret.data, SECRET_KEYS.ca), managed: isManagedSecret(secret), resourceVersion: rv, uid: secret.metadata?.uid };
    const same = old !== undefined && old.loaded.certPem === loaded.certPem && old.loaded.keyPem === loaded.keyPem;
    this.#state = same ? { ...state, loaded: old.loaded } : state;
    // ca.crt may change without the pair (an issuer adding a CA): trust listeners hear of it either way.
    this.#announceTrust();
    if (same) return false;
    this.#event(action, extra);
    if (!state.managed && loaded.notAfter.getTime() <= this.#s.now().getTime()) {
      this.#report(new CertificateError('CertificateExpired', `the certificate in Secret ${this.secretRef} expired on ${loaded.notAfter.toISOString()}; whoever issues it must renew it`));
    }
    if (old === undefined) return true;
    for (const listener of this.#listeners) {
      try {
        listener(loaded);
      } catch (err) {
        this.#report(new Error(`a certificate change listener failed: ${err instanceof Error ? err.message : String(err)}`, { cause: err }));
      }
    }
    return true;
  }

  #announceTrust(): void {
    const now = this.trust;
    const was = this.#trusted;
    if (was !== undefined && was.caPem === now.caPem && was.fingerprint === now.fingerprint && was.uid === now.uid) return;
    this.#trusted = now;
    for (const listener of this.#trustListeners) {
      try {
        listener(now);
      } catch (err) {
        this.#report(new Error(`a trust listener failed: ${err instanceof Error ? err.message : String(err)}`, { cause: err }));
      }
    }
  }

  #event(action: SecretCertificateEvent['action'], extra: Pick<SecretCertificateEvent, 'reason' | 'newCa'>): void {
    const state = this.#state!;
    try {
      this.#s.onEvent({ action, secret: this.secretRef, fingerprint: state.loaded.fingerprint, notAfter: state.loaded.notAfter, managed: state.managed, ...extra });
    } catch {
      // A throwing log callback must not break the source.
    }
  }

  #report(err: unknown): void {
    const e = err instanceof Error ? err : new Error(String(err));
    const fp = this.#state?.loaded.fingerprint;
    const out =
      fp === undefined
        ? e
        : isCertificateError(e)
          ? new CertificateError(e.reason, `${e.message}; keeping the current certificate (sha256 ${fp})`, e.files, { cause: e })
          : new Error(`${e.message}; keeping the current certificate (sha256 ${fp})`, { cause: e });
    try {
      this.#s.onError(out);
    } catch {
      // A throwing error handler must not break the source.
    }
  }

  // --- timers ---------------------------------------------------------------------------------

  /** Next check: the periodic interval, or sooner when the gateway's own certificate falls due. */
  #scheduleCheck(delayMs?: number): void {
    if (this.#stopped) return;
    clearTimeout(this.#checkTimer);
    let delay = delayMs ?? this.#s.checkIntervalMs;
    const state = this.#state;
    if (delayMs === undefined && state?.managed) {
      const due = renewalTime(new X509Certificate(state.loaded.certPem)).getTime() - this.#s.now().getTime();
      // Already due means the renewal just failed: retry, but not in a tight loop.
      delay = Math.min(delay, due > 0 ? due + 1000 : RETRY_MS);
    }
    // setTimeout takes at most 2^31-1 ms; a longer wait fires early and just reschedules.
    this.#checkTimer = setTimeout(() => void this.check(), Math.min(Math.max(0, delay), 2 ** 31 - 1));
  }

  // --- watch ----------------------------------------------------------------------------------

  #startWatch(): void {
    if (this.#stopped) return;
    const watch = new Watch(this.#kube.kc);
    const path = `/api/v1/namespaces/${encodeURIComponent(this.namespace)}/secrets`;
    const rv = this.#watchRv ?? this.#state?.resourceVersion;
    const query = { fieldSelector: `metadata.name=${this.secretName}`, allowWatchBookmarks: true, ...(rv !== undefined && { resourceVersion: rv }) };
    const startedAt = Date.now();
    let events = 0;
    let gone = false;
    let ended = false;

    const onEvent = (type: string, obj: unknown): void => {
      if (this.#stopped || ended) return;
      if (type === 'ERROR') {
        const code = (obj as { code?: unknown } | null)?.code;
        if (code === 410) gone = true;
        else this.#report(new Error(`watching Secret ${this.secretRef}: the API server sent an error (HTTP ${String(code)})`));
        return;
      }
      events++;
      const secret = obj as V1Secret;
      if (secret.metadata?.resourceVersion) this.#watchRv = secret.metadata.resourceVersion;
      if (type === 'BOOKMARK' || secret.metadata?.name !== this.secretName) return;
      if (type === 'DELETED') {
        void this.#enqueue(async () => {
          this.#event('deleted', {});
          this.#scheduleCheck(this.#s.recreateDelayMs);
        });
        return;
      }
      if (type === 'ADDED' || type === 'MODIFIED') {
        void this.#enqueue(async () => {
          if (this.#stopped) return;
          try {
            if (this.#apply(secret, 'changed')) this.#scheduleCheck();
          } catch (err) {
            this.#report(err);
          }
        });
      }
    };

    const onDone = (err: unknown): void => {
      if (ended) return;
      ended = true;
      this.#watch = undefined;
      if (this.#stopped) return;
      const timedOut = (err as { name?: unknown } | null)?.name === 'TimeoutError';
      const statusCode = (err as { statusCode?: unknown } | null)?.statusCode;
      if (statusCode === 410) gone = true;
      const healthy = events > 0 || Date.now() - startedAt > 10_000;
      if (err && !timedOut && statusCode !== 410) {
        const detail = typeof statusCode === 'number' ? `HTTP ${statusCode}` : err instanceof Error ? err.message : 'unknown error';
        this.#report(new Error(`watching Secret ${this.secretRef} failed (${detail}); retrying`));
      }
      if (healthy && (!err || timedOut || gone)) this.#watchBackoffMs = WATCH_BACKOFF_MIN_MS;
      // A watch that ends at once again and again must not hammer the API server.
      const delay = healthy && !err ? 0 : this.#watchBackoffMs;
      if (!healthy || err) this.#watchBackoffMs = Math.min(this.#watchBackoffMs * 2, WATCH_BACKOFF_MAX_MS);
      this.#watchTimer = setTimeout(() => (gone ? this.#relistThenWatch() : this.#startWatch()), delay);
    };

    this.#kube
      .call(this.#lifetime.signal, () => watch.watch(path, query, onEvent, onDone))
      .then(
        (controller) => {
          if (this.#stopped || ended) controller.abort();
          else this.#watch = controller;
        },
        (err: unknown) => onDone(err),
      );
  }

  /** The watch's resourceVersion is too old (410 Gone): read the Secret afresh and watch from there. */
  #relistThenWatch(): void {
    if (this.#stopped) return;
    this.#watchRv = undefined;
    void this.#enqueue(async () => {
      try {
        const secret = await this.#read();
        if (secret === undefined) {
          this.#scheduleCheck(this.#s.recreateDelayMs);
        } else {
          this.#watchRv = secret.metadata?.resourceVersion;
          try {
            if (this.#apply(secret, 'changed')) this.#scheduleCheck();
          } catch (err) {
            this.#report(err);
          }
        }
        this.#startWatch();
      } catch (err) {
        if (this.#stopped) return;
        this.#report(err);
        this.#watchTimer = setTimeout(() => this.#relistThenWatch(), this.#watchBackoffMs);
        this.#watchBackoffMs = Math.min(this.#watchBackoffMs * 2, WATCH_BACKOFF_MAX_MS);
      }
    });
  }
}
