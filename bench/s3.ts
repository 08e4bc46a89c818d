/**
 * Benchmark 2, proxy overhead on S3: an object in s3rver (HTTPS with a test CA by default, as a real
 * store is reached; BENCH_S3_TLS=0 for plain HTTP), fetched by curl through the gateway (local mode,
 * a --locations-file pointing at s3rver; the data directory holds nothing) and straight from s3rver
 * with a pre-signed URL; as a reference, also through the bare Node proxy (bench/bare-proxy.ts: the
 * same pre-signed URLs fetched with `https.get` and piped, no SDK), which shows what any Node proxy
 * costs on this machine. Throughput: median MB/s of several interleaved runs of a large object.
 * Time to first byte: median curl time_starttransfer over many fresh connections for a 4 KiB object.
 */
import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { BenchContext } from './lib/context.ts';
import { curlCommand, curlTimed, tokenHeaderFile } from './lib/curl.ts';
import { writeRandomFile } from './lib/files.ts';
import { startS3Location } from './lib/s3-location.ts';
import type { S3Location } from './lib/s3-location.ts';
import { cpuSecondsOf, tempDir } from './lib/proc.ts';
import { check, fmt, GiB, median, MiB, sizeLabel } from './lib/report.ts';
import type { BenchResult } from './lib/report.ts';
import { requestDurations, startBareProxy, startGateway } from './lib/servers.ts';
import type { Gateway, Server } from './lib/servers.ts';

const PREFIX = 'prod';

export async function s3Overhead(ctx: BenchContext): Promise<BenchResult> {
  const size = ctx.quick ? 64 * MiB : 256 * MiB;
  const rounds = Number(process.env.BENCH_ROUNDS ?? (ctx.quick ? 1 : 5));
  const ttfbSamples = ctx.quick ? 10 : 50;
  const tls = process.env.BENCH_S3_TLS !== '0';
  const dir = tempDir(await mkdtemp(join(tmpdir(), 'vds-bench-s3-')));
  let gw: Gateway | undefined;
  let proxy: Server | undefined;
  let location: S3Location | undefined;
  try {
    location = await startS3Location(dir, PREFIX, tls);
    const s3 = location.s3;
    ctx.log(`seeding s3rver (${s3.endpoint}) with a ${sizeLabel(size)} object`);
    const bigKey = `${PREFIX}/backups/big/big.tar.gz`;
    const smallKey = `${PREFIX}/backups/small/small-logs.gz`;
    await writeRandomFile(join(dir, 'big.bin'), size);
    await s3.putFile(bigKey, join(dir, 'big.bin'));
    await s3.put(smallKey, randomBytes(4096));
    gw = await startGateway(
      ['--mode', 'local', '--data-dir', join(dir, 'data'), '--state-dir', join(dir, 'state'), '--no-demo', '--locations-file', location.locationsFile],
      join(dir, 'gateway.log'),
    );
    const headerFile = await tokenHeaderFile(dir, (await readFile(join(dir, 'state', 'tokens.csv'), 'utf8')).split(',')[0]!);
    const gwCa = join(dir, 'state', 'tls.crt');

    // Valid for the whole benchmark; each curl is a new client, as a user with a pre-signed URL would be.
    const upstreamCa = location.caFile;
    const direct = {
      big: { url: await location.presign(bigKey), cacert: upstreamCa, headerFile: undefined },
      small: { url: await location.presign(smallKey), cacert: upstreamCa, headerFile: undefined },
    };
    await writeFile(join(dir, 'routes.json'), JSON.stringify({ '/big': direct.big.url, '/small': direct.small.url }), { mode: 0o600 });
    proxy = await startBareProxy(gwCa, join(dir, 'state', 'tls.key'), join(dir, 'routes.json'), upstreamCa);
    const sides = {
      gateway: {
        big: { url: `${gw.url}/v1/namespaces/velero/backups/big/contents`, cacert: gwCa, headerFile },
        small: { url: `${gw.url}/v1/namespaces/velero/backups/small/log`, cacert: gwCa, headerFile },
      },
      'bare proxy': {
        big: { url: `${proxy.url}/big`, cacert: gwCa, headerFile: undefined },
        small: { url: `${proxy.url}/small`, cacert: gwCa, headerFile: undefined },
      },
      direct,
    };
    const names = ['gateway', 'bare proxy', 'direct'] as const;
    const proxyPids: Record<string, number[]> = { gateway: await gw.pids(), 'bare proxy': await proxy.pids(), direct: [] };
    // Warm-up: the gateway's S3 client and its connection pool, s3rver's JIT. The proxies' CPU for
    // this first large download (a fresh process's: code not yet optimized) is reported on its own.
    const coldCpu: Record<string, number> = {};
    for (const n of names) {
      const before = await cpuSecondsOf(proxyPids[n]!);
      await curlTimed(sides[n].big.url, sides[n].big);
      if (n !== 'direct') coldCpu[n] = ((await cpuSecondsOf(proxyPids[n]!)) - before) / (size / GiB);
      for (let i = 0; i < 3; i++) await curlTimed(sides[n].small.url, sides[n].small);
    }

    const mbps: Record<string, number[]> = { gateway: [], 'bare proxy': [], direct: [] };
    // CPU-seconds per GiB during each side's downloads: of the side's proxy (the gateway or the bare
    // proxy; none for direct) and of s3rver.
    const cpu: Record<string, { proxy: number[]; s3rver: number[] }> = Object.fromEntries(names.map((n) => [n, { proxy: [], s3rver: [] }]));
    for (let round = 0; round < rounds; round++) {
      for (let i = 0; i < names.length; i++) {
        const n = names[(i + round) % names.length]!;
        const before = [await cpuSecondsOf(proxyPids[n]!), await cpuSecondsOf([s3.pid])];
        const r = await curlTimed(sides[n].big.url, sides[n].big);
        const after = [await cpuSecondsOf(proxyPids[n]!), await cpuSecondsOf([s3.pid])];
        if (r.size !== size) throw new Error(`${n}: got ${r.size} of ${size} bytes`);
        mbps[n]!.push(r.speed / 1e6);
        cpu[n]!.proxy.push((after[0]! - before[0]!) / (size / GiB));
        cpu[n]!.s3rver.push((after[1]! - before[1]!) / (size / GiB));
        ctx.log(`  ${n.padEnd(10)} round ${round + 1}: ${fmt(r.speed / 1e6, 0)} MB/s; CPU-s/GiB: proxy ${n === 'direct' ? '–' : fmt(cpu[n]!.proxy.at(-1))}, s3rver ${fmt(cpu[n]!.s3rver.at(-1))}`);
      }
    }
    const ttfb: Record<string, number[]> = { gateway: [], 'bare proxy': [], direct: [] };
    for (let i = 0; i < ttfbSamples; i++) {
      for (const n of i % 2 ? [...names].reverse() : names) {
        ttfb[n]!.push((await curlTimed(sides[n].small.url, sides[n].small)).ttfb * 1000);
      }
    }
    // The gateway's own share of a small download: request in → response finished, from its access log.
    const inGateway = await requestDurations(gw.logPath, '/backups/small/');
    /** Round-by-round ratios gateway / bare proxy (rounds are interleaved, so each pair ran minutes apart at most). */
    const perRound = (xs: Record<string, number[]>): string => {
      const r = xs.gateway!.map((g, i) => g / xs['bare proxy']![i]!);
      return `${fmt(Math.min(...r))}–${fmt(Math.max(...r))}`;
    };
    const m = (xs: Record<string, number[]>): Record<string, number> => Object.fromEntries(names.map((n) => [n, median(xs[n]!)]));
    const tp = m(mbps);
    const fb = m(ttfb);
    const ratio = tp.gateway! / tp['bare proxy']!;
    const proxyCpu = { gateway: median(cpu.gateway!.proxy), 'bare proxy': median(cpu['bare proxy']!.proxy) };
    const cpuRatio = proxyCpu.gateway / proxyCpu['bare proxy'];
    const overhead = fb.gateway! - fb.direct!;
    const redact = (u: string): string => u.replace(/X-Amz-Signature=[0-9a-f]+/, 'X-Amz-Signature=…').replace(/X-Amz-Credential=[^&]+/, 'X-Amz-Credential=…');
    return {
      id: 's3',
      title: `2. Proxy overhead on S3: ${sizeLabel(size)} from s3rver (${tls ? 'HTTPS' : 'HTTP'}) through the gateway vs pre-signed URL, curl (reference: a bare Node proxy)`,
      table: {
        columns: [...names],
        ratios: [['gateway', 'direct'], ['bare proxy', 'direct'], ['gateway', 'bare proxy']],
        rows: [
          { metric: `throughput, median of ${rounds}`, unit: 'MB/s', values: tp, digits: 0 },
          { metric: `TTFB 4 KiB, median of ${ttfbSamples}`, unit: 'ms', values: fb, digits: 2 },
          { metric: '4 KiB, time inside the gateway (access log)', unit: 'ms', values: { gateway: median(inGateway) }, digits: 2 },
          { metric: `proxy CPU (gateway or bare proxy), median of ${rounds}`, unit: 's/GiB', values: proxyCpu, digits: 2 },
          { metric: 'proxy CPU, first large download after start', unit: 's/GiB', values: coldCpu, digits: 2 },
          { metric: 's3rver CPU', unit: 's/GiB', values: Object.fromEntries(names.map((n) => [n, median(cpu[n]!.s3rver)])), digits: 2 },
        ],
      },
      checks: [
        check('throughput ≥ 0.95× the bare proxy', `${fmt(ratio)}× (${fmt(tp.gateway, 0)} vs ${fmt(tp['bare proxy'], 0)} MB/s; per round ${perRound(mbps)})`, ratio >= 0.95),
        check('proxy CPU per GiB ≤ 1.2× the bare proxy', `${fmt(cpuRatio)}× (${fmt(proxyCpu.gateway)} vs ${fmt(proxyCpu['bare proxy'])} CPU-s/GiB; per round ${perRound(Object.fromEntries(names.map((n) => [n, cpu[n]!.proxy])))})`, cpuRatio <= 1.2),
        check('TTFB overhead ≤ 5 ms at the median', `${fmt(overhead)} ms (${fmt(fb.gateway)} vs ${fmt(fb.direct)} ms)`, overhead <= 5),
      ],
      commands: [
        s3.endpoint.startsWith('https') ? `s3rver in a child process (test/support/s3rver.ts), HTTPS with a test CA, at ${s3.endpoint}` : `s3rver (test/support/s3rver.ts) at ${s3.endpoint}`,
        gw.command,
        `${proxy.command}   # routes.json: /big and /small → the two pre-signed URLs below`,
        ...names.flatMap((n) => [curlCommand(redact(sides[n].big.url), sides[n].big), curlCommand(redact(sides[n].small.url), sides[n].small)]),
      ],
      notes: [
        'every curl is a new process and a new TLS connection; TTFB is curl time_starttransfer (connect + TLS + request to first byte).',
        'the gateway keeps its own connections to s3rver alive; a plain GET is one GetObject (no HEAD first).',
        'the bare proxy is the floor for any Node proxy here: the same TLS in and out, no SDK, no checks (it would pass a short body on as complete). The targets are relative to it: a direct read from s3rver is out of reach of any Node proxy on these 2 cores (bare proxy / direct below).',
        'CPU per GiB is the median of the measured rounds, after one warm-up download per side; the first download after start is its own row (the gateway as a fresh pod meets it).',
        `bare proxy vs direct: ${fmt(tp['bare proxy']! / tp.direct!)}× throughput, ${fmt(fb['bare proxy']! - fb.direct!)} ms TTFB overhead; gateway vs bare proxy: ${fmt(tp.gateway! / tp['bare proxy']!)}× throughput, ${fmt(fb.gateway! - fb['bare proxy']!)} ms TTFB.`,
        's3rver, the proxies and curl share the same 2 cores.',
      ],
      raw: { size, rounds, tls, mbps, cpuPerGiB: cpu, ttfbMs: ttfb },
    };
  } finally {
    await proxy?.stop();
    await gw?.stop();
    await location?.stop();
  }
}
