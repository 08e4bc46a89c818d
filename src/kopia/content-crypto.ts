import { createDecipheriv, createHmac, hkdfSync } from 'node:crypto';
import { CorruptRepositoryError } from './errors.ts';

const NONCE = 12;
const TAG = 16;

/**
 * Decrypts contents and index blobs (repo/encryption/): a per-item key HMAC-SHA256(kds, iv) with
 * kds = HKDF-SHA256(masterKey, salt "encryption"); the item is `nonce(12) ‖ ciphertext ‖ tag(16)`
 * with the iv as additional data. The plaintext is returned only after the tag verifies.
 */
export class ContentDecryptor {
  readonly #kds: Buffer;
  readonly #cipher: 'aes-256-gcm' | 'chacha20-poly1305';

  constructor(encryption: string, masterKey: Buffer) {
    this.#kds = Buffer.from(hkdfSync('sha256', masterKey, Buffer.from('encryption'), Buffer.alloc(0), 32));
    this.#cipher = encryption === 'CHACHA20-POLY1305-HMAC-SHA256' ? 'chacha20-poly1305' : 'aes-256-gcm';
  }

  /** `what` names the item in the error (never key material). */
  decrypt(data: Buffer, iv: Buffer, what: string): Buffer {
    if (data.length < NONCE + TAG) throw new CorruptRepositoryError('truncated', `${what} is too short to be encrypted data (${data.length} bytes)`);
    const key = createHmac('sha256', this.#kds).update(iv).digest();
    const nonce = data.subarray(0, NONCE);
    const decipher =
      this.#cipher === 'aes-256-gcm'
        ? createDecipheriv('aes-256-gcm', key, nonce, { authTagLength: TAG })
        : createDecipheriv('chacha20-poly1305', key, nonce, { authTagLength: TAG });
    decipher.setAAD(iv);
    decipher.setAuthTag(data.subarray(data.length - TAG));
    const body = decipher.update(data.subarray(NONCE, data.length - TAG));
    try {
      // GCM and Poly1305 decrypt before they authenticate: `body` is released only if final() passes.
      return Buffer.concat([body, decipher.final()]);
    } catch (err) {
      throw new CorruptRepositoryError('aead', `${what} fails its authentication tag: damaged or not of this repository`, { cause: err });
    }
  }
}

/** The iv of a packed content: the last 16 bytes of its hash (getPackedContentIV). */
export function contentIV(hash: Buffer): Buffer {
  return hash.subarray(Math.max(0, hash.length - 16));
}

/** The iv of an index or session blob: the 32 hex digits before the first `-` of its id (blobcrypto). */
export function blobIV(blobID: string): Buffer {
  const dash = blobID.indexOf('-');
  const head = dash < 0 ? blobID : blobID.slice(0, dash);
  const hex = head.slice(-32);
  if (!/^[0-9a-f]{32}$/.test(hex)) throw new CorruptRepositoryError('malformed', `blob id ${blobID} carries no iv`);
  return Buffer.from(hex, 'hex');
}
