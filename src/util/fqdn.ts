/** Parsing of `--fqdn`: shared by the configuration (validation) and URL discovery (the URL). */
import { isIP } from 'node:net';

const DNS_NAME = /^(?=.{1,253}$)[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?(\.[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?)*\.?$/i;

/**
 * Parses `--fqdn`: `host`, `host:port`, `[v6]:port`, optionally with `https://` in front and a
 * trailing `/`. Paths are refused: the gateway is served at the root of the name (its routes begin with /v1).
 */
export function parseFqdn(value: string): { host: string; port?: number } | { error: string } {
  let v = value.trim();
  const scheme = /^([a-z][a-z0-9+.-]*):\/\//i.exec(v);
  if (scheme) {
    if (scheme[1]!.toLowerCase() !== 'https') return { error: `"${value}": only https:// is possible, the gateway serves HTTPS only` };
    v = v.slice(scheme[0].length);
  }
  v = v.replace(/\/$/, '');
  if (v.includes('/')) return { error: `"${value}": a path is not supported, the gateway is served at the root of the name` };
  const m = /^(\[[0-9a-f:.]+\]|[^:[\]]+)(?::(\d{1,5}))?$/i.exec(v);
  if (!m) return { error: `"${value}" is not a host name or host:port` };
  const host = m[1]!.startsWith('[') ? m[1]!.slice(1, -1) : m[1]!;
  if (!(DNS_NAME.test(host) || isIP(host) !== 0)) return { error: `"${value}": "${host}" is not a DNS name or an IP address` };
  if (m[2] === undefined) return { host };
  const port = Number(m[2]);
  if (port < 1 || port > 65535) return { error: `"${value}": port ${m[2]} is out of range` };
  return { host, port };
}
