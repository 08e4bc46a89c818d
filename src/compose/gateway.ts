/**
 * The gateway process: builds the object graph of the configured mode from Config, starts its
 * listeners (download, metrics, webhook), and stops them all on SIGTERM or SIGINT.
 */
import type { Server } from 'node:https';
import type { Config } from '../config/config.ts';
import { createWebhookApp } from '../server/admission.ts';
import { createApp, createMetricsApp } from '../server/app.ts';
import type { HealthState } from '../server/app.ts';
import { DownloadSlots } from '../server/limits.ts';
import { addressOf, listenHttps, shutdown } from '../server/listener.ts';
import type { ListenerLimits } from '../server/listener.ts';
import { createAuditLogger, createLogger } from '../server/logging.ts';
import { GatewayMetrics } from '../server/metrics.ts';
import { closePlainMetrics, listenPlainMetrics } from '../server/plain-metrics.ts';
import { tlsServerOptions } from '../tls/options.ts';
import { parseAddressList } from '../util/address-list.ts';
import { DEMO_BACKUP } from '../velero/demo.ts';
import { VERSION } from '../version.ts';
import { certificateSource } from './certificate.ts';
import { createMode } from './create-mode.ts';
import { kopiaPool } from './kopia.ts';
import { createStoreFactory } from './stores.ts';
import { browserPage } from './ui.ts';

/**
 * The metrics listener serves the kubelet's probes and Prometheus: a few connections. Its own small
 * cap keeps its memory bounded (about 100 KiB a connection, bench/connections.ts) apart from the
 * download listener's.
 */
const METRICS_MAX_CONNECTIONS = 64;
/** The webhook listener's own cap: the API server keeps a small pool of connections to it. */
const WEBHOOK_MAX_CONNECTIONS = 64;

/** Runs the gateway until a signal stops it; the process exits then. */
export async function runGateway(config: Config): Promise<void> {
  const log = createLogger(config.logLevel);
  const health: HealthState = { ready: false };
  // Signals are handled from the first moment: one that arrives while starting ends the start cleanly.
  let onSignal = (signal: string): void => {
    log.info({ signal }, 'stopping before the start completed');
    process.exit(0);
  };
  process.on('SIGTERM', () => onSignal('SIGTERM'));
  process.on('SIGINT', () => onSignal('SIGINT'));

  const metrics = new GatewayMetrics();
  const factory = await createStoreFactory(config, log);
  const mode = await createMode(config, log, factory, metrics);
  const services = await mode.start();

  const cert = await certificateSource(config, log, mode.parts.kube?.clients);
  const reloader = cert.source;

  const audit = createAuditLogger(config.logLevel, config.auditLog);
  // Validated by loadConfig; parsed again here into the list itself.
  const trustedProxies = config.trustedProxies.length > 0 ? parseAddressList(config.trustedProxies, '--trusted-proxies').list : undefined;
  const { volumeResolver, catalog: _catalog, ...parts } = mode.parts;
  const ui = browserPage(config, mode, services);
  const app = createApp({
    ...(ui && { ui }),
    ...parts,
    volumes: { resolver: volumeResolver, pool: kopiaPool(config) },
    trustedProxies,
    downloadSlots: new DownloadSlots(config.maxConcurrentDownloads, { onRefused: () => metrics.limited.inc({ limit: 'max-concurrent-downloads' }) }),
    log,
    audit,
    metrics,
    health,
    ...(services.signedUrls && { signedUrls: services.signedUrls }),
    info: () => ({ version: VERSION, mode: config.mode, namespace: config.namespace, tlsFingerprint: reloader.current.fingerprint, ...(cert.caPem() && { caCert: cert.caPem() }), ...mode.info() }),
  });

  const tls = tlsServerOptions(reloader.current);
  // Each listener has its own caps, so a flood of the download port cannot refuse the kubelet's probes.
  const limits: ListenerLimits = {
    requestTimeoutMs: config.requestTimeoutMs,
    sendStallTimeoutMs: config.sendStallTimeoutMs,
    maxConnections: config.maxConnections,
    maxConnectionsPerClient: config.maxConnectionsPerClient,
    ...(trustedProxies && { trustedProxies }),
    onLimit: (limit) => metrics.limited.inc({ limit }),
  };
  const metricsLimits: ListenerLimits = { ...limits, maxConnections: Math.min(METRICS_MAX_CONNECTIONS, config.maxConnections) };
  const servers: Server[] = [await listenHttps(app, tls, config.listen, limits), await listenHttps(createMetricsApp(health, metrics, log), tls, config.metricsListen, metricsLimits)];
  if (config.webhookListen && services.admission) {
    // The admission webhook on a listener of its own, never reachable through the download port, with
    // caps of its own, so a flood of the download port cannot refuse the API server.
    const webhookApp = createWebhookApp({ log, audit, admission: services.admission, metrics });
    const webhook = await listenHttps(webhookApp, tls, config.webhookListen, { ...limits, maxConnections: Math.min(WEBHOOK_MAX_CONNECTIONS, config.maxConnections) });
    servers.push(webhook);
    log.info({ webhook: `https://${addressOf(webhook).host}:${addressOf(webhook).port}` }, 'admission webhook listening');
  }
  const plainMetrics = config.metricsPlainHttpPort === undefined ? undefined : await listenPlainMetrics(metrics, { host: config.metricsListen.host, port: config.metricsPlainHttpPort });
  metrics.setCertificateExpiry(reloader.current.notAfter);
  reloader.on('change', (pair) => {
    for (const s of servers) s.setSecureContext(tlsServerOptions(pair));
    metrics.setCertificateExpiry(pair.notAfter);
    log.info({ fingerprint: pair.fingerprint }, 'serving certificate reloaded');
  });
  health.ready = true;

  const [api, metricsAddr] = servers.map(addressOf);
  const host = api!.host === '0.0.0.0' || api!.host === '::' ? 'localhost' : api!.host;
  const url = `https://${host.includes(':') ? `[${host}]` : host}:${api!.port}`;
  if (mode.name === 'local' && cert.certFile) printBanner(url, config, cert.certFile, reloader.current.fingerprint);
  log.info({ url, metrics: `https://${metricsAddr!.host}:${metricsAddr!.port}`, ...(plainMetrics && { metricsPlainHttp: `http://${metricsAddr!.host.includes(':') ? `[${metricsAddr!.host}]` : metricsAddr!.host}:${config.metricsPlainHttpPort}/metrics` }), fingerprint: reloader.current.fingerprint, version: VERSION, mode: config.mode }, 'listening');

  // The rollout pattern: readiness fails at once, but the listeners keep accepting and serving for
  // --shutdown-delay, the time the endpoints controller and every kube-proxy / ingress need to stop
  // sending new connections here; only then do they close and running downloads drain. Closing at
  // once would refuse the clients still routed here. A second signal (a person pressing Ctrl-C
  // again) skips the rest of the delay. Only whoever may signal the process controls this.
  let stopping: 'no' | 'delay' | 'drain' = 'no';
  let delayTimer: NodeJS.Timeout | undefined;
  const drain = (): void => {
    if (stopping === 'drain') return;
    stopping = 'drain';
    clearTimeout(delayTimer);
    log.info({ graceMs: config.shutdownGraceMs }, 'shutting down: no longer accepting, draining in-flight downloads');
    if (plainMetrics) closePlainMetrics(plainMetrics);
    void shutdown(servers, config.shutdownGraceMs).then(async ({ forced }) => {
      await mode.stop();
      reloader.stop();
      factory.close();
      log.info({ forced }, 'stopped');
      process.exit(0);
    });
  };
  onSignal = (signal) => {
    if (stopping !== 'no') return drain();
    stopping = 'delay';
    health.ready = false;
    log.info({ signal, delayMs: config.shutdownDelayMs }, 'shutting down: not ready, still accepting until the delay ends');
    delayTimer = setTimeout(drain, config.shutdownDelayMs);
  };
}

/** The first-start help for a person at a terminal, on stdout apart from the JSON log. It never prints a token. */
function printBanner(url: string, config: Config, certFile: string, fingerprint: string): void {
  const lines = [
    '',
    `velero-download-server ${VERSION} is serving ${config.dataDir}`,
    `  URL:                  ${url}`,
    `  certificate:          ${certFile}`,
    `  SHA-256 fingerprint:  ${fingerprint}`,
    `  tokens:               ${config.tokenFile}`,
    '',
    "Download the demo backup's log:",
    `  curl --cacert ${certFile} -H "Authorization: Bearer $(head -n1 ${config.tokenFile} | cut -d, -f1)" \\`,
    `    ${url}/v1/namespaces/${config.namespace}/backups/${DEMO_BACKUP}/log | gunzip`,
    '',
  ];
  process.stdout.write(lines.join('\n') + '\n');
}
