/**
 * Microsoft's Azurite blob emulator as a child process of the test: the real `azurite-blob` from
 * node_modules, run on the Node the tests run on, listening on a free loopback port (port 0; the port
 * is read back from its start-up line), with its workspace in a fresh temp dir that stop() removes.
 */
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { rmSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { Agent as HttpsAgent } from 'node:https';
import { BlobServiceClient, newPipeline, StorageSharedKeyCredential } from '@azure/storage-blob';
import type { RequestPolicy, WebResource } from '@azure/storage-blob';

/** The emulator's built-in account. */
export const AZURITE_ACCOUNT = 'devstoreaccount1';
/** The built-in account's well-known key (public, documented by Microsoft). */
export const AZURITE_KEY = 'Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==';

const AZURITE_BLOB = fileURLToPath(new URL('../../node_modules/.bin/azurite-blob', import.meta.url));
// The project's Node 24 (the machine's own Node is older than Azurite and the SDKs want).
const NODE = fileURLToPath(new URL('../../node_modules/.bin/node', import.meta.url));
const START_TIMEOUT_MS = 30_000;

export interface AzuriteOptions {
  /** Serve HTTPS with this certificate and key (PEM text, e.g. from createTestPki()). */
  tls?: { cert: string; key: string };
  /**
   * Accounts besides (or instead of) devstoreaccount1, name → base64 key, through Azurite's
   * AZURITE_ACCOUNTS variable. Azurite then serves only the listed accounts, so the default account is
   * kept unless `withDefaultAccount` is false.
   */
  accounts?: Record<string, string>;
  withDefaultAccount?: boolean;
  /** `--oauth basic`: bearer tokens are accepted (checked for issuer, audience and lifetime, not signature); HTTPS only. */
  oauth?: boolean;
}

export interface Azurite {
  /** `http(s)://127.0.0.1:<port>` */
  origin: string;
  port: number;
  /** The blob endpoint of one account: `<origin>/<account>`, what storageAccountURI takes. */
  accountUrl(account?: string): string;
  /** Everything Azurite printed so far. */
  output(): string;
  /** SIGTERM (SIGKILL after 5 s), wait for the exit, remove the workspace. Idempotent. */
  stop(): Promise<void>;
}

function probe(origin: string): Promise<boolean> {
  const url = new URL(`${origin}/${AZURITE_ACCOUNT}?comp=list`);
  const send = url.protocol === 'https:' ? httpsRequest : httpRequest;
  return new Promise((resolve) => {
    // Any HTTP answer (a 403 for the unsigned request) means it serves; certificate checks are not the point here.
    const req = send(url, { method: 'GET', rejectUnauthorized: false, agent: false, timeout: 1000 }, (res) => {
      res.resume();
      resolve(true);
    });
    req.on('timeout', () => req.destroy());
    req.on('error', () => resolve(false));
    req.end();
  });
}

async function stopProcess(proc: ChildProcess, exited: Promise<unknown>): Promise<void> {
  if (proc.exitCode !== null || proc.signalCode !== null) return;
  proc.kill('SIGTERM');
  const killer = setTimeout(() => proc.kill('SIGKILL'), 5000);
  await exited;
  clearTimeout(killer);
}

/** Starts Azurite's blob service and resolves once it answers HTTP requests. */
export async function startAzurite(options: AzuriteOptions = {}): Promise<Azurite> {
  const dir = await mkdtemp(join(tmpdir(), 'vds-azurite-'));
  const args = [
    AZURITE_BLOB,
    '--blobHost', '127.0.0.1',
    '--blobPort', '0',
    '--location', dir,
    '--disableTelemetry',
    '--skipApiVersionCheck',
    '--loose',
    '--silent',
  ];
  if (options.tls) {
    await writeFile(join(dir, 'server.crt'), options.tls.cert);
    await writeFile(join(dir, 'server.key'), options.tls.key, { mode: 0o600 });
    args.push('--cert', join(dir, 'server.crt'), '--key', join(dir, 'server.key'));
  }
  if (options.oauth) args.push('--oauth', 'basic');

  const env: NodeJS.ProcessEnv = { ...process.env };
  delete env.AZURITE_ACCOUNTS;
  if (options.accounts) {
    const accounts = { ...(options.withDefaultAccount === false ? {} : { [AZURITE_ACCOUNT]: AZURITE_KEY }), ...options.accounts };
    env.AZURITE_ACCOUNTS = Object.entries(accounts).map(([name, key]) => `${name}:${key}`).join(';');
  }

  const proc = spawn(NODE, args, { cwd: dir, env, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  proc.stdout.on('data', (chunk: Buffer) => (out += chunk.toString()));
  proc.stderr.on('data', (chunk: Buffer) => (out += chunk.toString()));
  const exited = once(proc, 'exit').catch(() => undefined);
  // A test process that dies without running its after() hooks (an uncaught error) must not leave the
  // emulator or its workspace behind; 'exit' handlers run synchronously, hence the kill and rmSync.
  const killOnExit = (): void => {
    proc.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  };
  process.once('exit', killOnExit);
  let stopped = false;
  const stop = async (): Promise<void> => {
    if (stopped) return;
    stopped = true;
    process.off('exit', killOnExit);
    await stopProcess(proc, exited);
    await rm(dir, { recursive: true, force: true });
  };

  try {
    const deadline = Date.now() + START_TIMEOUT_MS;
    let origin: string | undefined;
    while (origin === undefined) {
      if (proc.exitCode !== null || proc.signalCode !== null) throw new Error(`azurite-blob exited before listening:\n${out}`);
      if (Date.now() > deadline) throw new Error(`azurite-blob did not start within ${START_TIMEOUT_MS} ms:\n${out}`);
      origin = /listens on (https?:\/\/127\.0\.0\.1:\d+)/.exec(out)?.[1];
      if (origin === undefined) await sleep(25);
    }
    while (!(await probe(origin))) {
      if (Date.now() > deadline) throw new Error(`azurite-blob at ${origin} does not answer:\n${out}`);
      await sleep(25);
    }
    const base = origin;
    return {
      origin: base,
      port: Number(new URL(base).port),
      accountUrl: (account = AZURITE_ACCOUNT) => `${base}/${account}`,
      output: () => out,
      stop,
    };
  } catch (err) {
    await stop();
    throw err;
  }
}

/** A writer for seeding, trusting `ca` through the same per-request agent hook the adapter uses. */
export function azuriteWriter(accountUrl: string, account: string, key: string, ca?: string): BlobServiceClient {
  const pipeline = newPipeline(new StorageSharedKeyCredential(account, key), { retryOptions: { maxTries: 1 } });
  if (ca !== undefined) {
    const agent = new HttpsAgent({ ca, keepAlive: true });
    pipeline.factories.push({
      create: (next: RequestPolicy): RequestPolicy => ({
        sendRequest: (request: WebResource) => {
          request.agent = agent;
          return next.sendRequest(request);
        },
      }),
    });
  }
  return new BlobServiceClient(accountUrl, pipeline);
}
