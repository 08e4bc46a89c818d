import { createDecipheriv, hkdfSync, pbkdf2, scrypt } from 'node:crypto';
import type { BlobStorage } from './blobs.ts';
import { CorruptRepositoryError, KopiaNotFoundError, UnsupportedFeatureError, WrongPasswordError } from './errors.ts';

/** The plaintext JSON of `kopia.repository` (repo/format/format_blob.go). */
interface FormatBlobJSON {
  tool?: string;
  buildVersion?: string;
  uniqueID?: string;
  keyAlgo?: string;
  encryption?: string;
  encryptedBlockFormat?: string;
}

/** What the reader needs of the repository's decrypted format (repo/format/content_format.go). */
export interface RepositoryFormat {
  /** Content hash, e.g. BLAKE2B-256-128; not needed to read, kept for reports. */
  hash: string;
  /** Content encryption, AES256-GCM-HMAC-SHA256 or CHACHA20-POLY1305-HMAC-SHA256. */
  encryption: string;
  masterKey: Buffer;
  /** Format version 1..3. */
  version: number;
  indexVersion: number;
  /** True when the index is kept in epochs (xn/xs/xr/xe), false for the legacy `n` index blobs. */
  epochsEnabled: boolean;
  splitter: string;
  buildVersion: string;
  keyAlgo: string;
}

export const FORMAT_BLOB_ID = 'kopia.repository';
export const BLOBCFG_BLOB_ID = 'kopia.blobcfg';

const SUPPORTED_CONTENT_ENCRYPTION = new Set(['AES256-GCM-HMAC-SHA256', 'CHACHA20-POLY1305-HMAC-SHA256']);
const GCM_NONCE = 12;
const GCM_TAG = 16;

/**
 * Derives the 32-byte format key from the password as kopia does (internal/crypto/pb_key_deriver_*.go):
 * the salt is the repository's unique id. scrypt N=65536 r=8 p=1 needs 64 MiB plus a little, above
 * Node's 32 MiB default `maxmem`.
 */
export async function deriveFormatKey(keyAlgo: string, password: string, salt: Buffer): Promise<Buffer> {
  const scryptParams = /^scrypt-(\d+)-(\d+)-(\d+)$/.exec(keyAlgo);
  if (scryptParams) {
    const [N, r, p] = [Number(scryptParams[1]), Number(scryptParams[2]), Number(scryptParams[3])];
    if (keyAlgo !== 'scrypt-65536-8-1') throw new UnsupportedFeatureError(`keyAlgo:${keyAlgo}`, `key derivation ${keyAlgo} is not supported`);
    return new Promise((resolve, reject) => {
      scrypt(password, salt, 32, { N, r, p, maxmem: 128 * N * r * p + 16 * 1024 * 1024 }, (err, key) => (err ? reject(err) : resolve(key)));
    });
  }
  if (keyAlgo === 'pbkdf2-sha256-600000') {
    return new Promise((resolve, reject) => {
      pbkdf2(password, salt, 600_000, 32, 'sha256', (err, key) => (err ? reject(err) : resolve(key)));
    });
  }
  throw new UnsupportedFeatureError(`keyAlgo:${keyAlgo}`, `key derivation ${keyAlgo} is not supported`);
}

/** HKDF-SHA256 as kopia's DeriveKeyFromMasterKey (internal/crypto/key_derivation.go): salt = unique id, info = purpose. */
export function hkdf(ikm: Buffer, salt: Buffer, info: string, length: number): Buffer {
  return Buffer.from(hkdfSync('sha256', ikm, salt, Buffer.from(info), length));
}

/**
 * Decrypts a blob encrypted with the format key (the format block, `kopia.blobcfg`):
 * `nonce(12) ‖ ciphertext ‖ tag(16)`, AES-256-GCM, key HKDF(formatKey, uniqueID, "AES"),
 * additional data HKDF(formatKey, uniqueID, "CHECKSUM"). Returns undefined when the tag fails.
 */
function decryptWithFormatKey(data: Buffer, formatKey: Buffer, uniqueID: Buffer): Buffer | undefined {
  if (data.length < GCM_NONCE + GCM_TAG) return undefined;
  const key = hkdf(formatKey, uniqueID, 'AES', 32);
  const aad = hkdf(formatKey, uniqueID, 'CHECKSUM', 32);
  const decipher = createDecipheriv('aes-256-gcm', key, data.subarray(0, GCM_NONCE), { authTagLength: GCM_TAG });
  decipher.setAAD(aad);
  decipher.setAuthTag(data.subarray(data.length - GCM_TAG));
  try {
    return Buffer.concat([decipher.update(data.subarray(GCM_NONCE, data.length - GCM_TAG)), decipher.final()]);
  } catch {
    return undefined;
  }
}

function parseJSON(data: Buffer, what: string): unknown {
  try {
    return JSON.parse(data.toString('utf8')) as unknown;
  } catch (err) {
    throw new CorruptRepositoryError('malformed', `${what} is not valid JSON`, { cause: err });
  }
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Derives the format key; the slow step (scrypt ~0.1-0.2 s and 64 MiB; pbkdf2 ~0.3 s), worth caching per repository. */
export interface FormatKeyMaterial {
  blob: FormatBlobJSON;
  uniqueID: Buffer;
  formatKey: Buffer;
}

/**
 * Reads `kopia.repository` (and `kopia.blobcfg`), derives the key from `password`, decrypts and
 * checks the format. Refuses, by name, what this reader does not implement.
 */
export async function readFormat(
  blobs: BlobStorage,
  password: string,
  signal: AbortSignal,
  derive: (keyAlgo: string, password: string, salt: Buffer) => Promise<Buffer> = deriveFormatKey,
): Promise<RepositoryFormat> {
  let raw: Buffer;
  try {
    raw = await blobs.read(FORMAT_BLOB_ID, signal);
  } catch (err) {
    if (err instanceof KopiaNotFoundError) throw new KopiaNotFoundError('blob', 'no kopia repository here: kopia.repository is missing', { cause: err });
    throw err;
  }
  const parsed = parseJSON(raw, 'kopia.repository');
  if (!isRecord(parsed)) throw new CorruptRepositoryError('malformed', 'kopia.repository is not a JSON object');
  const blob = parsed as FormatBlobJSON;
  if (blob.encryption !== 'AES256_GCM') {
    throw new UnsupportedFeatureError(`formatEncryption:${String(blob.encryption)}`, `format blob encryption ${String(blob.encryption)} is not supported (only AES256_GCM)`);
  }
  if (typeof blob.uniqueID !== 'string' || typeof blob.encryptedBlockFormat !== 'string' || typeof blob.keyAlgo !== 'string') {
    throw new CorruptRepositoryError('malformed', 'kopia.repository lacks uniqueID, keyAlgo or encryptedBlockFormat');
  }
  const uniqueID = Buffer.from(blob.uniqueID, 'base64');
  const formatKey = await derive(blob.keyAlgo, password, uniqueID);
  signal.throwIfAborted();
  const plain = decryptWithFormatKey(Buffer.from(blob.encryptedBlockFormat, 'base64'), formatKey, uniqueID);
  if (!plain) throw new WrongPasswordError();

  // kopia.blobcfg holds the storage retention settings, encrypted with the same key; a reader has no
  // use for them, but a blobcfg that does not decrypt means a mixed-up repository.
  try {
    const cfg = await blobs.read(BLOBCFG_BLOB_ID, signal);
    if (cfg.length > 0 && !decryptWithFormatKey(cfg, formatKey, uniqueID)) {
      throw new CorruptRepositoryError('aead', 'kopia.blobcfg does not decrypt with the format key');
    }
  } catch (err) {
    if (!(err instanceof KopiaNotFoundError)) throw err;
  }

  return checkFormat(parseJSON(plain, 'the format block'), blob);
}

function checkFormat(decoded: unknown, blob: FormatBlobJSON): RepositoryFormat {
  const f = isRecord(decoded) && isRecord(decoded.format) ? decoded.format : undefined;
  if (!f) throw new CorruptRepositoryError('malformed', 'the format block has no "format" object');
  const ecc = typeof f.ecc === 'string' ? f.ecc : '';
  const eccOverhead = typeof f.eccOverheadPercent === 'number' ? f.eccOverheadPercent : 0;
  if (eccOverhead > 0) {
    throw new UnsupportedFeatureError(`ecc:${ecc}`, `the repository uses error correction (${ecc}, ${eccOverhead}%), which this reader does not support`);
  }
  if (f.upgradeLock !== undefined && f.upgradeLock !== null) {
    throw new UnsupportedFeatureError('upgradeLock', 'the repository is locked for a format upgrade; read it after the upgrade completes');
  }
  if (Array.isArray(f.requiredFeatures) && f.requiredFeatures.length > 0) {
    const names = f.requiredFeatures.map((x) => (isRecord(x) && typeof x.feature === 'string' ? x.feature : JSON.stringify(x)));
    throw new UnsupportedFeatureError(`requiredFeatures:${names.join(',')}`, `the repository requires features this reader does not know: ${names.join(', ')}`);
  }
  const encryption = typeof f.encryption === 'string' ? f.encryption : '';
  if (!SUPPORTED_CONTENT_ENCRYPTION.has(encryption)) {
    throw new UnsupportedFeatureError(`encryption:${encryption}`, `content encryption ${encryption || '(none)'} is not supported`);
  }
  const version = typeof f.version === 'number' ? f.version : 1;
  if (version < 1 || version > 3) throw new UnsupportedFeatureError(`formatVersion:${version}`, `format version ${version} is not supported`);
  const indexVersion = typeof f.indexVersion === 'number' ? f.indexVersion : 1;
  if (indexVersion !== 1 && indexVersion !== 2) {
    throw new UnsupportedFeatureError(`indexVersion:${indexVersion}`, `index version ${indexVersion} is not supported`);
  }
  if (typeof f.masterKey !== 'string') throw new CorruptRepositoryError('malformed', 'the format block has no master key');
  const epochs = isRecord(f.epochParameters) && f.epochParameters.Enabled === true;
  return {
    hash: typeof f.hash === 'string' ? f.hash : '',
    encryption,
    masterKey: Buffer.from(f.masterKey, 'base64'),
    version,
    indexVersion,
    epochsEnabled: epochs,
    splitter: typeof f.splitter === 'string' ? f.splitter : '',
    buildVersion: blob.buildVersion ?? '',
    keyAlgo: blob.keyAlgo ?? '',
  };
}
