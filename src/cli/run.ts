/**
 * `velero-download`: one command, start to end. Parse the command line; create a DownloadRequest and
 * wait for its URLs; try the store's pre-signed URL, then the download server (then, inside the
 * cluster, its Service's cluster-local name); stream the bytes (gunzipped unless they are backup
 * contents) into stdout or a file that appears only when complete; delete the DownloadRequest.
 */
import { open, readFile } from 'node:fs/promises';
import type { IncomingMessage } from 'node:http';
import type { LookupFunction } from 'node:net';
import { resolve } from 'node:path';
import { Readable } from 'node:stream';
import type { Transform, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { getCACertificates } from 'node:tls';
import { createGunzip } from 'node:zlib';
import type { KubeConfig } from '@kubernetes/client-node';
import { MAX_TOKEN_CHARS, TOKEN_ENV, USAGE, checkToken, parseCommandLine, printable } from './args.ts';
import type { AccessUserOptions, Command, HashPasswordCommand, TokenOptions } from './args.ts';
import { CliError, EXIT, TimeoutError, UntrustedCertificateError, UsageError, describeFailure, networkFailure } from './errors.ts';
import type { Trust } from './http.ts';
import { loadClientConfig } from './client-config.ts';
import { completionScript } from './completion.ts';
import { DESCRIBED_ARTIFACTS, describeJson, describeTable, downloadCommand, sizeOf } from './describe.ts';
import type { ArtifactState } from './describe.ts';
import { checkOutput, openOutput, placeFile } from './output.ts';
import { PartialDownload, serverIdentity } from './partial.ts';
import type { SourceIdentity } from './partial.ts';
import type { Output } from './output.ts';
import { PASSWORD_FILE_ENV, firstLine, promptPassword, readPasswordFile } from './password.ts';
import type { PromptTerminal } from './password.ts';
import { progressFor } from './progress.ts';
import type { TerminalLike } from './progress.ts';
import { HttpStatusError, bodyChunks, describeBody, openSource } from './transfer.ts';
import type { FetchOptions, Source, TransferStats } from './transfer.ts';
import { isJson, listDirectory, readJson, safeJson, volumeUrl, volumesTable, wholeTarCheck } from './volumes.ts';
import type * as KubeModuleNs from './kube.ts';
import type { DownloadUrls, VeleroApi } from './kube.ts';
import { NEVER_ABORTED } from '../util/abortable.ts';
import { CA_CONFIGMAP_NAME, DEFAULT_SERVICE_NAME, FINGERPRINT_ANNOTATION } from '../util/names.ts';
import { hashPassword } from '../util/passwords.ts';
import { VERSION } from '../version.ts';

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
  /** Standard input, for `--password-file -` and hash-password; opened only when asked for. */
  stdin?: () => Readable & { isTTY?: boolean };
  /** The terminal to prompt for a password on; undefined (or absent) when there is none. */
  openTerminal?: () => PromptTerminal | undefined;
}

/** How long a download server URL alone waits for Velero's pre-signed URL, which is tried first. */
const PRESIGNED_GRACE_MS = 500;

/** Runs the command line; returns the exit code. Never throws. */
export async function run(argv: readonly string[], io: CliIo): Promise<number> {
  const say = (msg: string): void => void io.stderr.write(`velero-download: ${msg}\n`);
  let parsed: ReturnType<typeof parseCommandLine>;
  try {
    parsed = parseCommandLine(argv, io.env, await loadClientConfig(io.env, say));
  } catch (err) {
    say(`${(err as Error).message}\nRun "velero-download --help" for usage.`);
    return EXIT.usage;
  }
  if (parsed.help) {
    io.stdout.write(USAGE);
    return EXIT.ok;
  }
  if ('completion' in parsed) {
    io.stdout.write(completionScript(parsed.completion));
    return EXIT.ok;
  }
  if ('version' in parsed) {
    io.stdout.write(`velero-download ${VERSION}\n`);
    return EXIT.ok;
  }
  if ('command' in parsed && parsed.command.token?.from === '--token') {
    say(`warning: the value of --token can be seen by other users in process listings (ps) and stays in shell history: prefer --token-file FILE or $${TOKEN_ENV}`);
  }
  const signal = io.signal ?? NEVER_ABORTED;
  try {
    if ('hashPassword' in parsed) await printHash(parsed.hashPassword, io, signal, say);
    else if (parsed.command.volume) await volumeData(parsed.command, io, signal, say);
    else if (parsed.command.describe) await describe(parsed.command, io, signal, say);
    else await download(parsed.command, io, signal, say);
    return EXIT.ok;
  } catch (err) {
    if (signal.aborted) {
      // save() says what became of the bytes; an interruption before any arrived saved nothing.
      say(err instanceof CliError && err.exitCode === EXIT.interrupted ? err.message : 'interrupted: nothing was saved');
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

/** How the command signs in to the download server, and how it judges the server's certificate. */
interface GatewayAccess {
  /** The Authorization header's value, worked out once, when first needed. */
  authorization(): Promise<string>;
  trust(): Promise<Trust>;
  /** What to do about a certificate nothing vouched for. */
  untrustedAdvice(err: UntrustedCertificateError): string;
  /** The message for a 401 (`detail`: the server's own words, in parentheses, or ''). */
  refused(detail: string): string;
  /** Whom RBAC must grant access, for a 403's advice ('' for the kubeconfig's user). */
  readonly subject: string;
}

/** A pin alone means "this certificate only", not "this one or anything a public CA signed". */
const gatewayTrust = (ca: string[] | undefined, pins: string[]): Trust => ({ ...(ca && { ca }), chain: ca !== undefined || pins.length === 0, pins, insecure: false });

async function readCaFile(file: string, from: string): Promise<string> {
  let pem: string;
  try {
    pem = await readFile(file, 'utf8');
  } catch (err) {
    throw new UsageError(`${from}: cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
  if (!pem.includes('-----BEGIN CERTIFICATE-----')) throw new UsageError(`${from}: ${file} holds no PEM certificate`);
  return pem;
}

/** The kubeconfig user's token and the trust the cluster publishes, each worked out once and only when first needed. */
class KubeGatewayAccess implements GatewayAccess {
  readonly subject = '';
  readonly #kube: KubeModule;
  readonly #kc: KubeConfig;
  readonly #api: VeleroApi;
  readonly #cmd: Command;
  readonly #cacert: string | undefined;
  readonly #signal: AbortSignal;
  #header: Promise<string> | undefined;
  #trust: Promise<Trust> | undefined;

  constructor(kube: KubeModule, kc: KubeConfig, api: VeleroApi, cmd: Command, cacert: string | undefined, signal: AbortSignal) {
    this.#kube = kube;
    this.#kc = kc;
    this.#api = api;
    this.#cmd = cmd;
    this.#cacert = cacert;
    this.#signal = signal;
  }

  authorization(): Promise<string> {
    return (this.#header ??= this.#kube.bearerToken(this.#kc).then((token) => `Bearer ${token}`));
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
      return gatewayTrust(ca, pins);
    })());
  }

  untrustedAdvice(err: UntrustedCertificateError): string {
    const ns = this.#cmd.namespace;
    return `the download server's certificate is not trusted (SHA-256 fingerprint ${err.fingerprint}): ask for "get" on ConfigMap ${CA_CONFIGMAP_NAME} in namespace "${ns}", or pass --cacert FILE (its ca.crt: kubectl -n ${ns} get configmap ${CA_CONFIGMAP_NAME} -o jsonpath='{.data.ca\\.crt}') or, after checking the fingerprint with your cluster admin, --server-cert-fingerprint ${err.fingerprint}`;
  }

  refused(detail: string): string {
    return `the download server did not accept your token${detail}: log in again (your kubeconfig's token may have expired)`;
  }
}

/**
 * Signing in without a kubeconfig (an access user, or a token given directly): no cluster publishes a
 * CA, so trust comes from --cacert or --server-cert-fingerprint only, else the system roots. The
 * credentials reach httpGet, which verifies the certificate before it writes a byte of the request,
 * and never follows a redirect.
 */
abstract class DirectAccess implements GatewayAccess {
  abstract readonly subject: string;
  readonly #cmd: Command;
  readonly #cacert: string | undefined;
  #header: Promise<string> | undefined;

  constructor(cmd: Command, cacert: string | undefined) {
    this.#cmd = cmd;
    this.#cacert = cacert;
  }

  /** The Authorization header, worked out on the first request only. */
  protected abstract header(): Promise<string>;
  abstract refused(detail: string): string;

  authorization(): Promise<string> {
    return (this.#header ??= this.header());
  }

  trust(): Promise<Trust> {
    const pins = this.#cmd.serverCertFingerprint ? [this.#cmd.serverCertFingerprint] : [];
    return Promise.resolve(gatewayTrust(this.#cacert ? [this.#cacert] : undefined, pins));
  }

  untrustedAdvice(err: UntrustedCertificateError): string {
    const fp = err.fingerprint;
    const pinned = this.#cmd.serverCertFingerprint;
    const why = pinned
      ? `its SHA-256 fingerprint ${fp} is not the pinned ${pinned}: the certificate was renewed, or someone else answers; nothing was sent`
      : `nothing vouches for it (SHA-256 fingerprint ${fp}); nothing was sent`;
    return `the download server's certificate is not trusted: ${why}. Pass --cacert FILE with the CA that signed it, or --server-cert-fingerprint with the fingerprint the operator publishes, read over a channel you already trust (GET /v1/info field tlsFingerprint, the server's start-up output, or annotation ${FINGERPRINT_ANNOTATION} on ConfigMap ${CA_CONFIGMAP_NAME}); never copy it from this message without checking`;
  }
}

/** An access user (`--user`): HTTP Basic with a password from a file, stdin or a prompt. */
class AccessUserAccess extends DirectAccess {
  readonly subject: string;
  readonly #user: AccessUserOptions;
  readonly #io: CliIo;
  readonly #signal: AbortSignal;
  readonly #say: (msg: string) => void;

  constructor(user: AccessUserOptions, cmd: Command, cacert: string | undefined, io: CliIo, signal: AbortSignal, say: (msg: string) => void) {
    super(cmd, cacert);
    this.#user = user;
    // The user name the gateway's SubjectAccessReviews carry for an access user.
    this.subject = `velero-download-server:${user.name}`;
    this.#io = io;
    this.#signal = signal;
    this.#say = say;
  }

  protected header(): Promise<string> {
    // RFC 7617 with charset UTF-8: the name is ASCII without ":" (checked), the password any UTF-8 text.
    return this.#password().then((pw) => `Basic ${Buffer.from(`${this.#user.name}:${pw}`, 'utf8').toString('base64')}`);
  }

  async #password(): Promise<string> {
    const io = this.#io;
    if (this.#user.passwordFile !== undefined) return passwordFrom(this.#user.passwordFile, '--password-file', io, this.#say);
    const fromEnv = io.env[PASSWORD_FILE_ENV];
    if (fromEnv) return passwordFrom(fromEnv, `$${PASSWORD_FILE_ENV}`, io, this.#say);
    const term = io.openTerminal?.();
    if (!term) {
      throw new UsageError(
        `--user ${this.#user.name}: no password: pass --password-file FILE (its first line; - for stdin) or set ${PASSWORD_FILE_ENV}=FILE; there is no terminal to ask on`,
      );
    }
    return promptPassword(term, `Password for ${this.#user.name}: `, this.#signal);
  }

  refused(detail: string): string {
    return `the download server did not accept user or password for ${this.#user.name}${detail}: check the password, and that the user is in the server's access-user table`;
  }
}

/**
 * A bearer token given directly (`--token`, `--token-file`, $VELERO_DOWNLOAD_TOKEN): the gateway
 * reviews it with TokenReview as it does a kubeconfig's. The token is read (from its file) on the
 * first request only and is never put into a message.
 */
class TokenAccess extends DirectAccess {
  // The gateway knows whose token it is; the client does not.
  readonly subject = '';
  readonly #token: TokenOptions;
  readonly #cwd: string;

  constructor(token: TokenOptions, cmd: Command, cacert: string | undefined, cwd: string) {
    super(cmd, cacert);
    this.#token = token;
    this.#cwd = cwd;
  }

  protected async header(): Promise<string> {
    const t = this.#token;
    return `Bearer ${'value' in t ? t.value : await readTokenFile(resolve(this.#cwd, t.file))}`;
  }

  refused(detail: string): string {
    return `the download server did not accept the token from ${this.#token.from}${detail}: it may have expired; make a new one (for a service account: kubectl create token NAME)`;
  }
}

/**
 * `--token-file`: the whole file, trimmed (as kubectl reads --token-file), at most a few KiB. The
 * file is the user's own, read with the user's own rights; its contents never reach a message.
 */
async function readTokenFile(file: string): Promise<string> {
  let handle;
  try {
    handle = await open(file, 'r');
  } catch (err) {
    throw new UsageError(`--token-file: cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
  try {
    if ((await handle.stat()).isDirectory()) throw new UsageError(`--token-file: ${file} is a directory`);
    // One byte more than the longest token with a newline around it tells "too long" from "fits".
    const limit = MAX_TOKEN_CHARS + 8;
    const buf = Buffer.alloc(limit);
    let size = 0;
    for (let n = -1; n !== 0 && size < limit; size += n) n = (await handle.read(buf, size, limit - size, null)).bytesRead;
    return checkToken(buf.subarray(0, size).toString('latin1'), `--token-file ${file}`);
  } catch (err) {
    if (err instanceof CliError) throw err;
    throw new UsageError(`--token-file: cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  } finally {
    await handle.close();
  }
}

/** A password from a file, or stdin for `-` (not when stdin is a terminal: that would echo it). */
async function passwordFrom(file: string, label: string, io: CliIo, warn: (msg: string) => void): Promise<string> {
  if (file !== '-') return readPasswordFile(resolve(io.cwd, file), label, warn);
  const stdin = io.stdin?.();
  if (!stdin) throw new UsageError(`${label} -: there is no stdin to read`);
  if (stdin.isTTY) throw new UsageError(`${label} -: stdin is a terminal, where the password would show as you type; leave out ${label} to be asked without echo`);
  return firstLine(stdin, `${label} - (stdin)`);
}

/**
 * `hash-password`: a new password, asked twice on a terminal (or read from --password-file, or from
 * stdin's first line when stdin is not a terminal), hashed with the gateway's own hashPassword (scrypt
 * at Kopia's cost); stdout gets the hash, or the table entry with --user. The password is never printed.
 */
async function printHash(h: HashPasswordCommand, io: CliIo, signal: AbortSignal, say: (msg: string) => void): Promise<void> {
  let password: string;
  if (h.passwordFile !== undefined) {
    password = await passwordFrom(h.passwordFile, '--password-file', io, say);
  } else if (io.stdin?.().isTTY) {
    const ask = (prompt: string): Promise<string> => {
      const term = io.openTerminal?.();
      if (!term) throw new UsageError('hash-password: cannot open the terminal to ask for the password: pass --password-file FILE');
      return promptPassword(term, prompt, signal);
    };
    password = await ask(`New password${h.user ? ` for ${h.user}` : ''}: `);
    if ((await ask('Again: ')) !== password) throw new UsageError('the two passwords differ: nothing was printed');
  } else if (io.stdin) {
    password = await firstLine(io.stdin(), 'stdin');
  } else {
    throw new UsageError('hash-password: no password: pass --password-file FILE');
  }
  const hash = await hashPassword(password);
  io.stdout.write(`${h.user ? `${h.user}: ` : ''}${hash}\n`);
}

function storeTrust(cmd: Command, cacert: string | undefined): Trust {
  if (cmd.insecureSkipTlsVerify) return { chain: false, pins: [], insecure: true };
  // As Velero's CLI: --cacert adds to the default roots for the store.
  return { ...(cacert && { ca: [...getCACertificates('default'), cacert] }), chain: true, pins: [], insecure: false };
}

function statusToError(err: HttpStatusError, src: Source, cmd: Command, access: GatewayAccess): CliError {
  // The server's words, with control characters escaped: a hostile answer must not drive the terminal.
  const detail = err.detail ? ` (${printable(err.detail)})` : '';
  const what = `${singular(cmd)} "${cmd.name}" ${cmd.artifact}`;
  if (err.status === 404) return new CliError(EXIT.notFound, `${what} not found${detail}`);
  if (src.kind === 'gateway') {
    if (err.status === 401) return new CliError(EXIT.denied, access.refused(detail));
    if (err.status === 403) {
      const needs = `"get" on ${cmd.owner}/${cmd.artifact} named "${cmd.name}"${src.url.pathname.includes('/downloadrequests/') ? ' and on downloadrequests' : ''} (API group velero.io) in namespace "${cmd.namespace}"`;
      return new CliError(EXIT.denied, `${printable(err.detail) || 'forbidden'}: ask your cluster admin for ${needs}${access.subject ? ` for user "${access.subject}"` : ''}`);
    }
    if (err.status === 429) {
      // A spent budget (failed sign-ins, or the server's request limits): retrying sooner does not help.
      const wait = err.retryAfterSeconds === undefined ? 'later' : `in ${err.retryAfterSeconds} s`;
      return new CliError(EXIT.unreachable, `the download server refused the request for now${detail}: try again ${wait}`);
    }
  } else if (err.status === 401 || err.status === 403) {
    return new CliError(EXIT.denied, `the store refused the pre-signed download URL (HTTP ${err.status}${detail}): it may have expired or the clocks differ; run the command again, or pass --velero-server-url to use the download server`);
  }
  if (err.status >= 500 || err.status === 429) return new CliError(EXIT.unreachable, `${src.label} is unavailable (HTTP ${err.status}${detail}): try again later`);
  return new CliError(EXIT.notFound, `${src.label} answered HTTP ${err.status}${detail}`);
}

/** The kubeconfig's side: absent for an access user. */
interface Cluster {
  kube: KubeModule;
  api: VeleroApi;
  /** The API server's URL, for a partial download's source identity. */
  server: string;
}

interface Prepared {
  cluster?: Cluster;
  gateway: GatewayAccess;
  cacert: string | undefined;
}

/** The cluster, for the flows that create DownloadRequests: --user and a token always come with a base URL, and so never get here. */
function clusterOf(p: Prepared): Cluster {
  if (!p.cluster) throw new Error('no kubeconfig was loaded');
  return p.cluster;
}

/**
 * What every command needs before it fetches: the output checked, and either the kubeconfig, the API
 * and the token, or (--user) the access user; no Kubernetes client is loaded for an access user.
 */
async function prepare(cmd: Command, io: CliIo, signal: AbortSignal, say: (msg: string) => void): Promise<Prepared> {
  await checkOutput(cmd.output, cmd.force, io.cwd);
  const cacert = cmd.cacert ? await readCaFile(resolve(io.cwd, cmd.cacert), cmd.cacertFrom ?? '--cacert') : undefined;
  if (cmd.accessUser) return { gateway: new AccessUserAccess(cmd.accessUser, cmd, cacert, io, signal, say), cacert };
  if (cmd.token) return { gateway: new TokenAccess(cmd.token, cmd, cacert, io.cwd), cacert };
  const kube: KubeModule = await import('./kube.ts');
  const kc = kube.loadKubeConfig(cmd, io.env);
  const api = new kube.VeleroApi(kc, cmd.namespace, cmd.connectTimeoutMs);
  return { cluster: { kube, api, server: kube.serverOf(kc) }, gateway: new KubeGatewayAccess(kube, kc, api, cmd, cacert, signal), cacert };
}

/** The --timeout failure: explained once, with whatever save() added to it. */
class TimeoutExceeded extends CliError {}

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
    if (!this.#limit.signal.aborted || err instanceof TimeoutExceeded) return err;
    return new TimeoutExceeded(EXIT.unreachable, `the transfer did not finish within --timeout ${this.#ms / 1000}s: raise --timeout (0 means no limit)`);
  }
}

async function download(cmd: Command, io: CliIo, signal: AbortSignal, say: (msg: string) => void): Promise<void> {
  const prepared = await prepare(cmd, io, signal, say);
  const { gateway, cacert } = prepared;
  // Fail before creating anything when the download server cannot be used at all.
  if (cmd.gateway.forced) await gateway.authorization();

  // Where the command was pointed, and the artifact's route: the same on every run, whatever URLs the DownloadRequest brings.
  const base = cmd.gateway.baseUrl;
  const partial = await partialFor(cmd, io, { server: base ? serverIdentity(base) : serverIdentity(new URL(clusterOf(prepared).server)), route: `/v1/namespaces/${cmd.namespace}/${cmd.owner}/${cmd.name}/${cmd.artifact}` }, say);
  const clock = new TransferClock(cmd.timeoutMs, signal);
  let drName: string | undefined;
  try {
    const fetchOpts: FetchOptions = { signal: clock.signal, timeoutMs: cmd.connectTimeoutMs, ...(io.lookup && { lookup: io.lookup }) };
    const failures: string[] = [];
    let untrusted: UntrustedCertificateError | undefined;

    const tryOpen = async (src: Source): Promise<IncomingMessage | undefined> => {
      clock.start();
      try {
        return await openSource(src, fetchOpts, partial?.resume);
      } catch (err) {
        if (err instanceof HttpStatusError) throw statusToError(err, src, cmd, gateway);
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
      headers: { Authorization: await gateway.authorization() },
      trust: await gateway.trust(),
    });

    let opened: { src: Source; res: IncomingMessage } | undefined;
    const gatewayUrls: URL[] = [];
    if (cmd.gateway.baseUrl) {
      const base = cmd.gateway.baseUrl;
      gatewayUrls.push(new URL(`${base.pathname.replace(/\/+$/, '')}/v1/namespaces/${cmd.namespace}/${cmd.owner}/${cmd.name}/${cmd.artifact}`, base));
    } else {
      const { kube, api } = clusterOf(prepared);
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
        const { kube, api } = clusterOf(prepared);
        const port = (await api.servicePort(signal)) ?? kube.DEFAULT_GATEWAY_PORT;
        const local = new URL(`https://${DEFAULT_SERVICE_NAME}.${cmd.namespace}.svc:${port}${url.pathname}`);
        if (local.origin !== url.origin) {
          gatewayUrls.push(local);
          say(`${failures.at(-1)!}; trying the cluster-local name ${local.origin}`);
        }
      }
    }

    if (!opened) {
      const trustAdvice = untrusted ? `; ${gateway.untrustedAdvice(untrusted)}` : ': check that the download server is running and reachable from here';
      throw new CliError(EXIT.unreachable, `cannot download the ${singular(cmd)} "${cmd.name}" ${cmd.artifact}: ${failures.join('; ')}${trustAdvice}`);
    }
    await save(cmd, io, opened.src, opened.res, fetchOpts, say, { what: `${singular(cmd)} "${cmd.name}" ${cmd.artifact}`, access: gateway, clock, ...(partial && { partial }) });
  } catch (err) {
    if (signal.aborted) throw err;
    throw clock.explain(err);
  } finally {
    clock.stop();
    if (drName) await clusterOf(prepared).api.deleteDownloadRequest(drName);
  }
}

interface SaveOptions {
  /** For the closing message: what was saved. */
  what: string;
  /** Checks the bytes on their way to the output; its error fails the transfer (nothing saved). */
  verify?: Transform;
  /** How the download server was signed in to, for the words of a refusal. */
  access: GatewayAccess;
  /** The --timeout clock, whose failure message the kept partial file's note joins. */
  clock: TransferClock;
  /** For a file output: where the bytes collect until complete, and what an earlier run left there. */
  partial?: PartialDownload;
}

/** What an earlier run of the same command left for a file output (stdout cannot be continued). */
async function partialFor(cmd: Command, io: CliIo, source: SourceIdentity, say: (msg: string) => void): Promise<PartialDownload | undefined> {
  if (cmd.output.kind !== 'file') return undefined;
  return PartialDownload.find(resolve(io.cwd, cmd.output.path), source, say);
}

/**
 * Streams the body into the output. A file output gets the raw bytes in its partial file first,
 * continuing an earlier run's when `res` is the 206 that asked for the rest; a break or an
 * interruption keeps them for the next run; once complete, they are gunzipped or checked as the
 * artifact needs and the file takes its name.
 */
async function save(cmd: Command, io: CliIo, src: Source, res: IncomingMessage, fetchOpts: FetchOptions, say: (msg: string) => void, opts: SaveOptions): Promise<void> {
  const { partial } = opts;
  const resumed = partial?.resume && res.statusCode === 206 ? partial.resume : undefined;
  if (partial?.resume && !resumed) say(`${src.label} sent the whole ${opts.what} again instead of the rest: it changed since ${partial.path} was written; starting over`);
  if (resumed) say(`resuming ${partial!.path} at byte ${resumed.offset} of ${resumed.total}`);
  const info = resumed ? { ...resumed, ranges: true } : describeBody(res);
  const bar = progressFor(io.stderr, info.total);
  const stats: TransferStats = { received: 0, total: undefined, resumes: 0 };
  const transforms = (): Transform[] => [...(cmd.gunzip ? [createGunzip()] : []), ...(opts.verify ? [opts.verify] : [])];
  let sink: Writable;
  let output: Output | undefined;
  try {
    if (partial) sink = (await partial.begin(resumed?.offset ?? 0, info.ranges ? info.validator : undefined, info.total)).stream;
    else sink = (output = await openOutput(cmd.output, cmd.force, io.cwd, io.stdout)).stream;
  } catch (err) {
    res.destroy();
    throw err;
  }
  const body = Readable.from(bodyChunks(src, res, fetchOpts, stats, bar, (m) => {
    if (bar) io.stderr.write('\n');
    say(m);
  }, resumed));
  try {
    await pipeline([body, ...(partial ? [] : transforms()), sink], { signal: fetchOpts.signal });
    bar?.finish();
    if (partial) await finishPartial(partial, cmd, io, transforms(), fetchOpts.signal);
    else await output!.commit();
  } catch (err) {
    bar?.finish();
    await output?.discard();
    // Bytes that are a true prefix of the object are worth keeping; those of a changed or missing one are not.
    const worthKeeping = !(err instanceof CliError && err.exitCode === EXIT.notFound) && !(err instanceof HttpStatusError && err.status === 404);
    const kept = partial && worthKeeping ? await partial.keep() : 0;
    if (partial && !kept) await partial.remove();
    const note = `the partial download is kept in ${partial?.path ?? ''} (${kept} of ${info.total ?? 0} bytes): run the same command again to resume it`;
    if (io.signal?.aborted) {
      const stdout = 'a download to stdout cannot be resumed: run the command again (with -o FILE, an interrupted download is kept and resumes)';
      throw new CliError(EXIT.interrupted, `interrupted: ${kept ? note : cmd.output.kind === 'stdout' ? stdout : 'nothing was saved'}`);
    }
    const failure = opts.clock.explain(transferError(err, cmd, src, stats, opts));
    if (kept && failure instanceof CliError) failure.message += `; ${note}`;
    throw failure;
  }
  if (cmd.output.kind === 'file') {
    io.stdout.write(`${opts.what} saved to ${resolve(io.cwd, cmd.output.path)}\n`);
  }
}

/** The partial file, complete: gunzipped or checked into the output, or renamed to it; then gone. */
async function finishPartial(partial: PartialDownload, cmd: Command, io: CliIo, transforms: Transform[], signal: AbortSignal): Promise<void> {
  const shown = cmd.output.kind === 'file' ? cmd.output.path : '';
  try {
    if (!transforms.length) return await placeFile(partial.path, resolve(io.cwd, shown), cmd.force, shown);
    const output = await openOutput(cmd.output, cmd.force, io.cwd, io.stdout);
    try {
      await pipeline([await partial.read(), ...transforms, output.stream], { signal });
      await output.commit();
    } catch (err) {
      await output.discard();
      throw err;
    }
  } finally {
    await partial.remove();
  }
}

/** A failed transfer as the command's error. */
function transferError(err: unknown, cmd: Command, src: Source, stats: TransferStats, opts: SaveOptions): unknown {
  if (err instanceof CliError || opts.clock.signal.aborted) return err;
  if (err instanceof HttpStatusError) return statusToError(err, src, cmd, opts.access);
  const code = (err as NodeJS.ErrnoException).code;
  if (typeof code === 'string' && code.startsWith('Z_')) {
    return new CliError(EXIT.notFound, `the ${cmd.artifact} of ${singular(cmd)} "${cmd.name}" is not valid gzip (${(err as Error).message}): the stored file may be damaged`);
  }
  if (code === 'EPIPE' && cmd.output.kind === 'stdout') return new CliError(EXIT.ok, '');
  if (networkFailure(err)) {
    return new CliError(EXIT.unreachable, `the transfer from ${src.label} failed after ${stats.received} bytes: ${describeFailure(err)}`);
  }
  return new CliError(EXIT.notFound, `writing ${cmd.output.kind === 'file' ? cmd.output.path : 'stdout'} failed: ${describeFailure(err)}`);
}

/**
 * The download server's base URL when --velero-server-url gives none: the URL it records on a
 * DownloadRequest for the backup (its results, the smallest artifact), less the DownloadRequest's
 * own path. That URL is trusted as the stock flow trusts it (the token then goes only to a server
 * whose certificate the gateway's published CA, a pin or the system roots vouch for, over HTTPS).
 */
async function discoverGateway(cmd: Command, { kube, api }: Cluster, signal: AbortSignal): Promise<URL> {
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

/** The download server alone, signed in to and trusted, for the commands that only it can answer. */
interface GatewaySession {
  gateway: GatewayAccess;
  base: URL;
  clock: TransferClock;
  fetchOpts: FetchOptions;
  source: (url: URL, method?: 'HEAD') => Source;
}

/** The credentials first (nothing is created when they cannot be had), then the base URL given or discovered, then trust. */
async function gatewaySession(cmd: Command, io: CliIo, signal: AbortSignal, say: (msg: string) => void): Promise<GatewaySession> {
  const prepared = await prepare(cmd, io, signal, say);
  const { gateway } = prepared;
  const authorization = await gateway.authorization();
  const base = cmd.gateway.baseUrl ?? (await discoverGateway(cmd, clusterOf(prepared), signal));
  const trust = await gateway.trust();
  const clock = new TransferClock(cmd.timeoutMs, signal);
  clock.start();
  const fetchOpts: FetchOptions = { signal: clock.signal, timeoutMs: cmd.connectTimeoutMs, ...(io.lookup && { lookup: io.lookup }) };
  const source = (url: URL, method?: 'HEAD'): Source => ({
    kind: 'gateway',
    label: `the download server at ${url.origin}`,
    url,
    headers: { Authorization: authorization },
    trust,
    ...(method && { method }),
  });
  return { gateway, base, clock, fetchOpts, source };
}

/** A failure talking to the download server alone, as the command's error. */
function gatewayFailure(err: unknown, s: GatewaySession, src: Source, cmd: Command, signal: AbortSignal): unknown {
  if (signal.aborted || err instanceof CliError) return err;
  if (err instanceof HttpStatusError) return statusToError(err, src, cmd, s.gateway);
  if (s.clock.signal.aborted) return s.clock.explain(err);
  if ((err as NodeJS.ErrnoException).code === 'EPIPE') return new CliError(EXIT.ok, '');
  if (err instanceof UntrustedCertificateError) return new CliError(EXIT.unreachable, `cannot use ${src.label}: ${s.gateway.untrustedAdvice(err)}`);
  if (networkFailure(err)) return new CliError(EXIT.unreachable, `${src.label}: ${describeFailure(err)}: check that the download server is running and reachable from here`);
  return err;
}

/**
 * `backup describe`: a HEAD request per artifact (at once: each is one small answer), through the
 * download server given or discovered, so the user sees what can be downloaded and how large it is.
 * A 401 is the command's error; a 403, 404 or other refusal is that artifact's line.
 */
async function describe(cmd: Command, io: CliIo, signal: AbortSignal, say: (msg: string) => void): Promise<void> {
  const s = await gatewaySession(cmd, io, signal, say);
  const url = (artifact: string): URL => new URL(`${s.base.pathname.replace(/\/+$/, '')}/v1/namespaces/${cmd.namespace}/backups/${cmd.name}/${artifact}`, s.base);
  const first = s.source(url(DESCRIBED_ARTIFACTS[0]!), 'HEAD');
  try {
    const states = await Promise.all(
      DESCRIBED_ARTIFACTS.map(async (artifact): Promise<ArtifactState> => {
        const command = downloadCommand(cmd.name, artifact);
        try {
          const res = await openSource(s.source(url(artifact), 'HEAD'), s.fetchOpts);
          res.destroy();
          const size = sizeOf(res);
          return { artifact, status: 'stored', ...(size !== undefined && { size }), command };
        } catch (err) {
          if (!(err instanceof HttpStatusError) || err.status === 401) throw err;
          const status = err.status === 404 ? 'absent' : err.status === 403 ? 'forbidden' : 'error';
          return { artifact, status, ...(status === 'error' && { httpStatus: err.status }), command };
        }
      }),
    );
    const out = cmd.describe!.json ? describeJson(cmd.namespace, cmd.name, states) : describeTable(cmd.namespace, cmd.name, states);
    await new Promise<void>((ok, fail) => void io.stdout.write(out, (err) => (err ? fail(err) : ok())));
    if (states.every((st) => st.status === 'absent')) {
      throw new CliError(EXIT.notFound, `no artifact of backup "${cmd.name}" is stored: does it exist in namespace "${cmd.namespace}"? (pass -n NAMESPACE if it lives elsewhere)`);
    }
  } catch (err) {
    throw gatewayFailure(err, s, first, cmd, signal);
  } finally {
    s.clock.stop();
  }
}

/**
 * `backup volumes|ls|files|archive`: volume data, from the download server only (no DownloadRequest
 * target exists for it). The token goes only to the base URL given or discovered, over verified HTTPS.
 */
async function volumeData(cmd: Command, io: CliIo, signal: AbortSignal, say: (msg: string) => void): Promise<void> {
  const v = cmd.volume!;
  const session = await gatewaySession(cmd, io, signal, say);
  const { gateway, base, clock, fetchOpts, source } = session;
  const url = (continueToken?: string): URL => volumeUrl(base, cmd.namespace, cmd.name, v, continueToken);
  const src = source(url());
  const open = (u: URL, resume?: PartialDownload['resume']): Promise<IncomingMessage> => openSource(source(u), fetchOpts, resume);
  const print = (s: string): Promise<void> => new Promise((ok, fail) => void io.stdout.write(s, (err) => (err ? fail(err) : ok())));
  const inVolume = `"${printable(v.volume)}:/${printable(v.path.join('/'))}"`;
  try {
    if (v.action === 'volumes') {
      const list = await readJson(await open(src.url), 'the volume list');
      await print(v.json ? `${safeJson(list, 2)}\n` : volumesTable(list));
    } else if (v.action === 'ls') {
      await listDirectory((t) => open(url(t)), v.json, print);
    } else {
      const partial = await partialFor(cmd, io, { server: serverIdentity(base), route: `${src.url.pathname.slice(base.pathname.replace(/\/+$/, '').length)}${src.url.search}` }, say);
      const res = await open(src.url, partial?.resume);
      if (isJson(res)) {
        const kind = ((await readJson(res, 'the answer')) as { kind?: unknown } | null)?.kind;
        const what = kind === 'Directory' ? 'a directory' : kind === 'Symlink' ? 'a symbolic link' : 'not a file';
        throw new CliError(EXIT.notFound, `${inVolume} is ${what}: use backup ls to list it${kind === 'Directory' ? ', or backup archive to download it' : ''}`);
      }
      const archive = v.action === 'archive';
      await save(cmd, io, src, res, fetchOpts, say, {
        what: archive ? `the archive of ${inVolume}` : inVolume,
        ...(archive && { verify: wholeTarCheck(v.gzip, `the archive of ${inVolume}`) }),
        access: gateway,
        clock,
        ...(partial && { partial }),
      });
    }
  } catch (err) {
    throw gatewayFailure(err, session, src, cmd, signal);
  } finally {
    clock.stop();
  }
}
