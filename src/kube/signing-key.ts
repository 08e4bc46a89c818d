/**
 * The URL-signing keys, kept in Secret `velero-download-server-signing-key` so every replica signs
 * and verifies alike: created if absent (create-if-absent; on a conflict the winner's is used),
 * rotated when older than the rotation period (the old key moves to `previous` and keeps verifying
 * until the URLs it signed have expired), and re-read periodically so a rotation by another replica
 * is seen within the refresh interval.
 */
import { randomBytes } from 'node:crypto';
import type { V1Secret } from '@kubernetes/client-node';
import type { KeyRing } from '../auth/signed-urls.ts';
import type { KubeClients } from './client.ts';
import { statusOf } from './client.ts';

export const SIGNING_KEY_SECRET = 'velero-download-server-signing-key';
const ROTATED_AT = 'download-server.velero.io/rotated-at';
const NEVER = new AbortController().signal;

export interface SigningKeyOptions {
  namespace: string;
  name?: string;
  /** A key older than this is rotated (default 24 h; must exceed the longest URL lifetime). */
  rotateAfterMs?: number;
  /** How often the Secret is re-read (default 30 s). */
  refreshMs?: number;
  now?: () => number;
}

export class SigningKeySource {
  readonly #kube: KubeClients;
  readonly #opts: Required<Omit<SigningKeyOptions, 'now'>> & { now: () => number };
  #ring: KeyRing | undefined;
  #timer: NodeJS.Timeout | undefined;

  constructor(kube: KubeClients, opts: SigningKeyOptions) {
    this.#kube = kube;
    this.#opts = { name: SIGNING_KEY_SECRET, rotateAfterMs: 24 * 3600_000, refreshMs: 30_000, now: Date.now, ...opts };
  }

  /** Loads (or creates) the keys and starts the periodic refresh. */
  async start(): Promise<void> {
    await this.refresh();
    this.#timer = setInterval(() => void this.refresh().catch(() => undefined), this.#opts.refreshMs);
    this.#timer.unref();
  }

  stop(): void {
    clearInterval(this.#timer);
  }

  get keys(): KeyRing {
    if (!this.#ring) throw new Error('signing keys not loaded');
    return this.#ring;
  }

  /** Reads the Secret, creating or rotating it when needed. */
  async refresh(): Promise<void> {
    const { namespace, name } = this.#opts;
    let secret = await this.#read();
    if (!secret) secret = await this.#create();
    const rotatedAt = Date.parse(secret.metadata?.annotations?.[ROTATED_AT] ?? '');
    if (!Number.isFinite(rotatedAt) || this.#opts.now() - rotatedAt > this.#opts.rotateAfterMs) {
      secret = await this.#rotate(secret);
    }
    const current = secret.data?.current;
    if (!current) throw new Error(`Secret ${namespace}/${name} has no key "current"`);
    const previous = secret.data?.previous;
    this.#ring = { current: Buffer.from(current, 'base64'), ...(previous && { previous: Buffer.from(previous, 'base64') }) };
  }

  async #read(): Promise<V1Secret | undefined> {
    const { namespace, name } = this.#opts;
    try {
      return await this.#kube.call(NEVER, (o) => this.#kube.core.readNamespacedSecret({ namespace, name }, o));
    } catch (err) {
      if (statusOf(err) === 404) return undefined;
      throw err;
    }
  }

  #body(data: Record<string, string>, resourceVersion?: string): V1Secret {
    const { namespace, name } = this.#opts;
    return {
      apiVersion: 'v1',
      kind: 'Secret',
      type: 'Opaque',
      metadata: {
        name,
        namespace,
        ...(resourceVersion && { resourceVersion }),
        labels: { 'app.kubernetes.io/managed-by': 'velero-download-server' },
        annotations: { [ROTATED_AT]: new Date(this.#opts.now()).toISOString() },
      },
      data,
    };
  }

  async #create(): Promise<V1Secret> {
    const { namespace } = this.#opts;
    try {
      return await this.#kube.call(NEVER, (o) => this.#kube.core.createNamespacedSecret({ namespace, body: this.#body({ current: randomBytes(32).toString('base64') }) }, o));
    } catch (err) {
      // Another replica created it first: use theirs.
      if (statusOf(err) === 409) return (await this.#read())!;
      throw err;
    }
  }

  async #rotate(secret: V1Secret): Promise<V1Secret> {
    const { namespace, name } = this.#opts;
    const data = { current: randomBytes(32).toString('base64'), ...(secret.data?.current && { previous: secret.data.current }) };
    try {
      return await this.#kube.call(NEVER, (o) => this.#kube.core.replaceNamespacedSecret({ namespace, name, body: this.#body(data, secret.metadata?.resourceVersion) }, o));
    } catch (err) {
      // Another replica rotated it first (stale resourceVersion): use theirs.
      if (statusOf(err) === 409) return (await this.#read()) ?? secret;
      throw err;
    }
  }
}
