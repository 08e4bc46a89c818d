/**
 * Kanister Profiles as sources: the contract between the resolver (Profile + its Secrets → a store)
 * and the routes that read objects or Kopia snapshots under a Profile's location. A Profile is a
 * tenant's object: it is resolved with the rules of a tenant's BackupStorageLocation (Secrets of its
 * own namespace only, never the gateway's credential or files, the endpoint guard).
 */
import type { StoreSpec } from '../stores/spec.ts';

/** Kanister's API group: Profiles are authorized there (`profiles/objects`, `profiles/snapshots`). */
export const KANISTER_GROUP = 'cr.kanister.io';

/** What a Profile route reads: objects under its location, or a Kopia snapshot under it. */
export type ProfileSubresource = 'objects' | 'snapshots';

/** What one Profile request asks for, before anything is looked up (the audit line names it). */
export interface ProfileTarget {
  namespace: string;
  profile: string;
  subresource: ProfileSubresource;
  /** The object key under the location's prefix, or the snapshot id and path inside it, for the audit line. */
  path: string;
}

/** A Profile's location, ready to read. */
export interface ProfileLocation {
  namespace: string;
  /** The Profile's name. */
  profile: string;
  /** The store (tenant rules applied). */
  spec: StoreSpec;
  /** The location's key prefix: '' or ending with '/'; object keys are confined under it. */
  prefix: string;
}

/** A Kopia repository Kanister wrote under a Profile's location. */
export interface ProfileRepository {
  location: ProfileLocation;
  /** The repository's key prefix relative to the store's root: path.join(location prefix, root path) + '/'. */
  prefix: string;
  /** The repository password (never logged, never in an error). */
  password: string;
}

export interface ProfileResolver {
  /**
   * The Profile's location. NotFoundError when the Profile is not there; KanisterLocationError (a
   * client-side mistake in the Profile or its Secrets: named, never with a secret value) when it
   * cannot be turned into a store.
   */
  location(namespace: string, profile: string, signal: AbortSignal): Promise<ProfileLocation>;
  /** The Kopia repository under the Profile's location (root path and password: see the resolver). */
  repository(namespace: string, profile: string, signal: AbortSignal): Promise<ProfileRepository>;
}

/**
 * The Profile as the resolver read it, for the repository step: only what that step may look at.
 * Implemented by the snapshot part (kanister-repository.ts); the resolver calls it with the Profile's
 * annotations and a reader of Secrets in the Profile's own namespace (never another).
 */
export type ProfileRepositoryOf = (
  location: ProfileLocation,
  annotations: Readonly<Record<string, string>>,
  readSecret: (name: string, signal: AbortSignal) => Promise<{ type?: string; data: Readonly<Record<string, Uint8Array>> } | undefined>,
  signal: AbortSignal,
) => Promise<ProfileRepository>;
