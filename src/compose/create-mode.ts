/** Picks the configured mode. */
import type { Logger } from 'pino';
import type { Config } from '../config/config.ts';
import type { GatewayMetrics } from '../server/metrics.ts';
import type { DefaultStoreFactory } from '../stores/factory.ts';
import { localMode } from './local.ts';
import type { Mode } from './mode.ts';

export async function createMode(config: Config, log: Logger, factory: DefaultStoreFactory, metrics?: GatewayMetrics): Promise<Mode> {
  if (config.mode === 'local') return localMode(config, log, factory);
  // The Kubernetes client library costs ~70 MiB of memory: local mode never loads it.
  const { kubernetesMode } = await import('./kubernetes.ts');
  return kubernetesMode(config, log, factory, metrics);
}
