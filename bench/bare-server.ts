/**
 * The reference the gateway is measured against: the smallest sensible Node HTTPS file server. Every
 * GET (whatever the path) answers 200 with one file, read with `fs.createReadStream` in 1 MiB chunks
 * (with Node's default 64 KiB, HTTPS throughput is about half). No auth, no routing, no logging.
 *
 *   node bench/bare-server.ts --cert tls.crt --key tls.key --file big.bin [--listen 127.0.0.1:0]
 *
 * Prints `{"port":N}` on stdout once listening; exits on SIGTERM.
 */
import { createReadStream, readFileSync, statSync } from 'node:fs';
import { createServer } from 'node:https';
import { pipeline } from 'node:stream';
import { parseArgs } from 'node:util';
import { serveReference } from './lib/reference-server.ts';

const { values } = parseArgs({
  options: {
    cert: { type: 'string' },
    key: { type: 'string' },
    file: { type: 'string' },
    listen: { type: 'string', default: '127.0.0.1:0' },
  },
});
if (!values.cert || !values.key || !values.file) {
  console.error('usage: bare-server.ts --cert FILE --key FILE --file FILE [--listen HOST:PORT]');
  process.exit(2);
}
const file = values.file;

const server = createServer({ cert: readFileSync(values.cert), key: readFileSync(values.key) }, (req, res) => {
  // Sized per request, as a file server must (the file may change between requests).
  const { size } = statSync(file);
  res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': size });
  if (req.method === 'HEAD') {
    res.end();
    return;
  }
  if (size === 0) {
    res.end();
    return;
  }
  // `end` bounds the buffer too: without it every read allocates the full 1 MiB, even for 4 KiB.
  pipeline(createReadStream(file, { start: 0, end: size - 1, highWaterMark: 1024 * 1024 }), res, () => undefined);
});
serveReference(server, values.listen);
