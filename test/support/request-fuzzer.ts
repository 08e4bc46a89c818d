/**
 * Generated HTTP/1.1 requests for the gateway's fuzz test, as raw bytes, from a seeded PRNG: clean
 * requests (well-formed; the exact status is predicted) and junk ones (encodings and `..` in paths,
 * NUL and other raw bytes, overlong segments, odd and lower-case methods, bad versions, huge and
 * malformed headers, framing tricks, Range / conditional / Authorization junk; only the class of
 * status is predicted). Every request ends its head with CRLF CRLF, so none waits for the header
 * timeout.
 */

/** A download target the fuzzer may name. */
export interface FuzzTarget {
  owner: 'backups' | 'restores';
  name: string;
  artifact: string;
  /** The object's bytes when it exists and is served. */
  bytes?: Buffer;
  etag?: string;
  lastModified?: string;
  /** What an authorized clean GET must answer (200 for an object; 400, 404 for the others). */
  status: number;
}

export interface FuzzContext {
  token: string;
  namespace: string;
  targets: FuzzTarget[];
}

export interface FuzzCase {
  raw: Buffer;
  method: string;
  /** A HEAD request: the response has no body. */
  head: boolean;
  /** Well-formed: `expect` is exact. */
  clean: boolean;
  /** Sent alone on a new connection (with Connection: close): its framing or connection handling is unusual. */
  isolate: boolean;
  /** The first Authorization header carries the right token in an accepted form. */
  authorized: boolean;
  /** Under /v1/namespaces/ (a download route, or a near miss of one). */
  downloadPath: boolean;
  target?: FuzzTarget;
  /** Exact statuses accepted (clean requests). */
  expect?: number[];
  hasRange: boolean;
  conditional: boolean;
  /** A junk Expect header (Node answers 417). */
  junkExpect: boolean;
  /**
   * Node may close the connection without a final answer: a CONNECT (no 'connect' handler), or a
   * request with broken framing (Transfer-Encoding / Content-Length) that also asked for
   * `Expect: 100-continue` (Node sends 100, hands the request on, then its parser fails on the framing
   * and destroys the socket before the response).
   */
  mayCloseWithoutAnswer: boolean;
  /** Short printable description for failure messages. */
  what: string;
}

type Rand = () => number;

const pick = <T>(r: Rand, xs: readonly T[]): T => xs[Math.floor(r() * xs.length)]!;
const chance = (r: Rand, p: number): boolean => r() < p;
const int = (r: Rand, lo: number, hi: number): number => lo + Math.floor(r() * (hi - lo + 1));

const HEALTH = ['/healthz', '/readyz', '/v1/info'];
const ODD_METHODS = ['POST', 'PUT', 'DELETE', 'OPTIONS', 'PATCH', 'PROPFIND', 'TRACE', 'MKCOL', 'LOCK', 'SEARCH', 'PURGE', 'COPY', 'MOVE', 'REPORT'];
const BAD_METHODS = ['get', 'Get', 'hEAD', 'G@T', 'GETT', 'GET\u0000', 'A'.repeat(200), '\u00e9GET', 'GE T', ''];
const BAD_VERSIONS = ['HTTP/1.2', 'HTTP/9.9', 'HTTP/1', 'http/1.1', 'HTTP/1.1.1', 'HTTP/11', 'HTTPS/1.1', 'HTTP/-1.1'];
const UNKNOWN_ARTIFACTS = ['logs', 'secrets', 'contents2', 'LOG', 'metadata', 'velero-backup.json', 'tar.gz'];

/** Percent-encodes every byte of `s`. */
const encodeAll = (s: string): string => [...Buffer.from(s)].map((b) => `%${b.toString(16).padStart(2, '0')}`).join('');

function dnsName(r: Rand): string {
  const chars = 'abcdefghijklmnopqrstuvwxyz0123456789';
  const n = int(r, 1, 20);
  let s = '';
  for (let i = 0; i < n; i++) s += pick(r, [...chars]);
  return `nx-${s}`;
}

function authHeader(r: Rand, token: string): { lines: string[]; authorized: boolean } {
  if (chance(r, 0.55)) {
    const form = pick(r, [`Bearer ${token}`, `bearer ${token}`, `BEARER\t${token}`, `Bearer  ${token}`, `Bearer ${token}  `, `BeArEr ${token}`]);
    return { lines: [`Authorization: ${form}`], authorized: true };
  }
  const wrong = pick(r, [
    '',
    'Bearer',
    'Bearer ',
    'Basic dXNlcjpwYXNzd29yZA==',
    'Bearer wrong-token',
    `Bearer ${token}x`,
    `Bearer ${token.slice(0, -1)}`,
    `Bearer ${token} extra`,
    `Token ${token}`,
    token,
    `Bearer ${'t'.repeat(4000)}`,
    `Bearer ${token.toUpperCase() === token ? token.toLowerCase() : token.toUpperCase()}`,
    'Bearer ' + 'é'.repeat(3),
    `Bearer,${token}`,
    `Negotiate ${token}`,
  ]);
  return { lines: wrong === '' ? [] : [`Authorization: ${wrong}`], authorized: false };
}

function rangeHeader(r: Rand, size: number): string {
  const a = int(r, 0, size + 5);
  const b = int(r, 0, size + 5);
  return pick(r, [
    `bytes=0-${int(r, 0, size)}`,
    `bytes=${a}-${Math.max(a, b)}`,
    `bytes=${a}-`,
    `bytes=-${int(r, 0, size + 3)}`,
    'bytes=0-0',
    `bytes=0-9,20-29`,
    `bytes=${size + int(r, 0, 1000)}-`,
    `bytes=${b}-${a}`,
    'bytes=abc',
    'items=0-1',
    'bytes=-0',
    'bytes=',
    'bytes=0-18446744073709551616',
    ' bytes = 0 - 1',
    'bytes=0-1,',
    'bytes=1-2,3-4,5-6,7-8,9-10',
    `bytes=${'9'.repeat(40)}-`,
  ]);
}

function conditionalHeaders(r: Rand, t: FuzzTarget | undefined): string[] {
  const etag = t?.etag ?? '"none"';
  const lm = t?.lastModified ?? 'Thu, 01 Jan 1970 00:00:00 GMT';
  return [
    pick(r, [
      `If-None-Match: ${etag}`,
      `If-None-Match: W/${etag}`,
      `If-None-Match: "junk", ${etag}`,
      'If-None-Match: *',
      'If-None-Match: "junk"',
      'If-None-Match: junk-without-quotes',
      `If-Modified-Since: ${lm}`,
      'If-Modified-Since: Sat, 01 Jan 2100 00:00:00 GMT',
      'If-Modified-Since: Sat, 01 Jan 2000 00:00:00 GMT',
      'If-Modified-Since: yesterday',
      `If-Range: ${etag}`,
      `If-Range: W/${etag}`,
      `If-Range: ${lm}`,
      'If-Range: "junk"',
      'If-Range: not a date',
    ]),
  ];
}

/** A well-formed request whose status the model predicts exactly. */
function cleanCase(r: Rand, ctx: FuzzContext): FuzzCase {
  const head = chance(r, 0.15);
  const method = head ? 'HEAD' : 'GET';
  const lines: string[] = ['Host: localhost'];
  if (chance(r, 0.06)) {
    const path = pick(r, HEALTH);
    if (chance(r, 0.5)) lines.push(...authHeader(r, ctx.token).lines);
    return finish({ method, head, path, lines, clean: true, authorized: false, downloadPath: false, expect: [200], hasRange: false, conditional: false, what: `${method} ${path}` });
  }
  const auth = authHeader(r, ctx.token);
  lines.push(...auth.lines);
  let target: FuzzTarget;
  let namespace = ctx.namespace;
  let expect: number;
  const roll = r();
  if (roll < 0.7) {
    target = pick(r, ctx.targets);
    expect = target.status;
  } else if (roll < 0.8) {
    target = { owner: pick(r, ['backups', 'restores'] as const), name: dnsName(r), artifact: 'log', status: 404 };
    expect = 404;
  } else if (roll < 0.85) {
    target = { owner: 'backups', name: pick(r, ctx.targets).name, artifact: pick(r, UNKNOWN_ARTIFACTS), status: 404 };
    expect = 404;
  } else if (roll < 0.9) {
    target = pick(r, ctx.targets);
    namespace = pick(r, ['default', 'kube-system', 'velero2', 'a']);
    expect = 404;
  } else {
    const bad = pick(r, ['UPPER', 'a_b', '-lead', 'trail-', 'a..b', 'x'.repeat(254), 'dot.', '.dot', 'sp%20ace', 'tab%09', 'n%00ul', '%2e%2e', '..%2f..%2fetc', '%2f', 'a%2fb', '%C3%A9']);
    target = { owner: 'backups', name: bad, artifact: 'log', status: 400 };
    expect = 400;
  }
  const path = `/v1/namespaces/${namespace}/${target.owner}/${target.name}/${target.artifact}`;
  const size = target.bytes?.length ?? 100;
  const hasRange = chance(r, 0.3);
  if (hasRange) lines.push(`Range: ${rangeHeader(r, size)}`);
  const conditional = chance(r, 0.2);
  if (conditional) lines.push(...conditionalHeaders(r, target));
  if (chance(r, 0.1)) lines.push(`X-Request-Id: ${pick(r, ['ok-1', 'x'.repeat(500), '<script>', '../../etc', '%00'])}`);
  // The one exact status, except for an existing object under Range or conditions (checked for consistency).
  let exp: number[] = !auth.authorized ? [401] : [expect];
  if (auth.authorized && expect === 200 && (hasRange || conditional)) exp = [200, 206, 304, 416];
  return finish({ method, head, path, lines, clean: true, authorized: auth.authorized, downloadPath: true, target, expect: exp, hasRange, conditional, what: `${method} ${path}` });
}

/** What a generator fills in; finish() builds the raw request and the FuzzCase from it. */
type Parts = Omit<FuzzCase, 'raw' | 'isolate' | 'junkExpect' | 'mayCloseWithoutAnswer'> & {
  path: string;
  version?: string;
  lines: string[];
  isolate?: boolean;
  junkExpect?: boolean;
  mayClose?: boolean;
  body?: string;
};

function finish(p: Parts): FuzzCase {
  const head = `${p.method} ${p.path} ${p.version ?? 'HTTP/1.1'}\r\n${p.lines.map((l) => `${l}\r\n`).join('')}\r\n`;
  return {
    raw: Buffer.concat([Buffer.from(head, 'latin1'), Buffer.from(p.body ?? '', 'latin1')]),
    method: p.method,
    head: p.head,
    clean: p.clean,
    isolate: p.isolate ?? false,
    authorized: p.authorized,
    downloadPath: p.downloadPath,
    ...(p.target && { target: p.target }),
    ...(p.expect && { expect: p.expect }),
    hasRange: p.hasRange,
    conditional: p.conditional,
    junkExpect: p.junkExpect ?? false,
    mayCloseWithoutAnswer: p.method === 'CONNECT' || (p.mayClose ?? false),
    what: JSON.stringify(p.what.length > 160 ? `${p.what.slice(0, 160)}…` : p.what),
  };
}

const PATH_MUTATIONS: ((r: Rand, path: string) => string)[] = [
  (r, p) => p.replace(/\/[^/]+\/([^/]+)$/, (_m, a: string) => `/..${pick(r, ['/', '%2f', '%2F', '%252f'])}..${pick(r, ['/', '%2f'])}etc/${a}`),
  (r, p) => p.replace('/backups/', pick(r, ['/backups/../', '/backups/%2e%2e/', '/backups/%2E%2e%2f', '/backups/.%2e/', '/backups/%252e%252e/', '/backups/%c0%ae%c0%ae/', '/backups/..%5c', '/backups/..\\'])),
  (r, p) => {
    const segs = p.split('/');
    if (segs.length < 2) return p;
    const i = int(r, 1, segs.length - 1);
    segs[i] = encodeAll(segs[i]!);
    return segs.join('/');
  },
  (r, p) => {
    const segs = p.split('/');
    if (segs.length < 2) return p;
    const i = int(r, 1, segs.length - 1);
    segs[i] = encodeAll(encodeAll(segs[i]!));
    return segs.join('/');
  },
  (r, p) => p + pick(r, ['/', '//', '/.', '/..', '%00', '%', '%zz', '%2', ';x', '?a=b', '?token=abc', '?access_token=abc', '?bearer=x', '#frag', '%20', '/%2e%2e/%2e%2e/canary.txt']),
  (r, p) => p.replace(/\/(log|contents|results)$/, (_m, a: string) => `/${a}${pick(r, ['%00.gz', '\u0000', '%0a', '%0d%0aX-Injected: 1', '.gz', '%2f..%2f..%2fcanary.txt'])}`),
  (r, p) => {
    const segs = p.split('/');
    if (segs.length < 2) return p;
    const i = int(r, 1, segs.length - 1);
    segs[i] = 'a'.repeat(pick(r, [64, 254, 300, 1100, 5000]));
    return segs.join('/');
  },
  (r, p) => p.replace('/v1/', pick(r, ['//v1/', '/v1//', '/V1/', '/v1/./', '/v2/', '/./v1/', '/%76%31/'])),
  (r, p) => pick(r, [`https://localhost${p}`, `http://evil.example${p}`, `//localhost${p}`, '*', p.slice(1), `\\${p}`]),
  (r, p) => p.replace(/[a-z]/, (c) => pick(r, [c.toUpperCase(), `\u00e9`, '\u0000', '\u007f', '\u00ff', ' ', '\t'])),
];

interface HeaderMutation {
  lines: string[];
  body?: string;
  junkExpect?: boolean;
  /** Framing the parser refuses (bad Transfer-Encoding or Content-Length). */
  badFraming?: boolean;
  continue100?: boolean;
  /** The request's framing or connection handling is unusual: send it alone on a connection. */
  isolate?: boolean;
}

const HEADER_MUTATIONS: ((r: Rand, lines: string[]) => HeaderMutation)[] = [
  (r, l) => ({ lines: [...l, `X-Pad: ${'p'.repeat(int(r, 16 * 1024 + 1, 40 * 1024))}`] }),
  (r, l) => ({ lines: [...l, ...Array.from({ length: int(r, 200, 400) }, (_, i) => `X-Many-${i}: ${'m'.repeat(90)}`)] }),
  (r, l) => ({ lines: [...l, pick(r, ['NoColonHere', ' Leading: space', 'Bad Name: x', 'X-A : b', 'X-Nul: a\u0000b', ': empty-name', 'X-Ctl: a\u0001b', 'X-Del: a\u007fb', 'X-\u00e9: v', '\tX-Tab: v'])] }),
  (r, l) => ({ lines: [...l, 'X-Fold: a', pick(r, [' continued', '\tcontinued'])], isolate: true }),
  (r, l) => ({
    isolate: true,
    ...pick<HeaderMutation>(r, [
      { lines: [...l, 'Content-Length: abc'], badFraming: true },
      { lines: [...l, 'Content-Length: -1'], badFraming: true },
      { lines: [...l, 'Content-Length: 1', 'Content-Length: 2'], badFraming: true },
      { lines: [...l, 'Content-Length: 5'], body: 'hello' },
      { lines: [...l, 'Content-Length: 99999999999999999999'], badFraming: true },
      { lines: [...l, 'Transfer-Encoding: chunked'], body: '0\r\n\r\n' },
      { lines: [...l, 'Transfer-Encoding: chunked'], body: 'zz\r\n', badFraming: true },
      { lines: [...l, 'Transfer-Encoding: gzip, chunked'], body: '0\r\n\r\n' },
      { lines: [...l, 'Transfer-Encoding: chunked', 'Content-Length: 5'], body: '0\r\n\r\n', badFraming: true },
      { lines: [...l, 'Transfer-Encoding: identity'], badFraming: true },
      { lines: [...l, 'Transfer-Encoding: chunked, gzip'], badFraming: true },
    ]),
  }),
  // Node treats any Expect value with the token 100-continue as one (it answers 100), others get 417.
  (r, l) =>
    chance(r, 0.5)
      ? { lines: [...l, `Expect: ${pick(r, ['100-continue', '100-continue, x', '100-CONTINUE'])}`], continue100: true, isolate: true }
      : { lines: [...l, `Expect: ${pick(r, ['junk', '200-ok', '100-continuex'])}`], junkExpect: true, isolate: true },
  (r, l) => ({ lines: l.filter((x) => !x.startsWith('Host:')).concat(pick(r, [[], ['Host: a', 'Host: b'], ['Host: '], ['Host: evil.example:1'], ['Host: [::1'], ['Host: a b']])) }),
  (r, l) => ({ lines: [...l, `Range: ${pick(r, ['bytes=0-1', 'bytes=\u0000', 'bytes=0-1\u0000', 'bytes=' + '0-1,'.repeat(2000), 'bytes=-', 'bytes=--1'])}`] }),
  (r, l) => ({ lines: [...l, `If-None-Match: ${pick(r, ['\u0001', '"' + 'x'.repeat(3000) + '"', ',,,,', 'W/', 'W/"'])}`, `If-Range: ${pick(r, ['"', 'W/"x"', 'Mon, 32 Foo 2020', '\u00ff'])}`] }),
  (r, l) => ({ lines: [...l, `Authorization: ${pick(r, ['Bearer a\u0000b', 'Bearer \u00ff\u00fe', 'Bearer ' + 'x'.repeat(20_000)])}`] }),
  (r, l) => ({ lines: [...l, pick(r, ['Connection: Upgrade', 'Upgrade: h2c', 'Connection: keep-alive, Upgrade', 'Upgrade: websocket', 'HTTP2-Settings: AAMAAABkAAQAAP__'])], isolate: true }),
  (_r, l) => ({ lines: [...l, 'X-Bare-LF: a\nX-Second: b'], isolate: true }),
];

/** A request with 1 to 3 mutations of a clean one: only the class of its status is predicted. */
function junkCase(r: Rand, ctx: FuzzContext): FuzzCase {
  const base = cleanCase(r, ctx);
  const firstLine = base.raw.toString('latin1').split('\r\n')[0]!;
  let path = firstLine.slice(firstLine.indexOf(' ') + 1, firstLine.lastIndexOf(' '));
  let method = base.method;
  let version = 'HTTP/1.1';
  let lines = base.raw.toString('latin1').split('\r\n\r\n')[0]!.split('\r\n').slice(1);
  let body: string | undefined;
  let junkExpect = false;
  let badFraming = false;
  let continue100 = false;
  let isolate = false;
  const what: string[] = [];
  const n = int(r, 1, 3);
  for (let i = 0; i < n; i++) {
    const kind = r();
    if (kind < 0.4) {
      path = pick(r, PATH_MUTATIONS)(r, path);
      what.push('path');
    } else if (kind < 0.55) {
      method = chance(r, 0.75) ? pick(r, [...ODD_METHODS, 'CONNECT']) : pick(r, BAD_METHODS);
      isolate ||= method === 'CONNECT' || BAD_METHODS.includes(method);
      what.push('method');
    } else if (kind < 0.6) {
      version = pick(r, BAD_VERSIONS);
      isolate = true;
      what.push('version');
    } else {
      const m = pick(r, HEADER_MUTATIONS)(r, lines);
      lines = m.lines;
      body = m.body ?? body;
      junkExpect ||= m.junkExpect ?? false;
      badFraming ||= m.badFraming ?? false;
      continue100 ||= m.continue100 ?? false;
      isolate ||= m.isolate ?? false;
      what.push('headers');
    }
  }
  // Framing and connection tricks never share a connection: they must not bleed into the next request.
  if (isolate) lines.push('Connection: close');
  // Mutations only append Authorization lines, and Node keeps the first of duplicates.
  const authorized = base.authorized;
  return finish({
    method,
    head: method === 'HEAD',
    path,
    version,
    lines,
    clean: false,
    isolate,
    authorized,
    downloadPath: /namespaces/i.test(path),
    ...(base.target && { target: base.target }),
    hasRange: true,
    conditional: true,
    junkExpect,
    mayClose: badFraming && continue100,
    ...(body !== undefined && { body }),
    what: `[${what.join('+')}] ${method} ${path}`,
  });
}

/** The next generated request: about 45% clean, 55% junk. */
export function generateCase(r: Rand, ctx: FuzzContext): FuzzCase {
  return chance(r, 0.45) ? cleanCase(r, ctx) : junkCase(r, ctx);
}
