/** The process's Kopia repository pool: one per gateway, shared by every volume request. */
import { readFile } from 'node:fs/promises';
import type { Config } from '../config/config.ts';
import { deriveFormatKey } from '../kopia/format.ts';
import { KeyCache } from '../kopia/key-cache.ts';
import { RepositoryPool } from '../kopia/pool.ts';
import { VELERO_DEFAULT_REPOSITORY_PASSWORD } from '../velero/volumes.ts';

export function kopiaPool(config: Config): RepositoryPool {
  return new RepositoryPool({ keys: new KeyCache(deriveFormatKey), cacheBytes: config.kopiaCacheBytes, indexMaxAgeMs: config.kopiaIndexMaxAgeMs });
}

/**
 * Local mode's repository password: the file's content without its final line break (as `echo`
 * writes one), or Velero's default. Read once at start; never logged.
 */
export async function localRepositoryPassword(config: Config): Promise<string> {
  if (config.repositoryPasswordFile === undefined) return VELERO_DEFAULT_REPOSITORY_PASSWORD;
  const text = await readFile(config.repositoryPasswordFile, 'utf8');
  const password = text.replace(/\r?\n$/, '');
  if (password === '') throw new Error(`--repository-password-file: ${config.repositoryPasswordFile} is empty`);
  return password;
}
