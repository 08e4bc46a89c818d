/** Kubernetes mode's source of access users: the Secret, watched (see access-user-source.ts for its layout). */
import type { V1Secret } from '@kubernetes/client-node';
import type { KubeClients } from '../kube/client.ts';
import { OwnedObject } from '../kube/owned.ts';
import { describeApiError } from '../kube/watch.ts';
import type { WatchedCollection } from '../kube/watch.ts';
import { parseAccessUserSecret } from './access-user-source.ts';
import type { AccessUserFollower, AccessUserFollowerOptions, AccessUsersLoaded } from './access-user-source.ts';
import { AccessUserTable } from './access-users.ts';

/**
 * Follows Secret `namespace/name` through the one watch helper (a watch selecting that name, started
 * from a read of it: RBAC `get` and `watch` on that one Secret). A missing Secret is no users, and
 * its creation is seen when it happens; a deleted one is no users at once. A change takes effect as
 * soon as the watch event arrives (the API server sends it when the write is committed: milliseconds).
 */
export function watchAccessUserSecret(kube: KubeClients, namespace: string, name: string, opts: AccessUserFollowerOptions): AccessUserFollower & { start(): Promise<void>; synced(): boolean } {
  const secret = new OwnedObject(kube, { kind: 'Secret', namespace, name });
  const source = `Secret ${namespace}/${name}`;
  let table = AccessUserTable.EMPTY;
  let seen = false;
  const swap = (next: AccessUserTable, e: Omit<AccessUsersLoaded, 'source' | 'users'>): void => {
    table = next;
    opts.onLoaded({ source, users: next.size, ...e });
  };
  const watch: WatchedCollection<V1Secret> = secret.watch({
    onChange: (s) => {
      seen = true;
      const r = parseAccessUserSecret(s.data, opts.parse);
      swap(r.table, { event: 'loaded', problems: r.problems });
    },
    onDelete: () => swap(AccessUserTable.EMPTY, { event: 'deleted', problems: [] }),
    onError: (err, retryInMs) => opts.onError?.(describeApiError(err), retryInMs),
  });
  return {
    table: () => table,
    synced: () => watch.synced,
    async start() {
      await watch.start();
      if (watch.synced && !seen) opts.onLoaded({ source, event: 'missing', users: 0, problems: [] });
    },
    stop: () => watch.stop(),
  };
}
