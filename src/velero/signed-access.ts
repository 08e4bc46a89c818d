/**
 * The two doors of the stock `velero` CLI path, wired alike: the webhook's decision (which records
 * requesters and mints signed URLs) and the signed-URL check at download. Both read DownloadRequests
 * from the controller's watch cache first and live when it has not seen the one asked for (each on
 * its own API budget), and both apply one opt-in rule through the resolver.
 */
import type { BudgetName } from '../kube/client.ts';
import type { KubeObject, ObjectReader } from '../kube/objects.ts';
import { DownloadRequestAdmission } from './admission.ts';
import { SignedUrls, optsIn } from './downloadrequests.ts';
import type { DownloadRequestSource, Signer, StorageLocations } from './downloadrequests.ts';

export interface SignedAccessDeps {
  signer: Signer;
  serves: (namespace: string) => boolean;
  /** DownloadRequests as the controller's watch last saw them. */
  watched: { get(namespace: string, name: string): KubeObject | undefined };
  /** Live reads of DownloadRequests. */
  objects: ObjectReader;
  locations: StorageLocations;
  serveAllLocations: boolean;
  /** The base URL users reach the gateway at, or undefined while unknown. */
  baseUrl: () => string | undefined;
}

export function signedAccess(deps: SignedAccessDeps): { signedUrls: SignedUrls; admission: DownloadRequestAdmission } {
  const downloadRequests = (budget: BudgetName): DownloadRequestSource => ({
    cached: (namespace, name) => deps.watched.get(namespace, name),
    live: async (namespace, name, signal) => deps.objects.velero('downloadrequests', namespace, name, signal, { fresh: true, budget }),
  });
  const { signer, serves } = deps;
  return {
    signedUrls: new SignedUrls({ signer, serves, downloadRequests: downloadRequests('objects') }),
    admission: new DownloadRequestAdmission({
      signer,
      serves,
      downloadRequests: downloadRequests('webhook'),
      baseUrl: deps.baseUrl,
      optedIn: (target, signal) => optsIn(target, deps.locations, deps.serveAllLocations, signal, { budget: 'webhook' }),
    }),
  };
}
