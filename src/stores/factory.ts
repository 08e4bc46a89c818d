/**
 * Turns a StoreSpec into an ObjectStore. Filesystem locations live under a mount root: the bucket is a
 * directory below it (local-volume-provider's layout) and the prefix a directory below that.
 */
import { resolve } from 'node:path';
import { InvalidLocationError } from './errors.ts';
import { FilesystemStore } from './fs.ts';
import { keySegments, normalizePrefix } from './keys.ts';
import type { StoreFactory, StoreSpec } from './spec.ts';
import type { ObjectStore } from './types.ts';

export const FILESYSTEM_PROVIDERS: ReadonlySet<string> = new Set([
  'filesystem',
  'replicated.com/hostpath',
  'replicated.com/nfs',
  'replicated.com/pvc',
]);

export interface FactoryOptions {
  /** Where filesystem locations' buckets are directories. */
  fsRoot: string;
}

export class DefaultStoreFactory implements StoreFactory {
  readonly #opts: FactoryOptions;
  readonly #stores = new Map<string, ObjectStore>();

  constructor(opts: FactoryOptions) {
    this.#opts = opts;
  }

  forSpec(spec: StoreSpec): ObjectStore {
    if (!FILESYSTEM_PROVIDERS.has(spec.provider)) {
      throw new InvalidLocationError(`location ${spec.name}: provider "${spec.provider}" is not supported`);
    }
    // Bucket and prefix are configuration, yet they still must not climb out of the mount root.
    const bucket = spec.bucket === '' ? [] : keySegments(spec.bucket);
    const prefix = normalizePrefix(spec.prefix);
    const root = resolve(this.#opts.fsRoot, ...bucket, ...(prefix === '' ? [] : prefix.split('/')));
    let store = this.#stores.get(root);
    if (!store) {
      store = new FilesystemStore({ root });
      this.#stores.set(root, store);
    }
    return store;
  }
}
