/** Access users in both modes: the authenticator over a followed table, and what is logged of it. */
import type { Logger } from 'pino';
import { AccessUserAuthenticator } from '../auth/access-users.ts';
import type { AccessUserFollower, AccessUserFollowerOptions } from '../auth/access-user-source.ts';
import type { Config } from '../config/config.ts';

/** The parse options and the log report every source of access users shares. */
export function accessUserOptions(config: Config, log: Logger): AccessUserFollowerOptions {
  return {
    parse: { allowPlaintext: config.accessUsersAllowPlaintext, ...(config.accessUsersSeedUsername !== undefined && { seedUsername: config.accessUsersSeedUsername }) },
    // Counts, entry names and problems only: a value (hash or password) never reaches the log.
    onLoaded: (e) => {
      const fields = { source: e.source, users: e.users, ...(e.detail !== undefined && { detail: e.detail }) };
      if (e.event === 'unreadable') log.warn(fields, 'access users: the source cannot be read; no access user is accepted until it can');
      else log.info(fields, e.event === 'loaded' ? 'access users loaded' : `access users: the source is ${e.event}; no access user is accepted`);
      for (const p of e.problems) log.warn({ source: e.source, entry: p.entry, problem: p.problem }, 'access users: entry skipped');
    },
    onError: (message, retryInMs) => log.warn({ error: message, retryInMs }, 'access users: reading the Secret failed; the current table is kept'),
  };
}

/** HTTP Basic over the follower's current table, read per attempt. */
export function accessUserAuthenticator(follower: AccessUserFollower): AccessUserAuthenticator {
  return new AccessUserAuthenticator({ table: () => follower.table() });
}
