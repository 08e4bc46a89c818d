/** The API budgets and the per-client limit: refusal instead of a long queue, separate buckets. */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { ClientLimiter } from '../../src/auth/client-limiter.ts';
import { Budgets, MAX_QUEUE_WAIT_MS, RateLimiter } from '../../src/kube/limiter.ts';
import { RateLimitedError } from '../../src/util/rate-limited.ts';
import { TokenBucket } from '../../src/util/token-bucket.ts';

const never = new AbortController().signal;

describe('token buckets and API budgets', () => {
  test('a bucket gives its burst at once, then qps tokens a second', () => {
    const b = new TokenBucket(10, 3, 0);
    assert.deepEqual([b.tryTake(0), b.tryTake(0), b.tryTake(0)], [0, 0, 0]);
    assert.equal(b.tryTake(0), 100, 'the fourth token comes after 1/qps');
    assert.equal(b.tryTake(100), 0);
    assert.equal(b.reserve(100), 100, 'a reservation queues behind the debt');
    b.refund();
    assert.equal(b.available(200), 1);
  });

  test('a limiter with a maximum wait refuses at once instead of queueing past it, and counts the refusal', async () => {
    let rejected = 0;
    const l = new RateLimiter(1, 1, { maxWaitMs: 200, name: 'test', onReject: () => rejected++ });
    await l.take(never);
    const started = performance.now();
    await assert.rejects(l.take(never), (err: unknown) => err instanceof RateLimitedError && err.retryAfterSeconds === 1 && /test budget is spent/.test(err.message));
    assert.ok(performance.now() - started < 50, 'refused without waiting');
    assert.equal(rejected, 1);
    // Within the maximum wait a caller does wait for its token.
    const short = new RateLimiter(20, 1, { maxWaitMs: 200 });
    await short.take(never);
    const t0 = performance.now();
    await short.take(never);
    assert.ok(performance.now() - t0 >= 40, 'waited for the next token');
  });

  test('budgets are separate: a flood spends the TokenReview budget, access reviews and object reads answer at once', async () => {
    const seen: string[] = [];
    const budgets = new Budgets(20, 20, (b) => seen.push(b));
    // 25 % of 20: 5 TokenReviews at once, then 5 a second. 30 at once: those that would queue past a
    // second are refused at once instead of waiting.
    const t0 = performance.now();
    const flood = await Promise.allSettled(Array.from({ length: 30 }, () => budgets.take('tokenreview', AbortSignal.timeout(5_000))));
    const refused = flood.filter((r) => r.status === 'rejected');
    assert.ok(refused.length >= 19 && refused.length <= 21, `${refused.length} refused`);
    assert.ok(refused.every((r) => r.status === 'rejected' && r.reason instanceof RateLimitedError));
    assert.ok(performance.now() - t0 < 1_500, 'nobody waited much more than a second');
    assert.ok(seen.every((b) => b === 'tokenreview') && seen.length === refused.length);
    const t1 = performance.now();
    await budgets.take('access', never);
    await budgets.take('objects', never);
    await budgets.take('webhook', never);
    assert.ok(performance.now() - t1 < 50, 'other budgets answer at once');
    assert.equal(MAX_QUEUE_WAIT_MS, 1_000);
  });

  test('a waiting call gives its token back when its caller leaves', async () => {
    const l = new RateLimiter(2, 1);
    await l.take(never);
    const ac = new AbortController();
    const waiting = l.take(ac.signal);
    ac.abort(new Error('left'));
    await assert.rejects(waiting, /left/);
    // The refund means the next caller waits one interval, not two.
    const t0 = performance.now();
    await l.take(never);
    assert.ok(performance.now() - t0 < 700, `${performance.now() - t0} ms`);
  });
});

describe('the per-client limit on unknown tokens', () => {
  test('each client address has its own bucket; past it, 429 with a Retry-After', () => {
    let rejects = 0;
    const limiter = new ClientLimiter({ qps: 1, burst: 2, onReject: () => rejects++ });
    limiter.admit('10.0.0.1');
    limiter.admit('10.0.0.1');
    assert.throws(() => limiter.admit('10.0.0.1'), (err: unknown) => err instanceof RateLimitedError && err.retryAfterSeconds >= 1);
    limiter.admit('10.0.0.2');
    assert.equal(rejects, 1);
  });

  test('memory is bounded: only the most recent clients are remembered', () => {
    const limiter = new ClientLimiter({ qps: 1, burst: 1, maxClients: 2 });
    limiter.admit('a');
    limiter.admit('b');
    limiter.admit('c'); // a is forgotten
    limiter.admit('a'); // starts afresh
    assert.throws(() => limiter.admit('c'));
  });
});
