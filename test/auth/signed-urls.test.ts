import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { describe, test } from 'node:test';
import { keyRingSigner } from '../../src/auth/signed-urls.ts';

const B64URL = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
/** The base64url character with the same four high bits and other padding bits. */
const flipPadding = (c: string): string => B64URL[B64URL.indexOf(c) ^ 1]!;

describe('the gateway MAC (keyRingSigner)', () => {
  const ring = { current: randomBytes(32) };
  const signer = keyRingSigner(() => ring);
  const parts = ['velero-download-server/url/v1', 'velero', 'nightly-1', 'uid', 'BackupLog', 'nightly', '1800000000'];

  test('a signature verifies for exactly its parts', () => {
    const sig = signer.sign(parts);
    assert.match(sig, /^[A-Za-z0-9_-]{43}$/);
    assert.equal(signer.verify(parts, sig), true);
    assert.equal(signer.verify([...parts.slice(0, -1), '1800000001'], sig), false);
    assert.equal(signer.verify(parts.slice(0, -1), sig), false);
  });

  test('parts are length-prefixed: moving text between neighbours changes the signature', () => {
    assert.notEqual(signer.sign(['ab', 'c']), signer.sign(['a', 'bc']));
    assert.notEqual(signer.sign(['a', '']), signer.sign(['a']));
    // Multi-byte characters count as bytes.
    assert.notEqual(signer.sign(['é', 'x']), signer.sign(['\u00e9x', '']));
  });

  test('altered, non-canonical, malformed signatures and other keys are refused', () => {
    const sig = signer.sign(parts);
    const middle = `${sig.slice(0, 20)}${sig[20] === 'A' ? 'B' : 'A'}${sig.slice(21)}`;
    for (const [what, s] of [
      ['altered', middle],
      // The last character's two low bits are padding: flipping them must not give a second spelling.
      ['non-canonical', `${sig.slice(0, -1)}${flipPadding(sig.at(-1)!)}`],
      ['too short', sig.slice(0, -1)],
      ['not base64url', `${sig.slice(0, -1)}!`],
      ['empty', ''],
    ] as const) {
      assert.equal(signer.verify(parts, s), false, what);
    }
    assert.equal(keyRingSigner(() => ({ current: randomBytes(32) })).verify(parts, sig), false, 'another key');
  });

  test('after a rotation the previous key still verifies; two rotations later it does not', () => {
    const old = { current: randomBytes(32) };
    const sig = keyRingSigner(() => old).sign(parts);
    const rotated = { current: randomBytes(32), previous: old.current };
    assert.equal(keyRingSigner(() => rotated).verify(parts, sig), true);
    assert.notEqual(keyRingSigner(() => rotated).sign(parts), sig, 'new signatures use the new key');
    assert.equal(keyRingSigner(() => ({ current: randomBytes(32), previous: rotated.current })).verify(parts, sig), false);
  });
});
