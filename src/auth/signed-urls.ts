/**
 * Signed gateway URLs for the stock velero CLI, which fetches `status.downloadURL` with a plain GET
 * and no token: `<base>/v1/namespaces/<ns>/downloadrequests/<name>?expires=<unix s>&signature=<b64url>`
 * with signature = HMAC-SHA256(key, "GET\n<path>\n<expires>"). Such a URL grants that one
 * DownloadRequest's target until it expires: the same power as the pre-signed store URL Velero writes
 * in the same place. Verification is constant time and accepts the previous key too, so URLs signed
 * just before a key rotation stay valid until they expire.
 */
import { createHmac, timingSafeEqual } from 'node:crypto';

export interface KeyRing {
  /** Signs new URLs. */
  current: Buffer;
  /** Also verifies: the key of before the last rotation, or the announced key of after the next (auth/signing-keys.ts). */
  previous?: Buffer;
}

export type Verdict = { ok: true } | { ok: false; reason: string };

function mac(key: Buffer, method: string, path: string, expires: number): Buffer {
  return createHmac('sha256', key).update(`${method}\n${path}\n${expires}`).digest();
}

/** The query string for `path`, valid until `expires` (Unix seconds). */
export function signPath(keys: KeyRing, path: string, expires: number): string {
  const signature = mac(keys.current, 'GET', path, expires).toString('base64url');
  return `${path}?expires=${expires}&signature=${signature}`;
}

/** Checks a signed request; HEAD is verified as GET (it reveals less). */
export function verifySignature(keys: KeyRing, path: string, expiresRaw: string | undefined, signatureRaw: string | undefined, nowSeconds: number): Verdict {
  if (!expiresRaw || !/^\d{1,12}$/.test(expiresRaw)) return { ok: false, reason: 'the signed URL has no valid expires parameter' };
  if (!signatureRaw || !/^[A-Za-z0-9_-]{43}$/.test(signatureRaw)) return { ok: false, reason: 'the signed URL has no valid signature parameter' };
  const expires = Number(expiresRaw);
  const given = Buffer.from(signatureRaw, 'base64url');
  // 43 characters carry 258 bits for 256: the last one's two low bits are padding. Only the canonical
  // spelling is accepted, so one signature has one string form.
  if (given.toString('base64url') !== signatureRaw) return { ok: false, reason: 'the signed URL has no valid signature parameter' };
  let match = false;
  // Both keys are always tried, so the time taken does not tell which one (or whether) matched.
  for (const key of [keys.current, keys.previous ?? keys.current]) {
    const expected = mac(key, 'GET', path, expires);
    if (given.length === expected.length && timingSafeEqual(given, expected)) match = true;
  }
  if (!match) return { ok: false, reason: 'the URL signature does not match (altered, or signed with an unknown key)' };
  // The expiry is checked after the signature, so an altered expiry reads as what it is: altered.
  if (expires <= nowSeconds) return { ok: false, reason: `the signed URL expired at ${new Date(expires * 1000).toISOString()}` };
  return { ok: true };
}
