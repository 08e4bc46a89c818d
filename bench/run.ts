/**
 * `npm run bench`: the gateway's benchmarks, side by side on this machine, one table each with the
 * gateway's figures next to the reference's, the ratio, and whether each target is MET. A missed
 * target does not fail the run; a benchmark that could not run does (exit 1).
 *
 *   npm run bench                          # all four (about 8 minutes on 2 cores)
 *   npm run bench -- throughput memory     # some: throughput, s3, memory, small-auth
 *   npm run bench:soak                     # = npm run bench -- soak (200,000 requests; not in the default set)
 *   npm run bench -- connections           # what a held connection and a stalled download cost (not in the default set)
 *   npm run bench -- kopia                 # files out of a Kopia volume backup in s3rver (not in the default set; needs `npm run tools -- kopia`)
 *   BENCH_QUICK=1 npm run bench            # smaller and shorter: a smoke check, written to results/quick.json
 *   BENCH_GATEWAY_ENTRY=src npm run bench  # run src/main.ts instead of the compiled build
 *   BENCH_ROUNDS=6 npm run bench -- small-auth   # more interleaved rounds (throughput, s3 and small-auth)
 *   BENCH_GATEWAY_NODE_FLAGS="--max-semi-space-size=8" npm run bench -- s3   # an experiment: Node flags for the gateway
 *   BENCH_BARE_NODE_FLAGS="--expose-gc" BENCH_BARE_FILE=../tmp/proxy.ts npm run bench -- s3   # an experiment: another reference proxy (path relative to bench/lib/)
 *
 * Full runs of the gateway as it ships are merged into bench/results/latest.json (by benchmark), which
 * the README quotes. Runs of anything else (gateway Node flags, BENCH_GATEWAY_ENTRY=src, a changed
 * reference proxy) go to
 * results/experiment.json, so that an experiment never stands in for the shipped figures.
 */
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import type { BenchContext } from './lib/context.ts';
import { installSignalCleanup, stopAll } from './lib/proc.ts';
import { renderResult } from './lib/report.ts';
import type { BenchResult } from './lib/report.ts';
import { bareProxyChanged, gatewayNodeFlags, useGatewayEntry } from './lib/servers.ts';
import { buildGateway, ensureTools, environment } from './lib/tools.ts';
import { connections } from './connections.ts';
import { kopiaVolume } from './kopia.ts';
import { memory } from './memory.ts';
import { s3Overhead } from './s3.ts';
import { smallAuth } from './small-auth.ts';
import { soak } from './soak.ts';
import { throughput } from './throughput.ts';

interface Benchmark {
  run: (ctx: BenchContext) => Promise<BenchResult>;
  /** Debian tools it drives (installed when missing). */
  tools: string[];
  /** Part of a plain `npm run bench`. */
  byDefault: boolean;
}

const BENCHMARKS: Record<string, Benchmark> = {
  throughput: { run: throughput, tools: ['nginx'], byDefault: true },
  s3: { run: s3Overhead, tools: [], byDefault: true },
  memory: { run: memory, tools: [], byDefault: true },
  'small-auth': { run: smallAuth, tools: ['wrk'], byDefault: true },
  soak: { run: soak, tools: [], byDefault: false },
  connections: { run: connections, tools: [], byDefault: false },
  // Needs the kopia binary `npm run tools` builds, and 2 GiB of s3rver storage.
  kopia: { run: kopiaVolume, tools: [], byDefault: false },
};

interface StoredResult extends BenchResult {
  date: string;
  environment: Record<string, string>;
  gateway: string;
}

interface ResultsFile {
  command: string;
  results: Record<string, StoredResult>;
}

async function main(): Promise<number> {
  installSignalCleanup();
  const quick = process.env.BENCH_QUICK === '1';
  const asked = process.argv.slice(2);
  const unknown = asked.filter((a) => !(a in BENCHMARKS));
  if (unknown.length) {
    console.error(`unknown benchmark(s): ${unknown.join(', ')}; choose from ${Object.keys(BENCHMARKS).join(', ')}`);
    return 2;
  }
  const selected = asked.length ? asked : Object.keys(BENCHMARKS).filter((id) => BENCHMARKS[id]!.byDefault);
  const ctx: BenchContext = { quick, log: (m) => console.log(m) };
  const started = Date.now();

  console.log(`# velero-download-server benchmarks: ${selected.join(', ')}${quick ? ' (BENCH_QUICK=1: reduced, not a measurement)' : ''}\n`);
  const setupErrors: string[] = [];
  let gatewayDescription = '';
  /** Not the gateway as it ships: results go to results/experiment.*, never to latest.*. */
  let experiment = false;
  try {
    await ensureTools(selected.flatMap((id) => BENCHMARKS[id]!.tools), ctx.log);
    const entry = await buildGateway(ctx.log);
    useGatewayEntry(entry.main);
    gatewayDescription = entry.description;
    if (gatewayNodeFlags.length) gatewayDescription += `, with Node flags ${gatewayNodeFlags.join(' ')} (BENCH_GATEWAY_NODE_FLAGS)`;
    if (bareProxyChanged) gatewayDescription += '; the reference proxy changed (BENCH_BARE_FILE / BENCH_BARE_NODE_FLAGS)';
    if (!entry.asShipped || gatewayNodeFlags.length || bareProxyChanged) experiment = true;
  } catch (err) {
    setupErrors.push((err as Error).message);
  }
  const env = await environment();
  console.log(Object.entries(env).map(([k, v]) => `  ${k}: ${v}`).join('\n'));
  console.log(`  gateway: ${gatewayDescription || '(not available)'}\n`);
  if (setupErrors.length) {
    console.error(`COULD NOT RUN any benchmark:\n${setupErrors.join('\n')}`);
    return 1;
  }

  const results: StoredResult[] = [];
  const failures: { id: string; error: string }[] = [];
  for (const id of selected) {
    console.log(`--- ${id} ---`);
    const t0 = Date.now();
    try {
      const r = await BENCHMARKS[id]!.run(ctx);
      results.push({ ...r, date: new Date().toISOString(), environment: env, gateway: gatewayDescription });
      console.log(`\n${renderResult(r)}  (${Math.round((Date.now() - t0) / 1000)} s)\n`);
    } catch (err) {
      const message = (err as Error).stack ?? String(err);
      failures.push({ id, error: message });
      console.error(`COULD NOT RUN ${id}: ${message}\n`);
    } finally {
      await stopAll(false);
    }
  }

  const file = fileURLToPath(new URL(`./results/${quick ? 'quick' : experiment ? 'experiment' : 'latest'}.json`, import.meta.url));
  await mkdir(fileURLToPath(new URL('./results/', import.meta.url)), { recursive: true });
  const previous = JSON.parse(await readFile(file, 'utf8').catch(() => '{"results":{}}')) as ResultsFile;
  const stored: ResultsFile = {
    command: 'npm run bench',
    results: { ...previous.results, ...Object.fromEntries(results.map((r) => [r.id, r])) },
  };
  await writeFile(file, `${JSON.stringify(stored, null, 2)}\n`);
  // The same, as Markdown, for the README to link to.
  const md = [
    `# Benchmark results${quick ? ' (BENCH_QUICK=1: reduced, not a measurement)' : ''}${experiment ? ' (an experiment: not the gateway as it ships)' : ''}`,
    '',
    'Written by `npm run bench` (and `npm run bench:soak`); each section is from the last run of that benchmark.',
    '',
    ...Object.values(stored.results).flatMap((r) => [
      renderResult(r).replace(/^## .*\n/, `## ${r.title}\n\n${r.date}, ${r.environment.cpus ?? ''}, load average at start ${r.environment.loadAverageAtStart ?? '?'}; gateway: ${r.gateway}\n`),
    ]),
  ].join('\n');
  await writeFile(file.replace(/\.json$/, '.md'), md);

  console.log('# summary');
  for (const r of results) for (const c of r.checks) console.log(`  ${c.met ? 'MET    ' : 'NOT MET'}  [${r.id}] ${c.target}: ${c.measured}`);
  for (const f of failures) console.log(`  COULD NOT RUN  [${f.id}] ${f.error.split('\n')[0]}`);
  console.log(`\nresults written to ${file}; ${Math.round((Date.now() - started) / 1000)} s in all`);
  return failures.length ? 1 : 0;
}

main().then(
  async (code) => {
    await stopAll();
    process.exit(code);
  },
  async (err: unknown) => {
    console.error(err);
    await stopAll();
    process.exit(1);
  },
);
