/**
 * Kubernetes mode: TokenReview, SubjectAccessReview, Velero objects and Secrets from the API server;
 * beside the routes, URL discovery, the DownloadRequest controller and the signing keys. Imported
 * only in kubernetes mode: it pulls in @kubernetes/client-node.
 */
import type { Logger } from 'pino';
import { ClientLimiter } from '../auth/client-limiter.ts';
import { SubjectAccessReviewAuthorizer, TokenReviewAuthenticator } from '../auth/kube-reviews.ts';
import { keyRingSigner } from '../auth/signed-urls.ts';
import type { Config } from '../config/config.ts';
import { createKubeClients } from '../kube/client.ts';
import { CachedObjectReader } from '../kube/objects.ts';
import { SigningKeySource } from '../auth/signing-keys.ts';
import { UrlDiscovery } from '../kube/url-discovery.ts';
import type { GatewayMetrics } from '../server/metrics.ts';
import type { DefaultStoreFactory } from '../stores/factory.ts';
import { FILESYSTEM_PROVIDERS } from '../stores/factory.ts';
import { DownloadRequestController } from '../velero/downloadrequest-controller.ts';
import type { DownloadRequestAdmission } from '../velero/admission.ts';
import { MAX_SIGNED_URL_SECONDS } from '../velero/downloadrequests.ts';
import type { SignedUrls } from '../velero/downloadrequests.ts';
import { signedAccess } from '../velero/signed-access.ts';
import { KubeResolver, KubeVolumeResolver } from '../velero/kube-resolver.ts';
import { KubeProfileResolver } from '../velero/kanister-resolver.ts';
import { profileRepositoryOf } from '../velero/kanister-repository.ts';
import { namespaceMatcher } from '../velero/namespaces.ts';
import type { Mode, ModeParts, ModeServices } from './mode.ts';
import { watchAccessUserSecret } from '../auth/access-user-secret.ts';
import { accessUserAuthenticator, accessUserOptions } from './access-users.ts';
import { KubeCatalog } from '../velero/catalog.ts';

export function kubernetesMode(config: Config, log: Logger, factory: DefaultStoreFactory, metrics?: GatewayMetrics): Mode<KubeServices> {
  const kube = createKubeClients({
    ...(config.kubeconfig && { kubeconfig: config.kubeconfig }),
    ...(config.kubeContext && { context: config.kubeContext }),
    qps: config.kubeApiQps,
    burst: config.kubeApiBurst,
    timeoutMs: config.kubeApiTimeoutMs,
    ...(metrics && { onBudgetRejected: (budget: string) => metrics.limited.inc({ limit: `kube-api-${budget}` }) }),
  });
  const cache = {
    authnTtlMs: config.authnCacheTtlMs,
    authnDeniedTtlMs: config.authnDeniedCacheTtlMs,
    authzAllowedTtlMs: config.authzAllowedTtlMs,
    authzDeniedTtlMs: config.authzDeniedTtlMs,
    maxEntries: 10_000,
  };
  const serves = namespaceMatcher(config.namespace, config.watchNamespaces);
  log.info({ server: kube.kc.getCurrentCluster()?.server, namespace: config.namespace, watchNamespaces: config.watchNamespaces }, 'kubernetes mode');
  const objects = new CachedObjectReader(kube, { ttlMs: config.objectCacheTtlMs, missingTtlMs: Math.min(2_000, config.objectCacheTtlMs), max: 5_000 });
  const resolver = new KubeResolver(objects, {
    serves,
    ownNamespace: config.namespace,
    isFilesystemProvider: (p) => FILESYSTEM_PROVIDERS.has(p),
    tenantFilesystemAllow: config.tenantFilesystemAllow,
  });
  const perClient = new ClientLimiter({
    qps: config.unknownTokenQpsPerClient,
    burst: config.unknownTokenBurstPerClient,
    ...(metrics && { onReject: () => metrics.limited.inc({ limit: 'unknown-token-qps-per-client' }) }),
  });
  const authenticator = new TokenReviewAuthenticator(kube, config.tokenAudiences, cache, metrics, perClient);
  const authorizer = new SubjectAccessReviewAuthorizer(kube, cache, metrics);
  metrics?.watchCache('tokenreview', authenticator.cache.stats);
  metrics?.watchCache('subjectaccessreview', authorizer.cache.stats);
  const accessUsers = config.accessUsersSecret ? watchAccessUserSecret(kube, config.namespace, config.accessUsersSecret, accessUserOptions(config, log)) : undefined;
  const parts = {
    authenticator,
    ...(accessUsers && { accessUsers: accessUserAuthenticator(accessUsers) }),
    authorizer,
    resolver,
    stores: factory,
    volumeResolver: new KubeVolumeResolver(resolver, objects, factory, { ownNamespace: config.namespace }),
    catalog: new KubeCatalog(objects, { ownNamespace: config.namespace, watchNamespaces: config.watchNamespaces }),
    profiles: new KubeProfileResolver(objects, { serves, ownNamespace: config.namespace, repositoryOf: profileRepositoryOf }),
    kube: { clients: kube, objects, resolver },
  };
  let services: KubeServices | undefined;
  return {
    name: 'kubernetes',
    parts,
    async start() {
      // Watched before serving, so the first requests see the Secret as it is (a failed first read is retried in the background).
      await accessUsers?.start();
      services = await startKubeServices(config, log, parts.kube);
      return services;
    },
    stop: async () => {
      await Promise.all([services?.stop(), accessUsers?.stop()]);
    },
    info: () => services?.info() ?? {},
  };
}

/** What kubernetes mode runs beside the routes: URL discovery, the DownloadRequest controller, signing keys. */
export interface KubeServices extends ModeServices {
  discovery: UrlDiscovery;
  controller: DownloadRequestController;
  signingKeys: SigningKeySource;
  signedUrls: SignedUrls;
  admission: DownloadRequestAdmission;
  /** Extra fields for /v1/info. */
  info(): Record<string, unknown>;
  stop(): Promise<void>;
}

async function startKubeServices(config: Config, log: Logger, kube: NonNullable<ModeParts['kube']>): Promise<KubeServices> {
  const discovery = await UrlDiscovery.start(kube.clients, {
    namespace: config.namespace,
    serviceName: config.serviceName,
    listenPort: config.listen.port,
    log,
    ...(config.fqdn && { fqdn: config.fqdn }),
  });
  log.info({ url: discovery.current.baseUrl, source: discovery.current.source, detail: discovery.current.detail }, 'gateway URL');
  discovery.on('change', (cur, prev) => log.info({ url: cur.baseUrl, source: cur.source, detail: cur.detail, previous: prev.baseUrl }, 'gateway URL changed'));
  const controller = await DownloadRequestController.start(kube.clients, {
    namespace: config.namespace,
    watchNamespaces: config.watchNamespaces,
    serveAllLocations: config.serveAllLocations,
    urls: discovery,
    locations: kube.resolver,
    log,
  });
  const signingKeys = new SigningKeySource(kube.clients, {
    namespace: config.namespace,
    maxUrlLifetimeMs: MAX_SIGNED_URL_SECONDS * 1000,
    onEvent: (e) => log.info({ secret: e.secret, keyId: e.keyId, rotatedAt: e.rotatedAt }, `signing key ${e.action}`),
    onError: (err) => log.warn({ err: err.message }, 'signing key refresh failed'),
  });
  await signingKeys.start();
  const signer = keyRingSigner(() => signingKeys.keys);
  const { signedUrls, admission } = signedAccess({
    signer,
    serves: namespaceMatcher(config.namespace, config.watchNamespaces),
    watched: controller,
    objects: kube.objects,
    locations: kube.resolver,
    serveAllLocations: config.serveAllLocations,
    baseUrl: () => discovery.current.baseUrl,
  });
  return {
    discovery,
    controller,
    signingKeys,
    signedUrls,
    admission,
    sessionKeys: () => signingKeys.keys,
    info: () => ({ url: discovery.current.baseUrl, urlSource: discovery.current.source, urlDetail: discovery.current.detail }),
    async stop() {
      signingKeys.stop();
      await Promise.all([controller.stop(), discovery.stop()]);
    },
  };
}
