import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { describe, test } from 'node:test';
import { signPath, verifySignature } from '../../src/auth/signed-urls.ts';

const PATH = '/v1/namespaces/velero/downloadrequests/nightly-1234';
const NOW = 1_800_000_000;

function parts(url: string): { path: string; expires: string; signature: string } {
  const u = new URL(url, 'https://gw.example');
  return { path: u.pathname, expires: u.searchParams.get('expires')!, signature: u.searchParams.get('signature')! };
}

const B64URL = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
/** The base64url character with the same four high bits and other padding bits. */
const flipPadding = (c: string): string => B64URL[B64URL.indexOf(c) ^ 1]!;

describe('signed URLs', () => {
  const keys = { current: randomBytes(32) };

  test('a fresh URL verifies', () => {
    const p = parts(signPath(keys, PATH, NOW + 600));
    assert.deepEqual(verifySignature(keys, p.path, p.expires, p.signature, NOW), { ok: true });
  });

  test('expired, altered path, altered expiry, altered signature, wrong key: refused with a reason', () => {
    const p = parts(signPath(keys, PATH, NOW + 600));
    const cases: [string, ReturnType<typeof verifySignature>, RegExp][] = [
      ['expired', verifySignature(keys, p.path, p.expires, p.signature, NOW + 601), /expired/],
      ['altered path', verifySignature(keys, PATH.replace('nightly', 'weekly'), p.expires, p.signature, NOW), /does not match/],
      ['altered expiry', verifySignature(keys, p.path, String(NOW + 6000), p.signature, NOW), /does not match/],
      // A middle character: every bit of it is significant.
      ['altered signature', verifySignature(keys, p.path, p.expires, `${p.signature.slice(0, 20)}${p.signature[20] === 'A' ? 'B' : 'A'}${p.signature.slice(21)}`, NOW), /does not match/],
      // The last character's two low bits are padding: flipping them must not give a second valid spelling.
      ['non-canonical signature', verifySignature(keys, p.path, p.expires, `${p.signature.slice(0, -1)}${flipPadding(p.signature.at(-1)!)}`, NOW), /signature/],
      ['wrong key', verifySignature({ current: randomBytes(32) }, p.path, p.expires, p.signature, NOW), /does not match/],
      ['missing expires', verifySignature(keys, p.path, undefined, p.signature, NOW), /expires/],
      ['garbage signature', verifySignature(keys, p.path, p.expires, 'not-base64!', NOW), /signature/],
    ];
    for (const [name, verdict, reason] of cases) {
      assert.equal(verdict.ok, false, name);
      if (!verdict.ok) assert.match(verdict.reason, reason, name);
    }
  });

  test('after a rotation, URLs signed with the previous key stay valid until they expire', () => {
    const old = { current: randomBytes(32) };
    const p = parts(signPath(old, PATH, NOW + 600));
    const rotated = { current: randomBytes(32), previous: old.current };
    assert.equal(verifySignature(rotated, p.path, p.expires, p.signature, NOW).ok, true);
    assert.equal(verifySignature(rotated, p.path, p.expires, p.signature, NOW + 601).ok, false);
    // Two rotations later the old key is gone.
    assert.equal(verifySignature({ current: randomBytes(32), previous: rotated.current }, p.path, p.expires, p.signature, NOW).ok, false);
  });
});
