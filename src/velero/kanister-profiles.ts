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
  /**
   * The store (tenant rules applied). Its root is the Kanister location's prefix (`spec.prefix`), so
   * the store itself keeps every key under that prefix; keys are relative to it.
   */
  spec: StoreSpec;
  /**
   * The key prefix under the store's root: '' or ending with '/'; object keys are confined under it.
   * The Kubernetes resolver gives '' (the Kanister prefix is the store's root already).
   */
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
   * The Profile's location. NotFoundError when the Profile (or a Secret it names) is not there;
   * KanisterLocationError (the Profile or its Secrets are not a store: named, never with a secret
   * value; answered 502) when it cannot be turned into a store; TenancyError for a Secret in
   * another namespace or the gateway's own.
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
