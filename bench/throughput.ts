/**
 * Benchmark 1, large object throughput: one large file from the filesystem store over HTTPS to
 * `curl -o /dev/null`, the gateway (local mode) vs nginx (one worker, the gateway's own EC P-256
 * certificate and key, TLS 1.3) vs the bare Node server, interleaved, median of several runs.
 * Figures: MB/s (curl's speed_download, 10^6 bytes/s) and the server's CPU seconds per GiB served.
 */
import { mkdir, mkdtemp, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { BenchContext } from './lib/context.ts';
import { curlCommand, curlTimed, negotiatedTls, tokenHeaderFile } from './lib/curl.ts';
import { warmPageCache, writeRandomFile } from './lib/files.ts';
import { cpuSecondsOf, freePort, tempDir } from './lib/proc.ts';
import { check, fmt, GiB, median, MiB, sizeLabel } from './lib/report.ts';
import type { BenchResult } from './lib/report.ts';
import { startBare, startGateway, startNginx } from './lib/servers.ts';
import type { Server } from './lib/servers.ts';

interface Run {
  server: string;
  round: number;
  mbps: number;
  cpuSeconds: number;
  cpuPerGiB: number;
  seconds: number;
}

export async function throughput(ctx: BenchContext): Promise<BenchResult> {
  const size = ctx.quick ? 256 * MiB : GiB;
  // Nine: single 1 GiB runs swing by ±30% on a shared 2-core machine (with five, the medians still
  // moved by a few percent from run to run). BENCH_ROUNDS overrides.
  const rounds = Number(process.env.BENCH_ROUNDS ?? (ctx.quick ? 1 : 9));
  const dir = tempDir(await mkdtemp(join(tmpdir(), 'vds-bench-throughput-')));
  const data = join(dir, 'data');
  const file = join(data, 'backups', 'big', 'big.tar.gz');
  ctx.log(`writing a ${sizeLabel(size)} file of random bytes`);
  await writeRandomFile(file, size);
  await warmPageCache(file);
  await mkdir(join(dir, 'nginx'));

  const servers: Server[] = [];
  try {
    const gw = await startGateway(['--mode', 'local', '--data-dir', data, '--state-dir', join(dir, 'state'), '--no-demo'], join(dir, 'gateway.log'));
    servers.push(gw);
    const cert = join(dir, 'state', 'tls.crt');
    const key = join(dir, 'state', 'tls.key');
    const headerFile = await tokenHeaderFile(dir, (await readFile(join(dir, 'state', 'tokens.csv'), 'utf8')).split(',')[0]!);
    const nginx = await startNginx({ dir: join(dir, 'nginx'), root: data, cert, key, port: await freePort() });
    servers.push(nginx);
    const bare = await startBare(cert, key, file);
    servers.push(bare);

    const targets = [
      { server: gw, url: `${gw.url}/v1/namespaces/velero/backups/big/contents`, headerFile },
      { server: nginx, url: `${nginx.url}/backups/big/big.tar.gz`, headerFile: undefined },
      { server: bare, url: `${bare.url}/big.tar.gz`, headerFile: undefined },
    ];
    // Warm-up (JIT, TLS session machinery), not counted.
    for (const t of targets) await curlTimed(t.url, { cacert: cert, headerFile: t.headerFile, extra: ['-r', `0-${64 * MiB - 1}`] });
    const tls = Object.fromEntries(await Promise.all(targets.map(async (t) => [t.server.name, await negotiatedTls(t.url, { cacert: cert, headerFile: t.headerFile })] as const)));

    const runs: Run[] = [];
    for (let round = 0; round < rounds; round++) {
      // Interleaved, and the order rotated each round, so drift on a shared machine hits all alike.
      for (let i = 0; i < targets.length; i++) {
        const t = targets[(i + round) % targets.length]!;
        const pids = await t.server.pids();
        const before = await cpuSecondsOf(pids);
        const r = await curlTimed(t.url, { cacert: cert, headerFile: t.headerFile });
        const after = await cpuSecondsOf(pids);
        if (r.size !== size) throw new Error(`${t.server.name}: got ${r.size} of ${size} bytes`);
        const run = { server: t.server.name, round, mbps: r.speed / 1e6, cpuSeconds: after - before, cpuPerGiB: (after - before) / (size / GiB), seconds: r.total };
        runs.push(run);
        ctx.log(`  ${run.server.padEnd(9)} round ${round + 1}: ${fmt(run.mbps, 0)} MB/s, ${fmt(run.cpuPerGiB)} CPU-s/GiB`);
      }
    }

    const med = (server: string, k: 'mbps' | 'cpuPerGiB'): number => median(runs.filter((r) => r.server === server).map((r) => r[k]));
    const names = ['gateway', 'nginx', 'bare node'];
    const mbps = Object.fromEntries(names.map((n) => [n, med(n, 'mbps')]));
    const cpu = Object.fromEntries(names.map((n) => [n, med(n, 'cpuPerGiB')]));
    const tRatio = mbps.gateway! / mbps.nginx!;
    const cRatio = cpu.gateway! / cpu.nginx!;
    // The same ratios within each round (the two downloads minutes apart at most): their spread shows
    // how far the machine's drift reaches into the medians.
    const perRound = (k: 'mbps' | 'cpuPerGiB'): string => {
      const ratios = Array.from({ length: rounds }, (_, round) => {
        const of = (server: string): number => runs.find((r) => r.server === server && r.round === round)![k];
        return of('gateway') / of('nginx');
      });
      return `per-round ratios ${fmt(Math.min(...ratios))}–${fmt(Math.max(...ratios))}, median ${fmt(median(ratios))}`;
    };
    return {
      id: 'throughput',
      title: `1. Large object throughput: ${sizeLabel(size)} from the filesystem store over HTTPS to curl (median of ${rounds})`,
      table: {
        columns: names,
        ratios: [['gateway', 'nginx'], ['gateway', 'bare node']],
        rows: [
          { metric: 'throughput', unit: 'MB/s', values: mbps, digits: 0 },
          { metric: 'server CPU', unit: 's/GiB', values: cpu, digits: 2 },
        ],
      },
      checks: [
        check('gateway throughput ≥ 0.95× nginx', `${fmt(tRatio)}× (${fmt(mbps.gateway, 0)} vs ${fmt(mbps.nginx, 0)} MB/s; ${perRound('mbps')})`, tRatio >= 0.95),
        check('gateway CPU per GiB ≤ 1.1× nginx', `${fmt(cRatio)}× (${fmt(cpu.gateway)} vs ${fmt(cpu.nginx)} CPU-s/GiB; ${perRound('cpuPerGiB')})`, cRatio <= 1.1),
      ],
      commands: [
        ...servers.map((s) => s.command),
        ...targets.map((t) => curlCommand(t.url, { cacert: cert, headerFile: t.headerFile })),
      ],
      notes: [
        'MB = 10^6 bytes; CPU = utime+stime of the server process(es) from /proc/<pid>/stat around each download (nginx: master + worker); curl runs on the same 2 cores.',
        'nginx: one worker, sendfile off, TLS 1.3 only, access log on; all three serve with the gateway\'s generated EC P-256 certificate and key.',
        `negotiated: ${Object.entries(tls).map(([n, v]) => `${n} ${v}`).join('; ')}.`,
      ],
      raw: { size, rounds, tls, runs },
    };
  } finally {
    for (const s of servers.reverse()) await s.stop();
  }
}
