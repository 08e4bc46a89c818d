/**
 * No reaching inside the cluster through a tenant's endpoint. A tenant writes its BSL's
 * endpoint (`s3Url`, `storageAccountURI`, `storeEndpoint`, or a cloud's public name by default) and
 * the gateway connects there from inside the cluster: without a guard, a tenant could point it at
 * the cloud metadata service (169.254.169.254), the API server, or any pod, and read answers back
 * through error messages or downloads.
 *
 * The check is made where the socket is made, on the address it connects to:
 * - every connection of a guarded agent resolves its host through `lookup` below, which asks DNS
 *   (all addresses), drops the refused ones and hands Node only the checked ones, so the socket
 *   connects to exactly an address that was checked (a DNS answer that changes between a check and
 *   the connection cannot exist: there is one resolution, and it is the connection's);
 * - a literal IP host (Node does no lookup for one) is checked in the agent's createConnection;
 * - a plain-HTTP agent of a tenant's location refuses every connection: tenants' endpoints are HTTPS.
 * `checkEndpoint` also refuses an http:// or refused literal endpoint when the client is built, for
 * an early, clear error; the connection-time check is the one that holds.
 */
import { promises as dns } from 'node:dns';
import type { LookupAddress } from 'node:dns';
import type { Agent as HttpAgent, ClientRequestArgs } from 'node:http';
import { Agent as HttpsAgent } from 'node:https';
import { BlockList, isIP, isIPv4, isIPv6 } from 'node:net';
import type { LookupFunction } from 'node:net';
import { ENDPOINT_REFUSED_CODE, EndpointRefusedError } from './errors.ts';

/** Why a tenant's location may not reach an address. */
export type AddressClass = 'loopback' | 'link-local' | 'private' | 'shared' | 'unspecified' | 'multicast' | 'reserved';

/** These reach the gateway's own host or its node (metadata service): only a CIDR entry allows them, never a host name entry. */
const HOST_LOCAL: ReadonlySet<AddressClass> = new Set(['loopback', 'link-local', 'unspecified', 'multicast']);

const METADATA_ADDRESSES: ReadonlySet<string> = new Set(['169.254.169.254', 'fd00:ec2::254']);

/** Resolves a host name to all its addresses; dns.lookup (getaddrinfo, as Node's sockets do) unless a test injects another. */
export type EndpointResolver = (hostname: string, options: { family: 0 | 4 | 6; hints?: number }) => Promise<LookupAddress[]>;

const systemResolver: EndpointResolver = (hostname, { family, hints }) =>
  dns.lookup(hostname, { all: true, family, ...(hints === undefined ? {} : { hints }) });

// ---- addresses -------------------------------------------------------------------------------------

interface Ip {
  /** 4 bytes (IPv4) or 16 (IPv6). */
  bytes: Uint8Array;
}

function parseV4(text: string): Uint8Array | undefined {
  if (!isIPv4(text)) return undefined;
  return Uint8Array.from(text.split('.').map(Number));
}

/** The 16 bytes of an IPv6 address (a zone `%eth0` is dropped; an embedded dotted quad is allowed). */
function parseV6(text: string): Uint8Array | undefined {
  const address = text.replace(/%.*$/, '');
  if (!isIPv6(address)) return undefined;
  let head = address;
  let tail4: Uint8Array | undefined;
  const lastColon = address.lastIndexOf(':');
  if (address.includes('.', lastColon)) {
    tail4 = parseV4(address.slice(lastColon + 1));
    if (tail4 === undefined) return undefined;
    head = `${address.slice(0, lastColon + 1)}0:0`;
  }
  const [left, right] = head.includes('::') ? head.split('::') : [head, undefined];
  const groups = (s: string | undefined): number[] => (s === undefined || s === '' ? [] : s.split(':').map((g) => parseInt(g, 16)));
  const l = groups(left);
  const r = groups(right);
  const all = right === undefined ? l : [...l, ...new Array<number>(8 - l.length - r.length).fill(0), ...r];
  if (all.length !== 8) return undefined;
  const bytes = new Uint8Array(16);
  all.forEach((g, i) => {
    bytes[2 * i] = g >> 8;
    bytes[2 * i + 1] = g & 0xff;
  });
  if (tail4 !== undefined) bytes.set(tail4, 12);
  return bytes;
}

function parseIp(text: string): Ip | undefined {
  const bare = text.startsWith('[') && text.endsWith(']') ? text.slice(1, -1) : text;
  const bytes = parseV4(bare) ?? parseV6(bare);
  return bytes === undefined ? undefined : { bytes };
}

/**
 * CIDRs (`10.0.0.0/8`, `fc00::/7`) matched by Node's BlockList, one list per family: a BlockList also
 * matches an IPv4 address against IPv6 rules as its mapped form, which the reserved `::/8` would hold.
 */
class Cidrs {
  readonly #lists = { ipv4: new BlockList(), ipv6: new BlockList() };
  constructor(cidrs: readonly string[] = []) {
    for (const cidr of cidrs) {
      const [address = '', bits = ''] = cidr.split('/');
      this.add(address, Number(bits));
    }
  }
  add(address: string, bits: number): void {
    const family = isIPv4(address) ? 'ipv4' : 'ipv6';
    this.#lists[family].addSubnet(address, bits, family);
  }
  has(bytes: Uint8Array): boolean {
    const family = bytes.length === 4 ? 'ipv4' : 'ipv6';
    return this.#lists[family].check(format(bytes), family);
  }
}

/**
 * The classes, checked in this order: the IPv6 ranges nest (`::1` and local-use NAT64 lie inside the
 * reserved `::/8`), so the narrower class comes first.
 */
const CLASSES: readonly (readonly [AddressClass, Cidrs])[] = (
  [
    ['unspecified', ['0.0.0.0/8', '::/128']],
    ['loopback', ['127.0.0.0/8', '::1/128']],
    ['link-local', ['169.254.0.0/16', 'fe80::/10']],
    // 64:ff9b:1::/48 is local-use NAT64; fec0::/10 the deprecated site-local.
    ['private', ['10.0.0.0/8', '172.16.0.0/12', '192.168.0.0/16', '64:ff9b:1::/48', 'fc00::/7', 'fec0::/10']],
    ['shared', ['100.64.0.0/10']],
    ['multicast', ['224.0.0.0/4', 'ff00::/8']],
    // ::/8 holds the IPv4-compatible and other reserved forms (the mapped forms are taken apart before); 100::/64 is discard-only.
    ['reserved', ['192.0.0.0/24', '198.18.0.0/15', '240.0.0.0/4', '::/8', '100::/64']],
  ] as const
).map(([c, cidrs]) => [c, new Cidrs(cidrs)] as const);

const MAPPED = new Cidrs(['::ffff:0:0/96']);
/** IPv6 addresses whose last 32 bits are an IPv4 address reached through them: mapped, SIIT-translated, NAT64. */
const EMBEDDED_AT_END = new Cidrs(['::ffff:0:0/96', '::ffff:0:0:0/96', '64:ff9b::/96']);
const SIX_TO_FOUR = new Cidrs(['2002::/16']);

/**
 * The IPv4 address an IPv6 address stands for, where reaching the one reaches the other: mapped
 * (`::ffff:a.b.c.d`), SIIT-translated, NAT64 well-known prefix, 6to4.
 */
function embeddedV4(v6: Uint8Array): Uint8Array | undefined {
  if (EMBEDDED_AT_END.has(v6)) return v6.slice(12);
  if (SIX_TO_FOUR.has(v6)) return v6.slice(2, 6);
  return undefined;
}

function isMapped(bytes: Uint8Array): boolean {
  return bytes.length === 16 && MAPPED.has(bytes);
}

/** For matching allow-list CIDRs: an IPv4-mapped IPv6 address is its IPv4 address. */
function canonical(bytes: Uint8Array): Uint8Array {
  return isMapped(bytes) ? bytes.slice(12) : bytes;
}

function classifyBytes(bytes: Uint8Array): AddressClass | undefined {
  if (bytes.length === 16) {
    const v4 = embeddedV4(bytes);
    if (v4 !== undefined) return classifyBytes(v4);
  }
  return CLASSES.find(([, cidrs]) => cidrs.has(bytes))?.[0];
}

/**
 * Why a tenant's location may not reach `address` (IPv4 or IPv6 text, zone and brackets allowed), or
 * undefined for a public address. Covers loopback (127/8, ::1), link-local (169.254/16 with the
 * metadata service, fe80::/10), private (10/8, 172.16/12, 192.168/16, fc00::/7, fec0::/10, local-use
 * NAT64), shared CGNAT (100.64/10), unspecified (0/8, ::), multicast and reserved ranges, also written
 * as IPv4-mapped, SIIT, NAT64 or 6to4 IPv6 addresses. Throws a TypeError for text that is not an IP.
 */
export function classifyAddress(address: string): AddressClass | undefined {
  const ip = parseIp(address);
  if (ip === undefined) throw new TypeError(`not an IP address: ${JSON.stringify(address)}`);
  return classifyBytes(ip.bytes);
}

function describe(address: string, c: AddressClass): string {
  const ip = parseIp(address);
  const v4 = ip === undefined ? undefined : ip.bytes.length === 16 ? embeddedV4(ip.bytes) : ip.bytes;
  const metadata = METADATA_ADDRESSES.has(address.toLowerCase()) || (v4 !== undefined && METADATA_ADDRESSES.has(v4.join('.')));
  switch (c) {
    case 'loopback':
      return 'a loopback address';
    case 'link-local':
      return metadata ? 'a link-local address (the cloud metadata service)' : 'a link-local address';
    case 'private':
      return metadata ? 'a private address (the cloud metadata service)' : 'a private address';
    case 'shared':
      return 'a shared (carrier-grade NAT) address';
    case 'unspecified':
      return 'an unspecified address';
    case 'multicast':
      return 'a multicast address';
    case 'reserved':
      return 'a reserved address';
  }
}

// ---- the allow list --------------------------------------------------------------------------------

/** `--tenant-endpoint-allow`, parsed: CIDRs (or single addresses) and host names or `*.` globs. */
export interface EndpointAllowList {
  /** The entries, normalised (lowercase, single addresses as /32 or /128): what shapes a client's digest. */
  readonly entries: readonly string[];
  /** Whether `address` lies in one of the CIDRs (an IPv4-mapped IPv6 address counts as its IPv4 address). */
  allowsAddress(address: string): boolean;
  /** Whether `host` is one of the names or matches one of the globs. */
  allowsHost(host: string): boolean;
}

const LABEL = /^[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?$/;

function normalizeHost(host: string): string {
  return host.toLowerCase().replace(/\.$/, '');
}

/**
 * Parses the allow list; every bad entry is reported in `errors` (for the start-up error report),
 * the good ones are kept. Entries: `10.0.0.0/8`, `fd00::/8`, `10.1.2.3`, `minio.storage.svc`,
 * `*.corp.example` (any name ending in `.corp.example`, at any depth; not `corp.example` itself).
 * A host entry allows private, shared and reserved addresses of that name; loopback, link-local,
 * unspecified and multicast addresses are allowed only by a CIDR entry, so that no DNS name a tenant
 * can influence (an ExternalName Service, a CNAME) reaches the node's metadata service or the
 * gateway's own loopback.
 */
export function parseEndpointAllowList(input: readonly string[]): { allow: EndpointAllowList; errors: string[] } {
  const allowed = new Cidrs();
  const hosts = new Set<string>();
  const suffixes = new Set<string>();
  const entries: string[] = [];
  const errors: string[] = [];
  for (const raw of input) {
    const entry = raw.trim();
    if (entry === '') continue;
    const bad = (why: string): void => {
      errors.push(`--tenant-endpoint-allow: ${JSON.stringify(entry)} ${why}`);
    };
    if (entry.includes('/')) {
      const [addr = '', bits = '', ...rest] = entry.split('/');
      const ip = parseIp(addr);
      const max = ip?.bytes.length === 4 ? 32 : 128;
      if (ip === undefined || rest.length > 0 || !/^\d{1,3}$/.test(bits) || Number(bits) > max) {
        bad('is not a CIDR (like 10.0.0.0/8 or fd00::/8)');
        continue;
      }
      let base = ip.bytes;
      let n = Number(bits);
      if (isMapped(base) && n >= 96) {
        base = base.slice(12);
        n -= 96;
      }
      const network = new Uint8Array(base.length);
      for (let i = 0; i < base.length; i++) {
        const take = Math.max(0, Math.min(8, n - 8 * i));
        network[i] = (base[i] ?? 0) & ((0xff << (8 - take)) & 0xff);
      }
      if (!network.every((b, i) => b === base[i])) {
        bad(`has bits set past the prefix length; the network is ${format(network)}/${n}`);
        continue;
      }
      allowed.add(format(network), n);
      entries.push(`${format(network)}/${n}`);
      continue;
    }
    const ip = parseIp(entry);
    if (ip !== undefined) {
      const bytes = canonical(ip.bytes);
      allowed.add(format(bytes), bytes.length * 8);
      entries.push(`${format(bytes)}/${bytes.length * 8}`);
      continue;
    }
    const host = normalizeHost(entry);
    const wildcard = host.startsWith('*.');
    const labels = (wildcard ? host.slice(2) : host).split('.');
    if (!labels.every((l) => LABEL.test(l)) || host.length > 253) {
      bad('is neither a CIDR, an IP address, a host name nor a *.domain glob (a * may only be the whole first label)');
      continue;
    }
    if (/^\d+$/.test(labels[labels.length - 1] ?? '')) {
      bad('looks like an IP address but is not a valid one');
      continue;
    }
    if (wildcard && labels.length < 2) {
      bad('is too wide: a glob needs at least two labels after *. (like *.corp.example)');
      continue;
    }
    (wildcard ? suffixes : hosts).add(wildcard ? host.slice(1) : host);
    entries.push(host);
  }
  const allow: EndpointAllowList = {
    entries: [...new Set(entries)].sort(),
    allowsAddress(address) {
      const ip = parseIp(address);
      if (ip === undefined) return false;
      const bytes = canonical(ip.bytes);
      return allowed.has(bytes);
    },
    allowsHost(host) {
      const name = normalizeHost(host);
      if (hosts.has(name)) return true;
      for (const suffix of suffixes) if (name.endsWith(suffix) && name.length > suffix.length) return true;
      return false;
    },
  };
  return { allow, errors };
}

function format(bytes: Uint8Array): string {
  if (bytes.length === 4) return bytes.join('.');
  const groups: string[] = [];
  for (let i = 0; i < 16; i += 2) groups.push((((bytes[i] ?? 0) << 8) | (bytes[i + 1] ?? 0)).toString(16));
  // The URL parser prints the canonical (RFC 5952) form.
  return new URL(`http://[${groups.join(':')}]/`).hostname.slice(1, -1);
}

// ---- the policy ------------------------------------------------------------------------------------

/** What a tenant's location may connect to. */
export interface EndpointPolicy {
  readonly allow: EndpointAllowList;
  readonly resolve: EndpointResolver;
}

/**
 * The tenant endpoint policy from `--tenant-endpoint-allow` entries; throws an Error listing every bad
 * entry. `resolve` replaces DNS (tests).
 */
export function createEndpointPolicy(allowEntries: readonly string[] = [], resolve: EndpointResolver = systemResolver): EndpointPolicy {
  const { allow, errors } = parseEndpointAllowList(allowEntries);
  if (errors.length > 0) throw new Error(errors.join('; '));
  return { allow, resolve };
}

/** Why `address` is refused for a connection to `host` (a name, or the address itself), or undefined when allowed. */
function refusal(policy: EndpointPolicy, host: string | undefined, address: string): AddressClass | undefined {
  let c: AddressClass | undefined;
  try {
    c = classifyAddress(address);
  } catch {
    return 'reserved';
  }
  if (c === undefined || policy.allow.allowsAddress(address)) return undefined;
  if (host !== undefined && !HOST_LOCAL.has(c) && policy.allow.allowsHost(host)) return undefined;
  return c;
}

function hint(classes: Iterable<AddressClass>): string {
  return [...classes].some((c) => HOST_LOCAL.has(c))
    ? '(allow it with a CIDR in --tenant-endpoint-allow; a host name entry does not allow loopback or link-local addresses)'
    : '(allow it with --tenant-endpoint-allow)';
}

function refusedAddress(location: string, address: string, c: AddressClass): EndpointRefusedError {
  return new EndpointRefusedError(
    `location ${location}: endpoint ${address} is ${describe(address, c)}; tenants' locations may not reach it ${hint([c])}`,
  );
}

/**
 * Checks a tenant's endpoint when its client is built: HTTPS, and a literal IP host must be allowed.
 * Host names are checked when connecting (guardAgent). No policy (the admin's own location): no check.
 * Only scheme and host appear in messages: a URL's user info is never shown.
 */
export function checkEndpoint(policy: EndpointPolicy | undefined, location: string, endpoint: URL): void {
  if (policy === undefined) return;
  if (endpoint.protocol !== 'https:') {
    throw new EndpointRefusedError(
      `location ${location}: endpoint ${endpoint.protocol}//${endpoint.host} is not HTTPS; tenants' locations must use an https:// endpoint`,
    );
  }
  const host = endpoint.hostname.replace(/^\[(.*)\]$/, '$1');
  if (isIP(host) !== 0) {
    const c = refusal(policy, undefined, host);
    if (c !== undefined) throw refusedAddress(location, host, c);
  }
}

/**
 * The `lookup` of a tenant's sockets: resolves every address, keeps only the allowed ones and gives
 * Node those, so the connection goes to a checked address; all refused → EndpointRefusedError.
 */
export function guardedLookup(policy: EndpointPolicy, location: string): LookupFunction {
  return (hostname, options, callback) => {
    const f = options.family;
    const family = f === 4 || f === 'IPv4' ? 4 : f === 6 || f === 'IPv6' ? 6 : 0;
    policy.resolve(hostname, { family, ...(options.hints === undefined ? {} : { hints: options.hints }) }).then(
      (addresses) => {
        const allowed: LookupAddress[] = [];
        const refused = new Set<AddressClass>();
        const described = new Set<string>();
        for (const a of addresses) {
          const c = refusal(policy, hostname, a.address);
          if (c === undefined) {
            allowed.push({ address: a.address, family: a.family });
          } else {
            refused.add(c);
            described.add(describe(a.address, c));
          }
        }
        const first = allowed[0];
        if (first === undefined) {
          if (refused.size === 0) {
            callback(Object.assign(new Error(`getaddrinfo ENOTFOUND ${hostname}`), { code: 'ENOTFOUND' }), '', 0);
            return;
          }
          // The addresses themselves stay out of the message: the tenant learns the kind, not the cluster's layout.
          const what = [...described].join(' and ');
          callback(
            new EndpointRefusedError(
              `location ${location}: endpoint ${hostname} resolves to ${what}; tenants' locations may not reach it ${hint(refused)}`,
            ),
            '',
            0,
          );
          return;
        }
        if (options.all === true) callback(null, allowed);
        else callback(null, first.address, first.family);
      },
      (err: unknown) => callback(err as NodeJS.ErrnoException, '', 0),
    );
  };
}

/**
 * Puts a tenant's location's agent under the policy: an HTTPS agent connects only to checked
 * addresses (guardedLookup for names, a check here for literal IPs); a plain-HTTP agent refuses every
 * connection. No policy: the agent is returned untouched. Returns the agent.
 */
export function guardAgent<A extends HttpAgent>(agent: A, policy: EndpointPolicy | undefined, location: string): A {
  if (policy === undefined) return agent;
  const secure = agent instanceof HttpsAgent;
  const lookup = guardedLookup(policy, location);
  const create = agent.createConnection.bind(agent);
  agent.createConnection = (options: ClientRequestArgs, callback?: Parameters<HttpAgent['createConnection']>[1]) => {
    const host = (options.host ?? 'localhost').replace(/^\[(.*)\]$/, '$1');
    let refused: EndpointRefusedError | undefined;
    if (!secure) {
      refused = new EndpointRefusedError(
        `location ${location}: endpoint http://${host} is not HTTPS; tenants' locations must use an https:// endpoint`,
      );
    } else if (options.socketPath !== undefined) {
      refused = new EndpointRefusedError(`location ${location}: a tenant's location may not connect to a local socket`);
    } else if (isIP(host) !== 0) {
      const c = refusal(policy, undefined, host);
      if (c !== undefined) refused = refusedAddress(location, host, c);
    }
    if (refused !== undefined) {
      // The agent hands this error to the request ('error'); no socket is made.
      if (callback === undefined) throw refused;
      callback(refused, undefined as never);
      return undefined;
    }
    return create({ ...options, lookup }, callback);
  };
  return agent;
}

/**
 * The EndpointRefusedError somewhere in `err`'s cause chain, also when a transport re-wrapped it and
 * kept only its code and message (Azure's RestError, node-fetch's FetchError, which prefixes the
 * message); undefined otherwise.
 */
export function endpointRefusal(err: unknown, location: string): EndpointRefusedError | undefined {
  const marker = `location ${location}: `;
  for (let e = err, depth = 0; e !== null && typeof e === 'object' && depth < 8; e = (e as { cause?: unknown }).cause, depth++) {
    if (e instanceof EndpointRefusedError) return e;
    const { code, message } = e as { code?: unknown; message?: unknown };
    if (code === ENDPOINT_REFUSED_CODE && typeof message === 'string') {
      const at = message.indexOf(marker);
      if (at >= 0) return new EndpointRefusedError(message.slice(at));
    }
  }
  return undefined;
}
