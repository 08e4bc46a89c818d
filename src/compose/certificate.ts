/** The serving certificate of either mode, and the publication of its CA in kubernetes mode. */
import { hostname } from 'node:os';
import type { Logger } from 'pino';
import type { Config } from '../config/config.ts';
import type { KubeClients } from '../kube/client.ts';
import type { CaPublisher } from '../tls/ca-publisher.ts';
import { ensureLocalCertificate } from '../tls/local.ts';
import { CertificateReloader } from '../tls/reloader.ts';
import type { TrustSource } from '../tls/secret.ts';
import type { CertificateSource } from '../tls/types.ts';

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
    const { SecretCertificateSource, serviceDnsNames } = await import('../tls/secret.ts');
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
  const { CaPublisher } = await import('../tls/ca-publisher.ts');
  return CaPublisher.start(kube, source, {
    namespace: config.namespace,
    configMap: config.caConfigMap,
    webhookConfiguration: config.webhookConfiguration,
    onError: (err) => log.warn({ err: err.message }, 'publishing the CA failed'),
    onEvent: (e) => log.info({ target: e.target, secret: e.secret, fingerprint: e.fingerprint, cas: e.cas }, `CA ${e.action}`),
  });
}
