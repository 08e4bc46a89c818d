/**
 * An optional plain-HTTP listener that serves `GET /metrics` and nothing else, for scrapers that find
 * targets by `prometheus.io/*` pod annotations and speak plain HTTP (as Velero's own metrics are).
 *
 * Who can reach it: anyone who can reach the pod's port (off unless --metrics-plain-http-port is given;
 * a NetworkPolicy narrows it). What it reads: the request line only. What it trusts: nothing; it
 * serves the same counters as the HTTPS metrics listener, whose labels are bounded sets (routes,
 * codes, providers), never a user, a path or a token, so plain text on the wire reveals no secret.
 * Hostile clients: any other method or path is a bare 404/405; its own connection cap, head and
 * request timeouts and an idle timeout bound what a flood or a slow client can hold, apart from the
 * other listeners.
 */
import { once } from 'node:events';
import { createServer } from 'node:http';
import type { Server } from 'node:http';
import type { HostPort } from '../config/config.ts';
import type { GatewayMetrics } from './metrics.ts';

/** Scrapers are few: the same cap as the HTTPS metrics listener. */
const MAX_CONNECTIONS = 64;
/** A scrape is one short response: a connection idle (or stalled) this long is closed. */
const IDLE_TIMEOUT_MS = 30_000;

export async function listenPlainMetrics(metrics: GatewayMetrics, at: HostPort): Promise<Server> {
  const server = createServer({ headersTimeout: 10_000, requestTimeout: 10_000, connectionsCheckingInterval: 1_000 }, (req, res) => {
    const path = (req.url ?? '').split('?')[0];
    if (path !== '/metrics') {
      res.writeHead(404, { 'Content-Type': 'text/plain' }).end('not found: this port serves /metrics only\n');
      return;
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { 'Content-Type': 'text/plain', Allow: 'GET, HEAD' }).end('method not allowed\n');
      return;
    }
    metrics.registry.metrics().then(
      (text) => res.writeHead(200, { 'Content-Type': metrics.registry.contentType }).end(req.method === 'HEAD' ? undefined : text),
      () => res.writeHead(500, { 'Content-Type': 'text/plain' }).end('metrics could not be collected\n'),
    );
  });
  server.maxConnections = MAX_CONNECTIONS;
  server.setTimeout(IDLE_TIMEOUT_MS, (socket) => socket.destroy());
  server.listen(at.port, at.host);
  await once(server, 'listening');
  return server;
}

/** Stops it at once: a scrape cut short is simply retried by the scraper at its next interval. */
export function closePlainMetrics(server: Server): void {
  server.close();
  server.closeAllConnections();
}
