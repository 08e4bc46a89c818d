/**
 * Benchmark 4, small objects with authentication: 4 KiB artifacts over 64 keep-alive connections
 * (wrk, 2 threads, bench/wrk-auth.lua adding `Authorization: Bearer <token>` for a handful of
 * distinct tokens and targets), the gateway in kubernetes mode against the Kubernetes API test double
 * (in this process; the gateway reaches it through its kubeconfig) with warm decision caches, vs the
 * bare Node server serving the same 4 KiB file. The double's call log gives the TokenReviews and
 * SubjectAccessReviews the gateway made while measured.
 */
import { randomBytes } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { user } from '../test/support/kube-apiserver/index.ts';
import { BACKUP, NS, kubeFixture } from '../test/support/kube-fixture.ts';
import type { KubeFixture } from '../test/support/kube-fixture.ts';
import { createTestPki } from '../test/support/test-ca.ts';
import type { BenchContext } from './lib/context.ts';
import { commandLine, cpuSecondsOf, onCleanup, run } from './lib/proc.ts';
import { check, fmt, median } from './lib/report.ts';
import type { BenchResult } from './lib/report.ts';
import { startBare, startFloor, startGateway } from './lib/servers.ts';
import type { Server } from './lib/servers.ts';

const SCRIPT = fileURLToPath(new URL('./wrk-auth.lua', import.meta.url));
const USERS = 4;
/** The gateway's default cache periods (--authn-cache-ttl 2m, --authz-allowed-ttl 5m), in seconds. */
const TOKEN_TTL_S = 120;
const ALLOWED_TTL_S = 300;
/** Artifact name → file name of backup BACKUP, each 4 KiB. */
const ARTIFACTS: [string, string][] = [
  ['log', `${BACKUP}-logs.gz`],
  ['results', `${BACKUP}-results.gz`],
  ['resourcelist', `${BACKUP}-resource-list.json.gz`],
  ['volumesnapshots', `${BACKUP}-volumesnapshots.json.gz`],
];

interface WrkFigures {
  requests: number;
  duration_us: number;
  p50_us: number;
  p90_us: number;
  p99_us: number;
  max_us: number;
  mean_us: number;
  errors: { connect: number; read: number; write: number; status: number; timeout: number };
}

interface WrkRun extends WrkFigures {
  server: string;
  rps: number;
  /** Server CPU (user + system, all threads) per request, µs. */
  cpuUsPerRequest: number;
}

export async function smallAuth(ctx: BenchContext): Promise<BenchResult> {
  const seconds = ctx.quick ? 3 : 10;
  const warmup = ctx.quick ? 2 : 5;
  // Four interleaved rounds: single runs of this benchmark swung from 0.57× to 0.88× on a shared
  // 2-core machine; BENCH_ROUNDS overrides.
  const rounds = Number(process.env.BENCH_ROUNDS ?? (ctx.quick ? 2 : 4));
  let fx: KubeFixture | undefined;
  const servers: Server[] = [];
  const removeCleanup = onCleanup(async () => fx?.close());
  try {
    fx = await kubeFixture();
    const backupDir = join(fx.fsRoot, 'bsl-bucket', 'cluster-a', 'backups', BACKUP);
    const body = randomBytes(4096);
    for (const [, file] of ARTIFACTS) await writeFile(join(backupDir, file), body);
    const tokens: string[] = [];
    for (let u = 0; u < USERS; u++) {
      tokens.push(fx.api.tokens.user(`bench-${u}`, ['system:authenticated']));
      fx.api.rbac.grant(user(`bench-${u}`), [{ apiGroups: ['velero.io'], resources: ARTIFACTS.map(([a]) => `backups/${a}`), verbs: ['get'] }], NS);
    }
    const pairs = tokens.flatMap((t) => ARTIFACTS.map(([a]) => ({ token: t, path: `/v1/namespaces/${NS}/backups/${BACKUP}/${a}` })));
    const pairsFile = join(fx.dir, 'wrk-pairs.txt');
    await writeFile(pairsFile, pairs.map((p) => `${p.token} ${p.path}\n`).join(''), { mode: 0o600 });

    const gw = await startGateway(fx.args(), join(fx.dir, 'gateway.log'));
    servers.push(gw);
    const pki = await createTestPki('vds bench CA');
    await writeFile(join(fx.dir, 'bare.crt'), pki.cert);
    await writeFile(join(fx.dir, 'bare.key'), pki.key, { mode: 0o600 });
    const bare = await startBare(join(fx.dir, 'bare.crt'), join(fx.dir, 'bare.key'), join(backupDir, ARTIFACTS[0]![1]));
    servers.push(bare);
    // The location's root as the gateway's filesystem store opens it (bucket/prefix of BSL default).
    const floor = await startFloor({ cert: join(fx.dir, 'bare.crt'), key: join(fx.dir, 'bare.key'), root: join(fx.fsRoot, 'bsl-bucket', 'cluster-a'), pairs: pairsFile, logPath: join(fx.dir, 'floor.log') });
    servers.push(floor);

    const wrkArgs = (url: string, d: number): string[] => ['-t2', '-c64', `-d${d}s`, '--latency', '-s', SCRIPT, url];
    const wrk = async (server: Server, d: number): Promise<WrkRun> => {
      const pids = await server.pids();
      const cpuBefore = await cpuSecondsOf(pids);
      const r = await run('wrk', wrkArgs(server.url, d), { env: { ...process.env, BENCH_WRK_PAIRS: pairsFile } });
      const cpu = (await cpuSecondsOf(pids)) - cpuBefore;
      const json = /BENCH_JSON (\{.*\})/.exec(r.stdout)?.[1];
      if (r.code !== 0 || !json) throw new Error(`wrk against ${server.name} failed (exit ${String(r.code)}):\n${r.stdout}\n${r.stderr}`);
      const f = JSON.parse(json) as WrkFigures;
      return { ...f, server: server.name, rps: f.requests / (f.duration_us / 1e6), cpuUsPerRequest: (cpu * 1e6) / f.requests };
    };

    // The decision caches are warmed by the first requests; the call log counts from here (the run
    // may span more than one cache period: the check allows one review per pair in each).
    fx.api.calls.clear();
    const started = Date.now();
    const warm = await wrk(gw, warmup);
    if (warm.errors.status > 0) throw new Error(`the gateway answered ${warm.errors.status} non-2xx responses during warm-up: check ${gw.logPath}`);
    await wrk(bare, warmup);
    const floorWarm = await wrk(floor, warmup);
    if (floorWarm.errors.status > 0) throw new Error(`the floor server answered ${floorWarm.errors.status} non-2xx responses during warm-up`);
    const runs: WrkRun[] = [];
    for (let round = 0; round < rounds; round++) {
      for (const s of round % 2 ? [bare, floor, gw] : [gw, floor, bare]) {
        const r = await wrk(s, seconds);
        runs.push(r);
        ctx.log(`  ${s.name.padEnd(9)} round ${round + 1}: ${fmt(r.rps, 0)} req/s, p99 ${fmt(r.p99_us / 1000)} ms, ${fmt(r.cpuUsPerRequest, 0)} µs CPU/request${r.errors.status ? `, ${r.errors.status} non-2xx` : ''}`);
      }
    }
    const elapsedS = (Date.now() - started) / 1000;
    // At most one review per token, and per (user, target) pair, in each cache period the run spans.
    const tokenPeriods = Math.ceil(elapsedS / TOKEN_TTL_S);
    const sarPeriods = Math.ceil(elapsedS / ALLOWED_TTL_S);
    const tokenReviews = fx.api.calls.count({ resource: 'tokenreviews', verb: 'create' });
    const sars = fx.api.calls.count({ resource: 'subjectaccessreviews', verb: 'create' });
    const apiCalls: Record<string, number> = {};
    for (const c of fx.api.calls.list()) apiCalls[`${c.verb} ${c.resource}`] = (apiCalls[`${c.verb} ${c.resource}`] ?? 0) + 1;

    const names = ['gateway', 'floor', 'bare node'];
    const med = (n: string, f: (r: WrkRun) => number): number => median(runs.filter((r) => r.server === n).map(f));
    const rps = Object.fromEntries(names.map((n) => [n, med(n, (r) => r.rps)]));
    const p50 = Object.fromEntries(names.map((n) => [n, med(n, (r) => r.p50_us / 1000)]));
    const p99 = Object.fromEntries(names.map((n) => [n, med(n, (r) => r.p99_us / 1000)]));
    const cpuPerRequest = Object.fromEntries(names.map((n) => [n, med(n, (r) => r.cpuUsPerRequest)]));
    const non2xx = runs.filter((r) => r.server === 'gateway').reduce((a, r) => a + r.errors.status + r.errors.read + r.errors.connect + r.errors.timeout, 0);
    const ratio = rps.gateway! / rps['bare node']!;
    const floorRatio = rps.floor! / rps['bare node']!;
    const floorP99 = p99.floor! / p99['bare node']!;
    /** Where the floor itself misses a target, no gateway can meet it here: said next to NOT MET. */
    const reach = (floorValue: number, met: boolean, floorMeets: boolean): string =>
      met ? '' : `; the floor ${floorMeets ? 'meets it' : `misses it too (${fmt(floorValue)}×): out of reach for any gateway here`}`;
    const gatewayRequests = warm.requests + runs.filter((r) => r.server === 'gateway').reduce((a, r) => a + r.requests, 0);
    return {
      id: 'small-auth',
      title: `4. Small objects with authentication: 4 KiB, 64 keep-alive connections, kubernetes mode, warm caches (median of ${rounds} × ${seconds} s)`,
      table: {
        columns: names,
        ratios: [['gateway', 'bare node'], ['floor', 'bare node'], ['gateway', 'floor']],
        rows: [
          { metric: 'requests/s', unit: '1/s', values: rps, digits: 0 },
          { metric: 'latency p50', unit: 'ms', values: p50, digits: 2 },
          { metric: 'latency p99', unit: 'ms', values: p99, digits: 2 },
          { metric: 'server CPU per request', unit: 'µs', values: cpuPerRequest, digits: 0 },
          { metric: 'TokenReviews', unit: 'calls', values: { gateway: tokenReviews }, digits: 0 },
          { metric: 'SubjectAccessReviews', unit: 'calls', values: { gateway: sars }, digits: 0 },
        ],
      },
      checks: [
        check('requests/s ≥ 0.9× bare Node', `${fmt(ratio)}× (${fmt(rps.gateway, 0)} vs ${fmt(rps['bare node'], 0)} req/s)${reach(floorRatio, ratio >= 0.9, floorRatio >= 0.9)}`, ratio >= 0.9),
        check('p99 ≤ 1.1× bare Node', `${fmt(p99.gateway! / p99['bare node']!)}× (${fmt(p99.gateway)} vs ${fmt(p99['bare node'])} ms)${reach(floorP99, p99.gateway! <= 1.1 * p99['bare node']!, floorP99 <= 1.1)}`, p99.gateway! <= 1.1 * p99['bare node']!),
        check(
          'reviews = distinct (token, target) pairs per cache period',
          `${tokenReviews} TokenReviews for ${tokens.length} tokens + ${sars} SARs for ${pairs.length} (token, target) pairs, over ${fmt(gatewayRequests, 0)} requests in ${fmt(elapsedS, 0)} s (${tokenPeriods} token and ${sarPeriods} decision cache periods)`,
          tokenReviews >= tokens.length && tokenReviews <= tokens.length * tokenPeriods && sars >= pairs.length && sars <= pairs.length * sarPeriods,
        ),
        ...(non2xx ? [check('every gateway response 2xx', `${non2xx} errors or non-2xx`, false)] : []),
      ],
      commands: [
        gw.command,
        bare.command,
        floor.command,
        `BENCH_WRK_PAIRS=<file of "token path" lines> ${commandLine('wrk', wrkArgs(gw.url, seconds))}`,
        `BENCH_WRK_PAIRS=<same file> ${commandLine('wrk', wrkArgs(bare.url, seconds))}`,
      ],
      notes: [
        `${tokens.length} tokens (users) × ${ARTIFACTS.length} artifacts of backup ${BACKUP} = ${pairs.length} pairs, cycled by every connection; the bare server answers every path with the same 4 KiB file.`,
        'review counts are from the API double\'s call log, from the warm-up\'s first request to the end of the last gateway run (default TTLs: tokens 2 min, allowed 5 min); one TokenReview per token and one SAR per (user, target) pair in each cache period the run spans is the most there may be.',
        `every API call the gateway made meanwhile: ${Object.entries(apiCalls).map(([k, v]) => `${k} ${v}`).join(', ')}.`,
        'the Kubernetes API double runs in the benchmark process; wrk, the gateway (info logging to a file) and the double share the 2 cores.',
        "floor: bench/floor-server.ts, the bare server plus only what no gateway download may skip (the cached identity and decision, the filesystem store's symlink-safe open, the access and audit lines, the request metrics), with the gateway's Node flags; what it misses of bare Node no gateway can make up here.",
      ],
      raw: { seconds, rounds, warmup: warm, runs, tokenReviews, sars, apiCalls, tokens: tokens.length, pairs: pairs.length, elapsedS },
    };
  } finally {
    for (const s of servers.reverse()) await s.stop();
    await fx?.close();
    removeCleanup();
  }
}
