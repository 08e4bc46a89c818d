/**
 * `velero-download`: one command, start to end. Parse the command line; create a DownloadRequest and
 * wait for its URLs; try the store's pre-signed URL, then the download server (then, inside the
 * cluster, its Service's cluster-local name); stream the bytes (gunzipped unless they are backup
 * contents) into stdout or a file that appears only when complete; delete the DownloadRequest.
 */
import { readFile } from 'node:fs/promises';
import type { IncomingMessage } from 'node:http';
import type { LookupFunction } from 'node:net';
import { resolve } from 'node:path';
import { Readable } from 'node:stream';
import type { Transform, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { getCACertificates } from 'node:tls';
import { createGunzip } from 'node:zlib';
import type { KubeConfig } from '@kubernetes/client-node';
import { USAGE, parseCommandLine, printable } from './args.ts';
import type { Command } from './args.ts';
import { CliError, EXIT, TimeoutError, UntrustedCertificateError, UsageError, describeFailure, networkFailure } from './errors.ts';
import type { Trust } from './http.ts';
import { checkOutput, openOutput } from './output.ts';
import type { Output } from './output.ts';
import { progressFor } from './progress.ts';
import type { TerminalLike } from './progress.ts';
import { HttpStatusError, bodyChunks, openSource } from './transfer.ts';
import type { FetchOptions, Source, TransferStats } from './transfer.ts';
import { isJson, listDirectory, readJson, safeJson, volumeUrl, volumesTable, wholeTarCheck } from './volumes.ts';
import type * as KubeModuleNs from './kube.ts';
import type { DownloadUrls, VeleroApi } from './kube.ts';
import { NEVER_ABORTED } from '../util/abortable.ts';
import { DEFAULT_SERVICE_NAME } from '../util/names.ts';

type KubeModule = typeof KubeModuleNs;


/** The process around the command; tests pass their own. */
export interface CliIo {
  stdout: Writable;
  stderr: Writable & TerminalLike;
  env: NodeJS.ProcessEnv;
  cwd: string;
  /** Aborted on SIGINT / SIGTERM: the command cleans up and returns 130. */
  signal?: AbortSignal;
  /** Name resolution for downloads (tests resolve cluster-local names with it). */
  lookup?: LookupFunction;
}

/** How long a download server URL alone waits for Velero's pre-signed URL, which is tried first. */
const PRESIGNED_GRACE_MS = 500;

/** Runs the command line; returns the exit code. Never throws. */
export async function run(argv: readonly string[], io: CliIo): Promise<number> {
  const say = (msg: string): void => void io.stderr.write(`velero-download: ${msg}\n`);
  let parsed: ReturnType<typeof parseCommandLine>;
  try {
    parsed = parseCommandLine(argv);
  } catch (err) {
    say(`${(err as Error).message}\nRun "velero-download --help" for usage.`);
    return EXIT.usage;
  }
  if (parsed.help) {
    io.stdout.write(USAGE);
    return EXIT.ok;
  }
  const signal = io.signal ?? NEVER_ABORTED;
  try {
    if (parsed.command.volume) await volumeData(parsed.command, io, signal, say);
    else await download(parsed.command, io, signal, say);
    return EXIT.ok;
  } catch (err) {
    if (signal.aborted) {
      say('interrupted: nothing was saved');
      return EXIT.interrupted;
    }
    if (err instanceof CliError) {
      if (err.message) say(err.message);
      return err.exitCode;
    }
    say(`unexpected error: ${describeFailure(err)}`);
    return EXIT.notFound;
  }
}

const singular = (cmd: Command): string => (cmd.owner === 'backups' ? 'backup' : 'restore');

/** What to do about a download server certificate nothing vouched for. */
const untrustedAdvice = (err: UntrustedCertificateError, cmd: Command, caConfigMap: string): string =>
  `the download server's certificate is not trusted (SHA-256 fingerprint ${err.fingerprint}): ask for "get" on ConfigMap ${caConfigMap} in namespace "${cmd.namespace}", or pass --cacert FILE (its ca.crt: kubectl -n ${cmd.namespace} get configmap ${caConfigMap} -o jsonpath='{.data.ca\\.crt}') or, after checking the fingerprint with your cluster admin, --server-cert-fingerprint ${err.fingerprint}`;

async function readCaFile(file: string): Promise<string> {
  let pem: string;
  try {
    pem = await readFile(file, 'utf8');
  } catch (err) {
    throw new UsageError(`--cacert: cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
  if (!pem.includes('-----BEGIN CERTIFICATE-----')) throw new UsageError(`--cacert: ${file} holds no PEM certificate`);
  return pem;
}

/** The download server's token and TLS trust, each worked out once and only when first needed. */
class GatewayAccess {
  readonly #kube: KubeModule;
  readonly #kc: KubeConfig;
  readonly #api: VeleroApi;
  readonly #cmd: Command;
  readonly #cacert: string | undefined;
  readonly #signal: AbortSignal;
  #token: Promise<string> | undefined;
  #trust: Promise<Trust> | undefined;

  constructor(kube: KubeModule, kc: KubeConfig, api: VeleroApi, cmd: Command, cacert: string | undefined, signal: AbortSignal) {
    this.#kube = kube;
    this.#kc = kc;
    this.#api = api;
    this.#cmd = cmd;
    this.#cacert = cacert;
    this.#signal = signal;
  }

  token(): Promise<string> {
    return (this.#token ??= this.#kube.bearerToken(this.#kc));
  }

  /**
   * --cacert, else ca.crt the download server publishes (its ConfigMap, else its certificate Secret,
   * when readable), else a pinned fingerprint (the flag, or the published annotation), else the system
   * roots; --insecure-skip-tls-verify excludes the others.
   */
  trust(): Promise<Trust> {
    return (this.#trust ??= (async (): Promise<Trust> => {
      const cmd = this.#cmd;
      if (cmd.insecureSkipTlsVerify) return { chain: false, pins: [], insecure: true };
      const pins = cmd.serverCertFingerprint ? [cmd.serverCertFingerprint] : [];
      let ca = this.#cacert ? [this.#cacert] : undefined;
      if (!ca) {
        const published = await this.#api.gatewayTrust(this.#signal);
        if (published.caCert) ca = [published.caCert];
        const pinned = published.fingerprint?.replaceAll(':', '').toLowerCase();
        if (pinned && /^[0-9a-f]{64}$/.test(pinned)) pins.push(pinned);
      }
      // A pin alone means "this certificate only", not "this one or anything a public CA signed".
      return { ...(ca && { ca }), chain: ca !== undefined || pins.length === 0, pins, insecure: false };
    })());
  }
}

function storeTrust(cmd: Command, cacert: string | undefined): Trust {
  if (cmd.insecureSkipTlsVerify) return { chain: false, pins: [], insecure: true };
  // As Velero's CLI: --cacert adds to the default roots for the store.
  return { ...(cacert && { ca: [...getCACertificates('default'), cacert] }), chain: true, pins: [], insecure: false };
}

function statusToError(err: HttpStatusError, src: Source, cmd: Command): CliError {
  const detail = err.detail ? ` (${err.detail})` : '';
  const what = `${singular(cmd)} "${cmd.name}" ${cmd.artifact}`;
  if (err.status === 404) return new CliError(EXIT.notFound, `${what} not found${detail}`);
  if (src.kind === 'gateway') {
    if (err.status === 401) {
      return new CliError(EXIT.denied, `the download server did not accept your token${detail}: log in again (your kubeconfig's token may have expired)`);
    }
    if (err.status === 403) {
      const needs = `"get" on ${cmd.owner}/${cmd.artifact} named "${cmd.name}"${src.url.pathname.includes('/downloadrequests/') ? ' and on downloadrequests' : ''} (API group velero.io) in namespace "${cmd.namespace}"`;
      return new CliError(EXIT.denied, `${err.detail || 'forbidden'}: ask your cluster admin for ${needs}`);
    }
  } else if (err.status === 401 || err.status === 403) {
    return new CliError(EXIT.denied, `the store refused the pre-signed download URL (HTTP ${err.status}${detail}): it may have expired or the clocks differ; run the command again, or pass --velero-server-url to use the download server`);
  }
  if (err.status >= 500 || err.status === 429) return new CliError(EXIT.unreachable, `${src.label} is unavailable (HTTP ${err.status}${detail}): try again later`);
  return new CliError(EXIT.notFound, `${src.label} answered HTTP ${err.status}${detail}`);
}

/** What every command needs before it fetches: the output checked, the kubeconfig, the API, the download server's access. */
async function prepare(cmd: Command, io: CliIo, signal: AbortSignal): Promise<{ kube: KubeModule; api: VeleroApi; gateway: GatewayAccess; cacert: string | undefined }> {
  await checkOutput(cmd.output, cmd.force, io.cwd);
  const cacert = cmd.cacert ? await readCaFile(resolve(io.cwd, cmd.cacert)) : undefined;
  const kube: KubeModule = await import('./kube.ts');
  const kc = kube.loadKubeConfig(cmd, io.env);
  const api = new kube.VeleroApi(kc, cmd.namespace, cmd.connectTimeoutMs);
  return { kube, api, gateway: new GatewayAccess(kube, kc, api, cmd, cacert, signal), cacert };
}

/** --timeout, which runs from the first download attempt: waiting for URLs has its own --wait-timeout. */
class TransferClock {
  readonly #limit = new AbortController();
  readonly signal: AbortSignal;
  readonly #ms: number;
  #timer: NodeJS.Timeout | undefined;
  constructor(ms: number, signal: AbortSignal) {
    this.#ms = ms;
    this.signal = AbortSignal.any([signal, this.#limit.signal]);
  }
  start(): void {
    if (this.#ms && !this.#timer) this.#timer = setTimeout(() => this.#limit.abort(new TimeoutError('--timeout')), this.#ms);
  }
  stop(): void {
    clearTimeout(this.#timer);
  }
  /** The error to report instead of `err` when the limit cut the transfer. */
  explain(err: unknown): unknown {
    if (!this.#limit.signal.aborted) return err;
    return new CliError(EXIT.unreachable, `the transfer did not finish within --timeout ${this.#ms / 1000}s: raise --timeout (0 means no limit)`);
  }
}

async function download(cmd: Command, io: CliIo, signal: AbortSignal, say: (msg: string) => void): Promise<void> {
  const { kube, api, gateway, cacert } = await prepare(cmd, io, signal);
  // Fail before creating anything when the download server cannot be used at all.
  if (cmd.gateway.forced) await gateway.token();

  const clock = new TransferClock(cmd.timeoutMs, signal);
  let drName: string | undefined;
  try {
    const fetchOpts: FetchOptions = { signal: clock.signal, timeoutMs: cmd.connectTimeoutMs, ...(io.lookup && { lookup: io.lookup }) };
    const failures: string[] = [];
    let untrusted: UntrustedCertificateError | undefined;

    const tryOpen = async (src: Source): Promise<IncomingMessage | undefined> => {
      clock.start();
      try {
        return await openSource(src, fetchOpts);
      } catch (err) {
        if (err instanceof HttpStatusError) throw statusToError(err, src, cmd);
        if (clock.signal.aborted || !networkFailure(err)) throw err;
        if (err instanceof UntrustedCertificateError && src.kind === 'gateway') untrusted = err;
        failures.push(`${src.label}: ${describeFailure(err)}`);
        return undefined;
      }
    };
    const gatewaySource = async (url: URL, label: string): Promise<Source> => ({
      kind: 'gateway',
      label,
      url,
      headers: { Authorization: `Bearer ${await gateway.token()}` },
      trust: await gateway.trust(),
    });

    let opened: { src: Source; res: IncomingMessage } | undefined;
    const gatewayUrls: URL[] = [];
    if (cmd.gateway.baseUrl) {
      const base = cmd.gateway.baseUrl;
      gatewayUrls.push(new URL(`${base.pathname.replace(/\/+$/, '')}/v1/namespaces/${cmd.namespace}/${cmd.owner}/${cmd.name}/${cmd.artifact}`, base));
    } else {
      if ((await api.ownerExists(cmd.owner, cmd.name, signal)) === false) {
        throw new CliError(EXIT.notFound, `${singular(cmd)} "${cmd.name}" not found in namespace "${cmd.namespace}" (pass -n NAMESPACE if it lives elsewhere)`);
      }
      drName = await api.createDownloadRequest(cmd.kind, cmd.name, signal);
      const deadline = Date.now() + cmd.waitTimeoutMs;
      const where = `DownloadRequest "${drName}" in namespace "${cmd.namespace}"`;
      let urls: DownloadUrls | undefined;
      if (!cmd.gateway.forced) {
        urls = await kube.waitForUrls(api, drName, (u) => Boolean(u.downloadURL ?? u.gatewayURL), deadline, signal);
        if (!urls) {
          throw new CliError(
            EXIT.unreachable,
            `no download URL appeared on ${where} within --wait-timeout ${cmd.waitTimeoutMs / 1000}s: is Velero running in namespace "${cmd.namespace}"? (raise --wait-timeout if the cluster is slow, or pass --velero-server-url=https://HOST to use the download server directly)`,
          );
        }
        if (!urls.downloadURL) {
          urls = (await kube.waitForUrls(api, drName, (u) => Boolean(u.downloadURL), Math.min(deadline, Date.now() + PRESIGNED_GRACE_MS), signal)) ?? urls;
        }
        if (urls.downloadURL) {
          let url: URL | undefined;
          try {
            url = new URL(urls.downloadURL);
          } catch {
            failures.push(`the store: status.downloadURL is not a URL`);
          }
          if (url && url.protocol !== 'https:' && url.protocol !== 'http:') {
            failures.push(`the store: status.downloadURL has an unsupported scheme ${url.protocol}`);
            url = undefined;
          }
          if (url) {
            const src: Source = { kind: 'store', label: `the store at ${url.origin}`, url, headers: {}, trust: storeTrust(cmd, cacert) };
            const res = await tryOpen(src);
            if (res) opened = { src, res };
          }
          if (!opened) say(`${failures.at(-1)!}; trying the download server instead`);
        }
      }
      if (!opened) {
        if (!urls?.gatewayURL) urls = await kube.waitForUrls(api, drName, (u) => Boolean(u.gatewayURL), deadline, signal);
        if (!urls?.gatewayURL) {
          throw new CliError(
            EXIT.unreachable,
            `${failures.length ? `${failures.join('; ')}; and no` : 'no'} download server URL (annotation download-server.velero.io/url) appeared on ${where} within --wait-timeout ${cmd.waitTimeoutMs / 1000}s: is velero-download-server running and serving namespace "${cmd.namespace}", and does the backup's storage location opt in? (or pass --velero-server-url=https://HOST)`,
          );
        }
        try {
          gatewayUrls.push(new URL(urls.gatewayURL));
        } catch {
          failures.push(`the download server URL on ${where} is not a URL`);
        }
      }
    }

    for (let i = 0; !opened && i < gatewayUrls.length; i++) {
      const url = gatewayUrls[i]!;
      if (url.protocol !== 'https:') {
        failures.push(`refusing to send your bearer token over plain HTTP to ${url.origin}`);
      } else {
        const src = await gatewaySource(url, `the download server at ${url.origin}`);
        const res = await tryOpen(src);
        if (res) {
          opened = { src, res };
          break;
        }
      }
      // Inside the cluster (e.g. `kubectl exec deploy/velero -- velero-download ...`) the public name
      // may not resolve or route: the Service's cluster-local name does.
      if (i === 0 && io.env.KUBERNETES_SERVICE_HOST && !cmd.gateway.baseUrl) {
        const port = (await api.servicePort(signal)) ?? kube.DEFAULT_GATEWAY_PORT;
        const local = new URL(`https://${DEFAULT_SERVICE_NAME}.${cmd.namespace}.svc:${port}${url.pathname}`);
        if (local.origin !== url.origin) {
          gatewayUrls.push(local);
          say(`${failures.at(-1)!}; trying the cluster-local name ${local.origin}`);
        }
      }
    }

    if (!opened) {
      const trustAdvice = untrusted ? `; ${untrustedAdvice(untrusted, cmd, kube.CA_CONFIGMAP)}` : ': check that the download server is running and reachable from here';
      throw new CliError(EXIT.unreachable, `cannot download the ${singular(cmd)} "${cmd.name}" ${cmd.artifact}: ${failures.join('; ')}${trustAdvice}`);
    }
    await save(cmd, io, opened.src, opened.res, fetchOpts, say, { what: `${singular(cmd)} "${cmd.name}" ${cmd.artifact}` });
  } catch (err) {
    if (signal.aborted) throw err;
    throw clock.explain(err);
  } finally {
    clock.stop();
    if (drName) await api.deleteDownloadRequest(drName);
  }
}

interface SaveOptions {
  /** For the closing message: what was saved. */
  what: string;
  /** Checks the bytes on their way to the output; its error fails the transfer (nothing saved). */
  verify?: Transform;
}

async function save(cmd: Command, io: CliIo, src: Source, res: IncomingMessage, fetchOpts: FetchOptions, say: (msg: string) => void, opts: SaveOptions): Promise<void> {
  const length = Number(res.headers['content-length']);
  const bar = progressFor(io.stderr, Number.isSafeInteger(length) ? length : undefined);
  const stats: TransferStats = { received: 0, total: undefined, resumes: 0 };
  let output: Output;
  try {
    output = await openOutput(cmd.output, cmd.force, io.cwd, io.stdout);
  } catch (err) {
    res.destroy();
    throw err;
  }
  const body = Readable.from(bodyChunks(src, res, fetchOpts, stats, bar, (m) => {
    if (bar) io.stderr.write('\n');
    say(m);
  }));
  try {
    await pipeline([body, ...(cmd.gunzip ? [createGunzip()] : []), ...(opts.verify ? [opts.verify] : []), output.stream], { signal: fetchOpts.signal });
    bar?.finish();
    await output.commit();
  } catch (err) {
    bar?.finish();
    await output.discard();
    if (err instanceof CliError || fetchOpts.signal.aborted) throw err;
    if (err instanceof HttpStatusError) throw statusToError(err, src, cmd);
    const code = (err as NodeJS.ErrnoException).code;
    if (typeof code === 'string' && code.startsWith('Z_')) {
      throw new CliError(EXIT.notFound, `the ${cmd.artifact} of ${singular(cmd)} "${cmd.name}" is not valid gzip (${(err as Error).message}): the stored file may be damaged`);
    }
    if (code === 'EPIPE' && cmd.output.kind === 'stdout') throw new CliError(EXIT.ok, '');
    if (networkFailure(err)) {
      throw new CliError(EXIT.unreachable, `the transfer from ${src.label} failed after ${stats.received} bytes: ${describeFailure(err)}`);
    }
    throw new CliError(EXIT.notFound, `writing ${output.name} failed: ${describeFailure(err)}`);
  }
  if (cmd.output.kind === 'file') {
    io.stdout.write(`${opts.what} saved to ${resolve(io.cwd, cmd.output.path)}\n`);
  }
}

/**
 * The download server's base URL when --velero-server-url gives none: the URL it records on a
 * DownloadRequest for the backup (its results, the smallest artifact), less the DownloadRequest's
 * own path. That URL is trusted as the stock flow trusts it (the token then goes only to a server
 * whose certificate the gateway's published CA, a pin or the system roots vouch for, over HTTPS).
 */
async function discoverGateway(cmd: Command, kube: KubeModule, api: VeleroApi, signal: AbortSignal): Promise<URL> {
  if ((await api.ownerExists(cmd.owner, cmd.name, signal)) === false) {
    throw new CliError(EXIT.notFound, `backup "${cmd.name}" not found in namespace "${cmd.namespace}" (pass -n NAMESPACE if it lives elsewhere)`);
  }
  const drName = await api.createDownloadRequest('BackupResults', cmd.name, signal);
  try {
    const where = `DownloadRequest "${drName}" in namespace "${cmd.namespace}"`;
    const urls = await kube.waitForUrls(api, drName, (u) => Boolean(u.gatewayURL), Date.now() + cmd.waitTimeoutMs, signal);
    if (!urls?.gatewayURL) {
      throw new CliError(
        EXIT.unreachable,
        `no download server URL (annotation download-server.velero.io/url) appeared on ${where} within --wait-timeout ${cmd.waitTimeoutMs / 1000}s: volume data comes from the download server only; is it running and serving namespace "${cmd.namespace}"? (or pass --velero-server-url=https://HOST)`,
      );
    }
    const suffix = `/v1/namespaces/${cmd.namespace}/downloadrequests/${drName}`;
    let url: URL | undefined;
    try {
      url = new URL(urls.gatewayURL);
    } catch {
      // reported below
    }
    if (!url?.pathname.endsWith(suffix) || url.search || url.hash) {
      throw new CliError(EXIT.unreachable, `the download server URL on ${where} is not that DownloadRequest's URL: pass --velero-server-url=https://HOST`);
    }
    if (url.protocol !== 'https:') throw new CliError(EXIT.unreachable, `refusing to send your bearer token over plain HTTP to ${url.origin}`);
    url.pathname = url.pathname.slice(0, -suffix.length) || '/';
    return url;
  } finally {
    await api.deleteDownloadRequest(drName);
  }
}

/**
 * `backup volumes|ls|files|archive`: volume data, from the download server only (no DownloadRequest
 * target exists for it). The token goes only to the base URL given or discovered, over verified HTTPS.
 */
async function volumeData(cmd: Command, io: CliIo, signal: AbortSignal, say: (msg: string) => void): Promise<void> {
  const v = cmd.volume!;
  const { kube, api, gateway } = await prepare(cmd, io, signal);
  const token = await gateway.token();
  const base = cmd.gateway.baseUrl ?? (await discoverGateway(cmd, kube, api, signal));
  const trust = await gateway.trust();
  const clock = new TransferClock(cmd.timeoutMs, signal);
  clock.start();
  const fetchOpts: FetchOptions = { signal: clock.signal, timeoutMs: cmd.connectTimeoutMs, ...(io.lookup && { lookup: io.lookup }) };
  const source = (url: URL): Source => ({ kind: 'gateway', label: `the download server at ${url.origin}`, url, headers: { Authorization: `Bearer ${token}` }, trust });
  const url = (continueToken?: string): URL => volumeUrl(base, cmd.namespace, cmd.name, v, continueToken);
  const src = source(url());
  const open = (u: URL): Promise<IncomingMessage> => openSource(source(u), fetchOpts);
  const print = (s: string): Promise<void> => new Promise((ok, fail) => void io.stdout.write(s, (err) => (err ? fail(err) : ok())));
  const inVolume = `"${printable(v.volume)}:/${printable(v.path.join('/'))}"`;
  try {
    if (v.action === 'volumes') {
      const list = await readJson(await open(src.url), 'the volume list');
      await print(v.json ? `${safeJson(list, 2)}\n` : volumesTable(list));
    } else if (v.action === 'ls') {
      await listDirectory((t) => open(url(t)), v.json, print);
    } else {
      const res = await open(src.url);
      if (isJson(res)) {
        const kind = ((await readJson(res, 'the answer')) as { kind?: unknown } | null)?.kind;
        const what = kind === 'Directory' ? 'a directory' : kind === 'Symlink' ? 'a symbolic link' : 'not a file';
        throw new CliError(EXIT.notFound, `${inVolume} is ${what}: use backup ls to list it${kind === 'Directory' ? ', or backup archive to download it' : ''}`);
      }
      const archive = v.action === 'archive';
      await save(cmd, io, src, res, fetchOpts, say, {
        what: archive ? `the archive of ${inVolume}` : inVolume,
        ...(archive && { verify: wholeTarCheck(v.gzip, `the archive of ${inVolume}`) }),
      });
    }
  } catch (err) {
    if (signal.aborted || err instanceof CliError) throw err;
    if (err instanceof HttpStatusError) throw statusToError(err, src, cmd);
    if (clock.signal.aborted) throw clock.explain(err);
    if ((err as NodeJS.ErrnoException).code === 'EPIPE') throw new CliError(EXIT.ok, '');
    if (err instanceof UntrustedCertificateError) throw new CliError(EXIT.unreachable, `cannot use ${src.label}: ${untrustedAdvice(err, cmd, kube.CA_CONFIGMAP)}`);
    if (networkFailure(err)) throw new CliError(EXIT.unreachable, `${src.label}: ${describeFailure(err)}: check that the download server is running and reachable from here`);
    throw err;
  } finally {
    clock.stop();
  }
}
