/**
 * Benchmark 3, bounded memory: 64 concurrent downloads of one object by curl clients limited to
 * 1 MiB/s each (`--limit-rate 1M`), ended after 30 s (`--max-time`), while the gateway's RSS
 * (VmRSS) is sampled every 100 ms; the peak is reported. Repeated with a 256 MiB, a 1 GiB and a 4 GiB
 * object, each with a fresh gateway process. The objects are sparse files whose first 64 MiB are
 * random bytes: clients at 1 MiB/s for 30 s never read past that, so every byte served is real data,
 * and a 4 GiB object costs 64 MiB of disk. BENCH_QUICK=1: 16 clients for 5 s.
 */
import { mkdtemp, readFile } from 'node:fs/promises';
import { get } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { BenchContext } from './lib/context.ts';
import { curlArgs, tokenHeaderFile } from './lib/curl.ts';
import { writeSparseFile } from './lib/files.ts';
import { commandLine, rssBytes, run, tempDir } from './lib/proc.ts';
import { check, fmt, GiB, MiB, sizeLabel } from './lib/report.ts';
import type { BenchResult } from './lib/report.ts';
import { startGateway } from './lib/servers.ts';
import type { Gateway } from './lib/servers.ts';

/** Node's own memory figures from the gateway's /metrics (prom-client default metrics), in bytes. */
async function nodeMemory(metricsUrl: string, ca: string): Promise<Record<string, number>> {
  const text = await new Promise<string>((resolve, reject) => {
    get(`${metricsUrl}/metrics`, { ca }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolve(body));
      res.on('error', reject);
    }).on('error', reject);
  });
  const value = (name: string): number => Number(new RegExp(`^vds_${name}(?:\\{[^}]*\\})? (\\S+)$`, 'm').exec(text)?.[1] ?? NaN);
  return {
    heapUsed: value('nodejs_heap_size_used_bytes'),
    heapTotal: value('nodejs_heap_size_total_bytes'),
    external: value('nodejs_external_memory_bytes'),
  };
}

interface Phase {
  size: number;
  /** Heap and external (Buffer) memory two thirds into the phase. */
  midRun: Record<string, number>;
  baselineRss: number;
  peakRss: number;
  samples: number;
  /** Bytes each client received, as curl reported them. */
  clientBytes: number[];
  clientsFailed: number;
}

export async function memory(ctx: BenchContext): Promise<BenchResult> {
  const clients = ctx.quick ? 16 : 64;
  const seconds = ctx.quick ? 5 : 30;
  const sizes = [256 * MiB, GiB, 4 * GiB];
  const dir = tempDir(await mkdtemp(join(tmpdir(), 'vds-bench-memory-')));
  const data = join(dir, 'data');
  const realBytes = 64 * MiB;
  for (const size of sizes) {
    const name = `obj-${size / MiB}m`;
    await writeSparseFile(join(data, 'backups', name, `${name}.tar.gz`), size, realBytes);
  }

  const phases: Phase[] = [];
  let command = '';
  let curlLine = '';
  // The 1 GiB object first: it is the target's; the others check that the peak does not follow size.
  for (const size of [GiB, 256 * MiB, 4 * GiB]) {
    const name = `obj-${size / MiB}m`;
    let gw: Gateway | undefined;
    try {
      gw = await startGateway(['--mode', 'local', '--data-dir', data, '--state-dir', join(dir, 'state'), '--no-demo'], join(dir, `gateway-${name}.log`));
      command = gw.command;
      const headerFile = await tokenHeaderFile(dir, (await readFile(join(dir, 'state', 'tokens.csv'), 'utf8')).split(',')[0]!);
      const url = `${gw.url}/v1/namespaces/velero/backups/${name}/contents`;
      const cacert = join(dir, 'state', 'tls.crt');
      await new Promise((r) => setTimeout(r, 1000));
      const baselineRss = await rssBytes(gw.pid);

      let peakRss = baselineRss;
      let samples = 0;
      const pid = gw.pid;
      const sampler = setInterval(() => {
        rssBytes(pid).then((v) => {
          samples++;
          peakRss = Math.max(peakRss, v);
        }, () => undefined);
      }, 100);
      const extra = ['--limit-rate', '1M', '--max-time', String(seconds)];
      const args = curlArgs(url, { cacert, headerFile, extra }, '%{size_download}');
      curlLine = `${commandLine('curl', args)}   # × ${clients}, concurrently`;
      const downloads = Promise.all(Array.from({ length: clients }, () => run('curl', args)));
      await new Promise((r) => setTimeout(r, (seconds * 2000) / 3));
      const midRun = await nodeMemory(gw.metricsUrl, await readFile(cacert, 'utf8')).catch(() => ({}));
      const results = await downloads;
      // One more second of sampling: buffers are released as the sockets close.
      await new Promise((r) => setTimeout(r, 1000));
      clearInterval(sampler);
      const clientBytes = results.map((r) => Number(r.stdout.trim()) || 0);
      // 28: curl's own --max-time ended the transfer, which is how every client should end.
      const clientsFailed = results.filter((r) => r.code !== 28 && r.code !== 0).length;
      phases.push({ size, midRun, baselineRss, peakRss, samples, clientBytes, clientsFailed });
      const avg = clientBytes.reduce((a, b) => a + b, 0) / clients;
      ctx.log(`  ${sizeLabel(size).padEnd(8)} peak RSS ${fmt(peakRss / MiB, 1)} MiB (idle ${fmt(baselineRss / MiB, 1)} MiB), ${samples} samples, ${fmt(avg / MiB, 1)} MiB per client${clientsFailed ? `, ${clientsFailed} clients failed` : ''}`);
    } finally {
      await gw?.stop();
    }
  }

  const bySize = (size: number): Phase => phases.find((p) => p.size === size)!;
  const cols = sizes.map(sizeLabel);
  const values = (f: (p: Phase) => number): Record<string, number> => Object.fromEntries(sizes.map((s) => [sizeLabel(s), f(bySize(s))]));
  const peak1g = bySize(GiB).peakRss / MiB;
  const small = bySize(256 * MiB).peakRss;
  const large = bySize(4 * GiB).peakRss;
  const spread = Math.abs(large - small) / Math.min(large, small);
  const failed = phases.reduce((a, p) => a + p.clientsFailed, 0);
  return {
    id: 'memory',
    title: `3. Bounded memory: ${clients} concurrent downloads at 1 MiB/s each for ${seconds} s, gateway RSS sampled every 100 ms`,
    table: {
      columns: cols,
      ratios: [[sizeLabel(4 * GiB), sizeLabel(256 * MiB)]],
      rows: [
        { metric: 'peak RSS', unit: 'MiB', values: values((p) => p.peakRss / MiB), digits: 1 },
        { metric: 'idle RSS before', unit: 'MiB', values: values((p) => p.baselineRss / MiB), digits: 1 },
        { metric: 'peak − idle', unit: 'MiB', values: values((p) => (p.peakRss - p.baselineRss) / MiB), digits: 1 },
        { metric: 'V8 heap used, mid-run', unit: 'MiB', values: values((p) => (p.midRun.heapUsed ?? NaN) / MiB), digits: 1 },
        { metric: 'external (Buffers), mid-run', unit: 'MiB', values: values((p) => (p.midRun.external ?? NaN) / MiB), digits: 1 },
        { metric: 'mean received per client', unit: 'MiB', values: values((p) => p.clientBytes.reduce((a, b) => a + b, 0) / p.clientBytes.length / MiB), digits: 1 },
      ],
    },
    checks: [
      check('peak RSS ≤ 150 MiB (1 GiB object)', `${fmt(peak1g, 1)} MiB`, peak1g <= 150),
      check('256 MiB vs 4 GiB peaks within 10%', `${fmt(spread * 100, 1)}% (${fmt(small / MiB, 1)} vs ${fmt(large / MiB, 1)} MiB)`, spread <= 0.1),
      ...(failed ? [check('every client ran until --max-time', `${failed} clients ended otherwise`, false)] : []),
    ],
    commands: [command, curlLine],
    notes: [
      `objects: sparse files, the first ${sizeLabel(realBytes)} random bytes, the rest a hole; clients never read past ${fmt((seconds * MiB) / MiB, 0)} MiB.`,
      'a fresh gateway process per object size; RSS from /proc/<pid>/status VmRSS; curl --limit-rate 1M is 1 MiB/s.',
    ],
    raw: { clients, seconds, phases },
  };
}
