/**
 * The real s3rver emulator in a child process (so its sockets and files do not count against the
 * descriptor checks of the process under test), over HTTP or HTTPS, path-style, one bucket created.
 * It records every request it receives (method, path, the signing access key id, SSE-C headers), so
 * tests can check what a client actually sent.
 */
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { createReadStream } from 'node:fs';
import { mkdtemp, rm, stat } from 'node:fs/promises';
import { Agent as HttpAgent } from 'node:http';
import { Agent as HttpsAgent } from 'node:https';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { NodeHttpHandler } from '@smithy/node-http-handler';

/** s3rver's built-in key pair (it checks the access key id, never the secret). */
export const S3RVER_ACCESS_KEY_ID = 'S3RVER';
export const S3RVER_SECRET_ACCESS_KEY = 'S3RVER';

export interface S3rverOptions {
  /** Bucket created at start; default `velero`. */
  bucket?: string;
  /** Serve HTTPS with this key and certificate; `ca` is what the seeding client trusts. */
  tls?: { key: string; cert: string; ca?: string };
  /** Further access key ids s3rver accepts (same account, so they see the same buckets). */
  extraKeys?: { accessKeyId: string; secretAccessKey: string }[];
}

/** One request as s3rver received it. */
export interface RecordedRequest {
  method: string;
  /** Path and query, e.g. `/velero/backups/a/a-logs.gz`. */
  url: string;
  /** From the SigV4 Authorization header's Credential, when signed. */
  accessKeyId?: string;
  /** The signing region from the same Credential scope. */
  region?: string;
  /** `range`, `x-amz-security-token` and `x-amz-server-side-encryption-customer-*` headers, as sent. */
  headers: Record<string, string>;
}

export interface S3rverInstance {
  /** `http(s)://127.0.0.1:<port>`. */
  endpoint: string;
  port: number;
  bucket: string;
  /** The child process's pid (benchmarks read its CPU time). */
  pid: number;
  /**
   * Requests recorded so far, in arrival order. Records travel on another channel than the
   * responses: call `flush()` before reading what a finished call sent.
   */
  requests: RecordedRequest[];
  /** Resolves once every request s3rver has received so far is in `requests`. */
  flush(): Promise<void>;
  /** Writes an object with the SDK, at a full key of the bucket. */
  put(key: string, bytes: Uint8Array): Promise<void>;
  /** Streams a file into an object (for objects too large to hold in memory, e.g. benchmarks). */
  putFile(key: string, path: string): Promise<void>;
  /** Kills the emulator, waits for it to exit and removes its data directory. */
  stop(): Promise<void>;
}

const S3RVER_MAIN = fileURLToPath(import.meta.resolve('s3rver'));
const S3RVER_ACCOUNT = join(dirname(S3RVER_MAIN), 'models', 'account.js');
const S3RVER_UTILS = join(dirname(S3RVER_MAIN), 'utils.js');

// Runs in the child (CommonJS). The request listener is added after s3rver's own, so it only observes.
// s3rver lists the keys of a bucket by walking its data directory in readdir order, which puts the
// directory "a" (keys "a/...") before the key "a-b"; S3 lists in UTF-8 byte order, where "a-b" comes
// first, and continues a listing after the last key sent, so s3rver's order also loses keys across
// pages. The walk is replaced (before s3rver takes it) by one that visits entries in key order.
const CHILD = `
const fs = require('fs');
const path = require('path');
const utils = require(process.env.S3RVER_UTILS);
utils.walk = function* walk(dir, recurseFilter) {
  const entries = fs.readdirSync(dir, { withFileTypes: true }).map((d) => ({
    d,
    key: Buffer.from(d.isDirectory() ? d.name + '/' : d.name.replace(/\\._S3rver_[^/]*$/, '')),
  }));
  entries.sort((a, b) => Buffer.compare(a.key, b.key));
  for (const { d } of entries) {
    const filePath = path.posix.join(dir, d.name);
    if (!d.isDirectory()) yield filePath;
    else if (!recurseFilter || recurseFilter(filePath)) yield* walk(filePath, recurseFilter);
  }
};
const S3rver = require(process.env.S3RVER_MAIN);
const AWSAccount = require(process.env.S3RVER_ACCOUNT);
const opts = JSON.parse(process.env.S3RVER_OPTS);
for (const k of opts.extraKeys) AWSAccount.DUMMY_ACCOUNT.createKeyPair(k.accessKeyId, k.secretAccessKey);
const out = (obj) => process.stdout.write(JSON.stringify(obj) + '\\n');
const server = new S3rver({
  address: '127.0.0.1',
  port: 0,
  silent: true,
  directory: opts.directory,
  vhostBuckets: false,
  configureBuckets: [{ name: opts.bucket, configs: [] }],
  ...(opts.tls ? { key: opts.tls.key, cert: opts.tls.cert } : {}),
});
server.run().then(({ port }) => {
  server.httpServer.on('request', (req) => {
    const auth = String(req.headers.authorization || '');
    const cred = /Credential=([^/,\\s]+)\\/\\d{8}\\/([^/]+)\\//.exec(auth);
    const headers = {};
    for (const [name, value] of Object.entries(req.headers)) {
      if (name === 'range' || name === 'x-amz-security-token' || name.startsWith('x-amz-server-side-encryption-customer-')) {
        headers[name] = String(value);
      }
    }
    out({ request: { method: req.method, url: req.url, accessKeyId: cred ? cred[1] : undefined, region: cred ? cred[2] : undefined, headers } });
  });
  out({ listening: port });
}, (err) => { console.error(err); process.exit(1); });
// "sync <n>" on stdin is echoed after every record written before it (a pipe keeps order).
let input = '';
process.stdin.on('data', (chunk) => {
  input += chunk;
  let nl;
  while ((nl = input.indexOf('\\n')) >= 0) {
    const line = input.slice(0, nl);
    input = input.slice(nl + 1);
    if (line.startsWith('sync ')) out({ synced: Number(line.slice(5)) });
  }
});
// The parent going away (even killed) closes this pipe: never outlive it.
process.stdin.on('end', () => process.exit(0));
`;

/** Starts s3rver on a free loopback port; resolves once it listens. */
export async function startS3rver(opts: S3rverOptions = {}): Promise<S3rverInstance> {
  const bucket = opts.bucket ?? 'velero';
  const directory = await mkdtemp(join(tmpdir(), 'vds-s3rver-'));
  // s3rver's continuation tokens are DES-encrypted, a cipher OpenSSL 3 keeps in its legacy provider.
  const child: ChildProcess = spawn(process.execPath, ['--openssl-legacy-provider', '--input-type=commonjs', '-e', CHILD], {
    env: {
      PATH: process.env.PATH ?? '/usr/bin:/bin',
      S3RVER_MAIN,
      S3RVER_ACCOUNT,
      S3RVER_UTILS,
      S3RVER_OPTS: JSON.stringify({ directory, bucket, tls: opts.tls, extraKeys: opts.extraKeys ?? [] }),
    },
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  const exited = once(child, 'exit');
  const requests: RecordedRequest[] = [];
  let stderr = '';
  let pending = '';
  let onListening: ((port: number) => void) | undefined;
  const syncs = new Map<number, () => void>();
  let nextSync = 0;
  child.stderr?.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  child.stdout?.on('data', (chunk: Buffer) => {
    pending += chunk.toString();
    let nl: number;
    while ((nl = pending.indexOf('\n')) >= 0) {
      const line = JSON.parse(pending.slice(0, nl)) as { request?: RecordedRequest; listening?: number; synced?: number };
      pending = pending.slice(nl + 1);
      if (line.request) requests.push(line.request);
      if (line.synced !== undefined) {
        syncs.get(line.synced)?.();
        syncs.delete(line.synced);
      }
      if (line.listening !== undefined) onListening?.(line.listening);
    }
  });

  let port: number;
  try {
    port = await new Promise<number>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`s3rver did not start within 20 s:\n${stderr}`)), 20_000);
      onListening = (p) => {
        clearTimeout(timer);
        resolve(p);
      };
      void exited.then(([code]) => {
        clearTimeout(timer);
        reject(new Error(`s3rver exited with ${String(code)} before listening:\n${stderr}`));
      });
    });
  } catch (err) {
    if (child.exitCode === null) child.kill('SIGKILL');
    await rm(directory, { recursive: true, force: true });
    throw err;
  }

  const endpoint = `${opts.tls ? 'https' : 'http'}://127.0.0.1:${port}`;
  const handler = new NodeHttpHandler({
    httpAgent: new HttpAgent({ keepAlive: true }),
    httpsAgent: new HttpsAgent({ keepAlive: true, ...(opts.tls?.ca ? { ca: opts.tls.ca } : { rejectUnauthorized: false }) }),
    connectionTimeout: 5_000,
    // Socket idle time: s3rver answers a PUT only after writing and hashing the whole body, which for
    // the 4 GiB object of the memory benchmark takes more than 30 s.
    requestTimeout: 180_000,
    throwOnRequestTimeout: true,
  });
  // With the SDK's default (WHEN_SUPPORTED), a Buffer body gets a CRC32 header that s3rver ignores,
  // but a stream body is sent aws-chunked with a trailing checksum, and s3rver stores the chunk
  // framing as the object's bytes: silently corrupt. WHEN_REQUIRED sends plain bodies either way.
  const seeder = new S3Client({
    region: 'us-east-1',
    endpoint,
    forcePathStyle: true,
    credentials: { accessKeyId: S3RVER_ACCESS_KEY_ID, secretAccessKey: S3RVER_SECRET_ACCESS_KEY },
    requestHandler: handler,
    requestChecksumCalculation: 'WHEN_REQUIRED',
  });

  return {
    endpoint,
    port,
    bucket,
    pid: child.pid!,
    requests,
    flush() {
      const id = nextSync++;
      return new Promise<void>((resolve) => {
        syncs.set(id, resolve);
        child.stdin?.write(`sync ${id}\n`);
      });
    },
    async put(key, bytes) {
      await seeder.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: bytes }));
    },
    async putFile(key, path) {
      const { size } = await stat(path);
      await seeder.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: createReadStream(path), ContentLength: size }));
    },
    async stop() {
      seeder.destroy();
      for (const resolve of syncs.values()) resolve();
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGTERM');
        await exited;
      }
      await rm(directory, { recursive: true, force: true });
    },
  };
}
