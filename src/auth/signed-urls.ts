/**
 * The gateway's MACs: HMAC-SHA256 with the signing keys every replica shares (Secret
 * `velero-download-server-signing-key`), over a list of parts, each length-prefixed so that no two
 * different lists give the same input. The DownloadRequest rules (src/velero/downloadrequests.ts)
 * decide what is signed: the requester record a DownloadRequest carries, and the gateway URL minted
 * for it. Verification is constant time, tries the current and the previous key alike (so the time
 * taken does not tell which matched), and accepts only the canonical base64url spelling of a
 * signature, so one signature has one string form.
 */
import { createHmac, timingSafeEqual } from 'node:crypto';

export interface KeyRing {
  /** Signs everything new. */
  current: Buffer;
  /** Also verifies: the key of before the last rotation, or the announced key of after the next (auth/signing-keys.ts). */
  previous?: Buffer;
}

/** Signs and checks lists of strings. */
export interface Signer {
  /** The signature (43 base64url characters) of `parts` with the current key. */
  sign(parts: readonly string[]): string;
  /** Whether `signature` is the canonical signature of `parts` with the current or the previous key. */
  verify(parts: readonly string[], signature: string): boolean;
}

/** The only form a signature takes: 256 bits in unpadded base64url. */
export const SIGNATURE = /^[A-Za-z0-9_-]{43}$/;

function mac(key: Buffer, parts: readonly string[]): Buffer {
  const h = createHmac('sha256', key);
  for (const p of parts) h.update(`${Buffer.byteLength(p)}:`).update(p);
  return h.digest();
}

/** A Signer over the keys `keys()` returns at each call (they rotate). */
export function keyRingSigner(keys: () => KeyRing): Signer {
  return {
    sign: (parts) => mac(keys().current, parts).toString('base64url'),
    verify(parts, signature) {
      if (!SIGNATURE.test(signature)) return false;
      const given = Buffer.from(signature, 'base64url');
      // 43 characters carry 258 bits for 256: the last one's two low bits are padding.
      if (given.toString('base64url') !== signature) return false;
      const ring = keys();
      let match = false;
      for (const key of [ring.current, ring.previous ?? ring.current]) {
        const expected = mac(key, parts);
        if (timingSafeEqual(given, expected)) match = true;
      }
      return match;
    },
  };
}
