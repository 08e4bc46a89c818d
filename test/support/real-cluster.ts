/**
 * A real Kubernetes API server for the tests: etcd and kube-apiserver, built from the Go module proxy
 * by `npm run tools` (scripts/tools.sh) into a cache folder outside the repository, started on
 * loopback ports chosen at run time with a static token file for test users, the service-account
 * issuer (TokenRequest tokens with audiences), the RBAC authorizer and the default admission plugins
 * (mutating webhooks, ValidatingAdmissionPolicy). Velero's CRDs come from test/fixtures/velero-crds.
 * There is no kubelet, kube-proxy or controller-manager: Services do not route, namespaces are not
 * finalized, service accounts get no token Secrets (TokenRequest works).
 *
 * Without the tools (no Go on this machine) the tests that need them are skipped with one line saying
 * how to get them; with `CI=true` a missing tool is a failure, never a skip.
 *
 * ```ts
 * describe('…', { skip: missingTools('kube-apiserver', 'etcd') }, () => {
 *   let k: RealCluster;
 *   before(async () => (k = await startRealCluster()));
 *   after(() => k?.close());
 *   test('…', async () => { const sa = await k.serviceAccountToken('velero', 'gw'); … });
 * });
 * ```
 */
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { createPublicKey, randomBytes } from 'node:crypto';
import { accessSync, constants, readdirSync, readFileSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { request } from 'node:https';
import { createServer } from 'node:net';
import type { AddressInfo } from 'node:net';
import { homedir, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse, stringify } from 'yaml';
import { createTestPki } from './test-ca.ts';

/** Where `npm run tools` puts the binaries (VDS_TOOLS_DIR overrides, as for the script). */
export const TOOLS_BIN = join(process.env.VDS_TOOLS_DIR ?? join(homedir(), '.cache', 'velero-download-server', 'tools'), 'bin');

/** The tools the tests use: `npm run tools` builds them, and CI fails without them. */
export type Tool = 'kube-apiserver' | 'etcd' | 'helm' | 'kopia' | 'kopia-velero';

/** The path of a built tool, or undefined when it is not there. */
export function toolPath(name: Tool): string | undefined {
  const path = join(TOOLS_BIN, name);
  try {
    accessSync(path, constants.X_OK);
    return path;
  } catch {
    return undefined;
  }
}

/**
 * For `describe(name, { skip: missingTools(...) }, ...)`: false when every tool is there, else the
 * reason the tests are skipped. Under `CI=true` a missing tool throws instead: CI must run them.
 */
export function missingTools(...names: Tool[]): string | false {
  const missing = names.filter((n) => !toolPath(n));
  if (missing.length === 0) return false;
  return skipReasonOutsideCi(`${missing.join(', ')} not in ${TOOLS_BIN}: run \`npm run tools\` (needs Go; builds them from the Go module proxy)`);
}

/**
 * The one rule for a missing tool, whichever it is: `why` is returned as the skip reason (say how to
 * install the tool), except under `CI=true`, where it throws: CI must run every test.
 */
export function skipReasonOutsideCi(why: string): string {
  if (process.env.CI === 'true') throw new Error(`CI=true and ${why}`);
  return why;
}

const CRD_DIR = fileURLToPath(new URL('../fixtures/velero-crds/', import.meta.url));

/** Test users of the static token file: name → groups. */
export const USERS: Readonly<Record<string, readonly string[]>> = {
  alice: ['system:authenticated'],
  bob: ['system:authenticated'],
  carol: ['system:authenticated'],
  dave: ['backup-readers', 'system:authenticated'],
  // Velero's server, as the API server names its service account.
  'system:serviceaccount:velero:velero': ['system:serviceaccounts', 'system:serviceaccounts:velero', 'system:authenticated'],
};

export interface RestResult<T = unknown> {
  status: number;
  body: T;
}

export interface RestOptions {
  token?: string;
  contentType?: string;
  headers?: Record<string, string | string[]>;
}

/** One line of the API server's audit log (level Metadata: who, what, the answer, admission's annotations). */
export interface AuditEvent {
  stage: string;
  verb: string;
  requestURI: string;
  user: { username: string; groups?: string[] };
  objectRef?: { apiGroup?: string; resource?: string; subresource?: string; namespace?: string; name?: string };
  responseStatus?: { code?: number; message?: string; reason?: string };
  /** e.g. `mutation.webhook.admission.k8s.io/round_0_index_0`, `validation.policy.admission.k8s.io/validation_failure`. */
  annotations?: Record<string, string>;
}

/**
 * The audit policy of `audit: true`: every request at level Metadata (who, what, the answer and
 * admission's annotations, never bodies), but the API server's own loopback client and health probes.
 */
const AUDIT_POLICY = {
  apiVersion: 'audit.k8s.io/v1',
  kind: 'Policy',
  // ResponseStarted is kept: a watch is logged when it starts, not only when it ends.
  omitStages: ['RequestReceived'],
  rules: [
    { level: 'None', users: ['system:apiserver'] },
    { level: 'None', nonResourceURLs: ['/readyz', '/livez', '/healthz', '/version'] },
    { level: 'Metadata' },
  ],
};

export interface RealCluster {
  /** https://127.0.0.1:<port> */
  readonly url: string;
  /** The CA of the API server's serving certificate (PEM). */
  readonly caPem: string;
  readonly dir: string;
  /** Static tokens: `admin` (system:masters) and every name of USERS. */
  readonly tokens: Readonly<Record<string, string>>;
  /** `kubeconfig` for a token, written to a file in `dir`. */
  kubeconfig(token: string, name?: string): Promise<string>;
  /** One REST call (JSON in and out); `token` defaults to admin; `headers` adds more (e.g. `Impersonate-Group`, repeated as an array). */
  rest<T = Record<string, unknown>>(method: string, path: string, body?: unknown, opts?: RestOptions): Promise<RestResult<T>>;
  /** The audit events written so far (with `audit: true`), oldest first. */
  auditEvents(): Promise<AuditEvent[]>;
  /** Creates or updates objects with server-side apply (field manager `vds-tests`), as admin. */
  apply(...objects: object[]): Promise<void>;
  /** Creates a namespace if absent. */
  namespace(name: string): Promise<void>;
  /** A TokenRequest token of service account `ns/name` (created if absent), for `audiences` (default the API server's). */
  serviceAccountToken(ns: string, name: string, audiences?: string[]): Promise<string>;
  /** Stops the API server only (clients see connection refused); `start()` brings it back on the same port. */
  stopApiServer(): Promise<void>;
  startApiServer(): Promise<void>;
  close(): Promise<void>;
}

async function freePort(): Promise<number> {
  const s = createServer().listen(0, '127.0.0.1');
  await new Promise((r) => s.once('listening', r));
  const { port } = s.address() as AddressInfo;
  await new Promise((r) => s.close(r));
  return port;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function stop(proc: ChildProcess | undefined): Promise<void> {
  if (!proc || proc.exitCode !== null || proc.signalCode !== null) return;
  const exited = new Promise((r) => proc.once('exit', r));
  proc.kill('SIGTERM');
  const timer = setTimeout(() => proc.kill('SIGKILL'), 5_000);
  await exited;
  clearTimeout(timer);
}

export interface RealClusterOptions {
  /** The API server's `--min-request-timeout` (watches are cut between 1× and 2× of it); default its own (1800 s). */
  minRequestTimeoutSeconds?: number;
  /** Install Velero's CRDs and create namespace `velero` (default true). */
  velero?: boolean;
  /** More kube-apiserver flags. */
  apiServerArgs?: string[];
  /** Write an audit log (level Metadata, see AUDIT_POLICY), read with `auditEvents()`: e.g. to prove which calls were refused. */
  audit?: boolean;
}

/** Starts etcd and kube-apiserver; rejects (with the tail of their logs) when they do not come up. */
export async function startRealCluster(opts: RealClusterOptions = {}): Promise<RealCluster> {
  const apiserverBin = toolPath('kube-apiserver');
  const etcdBin = toolPath('etcd');
  if (!apiserverBin || !etcdBin) throw new Error(`kube-apiserver and etcd are needed in ${TOOLS_BIN}: run npm run tools`);
  const dir = await mkdtemp(join(tmpdir(), 'vds-kube-'));
  const pki = await createTestPki('vds real API server CA');
  await writeFile(join(dir, 'ca.crt'), pki.caCert);
  await writeFile(join(dir, 'apiserver.crt'), pki.cert);
  await writeFile(join(dir, 'apiserver.key'), pki.key, { mode: 0o600 });
  // The service-account issuer's signing key, and its public half for verifying.
  await writeFile(join(dir, 'sa.key'), pki.key, { mode: 0o600 });
  await writeFile(join(dir, 'sa.pub'), createPublicKey(pki.key).export({ type: 'spki', format: 'pem' }));
  const tokens: Record<string, string> = { admin: randomBytes(24).toString('hex') };
  const lines = [`${tokens.admin},admin,admin-uid,"system:masters"`];
  for (const [user, groups] of Object.entries(USERS)) {
    tokens[user] = randomBytes(24).toString('hex');
    lines.push(`${tokens[user]},${user},${user}-uid,"${groups.join(',')}"`);
  }
  await writeFile(join(dir, 'tokens.csv'), `${lines.join('\n')}\n`, { mode: 0o600 });
  const auditLog = join(dir, 'audit.log');
  if (opts.audit) await writeFile(join(dir, 'audit-policy.yaml'), stringify(AUDIT_POLICY));

  const [etcdPort, peerPort, apiPort] = [await freePort(), await freePort(), await freePort()];
  const etcd = spawn(
    etcdBin,
    [
      '--name=vds', `--data-dir=${join(dir, 'etcd')}`, `--listen-client-urls=http://127.0.0.1:${etcdPort}`, `--advertise-client-urls=http://127.0.0.1:${etcdPort}`,
      `--listen-peer-urls=http://127.0.0.1:${peerPort}`, `--initial-advertise-peer-urls=http://127.0.0.1:${peerPort}`, `--initial-cluster=vds=http://127.0.0.1:${peerPort}`,
      '--log-level=warn', '--unsafe-no-fsync',
    ],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  let etcdLog = '';
  etcd.stderr.on('data', (c: Buffer) => (etcdLog = (etcdLog + c.toString()).slice(-4000)));
  const apiArgs = [
    `--etcd-servers=http://127.0.0.1:${etcdPort}`, '--bind-address=127.0.0.1', '--advertise-address=127.0.0.1', `--secure-port=${apiPort}`,
    `--tls-cert-file=${join(dir, 'apiserver.crt')}`, `--tls-private-key-file=${join(dir, 'apiserver.key')}`, `--client-ca-file=${join(dir, 'ca.crt')}`,
    `--token-auth-file=${join(dir, 'tokens.csv')}`, '--authorization-mode=RBAC',
    '--service-account-issuer=https://kubernetes.default.svc', `--service-account-key-file=${join(dir, 'sa.pub')}`, `--service-account-signing-key-file=${join(dir, 'sa.key')}`,
    '--api-audiences=https://kubernetes.default.svc', '--service-cluster-ip-range=10.96.0.0/12', '--endpoint-reconciler-type=none', `--cert-dir=${join(dir, 'certs')}`,
    ...(opts.minRequestTimeoutSeconds !== undefined ? [`--min-request-timeout=${opts.minRequestTimeoutSeconds}`] : []),
    ...(opts.audit ? [`--audit-policy-file=${join(dir, 'audit-policy.yaml')}`, `--audit-log-path=${auditLog}`, '--audit-log-mode=blocking'] : []),
    ...(opts.apiServerArgs ?? []),
  ];
  let apiserver: ChildProcess | undefined;
  let apiLog = '';
  const url = `https://127.0.0.1:${apiPort}`;

  const rest = <T>(method: string, path: string, body?: unknown, o: RestOptions = {}): Promise<RestResult<T>> =>
    new Promise((resolve, reject) => {
      const payload = body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body);
      const req = request(
        `${url}${path}`,
        { method, ca: pki.caCert, headers: { Authorization: `Bearer ${o.token ?? tokens.admin}`, Accept: 'application/json', ...(payload !== undefined && { 'Content-Type': o.contentType ?? 'application/json' }), ...o.headers } },
        (res) => {
          let text = '';
          res.on('data', (c: Buffer) => (text += c.toString()));
          res.on('end', () => {
            let parsed: unknown = text;
            try {
              parsed = text ? JSON.parse(text) : undefined;
            } catch {
              // not JSON (readyz): the text
            }
            resolve({ status: res.statusCode ?? 0, body: parsed as T });
          });
        },
      );
      req.on('error', reject);
      req.end(payload);
    });

  const startApiServer = async (): Promise<void> => {
    apiLog = '';
    const proc = spawn(apiserverBin, apiArgs, { stdio: ['ignore', 'ignore', 'pipe'] });
    proc.stderr.on('data', (c: Buffer) => (apiLog = (apiLog + c.toString()).slice(-8000)));
    apiserver = proc;
    const deadline = Date.now() + 90_000;
    for (;;) {
      if (proc.exitCode !== null) throw new Error(`kube-apiserver exited (${proc.exitCode}):\n${apiLog}\netcd:\n${etcdLog}`);
      const ready = await rest('GET', '/readyz').catch(() => undefined);
      if (ready?.status === 200) return;
      if (Date.now() > deadline) throw new Error(`kube-apiserver not ready in 90 s:\n${apiLog}`);
      await sleep(200);
    }
  };

  const cluster: RealCluster = {
    url,
    caPem: pki.caCert,
    dir,
    tokens,
    async kubeconfig(token, name = randomBytes(4).toString('hex')) {
      const file = join(dir, `kubeconfig-${name}`);
      const doc = {
        apiVersion: 'v1',
        kind: 'Config',
        clusters: [{ name: 'real', cluster: { server: url, 'certificate-authority-data': Buffer.from(pki.caCert).toString('base64') } }],
        users: [{ name: 'user', user: { token } }],
        contexts: [{ name: 'real', context: { cluster: 'real', user: 'user' } }],
        'current-context': 'real',
      };
      await writeFile(file, stringify(doc), { mode: 0o600 });
      return file;
    },
    rest,
    async auditEvents() {
      if (!opts.audit) throw new Error('auditEvents(): start the cluster with { audit: true }');
      const text = await readFile(auditLog, 'utf8').catch(() => '');
      return text.split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as AuditEvent);
    },
    async apply(...objects) {
      for (const obj of objects) {
        const o = obj as { apiVersion: string; kind: string; metadata: { name: string; namespace?: string } };
        const path = await resourcePath(rest, o.apiVersion, o.kind, o.metadata.namespace, o.metadata.name);
        const r = await rest('PATCH', `${path}?fieldManager=vds-tests&force=true`, obj, { contentType: 'application/apply-patch+yaml' });
        if (r.status >= 300) throw new Error(`apply ${o.kind} ${o.metadata.namespace ?? ''}/${o.metadata.name}: HTTP ${r.status} ${JSON.stringify(r.body)}`);
      }
    },
    async namespace(name) {
      const r = await rest('POST', '/api/v1/namespaces', { apiVersion: 'v1', kind: 'Namespace', metadata: { name } });
      if (r.status !== 201 && r.status !== 409) throw new Error(`namespace ${name}: HTTP ${r.status}`);
    },
    async serviceAccountToken(ns, name, audiences) {
      await cluster.namespace(ns);
      await rest('POST', `/api/v1/namespaces/${ns}/serviceaccounts`, { apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name } });
      const r = await rest<{ status?: { token?: string } }>('POST', `/api/v1/namespaces/${ns}/serviceaccounts/${name}/token`, {
        apiVersion: 'authentication.k8s.io/v1',
        kind: 'TokenRequest',
        spec: { ...(audiences && { audiences }), expirationSeconds: 3600 },
      });
      if (!r.body.status?.token) throw new Error(`TokenRequest ${ns}/${name}: HTTP ${r.status} ${JSON.stringify(r.body)}`);
      return r.body.status.token;
    },
    async stopApiServer() {
      await stop(apiserver);
      apiserver = undefined;
    },
    startApiServer,
    async close() {
      await stop(apiserver);
      await stop(etcd);
      await rm(dir, { recursive: true, force: true });
    },
  };

  try {
    const etcdDeadline = Date.now() + 30_000;
    for (;;) {
      if (etcd.exitCode !== null) throw new Error(`etcd exited (${etcd.exitCode}):\n${etcdLog}`);
      const ok = await fetch(`http://127.0.0.1:${etcdPort}/health`).then((r) => r.ok, () => false);
      if (ok) break;
      if (Date.now() > etcdDeadline) throw new Error(`etcd not healthy in 30 s:\n${etcdLog}`);
      await sleep(100);
    }
    await startApiServer();
    if (opts.velero !== false) {
      await cluster.namespace('velero');
      for (const file of readdirSync(CRD_DIR).filter((f) => f.endsWith('.yaml')).sort()) {
        await cluster.apply(parse(readFileSync(join(CRD_DIR, file), 'utf8')) as object);
      }
      await waitForCrds(rest);
    }
    return cluster;
  } catch (err) {
    await cluster.close();
    throw err;
  }
}

/** The REST path of an object, from discovery (kept per cluster call: a handful of kinds). */
async function resourcePath(
  rest: RealCluster['rest'],
  apiVersion: string,
  kind: string,
  namespace: string | undefined,
  name: string,
): Promise<string> {
  const base = apiVersion.includes('/') ? `/apis/${apiVersion}` : `/api/${apiVersion}`;
  const list = await rest<{ resources?: { name: string; kind: string; namespaced: boolean }[] }>('GET', base);
  const r = list.body.resources?.find((x) => x.kind === kind && !x.name.includes('/'));
  if (!r) throw new Error(`no resource of kind ${kind} in ${apiVersion} (HTTP ${list.status})`);
  return `${base}${r.namespaced ? `/namespaces/${namespace ?? 'default'}` : ''}/${r.name}/${name}`;
}

/** Velero's CRDs are served once discovery lists them. */
async function waitForCrds(rest: RealCluster['rest']): Promise<void> {
  const deadline = Date.now() + 30_000;
  for (;;) {
    const v1 = await rest<{ resources?: { name: string }[] }>('GET', '/apis/velero.io/v1');
    const names = new Set((v1.body.resources ?? []).map((r) => r.name));
    if (['backups', 'restores', 'backupstoragelocations', 'downloadrequests', 'podvolumebackups'].every((n) => names.has(n))) return;
    if (Date.now() > deadline) throw new Error('Velero CRDs not served in 30 s');
    await sleep(200);
  }
}
