/**
 * Prometheus metrics (prom-client), served at /metrics on the metrics listener: requests, bytes,
 * downloads in flight, time to first byte, store latency and errors by provider, TokenReview / SAR
 * latency and cache hits, the serving certificate's expiry, whole-transfer duration, build info, and
 * Node's process metrics. The gateway's own are named velero_download_server_*; Node's process metrics
 * keep prom-client's unprefixed names (process_*, nodejs_*), which stock Node.js dashboards query.
 * The README lists every one with its labels: keep it in step.
 */
import type { PromiseOr } from '../util/promise-or.ts';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { ReviewObserver } from '../auth/types.ts';
import type { CacheStats } from '../util/ttl-cache.ts';
import { buildRevision, VERSION } from '../version.ts';

const LATENCY_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];
/** Whole transfers run from milliseconds (a log, a refusal) to hours (a volume's tarball). */
const TRANSFER_BUCKETS = [0.01, 0.05, 0.25, 1, 5, 15, 60, 300, 900, 1800, 3600, 10800];

/** `200` → `2xx`: a bounded label, whatever status a response carries. */
export const codeClass = (status: number): string => (status >= 100 && status < 600 ? `${Math.floor(status / 100)}xx` : 'other');

export type RouteLabel = 'backups' | 'restores' | 'downloadrequests' | 'volumes' | 'profiles' | 'other';

export class GatewayMetrics implements ReviewObserver {
  readonly registry = new Registry();
  readonly requests: Counter<'route' | 'method' | 'code'>;
  readonly bytesSent: Counter<'route'>;
  readonly inflight: Gauge<'route'>;
  readonly timeToFirstByte: Histogram<'route'>;
  readonly transferDuration: Histogram<'route' | 'code'>;
  readonly storeLatency: Histogram<'provider' | 'operation'>;
  readonly storeErrors: Counter<'provider' | 'operation' | 'reason'>;
  readonly reviewLatency: Histogram<'review' | 'outcome'>;
  readonly certExpiry: Gauge;
  readonly admissionReviews: Counter<'operation' | 'outcome'>;
  /**
   * Everything refused or cut by a limit: connections closed on accept, downloads refused (503) and
   * connections reset for stalling (src/server/limits.ts, listener.ts); calls refused (429) by a
   * Kubernetes API budget or the per-client limit on unknown tokens.
   */
  readonly limited: Counter<'limit'>;
  readonly #caches = new Map<string, CacheStats>();

  constructor(opts: { processMetrics?: boolean } = {}) {
    const registers = [this.registry];
    this.requests = new Counter({ name: 'velero_download_server_http_requests_total', help: 'HTTP requests by route, method and status code', labelNames: ['route', 'method', 'code'], registers });
    this.bytesSent = new Counter({ name: 'velero_download_server_download_bytes_sent_total', help: 'Object bytes sent to clients', labelNames: ['route'], registers });
    this.inflight = new Gauge({ name: 'velero_download_server_downloads_in_flight', help: 'Download requests being served', labelNames: ['route'], registers });
    this.timeToFirstByte = new Histogram({ name: 'velero_download_server_download_time_to_first_byte_seconds', help: 'From request to response headers of a download', labelNames: ['route'], buckets: LATENCY_BUCKETS, registers });
    this.transferDuration = new Histogram({
      name: 'velero_download_server_download_duration_seconds',
      help: 'Whole download requests, from the request to the last byte or the end of the connection, by route and status class (2xx, 4xx, 5xx; a cut transfer keeps the class of the status it began with)',
      labelNames: ['route', 'code'],
      buckets: TRANSFER_BUCKETS,
      registers,
    });
    new Gauge({ name: 'velero_download_server_build_info', help: 'Always 1; the labels say which build runs', labelNames: ['version', 'revision', 'node_version'], registers }).set(
      { version: VERSION, revision: buildRevision(), node_version: process.version },
      1,
    );
    this.storeLatency = new Histogram({ name: 'velero_download_server_store_request_duration_seconds', help: 'Store stat/get latency (to the first byte for get)', labelNames: ['provider', 'operation'], buckets: LATENCY_BUCKETS, registers });
    this.storeErrors = new Counter({ name: 'velero_download_server_store_errors_total', help: 'Store errors by provider, operation and reason', labelNames: ['provider', 'operation', 'reason'], registers });
    this.reviewLatency = new Histogram({ name: 'velero_download_server_review_duration_seconds', help: 'TokenReview and SubjectAccessReview latency', labelNames: ['review', 'outcome'], buckets: LATENCY_BUCKETS, registers });
    this.certExpiry = new Gauge({ name: 'velero_download_server_tls_certificate_expiry_timestamp_seconds', help: "The serving certificate's notAfter, in Unix seconds", registers });
    this.admissionReviews = new Counter({
      name: 'velero_download_server_admission_reviews_total',
      help: 'AdmissionReviews answered by operation and outcome (recorded, minted, skipped; failed: could not decide, answered without a patch)',
      labelNames: ['operation', 'outcome'],
      registers,
    });
    this.limited = new Counter({
      name: 'velero_download_server_limited_total',
      help: 'Refused or cut by a limit: connections closed on accept (--max-connections, --max-connections-per-client), downloads refused with 503 (--max-concurrent-downloads), connections reset (--send-stall-timeout); calls refused with 429 by a Kubernetes API budget (kube-api-tokenreview, -access, -objects, -webhook) or the per-client limit on unknown tokens (unknown-token-qps-per-client)',
      labelNames: ['limit'],
      registers,
    });
    const caches = this.#caches;
    new Counter({
      name: 'velero_download_server_review_cache_lookups_total',
      help: 'Review cache lookups by review and result (hit, miss, merged into a review in flight)',
      labelNames: ['review', 'result'],
      registers,
      collect() {
        this.reset();
        for (const [review, s] of caches) {
          this.inc({ review, result: 'hit' }, s.hits);
          this.inc({ review, result: 'miss' }, s.misses);
          this.inc({ review, result: 'merged' }, s.merged);
        }
      },
    });
    if (opts.processMetrics !== false) collectDefaultMetrics({ register: this.registry });
  }

  /** Exposes a review cache's counters (read at scrape time). */
  watchCache(review: string, stats: CacheStats): void {
    this.#caches.set(review, stats);
  }

  observeReview(review: 'tokenreview' | 'subjectaccessreview', seconds: number, outcome: string): void {
    this.reviewLatency.observe({ review, outcome }, seconds);
  }

  setCertificateExpiry(notAfter: Date): void {
    this.certExpiry.set(Math.floor(notAfter.getTime() / 1000));
  }
}

/** Times one store operation into the metrics; errors are counted by their stable reason. */
export function timedStoreCall<T>(metrics: GatewayMetrics | undefined, provider: string, operation: 'stat' | 'get', call: () => PromiseOr<T>): PromiseOr<T> {
  if (!metrics) return call();
  const end = metrics.storeLatency.startTimer({ provider, operation });
  const failed = (err: unknown): never => {
    metrics.storeErrors.inc({ provider, operation, reason: (err as { reason?: string }).reason ?? (err as Error).name ?? 'Error' });
    end();
    throw err;
  };
  let result: PromiseOr<T>;
  try {
    result = call();
  } catch (err) {
    return failed(err);
  }
  if (result instanceof Promise) {
    return result.then((value) => {
      end();
      return value;
    }, failed);
  }
  // A call answered at once (the filesystem store's sync mode) is timed as it is: no promise added.
  end();
  return result;
}
