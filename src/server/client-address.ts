/**
 * Who is on the other end of a request: the TCP peer, or, when that peer is a proxy the operator
 * trusts (`--trusted-proxies`), the client that proxy names in `X-Forwarded-For`. Behind an Ingress
 * or a load balancer with source NAT every request comes from the proxy's address; the header is the
 * only place the client's own address survives, and anyone can write it, so it is read only from
 * peers in the list.
 */
import type { IncomingMessage } from 'node:http';
import type { BlockList } from 'node:net';
import { isIP } from 'node:net';

const MAPPED_V4 = /^::ffff:(\d{1,3}(?:\.\d{1,3}){3})$/i;

/** An IPv4-mapped IPv6 address (`::ffff:10.1.2.3`, what a dual-stack listener reports) as IPv4. */
export function normalizeAddress(address: string): string {
  return MAPPED_V4.exec(address)?.[1] ?? address;
}

/** Whether `address` (an IP address as a socket or a header gives it) is in `trusted`. */
export function isTrustedProxy(address: string | undefined, trusted: BlockList | undefined): boolean {
  if (trusted === undefined || address === undefined) return false;
  const family = isIP(address);
  return family !== 0 && trusted.check(address, family === 4 ? 'ipv4' : 'ipv6');
}

/**
 * The client address of `req`, for access and audit lines and for per-client limits.
 *
 * - The TCP peer, unless it is in `trusted`.
 * - From a trusted peer: `X-Forwarded-For` read from the right (each proxy appends the address it
 *   received the request from), skipping addresses that are themselves trusted proxies; the first one
 *   that is not is the client. Addresses further left were written by that client and are never read.
 *   When every address is a trusted proxy, the left-most one.
 * - From a trusted peer with no `X-Forwarded-For`, or with an entry that is not a bare IP address
 *   where the walk reaches it (a port, a name, `unknown`, garbage): the peer itself.
 *
 * IPv4-mapped IPv6 addresses are returned as IPv4, so one client is one key whichever way it came in.
 * Returns the empty string only for a socket that is already gone and never had a peer address.
 *
 * @param req the request (only `socket.remoteAddress` and the `x-forwarded-for` header are read)
 * @param trusted the trusted proxies (`--trusted-proxies`); undefined or empty: the header is never read
 */
export function clientAddress(req: IncomingMessage, trusted: BlockList | undefined): string {
  const peer = normalizeAddress(req.socket.remoteAddress ?? '');
  if (!isTrustedProxy(peer, trusted)) return peer;
  const header = req.headers['x-forwarded-for'];
  if (typeof header !== 'string' || header.trim() === '') return peer;
  // Node joins repeated X-Forwarded-For headers with ", " in order, which is the order proxies wrote them.
  const hops = header.split(',');
  let leftmost = peer;
  for (let i = hops.length - 1; i >= 0; i--) {
    const hop = hops[i]!.trim();
    if (isIP(hop) === 0) return peer;
    const address = normalizeAddress(hop);
    if (!isTrustedProxy(address, trusted)) return address;
    leftmost = address;
  }
  return leftmost;
}
