/** The process's Kopia repository pool: one per gateway, shared by every volume request. */
import type { Config } from '../config/config.ts';
import { deriveFormatKey } from '../kopia/format.ts';
import { KeyCache } from '../kopia/key-cache.ts';
import { RepositoryPool } from '../kopia/pool.ts';

export function kopiaPool(_config: Config): RepositoryPool {
  return new RepositoryPool({ keys: new KeyCache(deriveFormatKey) });
}
