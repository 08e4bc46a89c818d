/**
 * Lists of IP ranges from the command line (`--trusted-proxies`): CIDRs or single addresses, into a
 * `net.BlockList`. Shared by the configuration (validation at start) and the server (the list itself).
 */
import { BlockList, isIPv4, isIPv6 } from 'node:net';

/**
 * Parses `entries` (`10.0.0.0/8`, `fd00::/8`, `192.0.2.7`, `2001:db8::7`); every bad entry is reported
 * in `errors`, naming `setting`, and the good ones are kept. An IPv4-mapped IPv6 address given by a
 * peer (`::ffff:10.1.2.3`) matches an IPv4 entry: `BlockList` compares the two forms as one.
 */
export function parseAddressList(entries: readonly string[], setting: string): { list: BlockList; errors: string[] } {
  const list = new BlockList();
  const errors: string[] = [];
  for (const raw of entries) {
    const entry = raw.trim();
    if (entry === '') continue;
    const [address = '', bits, ...rest] = entry.split('/');
    const family = isIPv4(address) ? 'ipv4' : isIPv6(address) ? 'ipv6' : undefined;
    const max = family === 'ipv4' ? 32 : 128;
    if (family === undefined || rest.length > 0 || (bits !== undefined && (!/^\d{1,3}$/.test(bits) || Number(bits) > max))) {
      errors.push(`${setting}: ${JSON.stringify(entry)} is neither an IP address nor a CIDR (like 10.0.0.0/8 or fd00::/8)`);
      continue;
    }
    if (bits === undefined) list.addAddress(address, family);
    else list.addSubnet(address, Number(bits), family);
  }
  return { list, errors };
}
