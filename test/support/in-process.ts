/**
 * The gateway's real wiring (config → compose → Express app) built in-process, for integration tests
 * that drive it with supertest; end-to-end tests start the real process instead.
 */
import { Writable } from 'node:stream';
import type { Express } from 'express';
import { createMode } from '../../src/compose/create-mode.ts';
import type { KubeServices } from '../../src/compose/kubernetes.ts';
import { kopiaPool } from '../../src/compose/kopia.ts';
import { createStoreFactory } from '../../src/compose/stores.ts';
import { browserPage } from '../../src/compose/ui.ts';
import { loadConfig } from '../../src/config/config.ts';
import type { Config } from '../../src/config/config.ts';
import { createWebhookApp } from '../../src/server/admission.ts';
import { createApp } from '../../src/server/app.ts';
import { createAuditLogger, createLogger } from '../../src/server/logging.ts';
import type { DefaultStoreFactory } from '../../src/stores/factory.ts';
import { GatewayMetrics } from '../../src/server/metrics.ts';

export interface InProcessGateway {
  app: Express;
  config: Config;
  factory: DefaultStoreFactory;
  metrics: GatewayMetrics;
  services?: KubeServices;
  /** The admission webhook's own application (kubernetes mode with kubeServices). */
  webhook?: Express;
  stop(): Promise<void>;
  /** Parsed JSON log lines. */
  logs: Record<string, unknown>[];
  /** The raw log text (to check that no secret ever appears). */
  rawLog: () => string;
}

/**
 * With `kubeServices`, kubernetes mode's URL discovery, DownloadRequest controller and signing keys
 * run too (stop them with `stop()`).
 */
export async function inProcessGateway(args: string[], env: Record<string, string> = {}, opts: { kubeServices?: boolean } = {}): Promise<InProcessGateway> {
  const loaded = loadConfig(args, env);
  if (loaded.kind !== 'config') throw new Error(`bad test configuration: ${JSON.stringify(loaded)}`);
  const config = loaded.config;
  const logs: Record<string, unknown>[] = [];
  let raw = '';
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      raw += chunk.toString();
      for (const l of chunk.toString().split('\n').filter(Boolean)) logs.push(JSON.parse(l) as Record<string, unknown>);
      cb();
    },
  });
  const log = createLogger('debug', sink);
  const metrics = new GatewayMetrics({ processMetrics: false });
  const factory = await createStoreFactory(config, log);
  const mode = await createMode(config, log, factory, metrics);
  // Kubernetes mode's services, as the kubernetes mode starts them.
  const services = opts.kubeServices && mode.name === 'kubernetes' ? ((await mode.start()) as KubeServices) : undefined;
  const audit = createAuditLogger('info', config.auditLog, sink);
  const { volumeResolver, catalog: _catalog, ...parts } = mode.parts;
  const ui = browserPage(config, mode, services ?? {});
  const app = createApp({
    ...(ui && { ui }),
    ...parts,
    volumes: { resolver: volumeResolver, pool: kopiaPool(config) },
    ...(services && { signedUrls: services.signedUrls }),
    log,
    audit,
    metrics,
    health: { ready: true },
    info: () => ({ mode: config.mode, ...mode.info() }),
  });
  return {
    app,
    config,
    factory,
    metrics,
    logs,
    rawLog: () => raw,
    ...(services && { services, webhook: createWebhookApp({ log, audit, admission: services.admission, metrics }) }),
    async stop() {
      await mode.stop();
      factory.close();
    },
  };
}
