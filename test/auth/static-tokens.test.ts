import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { StaticTokenAuthenticator, ensureTokenFile } from '../../src/auth/static-tokens.ts';

const signal = new AbortController().signal;

describe('StaticTokenAuthenticator', () => {
  const csv = 'tok-alice,alice,uid-1,"group1,group2"\n# a comment\ntok-bob,bob,uid-2\n';

  test('known tokens map to their user with uid and groups', async () => {
    const a = StaticTokenAuthenticator.parse(csv);
    assert.deepEqual(a.authenticate('tok-alice', signal), { username: 'alice', uid: 'uid-1', groups: ['group1', 'group2'] });
    assert.deepEqual(a.authenticate('tok-bob', signal), { username: 'bob', uid: 'uid-2', groups: [] });
  });

  test('unknown, empty and prefix tokens are not users', async () => {
    const a = StaticTokenAuthenticator.parse(csv);
    for (const t of ['tok-carol', '', 'tok-alic', 'tok-alicee', 'TOK-ALICE']) assert.equal(a.authenticate(t, signal), null, t);
  });

  test('malformed files are refused with messages that never contain a token', () => {
    for (const text of ['only-a-token\n', 'tok-secret-1,user\n', '', '"unterminated,user,uid\n']) {
      assert.throws(
        () => StaticTokenAuthenticator.parse(text, 'tokens.csv'),
        (err: Error) => err.message.startsWith('tokens.csv') && !err.message.includes('tok-secret-1') && !err.message.includes('only-a-token'),
      );
    }
  });

  test('an aborted signal fails fast', () => {
    const ac = new AbortController();
    ac.abort();
    assert.throws(() => StaticTokenAuthenticator.parse(csv).authenticate('tok-alice', ac.signal));
  });
});

describe('ensureTokenFile', () => {
  test('creates a 0600 file once with a strong token, then leaves it alone', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'vds-tok-'));
    try {
      const path = join(dir, 'state', 'tokens.csv');
      assert.equal(await ensureTokenFile(path), true);
      const first = await readFile(path, 'utf8');
      assert.equal((await stat(path)).mode & 0o777, 0o600);
      assert.equal(await ensureTokenFile(path), false);
      assert.equal(await readFile(path, 'utf8'), first);
      const token = first.split(',')[0]!;
      assert.ok(token.length >= 43, 'at least 256 bits of base64url');
      assert.equal((await StaticTokenAuthenticator.fromFile(path).then((a) => a.authenticate(token, signal)))?.username, 'local-admin');
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
