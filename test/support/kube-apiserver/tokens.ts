/**
 * The token table behind TokenReview and behind authenticating every caller of the test API server.
 * As on a real server, an authenticated user also gets the `system:authenticated` group, and a token
 * is valid only for its audiences (by default the API server's own).
 */
import { randomBytes, randomUUID } from 'node:crypto';

export interface TokenUser {
  username: string;
  uid?: string;
  groups?: string[];
  extra?: Record<string, string[]>;
  /** Audiences the token was issued for; default: the API server's audiences. */
  audiences?: string[];
}

export interface UserInfo {
  username: string;
  uid?: string;
  groups: string[];
  extra?: Record<string, string[]>;
}

/** TokenReview status as kube-apiserver serializes it: `authenticated` is omitted when false (Go omitempty). */
export interface TokenReviewStatus {
  authenticated?: true;
  user: Partial<UserInfo>;
  audiences?: string[];
  error?: string;
}

export class TokenTable {
  readonly apiAudiences: string[];
  #tokens = new Map<string, TokenUser>();

  constructor(apiAudiences: string[]) {
    this.apiAudiences = apiAudiences;
  }

  /** Registers `token` for `user`; returns the token. */
  add(token: string, user: TokenUser): string {
    this.#tokens.set(token, user);
    return token;
  }

  remove(token: string): boolean {
    return this.#tokens.delete(token);
  }

  /** A new random token for a service account, with the username and groups Kubernetes gives it. */
  serviceAccount(namespace: string, name: string, audiences?: string[]): string {
    return this.add(`sa.${namespace}.${name}.${randomBytes(12).toString('hex')}`, {
      username: `system:serviceaccount:${namespace}:${name}`,
      uid: randomUUID(),
      groups: ['system:serviceaccounts', `system:serviceaccounts:${namespace}`],
      ...(audiences ? { audiences } : {}),
    });
  }

  /** A new random token for a plain user. */
  user(username: string, groups: string[] = [], audiences?: string[]): string {
    return this.add(`user.${randomBytes(12).toString('hex')}`, { username, uid: randomUUID(), groups, ...(audiences ? { audiences } : {}) });
  }

  /** The TokenReview answer for `token` wanted for `audiences` (empty: the API server's own). */
  review(token: string, audiences: string[] = []): TokenReviewStatus {
    const entry = this.#tokens.get(token);
    if (!entry) return { user: {}, error: 'invalid bearer token' };
    const wanted = audiences.length ? audiences : this.apiAudiences;
    const held = entry.audiences ?? this.apiAudiences;
    const matched = wanted.filter((a) => held.includes(a));
    if (!matched.length) {
      return { user: {}, error: `token audiences ${JSON.stringify(held)} is invalid for the target audiences ${JSON.stringify(wanted)}` };
    }
    return { authenticated: true, user: userInfo(entry), audiences: matched };
  }

  /** The caller behind a bearer token presented to the API server itself. */
  authenticate(token: string): UserInfo | undefined {
    const r = this.review(token);
    return r.authenticated ? (r.user as UserInfo) : undefined;
  }
}

export function userInfo(u: { username: string; uid?: string; groups?: string[]; extra?: Record<string, string[]> }): UserInfo {
  const groups = [...(u.groups ?? [])];
  if (!groups.includes('system:authenticated')) groups.push('system:authenticated');
  return { username: u.username, ...(u.uid ? { uid: u.uid } : {}), groups, ...(u.extra ? { extra: u.extra } : {}) };
}
