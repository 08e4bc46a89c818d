/**
 * The reference the gateway's S3 path is measured against: the smallest sensible Node HTTPS proxy.
 * Each path of the routes file maps to an upstream URL (a pre-signed S3 URL); a GET of that path is
 * one `https.get` of the URL over a keep-alive agent trusting the upstream CA, whose status, length
 * and body are piped to the client. No auth, no SDK, no logging, no checks.
 *
 *   node bench/bare-proxy.ts --cert tls.crt --key tls.key --upstream-ca ca.pem --routes routes.json
 *
 * routes.json: {"/big": "https://…", "/small": "https://…"}. Prints `{"port":N}` once listening.
 */
import { readFileSync } from 'node:fs';
import { Agent, createServer, get } from 'node:https';
import { pipeline } from 'node:stream';
import { parseArgs } from 'node:util';
import { serveReference } from './lib/reference-server.ts';

const { values } = parseArgs({
  options: {
    cert: { type: 'string' },
    key: { type: 'string' },
    'upstream-ca': { type: 'string' },
    routes: { type: 'string' },
    listen: { type: 'string', default: '127.0.0.1:0' },
  },
});
if (!values.cert || !values.key || !values.routes) {
  console.error('usage: bare-proxy.ts --cert FILE --key FILE --routes FILE [--upstream-ca FILE] [--listen HOST:PORT]');
  process.exit(2);
}
const routes = new Map(Object.entries(JSON.parse(readFileSync(values.routes, 'utf8')) as Record<string, string>));
const agent = new Agent({ keepAlive: true, ...(values['upstream-ca'] && { ca: readFileSync(values['upstream-ca'], 'utf8') }) });

const server = createServer({ cert: readFileSync(values.cert), key: readFileSync(values.key) }, (req, res) => {
  const url = routes.get(req.url ?? '');
  if (!url) {
    res.writeHead(404).end();
    return;
  }
  get(url, { agent }, (up) => {
    res.writeHead(up.statusCode ?? 502, {
      'content-type': up.headers['content-type'] ?? 'application/octet-stream',
      ...(up.headers['content-length'] && { 'content-length': up.headers['content-length'] }),
    });
    pipeline(up, res, () => undefined);
  }).on('error', () => res.destroy());
});
serveReference(server, values.listen, () => agent.destroy());
