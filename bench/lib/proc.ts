/**
 * Processes for the benchmarks: spawning and tracking every child (so SIGINT and `finally` can stop
 * them all), /proc readings (CPU seconds, RSS, open descriptors), and running short commands.
 * Everything is asynchronous: the Kubernetes API double the gateway calls lives in this process.
 */
import { spawn } from 'node:child_process';
import type { ChildProcess, SpawnOptions } from 'node:child_process';
import { once } from 'node:events';
import { open, readdir, readFile, rm } from 'node:fs/promises';
import { createServer as createNetServer } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';

const live = new Set<ChildProcess>();
const tempDirs = new Set<string>();
const runDirs = new Set<string>();
const cleanups = new Set<() => Promise<void>>();

/** Spawns and tracks a child; it is killed by {@link stopAll} if still running. */
export function track(command: string, args: readonly string[], options: SpawnOptions = {}): ChildProcess {
  const child = spawn(command, args, options);
  live.add(child);
  child.once('exit', () => live.delete(child));
  // A failed spawn (ENOENT) must not become an uncaught 'error'; the exit promise reports it.
  child.on('error', () => undefined);
  return child;
}

/**
 * Removes `dir` (recursively) on cleanup, whatever happens: after the benchmark that made it, or with
 * `wholeRun` only at the end of the run (the gateway build shared by every benchmark).
 */
export function tempDir(dir: string, wholeRun = false): string {
  (wholeRun ? runDirs : tempDirs).add(dir);
  return dir;
}

/** Runs `fn` on cleanup (e.g. closing an in-process test double). */
export function onCleanup(fn: () => Promise<void>): () => void {
  cleanups.add(fn);
  return () => cleanups.delete(fn);
}

/** True while `child` has neither exited nor been killed by a signal. */
export function running(child: ChildProcess): boolean {
  return child.exitCode === null && child.signalCode === null;
}

/** SIGTERM, then SIGKILL after `graceMs`; resolves when the child has exited. */
export async function stop(child: ChildProcess, graceMs = 5_000): Promise<void> {
  if (!running(child)) return;
  const exited = once(child, 'exit');
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
  await exited;
  clearTimeout(timer);
}

/** Stops every tracked child, runs cleanups and removes temp directories (`final`: those of the whole run too). */
export async function stopAll(final = true): Promise<void> {
  await Promise.all([...live].map((c) => stop(c, 3_000)));
  for (const fn of [...cleanups]) {
    cleanups.delete(fn);
    await fn().catch((err: unknown) => console.error(`cleanup failed: ${(err as Error).message}`));
  }
  for (const set of final ? [tempDirs, runDirs] : [tempDirs]) {
    for (const dir of [...set]) {
      set.delete(dir);
      await rm(dir, { recursive: true, force: true });
    }
  }
}

let signalled = false;
/** On SIGINT/SIGTERM: stop everything we started and exit 130. */
export function installSignalCleanup(): void {
  const handler = (signal: NodeJS.Signals): void => {
    if (signalled) return;
    signalled = true;
    console.error(`\n${signal}: stopping every benchmark process and removing temp files`);
    void stopAll().finally(() => process.exit(130));
  };
  process.on('SIGINT', handler);
  process.on('SIGTERM', handler);
}

export interface CommandResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs a command to completion (asynchronously), capturing its output; never throws for a non-zero exit. */
export async function run(command: string, args: readonly string[], options: SpawnOptions = {}): Promise<CommandResult> {
  const child = track(command, args, { ...options, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout?.on('data', (c: Buffer) => (stdout += c.toString()));
  child.stderr?.on('data', (c: Buffer) => (stderr += c.toString()));
  const [code] = (await Promise.race([
    once(child, 'close'),
    once(child, 'error').then(([err]) => {
      throw err as Error;
    }),
  ])) as [number | null];
  return { code, stdout, stderr };
}

/** User + system CPU seconds of a process (all its threads), from /proc/<pid>/stat. */
export async function cpuSeconds(pid: number): Promise<number> {
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
  // The command name (field 2) may contain spaces: count fields after its closing parenthesis.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const utime = Number(fields[11]);
  const stime = Number(fields[12]);
  return (utime + stime) / CLOCK_TICKS;
}

/** Linux USER_HZ; 100 on every architecture Node runs on (getconf CLK_TCK). */
const CLOCK_TICKS = 100;

/** Sum of {@link cpuSeconds} over several processes. */
export async function cpuSecondsOf(pids: readonly number[]): Promise<number> {
  let total = 0;
  for (const pid of pids) total += await cpuSeconds(pid);
  return total;
}

/** Resident set size in bytes (VmRSS from /proc/<pid>/status). */
export async function rssBytes(pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  const kb = /^VmRSS:\s+(\d+) kB/m.exec(status)?.[1];
  if (kb === undefined) throw new Error(`no VmRSS for pid ${pid}`);
  return Number(kb) * 1024;
}

/**
 * Samples a process's RSS every `everyMs` from now until `stop()`, which answers the peak (at least
 * the RSS at the start) and how many samples were taken.
 */
export async function sampleRss(pid: number, everyMs = 100): Promise<{ start: number; stop: () => { peak: number; samples: number } }> {
  const start = await rssBytes(pid);
  let peak = start;
  let samples = 0;
  const timer = setInterval(() => {
    rssBytes(pid).then((v) => {
      samples++;
      peak = Math.max(peak, v);
    }, () => undefined);
  }, everyMs);
  return {
    start,
    stop: () => {
      clearInterval(timer);
      return { peak, samples };
    },
  };
}

/** Open file descriptors of a process (sockets, files, pipes, epoll...). */
export async function fdCount(pid: number): Promise<number> {
  return (await readdir(`/proc/${pid}/fd`)).length;
}

/** Direct children of a process (nginx workers of a master). */
export async function childrenOf(pid: number): Promise<number[]> {
  const tasks = await readdir(`/proc/${pid}/task`);
  const out: number[] = [];
  for (const t of tasks) {
    const text = await readFile(`/proc/${pid}/task/${t}/children`, 'utf8').catch(() => '');
    out.push(...text.split(/\s+/).filter(Boolean).map(Number));
  }
  return out;
}

/** Polls `probe` until it returns a value or `timeoutMs` passes. */
export async function until<T>(what: string, probe: () => Promise<T | undefined>, timeoutMs = 30_000, intervalMs = 50): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await probe();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(intervalMs);
  }
}

/** Opens `file` for appending, for a child's stdout/stderr (the caller closes the handle after spawning). */
export async function logFile(file: string): Promise<{ fd: number; close: () => Promise<void> }> {
  const handle = await open(file, 'a', 0o600);
  return { fd: handle.fd, close: () => handle.close() };
}

/** Quotes an argument for display in a shell command line. */
export function shellQuote(arg: string): string {
  if (/^[\w@%+=:,./-]+$/.test(arg)) return arg;
  return `'${arg.replace(/'/g, `'\\''`)}'`;
}

const ROOT = fileURLToPath(new URL('../../', import.meta.url));

/** Paths inside the project shown relative to its root, and Node as the npm scripts name it. */
function display(arg: string): string {
  if (arg === process.execPath) return 'node_modules/.bin/node';
  return arg.startsWith(ROOT) ? arg.slice(ROOT.length) : arg;
}

/** A command line as it can be pasted into a shell (from the project's root). */
export function commandLine(command: string, args: readonly string[]): string {
  return [command, ...args].map(display).map(shellQuote).join(' ');
}

/** A free TCP port on 127.0.0.1 (for servers that cannot report the one they picked). */
export async function freePort(): Promise<number> {
  const s = createNetServer().listen(0, '127.0.0.1');
  await once(s, 'listening');
  const { port } = s.address() as { port: number };
  await new Promise((r) => s.close(r));
  return port;
}
