/** The Secret's layout (key `users`, the seed form's host keys) and the file follower's swaps. */
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile, rename } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { followAccessUserFile, parseAccessUserSecret } from '../../src/auth/access-user-source.ts';
import type { AccessUserFollower, AccessUsersLoaded } from '../../src/auth/access-user-source.ts';

const b64 = (n: number, fill: number): string => Buffer.alloc(n, fill).toString('base64');
const HASH = `scrypt$16384$8$1$${b64(32, 1)}$${b64(32, 2)}`;
const data = (m: Record<string, string>): Record<string, string> => Object.fromEntries(Object.entries(m).map(([k, v]) => [k, Buffer.from(v).toString('base64')]));

describe('parseAccessUserSecret', () => {
  test('key users holds <user>@<host> lines; other keys are ignored and named unless a seed user name is set', () => {
    const r = parseAccessUserSecret(data({ users: `ci@jenkins: ${HASH}\n# comment\nbad line\n`, 'build-01': HASH }), {});
    assert.deepEqual(r.table.names(), ['ci@jenkins']);
    assert.deepEqual(
      r.problems.map((p) => p.entry),
      ['key build-01', 'users line 3'],
    );
  });

  test('with a seed user name, other keys are hosts of that user; users lines keep their own names', () => {
    const r = parseAccessUserSecret(data({ users: `ci@jenkins: ${HASH}\n`, 'build-01': HASH, 'build-02': 'bare-password' }), { seedUsername: 'robot' });
    assert.deepEqual(r.table.names().sort(), ['ci@jenkins', 'robot@build-01']);
    assert.deepEqual(r.problems, [{ entry: 'robot@build-02', problem: 'a plaintext password, and plaintext passwords are not enabled' }]);
    const plain = parseAccessUserSecret(data({ 'build-02': 'bare-password' }), { seedUsername: 'robot', allowPlaintext: true });
    assert.deepEqual(plain.table.names(), ['robot@build-02']);
  });

  test('a name given both ways is skipped altogether, the others kept', () => {
    const r = parseAccessUserSecret(data({ users: `robot@build-01: ${HASH}\nci@jenkins: ${HASH}\n`, 'build-01': HASH }), { seedUsername: 'robot' });
    assert.deepEqual(r.table.names(), ['ci@jenkins']);
    assert.deepEqual(r.problems.map((p) => p.entry), ['robot@build-01']);
  });

  test('no data, a deleted key: no users, no problems', () => {
    assert.equal(parseAccessUserSecret(undefined, {}).table.size, 0);
    assert.deepEqual(parseAccessUserSecret({}, {}).problems, []);
  });

  test('a Secret at the API server\'s 1 MiB limit: every entry parsed, hostile values refused by name, none echoed', () => {
    const lines: string[] = [];
    let size = 0;
    for (let i = 0; size < 1024 * 1024 - 200; i++) {
      const line = i % 100 === 99 ? `huge${i}@h: scrypt$1048576$8$1$${b64(32, 1)}$${b64(32, 2)}` : `u${i}@h: ${HASH}`;
      lines.push(line);
      size += line.length + 1;
    }
    const r = parseAccessUserSecret(data({ users: lines.join('\n') }), {});
    assert.equal(r.table.size + r.problems.length, lines.length);
    assert.ok(r.problems.length > 0 && r.problems.every((p) => p.entry.startsWith('huge') && /scrypt N/.test(p.problem)));
    const big = parseAccessUserSecret(data({ users: `one@h: plain$${'x'.repeat(900_000)}` }), { allowPlaintext: true });
    assert.equal(big.table.size, 0);
    assert.equal(big.problems[0]?.entry, 'one@h');
    assert.ok(!JSON.stringify(big.problems).includes('xxxx'));
  });
});

describe('followAccessUserFile', () => {
  test('reads at once, swaps on change, an unreadable file is no users (reported once), then back', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'vds-au-file-'));
    const file = join(dir, 'users');
    const events: AccessUsersLoaded[] = [];
    let follower: AccessUserFollower | undefined;
    try {
      await writeFile(file, `a@h: ${HASH}\n`);
      follower = await followAccessUserFile(file, '--access-users-file', { parse: {}, onLoaded: (e) => events.push(e), intervalMs: 20 });
      assert.deepEqual(follower.table().names(), ['a@h']);
      const until = async (check: () => boolean): Promise<void> => {
        for (let i = 0; i < 400 && !check(); i++) await new Promise((r) => setTimeout(r, 10));
        assert.ok(check());
      };
      await writeFile(`${file}.tmp`, `b@h: ${HASH}\nc@h: ${HASH}\n`);
      await rename(`${file}.tmp`, file);
      await until(() => follower!.table().size === 2);
      await rm(file);
      await until(() => follower!.table().size === 0);
      await new Promise((r) => setTimeout(r, 100));
      assert.equal(events.filter((e) => e.event === 'unreadable').length, 1);
      assert.match(events.find((e) => e.event === 'unreadable')?.detail ?? '', /--access-users-file names a file that does not exist/);
      // Atomically, as above (and as the kubelet swaps a mounted Secret): a write in place can be read
      // half done, as an empty table for a moment, which is what the file says at that moment.
      await writeFile(`${file}.tmp`, `d@h: ${HASH}\n`);
      await rename(`${file}.tmp`, file);
      await until(() => follower!.table().has('d@h'));
      assert.deepEqual(events.map((e) => [e.event, e.users]), [['loaded', 1], ['loaded', 2], ['unreadable', 0], ['loaded', 1]]);
    } finally {
      await follower?.stop();
      await rm(dir, { recursive: true, force: true });
    }
  });

  test('the first read must succeed: a missing file or a device fails at once, naming the flag', async () => {
    await assert.rejects(followAccessUserFile('/nonexistent/users', '--access-users-file', { parse: {}, onLoaded: () => undefined }), /--access-users-file names a file that does not exist/);
    await assert.rejects(followAccessUserFile('/dev/zero', '--access-users-file', { parse: {}, onLoaded: () => undefined }), /--access-users-file names a character device/);
  });
});
