/**
 * Real processes for end-to-end tests: the gateway itself (`src/main.ts` on the Node the tests run
 * on) and the real `curl`. Everything is asynchronous: a synchronous child would block the event loop
 * of a test that also hosts a test double the gateway calls.
 */
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdir, writeFile } from 'node:fs/promises';
import { createServer as createNetServer } from 'node:net';
import type { AddressInfo } from 'node:net';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { GATEWAY_NODE_FLAGS } from '../../src/node-flags.ts';

const MAIN = fileURLToPath(new URL('../../src/main.ts', import.meta.url));

export interface GatewayProcess {
  proc: ChildProcess;
  /** Base URL of the download API, e.g. https://127.0.0.1:40123. */
  url: string;
  port: number;
  metricsPort: number;
  /** Every JSON log line so far. */
  logs: Record<string, unknown>[];
  /** Everything written to stdout and stderr, raw (to check that no secret ever appears). */
  output: () => string;
  /** SIGTERM, wait for exit; returns the exit code. */
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

export interface StartOptions {
  /** A command the gateway runs under, e.g. `['strace', '-f', '-o', FILE]`. */
  wrapper?: string[];
  startTimeoutMs?: number;
  /** Node flags before the script (default: the ones the gateway ships with, src/node-flags.ts). */
  nodeFlags?: readonly string[];
}

/** Starts the gateway with `args` (listening on free loopback ports unless args say otherwise). */
export async function startGateway(args: string[], env: NodeJS.ProcessEnv = {}, opts: StartOptions = {}): Promise<GatewayProcess> {
  const [cmd, ...pre] = opts.wrapper ?? [process.execPath];
  const node = opts.wrapper ? [process.execPath] : [];
  // No rollout pause by default: a test stopping its gateway has no endpoints to wait for (a test of the
  // pause passes its own --shutdown-delay, and the last one given wins).
  const proc = spawn(cmd!, [...pre, ...node, ...(opts.nodeFlags ?? GATEWAY_NODE_FLAGS), MAIN, '--listen', '127.0.0.1:0', '--metrics-listen', '127.0.0.1:0', '--shutdown-delay', '0s', ...args], {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const startTimeoutMs = opts.startTimeoutMs ?? 30_000;
  const logs: Record<string, unknown>[] = [];
  let raw = '';
  let pending = '';
  let onListening: ((line: Record<string, unknown>) => void) | undefined;
  const onData = (chunk: Buffer): void => {
    raw += chunk.toString();
    pending += chunk.toString();
    let nl: number;
    while ((nl = pending.indexOf('\n')) >= 0) {
      const line = pending.slice(0, nl);
      pending = pending.slice(nl + 1);
      if (!line.startsWith('{')) continue;
      const parsed = JSON.parse(line) as Record<string, unknown>;
      logs.push(parsed);
      if (parsed.msg === 'listening') onListening?.(parsed);
    }
  };
  proc.stdout.on('data', onData);
  proc.stderr.on('data', onData);
  const exited = once(proc, 'exit');

  const listening = await new Promise<Record<string, unknown>>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`gateway did not start within ${startTimeoutMs / 1000} s:\n${raw}`)), startTimeoutMs);
    onListening = (line) => {
      clearTimeout(timer);
      resolve(line);
    };
    void exited.then(([code]) => {
      clearTimeout(timer);
      reject(new Error(`gateway exited with ${String(code)} before listening:\n${raw}`));
    });
  });
  const url = listening.url as string;
  const metricsPort = Number(new URL(listening.metrics as string).port);
  return {
    proc,
    url,
    port: Number(new URL(url).port),
    metricsPort,
    logs,
    output: () => raw,
    async stop(signal = 'SIGTERM') {
      if (proc.exitCode !== null) return proc.exitCode;
      proc.kill(signal);
      const [code] = (await exited) as [number | null];
      return code;
    },
  };
}

export interface CurlResult {
  code: number | null;
  stdout: Buffer;
  stderr: string;
}

/** Runs the real curl; never throws for a non-zero exit (tests assert on the code). */
export function curl(args: string[]): Promise<CurlResult> {
  return curlLive(args).done;
}

/** Starts curl and returns the live process, for tests that act while a download runs. */
export function curlLive(args: string[]): { proc: ChildProcess; done: Promise<CurlResult> } {
  const proc = spawn('curl', ['--silent', '--show-error', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  const out: Buffer[] = [];
  let err = '';
  proc.stdout.on('data', (c: Buffer) => out.push(c));
  proc.stderr.on('data', (c: Buffer) => (err += c.toString()));
  const done = once(proc, 'close').then(([code]) => ({ code: code as number | null, stdout: Buffer.concat(out), stderr: err }));
  return { proc, done };
}

/** The gateway in local mode with its data and state directories under `dir`; and the certificate to trust. */
export async function startLocalGateway(dir: string, ...args: string[]): Promise<{ gw: GatewayProcess; cacert: string }> {
  const gw = await startGateway(['--mode', 'local', '--data-dir', join(dir, 'data'), '--state-dir', join(dir, 'state'), ...args]);
  return { gw, cacert: join(dir, 'state', 'tls.crt') };
}

/** Writes `bytes` as the contents (`<name>.tar.gz`) of backup `name` in a local data directory. */
export async function putBackupContents(dataDir: string, name: string, bytes: Buffer): Promise<string> {
  const path = join(dataDir, 'backups', name, `${name}.tar.gz`);
  await mkdir(dirname(path), { recursive: true });
  await writeFile(path, bytes);
  return path;
}

/** A loopback port free right now (for a listener a test passes to the gateway as a flag). */
export async function freePort(): Promise<number> {
  const s = createNetServer().listen(0, '127.0.0.1');
  await new Promise((r) => s.once('listening', r));
  const { port } = s.address() as AddressInfo;
  await new Promise((r) => s.close(r));
  return port;
}
