import { InvalidRequestError } from './errors.ts';

/**
 * A content id as kopia writes it: an optional one-letter prefix `g`..`z` (`k` directories, `x`
 * indirect object lists, `m` manifests) and the hex of the content's hash. As an index key it is the
 * prefix byte (0 when none) followed by the hash bytes (repo/content/index/id.go).
 */
export interface ContentID {
  prefix: string;
  hash: Buffer;
}

export function parseContentID(id: string): ContentID {
  const m = /^([g-z]?)((?:[0-9a-f]{2}){1,64})$/.exec(id);
  if (!m) throw new InvalidRequestError(`malformed content id ${JSON.stringify(id.slice(0, 80))}`);
  return { prefix: m[1] ?? '', hash: Buffer.from(m[2] ?? '', 'hex') };
}

export function contentIDKey(id: ContentID): Buffer {
  const key = Buffer.alloc(1 + id.hash.length);
  key[0] = id.prefix === '' ? 0 : id.prefix.charCodeAt(0);
  id.hash.copy(key, 1);
  return key;
}

export function contentIDFromKey(key: Buffer): string {
  const p = key[0] ?? 0;
  return (p === 0 ? '' : String.fromCharCode(p)) + key.subarray(1).toString('hex');
}
