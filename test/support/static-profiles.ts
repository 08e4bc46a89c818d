/**
 * A ProfileResolver over a fixed table of Profiles and Secrets, for the routes' tests: the location
 * as given, the repository through the real profileRepositoryOf with a Secret reader confined to the
 * Profile's namespace, as the Kubernetes resolver's is. It records every read, so a test can prove
 * what was (not) read before a refusal.
 */
import { KANISTER_GROUP } from '../../src/velero/kanister-profiles.ts';
import type { ProfileLocation, ProfileRepository, ProfileResolver } from '../../src/velero/kanister-profiles.ts';
import { profileRepositoryOf } from '../../src/velero/kanister-repository.ts';
import { NotFoundError } from '../../src/velero/errors.ts';

export interface StaticProfile {
  location: Omit<ProfileLocation, 'namespace' | 'profile'>;
  annotations: Record<string, string>;
}

export interface StaticSecret {
  type?: string;
  data: Record<string, Uint8Array>;
}

export class StaticProfileResolver implements ProfileResolver {
  /** `location ns/p`, `secret ns/name`, in order. */
  readonly reads: string[] = [];
  /** Keyed `<namespace>/<name>`; tests change them between requests. */
  readonly profiles: Map<string, StaticProfile>;
  readonly secrets: Map<string, StaticSecret>;

  constructor(profiles: Record<string, StaticProfile>, secrets: Record<string, StaticSecret>) {
    this.profiles = new Map(Object.entries(profiles));
    this.secrets = new Map(Object.entries(secrets));
  }

  #profile(namespace: string, profile: string): StaticProfile {
    this.reads.push(`location ${namespace}/${profile}`);
    const found = this.profiles.get(`${namespace}/${profile}`);
    if (!found) throw new NotFoundError(`profiles.${KANISTER_GROUP} "${profile}" not found`, { group: KANISTER_GROUP, kind: 'profiles', name: profile });
    return found;
  }

  location(namespace: string, profile: string): Promise<ProfileLocation> {
    return Promise.resolve({ namespace, profile, ...this.#profile(namespace, profile).location });
  }

  repository(namespace: string, profile: string, signal: AbortSignal): Promise<ProfileRepository> {
    const found = this.#profile(namespace, profile);
    const readSecret = (name: string): Promise<StaticSecret | undefined> => {
      this.reads.push(`secret ${namespace}/${name}`);
      return Promise.resolve(this.secrets.get(`${namespace}/${name}`));
    };
    return profileRepositoryOf({ namespace, profile, ...found.location }, found.annotations, readSecret, signal);
  }
}
