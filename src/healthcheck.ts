#!/usr/bin/env node
/**
 * A probe for places with no shell and no curl (the distroless image's HEALTHCHECK, the chart's
 * `helm test` Pod): `node dist/healthcheck.js [URL] [--ca FILE] [--servername NAME]` fetches URL
 * (default https://127.0.0.1:8085/healthz) and exits 0 when it answers 200, 1 otherwise, printing one
 * line either way.
 *
 * Who runs it: whoever can start a process in the container (the Docker daemon, `kubectl exec`, the
 * test Pod's own command); it has no listener and no privilege of its own. What it trusts: the CA
 * bundle in FILE and nothing else, not the system roots (default: local mode's self-signed
 * certificate, $VDS_STATE_DIR/tls.crt); a missing or unreadable file is a failure, never a fall-back
 * to an unverified connection, so a probe that passes has spoken to the gateway's own certificate. It
 * sends no credentials, so a hostile URL learns nothing but that a probe ran; it prints the status,
 * never the body, and gives up after a few seconds so a stalled peer cannot pile up probes.
 */
import { readFileSync } from 'node:fs';
import { request } from 'node:https';
import { join } from 'node:path';

const TIMEOUT_MS = 4000;

interface ProbeOptions {
  url: string;
  caFile: string;
  servername?: string;
}

function parse(argv: readonly string[], env: NodeJS.ProcessEnv): ProbeOptions | string {
  let url: string | undefined;
  let caFile = join(env.VDS_STATE_DIR || 'state', 'tls.crt');
  let servername: string | undefined;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    const [name, inline] = a.startsWith('--') && a.includes('=') ? [a.slice(0, a.indexOf('=')), a.slice(a.indexOf('=') + 1)] : [a, undefined];
    if (name === '--ca' || name === '--servername') {
      const value = inline ?? argv[++i];
      if (!value) return `${name} needs a value`;
      if (name === '--ca') caFile = value;
      else servername = value;
    } else if (!a.startsWith('-') && url === undefined) url = a;
    else return `unknown argument ${a}`;
  }
  url ??= 'https://127.0.0.1:8085/healthz';
  if (!/^https:\/\//.test(url)) return `${url}: only https:// URLs (the gateway serves nothing else)`;
  return { url, caFile, ...(servername ? { servername } : {}) };
}

function probe(o: ProbeOptions): Promise<string> {
  const ca = readFileSync(o.caFile, 'utf8');
  return new Promise((resolve, reject) => {
    const req = request(o.url, { ca, ...(o.servername ? { servername: o.servername } : {}), timeout: TIMEOUT_MS }, (res) => {
      res.resume();
      if (res.statusCode === 200) resolve(`${o.url}: ${res.statusCode}`);
      else reject(new Error(`${o.url}: HTTP ${res.statusCode}`));
    });
    req.on('timeout', () => req.destroy(new Error(`${o.url}: no answer in ${TIMEOUT_MS / 1000} s`)));
    req.on('error', reject);
    req.end();
  });
}

const options = parse(process.argv.slice(2), process.env);
if (typeof options === 'string') {
  console.error(`healthcheck: ${options}\nusage: healthcheck [https://HOST:PORT/PATH] [--ca FILE] [--servername NAME]`);
  process.exitCode = 1;
} else {
  try {
    process.stdout.write(`healthy: ${await probe(options)}\n`);
  } catch (err) {
    console.error(`unhealthy: ${(err as Error).message}`);
    process.exitCode = 1;
  }
}
