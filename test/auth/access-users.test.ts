import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { describe, test } from 'node:test';
import {
  AccessUserAuthenticator,
  AccessUserTable,
  AccessUserVerifier,
  FailedAttemptLimiter,
  MAX_BASIC_HEADER,
  decodeBasic,
  deriveKey,
  hashPassword,
  isAccessUserName,
  parseAccessUsers,
  parseBasic,
} from '../../src/auth/access-users.ts';
import type { Derive, KdfSpec } from '../../src/auth/access-users.ts';
import { RateLimitedError } from '../../src/util/rate-limited.ts';

const signal = new AbortController().signal;

/** A fast stand-in for scrypt/pbkdf2 that records every call (never the password). */
function countingDerive(): { derive: Derive; calls: KdfSpec[] } {
  const calls: KdfSpec[] = [];
  const derive: Derive = async (spec, password) => {
    calls.push(spec);
    const params = spec.algorithm === 'scrypt' ? `${spec.N}/${spec.r}/${spec.p}` : `${spec.iterations}`;
    return createHmac('sha256', spec.salt).update(`${spec.algorithm}:${params}:`).update(password).digest().subarray(0, spec.keyLength);
  };
  return { derive, calls };
}

const b64 = (n: number, fill = 7): string => Buffer.alloc(n, fill).toString('base64');
const SALT = b64(32, 1);
const HASH = b64(32, 2);
const basic = (user: string, password: string): string => Buffer.from(`${user}:${password}`, 'utf8').toString('base64');

/** A table with alice (scrypt), bob (pbkdf2) made by hashPassword through the fake derivation. */
async function fixture(extra = ''): Promise<{ table: AccessUserTable; derive: Derive; calls: KdfSpec[] }> {
  const { derive, calls } = countingDerive();
  const alice = await hashPassword('alice-pw', { derive });
  const bob = await hashPassword('bob:pw:with:colons', { algorithm: 'pbkdf2-sha256', derive });
  const { table, problems } = parseAccessUsers({ text: `alice@ci: ${alice}\nbob@laptop: ${bob}\n${extra}` }, { allowPlaintext: true });
  assert.deepEqual(problems, []);
  calls.length = 0;
  return { table, derive, calls };
}

describe('parseAccessUsers', () => {
  test('the text form: scrypt and pbkdf2-sha256 entries, comments, blank lines, CRLF', () => {
    const text = `# users\r\n\r\nalice@ci: scrypt$65536$8$1$${SALT}$${HASH}\r\n  bob@laptop :  pbkdf2-sha256$600000$${SALT}$${HASH}  \n`;
    const { table, problems } = parseAccessUsers({ text });
    assert.deepEqual(problems, []);
    assert.deepEqual(table.names().sort(), ['alice@ci', 'bob@laptop']);
    assert.ok(Object.isFrozen(table));
  });

  test('the data-map form: values as text or bytes', () => {
    const { table, problems } = parseAccessUsers({ data: { 'a@h': `scrypt$16384$8$1$${SALT}$${HASH}`, 'b@h': Buffer.from(`pbkdf2-sha256$100000$${SALT}$${HASH}\n`) } });
    assert.deepEqual(problems, []);
    assert.deepEqual(table.names(), ['a@h', 'b@h']);
  });

  test('plaintext is refused unless the operator opted in, and the refusal does not quote it', () => {
    const text = 'carol@ci: plain$hunter2-secret\n';
    const off = parseAccessUsers({ text });
    assert.equal(off.table.size, 0);
    assert.equal(off.problems.length, 1);
    assert.equal(off.problems[0]!.entry, 'carol@ci');
    assert.ok(!JSON.stringify(off.problems).includes('hunter2'));
    const on = parseAccessUsers({ text }, { allowPlaintext: true });
    assert.deepEqual(on.problems, []);
    assert.deepEqual(on.table.names(), ['carol@ci']);
  });

  test("the seed's form: host names as keys, one user name; bare passwords need the opt-in, hashes do not", () => {
    const data = { 'ci-runner': 'seed-pw-1', 'laptop.example.com': `scrypt$65536$8$1$${SALT}$${HASH}` };
    const off = parseAccessUsers({ data }, { seedUsername: 'backup' });
    assert.deepEqual(off.table.names(), ['backup@laptop.example.com']);
    assert.deepEqual(off.problems.map((p) => p.entry), ['backup@ci-runner']);
    assert.ok(!JSON.stringify(off.problems).includes('seed-pw-1'));
    const on = parseAccessUsers({ data }, { seedUsername: 'backup', allowPlaintext: true });
    assert.deepEqual(on.table.names().sort(), ['backup@ci-runner', 'backup@laptop.example.com']);
    const bad = parseAccessUsers({ data }, { seedUsername: 'has space' });
    assert.equal(bad.table.size, 0);
    assert.equal(bad.problems.length, 1);
  });

  test('malformed values are reported by name without their value; the other entries still work', () => {
    const cases: Record<string, string> = {
      'unknown@h': 'md5$SECRETVALUE1',
      'parts@h': `scrypt$65536$8$${SALT}$${HASH}`,
      'pparts@h': `pbkdf2-sha256$600000$${SALT}$${HASH}$SECRETVALUE2`,
      'badsalt@h': `scrypt$65536$8$1$SECRET*VALUE3$${HASH}`,
      'shortsalt@h': `scrypt$65536$8$1$${b64(8)}$${HASH}`,
      'longhash@h': `pbkdf2-sha256$600000$${SALT}$${b64(65)}`,
      'nothash@h': `scrypt$65536$8$1$${SALT}$`,
      'noncanon@h': `scrypt$65536$8$1$${SALT}$${HASH.slice(0, -2)}B=`,
      'empty@h': '',
      'prefix@h': 'plain',
    };
    const text = Object.entries(cases).map(([k, v]) => `${k}: ${v}`).join('\n') + `\nok@h: scrypt$65536$8$1$${SALT}$${HASH}\nno colon SECRETVALUE4\n`;
    const { table, problems } = parseAccessUsers({ text });
    assert.deepEqual(table.names(), ['ok@h']);
    assert.deepEqual(problems.map((p) => p.entry), [...Object.keys(cases), 'line 12']);
    const report = JSON.stringify(problems);
    for (const secret of ['SECRETVALUE', SALT, HASH, 'md5']) assert.ok(!report.includes(secret), secret);
  });

  test('hostile and too-small costs are refused; the bounds themselves are accepted', () => {
    const refused = [
      `scrypt$262144$8$1`, // N = 2^18
      `scrypt$262144$1$1`, // N = 2^18 even within the memory bound
      `scrypt$8192$8$1`, // N = 2^13
      `scrypt$65535$8$1`, // not a power of two
      `scrypt$65536$17$1`,
      `scrypt$65536$0$1`,
      `scrypt$65536$8$5`,
      `scrypt$131072$16$1`, // 256 MiB
      `scrypt$065536$8$1`,
      `scrypt$99999999999999999999$8$1`,
      `scrypt$-65536$8$1`,
    ].map((c) => `${c}$${SALT}$${HASH}`);
    refused.push(`pbkdf2-sha256$2000001$${SALT}$${HASH}`, `pbkdf2-sha256$99999$${SALT}$${HASH}`, `pbkdf2-sha256$1e6$${SALT}$${HASH}`);
    const data = Object.fromEntries(refused.map((v, i) => [`u${i}@h`, v]));
    const bad = parseAccessUsers({ data });
    assert.equal(bad.table.size, 0);
    assert.equal(bad.problems.length, refused.length);
    const good = parseAccessUsers({ data: { 'a@h': `scrypt$131072$8$4$${SALT}$${HASH}`, 'b@h': `pbkdf2-sha256$2000000$${SALT}$${HASH}`, 'c@h': `scrypt$16384$1$1$${SALT}$${HASH}`, 'd@h': `pbkdf2-sha256$100000$${SALT}$${HASH}` } });
    assert.deepEqual(good.problems, []);
    assert.equal(good.table.size, 4);
  });

  test('names with control characters, ":", spaces, no or two "@", or too long are reported by position, never echoed', () => {
    const v = `scrypt$65536$8$1$${SALT}$${HASH}`;
    const names = ['a\nb@h', 'a@h\u0007', 'a:b@h', 'a b@h', 'ab', 'a@b@h', '@h', 'a@', `${'u'.repeat(65)}@h`, `u@${'h'.repeat(254)}`, 'ü@h'];
    const data = Object.fromEntries([...names.map((n) => [n, v]), ['ok@h', v]]);
    const { table, problems } = parseAccessUsers({ data });
    assert.deepEqual(table.names(), ['ok@h']);
    assert.deepEqual(problems.map((p) => p.entry), names.map((_, i) => `key #${i + 1}`));
    assert.ok(isAccessUserName(`${'u'.repeat(64)}@${'h'.repeat(253)}`));
  });

  test('a name listed twice is skipped altogether and reported once', () => {
    const v = `scrypt$65536$8$1$${SALT}$${HASH}`;
    const { table, problems } = parseAccessUsers({ text: `a@h: ${v}\nb@h: ${v}\na@h: ${v}\na@h: ${v}\n` });
    assert.deepEqual(table.names(), ['b@h']);
    assert.deepEqual(problems.map((p) => p.entry), ['a@h']);
  });

  test('the table does not change when its source map does', () => {
    const entries = new Map(parseAccessUsers({ data: { 'a@h': `scrypt$65536$8$1$${SALT}$${HASH}` } }).table.names().map((n) => [n, { encoded: 'x' }]));
    const table = new AccessUserTable(entries);
    entries.clear();
    assert.equal(table.size, 1);
  });
});

describe('AccessUserVerifier', () => {
  test('right and wrong passwords, one derivation each', async () => {
    const { table, derive, calls } = await fixture();
    const v = new AccessUserVerifier({ derive, cacheTtlMs: 0 });
    assert.equal(await v.verify(table, 'alice@ci', 'alice-pw'), true);
    assert.equal(await v.verify(table, 'alice@ci', 'alice-pW'), false);
    assert.equal(await v.verify(table, 'bob@laptop', 'bob:pw:with:colons'), true);
    assert.equal(await v.verify(table, 'bob@laptop', 'alice-pw'), false);
    assert.equal(await v.verify(table, 'alice@ci', ''), false);
    assert.equal(calls.length, 5);
    assert.deepEqual(calls.map((c) => c.algorithm), ['scrypt', 'scrypt', 'pbkdf2-sha256', 'pbkdf2-sha256', 'scrypt']);
  });

  test('an unknown user, a plaintext entry and an oversized password all cost one scrypt at the default cost', async () => {
    const { table, derive, calls } = await fixture('carol@ci: plain$carol-pw\n');
    const v = new AccessUserVerifier({ derive, cacheTtlMs: 0 });
    assert.equal(await v.verify(table, 'mallory@ci', 'alice-pw'), false);
    assert.equal(await v.verify(table, 'carol@ci', 'carol-pw'), true);
    assert.equal(await v.verify(table, 'carol@ci', 'carol-pX'), false);
    assert.equal(await v.verify(table, 'bob@laptop', 'x'.repeat(2000)), false); // bob is pbkdf2: only the dummy is scrypt
    assert.equal(calls.length, 4);
    for (const c of calls) assert.ok(c.algorithm === 'scrypt' && c.N === 65536 && c.r === 8 && c.p === 1 && c.keyLength === 32);
  });

  test('a success is cached for its TTL; wrong passwords, a changed hash and a removed user are not served from it', async () => {
    const { table, derive, calls } = await fixture();
    let now = 1000;
    const v = new AccessUserVerifier({ derive, cacheTtlMs: 30_000, now: () => now });
    assert.equal(await v.verify(table, 'alice@ci', 'alice-pw'), true);
    assert.equal(await v.verify(table, 'alice@ci', 'alice-pw'), true);
    assert.equal(calls.length, 1, 'the second success is a cache hit');
    assert.equal(await v.verify(table, 'alice@ci', 'wrong'), false);
    assert.equal(calls.length, 2, 'a wrong password always derives');
    now += 30_001;
    assert.equal(await v.verify(table, 'alice@ci', 'alice-pw'), true);
    assert.equal(calls.length, 3, 'expired');
    const rehashed = parseAccessUsers({ text: `alice@ci: ${await hashPassword('alice-pw', { derive })}` }).table;
    calls.length = 0;
    assert.equal(await v.verify(rehashed, 'alice@ci', 'alice-pw'), true);
    assert.equal(calls.length, 1, 'a new hash misses the cache');
    assert.equal(await v.verify(AccessUserTable.EMPTY, 'alice@ci', 'alice-pw'), false, 'removed users are refused at once');
  });

  test('derivations are bounded: a few run, a few wait, the next is refused with RateLimitedError; cache hits pass', async () => {
    const { table, derive } = await fixture();
    const gates: (() => void)[] = [];
    let started = 0;
    const gated: Derive = async (spec, pw) => {
      started++;
      await new Promise<void>((resolve) => gates.push(resolve));
      return derive(spec, pw);
    };
    const v = new AccessUserVerifier({ derive: gated, maxConcurrent: 2, maxQueued: 1 });
    const running = [v.verify(table, 'alice@ci', 'alice-pw'), v.verify(table, 'x@h', 'a'), v.verify(table, 'y@h', 'b')];
    await new Promise((resolve) => setImmediate(resolve));
    assert.equal(started, 2, 'two run, one waits');
    await assert.rejects(v.verify(table, 'z@h', 'c'), RateLimitedError);
    gates.shift()!();
    await new Promise((resolve) => setImmediate(resolve));
    assert.equal(started, 3, 'the waiter takes the freed slot');
    running.push(v.verify(table, 'q@h', 'q'));
    await new Promise((resolve) => setImmediate(resolve));
    assert.equal(started, 3, 'still two running: the next one waits');
    while (gates.length > 0) {
      gates.shift()!();
      await new Promise((resolve) => setImmediate(resolve));
    }
    assert.deepEqual(await Promise.all(running), [true, false, false, false]);
    // alice is cached now: her next check needs no slot even when both are taken.
    const busy = [v.verify(table, 'x@h', 'a'), v.verify(table, 'y@h', 'b'), v.verify(table, 'w@h', 'b')];
    await new Promise((resolve) => setImmediate(resolve));
    assert.equal(await v.verify(table, 'alice@ci', 'alice-pw'), true);
    while (gates.length > 0 || started < 7) {
      gates.shift()?.();
      await new Promise((resolve) => setImmediate(resolve));
    }
    await Promise.all(busy);
  });

  test('the real derivations verify what hashPassword wrote', async () => {
    for (const algorithm of ['scrypt', 'pbkdf2-sha256'] as const) {
      const value = await hashPassword('pässwörd:1', { algorithm });
      assert.match(value, algorithm === 'scrypt' ? /^scrypt\$65536\$8\$1\$[A-Za-z0-9+/]{43}=\$[A-Za-z0-9+/]{43}=$/ : /^pbkdf2-sha256\$600000\$[A-Za-z0-9+/]{43}=\$[A-Za-z0-9+/]{43}=$/);
      const { table, problems } = parseAccessUsers({ text: `u@h: ${value}` });
      assert.deepEqual(problems, []);
      const v = new AccessUserVerifier({ cacheTtlMs: 0 });
      assert.equal(await v.verify(table, 'u@h', 'pässwörd:1'), true, algorithm);
      assert.equal(await v.verify(table, 'u@h', 'passwörd:1'), false, algorithm);
    }
  });

  test('deriveKey matches published vectors (RFC 7914 scrypt, RFC 6070-style pbkdf2-sha256)', async () => {
    // RFC 7914 §12, second vector: "password"/"NaCl", N=1024, r=8, p=16 (below the table's bounds, fine for deriveKey itself).
    const s = await deriveKey({ algorithm: 'scrypt', N: 1024, r: 8, p: 16, salt: Buffer.from('NaCl'), keyLength: 64 }, Buffer.from('password'));
    assert.equal(s.toString('hex').slice(0, 32), 'fdbabe1c9d3472007856e7190d01e9fe');
    // PBKDF2-HMAC-SHA256("password", "salt", 1, 32)
    const p = await deriveKey({ algorithm: 'pbkdf2-sha256', iterations: 1, salt: Buffer.from('salt'), keyLength: 32 }, Buffer.from('password'));
    assert.equal(p.toString('hex'), '120fb6cffcf8b32c43e7225256c4f837a86548c92ccc35480805987cb70be17b');
  });
});

describe('parseBasic', () => {
  test('user and password, split at the first ":", UTF-8, any case of the scheme', () => {
    assert.deepEqual(parseBasic(`Basic ${basic('alice@ci', 'pw')}`), { user: 'alice@ci', password: 'pw' });
    assert.deepEqual(parseBasic(`basic   ${basic('a@h', 'p:w:x')} `), { user: 'a@h', password: 'p:w:x' });
    assert.deepEqual(parseBasic(`BASIC ${basic('ü@h', 'pässwörd')}`), { user: 'ü@h', password: 'pässwörd' });
    assert.deepEqual(parseBasic(`Basic ${basic('a@h', '')}`), { user: 'a@h', password: '' });
    assert.deepEqual(decodeBasic(basic('a@h', 'p')), { user: 'a@h', password: 'p' });
  });

  test('anything else is undefined', () => {
    const bad = [
      undefined,
      '',
      `Bearer ${basic('a@h', 'p')}`,
      'Basic',
      `Basic${basic('a@h', 'p')}`,
      `Basic ${Buffer.from('no-colon').toString('base64')}`,
      `Basic ${basic('', 'p')}`,
      `Basic ${basic('a\tb@h', 'p')}`,
      `Basic ${basic('a@h\u007f', 'p')}`,
      `Basic ${Buffer.from([0x61, 0x3a, 0xff, 0xfe]).toString('base64')}`, // not UTF-8
      'Basic YTpw*', // not base64
      'Basic YTpwx', // impossible length
      `Basic ${basic('a@h', 'p')} extra`,
      `Basic ${basic('a@h', 'x'.repeat(MAX_BASIC_HEADER))}`,
    ];
    bad.push(`Basic${' '.repeat(MAX_BASIC_HEADER)}${basic('a@h', 'p')}`); // short credentials, oversized header
    for (const h of bad) assert.equal(parseBasic(h), undefined, JSON.stringify(h)?.slice(0, 60));
    assert.equal(decodeBasic(basic('a@h', 'x'.repeat(MAX_BASIC_HEADER))), undefined);
    assert.ok(`Basic ${basic('a@h', 'x'.repeat(3000))}`.length <= MAX_BASIC_HEADER);
    assert.notEqual(parseBasic(`Basic ${basic('a@h', 'x'.repeat(3000))}`), undefined);
  });
});

describe('FailedAttemptLimiter', () => {
  test('per user: a burst of failures from many addresses, then a wait; other users unaffected; refills', () => {
    let now = 0;
    const l = new FailedAttemptLimiter({ perUser: { burst: 3, qps: 0.5 }, perClient: { burst: 100, qps: 1 }, now: () => now });
    for (let i = 0; i < 3; i++) assert.equal(l.attempt('a@h', `10.0.0.${i}`).waitMs, 0);
    assert.equal(l.attempt('a@h', '10.0.0.9').waitMs, 2000);
    assert.equal(l.attempt('b@h', '10.0.0.9').waitMs, 0);
    now += 2000;
    assert.equal(l.attempt('a@h', '10.0.0.9').waitMs, 0);
  });

  test('per client: a burst of failures over many users, then a wait; other clients unaffected', () => {
    const l = new FailedAttemptLimiter({ perUser: { burst: 100, qps: 1 }, perClient: { burst: 2, qps: 0.25 }, now: () => 0 });
    assert.equal(l.attempt('a@h', 'x').waitMs, 0);
    assert.equal(l.attempt('b@h', 'x').waitMs, 0);
    assert.equal(l.attempt('c@h', 'x').waitMs, 4000);
    assert.equal(l.attempt('c@h', 'y').waitMs, 0);
  });

  test('a refused attempt takes nothing; a released (successful) one gives its tokens back', () => {
    const l = new FailedAttemptLimiter({ perUser: { burst: 1, qps: 1 }, perClient: { burst: 1, qps: 1 }, now: () => 0 });
    assert.equal(l.attempt('a@h', 'x').waitMs, 0); // spends client x
    assert.notEqual(l.attempt('b@h', 'x').waitMs, 0); // refused by the client: b's token is not taken
    assert.equal(l.attempt('b@h', 'y').waitMs, 0);
    for (let i = 0; i < 5; i++) {
      const slot = l.attempt('c@h', 'z');
      assert.ok('release' in slot);
      slot.release();
    }
  });

  test('memory is bounded: only the most recent users and clients are remembered', () => {
    const l = new FailedAttemptLimiter({ max: 5, now: () => 0 });
    for (let i = 0; i < 100; i++) l.attempt(`u${i}@h`, `10.0.${i}.1`);
    assert.deepEqual(l.size, { users: 5, clients: 5 });
  });
});

describe('AccessUserAuthenticator', () => {
  test('valid Basic credentials become the access user, in the access-users group', async () => {
    const { table, derive } = await fixture();
    const a = new AccessUserAuthenticator({ table: () => table, verifier: new AccessUserVerifier({ derive }) });
    assert.deepEqual(await a.authenticate(basic('alice@ci', 'alice-pw'), signal, '10.0.0.1'), {
      username: 'velero-download-server:alice@ci',
      groups: ['velero-download-server:access-users'],
    });
    assert.deepEqual((await a.authenticate(basic('bob@laptop', 'bob:pw:with:colons'), signal))?.username, 'velero-download-server:bob@laptop');
  });

  test('wrong, unknown and malformed credentials are null', async () => {
    const { table, derive } = await fixture();
    const a = new AccessUserAuthenticator({ table: () => table, verifier: new AccessUserVerifier({ derive }) });
    for (const t of [basic('alice@ci', 'nope'), basic('mallory@ci', 'alice-pw'), basic('alice', 'alice-pw'), 'not base64!', '']) {
      assert.equal(await a.authenticate(t, signal, '10.0.0.1'), null, t);
    }
  });

  test('the table is read per attempt: a removed user is refused at once, a new one accepted', async () => {
    const { table, derive } = await fixture();
    let current = table;
    const a = new AccessUserAuthenticator({ table: () => current, verifier: new AccessUserVerifier({ derive }) });
    assert.notEqual(await a.authenticate(basic('alice@ci', 'alice-pw'), signal), null);
    current = parseAccessUsers({ text: `dave@ci: ${await hashPassword('dave-pw', { derive })}` }).table;
    assert.equal(await a.authenticate(basic('alice@ci', 'alice-pw'), signal), null);
    assert.notEqual(await a.authenticate(basic('dave@ci', 'dave-pw'), signal), null);
  });

  test('failed attempts end in RateLimitedError with Retry-After; successes do not spend the budget', async () => {
    const { table, derive, calls } = await fixture();
    const limiter = new FailedAttemptLimiter({ perUser: { burst: 2, qps: 0.1 }, perClient: { burst: 100, qps: 1 }, now: () => 0 });
    const a = new AccessUserAuthenticator({ table: () => table, verifier: new AccessUserVerifier({ derive }), limiter });
    for (let i = 0; i < 5; i++) assert.notEqual(await a.authenticate(basic('alice@ci', 'alice-pw'), signal, 'c'), null);
    assert.equal(await a.authenticate(basic('alice@ci', 'guess1'), signal, 'c'), null);
    assert.equal(await a.authenticate(basic('alice@ci', 'guess2'), signal, 'c'), null);
    const before = calls.length;
    await assert.rejects(a.authenticate(basic('alice@ci', 'alice-pw'), signal, 'c'), (err: unknown) => {
      assert.ok(err instanceof RateLimitedError);
      assert.equal(err.retryAfterSeconds, 10);
      assert.ok(!err.message.includes('alice-pw'));
      return true;
    });
    assert.equal(calls.length, before, 'a limited attempt derives nothing');
    assert.notEqual(await a.authenticate(basic('bob@laptop', 'bob:pw:with:colons'), signal, 'c'), null);
  });

  test('claimed names that cannot be users share one per-user budget (no bucket per sprayed name)', async () => {
    const { table, derive } = await fixture();
    const limiter = new FailedAttemptLimiter({ perUser: { burst: 2, qps: 0.1 }, perClient: { burst: 100, qps: 1 }, now: () => 0 });
    const a = new AccessUserAuthenticator({ table: () => table, verifier: new AccessUserVerifier({ derive }), limiter });
    assert.equal(await a.authenticate(basic('no-host-1', 'p'), signal, 'c'), null);
    assert.equal(await a.authenticate(basic('no host 2', 'p'), signal, 'c'), null);
    await assert.rejects(a.authenticate(basic('no-host-3', 'p'), signal, 'c'), RateLimitedError);
    assert.equal(limiter.size.users, 1);
    assert.notEqual(await a.authenticate(basic('alice@ci', 'alice-pw'), signal, 'c'), null);
  });

  test('a check refused for being busy does not count as a failed attempt', async () => {
    const { table } = await fixture();
    const limiter = new FailedAttemptLimiter({ perUser: { burst: 1, qps: 0.1 }, perClient: { burst: 1, qps: 0.1 }, now: () => 0 });
    const busy = new AccessUserVerifier({ derive: () => new Promise<Buffer>(() => undefined), maxConcurrent: 1, maxQueued: 0 });
    void busy.verify(table, 'x@h', 'p'); // holds the only slot for ever
    const a = new AccessUserAuthenticator({ table: () => table, verifier: busy, limiter });
    await assert.rejects(a.authenticate(basic('alice@ci', 'alice-pw'), signal, 'c'), (err: unknown) => err instanceof RateLimitedError && err.message.includes('at once'));
    assert.equal(limiter.attempt('alice@ci', 'c').waitMs, 0, 'the tokens were given back');
  });

  test('an aborted signal fails fast', async () => {
    const ac = new AbortController();
    ac.abort();
    await assert.rejects(new AccessUserAuthenticator({ table: () => AccessUserTable.EMPTY }).authenticate(basic('a@h', 'p'), ac.signal));
  });
});
