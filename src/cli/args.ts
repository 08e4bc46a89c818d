/**
 * The command line of `velero-download`: commands, global flags, validation. Everything here is pure
 * (no I/O), so a wrong command line fails in milliseconds with exit code 2, before any Kubernetes
 * client is loaded.
 */
import { parseArgs } from 'node:util';
import { artifactNames, findArtifact, isDns1123Label, isDns1123Subdomain } from '../velero/artifacts.ts';
import type { OwnerKind } from '../velero/artifacts.ts';
import { UsageError } from './errors.ts';

/** Subcommands of `backup` and `restore`, mapped to the artifact they fetch. */
export const SUBCOMMANDS: Record<OwnerKind, Readonly<Record<string, string>>> = {
  backups: {
    logs: 'log',
    download: 'contents',
    results: 'results',
    'resource-list': 'resourcelist',
    'volume-info': 'volumeinfos',
    'item-operations': 'itemoperations',
  },
  restores: {
    logs: 'log',
    results: 'results',
    'resource-list': 'resourcelist',
    'item-operations': 'itemoperations',
    'volume-info': 'volumeinfo',
  },
};

export const DEFAULT_NAMESPACE = 'velero';
export const DEFAULT_WAIT_TIMEOUT_MS = 60_000;
export const DEFAULT_CONNECT_TIMEOUT_MS = 15_000;

/** Where the bytes go. */
export type OutputSpec = { kind: 'stdout' } | { kind: 'file'; path: string };

/** A validated command line. */
export interface Command {
  owner: OwnerKind;
  /** The Backup or Restore name. */
  name: string;
  /** The artifact, as in the gateway's URLs (`log`, `contents`, ...). */
  artifact: string;
  /** Velero's DownloadRequest target kind for it (`BackupLog`, ...). */
  kind: string;
  namespace: string;
  kubeconfig?: string;
  context?: string;
  /** `--velero-server-url`: use only the download server; `baseUrl` skips the DownloadRequest. */
  gateway: { forced: boolean; baseUrl?: URL };
  cacert?: string;
  insecureSkipTlsVerify: boolean;
  /** Normalized: 64 lower-case hex digits. */
  serverCertFingerprint?: string;
  waitTimeoutMs: number;
  /** Whole transfer, resumes included; 0 = no limit. */
  timeoutMs: number;
  /** Each connection: connecting and waiting for headers, and the longest silence while reading. */
  connectTimeoutMs: number;
  output: OutputSpec;
  force: boolean;
  /** Gunzip before writing: everything but backup contents, as Velero's CLI does. */
  gunzip: boolean;
}

export type ParseResult = { help: true } | { help: false; command: Command };

const OPTIONS = {
  kubeconfig: { type: 'string' },
  context: { type: 'string' },
  namespace: { type: 'string', short: 'n' },
  'velero-server-url': { type: 'string' },
  cacert: { type: 'string' },
  'insecure-skip-tls-verify': { type: 'boolean' },
  'server-cert-fingerprint': { type: 'string' },
  'wait-timeout': { type: 'string' },
  timeout: { type: 'string' },
  'connect-timeout': { type: 'string' },
  output: { type: 'string', short: 'o' },
  force: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
} as const;

export const USAGE = `Usage: velero-download COMMAND NAME [flags]

Fetch a Velero backup's or restore's files: from the store's pre-signed URL (status.downloadURL of a
DownloadRequest, as the velero CLI does), falling back to the velero-download-server gateway when the
store cannot be reached, or only from the gateway with --velero-server-url.

Commands:
  backup logs NAME              the backup log (gunzipped)
  backup download NAME          the backup tarball, saved as is to NAME-data.tar.gz (or -o FILE, -o - for stdout)
  backup results NAME           warnings and errors (JSON)
  backup resource-list NAME     the backed-up resources (JSON)
  backup volume-info NAME       volume information (JSON)
  backup item-operations NAME   async item operations (JSON)
  restore logs NAME             the restore log
  restore results NAME          warnings and errors (JSON)
  restore resource-list NAME    the restored resources (JSON)
  restore item-operations NAME  async item operations (JSON)
  restore volume-info NAME      volume information (JSON)
  get backups/NAME/ARTIFACT     any artifact: ${artifactNames('backups').join(', ')}
  get restores/NAME/ARTIFACT    any artifact: ${artifactNames('restores').join(', ')}

Flags:
      --kubeconfig FILE              kubeconfig to use (default: $KUBECONFIG, ~/.kube/config, in-cluster)
      --context NAME                 kubeconfig context to use
  -n, --namespace NS                 Velero's namespace (default "${DEFAULT_NAMESPACE}")
      --velero-server-url[=URL]      only use the download server; with a base URL (https://host:port),
                                     fetch from it directly without creating a DownloadRequest
      --cacert FILE                  CA bundle trusted for the store's and the download server's TLS
      --server-cert-fingerprint HEX  trust the download server's certificate with this SHA-256
                                     fingerprint (64 hex digits of the DER certificate, as Kopia pins)
      --insecure-skip-tls-verify     do not verify TLS certificates (insecure: anyone in the path can
                                     read the data and your token)
      --wait-timeout DURATION        how long to wait for the download URL (default 1m)
      --timeout DURATION             limit for the whole transfer, resumes included (default 0: none)
      --connect-timeout DURATION     limit for connecting and for a stalled transfer (default 15s)
  -o, --output FILE                  write to FILE (- for stdout); default stdout, NAME-data.tar.gz for
                                     backup contents
      --force                        overwrite an existing output file
  -h, --help                         show this help

The download server trusts your Kubernetes identity: the bearer token your kubeconfig provides (static
token, token file, exec plugin, OIDC) is sent to it, over verified HTTPS only. Its certificate is checked
against --cacert, else ca.crt of ConfigMap velero-download-server-ca (get on it is all you need; for
older download servers, of Secret velero-download-server-certs when you may read it), else the pinned
fingerprint (--server-cert-fingerprint, or the published annotation), else the system CAs.

Exit codes: 0 success, 1 not found (or another failure), 2 usage, 3 unauthorized or forbidden,
4 unreachable (API server, Velero, store or download server; or an untrusted certificate).
`;

const UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

/** Go-style durations (`500ms`, `30s`, `2m`, `1h30m`) or `0`; milliseconds. Throws UsageError. */
export function parseDuration(flag: string, raw: string): number {
  const s = raw.trim();
  if (s === '0') return 0;
  if (!/^(\d+(\.\d+)?(ms|s|m|h))+$/.test(s)) throw new UsageError(`--${flag}: "${raw}" is not a duration such as 500ms, 30s, 2m or 1h`);
  let ms = 0;
  for (const m of s.matchAll(/(\d+(?:\.\d+)?)(ms|s|m|h)/g)) ms += Number(m[1]) * UNITS[m[2]!]!;
  return Math.round(ms);
}

/**
 * A SHA-256 fingerprint as 64 lower-case hex digits; accepts upper case and the colon-separated form
 * `openssl x509 -fingerprint -sha256` prints. Undefined when it is not one.
 */
export function normalizeFingerprint(raw: string): string | undefined {
  const hex = raw.trim().replace(/^sha256[:=]/i, '').replaceAll(':', '').toLowerCase();
  return /^[0-9a-f]{64}$/.test(hex) ? hex : undefined;
}

// `--velero-server-url` takes an optional value, which parseArgs cannot express: a bare flag followed
// by something that is not a URL means "force the gateway, no base URL".
function foldOptionalValue(argv: readonly string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--') {
      out.push(...argv.slice(i));
      break;
    }
    if (a === '--velero-server-url') {
      const next = argv[i + 1];
      if (next !== undefined && /^[a-z][a-z0-9+.-]*:\/\//i.test(next)) {
        out.push(`${a}=${next}`);
        i++;
      } else {
        out.push(`${a}=`);
      }
    } else {
      out.push(a);
    }
  }
  return out;
}

function parseBaseUrl(raw: string): URL {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new UsageError(`--velero-server-url: "${raw}" is not a URL; use https://HOST[:PORT]`);
  }
  if (url.protocol === 'http:') {
    throw new UsageError(`--velero-server-url: refusing ${url.origin}: your bearer token is never sent over plain HTTP; use https://`);
  }
  if (url.protocol !== 'https:') throw new UsageError(`--velero-server-url: "${raw}" must be an https:// URL`);
  if (url.username || url.password || url.search || url.hash) {
    throw new UsageError('--velero-server-url: give only https://HOST[:PORT][/PATH], without credentials, query or fragment');
  }
  return url;
}

function target(positionals: string[]): { owner: OwnerKind; name: string; artifact: string } {
  const [verb, ...rest] = positionals;
  if (verb === 'get') {
    if (rest.length !== 1) throw new UsageError('get takes one argument: backups/NAME/ARTIFACT or restores/NAME/ARTIFACT');
    const parts = rest[0]!.split('/');
    const owner = parts[0] === 'backup' ? 'backups' : parts[0] === 'restore' ? 'restores' : parts[0];
    if (parts.length !== 3 || (owner !== 'backups' && owner !== 'restores')) {
      throw new UsageError(`get: "${rest[0]!}" is not backups/NAME/ARTIFACT or restores/NAME/ARTIFACT`);
    }
    const artifact = parts[2]!;
    if (!findArtifact(owner, artifact)) {
      throw new UsageError(`get: ${owner} have no artifact "${artifact}"; choose one of ${artifactNames(owner).join(', ')}`);
    }
    return { owner, name: parts[1]!, artifact };
  }
  const owner = verb === 'backup' ? 'backups' : verb === 'restore' ? 'restores' : undefined;
  if (!owner) {
    throw new UsageError(verb === undefined ? 'missing command: try "velero-download backup logs NAME" or --help' : `unknown command "${verb}": use backup, restore or get (see --help)`);
  }
  const [sub, name, ...extra] = rest;
  const subs = SUBCOMMANDS[owner];
  if (sub === undefined || !Object.hasOwn(subs, sub)) {
    throw new UsageError(`${verb} ${sub === undefined ? 'needs a subcommand' : `has no subcommand "${sub}"`}: use one of ${Object.keys(subs).join(', ')}`);
  }
  if (name === undefined) throw new UsageError(`${verb} ${sub}: missing the ${verb} name`);
  if (extra.length) throw new UsageError(`${verb} ${sub}: unexpected argument "${extra[0]!}"`);
  return { owner, name, artifact: subs[sub]! };
}

/** Parses and validates `argv` (without node and the script). Throws UsageError. */
export function parseCommandLine(argv: readonly string[]): ParseResult {
  let parsed: ReturnType<typeof parseArgs<{ options: typeof OPTIONS; allowPositionals: true; strict: true }>>;
  try {
    parsed = parseArgs({ args: foldOptionalValue(argv), options: OPTIONS, allowPositionals: true, strict: true });
  } catch (err) {
    throw new UsageError((err as Error).message.replace(/\. To specify a positional argument.*$/s, ''));
  }
  const v = parsed.values;
  if (v.help) return { help: true };

  const t = target(parsed.positionals);
  const kind = t.owner === 'backups' ? 'backup' : 'restore';
  if (!isDns1123Subdomain(t.name)) throw new UsageError(`"${t.name}" is not a valid ${kind} name (a DNS-1123 subdomain: lower case, digits, "-" and ".")`);
  const namespace = v.namespace ?? DEFAULT_NAMESPACE;
  if (!isDns1123Label(namespace)) throw new UsageError(`-n/--namespace: "${namespace}" is not a valid namespace name`);

  let fingerprint: string | undefined;
  if (v['server-cert-fingerprint'] !== undefined) {
    fingerprint = normalizeFingerprint(v['server-cert-fingerprint']);
    if (!fingerprint) throw new UsageError('--server-cert-fingerprint: expected the SHA-256 of the certificate as 64 hex digits (colons allowed)');
  }
  const insecure = v['insecure-skip-tls-verify'] ?? false;
  if (insecure && (v.cacert !== undefined || fingerprint)) {
    throw new UsageError('--insecure-skip-tls-verify cannot be combined with --cacert or --server-cert-fingerprint: choose one way to trust the server');
  }
  if (v.cacert === '') throw new UsageError('--cacert: empty file name');
  if (v.kubeconfig === '') throw new UsageError('--kubeconfig: empty file name');

  const rawGateway = v['velero-server-url'];
  const gateway: Command['gateway'] =
    rawGateway === undefined ? { forced: false } : rawGateway === '' ? { forced: true } : { forced: true, baseUrl: parseBaseUrl(rawGateway) };

  const contents = t.owner === 'backups' && t.artifact === 'contents';
  let output: OutputSpec;
  if (v.output === '') throw new UsageError('-o/--output: empty file name (use - for stdout)');
  else if (v.output === '-') output = { kind: 'stdout' };
  else if (v.output !== undefined) output = { kind: 'file', path: v.output };
  else output = contents ? { kind: 'file', path: `${t.name}-data.tar.gz` } : { kind: 'stdout' };

  const wait = v['wait-timeout'] === undefined ? DEFAULT_WAIT_TIMEOUT_MS : parseDuration('wait-timeout', v['wait-timeout']);
  if (wait === 0) throw new UsageError('--wait-timeout must be more than 0');
  const connect = v['connect-timeout'] === undefined ? DEFAULT_CONNECT_TIMEOUT_MS : parseDuration('connect-timeout', v['connect-timeout']);
  if (connect === 0) throw new UsageError('--connect-timeout must be more than 0');

  return {
    help: false,
    command: {
      ...t,
      kind: findArtifact(t.owner, t.artifact)!.kind,
      namespace,
      ...(v.kubeconfig !== undefined && { kubeconfig: v.kubeconfig }),
      ...(v.context !== undefined && { context: v.context }),
      gateway,
      ...(v.cacert !== undefined && { cacert: v.cacert }),
      insecureSkipTlsVerify: insecure,
      ...(fingerprint && { serverCertFingerprint: fingerprint }),
      waitTimeoutMs: wait,
      timeoutMs: v.timeout === undefined ? 0 : parseDuration('timeout', v.timeout),
      connectTimeoutMs: connect,
      output,
      force: v.force ?? false,
      gunzip: !contents,
    },
  };
}
