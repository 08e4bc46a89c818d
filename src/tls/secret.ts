/**
 * The serving certificate of kubernetes mode, kept in a `kubernetes.io/tls` Secret that every replica
 * shares: generated (a CA and a serving certificate it signs) when the Secret is missing, renewed at
 * two thirds of its lifetime when the gateway generated it, used as is when someone else wrote it, and
 * followed through a watch so every replica swaps in a changed certificate within seconds.
 */
import { X509Certificate, randomBytes } from 'node:crypto';
import type { V1Secret } from '@kubernetes/client-node';
import type { KubeClients } from '../kube/client.ts';
import { OwnedObject, isOlderVersion } from '../kube/owned.ts';
import type { WatchedCollection } from '../kube/watch.ts';
import { describeApiError } from '../kube/watch.ts';
import { CertificateError, isCertificateError } from './errors.ts';
import { DEFAULT_VALIDITY_DAYS, generateCa, generateCaSigned } from './generate.ts';
import { loadCertificatePair } from './pair.ts';
import { MANAGED_BY, MANAGED_BY_LABEL, generatedCertificateHosts, isManagedSecret, nextCheckMs, planRenewal, renewedCaBundle } from './policy.ts';
import type { HostOptions, Renewal, RenewalReason } from './policy.ts';
import type { CertificatePair, CertificateSource, LoadedCertificate } from './types.ts';

// Kept importable from here: the composition root takes the webhook's names with the source.
export { serviceDnsNames } from './policy.ts';
export type { RenewalReason } from './policy.ts';

/** The Secret's name unless `--tls-secret` says otherwise. */
export const DEFAULT_TLS_SECRET = 'velero-download-server-certs';
/** Annotation with the SHA-256 fingerprint (lower-case hex of the DER) of the Secret's tls.crt. */
export const FINGERPRINT_ANNOTATION = 'download-server.velero.io/tls-fingerprint';
/** The Secret's keys: the kubernetes.io/tls pair, the CA bundle clients trust, and the CA's key. */
export const SECRET_KEYS = { cert: 'tls.crt', key: 'tls.key', ca: 'ca.crt', caKey: 'ca.key' } as const;
/** How often the Secret is checked for renewal unless told otherwise. */
export const DEFAULT_CHECK_INTERVAL_MS = 60 * 60 * 1000;

const SECRET_TYPE = 'kubernetes.io/tls';
// Below this, the few minutes a generated certificate is back-dated would make it due at once.
const MIN_VALIDITY_DAYS = 1 / 24;
const DEFAULT_RECREATE_DELAY_MS = 30_000;

/** Options for {@link SecretCertificateSource.start}. */
export interface SecretCertificateOptions extends HostOptions {
  /** Default {@link DEFAULT_TLS_SECRET}. */
  secretName?: string;
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

function decode(data: Record<string, string> | undefined, key: string): string | undefined {
  const b64 = data?.[key];
  return b64 === undefined ? undefined : Buffer.from(b64, 'base64').toString('utf8');
}

function encode(text: string): string {
  return Buffer.from(text, 'utf8').toString('base64');
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
  #watch: WatchedCollection<V1Secret> | undefined;

  private constructor(kube: KubeClients, s: Settings) {
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
    void this.#watch?.stop();
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

    const d = secret.data;
    const held = { certPem: decode(d, SECRET_KEYS.cert), keyPem: decode(d, SECRET_KEYS.key), caPem: decode(d, SECRET_KEYS.ca), caKeyPem: decode(d, SECRET_KEYS.caKey) };
    const plan = planRenewal(held, this.#s.hosts, this.#s.now(), this.#s.validityDays);
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
    const commonName = `${MANAGED_BY} CA ${now.toISOString().slice(0, 10)} ${randomBytes(4).toString('hex')}`;
    const signer = ca ?? (await generateCa({ commonName, validityDays: this.#s.caValidityDays, now }));
    const leaf = await generateCaSigned({ hosts, validityDays: this.#s.validityDays, now, ca: signer });
    const fingerprint = loadCertificatePair(leaf).fingerprint;
    return {
      fingerprint,
      data: {
        [SECRET_KEYS.cert]: encode(leaf.certPem),
        [SECRET_KEYS.key]: encode(leaf.keyPem),
        [SECRET_KEYS.ca]: encode(renewedCaBundle(signer.certPem, ca === undefined, oldCaPem, now)),
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
    if (old !== undefined && isOlderVersion(rv, old.resourceVersion)) return false;
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
    this.#notify(this.#listeners, loaded, 'a certificate change listener');
    return true;
  }

  #announceTrust(): void {
    const now = this.trust;
    const was = this.#trusted;
    if (was !== undefined && was.caPem === now.caPem && was.fingerprint === now.fingerprint && was.uid === now.uid) return;
    this.#trusted = now;
    this.#notify(this.#trustListeners, now, 'a trust listener');
  }

  /** Tells every listener; one that throws is reported and the others still hear. */
  #notify<T>(listeners: Iterable<(value: T) => void>, value: T, what: string): void {
    for (const listener of listeners) {
      try {
        listener(value);
      } catch (err) {
        this.#report(new Error(`${what} failed: ${err instanceof Error ? err.message : String(err)}`, { cause: err }));
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
    const state = this.#state;
    const delay = delayMs ?? nextCheckMs(state?.managed ? new X509Certificate(state.loaded.certPem) : undefined, this.#s.now(), this.#s.checkIntervalMs);
    // setTimeout takes at most 2^31-1 ms; a longer wait fires early and just reschedules.
    this.#checkTimer = setTimeout(() => void this.check(), Math.min(Math.max(0, delay), 2 ** 31 - 1));
  }

  // --- watch ----------------------------------------------------------------------------------

  /** Follows the Secret through kube's owned-object watch; changes queue behind checks and renewals. */
  #startWatch(): void {
    if (this.#stopped) return;
    this.#watch = this.#secret.watch({
      onChange: (secret) =>
        void this.#enqueue(async () => {
          if (this.#stopped) return;
          try {
            if (this.#apply(secret, 'changed')) this.#scheduleCheck();
          } catch (err) {
            this.#report(err);
          }
        }),
      onDelete: () =>
        void this.#enqueue(async () => {
          if (this.#stopped || this.#state === undefined) return;
          this.#event('deleted', {});
          this.#scheduleCheck(this.#s.recreateDelayMs);
        }),
      onError: (err, retryInMs) => this.#report(new Error(`watching Secret ${this.secretRef} failed (${describeApiError(err)}); retrying in ${retryInMs} ms`)),
    });
    void this.#watch.start();
  }
}
