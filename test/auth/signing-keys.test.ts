/**
 * The URL-signing keys in their Secret, against the Kubernetes API test double with the real client
 * library: creation (and replicas racing to create), rotation (and replicas racing to rotate), the
 * rotation guarantee (a key keeps verifying on every replica for at least the longest URL lifetime
 * plus the refresh interval after it stopped signing), a refused short rotation period, a deleted
 * Secret, a hand-written one. Clocks are injected: no test waits for a rotation period.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, beforeEach, describe, test } from 'node:test';
import { keyRingSigner } from '../../src/auth/signed-urls.ts';
import type { KeyRing } from '../../src/auth/signed-urls.ts';
import {
  CLOCK_SKEW_MS,
  DEFAULT_MAX_URL_LIFETIME_MS,
  DEFAULT_REFRESH_MS,
  KEY_BYTES,
  NEXT_ANNOUNCED_AT_ANNOTATION,
  ROTATED_AT_ANNOTATION,
  SIGNING_KEY_SECRET,
  SigningKeySource,
  announceLeadMs,
  minRotationPeriodMs,
} from '../../src/auth/signing-keys.ts';
import type { SigningKeyEvent, SigningKeyOptions } from '../../src/auth/signing-keys.ts';
import { createKubeClients } from '../../src/kube/client.ts';
import type { KubeClients } from '../../src/kube/client.ts';
import { MAX_SIGNED_URL_SECONDS } from '../../src/velero/downloadrequests.ts';
import { startKubeApiServer } from '../support/kube-apiserver/index.ts';
import type { KubeApiServer, KubeObject } from '../support/kube-apiserver/index.ts';

const NS = 'velero';
const MIN_PERIOD = minRotationPeriodMs(DEFAULT_MAX_URL_LIFETIME_MS, DEFAULT_REFRESH_MS);
const LEAD = announceLeadMs(DEFAULT_REFRESH_MS);
const DAY = 24 * 3600_000;
const b64 = (b: Buffer): string => b.toString('base64');

describe('SigningKeySource', () => {
  let api: KubeApiServer;
  let dir: string;
  let kube: KubeClients;
  before(async () => {
    api = await startKubeApiServer({ velero: false });
    dir = await mkdtemp(join(tmpdir(), 'vds-keys-'));
    const file = await api.writeKubeconfig(join(dir, 'kubeconfig'), api.kubeconfig(api.tokens.serviceAccount(NS, 'velero-download-server')));
    kube = createKubeClients({ kubeconfig: file, qps: 10_000, burst: 10_000, timeoutMs: 5000 });
  });
  after(async () => {
    await api.close();
    await rm(dir, { recursive: true, force: true });
  });
  beforeEach(() => {
    api.remove('v1', 'Secret', SIGNING_KEY_SECRET, NS);
    api.faults.clear();
    api.calls.clear();
  });

  const secret = (): KubeObject | undefined => api.get('v1', 'Secret', SIGNING_KEY_SECRET, NS);
  const data = (key: string): Buffer | undefined => {
    const v = (secret()?.data as Record<string, string> | undefined)?.[key];
    return v === undefined ? undefined : Buffer.from(v, 'base64');
  };
  /** One replica, with its own clock. */
  const replica = (now: () => number, opts: Partial<SigningKeyOptions> = {}): { src: SigningKeySource; events: SigningKeyEvent[] } => {
    const events: SigningKeyEvent[] = [];
    return { src: new SigningKeySource(kube, { namespace: NS, now, onEvent: (e) => events.push(e), ...opts }), events };
  };
  const verifies = (ring: KeyRing, key: Buffer): boolean => ring.current.equals(key) || (ring.previous?.equals(key) ?? false);

  test('the default URL lifetime is the webhook\'s cap', () => {
    assert.equal(DEFAULT_MAX_URL_LIFETIME_MS, MAX_SIGNED_URL_SECONDS * 1000);
  });

  test('refuses a rotation period shorter than the longest URL lifetime plus the refresh interval (plus announcement and clock skew)', () => {
    assert.equal(MIN_PERIOD, DEFAULT_MAX_URL_LIFETIME_MS + 2 * DEFAULT_REFRESH_MS + 3 * CLOCK_SKEW_MS);
    for (const rotateAfterMs of [0, 60_000, DEFAULT_MAX_URL_LIFETIME_MS, DEFAULT_MAX_URL_LIFETIME_MS + DEFAULT_REFRESH_MS, MIN_PERIOD - 1, Number.NaN]) {
      assert.throws(() => new SigningKeySource(kube, { namespace: NS, rotateAfterMs }), RangeError, String(rotateAfterMs));
    }
    // A longer URL lifetime or refresh interval raises the floor.
    assert.throws(() => new SigningKeySource(kube, { namespace: NS, rotateAfterMs: MIN_PERIOD, refreshMs: DEFAULT_REFRESH_MS + 1 }), RangeError);
    assert.throws(() => new SigningKeySource(kube, { namespace: NS, rotateAfterMs: MIN_PERIOD, maxUrlLifetimeMs: DEFAULT_MAX_URL_LIFETIME_MS + 1 }), RangeError);
    assert.doesNotThrow(() => new SigningKeySource(kube, { namespace: NS, rotateAfterMs: MIN_PERIOD }));
    assert.doesNotThrow(() => new SigningKeySource(kube, { namespace: NS }));
    assert.equal(api.calls.count(), 0);
  });

  test('creates the Secret with one random key; other replicas load it; replicas starting together create it once', async () => {
    const t = Date.now();
    const starts = await Promise.all([0, 1, 2].map(async () => {
      const r = replica(() => t);
      await r.src.refresh();
      return r;
    }));
    assert.deepEqual(api.calls.list({ resource: 'secrets', verb: 'create' }).map((c) => c.code).sort(), [201, 409, 409]);
    const current = data('current')!;
    assert.equal(current.length, KEY_BYTES);
    assert.equal(data('previous'), undefined);
    assert.equal(secret()!.metadata.annotations?.[ROTATED_AT_ANNOTATION], new Date(t).toISOString());
    assert.equal(secret()!.metadata.labels?.['app.kubernetes.io/managed-by'], 'velero-download-server');
    for (const r of starts) assert.ok(r.src.keys.current.equals(current));
    assert.deepEqual(starts.map((r) => r.events.map((e) => e.action)).flat().sort(), ['created', 'loaded', 'loaded']);
    assert.ok(starts.every((r) => r.events.every((e) => !JSON.stringify(e).includes(b64(current)))), 'events never carry the key');
  });

  test('rotates in two steps: the next key is announced (verifies everywhere) before it signs; the old key keeps verifying', async () => {
    let t = Date.now();
    const a = replica(() => t);
    const b = replica(() => t);
    await a.src.refresh();
    await b.src.refresh();
    // What the gateway signs (URLs, requester records) with the keys each replica holds at that moment.
    const parts = ['velero-download-server/url/v1', NS, 'dr-log', 'uid', 'BackupLog', 'nightly'];
    const sign = (ring: KeyRing): string => keyRingSigner(() => ring).sign(parts);
    const old = a.src.keys.current;
    const signedOld = sign(a.src.keys);

    t += DAY - LEAD - 1;
    await a.src.refresh();
    assert.equal(data('next'), undefined, 'nothing announced before its time');
    t += 1;
    await a.src.refresh();
    const next = data('next')!;
    assert.equal(next.length, KEY_BYTES);
    assert.ok(a.src.keys.current.equals(old), 'the announced key does not sign yet');
    assert.ok(a.src.keys.previous?.equals(next), 'but verifies');
    assert.equal(secret()!.metadata.annotations?.[NEXT_ANNOUNCED_AT_ANNOTATION], new Date(t).toISOString());
    await b.src.refresh();
    assert.ok(b.src.keys.previous?.equals(next), 'the other replica verifies it too once it re-read the Secret');

    t += LEAD - 1;
    await a.src.refresh();
    assert.ok(a.src.keys.current.equals(old), 'not rotated a millisecond before the lead');
    t += 1;
    await a.src.refresh();
    assert.ok(a.src.keys.current.equals(next));
    assert.ok(a.src.keys.previous?.equals(old));
    assert.ok(data('previous')?.equals(old));
    assert.equal(data('next'), undefined);
    assert.equal(secret()!.metadata.annotations?.[ROTATED_AT_ANNOTATION], new Date(t).toISOString());
    assert.equal(secret()!.metadata.annotations?.[NEXT_ANNOUNCED_AT_ANNOTATION], undefined);

    // A URL the rotating replica signs now verifies on the other before it re-reads the Secret,
    const signedNew = sign(a.src.keys);
    // and a URL signed with the old key verifies on both.
    for (const [signature, r] of [[signedNew, b], [signedOld, a], [signedOld, b]] as const) {
      const keys = r.src.keys;
      assert.equal(keyRingSigner(() => keys).verify(parts, signature), true);
    }
    await b.src.refresh();
    assert.ok(b.src.keys.current.equals(next) && b.src.keys.previous?.equals(old));
    assert.deepEqual(a.events.map((e) => e.action), ['created', 'announced', 'rotated']);
    assert.deepEqual(b.events.map((e) => e.action), ['loaded', 'changed']);
  });

  test('replicas finding a step due at once take it once', async () => {
    let t = Date.now();
    const rs = [replica(() => t), replica(() => t), replica(() => t)];
    for (const r of rs) await r.src.refresh();
    const first = rs[0]!.src.keys.current;
    api.calls.clear();
    t += DAY - LEAD;
    await Promise.all(rs.map((r) => r.src.refresh()));
    const next = data('next')!;
    t += LEAD;
    await Promise.all(rs.map((r) => r.src.refresh()));
    assert.deepEqual(api.calls.list({ resource: 'secrets', verb: 'update' }).map((c) => c.code), [200, 409, 409, 200, 409, 409]);
    for (const r of rs) {
      assert.ok(r.src.keys.current.equals(next), 'the announced key signs');
      assert.ok(r.src.keys.previous?.equals(first), 'the key of before still verifies: no second rotation');
    }
    assert.deepEqual(rs.flatMap((r) => r.events).filter((e) => e.action !== 'loaded' && e.action !== 'created' && e.action !== 'changed').map((e) => e.action).sort(), ['announced', 'rotated']);
  });

  test('whatever the replicas do, a key verifies everywhere for as long as a URL it signed lives', async () => {
    // Six replicas over three rotation periods, on one simulated clock: the shortest allowed period
    // and longer ones, clocks up to 30 s apart, each refreshing every 30 s at its own phase, one
    // starting late, one stopping early. Every 6 s each running replica signs a URL with its key;
    // every URL must verify on every running replica from the moment it is signed until it
    // expires, by the verifier's clock.
    const STEP = 6_000;
    const t0 = Date.now();
    let t = t0;
    const specs = [
      { skew: 0, period: MIN_PERIOD, from: 0, to: Infinity },
      { skew: 15_000, period: MIN_PERIOD, from: 0, to: Infinity },
      { skew: -15_000, period: MIN_PERIOD + 7_000, from: 0, to: Infinity },
      { skew: 10_000, period: DAY, from: 0, to: Infinity },
      { skew: -5_000, period: MIN_PERIOD, from: 40, to: Infinity },
      { skew: 5_000, period: MIN_PERIOD, from: 0, to: 120 },
    ];
    const replicas = specs.map((s) => ({ ...s, ...replica(() => t + s.skew, { rotateAfterMs: s.period }), started: false }));
    const urls: { key: Buffer; expires: number; by: number }[] = [];
    const steps = Math.ceil((3 * MIN_PERIOD) / STEP);
    const rotations: number[] = [];
    let checks = 0;
    for (let i = 0; i < steps; i++, t += STEP) {
      for (const [n, r] of replicas.entries()) {
        if (i < r.from || i >= r.to) continue;
        // Each replica refreshes every 30 s (every fifth step), at its own phase.
        if (!r.started || (i + n) % (DEFAULT_REFRESH_MS / STEP) === 0) {
          const before = data('current');
          await r.src.refresh();
          r.started = true;
          if (before !== undefined && !data('current')!.equals(before)) rotations.push(t);
        }
        urls.push({ key: r.src.keys.current, expires: t + r.skew + DEFAULT_MAX_URL_LIFETIME_MS, by: n });
      }
      for (const [n, r] of replicas.entries()) {
        if (!r.started || i >= r.to) continue;
        for (const u of urls) {
          if (u.expires <= t + r.skew) continue;
          checks++;
          assert.ok(verifies(r.src.keys, u.key), `step ${i}: replica ${n} no longer verifies a key replica ${u.by} signed with, ${Math.round((u.expires - t - r.skew) / 1000)} s before the URL expires`);
        }
      }
    }
    console.log(`${steps} steps of ${STEP / 1000} s, ${rotations.length} rotations at ${rotations.map((r) => `+${Math.round((r - t0) / 1000)} s`).join(', ')}, ${urls.length} URLs signed, ${checks} verifications`);
    assert.ok(rotations.length >= 2, `the keys were rotated (${rotations.length} times)`);
    for (let k = 1; k < rotations.length; k++) assert.ok(rotations[k]! - rotations[k - 1]! >= MIN_PERIOD - 2 * CLOCK_SKEW_MS, 'never two rotations within the shortest period (less the clock skew)');
    assert.ok(checks > 10_000, `${checks} verifications`);
  });

  test('what the two steps and the period prevent: a key signing before others verify it, a key dropped too soon', async () => {
    // A writer that rotates a new key straight in: a replica that has not re-read the Secret
    // cannot verify what the writer's replica signs now.
    let t = Date.now();
    const b = replica(() => t);
    await b.src.refresh();
    const straightIn = Buffer.alloc(KEY_BYTES, 7);
    const s0 = secret()!;
    api.put({ ...s0, data: { current: b64(straightIn), previous: (s0.data as Record<string, string>).current! } });
    assert.equal(verifies(b.src.keys, straightIn), false);
    // A writer that rotates twice within a URL's lifetime: a new replica no longer verifies the first key.
    const a = replica(() => t);
    await a.src.refresh();
    const signedWith = a.src.keys.current;
    for (let k = 0; k < 2; k++) {
      const s = secret()!;
      api.put({ ...s, data: { current: b64(Buffer.alloc(KEY_BYTES, k + 1)), previous: (s.data as Record<string, string>).current! }, metadata: { ...s.metadata, annotations: { [ROTATED_AT_ANNOTATION]: new Date(t).toISOString() } } });
      t += 60_000;
    }
    const fresh = replica(() => t);
    await fresh.src.refresh();
    assert.equal(verifies(fresh.src.keys, signedWith), false);
  });

  test('a deleted Secret is recreated with the keys the recreating replica had', async () => {
    let t = Date.now();
    const a = replica(() => t);
    const b = replica(() => t);
    await a.src.refresh();
    t += DAY;
    await a.src.refresh();
    t += LEAD;
    await a.src.refresh();
    await b.src.refresh();
    const [current, previous] = [a.src.keys.current, a.src.keys.previous!];
    api.remove('v1', 'Secret', SIGNING_KEY_SECRET, NS);
    await a.src.refresh();
    assert.ok(data('current')!.equals(current), 'the same key signs: no URL changes meaning');
    assert.ok(data('previous')!.equals(previous));
    const late = replica(() => t);
    await late.src.refresh();
    await b.src.refresh();
    for (const r of [a, b, late]) assert.ok(verifies(r.src.keys, current) && verifies(r.src.keys, previous));
    assert.deepEqual(a.events.map((e) => e.action), ['created', 'announced', 'rotated', 'created']);
  });

  test('a replica keeps a key it verified with when the Secret is recreated without it', async () => {
    const t = Date.now();
    const a = replica(() => t);
    await a.src.refresh();
    const old = a.src.keys.current;
    // Recreated by someone who knew nothing of the old key (a person, a fresh replica).
    api.remove('v1', 'Secret', SIGNING_KEY_SECRET, NS);
    await replica(() => t).src.refresh();
    assert.equal(data('previous'), undefined);
    await a.src.refresh();
    assert.ok(!a.src.keys.current.equals(old));
    assert.ok(a.src.keys.previous?.equals(old), 'still verifies the key it had');
  });

  test('a hand-written Secret without a rotation time or with a short key is repaired without dropping a key', async () => {
    let t = Date.now();
    const given = Buffer.alloc(KEY_BYTES, 9);
    api.put({ apiVersion: 'v1', kind: 'Secret', type: 'Opaque', metadata: { name: SIGNING_KEY_SECRET, namespace: NS }, data: { current: b64(given) } });
    const a = replica(() => t);
    await a.src.refresh();
    assert.ok(a.src.keys.current.equals(given), 'no rotation: the key may be signing URLs elsewhere');
    assert.equal(secret()!.metadata.annotations?.[ROTATED_AT_ANNOTATION], new Date(t).toISOString(), 'the rotation time is recorded');
    assert.deepEqual(a.events.map((e) => e.action), ['dated']);

    // A short key is replaced at once, through the announcement: it signs until the next key is known everywhere.
    const short = Buffer.from('too-short');
    api.put({ ...secret()!, data: { current: b64(short) } });
    await a.src.refresh();
    assert.ok(a.src.keys.current.equals(short));
    assert.equal(a.src.keys.previous?.length, KEY_BYTES, 'the replacement is announced');
    t += LEAD;
    await a.src.refresh();
    assert.equal(a.src.keys.current.length, KEY_BYTES);
    assert.ok(a.src.keys.previous?.equals(short), 'the short key still verifies what it signed');
  });

  test('start fails when the Secret cannot be read; a later failed refresh keeps the keys and is reported', async () => {
    const fault = api.faults.add({ match: { resource: 'secrets' }, status: 403 });
    const errors: Error[] = [];
    const a = replica(Date.now, { onError: (e) => errors.push(e), refreshMs: 20, rotateAfterMs: minRotationPeriodMs(DEFAULT_MAX_URL_LIFETIME_MS, 20) });
    await assert.rejects(a.src.start(), /reading Secret velero\/velero-download-server-signing-key failed \(HTTP 403\)/);
    assert.throws(() => a.src.keys, /not loaded/);
    fault.remove();
    await a.src.start();
    const keys = a.src.keys;
    api.faults.add({ match: { resource: 'secrets' }, status: 503 });
    // The timer refreshes every 20 ms here; wait for its failure to be reported.
    const deadline = Date.now() + 3000;
    while (errors.length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    a.src.stop();
    assert.match(errors[0]?.message ?? '', /failed \(HTTP 503\); keeping the keys in hand/);
    assert.equal(a.src.keys, keys);
  });
});
