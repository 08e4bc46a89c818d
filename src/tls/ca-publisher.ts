/**
 * Publishes what clients must trust, outside the certificate Secret (which also holds tls.key and,
 * for a generated certificate, ca.key):
 * - the ConfigMap `velero-download-server-ca` (like `kube-root-ca.crt`): `ca.crt` as the Secret has
 *   it and the fingerprint annotation of the certificate in use, so users need `get` on that one
 *   ConfigMap and no access to the Secret;
 * - the caBundle of every webhook in one MutatingWebhookConfiguration, so the API server verifies the
 *   webhook with the same ca.crt (during a CA rotation: the new and the old CA).
 *
 * Kept in step whenever the certificate in use is created, loaded, renewed or changed, whoever issued
 * it (the gateway, cert-manager, a person), and re-checked periodically (someone may edit or delete
 * them). Every replica may write: the ConfigMap through kube's owned-object helper (create-if-absent,
 * update on the read resourceVersion), the webhook configuration with a JSON patch that first tests
 * the resourceVersion it read. Both record the Secret's uid and resourceVersion they came from, so a
 * replica whose view is older than the published one never writes it back.
 *
 * Publishing is best effort: a failure (RBAC, API trouble) is reported and retried, and never stops
 * the gateway, whose certificate serves regardless.
 */
import { X509Certificate } from 'node:crypto';
import type { ConfigurationOptions, V1ConfigMap, V1MutatingWebhookConfiguration } from '@kubernetes/client-node';
import { PatchStrategy, setHeaderOptions } from '@kubernetes/client-node';
import type { KubeClients } from '../kube/client.ts';
import { describeApiFailure, statusOf } from '../kube/client.ts';
import { MANAGED_BY, MANAGED_BY_LABEL, OwnedObject, isOlderVersion } from '../kube/owned.ts';
import type { TrustAnchor, TrustSource } from './secret.ts';
import { FINGERPRINT_ANNOTATION, SECRET_KEYS } from './secret.ts';

/** The ConfigMap's name unless `--ca-configmap` says otherwise. */
export const DEFAULT_CA_CONFIGMAP = 'velero-download-server-ca';
/** The ConfigMap's key holding the CA bundle (PEM), as in `kube-root-ca.crt`. */
export const CA_CONFIGMAP_KEY = SECRET_KEYS.ca;
/** `namespace/name` of the Secret the published CA came from. */
export const SOURCE_ANNOTATION = 'download-server.velero.io/ca-source';
/** That Secret's uid and resourceVersion when the CA was published. */
export const SOURCE_UID_ANNOTATION = 'download-server.velero.io/ca-source-uid';
export const SOURCE_VERSION_ANNOTATION = 'download-server.velero.io/ca-source-resource-version';
/** How often the published copies are re-checked unless told otherwise. */
export const DEFAULT_RESYNC_MS = 5 * 60_000;

const ATTEMPTS = 3;
const JSON_PATCH = (o: ConfigurationOptions): ConfigurationOptions => setHeaderOptions('Content-Type', PatchStrategy.JsonPatch, o);

export interface CaPublisherOptions {
  /** The gateway's namespace, where the ConfigMap lives. */
  namespace: string;
  /** The ConfigMap to keep in step; undefined: none. */
  configMap?: string | undefined;
  /** The MutatingWebhookConfiguration whose webhooks' caBundle to keep in step; undefined: none. */
  webhookConfiguration?: string | undefined;
  /** Default {@link DEFAULT_RESYNC_MS}. */
  resyncMs?: number;
  /** A publication that failed (it is retried at the next change or resync); default `console.warn`. */
  onError?: (err: Error) => void;
  onEvent?: (event: CaPublisherEvent) => void;
}

/** One write (or deliberate non-write) of a published copy; never carries key material. */
export interface CaPublisherEvent {
  /**
   * `created` / `updated`: this replica wrote the ConfigMap; `patched`: this replica set the webhooks'
   * caBundle; `superseded`: left alone because it holds a newer Secret version than this replica's
   * view; `skipped`: the Secret has no ca.crt, so the webhooks' caBundle is left as it is.
   */
  action: 'created' | 'updated' | 'patched' | 'superseded' | 'skipped';
  /** `ConfigMap namespace/name` or `MutatingWebhookConfiguration name`. */
  target: string;
  /** `namespace/name` of the Secret. */
  secret: string;
  fingerprint: string;
  /** How many CA certificates the published bundle holds. */
  cas: number;
}

const countCas = (pem: string | undefined): number => pem?.match(/-----BEGIN CERTIFICATE-----/g)?.length ?? 0;

/** True when `pem` holds at least one certificate and every certificate block in it parses. */
function isCertificateBundle(pem: string): boolean {
  const blocks = pem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
  if (blocks.length === 0 || blocks.length !== countCas(pem)) return false;
  try {
    for (const b of blocks) new X509Certificate(b);
    return true;
  } catch {
    return false;
  }
}

function isNewer(recorded: Record<string, string> | undefined, trust: TrustAnchor): boolean {
  // Only a version of the same Secret object is comparable (a restored or recreated Secret has a new uid).
  if (recorded?.[SOURCE_UID_ANNOTATION] !== trust.uid || trust.uid === undefined) return false;
  return isOlderVersion(trust.resourceVersion, recorded?.[SOURCE_VERSION_ANNOTATION]);
}

function sourceAnnotations(trust: TrustAnchor): Record<string, string> {
  return {
    [FINGERPRINT_ANNOTATION]: trust.fingerprint,
    [SOURCE_ANNOTATION]: trust.secret,
    ...(trust.uid !== undefined && { [SOURCE_UID_ANNOTATION]: trust.uid }),
    ...(trust.resourceVersion !== undefined && { [SOURCE_VERSION_ANNOTATION]: trust.resourceVersion }),
  };
}

/**
 * Keeps the CA ConfigMap and the webhook's caBundle in step with a {@link TrustSource}. Start with
 * {@link CaPublisher.start}, end with {@link stop}.
 */
export class CaPublisher {
  readonly #kube: KubeClients;
  readonly #source: TrustSource;
  readonly #configMap: OwnedObject<'ConfigMap'> | undefined;
  readonly #webhook: string | undefined;
  readonly #onError: (err: Error) => void;
  readonly #onEvent: (event: CaPublisherEvent) => void;
  readonly #lifetime = new AbortController();
  readonly #listener = (): void => void this.sync();
  #timer: NodeJS.Timeout | undefined;
  #tail: Promise<void> = Promise.resolve();
  #queued: Promise<void> | undefined;
  /** The certificate whose Secret had no ca.crt, so it is reported once. */
  #skipped: string | undefined;
  /** The certificate whose Secret had an unusable ca.crt, so it is reported once. */
  #refused: string | undefined;

  private constructor(kube: KubeClients, source: TrustSource, opts: CaPublisherOptions) {
    this.#kube = kube;
    this.#source = source;
    this.#configMap = opts.configMap ? new OwnedObject(kube, { kind: 'ConfigMap', namespace: opts.namespace, name: opts.configMap, signal: this.#lifetime.signal }) : undefined;
    this.#webhook = opts.webhookConfiguration || undefined;
    this.#onError = opts.onError ?? ((err) => console.warn(err.message));
    this.#onEvent = opts.onEvent ?? (() => {});
  }

  /**
   * Publishes what `source` says now (failures are reported, not thrown), then follows its changes
   * and re-checks every `resyncMs`.
   */
  static async start(kube: KubeClients, source: TrustSource, opts: CaPublisherOptions): Promise<CaPublisher> {
    const publisher = new CaPublisher(kube, source, opts);
    source.on('trust', publisher.#listener);
    await publisher.sync();
    publisher.#timer = setInterval(() => void publisher.sync(), opts.resyncMs ?? DEFAULT_RESYNC_MS);
    publisher.#timer.unref();
    return publisher;
  }

  /** Brings every published copy in step with the source now; never rejects. Calls made while one runs share the next run. */
  sync(): Promise<void> {
    if (this.#stopped) return Promise.resolve();
    if (this.#queued) return this.#queued;
    const run = this.#tail.then(async () => {
      this.#queued = undefined;
      await this.#syncOnce();
    });
    this.#queued = run;
    this.#tail = run.catch(() => {});
    return run;
  }

  stop(): void {
    this.#lifetime.abort();
    clearInterval(this.#timer);
    this.#source.off('trust', this.#listener);
  }

  get #stopped(): boolean {
    return this.#lifetime.signal.aborted;
  }

  async #syncOnce(): Promise<void> {
    if (this.#stopped) return;
    const trust = this.#source.trust;
    if (trust.caPem !== undefined && !isCertificateBundle(trust.caPem)) {
      // Publishing it would replace a CA clients can use with one they cannot: what was published stays.
      if (this.#refused !== trust.fingerprint) this.#report(new Error(`ca.crt of Secret ${trust.secret} holds no valid certificate, so it is not published`), [this.#configMap?.ref, this.#webhook && `MutatingWebhookConfiguration ${this.#webhook}`].filter(Boolean).join(' or '));
      this.#refused = trust.fingerprint;
      return;
    }
    this.#refused = undefined;
    for (const [run, what] of [
      [() => this.#publishConfigMap(trust), this.#configMap?.ref],
      [() => this.#patchWebhook(trust), this.#webhook && `MutatingWebhookConfiguration ${this.#webhook}`],
    ] as const) {
      if (!what) continue;
      try {
        await run();
      } catch (err) {
        if (this.#stopped) return;
        this.#report(err, what);
      }
    }
  }

  // --- the ConfigMap ----------------------------------------------------------------------------

  #desired(trust: TrustAnchor, base?: V1ConfigMap): V1ConfigMap {
    const meta = base?.metadata ?? {};
    return {
      ...base,
      apiVersion: 'v1',
      kind: 'ConfigMap',
      metadata: {
        ...meta,
        labels: { ...meta.labels, [MANAGED_BY_LABEL]: MANAGED_BY },
        annotations: { ...meta.annotations, ...sourceAnnotations(trust) },
      },
      // Exactly the Secret's ca.crt: no stale key survives, and no binaryData.
      data: trust.caPem === undefined ? {} : { [CA_CONFIGMAP_KEY]: trust.caPem },
      binaryData: undefined,
    };
  }

  #inStep(cm: V1ConfigMap, trust: TrustAnchor): boolean {
    const a = cm.metadata?.annotations ?? {};
    const data = cm.data ?? {};
    const keys = Object.keys(data);
    const caOk = trust.caPem === undefined ? keys.length === 0 : keys.length === 1 && data[CA_CONFIGMAP_KEY] === trust.caPem;
    return caOk && Object.keys(cm.binaryData ?? {}).length === 0 && a[FINGERPRINT_ANNOTATION] === trust.fingerprint && a[SOURCE_UID_ANNOTATION] === trust.uid && a[SOURCE_ANNOTATION] === trust.secret;
  }

  async #publishConfigMap(trust: TrustAnchor): Promise<void> {
    const owned = this.#configMap!;
    for (let attempt = 0; attempt < ATTEMPTS; attempt++) {
      let cm = await owned.read();
      if (cm === undefined) {
        const { object, created } = await owned.create(this.#desired(trust));
        if (created) return this.#event('created', owned.ref, trust);
        cm = object;
      }
      if (isNewer(cm.metadata?.annotations, trust)) return this.#event('superseded', owned.ref, trust);
      if (this.#inStep(cm, trust)) return;
      const { won } = await owned.update(this.#desired(trust, cm));
      if (won) return this.#event('updated', owned.ref, trust);
      // Another replica wrote it meanwhile: look again at what it wrote.
    }
    throw new Error(`${owned.ref} kept changing under ${ATTEMPTS} attempts to update it`);
  }

  // --- the webhook configuration ----------------------------------------------------------------

  async #patchWebhook(trust: TrustAnchor): Promise<void> {
    const name = this.#webhook!;
    const target = `MutatingWebhookConfiguration ${name}`;
    if (trust.caPem === undefined) {
      // Nothing to put there; a caBundle set by someone else (or none: the system roots) stays.
      if (this.#skipped !== trust.fingerprint) this.#event('skipped', target, trust);
      this.#skipped = trust.fingerprint;
      return;
    }
    const bundle = Buffer.from(trust.caPem, 'utf8').toString('base64');
    for (let attempt = 0; attempt < ATTEMPTS; attempt++) {
      let mwc: V1MutatingWebhookConfiguration;
      try {
        mwc = await this.#kube.call(this.#lifetime.signal, (o) => this.#kube.admission.readMutatingWebhookConfiguration({ name }, o));
      } catch (err) {
        throw new Error(`reading ${target} failed (${describeApiFailure(err)})`, { cause: err });
      }
      const rv = mwc.metadata?.resourceVersion;
      if (isNewer(mwc.metadata?.annotations, trust)) return this.#event('superseded', target, trust);
      // Index paths are safe: the test below makes the patch apply to the very version read.
      const ops: object[] = (mwc.webhooks ?? []).flatMap((w, i) => (w.clientConfig?.caBundle === bundle ? [] : [{ op: 'add', path: `/webhooks/${i}/clientConfig/caBundle`, value: bundle }]));
      if (ops.length === 0) return;
      const annotations = sourceAnnotations(trust);
      if (mwc.metadata?.annotations === undefined) ops.push({ op: 'add', path: '/metadata/annotations', value: annotations });
      else for (const [k, v] of Object.entries(annotations)) ops.push({ op: 'add', path: `/metadata/annotations/${k.replaceAll('~', '~0').replaceAll('/', '~1')}`, value: v });
      try {
        await this.#kube.call(this.#lifetime.signal, (o) =>
          this.#kube.admission.patchMutatingWebhookConfiguration({ name, body: [{ op: 'test', path: '/metadata/resourceVersion', value: rv }, ...ops], fieldManager: 'velero-download-server' }, JSON_PATCH(o)),
        );
        return this.#event('patched', target, trust);
      } catch (err) {
        // A failed test (422) or a conflict (409): it changed since it was read; look again.
        const code = statusOf(err);
        if (code !== 409 && code !== 422) throw new Error(`patching ${target} failed (${describeApiFailure(err)})`, { cause: err });
      }
    }
    throw new Error(`${target} kept changing under ${ATTEMPTS} attempts to patch it`);
  }

  #event(action: CaPublisherEvent['action'], target: string, trust: TrustAnchor): void {
    try {
      this.#onEvent({ action, target, secret: trust.secret, fingerprint: trust.fingerprint, cas: countCas(trust.caPem) });
    } catch {
      // A throwing log callback must not break publishing.
    }
  }

  #report(err: unknown, what: string): void {
    const message = err instanceof Error ? err.message : String(err);
    try {
      this.#onError(new Error(`publishing the CA in ${what}: ${message}; retrying at the next change or in a few minutes`, { cause: err }));
    } catch {
      // A throwing error handler must not break publishing.
    }
  }
}
