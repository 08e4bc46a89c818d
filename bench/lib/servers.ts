/**
 * The servers a benchmark compares: the real gateway process (JSON logs to a file),
 * nginx with a minimal configuration in a temp prefix, and the bare Node server of bench/bare-server.ts.
 */
import type { ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { readFile, writeFile } from 'node:fs/promises';
import { get } from 'node:https';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { childrenOf, commandLine, logFile, running, stop, track, until } from './proc.ts';
import { GATEWAY_NODE_FLAGS } from '../../src/node-flags.ts';

let main = fileURLToPath(new URL('../../src/main.ts', import.meta.url));
const BARE = fileURLToPath(new URL('../bare-server.ts', import.meta.url));
const FLOOR = fileURLToPath(new URL('../floor-server.ts', import.meta.url));
const BARE_PROXY = fileURLToPath(new URL(process.env.BENCH_BARE_FILE ?? '../bare-proxy.ts', import.meta.url));
/** Node flags for the bare proxy (an experiment, like BENCH_BARE_FILE: another reference proxy). */
const bareProxyNodeFlags = (process.env.BENCH_BARE_NODE_FLAGS ?? '').split(' ').filter(Boolean);
/** The reference proxy is not the stock one: bench/run.ts then writes to results/experiment.*. */
export const bareProxyChanged = process.env.BENCH_BARE_FILE !== undefined || bareProxyNodeFlags.length > 0;
/** node_modules/.bin/node (Node 24), as the npm scripts run it. */
export const NODE = process.execPath;

/** Which file the gateway runs from (default src/main.ts; the runner sets the compiled build). */
export function useGatewayEntry(file: string): void {
  main = file;
}

/**
 * Node flags for the gateway only, e.g. BENCH_GATEWAY_NODE_FLAGS="--cpu-prof --cpu-prof-dir=/tmp/prof".
 * The gateway is then not run as it ships: bench/run.ts writes such runs to results/experiment.*.
 */
export const gatewayNodeFlags = (process.env.BENCH_GATEWAY_NODE_FLAGS ?? '').split(' ').filter(Boolean);

export interface Server {
  name: string;
  proc: ChildProcess;
  /** `https://127.0.0.1:<port>`. */
  url: string;
  /** The processes whose CPU time is the server's. */
  pids(): Promise<number[]>;
  /** The command line that started it. */
  command: string;
  stop(): Promise<void>;
}

export interface Gateway extends Server {
  pid: number;
  metricsUrl: string;
  /** The file its JSON log goes to. */
  logPath: string;
}

/** Parsed JSON lines of a log file so far (non-JSON lines skipped). */
export async function logLines(path: string): Promise<Record<string, unknown>[]> {
  const text = await readFile(path, 'utf8').catch(() => '');
  const out: Record<string, unknown>[] = [];
  for (const line of text.split('\n')) {
    if (!line.startsWith('{')) continue;
    try {
      out.push(JSON.parse(line) as Record<string, unknown>);
    } catch {
      // a line still being written
    }
  }
  return out;
}

/** Node's own memory figures from the gateway's /metrics (prom-client default metrics), in bytes. */
export async function nodeMemory(metricsUrl: string, ca: string): Promise<Record<string, number>> {
  const text = await new Promise<string>((resolve, reject) => {
    get(`${metricsUrl}/metrics`, { ca }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolve(body));
      res.on('error', reject);
    }).on('error', reject);
  });
  const value = (name: string): number => Number(new RegExp(`^${name}(?:\\{[^}]*\\})? (\\S+)$`, 'm').exec(text)?.[1] ?? NaN);
  return {
    heapUsed: value('nodejs_heap_size_used_bytes'),
    heapTotal: value('nodejs_heap_size_total_bytes'),
    external: value('nodejs_external_memory_bytes'),
  };
}

/** `durationMs` of the gateway's access log lines (msg "request") whose line contains `part` (a path piece). */
export async function requestDurations(logPath: string, part: string): Promise<number[]> {
  return (await readFile(logPath, 'utf8'))
    .split('\n')
    .filter((l) => l.includes('"msg":"request"') && l.includes(part))
    .map((l) => (JSON.parse(l) as { durationMs: number }).durationMs);
}

/**
 * Starts the gateway (`node <entry> ...args`) listening on free loopback ports; its stdout and stderr (JSON
 * logs, the banner) go to `logPath`. Resolves once it logged `listening`.
 */
export async function startGateway(args: string[], logPath: string, env: NodeJS.ProcessEnv = {}): Promise<Gateway> {
  const fullArgs = [...GATEWAY_NODE_FLAGS, ...gatewayNodeFlags, main, '--listen', '127.0.0.1:0', '--metrics-listen', '127.0.0.1:0', ...args];
  const log = await logFile(logPath);
  const proc = track(NODE, fullArgs, { env: { ...process.env, ...env }, stdio: ['ignore', log.fd, log.fd] });
  await log.close();
  let listening: Record<string, unknown>;
  try {
    listening = await until('the gateway to log "listening"', async () => {
      if (!running(proc)) throw new Error(`the gateway exited (${String(proc.exitCode ?? proc.signalCode)}) before listening:\n${await readFile(logPath, 'utf8')}`);
      return (await logLines(logPath)).find((l) => l.msg === 'listening');
    });
  } catch (err) {
    await stop(proc);
    throw err;
  }
  const pid = proc.pid!;
  return {
    name: 'gateway',
    proc,
    pid,
    url: listening.url as string,
    metricsUrl: listening.metrics as string,
    logPath,
    pids: async () => [pid],
    command: `${commandLine(NODE, fullArgs)} >${logPath} 2>&1`,
    stop: () => stopGateway(proc),
  };
}

/**
 * SIGTERM, then SIGTERM again once the first was taken: the gateway keeps serving for its
 * --shutdown-delay after the first (for rollouts), and a second signal skips that pause, as it does for
 * a person at a terminal. Then the drain, and exit (which writes a --cpu-prof profile).
 */
async function stopGateway(proc: ChildProcess): Promise<void> {
  if (!running(proc)) return;
  proc.kill('SIGTERM');
  await new Promise((r) => setTimeout(r, 200));
  if (running(proc)) proc.kill('SIGTERM');
  await stop(proc, 30_000);
}

export interface NginxOptions {
  /** Temp directory: nginx.conf, pid, logs, temp paths. */
  dir: string;
  /** Document root. */
  root: string;
  cert: string;
  key: string;
  port: number;
}

/**
 * nginx, one worker, TLS 1.3 only, sendfile off (it cannot help under TLS), access log on (the
 * gateway logs every request too), run in the foreground as root with its own prefix.
 */
export async function startNginx(o: NginxOptions): Promise<Server> {
  const conf = `# written by bench/lib/servers.ts
daemon off;
master_process on;
worker_processes 1;
user root;
pid ${o.dir}/nginx.pid;
error_log ${o.dir}/error.log warn;
events { worker_connections 4096; }
http {
  types { application/octet-stream bin gz; }
  default_type application/octet-stream;
  access_log ${o.dir}/access.log;
  sendfile off;
  keepalive_requests 1000000;
  client_body_temp_path ${o.dir}/body;
  proxy_temp_path ${o.dir}/proxy;
  fastcgi_temp_path ${o.dir}/fastcgi;
  uwsgi_temp_path ${o.dir}/uwsgi;
  scgi_temp_path ${o.dir}/scgi;
  server {
    listen 127.0.0.1:${o.port} ssl;
    ssl_certificate ${o.cert};
    ssl_certificate_key ${o.key};
    ssl_protocols TLSv1.3;
    root ${o.root};
    location / { }
  }
}
`;
  const confPath = join(o.dir, 'nginx.conf');
  await writeFile(confPath, conf);
  const args = ['-p', o.dir, '-e', join(o.dir, 'error.log'), '-c', confPath];
  const test = track('nginx', [...args, '-t'], { stdio: ['ignore', 'ignore', 'pipe'] });
  let testErr = '';
  test.stderr?.on('data', (c: Buffer) => (testErr += c.toString()));
  const [testCode] = (await once(test, 'close')) as [number | null];
  if (testCode !== 0) throw new Error(`nginx -t failed:\n${testErr}`);

  const proc = track('nginx', args, { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  proc.stderr?.on('data', (c: Buffer) => (stderr += c.toString()));
  const master = proc.pid!;
  try {
    await until('nginx to start its worker', async () => {
      if (!running(proc)) throw new Error(`nginx exited before serving:\n${stderr}`);
      return (await childrenOf(master)).length > 0 ? true : undefined;
    });
  } catch (err) {
    await stop(proc);
    throw err;
  }
  return {
    name: 'nginx',
    proc,
    url: `https://127.0.0.1:${o.port}`,
    // The master only supervises; counting it too costs nothing and misses nothing.
    pids: async () => [master, ...(await childrenOf(master))],
    command: commandLine('nginx', args),
    stop: () => stop(proc),
  };
}

/** The bare Node server (bench/bare-server.ts) serving `file` for every path. */
export function startBare(cert: string, key: string, file: string): Promise<Server> {
  return startReference('bare node', [BARE, '--cert', cert, '--key', key, '--file', file]);
}

/** The bare Node proxy (bench/bare-proxy.ts): each path of `routesFile` piped from its upstream URL. */
export function startBareProxy(cert: string, key: string, routesFile: string, upstreamCa: string | undefined): Promise<Server> {
  return startReference('bare proxy', [...bareProxyNodeFlags, BARE_PROXY, '--cert', cert, '--key', key, '--routes', routesFile, ...(upstreamCa ? ['--upstream-ca', upstreamCa] : [])]);
}

/**
 * The floor for small downloads with auth (bench/floor-server.ts), run with the gateway's Node flags as
 * the gateway is; `skip` leaves duties out (for a breakdown). Its JSON lines go to `logPath`.
 */
export function startFloor(o: { cert: string; key: string; root: string; pairs: string; logPath: string; skip?: string[] }): Promise<Server> {
  const skip = o.skip?.length ? ['--skip', o.skip.join(',')] : [];
  return startReference('floor', [...GATEWAY_NODE_FLAGS, FLOOR, '--cert', o.cert, '--key', o.key, '--root', o.root, '--pairs', o.pairs, '--log', o.logPath, ...skip]);
}

/** Starts `node ...args`, a reference server that prints `{"port":N}` once listening. */
async function startReference(name: string, args: string[]): Promise<Server> {
  const proc = track(NODE, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let stderr = '';
  proc.stdout?.on('data', (c: Buffer) => (out += c.toString()));
  proc.stderr?.on('data', (c: Buffer) => (stderr += c.toString()));
  const port = await until(`the ${name} to listen`, async () => {
    if (!running(proc)) throw new Error(`the ${name} exited:\n${stderr}`);
    const m = /\{"port":(\d+)\}/.exec(out);
    return m ? Number(m[1]) : undefined;
  }).catch(async (err: unknown) => {
    await stop(proc);
    throw err;
  });
  const pid = proc.pid!;
  return {
    name,
    proc,
    url: `https://127.0.0.1:${port}`,
    pids: async () => [pid],
    command: commandLine(NODE, args),
    stop: () => stop(proc),
  };
}
