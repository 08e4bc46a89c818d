/**
 * A test double of the Google Cloud Storage JSON API: NOT Google Cloud Storage, and not an emulator
 * of all of it. An in-process HTTP or HTTPS server that answers, on the wire as GCS does, the calls
 * a reader makes, so the real `@google-cloud/storage` client and our GCS adapter run against it
 * unmodified:
 * - object metadata `GET /storage/v1/b/{bucket}/o/{object}` (object name URL-encoded, `size` and
 *   `generation` as strings, `etag`, `updated`, `md5Hash`, `crc32c`...);
 * - media download, the same path with `?alt=media` (what `@google-cloud/storage` 8 calls; also
 *   under `/download/storage/v1/...`), with `Range` → 206 + `Content-Range`, unsatisfiable → 416,
 *   and the `x-goog-generation` / `x-goog-hash` / `x-goog-stored-*` headers GCS sends;
 * - objects.list, `GET /storage/v1/b/{bucket}/o` with `prefix`, `startOffset`, `endOffset`,
 *   `maxResults` (at most 1000) and `pageToken`, in UTF-8 byte order of names, `items` left out of an
 *   empty page, `nextPageToken` (opaque) while more remain; `fields` and `projection` are accepted and
 *   the whole resources are sent;
 * - errors as GCS's JSON error bodies: 404 notFound, 401 for a missing or invalid credential (what
 *   GCS answers there), 403 for an account without access to the bucket;
 * - authentication by self-signed service-account JWTs: RS256 signature checked against the public
 *   key of an account the test registered, `iss` = `sub` = its email, `exp` in the future, a storage
 *   read scope. No OAuth token endpoint exists here, so no exchanged access token is accepted.
 * - injected faults: an error status (429/503 with Retry-After...), a truncated body (Content-Length
 *   larger than what is sent, then the socket ends), slow headers, a body that stalls.
 */
import { createHash, createPublicKey, generateKeyPairSync, randomBytes, verify } from 'node:crypto';
import type { KeyObject } from 'node:crypto';
import { createServer as createHttpServer } from 'node:http';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';

/** A service account made for a test: its key file bytes and the public half the double verifies with. */
export interface TestServiceAccount {
  email: string;
  keyId: string;
  privateKeyPem: string;
  publicKeyPem: string;
  /** The service-account JSON key file, as Velero's `cloud-credentials` Secret holds it. */
  json: Uint8Array;
}

/** Makes an RSA key pair and a service-account JSON key file for `email` (not registered anywhere). */
export function createTestServiceAccount(email: string, projectId = 'vds-test-project'): TestServiceAccount {
  const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const privateKeyPem = privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
  const publicKeyPem = publicKey.export({ type: 'spki', format: 'pem' }).toString();
  const keyId = randomBytes(20).toString('hex');
  const doc = {
    type: 'service_account',
    project_id: projectId,
    private_key_id: keyId,
    private_key: privateKeyPem,
    client_email: email,
    client_id: String(100000000000000000000n + BigInt(randomBytes(6).readUIntBE(0, 6))),
    auth_uri: 'https://accounts.google.com/o/oauth2/auth',
    token_uri: 'https://oauth2.googleapis.com/token',
    auth_provider_x509_cert_url: 'https://www.googleapis.com/oauth2/v1/certs',
    client_x509_cert_url: `https://www.googleapis.com/robot/v1/metadata/x509/${encodeURIComponent(email)}`,
    universe_domain: 'googleapis.com',
  };
  return { email, keyId, privateKeyPem, publicKeyPem, json: Buffer.from(JSON.stringify(doc, null, 2)) };
}

/** A failure the double produces instead of (or in the middle of) a normal answer. */
export type GcsFault =
  | { kind: 'status'; status: number; reason?: string; message?: string; retryAfter?: string }
  /** Media only: headers announce the whole length, `sendBytes` are sent, then the socket ends. */
  | { kind: 'truncate'; sendBytes: number }
  /** Answers normally after `ms` milliseconds. */
  | { kind: 'delay'; ms: number }
  /** Media only: headers and `sendBytes` bytes, then nothing until the client goes away. */
  | { kind: 'stall'; sendBytes: number };

export interface GcsFaultRule {
  fault: GcsFault;
  /** Which calls it applies to; default every object call. */
  on?: 'metadata' | 'media' | 'any';
  /** Only calls for this object name. */
  name?: string;
  /** How many calls it affects; default 1. */
  times?: number;
}

/** One call the double answered. */
export interface GcsRecordedRequest {
  method: string;
  /** Raw path and query, as sent. */
  url: string;
  kind: 'metadata' | 'media' | 'list' | 'other';
  bucket?: string;
  name?: string;
  range?: string;
  /** The Authorization header as sent (tests check no error message ever contains it). */
  authorization?: string;
  /** The service account that authenticated, if one did. */
  principal?: string;
  status: number;
}

interface StoredObject {
  bytes: Buffer;
  generation: string;
  metageneration: string;
  contentType: string;
  created: Date;
  md5: string;
  crc32c: string;
}

interface Bucket {
  objects: Map<string, StoredObject>;
  /** Accounts allowed to read; undefined = any registered account. */
  readers?: Set<string>;
}

const STORAGE_READ_SCOPES = new Set([
  'https://www.googleapis.com/auth/devstorage.read_only',
  'https://www.googleapis.com/auth/devstorage.read_write',
  'https://www.googleapis.com/auth/devstorage.full_control',
  'https://www.googleapis.com/auth/cloud-platform',
  'https://www.googleapis.com/auth/cloud-platform.read-only',
]);

const CRC32C_TABLE = ((): Uint32Array => {
  const table = new Uint32Array(256);
  for (let i = 0; i < 256; i++) {
    let c = i;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0x82f63b78 : c >>> 1;
    table[i] = c >>> 0;
  }
  return table;
})();

/** CRC32C (Castagnoli), big-endian, base64: GCS's `crc32c` field and `x-goog-hash` value. */
export function crc32cBase64(bytes: Uint8Array): string {
  let c = 0xffffffff;
  for (const b of bytes) c = CRC32C_TABLE[(c ^ b) & 0xff]! ^ (c >>> 8);
  const out = Buffer.alloc(4);
  out.writeUInt32BE((c ^ 0xffffffff) >>> 0);
  return out.toString('base64');
}

function errorBody(code: number, message: string, reason: string, extra: Record<string, string> = {}): string {
  return JSON.stringify({ error: { code, message, errors: [{ message, domain: 'global', reason, ...extra }] } });
}

function decodeSegment(segment: string): string | undefined {
  try {
    return decodeURIComponent(segment);
  } catch {
    return undefined;
  }
}

const OBJECT_PATH = /^\/(download\/)?storage\/v1\/b\/([^/]+)\/o\/([^/]+)$/;
const LIST_PATH = /^\/storage\/v1\/b\/([^/]+)\/o$/;
const MAX_LIST_RESULTS = 1000;

/** UTF-8 byte order, GCS's order of names. */
function byUtf8(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8'));
}

/** The double itself; start it with GcsJsonApiDouble.start(). */
export class GcsJsonApiDouble {
  readonly url: string;
  readonly requests: GcsRecordedRequest[] = [];
  readonly #server: Server;
  readonly #buckets = new Map<string, Bucket>();
  readonly #accounts = new Map<string, { key: KeyObject; keyId: string | undefined }>();
  readonly #faults: GcsFaultRule[] = [];
  readonly #timers = new Set<NodeJS.Timeout>();
  #lastGeneration = 0n;

  private constructor(server: Server, url: string) {
    this.#server = server;
    this.url = url;
  }

  /** Listens on a free loopback port, over HTTPS when `tls` (a createTestPki() cert and key) is given. */
  static async start(options: { tls?: { cert: string; key: string } } = {}): Promise<GcsJsonApiDouble> {
    // The handler needs the double, the double needs the port: the handler looks it up when called.
    const ref: { double?: GcsJsonApiDouble } = {};
    const handler = (req: IncomingMessage, res: ServerResponse): void => ref.double!.#handle(req, res);
    const server = options.tls ? createHttpsServer({ cert: options.tls.cert, key: options.tls.key }, handler) : createHttpServer(handler);
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(0, '127.0.0.1', () => resolve());
    });
    const { port } = server.address() as AddressInfo;
    ref.double = new GcsJsonApiDouble(server, `${options.tls ? 'https' : 'http'}://127.0.0.1:${port}`);
    return ref.double;
  }

  /** Lets `email` authenticate with JWTs its private key signs (optionally only with key id `keyId`). */
  addServiceAccount(email: string, publicKeyPem: string, keyId?: string): void {
    this.#accounts.set(email, { key: createPublicKey(publicKeyPem), keyId });
  }

  /** Creates the bucket if needed; `readers` restricts it to those accounts (default: any account). */
  createBucket(bucket: string, readers?: string[]): void {
    const existing = this.#buckets.get(bucket);
    const entry: Bucket = existing ?? { objects: new Map() };
    if (readers !== undefined) entry.readers = new Set(readers);
    this.#buckets.set(bucket, entry);
  }

  /** Stores `bytes` as object `name` (a new generation each time), creating the bucket if needed. */
  put(bucket: string, name: string, bytes: Uint8Array, contentType = 'application/octet-stream'): void {
    if (!this.#buckets.has(bucket)) this.createBucket(bucket);
    const now = BigInt(Date.now()) * 1000n;
    this.#lastGeneration = now > this.#lastGeneration ? now : this.#lastGeneration + 1n;
    const buf = Buffer.from(bytes);
    this.#buckets.get(bucket)!.objects.set(name, {
      bytes: buf,
      generation: this.#lastGeneration.toString(),
      metageneration: '1',
      contentType,
      created: new Date(Number(this.#lastGeneration / 1000n)),
      md5: createHash('md5').update(buf).digest('base64'),
      crc32c: crc32cBase64(buf),
    });
  }

  /** Makes the next matching calls fail as `rule` says. */
  inject(rule: GcsFaultRule): void {
    this.#faults.push({ ...rule, times: rule.times ?? 1 });
  }

  clearFaults(): void {
    this.#faults.length = 0;
  }

  /** Stops listening and ends every connection, stalled ones included. */
  async close(): Promise<void> {
    for (const t of this.#timers) clearTimeout(t);
    this.#timers.clear();
    const closed = new Promise<void>((resolve) => this.#server.close(() => resolve()));
    this.#server.closeAllConnections();
    await closed;
  }

  #takeFault(kind: 'metadata' | 'media', name: string): GcsFault | undefined {
    const i = this.#faults.findIndex(
      (r) => (r.on === undefined || r.on === 'any' || r.on === kind) && (r.name === undefined || r.name === name),
    );
    if (i < 0) return undefined;
    const rule = this.#faults[i]!;
    rule.times = (rule.times ?? 1) - 1;
    if (rule.times <= 0) this.#faults.splice(i, 1);
    return rule.fault;
  }

  /** The authenticated account, or the error to send. */
  #authenticate(header: string | undefined): { principal: string } | { status: number; body: string } {
    const denied = { status: 401, body: errorBody(401, 'Invalid Credentials', 'authError', { locationType: 'header', location: 'Authorization' }) };
    if (header === undefined) {
      return {
        status: 401,
        body: errorBody(
          401,
          "Anonymous caller does not have storage.objects.get access to the Google Cloud Storage object. Permission 'storage.objects.get' denied on resource (or it may not exist).",
          'required',
          { locationType: 'header', location: 'Authorization' },
        ),
      };
    }
    const m = /^Bearer ([A-Za-z0-9_-]+)\.([A-Za-z0-9_-]+)\.([A-Za-z0-9_-]+)$/.exec(header);
    if (!m) return denied;
    const [, h, p, s] = m as unknown as [string, string, string, string];
    let head: { alg?: unknown; kid?: unknown };
    let claims: { iss?: unknown; sub?: unknown; exp?: unknown; iat?: unknown; scope?: unknown };
    try {
      head = JSON.parse(Buffer.from(h, 'base64url').toString('utf8')) as typeof head;
      claims = JSON.parse(Buffer.from(p, 'base64url').toString('utf8')) as typeof claims;
    } catch {
      return denied;
    }
    if (head.alg !== 'RS256' || typeof claims.iss !== 'string' || claims.sub !== claims.iss) return denied;
    const account = this.#accounts.get(claims.iss);
    if (!account) return denied;
    if (account.keyId !== undefined && head.kid !== undefined && head.kid !== account.keyId) return denied;
    if (!verify('sha256', Buffer.from(`${h}.${p}`), account.key, Buffer.from(s, 'base64url'))) return denied;
    const now = Math.floor(Date.now() / 1000);
    if (typeof claims.exp !== 'number' || typeof claims.iat !== 'number') return denied;
    if (claims.exp <= now || claims.iat > now + 60 || claims.exp - claims.iat > 3600) return denied;
    const scopes = typeof claims.scope === 'string' ? claims.scope.split(' ') : [];
    if (!scopes.some((sc) => STORAGE_READ_SCOPES.has(sc))) {
      return { status: 403, body: errorBody(403, 'Request had insufficient authentication scopes.', 'insufficientPermissions') };
    }
    return { principal: claims.iss };
  }

  #handle(req: IncomingMessage, res: ServerResponse): void {
    const rawUrl = req.url ?? '/';
    const url = new URL(rawUrl, 'http://double.invalid');
    const match = OBJECT_PATH.exec(url.pathname);
    const authorization = req.headers.authorization;
    const record: GcsRecordedRequest = { method: req.method ?? 'GET', url: rawUrl, kind: 'other', status: 0 };
    if (authorization !== undefined) record.authorization = authorization;
    if (req.headers.range !== undefined) record.range = req.headers.range;
    this.requests.push(record);

    const send = jsonSender(res, record);

    const listed = LIST_PATH.exec(url.pathname);
    const listedBucket = listed ? decodeSegment(listed[1]!) : undefined;
    if (listedBucket !== undefined && req.method === 'GET') {
      record.kind = 'list';
      record.bucket = listedBucket;
      this.#list(req, res, record, listedBucket, url.searchParams);
      return;
    }

    const bucketName = match ? decodeSegment(match[2]!) : undefined;
    const name = match ? decodeSegment(match[3]!) : undefined;
    if (!match || bucketName === undefined || name === undefined) {
      send(404, errorBody(404, 'Not Found', 'notFound'));
      return;
    }
    const media = url.searchParams.get('alt') === 'media';
    if (match[1] !== undefined && !media) {
      send(404, errorBody(404, 'Not Found', 'notFound'));
      return;
    }
    record.kind = media ? 'media' : 'metadata';
    record.bucket = bucketName;
    record.name = name;
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      send(405, errorBody(405, 'Method Not Allowed', 'methodNotAllowed'));
      return;
    }

    const fault = this.#takeFault(record.kind, name);
    if (fault?.kind === 'status') {
      const message = fault.message ?? (fault.status === 429 ? 'The rate of requests exceeds the rate limit.' : 'Backend Error');
      const reason = fault.reason ?? (fault.status === 429 ? 'rateLimitExceeded' : 'backendError');
      send(fault.status, errorBody(fault.status, message, reason), fault.retryAfter !== undefined ? { 'retry-after': fault.retryAfter } : {});
      return;
    }
    const answer = (): void => this.#answer(req, res, record, bucketName, name, media, fault);
    if (fault?.kind === 'delay') {
      const timer = setTimeout(() => {
        this.#timers.delete(timer);
        if (!res.destroyed) answer();
      }, fault.ms);
      this.#timers.add(timer);
      return;
    }
    answer();
  }

  /**
   * The account the request authenticates as may read `bucketName`: the bucket, or undefined once
   * the error (401, 403 or 404, as GCS answers) is sent.
   */
  #admit(
    req: IncomingMessage,
    record: GcsRecordedRequest,
    send: ReturnType<typeof jsonSender>,
    bucketName: string,
    permission: string,
  ): Bucket | undefined {
    const auth = this.#authenticate(req.headers.authorization);
    if ('status' in auth) {
      send(auth.status, auth.body, auth.status === 401 ? { 'www-authenticate': 'Bearer realm="https://accounts.google.com/"' } : {});
      return undefined;
    }
    record.principal = auth.principal;
    const bucket = this.#buckets.get(bucketName);
    if (!bucket) {
      send(404, errorBody(404, 'The specified bucket does not exist.', 'notFound'));
      return undefined;
    }
    if (bucket.readers !== undefined && !bucket.readers.has(auth.principal)) {
      const message = `${auth.principal} does not have ${permission} access to the Google Cloud Storage object. Permission '${permission}' denied on resource (or it may not exist).`;
      send(403, errorBody(403, message, 'forbidden'));
      return undefined;
    }
    return bucket;
  }

  /** An object's resource, as object metadata and objects.list items carry it. */
  #resource(bucketName: string, name: string, object: StoredObject): Record<string, string> {
    const path = `storage/v1/b/${encodeURIComponent(bucketName)}/o/${encodeURIComponent(name)}`;
    const updated = object.created.toISOString();
    return {
      kind: 'storage#object',
      id: `${bucketName}/${name}/${object.generation}`,
      selfLink: `${this.url}/${path}`,
      mediaLink: `${this.url}/download/${path}?generation=${object.generation}&alt=media`,
      name,
      bucket: bucketName,
      generation: object.generation,
      metageneration: object.metageneration,
      contentType: object.contentType,
      storageClass: 'STANDARD',
      size: String(object.bytes.length),
      md5Hash: object.md5,
      crc32c: object.crc32c,
      etag: etagOf(object),
      timeCreated: updated,
      updated,
      timeStorageClassUpdated: updated,
      timeFinalized: updated,
    };
  }

  /** objects.list: one page of the names under `prefix`, from `startOffset` or where `pageToken` left off. */
  #list(req: IncomingMessage, res: ServerResponse, record: GcsRecordedRequest, bucketName: string, query: URLSearchParams): void {
    const send = jsonSender(res, record);
    const bucket = this.#admit(req, record, send, bucketName, 'storage.objects.list');
    if (!bucket) return;
    const invalid = (message: string): void => send(400, errorBody(400, message, 'invalid'));
    const maxText = query.get('maxResults');
    const max = maxText === null ? MAX_LIST_RESULTS : Number(maxText);
    if (!Number.isInteger(max) || max < 0) return invalid(`Invalid value for maxResults: ${maxText}`);
    const prefix = query.get('prefix') ?? '';
    const startOffset = query.get('startOffset');
    const endOffset = query.get('endOffset');
    const token = query.get('pageToken');
    // The token names the last object sent; real tokens are opaque too.
    const after = token === null ? undefined : Buffer.from(token, 'base64url').toString('utf8');
    if (token !== null && (after === '' || Buffer.from(after!, 'utf8').toString('base64url') !== token)) {
      return invalid('Invalid pageToken');
    }
    const names = [...bucket.objects.keys()]
      .filter(
        (n) =>
          n.startsWith(prefix) &&
          (startOffset === null || byUtf8(n, startOffset) >= 0) &&
          (endOffset === null || byUtf8(n, endOffset) < 0) &&
          (after === undefined || byUtf8(n, after) > 0),
      )
      .sort(byUtf8);
    const page = names.slice(0, Math.min(max === 0 ? MAX_LIST_RESULTS : max, MAX_LIST_RESULTS));
    const doc: { kind: string; nextPageToken?: string; items?: Record<string, string>[] } = { kind: 'storage#objects' };
    if (page.length < names.length) doc.nextPageToken = Buffer.from(page.at(-1)!, 'utf8').toString('base64url');
    if (page.length > 0) doc.items = page.map((n) => this.#resource(bucketName, n, bucket.objects.get(n)!));
    send(200, JSON.stringify(doc));
  }

  #answer(
    req: IncomingMessage,
    res: ServerResponse,
    record: GcsRecordedRequest,
    bucketName: string,
    name: string,
    media: boolean,
    fault: GcsFault | undefined,
  ): void {
    const send = jsonSender(res, record);

    const bucket = this.#admit(req, record, send, bucketName, 'storage.objects.get');
    if (!bucket) return;
    const object = bucket.objects.get(name);
    if (!object) {
      send(404, errorBody(404, `No such object: ${bucketName}/${name}`, 'notFound'));
      return;
    }
    const updated = object.created;
    const etag = etagOf(object);
    if (!media) {
      send(200, JSON.stringify(this.#resource(bucketName, name, object)), { etag });
      return;
    }

    const size = object.bytes.length;
    const headers: Record<string, string> = {
      'content-type': object.contentType,
      etag,
      'last-modified': updated.toUTCString(),
      'cache-control': 'no-cache, no-store, max-age=0, must-revalidate',
      'x-goog-generation': object.generation,
      'x-goog-metageneration': object.metageneration,
      'x-goog-stored-content-encoding': 'identity',
      'x-goog-stored-content-length': String(size),
      'x-goog-hash': `crc32c=${object.crc32c},md5=${object.md5}`,
      'x-goog-storage-class': 'STANDARD',
      'accept-ranges': 'bytes',
    };
    let start = 0;
    let end = size - 1;
    let status = 200;
    const range = parseRange(req.headers.range, size);
    if (range === 'unsatisfiable') {
      send(416, errorBody(416, 'The requested range cannot be satisfied.', 'requestedRangeNotSatisfiable'), {
        'content-range': `bytes */${size}`,
      });
      return;
    }
    if (range !== undefined) {
      [start, end] = range;
      status = 206;
      headers['content-range'] = `bytes ${start}-${end}/${size}`;
    }
    const body = object.bytes.subarray(start, end + 1);
    headers['content-length'] = String(body.length);
    record.status = status;
    res.writeHead(status, headers);
    if (req.method === 'HEAD') {
      res.end();
      return;
    }
    if (fault?.kind === 'truncate' || fault?.kind === 'stall') {
      const partial = body.subarray(0, Math.min(fault.sendBytes, Math.max(0, body.length - 1)));
      res.write(partial, () => {
        // Truncate: FIN after fewer bytes than Content-Length said. Stall: keep the socket silent.
        if (fault.kind === 'truncate') res.socket?.end();
      });
      return;
    }
    res.end(body);
  }
}

/** Sends a JSON answer (GCS's error bodies included) and records its status. */
function jsonSender(res: ServerResponse, record: GcsRecordedRequest) {
  return (status: number, body: string, headers: Record<string, string> = {}): void => {
    record.status = status;
    res.writeHead(status, { 'content-type': 'application/json; charset=UTF-8', 'content-length': Buffer.byteLength(body), ...headers });
    res.end(body);
  };
}

function etagOf(object: StoredObject): string {
  return Buffer.from(`${object.generation}/${object.metageneration}`).toString('base64');
}

/** [start, end] of a single `bytes=` range clamped to `size`, 'unsatisfiable', or undefined (serve it all). */
function parseRange(header: string | undefined, size: number): [number, number] | 'unsatisfiable' | undefined {
  if (header === undefined) return undefined;
  const m = /^bytes=(\d*)-(\d*)$/.exec(header.trim());
  if (!m || (m[1] === '' && m[2] === '')) return undefined;
  if (m[1] === '') {
    const n = Number(m[2]);
    if (n === 0 || size === 0) return 'unsatisfiable';
    return [Math.max(0, size - n), size - 1];
  }
  const start = Number(m[1]);
  const end = m[2] === '' ? size - 1 : Number(m[2]);
  if (end < start) return undefined;
  if (start >= size) return 'unsatisfiable';
  return [start, Math.min(end, size - 1)];
}
