/**
 * The client's side of Kubernetes: the kubeconfig (file, $KUBECONFIG, ~/.kube/config or in-cluster),
 * the user's bearer token for the download server, DownloadRequests (create, wait for their URLs,
 * delete), the download server's published CA (its ConfigMap, or the certificate Secret of older
 * gateways) and Service. Loaded lazily by the command, so a
 * wrong command line never pays for @kubernetes/client-node.
 */
import { existsSync } from 'node:fs';
import type { RequestOptions } from 'node:https';
import { homedir } from 'node:os';
import { delimiter, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { randomBytes } from 'node:crypto';
import { CoreV1Api, CustomObjectsApi, KubeConfig } from '@kubernetes/client-node';
import { signalOptions, statusOf } from '../kube/client.ts';
import type { OwnerKind } from '../velero/artifacts.ts';
import { CliError, EXIT, UsageError, describeFailure, networkFailure } from './errors.ts';
import { CA_CONFIGMAP_NAME, DEFAULT_SERVICE_NAME, FINGERPRINT_ANNOTATION, SERVICE_ACCOUNT_DIR, URL_ANNOTATION } from '../util/names.ts';
import { nonEmptyString } from '../util/strings.ts';

/** The ConfigMap where the download server publishes the CA clients trust (key ca.crt, like kube-root-ca.crt). */
export const CA_CONFIGMAP = CA_CONFIGMAP_NAME;
/** The Secret holding the download server's certificate (tls.crt, tls.key, ca.crt): read only for gateways older than the ConfigMap. */
export const CERT_SECRET = 'velero-download-server-certs';
/** The download server's default port, when its Service cannot be read. */
export const DEFAULT_GATEWAY_PORT = 8443;

/**
 * Loads the kubeconfig: `--kubeconfig`, else the files in $KUBECONFIG (merged, first wins), else
 * ~/.kube/config, else the pod's service account. Throws UsageError when there is none or the context
 * does not exist.
 */
export function loadKubeConfig(opts: { kubeconfig?: string; context?: string }, env: NodeJS.ProcessEnv): KubeConfig {
  const load = (file: string): KubeConfig => {
    const k = new KubeConfig();
    try {
      k.loadFromFile(file);
    } catch (err) {
      throw new UsageError(`cannot read kubeconfig ${file}: ${(err as Error).message}`);
    }
    return k;
  };
  const files = opts.kubeconfig
    ? [opts.kubeconfig]
    : env.KUBECONFIG
      ? env.KUBECONFIG.split(delimiter).filter((f) => f && existsSync(f))
      : [join(env.HOME ?? homedir(), '.kube', 'config')].filter((f) => existsSync(f));
  let kc: KubeConfig;
  if (files.length) {
    kc = load(files[0]!);
    // As kubectl merges $KUBECONFIG: the first file to define a name wins.
    for (const f of files.slice(1)) {
      const more = load(f);
      for (const c of more.clusters) if (!kc.getCluster(c.name)) kc.addCluster(c);
      for (const u of more.users) if (!kc.getUser(u.name)) kc.addUser(u);
      for (const c of more.contexts) if (!kc.getContextObject(c.name)) kc.addContext(c);
      if (!kc.getCurrentContext()) kc.setCurrentContext(more.getCurrentContext());
    }
  } else if (env.KUBERNETES_SERVICE_HOST && existsSync(join(SERVICE_ACCOUNT_DIR, 'token'))) {
    kc = new KubeConfig();
    kc.loadFromCluster();
  } else {
    throw new UsageError(env.KUBECONFIG ? `no kubeconfig file in KUBECONFIG=${env.KUBECONFIG} exists` : 'no kubeconfig found: pass --kubeconfig FILE or set KUBECONFIG');
  }
  if (opts.context !== undefined) {
    if (!kc.getContextObject(opts.context)) throw new UsageError(`--context: the kubeconfig has no context "${opts.context}"`);
    kc.setCurrentContext(opts.context);
  }
  if (!kc.getCurrentCluster()) throw new UsageError('the kubeconfig has no current context with a cluster: pass --context NAME');
  return kc;
}

/**
 * The bearer token the kubeconfig's current user presents, however it is configured (static token,
 * token file, exec credential plugin, OIDC or another auth provider): the same headers the
 * Kubernetes client would send. Throws exit 3 for a user without a token (client certificate, basic auth).
 */
export async function bearerToken(kc: KubeConfig): Promise<string> {
  const user = kc.getCurrentUser();
  const opts: RequestOptions = {};
  try {
    await kc.applyToHTTPSOptions(opts);
  } catch (err) {
    // An exec plugin's malformed output appears in JSON.parse's message: never show it, it may hold a token.
    const why = err instanceof SyntaxError ? 'its output is not an ExecCredential JSON document' : (err as Error).message.trim().slice(0, 500);
    throw new CliError(EXIT.denied, `getting a token for kubeconfig user "${user?.name ?? ''}" failed: ${why}`);
  }
  const auth = (opts.headers as Record<string, unknown> | undefined)?.Authorization;
  if (typeof auth === 'string' && /^Bearer\s+\S/i.test(auth)) return auth.replace(/^Bearer\s+/i, '').trim();
  const how = opts.cert || opts.pfx ? 'a client certificate' : opts.auth ? 'a user name and password' : 'no credentials';
  throw new CliError(
    EXIT.denied,
    `kubeconfig user "${user?.name ?? ''}" authenticates with ${how}, but the download server needs a bearer token: use a kubeconfig user with a token, a token file, an exec plugin or OIDC, or pass --velero-server-url=https://HOST[:PORT] with --token-file FILE (for a service account: kubectl create token NAME > FILE)`,
  );
}

/** The cluster's URL, for messages. */
export const serverOf = (kc: KubeConfig): string => kc.getCurrentCluster()?.server ?? 'the API server';

function statusMessage(err: unknown): string | undefined {
  const body = (err as { body?: unknown }).body;
  if (typeof body !== 'string') return undefined;
  try {
    const m = (JSON.parse(body) as { message?: unknown }).message;
    return typeof m === 'string' ? m : undefined;
  } catch {
    return undefined;
  }
}

/** Maps a failed API call to the command's error: 401/403 → 3, 404 → 1, unreachable → 4. */
export function kubeError(err: unknown, server: string, doing: string, advice403 = ''): CliError {
  if (err instanceof CliError) return err;
  const code = statusOf(err);
  const msg = statusMessage(err);
  if (code === 401) {
    return new CliError(EXIT.denied, `the Kubernetes API server at ${server} did not accept your credentials while ${doing}: log in again, or check the user of your kubeconfig context`);
  }
  if (code === 403) return new CliError(EXIT.denied, `${msg ?? `forbidden while ${doing}`}${advice403 ? `: ${advice403}` : ''}`);
  if (code === 404) return new CliError(EXIT.notFound, `${msg ?? 'not found'} (while ${doing})`);
  if (code !== undefined) {
    return new CliError(code >= 500 || code === 429 ? EXIT.unreachable : EXIT.notFound, `the Kubernetes API server answered HTTP ${code} while ${doing}${msg ? `: ${msg}` : ''}`);
  }
  const name = (err as { name?: unknown }).name;
  if (networkFailure(err) || name === 'TimeoutError' || name === 'AbortError') {
    return new CliError(EXIT.unreachable, `cannot reach the Kubernetes API server at ${server} while ${doing} (${describeFailure(err)}): check --kubeconfig and --context`);
  }
  return new CliError(EXIT.notFound, `${doing} failed: ${describeFailure(err)}`);
}

/** What a DownloadRequest says so far. */
export interface DownloadUrls {
  /** Velero's pre-signed store URL. */
  downloadURL?: string;
  /** The download server's URL: the annotation, else `status.veleroServerURL`. */
  gatewayURL?: string;
}

/** The Velero objects and the download server's objects in one namespace, as the kubeconfig's user. */
export class VeleroApi {
  readonly server: string;
  readonly namespace: string;
  readonly #custom: CustomObjectsApi;
  readonly #core: CoreV1Api;
  readonly #timeoutMs: number;

  constructor(kc: KubeConfig, namespace: string, timeoutMs: number) {
    this.server = serverOf(kc);
    this.namespace = namespace;
    this.#custom = kc.makeApiClient(CustomObjectsApi);
    this.#core = kc.makeApiClient(CoreV1Api);
    this.#timeoutMs = timeoutMs;
  }

  #opts(signal: AbortSignal): ReturnType<typeof signalOptions> {
    return signalOptions(AbortSignal.any([signal, AbortSignal.timeout(this.#timeoutMs)]));
  }

  /**
   * Whether the Backup or Restore exists: false on 404, undefined when the user may not read it
   * (a user allowed only to download can still go on). Other failures throw.
   */
  async ownerExists(owner: OwnerKind, name: string, signal: AbortSignal): Promise<boolean | undefined> {
    try {
      await this.#custom.getNamespacedCustomObject({ group: 'velero.io', version: 'v1', namespace: this.namespace, plural: owner, name }, this.#opts(signal));
      return true;
    } catch (err) {
      if (signal.aborted) throw err;
      const code = statusOf(err);
      if (code === 404) return false;
      if (code === 403) return undefined;
      throw kubeError(err, this.server, `reading ${owner}.velero.io "${name}"`);
    }
  }

  /** Creates DownloadRequest `<name>-<random>` for the target, as Velero's CLI does; returns its name. */
  async createDownloadRequest(kind: string, name: string, signal: AbortSignal): Promise<string> {
    const drName = `${name.slice(0, 253 - 9).replace(/[.-]+$/, '')}-${randomBytes(4).toString('hex')}`;
    const body = {
      apiVersion: 'velero.io/v1',
      kind: 'DownloadRequest',
      metadata: { name: drName, namespace: this.namespace, labels: { 'app.kubernetes.io/managed-by': 'velero-download' } },
      spec: { target: { kind, name } },
    };
    try {
      await this.#custom.createNamespacedCustomObject({ group: 'velero.io', version: 'v1', namespace: this.namespace, plural: 'downloadrequests', body }, this.#opts(signal));
    } catch (err) {
      if (signal.aborted) throw err;
      if (statusOf(err) === 404) {
        throw new CliError(EXIT.notFound, `cannot create a DownloadRequest in namespace "${this.namespace}": the namespace does not exist or Velero is not installed there (pass -n NAMESPACE)`);
      }
      throw kubeError(
        err,
        this.server,
        `creating a DownloadRequest in namespace "${this.namespace}"`,
        `ask for "create" on downloadrequests.velero.io in namespace "${this.namespace}", or pass --velero-server-url=https://HOST[:PORT] to fetch from the download server without a DownloadRequest`,
      );
    }
    return drName;
  }

  /** The URLs on a DownloadRequest so far; undefined when it no longer exists. */
  async readDownloadRequest(name: string, signal: AbortSignal): Promise<DownloadUrls | undefined> {
    let obj: { metadata?: { annotations?: Record<string, string> }; status?: Record<string, unknown> };
    try {
      obj = (await this.#custom.getNamespacedCustomObject(
        { group: 'velero.io', version: 'v1', namespace: this.namespace, plural: 'downloadrequests', name },
        this.#opts(signal),
      )) as typeof obj;
    } catch (err) {
      if (statusOf(err) === 404) return undefined;
      throw err;
    }
    const downloadURL = nonEmptyString(obj.status?.downloadURL);
    const gatewayURL = nonEmptyString(obj.metadata?.annotations?.[URL_ANNOTATION]) ?? nonEmptyString(obj.status?.veleroServerURL);
    return { ...(downloadURL && { downloadURL }), ...(gatewayURL && { gatewayURL }) };
  }

  /** Deletes the DownloadRequest; best effort (Velero garbage-collects expired ones anyway). */
  async deleteDownloadRequest(name: string): Promise<void> {
    try {
      await this.#custom.deleteNamespacedCustomObject(
        { group: 'velero.io', version: 'v1', namespace: this.namespace, plural: 'downloadrequests', name },
        signalOptions(AbortSignal.timeout(Math.min(this.#timeoutMs, 5000))),
      );
    } catch {
      // Velero deletes expired DownloadRequests about a minute after their expiration.
    }
  }

  /**
   * What to trust the download server by: `ca.crt` and the fingerprint annotation of its CA ConfigMap
   * (users need `get` on that ConfigMap only); when the ConfigMap cannot be read (a gateway older than
   * it, or no access), those of its certificate Secret, when the user may read that; an empty object
   * otherwise. A refusal is no error here: a user allowed to download need not read either.
   */
  async gatewayTrust(signal: AbortSignal): Promise<{ caCert?: string; fingerprint?: string }> {
    const published = (caCert: string | undefined, annotations: Record<string, string> | undefined): { caCert?: string; fingerprint?: string } => {
      const fingerprint = nonEmptyString(annotations?.[FINGERPRINT_ANNOTATION]);
      const ca = caCert?.includes('-----BEGIN CERTIFICATE-----') ? caCert : undefined;
      return { ...(ca && { caCert: ca }), ...(fingerprint && { fingerprint }) };
    };
    try {
      const cm = await this.#core.readNamespacedConfigMap({ namespace: this.namespace, name: CA_CONFIGMAP }, this.#opts(signal));
      return published(cm.data?.['ca.crt'], cm.metadata?.annotations);
    } catch (err) {
      if (signal.aborted) throw err;
    }
    try {
      const s = await this.#core.readNamespacedSecret({ namespace: this.namespace, name: CERT_SECRET }, this.#opts(signal));
      const ca = s.data?.['ca.crt'];
      return published(ca ? Buffer.from(ca, 'base64').toString('utf8') : undefined, s.metadata?.annotations);
    } catch (err) {
      if (signal.aborted) throw err;
      return {};
    }
  }

  /** The HTTPS port of the download server's Service (port named https, else the first), if readable. */
  async servicePort(signal: AbortSignal): Promise<number | undefined> {
    try {
      const svc = await this.#core.readNamespacedService({ namespace: this.namespace, name: DEFAULT_SERVICE_NAME }, this.#opts(signal));
      const ports = svc.spec?.ports ?? [];
      return (ports.find((p) => p.name === 'https') ?? ports[0])?.port;
    } catch (err) {
      if (signal.aborted) throw err;
      return undefined;
    }
  }
}

/**
 * Polls a DownloadRequest, 25 ms first and doubling up to 1 s (Velero answers within milliseconds, a
 * busy controller within seconds), until `want` holds or the deadline passes (undefined then).
 */
export async function waitForUrls(
  api: VeleroApi,
  name: string,
  want: (u: DownloadUrls) => boolean,
  deadline: number,
  signal: AbortSignal,
): Promise<DownloadUrls | undefined> {
  let delay = 25;
  let last: DownloadUrls = {};
  let failure: unknown;
  for (;;) {
    let urls: DownloadUrls | undefined;
    try {
      urls = await api.readDownloadRequest(name, signal);
      failure = undefined;
    } catch (err) {
      if (signal.aborted) throw err;
      const code = statusOf(err);
      // An API server hiccup (or a slow answer) is worth another poll; a refusal is not.
      if (code === 401 || code === 403) throw kubeError(err, api.server, `reading DownloadRequest "${name}"`);
      failure = err;
      urls = last;
    }
    if (!urls) {
      throw new CliError(EXIT.unreachable, `DownloadRequest "${name}" in namespace "${api.namespace}" disappeared while waiting for it (deleted, or expired): run the command again`);
    }
    last = urls;
    if (want(urls)) return urls;
    const left = deadline - Date.now();
    if (left <= 0) {
      if (failure) throw kubeError(failure, api.server, `reading DownloadRequest "${name}"`);
      return undefined;
    }
    await sleep(Math.min(delay, left), undefined, { signal });
    delay = Math.min(delay * 2, 1000);
  }
}
