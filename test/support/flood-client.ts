/**
 * A flood of pipelined GETs with random bearer tokens, run as a process of its own so that the test
 * measuring someone else's latency meanwhile does not share an event loop with it:
 * `node test/support/flood-client.ts <port> <ca file> <connections> <requests per connection> <path> [rounds]`
 * prints the status codes read back, as a JSON array, when every connection of every round (one
 * after the other) has closed.
 */
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { connect } from 'node:tls';

/** Sends `count` pipelined GETs with random tokens on one TLS connection; resolves with the status codes read back. */
export function pipelinedFlood(port: number, ca: string, count: number, path: string): Promise<number[]> {
  return new Promise((resolve) => {
    const codes: number[] = [];
    const socket = connect({ host: '127.0.0.1', port, ca, servername: 'localhost' }, () => {
      let batch = '';
      for (let i = 0; i < count; i++) batch += `GET ${path} HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer ${randomBytes(24).toString('base64url')}\r\n\r\n`;
      socket.write(batch);
    });
    let text = '';
    socket.on('data', (chunk: Buffer) => {
      text += chunk.toString('latin1');
      for (const m of text.matchAll(/HTTP\/1\.1 (\d{3}) /g)) codes.push(Number(m[1]));
      text = text.slice(text.lastIndexOf('HTTP/1.1 ') + 1);
      if (codes.length >= count) socket.end();
    });
    socket.on('error', () => undefined);
    socket.on('close', () => resolve(codes));
    socket.setTimeout(60_000, () => socket.destroy());
  });
}

if (import.meta.main) {
  const [port, caFile, connections, perConnection, path, rounds = '1'] = process.argv.slice(2);
  const ca = readFileSync(caFile!, 'utf8');
  const codes: number[] = [];
  for (let r = 0; r < Number(rounds); r++) {
    const all = await Promise.all(Array.from({ length: Number(connections) }, () => pipelinedFlood(Number(port), ca, Number(perConnection), path!)));
    codes.push(...all.flat());
  }
  process.stdout.write(`${JSON.stringify(codes)}\n`);
}
