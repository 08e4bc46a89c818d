/**
 * The outside tools the benchmarks drive: nginx and wrk come from Debian when missing (as root:
 * `apt-get update` once, then `apt-get install -y nginx-light wrk`), curl must be there already.
 * Also the gateway build the benchmarks run, and the versions printed with the results.
 */
import { copyFile, mkdtemp, symlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { commandLine, run, tempDir } from './proc.ts';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));

async function has(tool: string): Promise<boolean> {
  return (await run('sh', ['-c', `command -v ${tool}`])).code === 0;
}

const PACKAGES: Record<string, string> = { nginx: 'nginx-light', wrk: 'wrk' };

/** Installs the tools (nginx, wrk) when missing; returns the commands it ran. Throws if one is still missing. */
export async function ensureTools(tools: string[], log: (m: string) => void): Promise<string[]> {
  const ran: string[] = [];
  const missing: string[] = [];
  for (const tool of new Set(tools)) if (!(await has(tool))) missing.push(PACKAGES[tool] ?? tool);
  if (missing.length) {
    const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
    for (const args of [['update'], ['install', '-y', ...missing]]) {
      const line = commandLine('apt-get', args);
      log(`$ ${line}`);
      ran.push(line);
      const r = await run('apt-get', args, { env });
      if (r.code !== 0) throw new Error(`${line} failed (exit ${String(r.code)}):\n${r.stderr.slice(-2000)}`);
    }
  }
  for (const tool of ['curl', ...tools]) {
    if (!(await has(tool))) throw new Error(`${tool} is not installed`);
  }
  return ran;
}

/** The entry point the gateway runs from; see {@link buildGateway}. */
export interface GatewayEntry {
  /** The file given to node. */
  main: string;
  /** How it was made, for the report. */
  description: string;
  /** The compiled build, as the image runs it (not src/ through type stripping). */
  asShipped: boolean;
}

/**
 * By default the benchmarks run the gateway as it ships (the image runs `node dist/main.js`, compiled
 * by `tsc -p tsconfig.build.json`): it is compiled into a temp directory, with a copy of package.json
 * one level above the output (where src/version.ts looks for it) and a symlink to the project's
 * node_modules, leaving the work tree (and its dist/) alone. BENCH_GATEWAY_ENTRY=src runs src/main.ts
 * through Node's type stripping instead (about 28 MiB more RSS, measured).
 */
export async function buildGateway(log: (m: string) => void): Promise<GatewayEntry> {
  if (process.env.BENCH_GATEWAY_ENTRY === 'src') {
    return { main: `${ROOT}src/main.ts`, description: 'src/main.ts run through Node\'s type stripping (BENCH_GATEWAY_ENTRY=src)', asShipped: false };
  }
  const out = tempDir(await mkdtemp(join(tmpdir(), 'vds-bench-build-')), true);
  await copyFile(`${ROOT}package.json`, join(out, 'package.json'));
  await symlink(`${ROOT}node_modules`, join(out, 'node_modules'), 'dir');
  const args = [`${ROOT}node_modules/typescript/bin/tsc`, '-p', `${ROOT}tsconfig.build.json`, '--outDir', join(out, 'dist'), '--sourceMap', 'false'];
  log(`$ ${commandLine('node', args)}`);
  const r = await run(process.execPath, args, { cwd: ROOT });
  if (r.code !== 0) throw new Error(`building the gateway failed:\n${r.stdout}${r.stderr}`);
  return { main: join(out, 'dist', 'main.js'), description: 'compiled JavaScript as shipped (tsc -p tsconfig.build.json into a temp dir, then node dist/main.js)', asShipped: true };
}

/** Versions and machine facts printed with the results. */
export async function environment(): Promise<Record<string, string>> {
  const first = async (cmd: string, args: string[]): Promise<string> => {
    const r = await run(cmd, args).catch(() => ({ stdout: '', stderr: '' }));
    return `${r.stdout}${r.stderr}`.split('\n')[0]!.trim();
  };
  const { cpus, loadavg, totalmem } = await import('node:os');
  return {
    node: process.version,
    nginx: await first('nginx', ['-v']),
    wrk: await first('wrk', ['--version']),
    curl: await first('curl', ['--version']),
    cpus: `${cpus().length} × ${cpus()[0]?.model ?? '?'}`,
    memory: `${Math.round(totalmem() / 2 ** 30)} GiB`,
    loadAverageAtStart: loadavg().map((l) => l.toFixed(2)).join(' '),
  };
}
