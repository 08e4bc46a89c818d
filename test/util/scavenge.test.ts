import assert from 'node:assert/strict';
import { constants, PerformanceObserver } from 'node:perf_hooks';
import type { PerformanceEntry } from 'node:perf_hooks';
import { test } from 'node:test';
import { SCAVENGE_EVERY_BYTES, bodyBytesPassed } from '../../src/util/scavenge.ts';

/** The forced GCs (gc() calls, not V8's own) that ran while `fn` did, by kind. */
async function forcedGcs(fn: () => void): Promise<{ minor: number; major: number }> {
  const entries: PerformanceEntry[] = [];
  const obs = new PerformanceObserver((list) => entries.push(...list.getEntries()));
  obs.observe({ entryTypes: ['gc'] });
  fn();
  await new Promise((resolve) => setTimeout(resolve, 50));
  obs.disconnect();
  const detail = (e: PerformanceEntry): { kind: number; flags: number } => (e as PerformanceEntry & { detail: { kind: number; flags: number } }).detail;
  const forced = entries.filter((e) => (detail(e).flags & constants.NODE_PERFORMANCE_GC_FLAGS_FORCED) !== 0);
  const kind = (e: PerformanceEntry): number => detail(e).kind;
  return {
    minor: forced.filter((e) => kind(e) === constants.NODE_PERFORMANCE_GC_MINOR).length,
    major: forced.filter((e) => kind(e) === constants.NODE_PERFORMANCE_GC_MAJOR).length,
  };
}

test('one scavenge per SCAVENGE_EVERY_BYTES of body bytes passed on, and nothing in between', async () => {
  const chunk = 16 * 1024;
  // Up to one chunk short of the step: no forced GC.
  assert.deepEqual(await forcedGcs(() => {
    for (let n = chunk; n < SCAVENGE_EVERY_BYTES; n += chunk) bodyBytesPassed(chunk);
  }), { minor: 0, major: 0 });
  // The chunk that completes the step: one scavenge, never a full GC.
  assert.deepEqual(await forcedGcs(() => bodyBytesPassed(chunk)), { minor: 1, major: 0 });
  // Three more steps in one go of chunks: three scavenges.
  assert.deepEqual(await forcedGcs(() => {
    for (let n = 0; n < 3 * SCAVENGE_EVERY_BYTES; n += chunk) bodyBytesPassed(chunk);
  }), { minor: 3, major: 0 });
});

test('no context made after loading gets a gc of its own', async () => {
  const { runInNewContext } = await import('node:vm');
  assert.equal(runInNewContext('typeof gc'), 'undefined');
  assert.equal(typeof (globalThis as { gc?: unknown }).gc, 'undefined');
});
