import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { describe, test } from 'node:test';
import type { KeyRing } from '../../src/auth/signed-urls.ts';
import { MAX_COOKIE_VALUE, SESSION_COOKIE, SessionCodec, formTokenMatches, newFormToken, sessionCookieOf } from '../../src/server/ui/session.ts';
import { escapeHtml, html } from '../../src/server/ui/html.ts';

const TOKEN = 'eyJhbGciOiJSUzI1NiJ9.payload-of-a-service-account-token.signature_0123456789';
const HOUR = 3600_000;

function ring(): { keys: KeyRing; get: () => KeyRing } {
  const keys: KeyRing = { current: randomBytes(32) };
  return { keys, get: () => keys };
}

describe('browser sessions (ui/session.ts)', () => {
  test('a sealed token opens with the same keys, with its end; the value does not hold the token in clear', () => {
    const r = ring();
    let now = 1_800_000_000_000;
    const codec = new SessionCodec(r.get, () => now);
    const value = codec.seal(TOKEN, 8 * HOUR);
    assert.ok(!value.includes(TOKEN) && !value.includes('payload-of-a'), 'the token is encrypted');
    assert.match(value, /^v1\.[A-Za-z0-9_-]{8}\./);
    const s = codec.open(value);
    assert.deepEqual(s, { token: TOKEN, expiresAt: Math.floor((now + 8 * HOUR) / 1000) * 1000, stale: false });
    // Two seals of one token differ (a fresh IV each time).
    assert.notEqual(codec.seal(TOKEN, 8 * HOUR), value);
    now += 8 * HOUR - 1000;
    assert.equal(codec.open(value)?.token, TOKEN, 'still open a second before its end');
    now += 1000;
    assert.equal(codec.open(value), undefined, 'ended at its maximum age');
  });

  test('any altered byte, another key, a wrong shape or version opens to nothing', () => {
    const r = ring();
    const codec = new SessionCodec(r.get);
    const value = codec.seal(TOKEN, HOUR);
    const parts = value.split('.');
    // Flip one character in each part after the version, keeping the alphabet.
    for (let p = 1; p < parts.length; p++) {
      for (const at of [0, Math.floor(parts[p]!.length / 2), parts[p]!.length - 1]) {
        const c = parts[p]![at]!;
        const altered = [...parts];
        altered[p] = parts[p]!.slice(0, at) + (c === 'A' ? 'B' : 'A') + parts[p]!.slice(at + 1);
        assert.equal(codec.open(altered.join('.')), undefined, `part ${p} at ${at}`);
      }
    }
    assert.equal(new SessionCodec(ring().get).open(value), undefined, 'another gateway\'s keys');
    for (const bad of ['', 'v1', `v2${value.slice(2)}`, `${value}.x`, value.replace(/\./g, ','), 'x'.repeat(MAX_COOKIE_VALUE + 1), `${value}\n`]) {
      assert.equal(codec.open(bad), undefined, JSON.stringify(bad.slice(0, 40)));
    }
    assert.equal(codec.open(undefined), undefined);
  });

  test('a cookie sealed before a rotation opens while its key verifies, marked stale; after, never', () => {
    const keys: KeyRing = { current: randomBytes(32) };
    const codec = new SessionCodec(() => keys);
    const before = codec.seal(TOKEN, HOUR);
    const old = keys.current;
    keys.current = randomBytes(32);
    keys.previous = old;
    assert.deepEqual({ ...codec.open(before), expiresAt: 0 }, { token: TOKEN, expiresAt: 0, stale: true });
    assert.equal(codec.open(codec.seal(TOKEN, HOUR))?.stale, false);
    delete keys.previous;
    assert.equal(codec.open(before), undefined, 'its key left the ring');
  });

  test('the session key is not the signing key: a value sealed with the raw key does not open', async () => {
    // The derivation's label separates the two uses; a codec over the same ring opens its own only.
    const r = ring();
    const a = new SessionCodec(r.get).seal(TOKEN, HOUR);
    const { createCipheriv } = await import('node:crypto');
    const iv = randomBytes(12);
    const id = a.split('.')[1]!;
    const cipher = createCipheriv('aes-256-gcm', r.keys.current, iv);
    cipher.setAAD(Buffer.from(`v1.${id}`));
    const body = Buffer.concat([cipher.update(JSON.stringify({ t: TOKEN, i: 1, e: 4_000_000_000 })), cipher.final()]);
    const forged = `v1.${id}.${iv.toString('base64url')}.${body.toString('base64url')}.${cipher.getAuthTag().toString('base64url')}`;
    assert.equal(new SessionCodec(r.get).open(forged), undefined);
  });

  test('a token too long for a cookie is refused when sealed, not cut', () => {
    const codec = new SessionCodec(ring().get);
    assert.throws(() => codec.seal('a'.repeat(3000), HOUR), RangeError);
    assert.ok(codec.seal('a'.repeat(2000), HOUR).length <= MAX_COOKIE_VALUE);
  });

  test('form tokens: equal well-formed values match; anything else does not', () => {
    const t = newFormToken();
    assert.match(t, /^[A-Za-z0-9_-]{43}$/);
    assert.equal(formTokenMatches(t, t), true);
    assert.equal(formTokenMatches(t, newFormToken()), false);
    assert.equal(formTokenMatches(undefined, t), false);
    assert.equal(formTokenMatches(t, undefined), false);
    assert.equal(formTokenMatches(t, [t]), false, 'a repeated field (an array) is not a token');
    assert.equal(formTokenMatches('short', 'short'), false);
    assert.equal(formTokenMatches(`${t}x`, `${t}x`), false);
  });

  test('the session cookie is found in a Cookie header among others, and only by its exact name', () => {
    assert.equal(sessionCookieOf(`a=1; ${SESSION_COOKIE}=v1.abc; b=2`), 'v1.abc');
    assert.equal(sessionCookieOf('a=1'), undefined);
    assert.equal(sessionCookieOf(`x${SESSION_COOKIE}=v1.abc`), undefined);
    assert.equal(sessionCookieOf(undefined), undefined);
  });
});

describe('page HTML (ui/html.ts)', () => {
  test('every interpolated value is escaped unless it is Html made by the template', () => {
    const hostile = '"><script>alert(1)</script><a href=\'x\'>&';
    const out = html`<td title="${hostile}">${hostile}</td>${html`<b>${hostile}</b>`}${[hostile, html`<i>ok</i>`]}${undefined}${false}${0}`.text;
    assert.ok(!out.includes('<script>'));
    assert.equal(out, `<td title="${escapeHtml(hostile)}">${escapeHtml(hostile)}</td><b>${escapeHtml(hostile)}</b>${escapeHtml(hostile)}<i>ok</i>0`);
    assert.equal(escapeHtml(`<>&"'`), '&lt;&gt;&amp;&quot;&#39;');
  });
});
