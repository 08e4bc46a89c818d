/**
 * The browser page's session: the caller's bearer token, sealed into a cookie the page's scripts never
 * see (`HttpOnly`), sent only over HTTPS (`Secure`) and only by pages of this gateway (`SameSite=Strict`,
 * and the `__Host-` prefix: no `Domain`, path `/`, so no other host, subdomain or path can set or
 * shadow it).
 *
 * The cookie holds the token, not a decision: every request with it is authenticated and authorized
 * again exactly like a bearer request, through the same caches, so a revoked or expired token ends
 * the session within the token cache's period. The session itself ends at its maximum age (sealed
 * inside, so a client cannot extend it by keeping the cookie) or at sign-out.
 *
 * Sealing is AES-256-GCM with a key derived (HKDF-SHA256, its own label) from the keys the replicas
 * share: in kubernetes mode the signing-key Secret's (auth/signing-keys.ts), so any replica opens a
 * cookie another sealed, and a cookie sealed with the key before a rotation still opens while that
 * key verifies (then the page seals it again with the current key); in local mode a key made at
 * start. The label keeps a session key from ever being the URL-signing key itself.
 *
 * Who reaches it: anyone who can reach the download port can send any cookie. What a hostile value
 * does: anything but a cookie this gateway sealed, unaltered and unexpired, opens to nothing (a
 * tampered byte fails GCM's tag; a wrong shape, version or key id is refused before decrypting), and
 * the caller is then unauthenticated. Nothing of a cookie's value is ever logged or echoed.
 */
import { parseCookie } from 'cookie';
import { createCipheriv, createDecipheriv, createHash, hkdfSync, randomBytes, timingSafeEqual } from 'node:crypto';
import type { KeyRing } from '../../auth/signed-urls.ts';

export const SESSION_COOKIE = '__Host-vds-session';
/** The form token of the page's forms (sign-in, sign-out): a random value, also in a hidden field. */
export const FORM_COOKIE = '__Host-vds-form';
export const DEFAULT_SESSION_MAX_AGE_S = 8 * 3600;
/** Browsers keep cookies of up to 4096 bytes (name, value and attributes); a longer one is dropped silently. */
export const MAX_COOKIE_VALUE = 3800;

const VERSION = 'v1';
const LABEL = 'velero-download-server browser session v1';
const IV_BYTES = 12;
const TAG_BYTES = 16;
/** base64url of the parts: key id (6 bytes), IV (12), tag (16). */
const SEALED = /^v1\.([A-Za-z0-9_-]{8})\.([A-Za-z0-9_-]{16})\.([A-Za-z0-9_-]+)\.([A-Za-z0-9_-]{22})$/;
/** How far in the future an issue time may lie (replicas' clocks). */
const CLOCK_SKEW_MS = 30_000;

interface DerivedKey {
  id: string;
  key: Buffer;
}

/** What an opened cookie holds. */
export interface Session {
  token: string;
  /** ms since the epoch. */
  expiresAt: number;
  /** Sealed with a key that no longer seals (before a rotation): seal it again. */
  stale: boolean;
}

export class SessionCodec {
  readonly #keys: () => KeyRing;
  readonly #now: () => number;
  /** Derived keys by source key; the ring changes about once a day. */
  #derived = new WeakMap<Buffer, DerivedKey>();

  constructor(keys: () => KeyRing, now: () => number = Date.now) {
    this.#keys = keys;
    this.#now = now;
  }

  #derive(source: Buffer): DerivedKey {
    let d = this.#derived.get(source);
    if (!d) {
      const key = Buffer.from(hkdfSync('sha256', source, Buffer.alloc(0), LABEL, 32));
      // The id names the key without revealing anything of it (a digest of the derived key).
      const id = createHash('sha256').update(key).digest().subarray(0, 6).toString('base64url');
      d = { id, key };
      this.#derived.set(source, d);
    }
    return d;
  }

  /**
   * The cookie value for `token`, ending `maxAgeMs` from now. RangeError when the value would not fit
   * in a cookie (a token of more than ~2.7 KB): the caller says so rather than set a cookie the
   * browser drops.
   */
  seal(token: string, maxAgeMs: number): string {
    const { id, key } = this.#derive(this.#keys().current);
    const now = this.#now();
    const iv = randomBytes(IV_BYTES);
    const cipher = createCipheriv('aes-256-gcm', key, iv);
    cipher.setAAD(Buffer.from(`${VERSION}.${id}`));
    const plain = JSON.stringify({ t: token, i: Math.floor(now / 1000), e: Math.floor((now + maxAgeMs) / 1000) });
    const sealed = Buffer.concat([cipher.update(plain, 'utf8'), cipher.final()]);
    const value = `${VERSION}.${id}.${iv.toString('base64url')}.${sealed.toString('base64url')}.${cipher.getAuthTag().toString('base64url')}`;
    if (value.length > MAX_COOKIE_VALUE) throw new RangeError('the token is too long to be kept in a browser session');
    return value;
  }

  /** The session a cookie value holds, or undefined for anything not sealed here, altered or expired. */
  open(value: string | undefined): Session | undefined {
    if (value === undefined || value.length > MAX_COOKIE_VALUE) return undefined;
    const m = SEALED.exec(value);
    if (!m) return undefined;
    const [, id, iv, body, tag] = m as unknown as [string, string, string, string, string];
    // Only the canonical spelling: base64url's last character may carry padding bits, and two
    // spellings of one cookie would make one of them an unaltered copy that "was altered".
    const bytes = [iv, body, tag].map((p) => Buffer.from(p, 'base64url'));
    if (bytes.some((b, k) => b.toString('base64url') !== [iv, body, tag][k])) return undefined;
    const [ivBytes, bodyBytes, tagBytes] = bytes as [Buffer, Buffer, Buffer];
    const ring = this.#keys();
    const current = this.#derive(ring.current);
    const previous = ring.previous ? this.#derive(ring.previous) : undefined;
    // Both ids are compared whichever matches, so the time taken does not tell which key sealed it.
    const isCurrent = sameId(id, current.id);
    const isPrevious = previous !== undefined && sameId(id, previous.id);
    const key = isCurrent ? current : isPrevious ? previous : undefined;
    if (!key) return undefined;
    let plain: string;
    try {
      const decipher = createDecipheriv('aes-256-gcm', key.key, ivBytes, { authTagLength: TAG_BYTES });
      decipher.setAAD(Buffer.from(`${VERSION}.${id}`));
      decipher.setAuthTag(tagBytes);
      plain = Buffer.concat([decipher.update(bodyBytes), decipher.final()]).toString('utf8');
    } catch {
      return undefined;
    }
    let parsed: unknown;
    try {
      parsed = JSON.parse(plain);
    } catch {
      return undefined;
    }
    const { t, i, e } = (parsed ?? {}) as { t?: unknown; i?: unknown; e?: unknown };
    if (typeof t !== 'string' || t === '' || typeof i !== 'number' || typeof e !== 'number') return undefined;
    const now = this.#now();
    if (i * 1000 > now + CLOCK_SKEW_MS || e * 1000 <= now) return undefined;
    return { token: t, expiresAt: e * 1000, stale: !isCurrent };
  }
}

function sameId(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}

/** A new form token: 32 random bytes, base64url. */
export function newFormToken(): string {
  return randomBytes(32).toString('base64url');
}

const FORM_TOKEN = /^[A-Za-z0-9_-]{43}$/;

/** Whether the form field equals the form cookie (both well-formed), compared in constant time. */
export function formTokenMatches(cookie: string | undefined, field: unknown): boolean {
  if (typeof field !== 'string' || cookie === undefined || !FORM_TOKEN.test(cookie) || !FORM_TOKEN.test(field)) return false;
  return timingSafeEqual(Buffer.from(cookie), Buffer.from(field));
}

/** A ring of one key made now, for a gateway without shared keys (local mode: one process). */
export function processKeyRing(): () => KeyRing {
  const ring: KeyRing = { current: randomBytes(32) };
  return () => ring;
}

/**
 * Whether a request may use the session cookie at all: it comes from this gateway's own pages
 * (`Sec-Fetch-Site: same-origin`), from the user (`none`: typed, bookmarked), or from a browser that
 * sends no fetch metadata. A request another site started (`cross-site`), or a sibling host of the
 * same site (`same-site`, where SameSite=Strict still sends the cookie), is treated as carrying no
 * session: an image or link elsewhere can never act as the user.
 */
export function sessionAllowed(secFetchSite: string | string[] | undefined): boolean {
  return secFetchSite === undefined || secFetchSite === 'same-origin' || secFetchSite === 'none';
}

/** The session cookie's value in a Cookie header, if there is one. */
export function sessionCookieOf(header: string | undefined): string | undefined {
  if (!header || !header.includes(SESSION_COOKIE)) return undefined;
  return parseCookie(header)[SESSION_COOKIE];
}
