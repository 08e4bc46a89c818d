/**
 * The object graph of each mode, built from Config: what main.ts starts and what integration tests
 * build in-process, so both run the same wiring.
 */
import { hostname } from 'node:os';
import { ensureLocalCertificate } from './tls/local.ts';
import { CertificateReloader } from './tls/reloader.ts';
import type { CaPublisher } from './tls/ca-publisher.ts';
import type { TrustSource } from './tls/secret.ts';
import type { CertificateSource } from './tls/types.ts';
import type { Logger } from 'pino';
import { AllowAuthenticatedAuthorizer, StaticTokenAuthenticator, ensureTokenFile } from './auth/static-tokens.ts';
import type { Authenticator, Authorizer } from './auth/types.ts';
import type { Config } from './config/config.ts';
import type { GatewayMetrics } from './server/metrics.ts';
import type { KubeClients } from './kube/client.ts';
import type { CachedObjectReader } from './kube/objects.ts';
import type { KubeResolver } from './velero/kube-resolver.ts';
import type { KubeServices } from './compose-kube.ts';

export type { KubeServices } from './compose-kube.ts';
import { ObjectNotFoundError } from './stores/errors.ts';
import { DefaultStoreFactory } from './stores/factory.ts';
import { FilesystemStore } from './stores/fs.ts';
import type { StoreFactory, StoreSpec } from './stores/spec.ts';
import type { ObjectStore } from './stores/types.ts';
import { SettingFileError, readSettingFile } from './util/setting-file.ts';
import { writeDemoIfEmpty } from './velero/demo.ts';
import { loadLocationsFile } from './velero/local-locations.ts';
import { LocalResolver } from './velero/resolve.ts';
import type { Location, Resolver } from './velero/resolve.ts';

export interface ModeParts {
  authenticator: Authenticator;
  authorizer: Authorizer;
  resolver: Resolver;
  stores: StoreFactory;
  /** Kubernetes mode only: the clients, the shared object cache and the resolver as itself. */
  kube?: { clients: KubeClients; objects: CachedObjectReader; resolver: KubeResolver };
}

/** Local mode: the data directory (with a demo on first start), a locations file, static tokens. */
export async function localMode(config: Config, log: Logger, factory: DefaultStoreFactory): Promise<ModeParts> {
  const demoKeys = config.demo ? await writeDemoIfEmpty(config.dataDir) : [];
  if (demoKeys.length > 0) log.info({ dataDir: config.dataDir, files: demoKeys.length }, 'wrote the demo backup and restore');
  if (await ensureTokenFile(config.tokenFile)) log.info({ tokenFile: config.tokenFile }, 'created a token file with one token for local-admin');

  // The data directory is a filesystem location of its own, whatever --fs-root says.
  const dataDirSpec: StoreSpec = { name: 'data-dir', provider: 'filesystem', bucket: '', prefix: '', config: {} };
  const dataDirStore = new FilesystemStore({ root: config.dataDir });
  const storeFor = (spec: StoreSpec): Promise<ObjectStore> => (spec === dataDirSpec ? Promise.resolve(dataDirStore) : factory.forSpec(spec));
  const locations = [dataDirSpec, ...(config.locationsFile ? await loadLocationsFile(config.locationsFile) : [])];
  log.info({ locations: locations.map((l) => `${l.name} (${l.provider})`) }, 'store locations');
  const probe = async (loc: Location, signal: AbortSignal): Promise<boolean> => {
    try {
      await (await storeFor(loc.spec)).stat(loc.key, { signal });
      return true;
    } catch (err) {
      if (err instanceof ObjectNotFoundError) return false;
      throw err;
    }
  };
  return {
    authenticator: await StaticTokenAuthenticator.fromFile(config.tokenFile),
    authorizer: new AllowAuthenticatedAuthorizer(),
    resolver: new LocalResolver(config.namespace, locations, probe),
    stores: { forSpec: storeFor },
  };
}


/** A file a flag names, read as every setting's file is: a regular file of at most 1 MiB. */
async function flagFile(flag: string, path: string): Promise<Buffer> {
  try {
    return await readSettingFile(path, flag);
  } catch (err) {
    // A start error for the operator: the path helps, and it is no secret.
    if (err instanceof SettingFileError) throw new Error(`${err.message}: ${path}`, { cause: err });
    throw err;
  }
}

/** The store factory every mode shares: install-time CA, default credential, a warning for insecure locations. */
export async function createStoreFactory(config: Config, log: Logger): Promise<DefaultStoreFactory> {
  return new DefaultStoreFactory({
    fsRoot: config.fsRoot,
    tenantEndpointAllow: config.tenantEndpointAllow,
    ...(config.caBundleFile && { installCaBundle: (await flagFile('--ca-bundle', config.caBundleFile)).toString('utf8') }),
    ...(config.defaultCredentialsFile && { defaultCredential: await flagFile('--default-credentials-file', config.defaultCredentialsFile) }),
    onInsecure: (location) => log.warn({ location }, 'TLS verification towards this location is disabled (insecureSkipTLSVerify)'),
  });
}

/** The parts of the configured mode. */
export async function buildMode(config: Config, log: Logger, factory: DefaultStoreFactory, metrics?: GatewayMetrics): Promise<ModeParts> {
  if (config.mode === 'local') return localMode(config, log, factory);
  // The Kubernetes client library costs ~70 MiB of memory: local mode never loads it.
  const { kubernetesMode } = await import('./compose-kube.ts');
  return kubernetesMode(config, log, factory, metrics);
}


/** The serving certificate: the user's files (reloaded), else the Secret in kubernetes mode, else the state directory. */
export async function certificateSource(
  config: Config,
  log: Logger,
  kube?: KubeClients,
): Promise<{ source: CertificateSource; caPem: () => string | undefined; certFile?: string }> {
  const onError = (err: Error): void => log.warn({ err: err.message }, 'certificate reload failed; keeping the current certificate');
  if (config.tlsCertFile && config.tlsKeyFile) {
    const source = await CertificateReloader.start(config.tlsCertFile, config.tlsKeyFile, { onError });
    return { source, caPem: () => undefined, certFile: config.tlsCertFile };
  }
  if (config.mode === 'kubernetes' && kube) {
    const { SecretCertificateSource, serviceDnsNames } = await import('./tls/secret.ts');
    // The webhook's Service names too: the API server calls it by them and checks the certificate.
    const webhookSans = config.webhookListen ? serviceDnsNames(config.webhookServiceName, config.namespace) : [];
    const source = await SecretCertificateSource.start(kube, {
      namespace: config.namespace,
      secretName: config.tlsSecret,
      serviceName: config.serviceName,
      ...(config.fqdn && { fqdn: config.fqdn }),
      extraSans: [...config.tlsExtraSans, ...webhookSans],
      validityDays: config.tlsValidityMs / 86_400_000,
      onError,
      onEvent: (e) =>
        log.info(
          { secret: e.secret, fingerprint: e.fingerprint, notAfter: e.notAfter.toISOString(), managed: e.managed, ...(e.reason && { reason: e.reason }), ...(e.newCa !== undefined && { newCa: e.newCa }) },
          `serving certificate ${e.action}`,
        ),
    });
    const publisher = config.caConfigMap || config.webhookConfiguration ? await publishCa(config, log, kube, source) : undefined;
    const withPublisher: CertificateSource = {
      get current() {
        return source.current;
      },
      on(event, listener) {
        source.on(event, listener);
        return this;
      },
      off(event, listener) {
        source.off(event, listener);
        return this;
      },
      stop() {
        publisher?.stop();
        source.stop();
      },
    };
    return { source: withPublisher, caPem: () => source.caPem };
  }
  const local = await ensureLocalCertificate(config.stateDir, { hosts: [hostname(), ...config.tlsExtraSans] });
  const source = await CertificateReloader.start(local.certFile, local.keyFile, { onError });
  return { source, caPem: () => undefined, certFile: local.certFile };
}

/** Publishes the certificate Secret's ca.crt in the CA ConfigMap and the webhook configuration's caBundle. */
async function publishCa(config: Config, log: Logger, kube: KubeClients, source: TrustSource): Promise<CaPublisher> {
  const { CaPublisher } = await import('./tls/ca-publisher.ts');
  return CaPublisher.start(kube, source, {
    namespace: config.namespace,
    configMap: config.caConfigMap,
    webhookConfiguration: config.webhookConfiguration,
    onError: (err) => log.warn({ err: err.message }, 'publishing the CA failed'),
    onEvent: (e) => log.info({ target: e.target, secret: e.secret, fingerprint: e.fingerprint, cas: e.cas }, `CA ${e.action}`),
  });
}

/** Starts kubernetes mode's background services (URL discovery, DownloadRequest controller, signing keys). */
export async function startKubeServices(config: Config, log: Logger, kube: NonNullable<ModeParts['kube']>): Promise<KubeServices> {
  return (await import('./compose-kube.ts')).startKubeServices(config, log, kube);
}
