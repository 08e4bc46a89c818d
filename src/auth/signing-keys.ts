/**
 * The URL-signing keys, kept in Secret `velero-download-server-signing-key` so every replica signs
 * and verifies alike. The Secret holds `current` (signs new URLs) and one more key that verifies:
 * `previous` (signed until the last rotation) or `next` (announced, signs after the next rotation).
 * Annotations say when `current` began signing ({@link ROTATED_AT_ANNOTATION}) and when `next` was
 * announced ({@link NEXT_ANNOUNCED_AT_ANNOTATION}). Every replica re-reads the Secret every refresh
 * interval; whichever replica finds a step due takes it, as an update on the resourceVersion it read
 * (kube's owned-object helper): a replica that loses the race uses the winner's keys and does not
 * take the step again.
 *
 * A rotation takes two steps, so that no replica ever signs with a key another replica cannot verify
 * yet, and no key stops verifying while a URL it signed lives:
 * 1. announce: at (period - lead) after the last rotation, a new key is written as `next`, and
 *    `previous` is dropped (it stopped signing long enough ago);
 * 2. rotate: `lead` after the announcement (every replica has re-read the Secret by then, so every
 *    replica verifies it), `next` becomes `current` and `current` becomes `previous`.
 * With lifetime L (the longest a signed URL lives), refresh interval R and replicas' clocks at most
 * D = {@link CLOCK_SKEW_MS} apart, lead = R + D, and the period is refused below L + 2R + 3D
 * ({@link minRotationPeriodMs}): a key that stopped signing (replicas that had not re-read the
 * Secret still sign with it for up to R, and their URLs live up to L more) then stays in the Secret
 * until the next announcement, at least L + R + 2D later. So a key keeps verifying on every replica
 * for at least the longest URL lifetime plus the refresh interval after it stopped signing, and two
 * rotations are never closer than the period less 2D.
 *
 * Besides: each replica keeps a key it verified with for L + R after the key left the Secret (a
 * Secret rewritten by hand breaks no URL it already accepted), and a replica that finds the Secret
 * deleted recreates it with the keys it had. A replica that cannot re-read the Secret keeps signing
 * with the key it has; that key leaves the Secret no sooner than (period - lead - D) after the
 * replica last read it, so its URLs verify everywhere while it read the Secret within the last
 * (period - lead - D - L - R).
 */
import { createHash, randomBytes } from 'node:crypto';
import type { V1Secret } from '@kubernetes/client-node';
import type { KubeClients } from '../kube/client.ts';
import { MANAGED_BY, MANAGED_BY_LABEL, OwnedObject } from '../kube/owned.ts';
import type { KeyRing } from './signed-urls.ts';

export const SIGNING_KEY_SECRET = 'velero-download-server-signing-key';
/** When the Secret's `current` key began signing (RFC 3339). */
export const ROTATED_AT_ANNOTATION = 'download-server.velero.io/rotated-at';
/** When the Secret's `next` key was announced (RFC 3339). */
export const NEXT_ANNOUNCED_AT_ANNOTATION = 'download-server.velero.io/next-announced-at';
/** The longest lifetime of a signed URL unless told otherwise: the webhook's cap (MAX_SIGNED_URL_SECONDS in velero/downloadrequests.ts). */
export const DEFAULT_MAX_URL_LIFETIME_MS = 10 * 60_000;
export const DEFAULT_REFRESH_MS = 30_000;
export const DEFAULT_ROTATE_AFTER_MS = 24 * 3600_000;
/** How far apart replicas' clocks may be (NTP keeps them far closer). */
export const CLOCK_SKEW_MS = 30_000;
/** Bytes of a generated key (HMAC-SHA256); a shorter `current` key is replaced at once (announced, then rotated in). */
export const KEY_BYTES = 32;

/** How long before it signs a new key is announced: every replica re-reads the Secret meanwhile. */
export function announceLeadMs(refreshMs: number): number {
  return refreshMs + CLOCK_SKEW_MS;
}

/**
 * The shortest rotation period allowed: L + 2R + 3D (see the module comment). A key that stopped
 * signing must keep verifying for the longest URL lifetime plus a refresh interval, plus the
 * announcement of its successor's successor, plus the clock skew counted where it can shorten them.
 */
export function minRotationPeriodMs(maxUrlLifetimeMs: number, refreshMs: number): number {
  return maxUrlLifetimeMs + refreshMs + announceLeadMs(refreshMs) + 2 * CLOCK_SKEW_MS;
}

export interface SigningKeyOptions {
  namespace: string;
  /** Default {@link SIGNING_KEY_SECRET}. */
  name?: string;
  /** A key signs this long before it is rotated (default 24 h); refused below {@link minRotationPeriodMs}. */
  rotateAfterMs?: number;
  /** How often the Secret is re-read (default 30 s). Every replica must use the same. */
  refreshMs?: number;
  /** The longest lifetime of a URL signed with these keys (default {@link DEFAULT_MAX_URL_LIFETIME_MS}). */
  maxUrlLifetimeMs?: number;
  now?: () => number;
  /** What happened to the keys, for the log; never carries key material. */
  onEvent?: (event: SigningKeyEvent) => void;
  /** A periodic refresh that failed (the keys in hand stay in use); default: ignored. */
  onError?: (err: Error) => void;
}

/** One thing that happened to the signing keys. */
export interface SigningKeyEvent {
  /**
   * `loaded`: the keys found at start; `created`: this replica created (or recreated) the Secret;
   * `announced`: this replica announced the next key; `rotated`: this replica rotated the next key in;
   * `dated`: this replica recorded a missing or unusable time, or replaced a missing key, without
   * dropping a key; `changed`: a change made elsewhere was picked up.
   */
  action: 'loaded' | 'created' | 'announced' | 'rotated' | 'dated' | 'changed';
  /** `namespace/name`. */
  secret: string;
  /** A short, non-secret id of the key that signs now (first 12 hex digits of SHA-256 over it). */
  keyId: string;
  rotatedAt: string;
}

interface Retired {
  key: Buffer;
  until: number;
}

interface Keys {
  current: Buffer | undefined;
  previous: Buffer | undefined;
  next: Buffer | undefined;
  rotatedAt: number;
  announcedAt: number;
}

/** A short, non-secret identifier of a key, for logs. */
export function keyId(key: Buffer): string {
  return createHash('sha256').update(key).digest('hex').slice(0, 12);
}

const decode = (b64: string | undefined): Buffer | undefined => (b64 ? Buffer.from(b64, 'base64') : undefined);
const nonEmpty = (b: Buffer | undefined): Buffer | undefined => (b?.length ? b : undefined);

function keysOf(secret: V1Secret): Keys {
  const a = secret.metadata?.annotations ?? {};
  return {
    current: nonEmpty(decode(secret.data?.current)),
    previous: nonEmpty(decode(secret.data?.previous)),
    next: nonEmpty(decode(secret.data?.next)),
    rotatedAt: Date.parse(a[ROTATED_AT_ANNOTATION] ?? ''),
    announcedAt: Date.parse(a[NEXT_ANNOUNCED_AT_ANNOTATION] ?? ''),
  };
}

/** A step the Secret is due for: what to write, and what to call it. */
interface Step {
  action: 'announced' | 'rotated' | 'dated';
  keys: { current: Buffer; previous?: Buffer | undefined; next?: Buffer | undefined };
  rotatedAt: number;
  announcedAt?: number | undefined;
}

/**
 * The signing keys of kubernetes mode; {@link keys} is what the webhook signs with and the signed
 * route verifies with. Call {@link start} once and {@link stop} at shutdown.
 */
export class SigningKeySource {
  readonly #secret: OwnedObject<'Secret'>;
  readonly #ref: string;
  readonly #rotateAfterMs: number;
  readonly #refreshMs: number;
  readonly #leadMs: number;
  /** How long a key that left the Secret keeps verifying here. */
  readonly #retainMs: number;
  readonly #now: () => number;
  readonly #onEvent: (event: SigningKeyEvent) => void;
  readonly #onError: (err: Error) => void;
  #ring: KeyRing | undefined;
  #retired: Retired[] = [];
  /** The signing key the last event named, so one change is reported once. */
  #announced: Buffer | undefined;
  #timer: NodeJS.Timeout | undefined;
  #running: Promise<void> | undefined;

  constructor(kube: KubeClients, opts: SigningKeyOptions) {
    const refreshMs = opts.refreshMs ?? DEFAULT_REFRESH_MS;
    const maxUrlLifetimeMs = opts.maxUrlLifetimeMs ?? DEFAULT_MAX_URL_LIFETIME_MS;
    const rotateAfterMs = opts.rotateAfterMs ?? DEFAULT_ROTATE_AFTER_MS;
    if (!(refreshMs > 0 && Number.isFinite(refreshMs))) throw new RangeError(`the signing keys' refresh interval must be positive, got ${refreshMs} ms`);
    if (!(maxUrlLifetimeMs > 0 && Number.isFinite(maxUrlLifetimeMs))) throw new RangeError(`the longest URL lifetime must be positive, got ${maxUrlLifetimeMs} ms`);
    const min = minRotationPeriodMs(maxUrlLifetimeMs, refreshMs);
    if (!(rotateAfterMs >= min)) {
      throw new RangeError(
        `the signing key's rotation period (${rotateAfterMs} ms) must be at least ${min} ms: the longest URL lifetime (${maxUrlLifetimeMs} ms), ` +
          `twice the refresh interval (${refreshMs} ms) and three times the tolerated clock skew (${CLOCK_SKEW_MS} ms)`,
      );
    }
    const name = opts.name ?? SIGNING_KEY_SECRET;
    this.#secret = new OwnedObject(kube, { kind: 'Secret', namespace: opts.namespace, name });
    this.#ref = `${opts.namespace}/${name}`;
    this.#rotateAfterMs = rotateAfterMs;
    this.#refreshMs = refreshMs;
    this.#leadMs = announceLeadMs(refreshMs);
    this.#retainMs = maxUrlLifetimeMs + refreshMs;
    this.#now = opts.now ?? Date.now;
    this.#onEvent = opts.onEvent ?? (() => {});
    this.#onError = opts.onError ?? (() => {});
  }

  /** Loads (or creates) the keys and starts the periodic refresh; rejects when the Secret cannot be read or written. */
  async start(): Promise<void> {
    await this.refresh();
    this.#timer = setInterval(() => {
      this.refresh().catch((err: unknown) => this.#report(err));
    }, this.#refreshMs);
    this.#timer.unref();
  }

  stop(): void {
    clearInterval(this.#timer);
  }

  /**
   * `current` signs; `current` and `previous` verify. `previous` is the key that signed before the
   * last rotation or, once announced, the key that signs after the next one. Throws before the first
   * successful refresh.
   */
  get keys(): KeyRing {
    if (!this.#ring) throw new Error('signing keys not loaded');
    return this.#ring;
  }

  /** Reads the Secret, creating it or taking a due step. Concurrent calls share one refresh. */
  refresh(): Promise<void> {
    this.#running ??= this.#refresh().finally(() => (this.#running = undefined));
    return this.#running;
  }

  async #refresh(): Promise<void> {
    let secret = await this.#secret.read();
    if (secret === undefined) {
      // Recreated with the keys this replica has, so no URL it signed or verified changes meaning.
      const now = this.#now();
      const body = this.#body({ current: this.#ring?.current ?? randomBytes(KEY_BYTES), previous: this.#ring?.previous }, now);
      const { object, created } = await this.#secret.create(body);
      secret = object;
      if (created) this.#event('created', secret);
    }
    const step = this.#due(keysOf(secret));
    if (step !== undefined) {
      const { object, won } = await this.#secret.update(this.#body(step.keys, step.rotatedAt, step.announcedAt, secret));
      secret = object;
      if (won) this.#event(step.action, secret);
    }
    this.#adopt(secret);
  }

  /** The step the Secret is due for, if any. */
  #due(k: Keys): Step | undefined {
    const now = this.#now();
    if (k.current === undefined) return { action: 'dated', keys: { current: randomBytes(KEY_BYTES), previous: k.previous ?? k.next }, rotatedAt: now };
    // Missing, unreadable or absurdly far ahead: record now, so the next step is a full wait away.
    if (!Number.isFinite(k.rotatedAt) || k.rotatedAt > now + this.#rotateAfterMs) {
      return { action: 'dated', keys: { current: k.current, previous: k.previous, next: k.next }, rotatedAt: now, announcedAt: k.next && now };
    }
    if (k.next !== undefined) {
      if (!Number.isFinite(k.announcedAt) || k.announcedAt > now + this.#leadMs) {
        return { action: 'dated', keys: { current: k.current, next: k.next }, rotatedAt: k.rotatedAt, announcedAt: now };
      }
      if (now - k.announcedAt < this.#leadMs) return undefined;
      return { action: 'rotated', keys: { current: k.next, previous: k.current }, rotatedAt: now };
    }
    // A short key (written by hand) is replaced at once, through the same announcement.
    if (k.current.length < KEY_BYTES || now - k.rotatedAt >= this.#rotateAfterMs - this.#leadMs) {
      return { action: 'announced', keys: { current: k.current, next: randomBytes(KEY_BYTES) }, rotatedAt: k.rotatedAt, announcedAt: now };
    }
    return undefined;
  }

  #body(keys: Step['keys'], rotatedAt: number, announcedAt?: number, base?: V1Secret): V1Secret {
    const meta = base?.metadata ?? {};
    const { [ROTATED_AT_ANNOTATION]: _r, [NEXT_ANNOUNCED_AT_ANNOTATION]: _n, ...annotations } = meta.annotations ?? {};
    const { current, previous, next } = keys;
    return {
      ...base,
      apiVersion: 'v1',
      kind: 'Secret',
      type: base?.type ?? 'Opaque',
      metadata: {
        ...meta,
        labels: { ...meta.labels, [MANAGED_BY_LABEL]: MANAGED_BY },
        annotations: {
          ...annotations,
          [ROTATED_AT_ANNOTATION]: new Date(rotatedAt).toISOString(),
          ...(next && announcedAt !== undefined && { [NEXT_ANNOUNCED_AT_ANNOTATION]: new Date(announcedAt).toISOString() }),
        },
      },
      data: {
        current: current.toString('base64'),
        ...(next ? { next: next.toString('base64') } : previous && !previous.equals(current) && { previous: previous.toString('base64') }),
      },
    };
  }

  /** Makes the Secret's keys the ones in use, keeping keys that just left it verifying for a while. */
  #adopt(secret: V1Secret): void {
    const k = keysOf(secret);
    const current = k.current;
    if (current === undefined) throw new Error(`Secret ${this.#ref} has no key "current"`);
    // The one other verifying slot: the announced key first (it is about to sign), else the previous one.
    const other = k.next ?? k.previous;
    const now = this.#now();
    const old = this.#ring;
    const inRing = (key: Buffer): boolean => key.equals(current) || (other?.equals(key) ?? false);
    // Oldest first: the last one retired is the one that signed most recently.
    for (const key of [old?.previous, old?.current]) {
      if (key !== undefined && !inRing(key) && !this.#retired.some((r) => r.key.equals(key))) this.#retired.push({ key, until: now + this.#retainMs });
    }
    this.#retired = this.#retired.filter((r) => r.until > now && !inRing(r.key));
    const verifying = other ?? this.#retired.at(-1)?.key;
    this.#ring = { current, ...(verifying && { previous: verifying }) };
    if (!this.#announced?.equals(current)) this.#event(old === undefined ? 'loaded' : 'changed', secret);
  }

  #event(action: SigningKeyEvent['action'], secret: V1Secret): void {
    const current = keysOf(secret).current;
    this.#announced = current;
    try {
      this.#onEvent({ action, secret: this.#ref, keyId: current ? keyId(current) : '', rotatedAt: secret.metadata?.annotations?.[ROTATED_AT_ANNOTATION] ?? '' });
    } catch {
      // A throwing log callback must not break the keys.
    }
  }

  #report(err: unknown): void {
    try {
      this.#onError(new Error(`refreshing the signing keys from Secret ${this.#ref} failed: ${err instanceof Error ? err.message : String(err)}; keeping the keys in hand`, { cause: err }));
    } catch {
      // A throwing error handler must not break the timer.
    }
  }
}
