/**
 * Support for the `velero-download` tests: running the real command as a process, playing the two
 * controllers that answer a DownloadRequest (Velero's, which sets status.downloadURL, and the download
 * server's, which sets the download-server.velero.io/url annotation) on the Kubernetes API test
 * double, a tiny object store answering pre-signed URLs, and an HTTPS proxy in front of the gateway
 * that breaks or stalls transfers on purpose.
 */
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { createServer as createHttpServer } from 'node:http';
import type { IncomingHttpHeaders, Server as HttpServer, ServerResponse } from 'node:http';
import { createServer as createHttpsServer, request as httpsRequest } from 'node:https';
import type { Server as HttpsServer } from 'node:https';
import type { AddressInfo, LookupFunction } from 'node:net';
import { PassThrough } from 'node:stream';
import { X509Certificate } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect as tlsConnect } from 'node:tls';
import { fileURLToPath } from 'node:url';
import { run } from '../../src/cli/run.ts';
import type { CliIo } from '../../src/cli/run.ts';
import { gzipSync } from 'node:zlib';
import { serviceAccount, user } from './kube-apiserver/index.ts';
import type { KubeApiServer, KubeObject } from './kube-apiserver/index.ts';
import { resourceForKind } from './kube-apiserver/resources.ts';
import { BACKUP, NS, kubeFixture } from './kube-fixture.ts';
import type { KubeFixture } from './kube-fixture.ts';
import { startGateway } from './processes.ts';
import type { GatewayProcess } from './processes.ts';
import { createTestPki } from './test-ca.ts';
import type { TestPki } from './test-ca.ts';

const MAIN = fileURLToPath(new URL('../../src/cli/main.ts', import.meta.url));

export interface CliResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: Buffer;
  stderr: string;
}

export interface CliRunOptions {
  cwd?: string;
  /** Added to a copy of this process's environment without KUBECONFIG and KUBERNETES_SERVICE_HOST. */
  env?: Record<string, string>;
}

function cliEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env = { ...process.env };
  // Never the machine's own cluster.
  delete env.KUBECONFIG;
  delete env.KUBERNETES_SERVICE_HOST;
  delete env.KUBERNETES_SERVICE_PORT;
  // Nor the developer's own access-user password.
  delete env.VELERO_DOWNLOAD_PASSWORD_FILE;
  delete env.VELERO_DOWNLOAD_TOKEN;
  delete env.VELERO_NAMESPACE;
  return { ...env, ...extra };
}

/** A gateway stand-in: HTTPS with the test PKI's certificate, recording every request's headers. */
export interface Recorder {
  server: HttpsServer;
  url: string;
  requests: { method: string; path: string; headers: IncomingHttpHeaders }[];
  /** How each request is answered; default: 200 with `body`. */
  answer: (path: string, res: ServerResponse) => void;
}

export async function startRecorder(pki: TestPki, body: Buffer): Promise<Recorder> {
  const r: Recorder = {
    server: createHttpsServer({ cert: pki.cert, key: pki.key }),
    url: '',
    requests: [],
    answer: (_p, res) => void res.writeHead(200, { 'Content-Length': body.length }).end(body),
  };
  r.server.on('request', (req, res) => {
    r.requests.push({ method: req.method ?? '', path: req.url ?? '', headers: req.headers });
    r.answer(req.url ?? '', res);
  });
  await new Promise<void>((ok) => r.server.listen(0, '127.0.0.1', ok));
  r.url = `https://127.0.0.1:${(r.server.address() as AddressInfo).port}`;
  return r;
}

/** Starts `velero-download args...` (src/cli/main.ts on this Node) and returns the live process. */
export function startCli(args: string[], opts: CliRunOptions = {}): { proc: ChildProcess; done: Promise<CliResult> } {
  const proc = spawn(process.execPath, [MAIN, ...args], { cwd: opts.cwd, env: cliEnv(opts.env), stdio: ['ignore', 'pipe', 'pipe'] });
  const out: Buffer[] = [];
  let err = '';
  proc.stdout.on('data', (c: Buffer) => out.push(c));
  proc.stderr.on('data', (c: Buffer) => (err += c.toString()));
  const done = once(proc, 'close').then(([code, signal]) => ({
    code: code as number | null,
    signal: signal as NodeJS.Signals | null,
    stdout: Buffer.concat(out),
    stderr: err,
  }));
  return { proc, done };
}

/** Runs `velero-download args...` to its end. */
export function runCli(args: string[], opts: CliRunOptions = {}): Promise<CliResult> {
  return startCli(args, opts).done;
}

export interface InProcessOptions extends CliRunOptions {
  /** Name resolution for the command's downloads. */
  lookup?: LookupFunction;
  signal?: AbortSignal;
  /** Make stderr look like an 80-column terminal. */
  tty?: boolean;
  /** Standard input and the terminal a password prompt uses (none unless given). */
  stdin?: CliIo['stdin'];
  openTerminal?: CliIo['openTerminal'];
}

/**
 * Runs the command's `run()` in this process (same code as the process minus main.ts's signal and
 * exit wiring): for matrices of cases, where a process per case would cost a second of start-up each.
 */
export async function runInProcess(args: string[], opts: InProcessOptions = {}): Promise<CliResult> {
  const out: Buffer[] = [];
  let err = '';
  const stdout = new PassThrough();
  stdout.on('data', (c: Buffer) => out.push(c));
  const stderr = Object.assign(new PassThrough(), { isTTY: opts.tty ?? false, columns: 80 });
  stderr.on('data', (c: Buffer) => (err += c.toString()));
  const code = await run(args, {
    stdout,
    stderr,
    env: cliEnv(opts.env),
    cwd: opts.cwd ?? process.cwd(),
    ...(opts.lookup && { lookup: opts.lookup }),
    ...(opts.signal && { signal: opts.signal }),
    ...(opts.stdin && { stdin: opts.stdin }),
    ...(opts.openTerminal && { openTerminal: opts.openTerminal }),
  });
  await new Promise((r) => setImmediate(r));
  return { code, signal: null, stdout: Buffer.concat(out), stderr: err };
}

/** What the controllers write on a new DownloadRequest (each field left out is not written). */
export interface DownloadRequestAnswer {
  /** Velero's controller: status.downloadURL (and phase Processed). */
  downloadURL?: string;
  /** The download server's controller: annotation download-server.velero.io/url. */
  gatewayURL?: string;
  /** Written as status.veleroServerURL instead of the annotation. */
  veleroServerURL?: string;
}

/**
 * Plays Velero's and the download server's controllers: every DownloadRequest created in `namespace`
 * gets what `answer` returns, as the real controllers would write it (phase, expiration, annotation).
 * Returns the function that stops watching.
 */
export function answerDownloadRequests(api: KubeApiServer, namespace: string, answer: (dr: KubeObject) => DownloadRequestAnswer): () => void {
  const rt = resourceForKind('velero.io/v1', 'DownloadRequest');
  return api.store.watch(rt, namespace, () => true, api.store.resourceVersion, (e) => {
    if (e.type !== 'ADDED') return;
    const dr = e.object as KubeObject;
    const a = answer(dr);
    // After the create has been answered, as a controller acting on a watch event would.
    setImmediate(() => {
      const current = api.get('velero.io/v1', 'DownloadRequest', dr.metadata.name!, namespace);
      if (!current) return;
      const annotations = { ...current.metadata.annotations, ...(a.gatewayURL && { 'download-server.velero.io/url': a.gatewayURL }) };
      const status = {
        ...(current.status as Record<string, unknown> | undefined),
        ...(a.downloadURL && { phase: 'Processed', downloadURL: a.downloadURL, expiration: new Date(Date.now() + 600_000).toISOString() }),
        ...(a.veleroServerURL && { veleroServerURL: a.veleroServerURL }),
      };
      api.put({ ...current, metadata: { ...current.metadata, annotations }, status });
    });
  });
}

/** A started loopback server and what it saw. */
export interface TestServer {
  url: string;
  port: number;
  requests: { path: string; headers: IncomingHttpHeaders }[];
  close(): Promise<void>;
}

/** A loopback port nothing listens on (bound, then released). */
export async function closedPort(): Promise<number> {
  const server = createHttpServer();
  const port = await listen(server);
  await closeServer(server);
  return port;
}

async function listen(server: HttpServer | HttpsServer): Promise<number> {
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return (server.address() as AddressInfo).port;
}

async function closeServer(server: HttpServer | HttpsServer): Promise<void> {
  server.closeAllConnections();
  await new Promise<void>((r) => server.close(() => r()));
}

/** An object store answering pre-signed URLs over plain HTTP: `files` by path, 404 otherwise. */
export async function startStore(files: Record<string, Buffer>): Promise<TestServer> {
  const requests: TestServer['requests'] = [];
  const server = createHttpServer((req, res) => {
    const path = new URL(req.url ?? '/', 'http://x').pathname;
    requests.push({ path: req.url ?? '', headers: req.headers });
    const body = files[path];
    if (!body) {
      res.writeHead(404, { 'Content-Type': 'application/xml' }).end('<Error><Code>NoSuchKey</Code></Error>');
      return;
    }
    res.writeHead(200, { 'Content-Length': body.length, ETag: '"store-etag"', 'Accept-Ranges': 'bytes' }).end(body);
  });
  const port = await listen(server);
  return { url: `http://127.0.0.1:${port}`, port, requests, close: () => closeServer(server) };
}

export interface ProxyOptions {
  /** The gateway's base URL and the CA (its certificate) to trust it with. */
  upstream: string;
  upstreamCa: string;
  /** The proxy's own certificate. */
  pki: TestPki;
}

/** What the proxy does to the next responses. */
export interface ProxyBehaviour {
  /** The i-th response from now is closed after cuts[i] body bytes; later ones pass whole. */
  cuts?: number[];
  /** Stop sending (and keep the connection open) after this many body bytes. */
  stallAfter?: number;
}

export interface CuttingProxy extends TestServer {
  /** Sets what happens to the next responses (and restarts the response count). */
  set(behaviour: ProxyBehaviour): void;
  /** Body bytes the proxy has sent to clients so far. */
  readonly sent: number;
}

/**
 * An HTTPS reverse proxy in front of the gateway that forwards every request (headers included, so
 * Range and If-Range reach the gateway) and breaks responses as told, the way a load balancer timing
 * out or a flaky network would: the connection closes short of Content-Length, or goes silent.
 */
export async function startCuttingProxy(opts: ProxyOptions): Promise<CuttingProxy> {
  const requests: TestServer['requests'] = [];
  const upstream = new URL(opts.upstream);
  let behaviour: ProxyBehaviour = {};
  let responses = 0;
  let sentTotal = 0;
  const server = createHttpsServer({ cert: opts.pki.cert, key: opts.pki.key }, (req, res) => {
    requests.push({ path: req.url ?? '', headers: req.headers });
    const headers = { ...req.headers, host: upstream.host };
    const up = httpsRequest(
      { host: upstream.hostname, port: upstream.port, path: req.url, method: req.method, headers, ca: opts.upstreamCa, servername: 'localhost' },
      (upRes) => {
        res.writeHead(upRes.statusCode ?? 502, upRes.headers);
        const cut = behaviour.cuts?.[responses++];
        const limit = cut ?? behaviour.stallAfter;
        let sent = 0;
        // A cut: what was written reaches the client, then the connection ends short of Content-Length.
        const cutNow = (): void => void (cut !== undefined && res.socket?.end());
        if (limit === 0) {
          upRes.destroy();
          res.flushHeaders();
          res.write('', cutNow);
          return;
        }
        upRes.on('data', (chunk: Buffer) => {
          if (limit !== undefined && sent >= limit) return;
          const part = limit === undefined ? chunk : chunk.subarray(0, limit - sent);
          sent += part.length;
          sentTotal += part.length;
          if (limit !== undefined && sent >= limit) {
            upRes.destroy();
            res.write(part, cutNow);
          } else {
            res.write(part);
          }
        });
        upRes.on('end', () => res.end());
        upRes.on('error', () => {});
      },
    );
    up.on('error', () => res.destroy());
    up.end();
  });
  const port = await listen(server);
  return {
    url: `https://127.0.0.1:${port}`,
    port,
    requests,
    get sent() {
      return sentTotal;
    },
    set(b) {
      behaviour = b;
      responses = 0;
    },
    close: () => closeServer(server),
  };
}

/** A kubernetes-mode installation for the client's tests: the API test double, the real gateway, users. */
export interface CliFixture {
  fx: KubeFixture;
  api: KubeApiServer;
  gw: GatewayProcess;
  /** A scratch directory (kubeconfigs, outputs). */
  dir: string;
  /** What verifies the gateway's certificate (the CA in its Secret, PEM, and that as a file), and the SHA-256 fingerprint of the certificate it serves. */
  gatewayCert: string;
  gatewayCertFile: string;
  fingerprint: string;
  /**
   * Kubeconfig files: alice may read the CA ConfigMap (not the certificate Secret); frank may read the
   * certificate Secret only (what an older gateway offered); dave and bob may read neither; bob may not
   * use DownloadRequests at the gateway.
   */
  kubeconfigs: Record<'alice' | 'bob' | 'dave' | 'frank' | 'badToken', string>;
  /** The backup log's text (stored gzip'd) and the backup results JSON (stored gzip'd). */
  logText: string;
  resultsJson: string;
  /** What the controllers write on each new DownloadRequest; tests replace it. Default: the gateway URL only. */
  answer: (dr: KubeObject) => DownloadRequestAnswer;
  /** The download server's URL for a DownloadRequest, at `base` (default: the gateway). */
  drUrl(name: string, base?: string): string;
  /** Runs the command with `--kubeconfig` of `user` (a key of kubeconfigs, or a file) first; every output is kept for the no-token check. */
  cli(user: string, args: string[], opts?: CliRunOptions): Promise<CliResult>;
  /** The same, in this process (see runInProcess). */
  run(user: string, args: string[], opts?: InProcessOptions): Promise<CliResult>;
  /** Every stdout and stderr so far. */
  outputs: string[];
  /** DownloadRequests the client created and has not deleted. */
  leftoverDownloadRequests(): string[];
  /** Every bearer token of the fixture. */
  secrets(): string[];
  close(): Promise<void>;
}

/**
 * A cutting proxy in front of the fixture's gateway, with its own CA written to the fixture's
 * directory (`caFile`): what the client must be told to trust to go through it.
 */
export async function startGatewayProxy(f: CliFixture): Promise<{ proxy: CuttingProxy; caFile: string }> {
  const pki = await createTestPki('proxy CA');
  const caFile = join(f.dir, 'proxy-ca.crt');
  await writeFile(caFile, pki.caCert);
  return { proxy: await startCuttingProxy({ upstream: f.gw.url, upstreamCa: f.gatewayCert, pki }), caFile };
}

/**
 * Starts the API test double with callers' RBAC enforced, grants the users what the client needs,
 * writes gzip'd artifacts and starts the real gateway, which keeps its certificate in the Secret
 * `velero-download-server-certs` and publishes ca.crt and the fingerprint annotation in the ConfigMap
 * `velero-download-server-ca` (the fixture writes the Secret as the design describes it when the
 * gateway did not).
 */
export async function cliFixture(): Promise<CliFixture> {
  const fx = await kubeFixture({ authorizeCallers: true, downloadRequestCrd: { veleroServerURL: true } });
  const api = fx.api;
  const dir = await mkdtemp(join(tmpdir(), 'vds-cli-'));
  const logText = Array.from({ length: 2000 }, (_, i) => `time="2026-01-01T00:00:${String(i % 60).padStart(2, '0')}Z" level=info msg="Backed up item ${i}" backup=velero/nightly\n`).join('');
  const resultsJson = JSON.stringify({ errors: {}, warnings: { namespaces: { default: ['a warning'] } } });
  const backupDir = join(fx.fsRoot, 'bsl-bucket', 'cluster-a', 'backups', BACKUP);
  await writeFile(join(backupDir, `${BACKUP}-logs.gz`), gzipSync(logText));
  await writeFile(join(backupDir, `${BACKUP}-results.gz`), gzipSync(resultsJson));

  const gatewaySa = serviceAccount(NS, 'velero-download-server');
  api.rbac.clusterRoleBinding('vds-test-gateway', 'cluster-admin', [gatewaySa]);
  const useDownloadRequests = { apiGroups: ['velero.io'], resources: ['downloadrequests'], verbs: ['create', 'get', 'delete'] };
  const readVelero = { apiGroups: ['velero.io'], resources: ['backups', 'restores'], verbs: ['get'] };
  // The README's trust step: get on the CA ConfigMap, nothing on the Secret.
  api.rbac.grant(user('alice'), [useDownloadRequests, readVelero, { apiGroups: [''], resources: ['configmaps'], resourceNames: ['velero-download-server-ca'], verbs: ['get'] }, { apiGroups: [''], resources: ['services'], verbs: ['get'] }], NS);
  api.rbac.grant([user('dave'), user('bob')], [useDownloadRequests, readVelero], NS);
  const frankToken = api.tokens.user('frank', ['backup-readers', 'system:authenticated']);
  api.rbac.grant(user('frank'), [useDownloadRequests, readVelero, { apiGroups: [''], resources: ['secrets'], resourceNames: ['velero-download-server-certs'], verbs: ['get'] }], NS);

  // The gateway keeps its certificate in the Secret velero-download-server-certs (its CA as ca.crt,
  // the fingerprint as an annotation); 127.0.0.1 must be among the names for the CA path to verify.
  const gw = await startGateway(fx.args('--tls-extra-sans', '127.0.0.1,localhost'));
  const served = await servedCertificate(gw.url);
  const fingerprint = new X509Certificate(served).fingerprint256.replaceAll(':', '').toLowerCase();
  const secret = api.get('v1', 'Secret', 'velero-download-server-certs', NS);
  const ca = (secret?.data as Record<string, string> | undefined)?.['ca.crt'];
  const gatewayCert = ca ? Buffer.from(ca, 'base64').toString('utf8') : served;
  if (!secret) {
    // A gateway that does not publish its certificate: the Secret as the design describes it.
    api.put({
      apiVersion: 'v1',
      kind: 'Secret',
      type: 'kubernetes.io/tls',
      metadata: { name: 'velero-download-server-certs', namespace: NS, annotations: { 'download-server.velero.io/tls-fingerprint': fingerprint } },
      data: { 'ca.crt': Buffer.from(served).toString('base64') },
    });
  }
  const gatewayCertFile = join(dir, 'gateway-ca.crt');
  await writeFile(gatewayCertFile, gatewayCert);

  const kubeconfigs = {
    alice: await api.writeKubeconfig(join(dir, 'alice.kubeconfig'), api.kubeconfig(fx.tokens.alice)),
    bob: await api.writeKubeconfig(join(dir, 'bob.kubeconfig'), api.kubeconfig(fx.tokens.bob)),
    dave: await api.writeKubeconfig(join(dir, 'dave.kubeconfig'), api.kubeconfig(fx.tokens.dave)),
    frank: await api.writeKubeconfig(join(dir, 'frank.kubeconfig'), api.kubeconfig(frankToken)),
    badToken: await api.writeKubeconfig(join(dir, 'bad.kubeconfig'), api.kubeconfig('not-a-valid-token')),
  };
  const fixture: CliFixture = {
    fx,
    api,
    gw,
    dir,
    gatewayCert,
    gatewayCertFile,
    fingerprint,
    kubeconfigs,
    logText,
    resultsJson,
    answer: (dr) => ({ gatewayURL: fixture.drUrl(dr.metadata.name!) }),
    drUrl: (name, base = gw.url) => `${base}/v1/namespaces/${NS}/downloadrequests/${name}`,
    outputs: [],
    async cli(who, args, opts) {
      const kubeconfig = (kubeconfigs as Record<string, string>)[who] ?? who;
      const r = await runCli(['--kubeconfig', kubeconfig, ...args], opts);
      fixture.outputs.push(r.stdout.toString('latin1'), r.stderr);
      return r;
    },
    async run(who, args, opts) {
      const kubeconfig = (kubeconfigs as Record<string, string>)[who] ?? who;
      const r = await runInProcess(['--kubeconfig', kubeconfig, ...args], opts);
      fixture.outputs.push(r.stdout.toString('latin1'), r.stderr);
      return r;
    },
    leftoverDownloadRequests: () =>
      api
        .list('velero.io/v1', 'DownloadRequest', NS)
        .map((o) => o.metadata.name!)
        .filter((n) => n !== 'dr-log' && n !== 'dr-restore-log'),
    secrets: () => [...Object.values(fx.tokens), frankToken, api.adminToken],
    async close() {
      stopAnswering();
      await gw.stop();
      await fx.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
  const stopAnswering = answerDownloadRequests(api, NS, (dr) => fixture.answer(dr));
  return fixture;
}

/** The certificate a TLS server presents, as PEM (whatever its chain or names). */
export async function servedCertificate(url: string): Promise<string> {
  const u = new URL(url);
  const socket = tlsConnect({ host: u.hostname, port: Number(u.port), rejectUnauthorized: false });
  await once(socket, 'secureConnect');
  const raw = socket.getPeerCertificate().raw;
  socket.destroy();
  return new X509Certificate(raw).toString();
}
