/**
 * Flags and environment variables → one validated, typed Config. Every problem is reported together;
 * the caller exits non-zero when there is any.
 */
import { existsSync, readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { parseFqdn } from '../util/fqdn.ts';
import { parseAddressList } from '../util/address-list.ts';
import { bool, bytes, count, duration, helpText, hostPort, list, oneOf, parseFlags, positive } from './flags.ts';
import { DEFAULT_SERVICE_NAME, SERVICE_ACCOUNT_DIR, isAccessUserPart } from '../util/names.ts';
import { verbatim } from '../util/strings.ts';
import type { FlagDef, HostPort, ParsedFlags } from './flags.ts';

export type { HostPort } from './flags.ts';

export const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];
export type Mode = 'local' | 'kubernetes';

export interface Config {
  mode: Mode;
  /** Where the HTTPS download API listens. */
  listen: HostPort;
  /** Where /healthz, /readyz (and later /metrics) listen, also over HTTPS. */
  metricsListen: HostPort;
  /** Kubernetes mode: where the DownloadRequest admission webhook listens (its own port); off when undefined. */
  webhookListen?: HostPort;
  /** Kubernetes mode: the webhook's Service, whose DNS names a generated certificate covers too. */
  webhookServiceName: string;
  /** Local mode: the directory laid out like a BackupStorageLocation (absolute). */
  dataDir: string;
  /** Local mode: token file and generated certificate live here (absolute). */
  stateDir: string;
  /** Local mode: the static token file in kube-apiserver's CSV format (absolute). */
  tokenFile: string;
  /** The namespace path segment local mode answers to. */
  namespace: string;
  /** A certificate/key pair of the user's own; both or neither. */
  tlsCertFile?: string;
  tlsKeyFile?: string;
  logLevel: LogLevel;
  /** How long in-flight downloads may run after SIGTERM before connections are cut. */
  shutdownGraceMs: number;
  /** A port (on --metrics-listen's address) where /metrics is also served over plain HTTP; off when absent. */
  metricsPlainHttpPort?: number;
  /** After SIGTERM, how long the listeners keep accepting (with /readyz failing) before the drain. */
  shutdownDelayMs: number;
  /** Write the demo backup and restore into an empty data directory. */
  /** The browser page (`--ui`), and the longest a session of it lasts. */
  ui: boolean;
  sessionMaxAgeMs: number;
  demo: boolean;
  /** Local mode: more named locations (YAML or JSON), tried after the data directory. */
  locationsFile?: string;
  /** Where filesystem-provider locations' buckets are directories (NFS export, hostPath, PVC mount). */
  fsRoot: string;
  /** The gateway's own credential for locations without one; undefined when there is none. */
  defaultCredentialsFile?: string;
  /** Install-time CA bundle trusted for every store, with the system roots (or AWS_CA_BUNDLE). */
  caBundleFile?: string;
  /** Kubernetes mode: a kubeconfig file; without it, the in-cluster service account. */
  kubeconfig?: string;
  kubeContext?: string;
  /** Namespaces served besides the gateway's own: names or `*` globs. */
  watchNamespaces: string[];
  /** Audiences asked of TokenReview; empty means the API server's own. */
  tokenAudiences: string[];
  authnCacheTtlMs: number;
  authnDeniedCacheTtlMs: number;
  authzAllowedTtlMs: number;
  authzDeniedTtlMs: number;
  kubeApiQps: number;
  kubeApiBurst: number;
  /** Reviews of tokens no cache knows, per client address: sustained per second, and in a burst. */
  unknownTokenQpsPerClient: number;
  unknownTokenBurstPerClient: number;
  /** Each Kubernetes API call (reviews included) is abandoned after this long (→ 503). */
  kubeApiTimeoutMs: number;
  /** How long a Velero object or Secret read from the API is reused (a rotated Secret is seen after this). */
  objectCacheTtlMs: number;
  /** Audit lines are appended to this file as well as logged. */
  auditLog?: string;
  /** CIDRs and host globs tenants' store endpoints may reach although private. */
  tenantEndpointAllow: string[];
  /**
   * Which filesystem buckets (directories under --fs-root) each namespace other than the gateway's
   * own may use, by exact namespace name; a namespace absent here may use none.
   */
  tenantFilesystemAllow: ReadonlyMap<string, ReadonlySet<string>>;
  /** Kubernetes mode: the DNS name users reach the gateway at (wins over the Service). */
  fqdn?: string;
  /** Kubernetes mode: the Service exposing the gateway (URL discovery, certificate SANs). */
  serviceName: string;
  /** Record the gateway URL for every BSL's DownloadRequests, not only opted-in ones. */
  serveAllLocations: boolean;
  /** Kubernetes mode: the Secret holding the serving certificate. */
  tlsSecret: string;
  /** More SANs for a generated certificate. */
  tlsExtraSans: string[];
  /** Validity of a generated certificate. */
  tlsValidityMs: number;
  /** Kubernetes mode: the ConfigMap where the certificate Secret's ca.crt is published; undefined: not published. */
  caConfigMap?: string;
  /** Kubernetes mode: the MutatingWebhookConfiguration whose webhooks' caBundle follows that ca.crt. */
  webhookConfiguration?: string;
  /** The whole request (head and body) must arrive within this; never limits a response. */
  requestTimeoutMs: number;
  /** A connection whose response makes no progress towards its client for this long is reset. */
  sendStallTimeoutMs: number;
  /** Open connections to the download listener at most (the metrics listener: at most 64). */
  maxConnections: number;
  /** Open connections from one client address (IPv6: one /64) at most; trusted proxies exempt. */
  maxConnectionsPerClient: number;
  /** Download requests served at once at most; more get 503 with Retry-After. */
  maxConcurrentDownloads: number;
  /** CIDRs or addresses of proxies whose X-Forwarded-For names the client (validated). */
  trustedProxies: string[];
  /**
   * Local mode: the file holding the Kopia repository password of volume backups (absolute); without
   * it, Velero's default password. Kubernetes mode reads Velero's own Secret instead.
   */
  repositoryPasswordFile?: string;
  /** Memory for the Kopia repositories' indexes and directory listings, shared by all of them. */
  kopiaCacheBytes: number;
  /** A repository's index is reloaded when it is older than this (Velero's maintenance rewrites packs). */
  kopiaIndexMaxAgeMs: number;
  /**
   * Kubernetes mode: the Secret in the gateway's namespace holding access users (`user@host`, HTTP
   * Basic), watched; a missing Secret is no users. Undefined (flag set empty): access users off.
   */
  accessUsersSecret?: string;
  /** Local mode: the file of access users (absolute), reloaded on change; undefined: access users off. */
  accessUsersFile?: string;
  /** Plaintext passwords (`plain$…`, the seed form's bare values) accepted in the table. */
  accessUsersAllowPlaintext: boolean;
  /** The seed form: the one user name of host-name keys (`<hostname>: <password>`). */
  accessUsersSeedUsername?: string;
}

const flag = <T>(d: FlagDef<T>): FlagDef<T> => d;

/** A TCP port number, 1-65535. */
function port(raw: string): number {
  const n = /^\d{1,5}$/.test(raw.trim()) ? Number(raw.trim()) : NaN;
  if (!(n >= 1 && n <= 65535)) throw new Error(`must be a port number from 1 to 65535; got "${raw}"`);
  return n;
}

/**
 * The rollout pause: endpoints propagate in seconds, so minutes are already generous; the bound also
 * keeps a hostile or mistyped value (1000h) from overflowing the timer, which Node would fire at once.
 */
const MAX_SHUTDOWN_DELAY = '10m';
function shutdownDelay(raw: string): number {
  const ms = duration(raw);
  if (ms > duration(MAX_SHUTDOWN_DELAY)) throw new Error(`must be at most ${MAX_SHUTDOWN_DELAY}; got "${raw}"`);
  return ms;
}

/**
 * A browser session's longest life: at least 10 s (the cookie's Max-Age is in whole seconds; a short
 * session is the operator's choice, only inconvenient), at most 7 days (a stolen cookie is good for
 * at most that long even while its token stays valid).
 */
function sessionAge(raw: string): number {
  const ms = duration(raw);
  if (ms < 10_000 || ms > 7 * 24 * 3600_000) throw new Error(`must be between 10s and 168h; got "${raw}"`);
  return ms;
}

/** The flag table; keys are Config fields (or inputs to them). */
export const FLAGS = {
  mode: flag({ name: 'mode', kind: 'string', help: 'local (static tokens, files) or kubernetes (TokenReview, SubjectAccessReview, BSLs); default kubernetes in a cluster or with a kubeconfig, else local', parse: oneOf('local', 'kubernetes') }),
  listen: flag({ name: 'listen', kind: 'string', default: '0.0.0.0:8443', help: 'HTTPS address of the download API', parse: hostPort }),
  metricsListen: flag({ name: 'metrics-listen', kind: 'string', default: '0.0.0.0:8085', help: 'HTTPS address of /healthz, /readyz and /metrics', parse: hostPort }),
  metricsPlainHttpPort: flag({ name: 'metrics-plain-http-port', kind: 'string', help: 'also serve /metrics (only) over plain HTTP on this port of the --metrics-listen address, for prometheus.io/* annotation scrapers; off when not given', parse: port }),
  webhookListen: flag({ name: 'webhook-listen', kind: 'string', help: 'kubernetes mode: HTTPS address of the DownloadRequest admission webhook, a listener of its own (never the download port); off when not given', parse: hostPort }),
  webhookServiceName: flag({ name: 'webhook-service-name', kind: 'string', help: 'kubernetes mode: the Service in front of --webhook-listen, whose DNS names a generated certificate covers (default: <service-name>-webhook)', parse: verbatim }),
  dataDir: flag({ name: 'data-dir', kind: 'string', default: './data', help: 'local mode: directory laid out like a BackupStorageLocation', parse: verbatim }),
  stateDir: flag({ name: 'state-dir', kind: 'string', default: './state', help: 'local mode: token file and generated certificate', parse: verbatim }),
  tokenFile: flag({ name: 'token-file', kind: 'string', help: 'local mode: static token CSV (token,user,uid,"group1,group2")', default: undefined, parse: verbatim }),
  namespace: flag({ name: 'namespace', kind: 'string', help: 'the gateway\'s namespace (default: $POD_NAMESPACE, the service account\'s, then velero)', parse: verbatim }),
  tlsCertFile: flag({ name: 'tls-cert-file', kind: 'string', help: 'serving certificate (PEM) instead of the generated one; reloaded on change', parse: verbatim }),
  tlsKeyFile: flag({ name: 'tls-key-file', kind: 'string', help: 'private key (PEM) of --tls-cert-file', parse: verbatim }),
  logLevel: flag({ name: 'log-level', kind: 'string', default: 'info', help: LOG_LEVELS.join('|'), parse: oneOf(...LOG_LEVELS) }),
  shutdownGrace: flag({ name: 'shutdown-grace', kind: 'string', default: '25s', help: 'time in-flight downloads get after SIGTERM', parse: duration }),
  shutdownDelay: flag({ name: 'shutdown-delay', kind: 'string', default: '5s', help: 'after SIGTERM, /readyz fails but new connections are still served this long (while endpoints are updated), then the drain begins; a second signal skips it', parse: shutdownDelay }),
  locationsFile: flag({ name: 'locations-file', kind: 'string', help: 'local mode: YAML/JSON list of named store locations (S3, Azure, GCS, filesystem)', parse: verbatim }),
  fsRoot: flag({ name: 'fs-root', kind: 'string', default: '/mnt/velero', help: 'mount root of filesystem locations (replicated.com/nfs|hostpath|pvc, filesystem): <fs-root>/<bucket>/<prefix>', parse: verbatim }),
  defaultCredentialsFile: flag({ name: 'default-credentials-file', kind: 'string', help: 'credential for locations without their own (default: /credentials/cloud when it exists, then the SDK chains)', parse: verbatim }),
  caBundle: flag({ name: 'ca-bundle', kind: 'string', help: 'PEM bundle trusted for every store besides the system roots (default: $AWS_CA_BUNDLE)', parse: verbatim }),
  kubeconfig: flag({ name: 'kubeconfig', kind: 'string', help: 'kubernetes mode: kubeconfig file (default: $KUBECONFIG, else in-cluster)', parse: verbatim }),
  kubeContext: flag({ name: 'context', kind: 'string', help: 'kubernetes mode: kubeconfig context', parse: verbatim }),
  watchNamespaces: flag({ name: 'watch-namespaces', kind: 'string', default: '', help: 'more namespaces to serve: comma-separated names or * globs (velero,team-*); the own namespace is always served', parse: list }),
  tokenAudiences: flag({ name: 'token-audiences', kind: 'string', default: '', help: 'comma-separated audiences for TokenReview (none: the API server\'s)', parse: list }),
  authnCacheTtl: flag({ name: 'authn-cache-ttl', kind: 'string', default: '2m', help: 'how long an accepted token is trusted', parse: duration }),
  authnDeniedCacheTtl: flag({ name: 'authn-denied-cache-ttl', kind: 'string', default: '30s', help: 'how long a rejected token stays rejected', parse: duration }),
  authzAllowedTtl: flag({ name: 'authz-allowed-ttl', kind: 'string', default: '5m', help: 'how long an allowed SubjectAccessReview is reused', parse: duration }),
  authzDeniedTtl: flag({ name: 'authz-denied-ttl', kind: 'string', default: '30s', help: 'how long a denied SubjectAccessReview is reused', parse: duration }),
  kubeApiQps: flag({ name: 'kube-api-qps', kind: 'string', default: '100', help: 'sustained Kubernetes API calls per second', parse: positive }),
  kubeApiBurst: flag({ name: 'kube-api-burst', kind: 'string', default: '200', help: 'Kubernetes API calls allowed in a burst', parse: positive }),
  unknownTokenQpsPerClient: flag({ name: 'unknown-token-qps-per-client', kind: 'string', default: '5', help: 'TokenReviews of tokens no cache knows, per client address and second; past it 429 with Retry-After', parse: positive }),
  unknownTokenBurstPerClient: flag({ name: 'unknown-token-burst-per-client', kind: 'string', default: '20', help: 'TokenReviews of unknown tokens a client address may cause at once', parse: positive }),
  kubeApiTimeout: flag({ name: 'kube-api-timeout', kind: 'string', default: '10s', help: 'timeout of each Kubernetes API call; a review that times out answers 503', parse: duration }),
  objectCacheTtl: flag({ name: 'object-cache-ttl', kind: 'string', default: '5s', help: 'how long Backups, BSLs and Secrets read from the API are reused', parse: duration }),
  auditLog: flag({ name: 'audit-log', kind: 'string', help: 'also append the audit lines (one per download) to this file', parse: verbatim }),
  tenantEndpointAllow: flag({ name: 'tenant-endpoint-allow', kind: 'string', default: '', help: 'CIDRs, addresses and host names or *.globs (10.0.0.0/8,minio.storage.svc,*.corp.example) that tenants\' store endpoints may reach although internal; loopback and link-local (169.254.169.254) need a CIDR entry', parse: list }),
  tenantFilesystemAllow: flag({ name: 'tenant-filesystem-allow', kind: 'string', default: 'false', formerSwitch: true, help: 'which namespace may use which filesystem bucket (a directory under --fs-root) in its own BSLs: namespace=bucket pairs, comma-separated, a namespace may repeat (team-a=velero-nfs,team-a=scratch,team-b=shared); exact names, no globs; false or empty: none', parse: namespaceBuckets }),
  fqdn: flag({ name: 'fqdn', kind: 'string', help: 'kubernetes mode: DNS name (an Ingress host, or host:port) users reach the gateway at; wins over the Service', parse: verbatim }),
  serviceName: flag({ name: 'service-name', kind: 'string', default: DEFAULT_SERVICE_NAME, help: 'kubernetes mode: the Service exposing the gateway, read for its URL (a pre-created Service named velero: --service-name velero)', parse: verbatim }),
  serveAllLocations: flag({ name: 'serve-all-locations', kind: 'boolean', default: 'false', help: 'serve DownloadRequests of every BSL through the gateway, not only those annotated download-server.velero.io/enabled: "true"', parse: bool }),
  tlsSecret: flag({ name: 'tls-secret', kind: 'string', default: 'velero-download-server-certs', help: 'kubernetes mode: Secret (kubernetes.io/tls, with ca.crt) holding the serving certificate; generated when missing', parse: verbatim }),
  tlsExtraSans: flag({ name: 'tls-extra-sans', kind: 'string', default: '', help: 'more DNS names or IPs for a generated certificate (comma-separated)', parse: list }),
  tlsValidity: flag({ name: 'tls-validity', kind: 'string', default: '8760h', help: 'validity of a generated certificate (renewed after two thirds)', parse: duration }),
  caConfigMap: flag({ name: 'ca-configmap', kind: 'string', default: 'velero-download-server-ca', help: 'kubernetes mode: ConfigMap (key ca.crt, like kube-root-ca.crt) where the certificate Secret\'s ca.crt is published for clients; empty: not published', parse: verbatim }),
  webhookConfiguration: flag({ name: 'webhook-configuration', kind: 'string', help: 'kubernetes mode: MutatingWebhookConfiguration whose webhooks\' caBundle the gateway keeps in step with the certificate Secret\'s ca.crt (not with cert-manager, whose CA injector does it)', parse: verbatim }),
  requestTimeout: flag({ name: 'request-timeout', kind: 'string', default: '30s', help: 'a whole request (head and body) must arrive within this, or 408 and the connection is closed; never limits a download', parse: duration }),
  sendStallTimeout: flag({ name: 'send-stall-timeout', kind: 'string', default: '60s', help: 'a connection whose client takes none of the response for this long is reset (the client sees a broken transfer)', parse: duration }),
  maxConnections: flag({ name: 'max-connections', kind: 'string', default: '1024', help: 'open connections to the download listener at most; more are closed on accept', parse: count }),
  maxConnectionsPerClient: flag({ name: 'max-connections-per-client', kind: 'string', default: '64', help: 'open connections from one client address (IPv6: one /64) at most, closed on accept; --trusted-proxies are exempt', parse: count }),
  maxConcurrentDownloads: flag({ name: 'max-concurrent-downloads', kind: 'string', default: '64', help: 'downloads served at once at most; more are answered 503 with Retry-After', parse: count }),
  trustedProxies: flag({ name: 'trusted-proxies', kind: 'string', default: '', help: 'CIDRs or addresses of proxies (Ingress controller, load balancer) whose X-Forwarded-For names the client; exempt from --max-connections-per-client', parse: list }),
  ui: flag({ name: 'ui', kind: 'boolean', default: 'true', help: 'serve the browser page (/ui/): sign in with a bearer token, browse and download what you may read', parse: bool }),
  sessionMaxAge: flag({ name: 'session-max-age', kind: 'string', default: '8h', help: 'the longest a browser session lasts (10s to 168h); a revoked token ends it sooner, within --authn-cache-ttl', parse: sessionAge }),
  demo: flag({ name: 'demo', kind: 'boolean', default: 'true', help: 'write a demo backup and restore into an empty --data-dir', parse: bool }),
  repositoryPasswordFile: flag({ name: 'repository-password-file', kind: 'string', help: "local mode: file holding the Kopia repository password of volume backups (default: Velero's default password); kubernetes mode reads Secret velero-repo-credentials", parse: verbatim }),
  kopiaCacheSize: flag({ name: 'kopia-cache-size', kind: 'string', default: '256Mi', help: 'memory for Kopia repository indexes and directory listings, shared by every volume backup read (least recently used dropped first)', parse: bytes }),
  accessUsersSecret: flag({ name: 'access-users-secret', kind: 'string', default: 'velero-download-server-users', help: 'kubernetes mode: Secret in the gateway\'s namespace with access users for HTTP Basic (key users: lines <user>@<host>: <hash>), watched; missing: no users; empty: access users off', parse: verbatim }),
  accessUsersFile: flag({ name: 'access-users-file', kind: 'string', help: 'local mode: file of access users for HTTP Basic (lines <user>@<host>: <hash>), reloaded within 2s of a change; not given: access users off', parse: verbatim }),
  accessUsersAllowPlaintext: flag({ name: 'access-users-allow-plaintext', kind: 'boolean', default: 'false', help: 'accept plaintext passwords in the access-user table (plain$<password>, and the seed form\'s bare values)', parse: bool }),
  accessUsersSeedUsername: flag({ name: 'access-users-seed-username', kind: 'string', help: 'kubernetes mode: read the access-user Secret\'s other keys as host names (<hostname>: <password or hash>) of this one user name', parse: verbatim }),
  kopiaIndexMaxAge: flag({ name: 'kopia-index-max-age', kind: 'string', default: '5m', help: "a Kopia repository's index is reloaded when older than this (Velero's maintenance rewrites packs)", parse: duration }),
};

const NEW_SYNTAX = '--tenant-filesystem-allow team-a=velero-nfs,team-b=shared (false or empty: none)';
const BUCKET_SEGMENT = /^[A-Za-z0-9_-][A-Za-z0-9._-]*$/;

/**
 * `--tenant-filesystem-allow`: `namespace=bucket` pairs → the buckets of each namespace. `false`, `0`,
 * `no` or empty mean none, as the old switch's default did; the old `true` is refused rather than read
 * as "every namespace, every bucket". Namespaces are exact DNS-1123 labels: a glob would hand a bucket
 * to whoever creates a matching namespace later. Buckets are exact directory names under --fs-root
 * (`/`-separated segments, no `.` or `..`), compared as written with the BSL's objectStorage.bucket.
 */
export function namespaceBuckets(raw: string): Map<string, Set<string>> {
  const out = new Map<string, Set<string>>();
  const v = raw.trim();
  if (v === '' || ['false', '0', 'no'].includes(v.toLowerCase())) return out;
  if (['true', '1', 'yes'].includes(v.toLowerCase())) {
    throw new Error(`"${raw}" no longer lets every namespace use every filesystem bucket; name which namespace may use which bucket: ${NEW_SYNTAX}`);
  }
  const problems: string[] = [];
  for (const item of list(v)) {
    const eq = item.indexOf('=');
    const ns = eq < 0 ? '' : item.slice(0, eq).trim();
    const bucket = eq < 0 ? '' : item.slice(eq + 1).trim();
    if (eq < 0 || ns === '' || bucket === '') {
      problems.push(`"${item}" is not namespace=bucket`);
      continue;
    }
    if (ns.includes('*')) {
      problems.push(`"${ns}": namespace globs are not allowed (a namespace created later would get the bucket); list each namespace`);
      continue;
    }
    if (!DNS1123_LABEL.test(ns)) {
      problems.push(`"${ns}" is not a namespace name (DNS-1123 label)`);
      continue;
    }
    if (!bucket.split('/').every((seg) => BUCKET_SEGMENT.test(seg) && seg !== '.' && seg !== '..')) {
      problems.push(`"${bucket}" is not a bucket (a directory under --fs-root: letters, digits, '.', '_', '-', '/'-separated, no "." or ".." segment)`);
      continue;
    }
    let buckets = out.get(ns);
    if (!buckets) out.set(ns, (buckets = new Set()));
    buckets.add(bucket);
  }
  if (problems.length > 0) throw new Error(`${problems.join('; ')}; expected ${NEW_SYNTAX}`);
  return out;
}

const SERVICE_ACCOUNT_TOKEN = `${SERVICE_ACCOUNT_DIR}/token`;
const DNS1123_LABEL = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;
const DNS1123_SUBDOMAIN = /^(?=.{1,253}$)[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;

function readNamespaceFile(): string | undefined {
  try {
    return readFileSync(`${SERVICE_ACCOUNT_DIR}/namespace`, 'utf8').trim() || undefined;
  } catch {
    return undefined;
  }
}

/** Velero mounts its default credential (Secret cloud-credentials) here; the gateway's chart does too. */
export const VELERO_CREDENTIALS_FILE = '/credentials/cloud';

function defaultCredentials(flag: string | undefined, cwd: string): { defaultCredentialsFile?: string } {
  if (flag !== undefined) return { defaultCredentialsFile: resolve(cwd, flag) };
  return existsSync(VELERO_CREDENTIALS_FILE) ? { defaultCredentialsFile: VELERO_CREDENTIALS_FILE } : {};
}

function caBundle(flag: string | undefined, env: Readonly<Record<string, string | undefined>>, cwd: string): { caBundleFile?: string } {
  // AWS_CA_BUNDLE is what the AWS CLI and SDKs read; honour it for every provider, as --ca-bundle.
  const file = flag ?? (env.AWS_CA_BUNDLE || undefined);
  return file === undefined ? {} : { caBundleFile: resolve(cwd, file) };
}

/**
 * The access-user flags. Kubernetes mode reads a Secret (on by default: a missing Secret is no
 * users, so nothing is open until an operator writes one), local mode a file (only when given). The
 * seed user name is checked as a user name is, since it becomes part of every seed entry's name.
 */
function accessUserErrors(v: ParsedFlags<typeof FLAGS>, mode: Mode): string[] {
  const errors: string[] = [];
  if (v.accessUsersSecret && !DNS1123_SUBDOMAIN.test(v.accessUsersSecret)) errors.push(`--access-users-secret: "${v.accessUsersSecret}" is not a valid Secret name`);
  if (v.accessUsersFile !== undefined && mode !== 'local') errors.push('--access-users-file: local mode only (kubernetes mode reads the Secret --access-users-secret)');
  if (v.accessUsersSeedUsername !== undefined) {
    if (mode !== 'kubernetes') errors.push('--access-users-seed-username: kubernetes mode only (it reads the Secret\'s host-name keys; the file holds <user>@<host> lines)');
    // Not echoed: it may hold control characters.
    else if (!isAccessUserPart(v.accessUsersSeedUsername)) errors.push('--access-users-seed-username: not a valid user name (1-64 printable ASCII characters without space, ":" and "@")');
    else if (!v.accessUsersSecret) errors.push('--access-users-seed-username: needs --access-users-secret');
  }
  return errors;
}

export const USAGE = 'Usage: velero-download-server [flags]';

export type ConfigResult =
  | { kind: 'config'; config: Config }
  | { kind: 'help'; text: string }
  | { kind: 'version' }
  | { kind: 'errors'; errors: string[] };

/** Parses and validates; relative paths are resolved against `cwd`. */
export function loadConfig(
  argv: readonly string[],
  env: Readonly<Record<string, string | undefined>>,
  cwd: string = process.cwd(),
): ConfigResult {
  const { values: v, errors, help, version } = parseFlags(FLAGS, argv, env);
  if (help) return { kind: 'help', text: helpText(USAGE, FLAGS) };
  if (version) return { kind: 'version' };

  const kubeconfig = v.kubeconfig ?? (env.KUBECONFIG || undefined);
  const mode: Mode = v.mode ?? (kubeconfig !== undefined || (env.KUBERNETES_SERVICE_HOST && existsSync(SERVICE_ACCOUNT_TOKEN)) ? 'kubernetes' : 'local');
  const namespace = v.namespace ?? (mode === 'kubernetes' ? env.POD_NAMESPACE || readNamespaceFile() : undefined) ?? 'velero';
  if (!DNS1123_LABEL.test(namespace)) errors.push(`--namespace: "${namespace}" is not a valid namespace name (DNS-1123 label)`);
  for (const ns of v.watchNamespaces ?? []) {
    if (!/^[a-z0-9*]([-a-z0-9*]{0,61}[a-z0-9*])?$/.test(ns)) errors.push(`--watch-namespaces: "${ns}" is neither a namespace name nor a * glob`);
  }
  if (v.fqdn !== undefined) {
    const p = parseFqdn(v.fqdn);
    if ('error' in p) errors.push(`--fqdn: ${p.error}`);
  }
  if (v.tlsValidity !== undefined && v.tlsValidity < 3_600_000) errors.push('--tls-validity: at least 1h');
  if (v.tlsSecret !== undefined && !/^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$/.test(v.tlsSecret)) errors.push(`--tls-secret: "${v.tlsSecret}" is not a valid Secret name`);
  if (v.serviceName !== undefined && !DNS1123_LABEL.test(v.serviceName)) errors.push(`--service-name: "${v.serviceName}" is not a valid Service name`);
  if (v.webhookServiceName !== undefined && !DNS1123_LABEL.test(v.webhookServiceName)) errors.push(`--webhook-service-name: "${v.webhookServiceName}" is not a valid Service name`);
  if (v.webhookListen !== undefined && mode !== 'kubernetes') errors.push('--webhook-listen: the admission webhook needs kubernetes mode');
  if (v.webhookListen !== undefined && v.listen !== undefined && v.webhookListen.port !== 0 && v.webhookListen.port === v.listen.port) {
    errors.push('--webhook-listen: must not share the download listener\'s port (--listen); the webhook has a port of its own');
  }
  // Plain HTTP only ever on a port of its own: never where clients send tokens (the download and
  // webhook ports) nor beside the HTTPS probes.
  const taken = [v.listen?.port, v.metricsListen?.port, v.webhookListen?.port];
  if (v.metricsPlainHttpPort !== undefined && taken.includes(v.metricsPlainHttpPort)) {
    errors.push(`--metrics-plain-http-port: ${v.metricsPlainHttpPort} is already the port of --listen, --metrics-listen or --webhook-listen; plain HTTP needs a port of its own`);
  }
  if (v.caConfigMap && !DNS1123_SUBDOMAIN.test(v.caConfigMap)) errors.push(`--ca-configmap: "${v.caConfigMap}" is not a valid ConfigMap name`);
  if (v.webhookConfiguration !== undefined && !DNS1123_SUBDOMAIN.test(v.webhookConfiguration)) {
    errors.push(`--webhook-configuration: "${v.webhookConfiguration}" is not a valid MutatingWebhookConfiguration name`);
  } else if (v.webhookConfiguration !== undefined && (mode !== 'kubernetes' || v.tlsCertFile !== undefined)) {
    // Its caBundle follows ca.crt of the certificate Secret: without that Secret there is nothing to follow.
    errors.push('--webhook-configuration: needs kubernetes mode with the certificate in its Secret (--tls-secret), not --tls-cert-file');
  }
  if (mode === 'kubernetes' && kubeconfig !== undefined && !existsSync(resolve(cwd, kubeconfig))) {
    errors.push(`--kubeconfig (or KUBECONFIG): ${resolve(cwd, kubeconfig)} does not exist`);
  }
  if ((v.tlsCertFile === undefined) !== (v.tlsKeyFile === undefined)) {
    errors.push('--tls-cert-file and --tls-key-file go together: give both or neither');
  }
  for (const [name, file] of [
    ['--tls-cert-file', v.tlsCertFile],
    ['--tls-key-file', v.tlsKeyFile],
    ['--token-file', v.tokenFile],
    ['--locations-file', v.locationsFile],
    ['--default-credentials-file', v.defaultCredentialsFile],
    ['--repository-password-file', v.repositoryPasswordFile],
    ['--access-users-file', v.accessUsersFile],
    ['--ca-bundle (or AWS_CA_BUNDLE)', v.caBundle ?? (env.AWS_CA_BUNDLE || undefined)],
  ] as const) {
    if (file !== undefined && !existsSync(resolve(cwd, file))) errors.push(`${name}: ${resolve(cwd, file)} does not exist`);
  }
  errors.push(...parseAddressList(v.trustedProxies ?? [], '--trusted-proxies').errors);
  // Kubernetes mode keys volume repositories with Velero's own Secret; a file would silently lose to it.
  if (mode === 'kubernetes' && v.repositoryPasswordFile !== undefined) errors.push("--repository-password-file: local mode only (kubernetes mode reads Velero's Secret velero-repo-credentials)");
  errors.push(...accessUserErrors(v, mode));
  // Zero would switch the bound off (Node reads a 0 request timeout as none).
  if (v.requestTimeout !== undefined && v.requestTimeout < 100) errors.push('--request-timeout: at least 100ms');
  if (v.sendStallTimeout !== undefined && v.sendStallTimeout < 100) errors.push('--send-stall-timeout: at least 100ms');
  if (v.maxConnectionsPerClient !== undefined && v.maxConnections !== undefined && v.maxConnectionsPerClient > v.maxConnections) {
    errors.push(`--max-connections-per-client (${v.maxConnectionsPerClient}) is more than --max-connections (${v.maxConnections})`);
  }
  if (errors.length > 0) return { kind: 'errors', errors };

  // Every value with a default is set once no error was reported.
  const stateDir = resolve(cwd, v.stateDir!);
  return {
    kind: 'config',
    config: {
      mode,
      listen: v.listen!,
      metricsListen: v.metricsListen!,
      ...(v.webhookListen !== undefined && { webhookListen: v.webhookListen }),
      webhookServiceName: v.webhookServiceName ?? `${v.serviceName!}-webhook`,
      dataDir: resolve(cwd, v.dataDir!),
      stateDir,
      tokenFile: v.tokenFile === undefined ? resolve(stateDir, 'tokens.csv') : resolve(cwd, v.tokenFile),
      namespace,
      ...(v.tlsCertFile !== undefined && { tlsCertFile: resolve(cwd, v.tlsCertFile) }),
      ...(v.tlsKeyFile !== undefined && { tlsKeyFile: resolve(cwd, v.tlsKeyFile) }),
      logLevel: v.logLevel!,
      shutdownGraceMs: v.shutdownGrace!,
      shutdownDelayMs: v.shutdownDelay!,
      ...(v.metricsPlainHttpPort !== undefined && { metricsPlainHttpPort: v.metricsPlainHttpPort }),
      ui: v.ui!,
      sessionMaxAgeMs: v.sessionMaxAge!,
      demo: v.demo!,
      fsRoot: resolve(cwd, v.fsRoot!),
      ...(mode === 'kubernetes' && kubeconfig !== undefined && { kubeconfig: resolve(cwd, kubeconfig) }),
      ...(v.kubeContext !== undefined && { kubeContext: v.kubeContext }),
      watchNamespaces: v.watchNamespaces!,
      tokenAudiences: v.tokenAudiences!,
      authnCacheTtlMs: v.authnCacheTtl!,
      authnDeniedCacheTtlMs: v.authnDeniedCacheTtl!,
      authzAllowedTtlMs: v.authzAllowedTtl!,
      authzDeniedTtlMs: v.authzDeniedTtl!,
      kubeApiQps: v.kubeApiQps!,
      kubeApiBurst: v.kubeApiBurst!,
      unknownTokenQpsPerClient: v.unknownTokenQpsPerClient!,
      unknownTokenBurstPerClient: v.unknownTokenBurstPerClient!,
      kubeApiTimeoutMs: v.kubeApiTimeout!,
      objectCacheTtlMs: v.objectCacheTtl!,
      ...(v.auditLog !== undefined && { auditLog: resolve(cwd, v.auditLog) }),
      tenantEndpointAllow: v.tenantEndpointAllow!,
      tenantFilesystemAllow: v.tenantFilesystemAllow!,
      ...(v.fqdn !== undefined && { fqdn: v.fqdn }),
      serviceName: v.serviceName!,
      serveAllLocations: v.serveAllLocations!,
      tlsSecret: v.tlsSecret!,
      tlsExtraSans: v.tlsExtraSans!,
      tlsValidityMs: v.tlsValidity!,
      ...(v.caConfigMap && { caConfigMap: v.caConfigMap }),
      ...(v.webhookConfiguration !== undefined && { webhookConfiguration: v.webhookConfiguration }),
      requestTimeoutMs: v.requestTimeout!,
      sendStallTimeoutMs: v.sendStallTimeout!,
      maxConnections: v.maxConnections!,
      maxConnectionsPerClient: v.maxConnectionsPerClient!,
      maxConcurrentDownloads: v.maxConcurrentDownloads!,
      trustedProxies: v.trustedProxies!,
      ...(v.locationsFile !== undefined && { locationsFile: resolve(cwd, v.locationsFile) }),
      ...(v.repositoryPasswordFile !== undefined && { repositoryPasswordFile: resolve(cwd, v.repositoryPasswordFile) }),
      kopiaCacheBytes: v.kopiaCacheSize!,
      kopiaIndexMaxAgeMs: v.kopiaIndexMaxAge!,
      ...(mode === 'kubernetes' && v.accessUsersSecret && { accessUsersSecret: v.accessUsersSecret }),
      ...(v.accessUsersFile !== undefined && { accessUsersFile: resolve(cwd, v.accessUsersFile) }),
      accessUsersAllowPlaintext: v.accessUsersAllowPlaintext!,
      ...(v.accessUsersSeedUsername !== undefined && { accessUsersSeedUsername: v.accessUsersSeedUsername }),
      ...defaultCredentials(v.defaultCredentialsFile, cwd),
      ...caBundle(v.caBundle, env, cwd),
    },
  };
}
