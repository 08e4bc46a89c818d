/**
 * Metrics after a known set of requests, read back through prom-client's registry (what /metrics
 * serves), and /metrics itself on the real process's metrics listener.
 */
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { after, before, describe, test } from 'node:test';
import request from 'supertest';
import { BACKUP, NS, kubeFixture } from '../support/kube-fixture.ts';
import type { KubeFixture } from '../support/kube-fixture.ts';
import { inProcessGateway } from '../support/in-process.ts';
import type { InProcessGateway } from '../support/in-process.ts';
import { curl, startGateway } from '../support/processes.ts';
import { buildRevision, VERSION } from '../../src/version.ts';

type Sample = { labels: Record<string, string | number>; value: number; metricName?: string };
async function samples(gw: InProcessGateway, name: string): Promise<Sample[]> {
  const m = gw.metrics.registry.getSingleMetric(name);
  assert.ok(m, name);
  return (await m.get()).values as Sample[];
}
const value = (s: Sample[], labels: Record<string, string>, metricName?: string): number =>
  s.filter((x) => (!metricName || x.metricName === metricName) && Object.entries(labels).every(([k, v]) => x.labels[k] === v)).reduce((a, x) => a + x.value, 0);

describe('metrics', () => {
  let fx: KubeFixture;
  let gw: InProcessGateway;
  before(async () => {
    fx = await kubeFixture();
    gw = await inProcessGateway(fx.args());
    const alice = { Authorization: `Bearer ${fx.tokens.alice}` };
    await request(gw.app).get(`/v1/namespaces/${NS}/backups/${BACKUP}/log`).set(alice).expect(200);
    await request(gw.app).get(`/v1/namespaces/${NS}/backups/${BACKUP}/log`).set(alice).expect(200);
    await request(gw.app).get(`/v1/namespaces/${NS}/backups/${BACKUP}/contents`).set({ Authorization: `Bearer ${fx.tokens.bob}` }).expect(403);
    await request(gw.app).get(`/v1/namespaces/${NS}/backups/missing/log`).set(alice).expect(404); // no Backup object
    await request(gw.app).get(`/v1/namespaces/${NS}/backups/${BACKUP}/results`).set(alice).expect(404); // no file in the store
    await request(gw.app).get(`/v1/namespaces/${NS}/downloadrequests/dr-log`).set({ Authorization: `Bearer ${fx.tokens.dave}` }).expect(200);
    await request(gw.app).get('/nowhere').expect(404);
  });
  after(() => fx.close());

  test('requests by route and code', async () => {
    const s = await samples(gw, 'velero_download_server_http_requests_total');
    assert.equal(value(s, { route: 'backups', code: '200' }), 2);
    assert.equal(value(s, { route: 'backups', code: '403' }), 1);
    assert.equal(value(s, { route: 'backups', code: '404' }), 2);
    assert.equal(value(s, { route: 'downloadrequests', code: '200' }), 1);
    assert.equal(value(s, { route: 'other', code: '404' }), 1);
  });

  test('bytes sent and time to first byte', async () => {
    assert.equal(value(await samples(gw, 'velero_download_server_download_bytes_sent_total'), { route: 'backups' }), 2 * fx.files.log.length);
    assert.equal(value(await samples(gw, 'velero_download_server_download_bytes_sent_total'), { route: 'downloadrequests' }), fx.files.log.length);
    const ttfb = await samples(gw, 'velero_download_server_download_time_to_first_byte_seconds');
    assert.equal(value(ttfb, { route: 'backups' }, 'velero_download_server_download_time_to_first_byte_seconds_count'), 2);
    assert.equal(value(await samples(gw, 'velero_download_server_downloads_in_flight'), { route: 'backups' }), 0);
  });

  test('whole-transfer duration by route and status class', async () => {
    const d = await samples(gw, 'velero_download_server_download_duration_seconds');
    const count = (labels: Record<string, string>): number => value(d, labels, 'velero_download_server_download_duration_seconds_count');
    assert.equal(count({ route: 'backups', code: '2xx' }), 2);
    assert.equal(count({ route: 'backups', code: '4xx' }), 3, 'the 403 and the two 404s');
    assert.equal(count({ route: 'downloadrequests', code: '2xx' }), 1);
    assert.equal(count({ route: 'other' }), 0, 'only downloads are transfers');
    assert.ok(value(d, { route: 'backups', code: '2xx' }, 'velero_download_server_download_duration_seconds_sum') > 0);
  });

  test('build_info: 1, with the version, the revision of this checkout and the Node version', async () => {
    const [info] = await samples(gw, 'velero_download_server_build_info');
    assert.deepEqual(info?.labels, { version: VERSION, revision: buildRevision(), node_version: process.version });
    assert.equal(info?.value, 1);
    assert.match(buildRevision(), /^[0-9a-f]{40}$/, 'the tests run from a git checkout');
  });

  test('store latency and errors by provider', async () => {
    const lat = await samples(gw, 'velero_download_server_store_request_duration_seconds');
    // A plain GET opens the object without a stat first: three downloads and the missing file are four gets.
    assert.equal(value(lat, { provider: 'replicated.com/hostpath', operation: 'get' }, 'velero_download_server_store_request_duration_seconds_count'), 4);
    assert.equal(value(lat, { provider: 'replicated.com/hostpath', operation: 'stat' }, 'velero_download_server_store_request_duration_seconds_count'), 0);
    const errs = await samples(gw, 'velero_download_server_store_errors_total');
    assert.equal(value(errs, { provider: 'replicated.com/hostpath', operation: 'get', reason: 'ObjectNotFound' }), 1);
  });

  test('reviews: latency per outcome and cache hits', async () => {
    const lat = await samples(gw, 'velero_download_server_review_duration_seconds');
    // alice, bob, dave: three tokens reviewed once each.
    assert.equal(value(lat, { review: 'tokenreview', outcome: 'authenticated' }, 'velero_download_server_review_duration_seconds_count'), 3);
    assert.equal(value(lat, { review: 'subjectaccessreview', outcome: 'denied' }, 'velero_download_server_review_duration_seconds_count'), 1);
    const cache = await samples(gw, 'velero_download_server_review_cache_lookups_total');
    assert.equal(value(cache, { review: 'tokenreview', result: 'miss' }), 3);
    assert.equal(value(cache, { review: 'tokenreview', result: 'hit' }), 3, "alice's second request and her two 404s");
  });

  test('/metrics on the real process: text format, certificate expiry, process metrics', async () => {
    const gwp = await startGateway(fx.args());
    try {
      const r = await curl(['--cacert', await fx.caFile(), '--fail', `https://127.0.0.1:${gwp.metricsPort}/metrics`]);
      assert.equal(r.code, 0, r.stderr);
      const text = r.stdout.toString();
      const expiry = Number(/^velero_download_server_tls_certificate_expiry_timestamp_seconds (\d+)$/m.exec(text)?.[1]);
      assert.ok(expiry > Date.now() / 1000 + 300 * 86400, 'about a year ahead');
      assert.match(text, /^process_resident_memory_bytes \d+/m);
      assert.match(text, /^nodejs_heap_size_used_bytes \d+/m);
      assert.match(text, /# TYPE velero_download_server_http_requests_total counter/);
      // Every family is the gateway's own (prefixed) or one of prom-client's process metrics, and the
      // README's table lists exactly the gateway's own, each with the type served.
      const types = new Map([...text.matchAll(/^# TYPE (\S+) (\S+)$/gm)].map((m) => [m[1]!, m[2]!]));
      const own = [...types.keys()].filter((n) => n.startsWith('velero_download_server_'));
      assert.deepEqual([...types.keys()].filter((n) => !own.includes(n) && !/^(process|nodejs)_/.test(n)), []);
      const readme = await readFile(new URL('../../README.md', import.meta.url), 'utf8');
      const listed = new Map([...readme.matchAll(/^\| `(velero_download_server_[a-z_]+)` \| (\w+) \|/gm)].map((m) => [m[1]!, m[2]!]));
      assert.deepEqual(new Map([...listed].sort()), new Map(own.map((n) => [n, types.get(n)!] as const).sort()), 'README ## Metrics');
    } finally {
      await gwp.stop();
    }
  });
});
