/**
 * What every reference server of the benchmarks does around its handler: listen, print `{"port":N}`
 * on stdout once listening (bench/lib/servers.ts waits for it), and exit on SIGTERM after closing its
 * connections (`onStop` first, e.g. an agent to destroy).
 */
import type { Server } from 'node:https';
import type { AddressInfo } from 'node:net';

export function serveReference(server: Server, listen: string, onStop?: () => void): void {
  const [host, port] = listen.split(':') as [string, string];
  server.listen(Number(port), host, () => {
    process.stdout.write(`${JSON.stringify({ port: (server.address() as AddressInfo).port })}\n`);
  });
  process.on('SIGTERM', () => {
    server.close();
    server.closeAllConnections();
    onStop?.();
    process.exit(0);
  });
}
