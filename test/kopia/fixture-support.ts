/** Shared by the Kopia reader's tests: the committed real-kopia fixtures and their manifests. */
import { createCipheriv, createDecipheriv, hkdfSync, pbkdf2Sync, randomBytes } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Readable } from 'node:stream';
import { deriveFormatKey } from '../../src/kopia/format.ts';
import { FilesystemStore } from '../../src/stores/fs.ts';
import type { GetOptions, ObjectBody, ObjectStore } from '../../src/stores/types.ts';

export const FIXTURES = fileURLToPath(new URL('../fixtures/kopia/', import.meta.url));
export const NAMES = ['velero-aes256gcm', 'velero-chacha20', 'compacted'] as const;
export const PASSWORD = 'static-passw0rd';

export interface ManifestEntry {
  path: string;
  type: 'f' | 'd' | 's';
  mode: string;
  mtime: string;
  uid: number;
  gid: number;
  size?: number;
  sha256?: string;
  target?: string;
  objectID: string;
  chunks?: { start: number; length: number; objectID: string }[];
}
export interface ManifestSnapshot {
  id: string;
  source: { host: string; userName: string; path: string };
  description: string;
  tags: Record<string, string>;
  pins: string[];
  startTime: string;
  endTime: string;
  rootObjectID: string;
  compression: string;
  entries: ManifestEntry[];
}
export interface ManifestContent {
  contentID: string;
  packFile: string;
  packOffset: number;
  length: number;
  originalLength: number;
  compression: number;
  deleted: boolean;
  time: number;
}
export interface Manifest {
  fixture: string;
  repository: {
    dir: string;
    password: string;
    hash: string;
    encryption: string;
    formatVersion: number;
    indexVersion: number;
    splitter: string;
    formatBlob: { keyAlgo: string; buildVersion: string };
    contents: ManifestContent[];
  };
  snapshots: ManifestSnapshot[];
}

export async function loadManifest(name: string): Promise<Manifest> {
  return JSON.parse(await readFile(join(FIXTURES, name, 'manifest.json'), 'utf8')) as Manifest;
}

export function repoDir(name: string): string {
  return join(FIXTURES, name, 'repo');
}

export function fsStore(root: string): FilesystemStore {
  return new FilesystemStore({ root });
}

export function signal(): AbortSignal {
  return new AbortController().signal;
}

export async function readAll(stream: Readable): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const c of stream) parts.push(c as Buffer);
  return Buffer.concat(parts);
}

/** An ObjectStore that records every get (key and range) and every list (prefix) it forwards. */
export function recording(store: ObjectStore): { store: ObjectStore; gets: { key: string; start?: number; end?: number }[]; lists: string[] } {
  const gets: { key: string; start?: number; end?: number }[] = [];
  const lists: string[] = [];
  return {
    gets,
    lists,
    store: {
      stat: (key, opts) => store.stat(key, opts),
      list: (prefix, opts) => {
        lists.push(prefix);
        return store.list(prefix, opts);
      },
      get: async (key: string, opts: GetOptions): Promise<ObjectBody> => {
        gets.push({ key, ...(opts.range ? { start: opts.range.start, end: opts.range.end } : {}) });
        return store.get(key, opts);
      },
    },
  };
}

// ------------------------------------------------------------------ a test-only format writer
/** Re-encrypts kopia.repository's format block after `edit` changes its JSON (and `editOuter` the plaintext wrapper). */
export async function rewriteFormat(
  dir: string,
  edit: (format: Record<string, unknown>) => void,
  editOuter?: (outer: Record<string, unknown>) => void,
  /** Re-key the format block with kopia's pbkdf2 (HMAC-SHA256, 600,000 rounds, salt = unique id), derived here by node's pbkdf2Sync. */
  rekeyPbkdf2?: boolean,
): Promise<void> {
  const file = join(dir, 'kopia.repository.f');
  const outer = JSON.parse(await readFile(file, 'utf8')) as Record<string, unknown>;
  const uid = Buffer.from(String(outer.uniqueID), 'base64');
  const key = await deriveFormatKey(String(outer.keyAlgo), PASSWORD, uid);
  let aesKey = Buffer.from(hkdfSync('sha256', key, uid, 'AES', 32));
  let aad = Buffer.from(hkdfSync('sha256', key, uid, 'CHECKSUM', 32));
  const blob = Buffer.from(String(outer.encryptedBlockFormat), 'base64');
  const d = createDecipheriv('aes-256-gcm', aesKey, blob.subarray(0, 12));
  d.setAAD(aad);
  d.setAuthTag(blob.subarray(blob.length - 16));
  const plain = JSON.parse(Buffer.concat([d.update(blob.subarray(12, blob.length - 16)), d.final()]).toString()) as { format: Record<string, unknown> };
  edit(plain.format);
  const seal = (data: Buffer): Buffer => {
    const nonce = randomBytes(12);
    const c = createCipheriv('aes-256-gcm', aesKey, nonce);
    c.setAAD(aad);
    const ct = Buffer.concat([c.update(data), c.final()]);
    return Buffer.concat([nonce, ct, c.getAuthTag()]);
  };
  if (rekeyPbkdf2) {
    // kopia.blobcfg is sealed with the same key: open it with the old one before re-keying.
    const cfgFile = join(dir, 'kopia.blobcfg.f');
    const cfg = await readFile(cfgFile);
    const dc = createDecipheriv('aes-256-gcm', aesKey, cfg.subarray(0, 12));
    dc.setAAD(aad);
    dc.setAuthTag(cfg.subarray(cfg.length - 16));
    const cfgPlain = Buffer.concat([dc.update(cfg.subarray(12, cfg.length - 16)), dc.final()]);
    const newKey = pbkdf2Sync(PASSWORD, uid, 600_000, 32, 'sha256');
    aesKey = Buffer.from(hkdfSync('sha256', newKey, uid, 'AES', 32));
    aad = Buffer.from(hkdfSync('sha256', newKey, uid, 'CHECKSUM', 32));
    outer.keyAlgo = 'pbkdf2-sha256-600000';
    await writeFile(cfgFile, seal(cfgPlain));
  }
  outer.encryptedBlockFormat = seal(Buffer.from(JSON.stringify(plain))).toString('base64');
  editOuter?.(outer);
  await writeFile(file, JSON.stringify(outer));
}

