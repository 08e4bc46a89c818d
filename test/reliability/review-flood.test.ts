/**
 * Anonymous traffic against the Kubernetes API budget (the security review's third finding): 30 TLS
 * connections × 50 pipelined GETs with random tokens used to push a cached user's request into a 503
 * after 10 s, because every review and read waited in one first-come-first-served bucket. Now reviews
 * of unknown tokens, access reviews and object reads have budgets of their own, unknown tokens are
 * limited per client address, nobody queues more than about a second, and a review whose callers have
 * all gone is dropped.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { readFile } from 'node:fs/promises';
import { request as httpGet } from 'node:http';
import { Agent, request as httpsGet } from 'node:https';
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import request from 'supertest';
import { randomUUID } from 'node:crypto';
import { AdmissionFlow, patchOf } from '../support/admission.ts';
import type { ReviewResponse } from '../support/admission.ts';
import { BACKUP, NS, kubeFixture } from '../support/kube-fixture.ts';
import type { KubeFixture } from '../support/kube-fixture.ts';
import { inProcessGateway } from '../support/in-process.ts';
import { freePort, startGateway } from '../support/processes.ts';
import type { GatewayProcess } from '../support/processes.ts';
import { sleep } from '../support/reliability.ts';

const PATH = `/v1/namespaces/${NS}/backups/${BACKUP}/log`;

const FLOOD_CLIENT = fileURLToPath(new URL('../support/flood-client.ts', import.meta.url));

/** Runs the flood in a process of its own; resolves with every status code it read back. */
function flood(port: number, caFile: string, connections: number, perConnection: number, rounds: number): Promise<number[]> {
  return new Promise((resolve, reject) => {
    execFile(process.execPath, [FLOOD_CLIENT, String(port), caFile, String(connections), String(perConnection), PATH, String(rounds)], { maxBuffer: 1 << 20 }, (err, stdout) =>
      err ? reject(new Error(`the flood client failed: ${err.message}`)) : resolve(JSON.parse(stdout) as number[]),
    );
  });
}

const p99 = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.ceil(xs.length * 0.99) - 1)]!;

describe('a flood of unknown tokens against the real process', () => {
  let fx: KubeFixture;
  let gw: GatewayProcess;
  let ca: string;
  let caFile: string;
  before(async () => {
    fx = await kubeFixture();
    // Shipped defaults for every budget and limit; a short object cache so the cached user's
    // Backup and location are read again during the flood.
    gw = await startGateway(fx.args('--object-cache-ttl', '500ms'));
    caFile = await fx.caFile();
    ca = await readFile(caFile, 'utf8');
  });
  after(async () => {
    await gw?.stop();
    await fx?.close();
  });

  test('a cached user downloading during 4 × 30 connections × 50 pipelined random tokens: no 503, p99 under 1 s', async (t) => {
    const alice = fx.tokens.alice;
    // The test's own HTTPS client trusting the gateway's CA, as a user's would, on one kept-alive connection.
    const agent = new Agent({ ca, keepAlive: true, maxSockets: 1 });
    const download = (): Promise<{ status: number; ms: number }> =>
      new Promise((resolve) => {
        const started = performance.now();
        const r = httpsGet(`${gw.url}${PATH}`, { agent, headers: { Authorization: `Bearer ${alice}` } }, (res) => {
          res.resume();
          res.on('end', () => resolve({ status: res.statusCode ?? 0, ms: performance.now() - started }));
        });
        r.on('error', () => resolve({ status: 0, ms: performance.now() - started }));
        r.end();
      });
    assert.equal((await download()).status, 200, 'warm: token and access review cached');
    const reviewsBefore = fx.api.calls.count({ resource: 'tokenreviews' });

    const floodStarted = performance.now();
    // Four waves of 30 TLS connections × 50 pipelined requests, one after the other.
    const flooding = flood(gw.port, caFile, 30, 50, 4);
    let done = false;
    void flooding.then(() => (done = true), () => (done = true));
    const cached: { status: number; ms: number }[] = [];
    while (!done || cached.length < 100) {
      cached.push(await download());
      await sleep(10);
    }
    const floodMs = performance.now() - floodStarted;
    const codes = await flooding;
    agent.destroy();

    const bad = cached.filter((c) => c.status !== 200);
    assert.deepEqual(bad, [], `the cached user got ${bad.length} failures of ${cached.length}`);
    assert.ok(p99(cached.map((c) => c.ms)) < 1_000, `cached user's p99 ${p99(cached.map((c) => c.ms)).toFixed(0)} ms`);

    // The flood was refused early, never with a 5xx: a 429 ends its connection, so the requests
    // pipelined behind it are dropped unread (each connection's first 429 is its last answer).
    const byCode = new Map<number, number>();
    for (const c of codes) byCode.set(c, (byCode.get(c) ?? 0) + 1);
    assert.ok((byCode.get(429) ?? 0) >= 100, `429s: ${JSON.stringify([...byCode])}`);
    assert.ok(codes.length < 1_000, `${codes.length} of 6,000 pipelined requests were answered: the rest should have died with their connections`);
    assert.equal([...byCode.keys()].filter((c) => c >= 500).length, 0, `no 5xx: ${JSON.stringify([...byCode])}`);
    // One client address: its burst (20) plus 5 a second reached the API server, no more.
    const reviews = fx.api.calls.count({ resource: 'tokenreviews' }) - reviewsBefore;
    t.diagnostic(
      `flood of ${codes.length} requests in ${floodMs.toFixed(0)} ms: ${JSON.stringify(Object.fromEntries(byCode))}; ${reviews} TokenReviews; ` +
        `cached user: ${cached.length} downloads, ${bad.length} failed, p99 ${p99(cached.map((c) => c.ms)).toFixed(0)} ms`,
    );
    assert.ok(reviews <= 20 + 5 * Math.ceil(floodMs / 1000 + 1), `${reviews} TokenReviews in ${floodMs.toFixed(0)} ms`);
    const metrics = await fetchMetrics(gw, ca);
    assert.match(metrics, /velero_download_server_limited_total\{limit="unknown-token-qps-per-client"\} [1-9]/);
  });
});

/** One HTTPS request with a body; resolves with the status and the body text. */
function httpsCall(url: string, ca: string, opts: { method?: string; headers?: Record<string, string>; body?: string; agent?: Agent } = {}): Promise<{ status: number; text: string }> {
  return new Promise((resolve) => {
    const r = httpsGet(url, { ca, method: opts.method ?? 'GET', headers: opts.headers, ...(opts.agent && { agent: opts.agent }) }, (res) => {
      let text = '';
      res.on('data', (c: Buffer) => (text += c.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, text }));
    });
    r.on('error', () => resolve({ status: 0, text: '' }));
    r.end(opts.body);
  });
}


describe('a flood on the download port against the webhook, real process', () => {
  test('the webhook answers a genuine review promptly while object reads on the download port are spent: it has a budget of its own', async (t) => {
    const fx = await kubeFixture();
    const bsl = fx.api.get('velero.io/v1', 'BackupStorageLocation', 'default', NS)!;
    fx.api.put({ ...bsl, metadata: { ...bsl.metadata, annotations: { 'download-server.velero.io/enabled': 'true' } } });
    const webhookPort = await freePort();
    // A small API budget: object reads 4 a second (8 at once), the webhook 2 a second (4 at once);
    // no object cache, so every request of the flood needs a read.
    const gw = await startGateway(fx.args('--webhook-listen', `127.0.0.1:${webhookPort}`, '--kube-api-qps', '20', '--kube-api-burst', '40', '--object-cache-ttl', '1ms'));
    try {
      const ca = await readFile(await fx.caFile(), 'utf8');
      const flow = new AdmissionFlow(
        fx.api,
        async (body): Promise<ReviewResponse> => {
          const r = await httpsCall(`https://127.0.0.1:${webhookPort}/admission/downloadrequests`, ca, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body) });
          return { status: r.status, body: JSON.parse(r.text) as ReviewResponse['body'] };
        },
        NS,
      );
      const agent = new Agent({ ca, keepAlive: true, maxSockets: 30 });
      const auth = { Authorization: `Bearer ${fx.tokens.alice}` };
      assert.equal((await httpsCall(`${gw.url}${PATH}`, ca, { headers: auth, agent })).status, 200, 'alice is cached');
      let done = false;
      let i = 0;
      const statuses: number[] = [];
      const worker = async (): Promise<void> => {
        while (!done) statuses.push((await httpsCall(`${gw.url}/v1/namespaces/${NS}/backups/missing-${i++}/log`, ca, { headers: auth, agent })).status);
      };
      const flood = Promise.all(Array.from({ length: 30 }, worker));
      const name = `during-flood-${randomUUID()}`;
      await flow.create({ username: 'alice', groups: ['system:authenticated'] }, name, { kind: 'BackupLog', name: BACKUP });
      await sleep(1_500);
      const started = performance.now();
      const { response } = await flow.processed(name);
      const took = performance.now() - started;
      done = true;
      await flood;
      agent.destroy();
      assert.ok(statuses.filter((s) => s === 429).length >= 20, `the flood was refused: ${JSON.stringify(Object.groupBy(statuses, (s) => s))}`);
      assert.ok(patchOf(response), 'the review during the flood was answered with a gateway URL');
      assert.ok(took < 1_000, `answered in ${took.toFixed(0)} ms`);
      t.diagnostic(`review answered with a gateway URL in ${took.toFixed(0)} ms while ${statuses.filter((x) => x === 429).length} of ${statuses.length} flood requests got 429`);
      const metrics = await fetchMetrics(gw, ca);
      assert.match(metrics, /velero_download_server_limited_total\{limit="kube-api-objects"\} [1-9]/);
      assert.doesNotMatch(metrics, /velero_download_server_limited_total\{limit="kube-api-webhook"\}/);
    } finally {
      await gw.stop();
      await fx.close();
    }
  });
});

function fetchMetrics(gw: GatewayProcess, ca: string): Promise<string> {
  return new Promise((resolve, reject) => {
    httpsGet(`https://127.0.0.1:${gw.metricsPort}/metrics`, { ca, servername: 'localhost' }, (res) => {
      let body = '';
      res.on('data', (c: Buffer) => (body += c.toString()));
      res.on('end', () => resolve(body));
    })
      .on('error', reject)
      .end();
  });
}

describe('a review whose callers have all left is dropped', () => {
  test('a TokenReview waiting for its budget is never sent once its only caller has gone', async () => {
    const fx = await kubeFixture();
    // One TokenReview a second, none saved up: a second unknown token waits about a second in the queue.
    const gw = await inProcessGateway(fx.args('--kube-api-qps', '4', '--kube-api-burst', '4'));
    try {
      const first = await request(gw.app).get(PATH).set('Authorization', 'Bearer first-unknown-token');
      assert.equal(first.status, 401);
      assert.equal(fx.api.calls.count({ resource: 'tokenreviews' }), 1);
      // The second caller leaves while its review waits for the budget.
      const server = gw.app.listen(0, '127.0.0.1');
      await new Promise((r) => server.once('listening', r));
      const { port } = server.address() as { port: number };
      const req = httpGet(`http://127.0.0.1:${port}${PATH}`, { headers: { Authorization: 'Bearer second-unknown-token' } });
      req.on('error', () => undefined);
      req.end();
      await sleep(150);
      req.destroy();
      await sleep(1_500);
      server.close();
      assert.equal(fx.api.calls.count({ resource: 'tokenreviews' }), 1, 'the abandoned review was never sent');
    } finally {
      await gw.stop();
      await fx.close();
    }
  });
});
