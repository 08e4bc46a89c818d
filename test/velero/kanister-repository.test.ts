/**
 * The repository under a Kanister Profile: the root path's rules and Kanister's join, and the password
 * Secret's rules (type, exactly one key, bounds), each refusal naming what is wrong and nothing of a
 * Secret's contents.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { ProfileLocation } from '../../src/velero/kanister-profiles.ts';
import {
  KOPIA_PASSWORD_KEY,
  KOPIA_PASSWORD_SECRET_TYPE,
  MAX_PASSWORD_BYTES,
  MAX_ROOT_PATH,
  PASSWORD_SECRET_ANNOTATION,
  ROOT_PATH_ANNOTATION,
  profileRepositoryOf,
  repositoryPrefix,
} from '../../src/velero/kanister-repository.ts';
import { KanisterLocationError } from '../../src/velero/kanister.ts';
import { NotFoundError, RepositoryPasswordUnavailableError } from '../../src/velero/errors.ts';

const signal = new AbortController().signal;
const location = (prefix: string): ProfileLocation => ({ namespace: 'team-a', profile: 'p', prefix, spec: { name: 'team-a/p', provider: 'aws', bucket: 'b', prefix: '', config: {} } });

describe('the root path', () => {
  test('joined under the location prefix as path.Join(prefix, rootPath) + "/"', () => {
    for (const [prefix, root, want] of [
      ['', '', ''],
      ['kanister/', '', 'kanister/'],
      ['kanister/', 'repo', 'kanister/repo/'],
      ['kanister/', 'repo/monitoring/', 'kanister/repo/monitoring/'],
      ['', 'repo', 'repo/'],
      ['a/b/', 'with space/ünï', 'a/b/with space/ünï/'],
      ['a/b/', '...x/..y', 'a/b/...x/..y/'],
    ] as const) {
      assert.equal(repositoryPrefix(location(prefix), root, 'here'), want, `${prefix} + ${root}`);
    }
  });

  test('refused when it could leave the prefix or is not plain text', () => {
    for (const root of ['..', '../x', 'a/../../b', 'a/..', './a', 'a/./b', '/abs', '/', 'a//b', '//', 'a\\..\\b', 'a\0b', 'a\nb', 'a\u202eb', 'x'.repeat(MAX_ROOT_PATH + 1)]) {
      assert.throws(() => repositoryPrefix(location('kanister/'), root, 'profile team-a/p'), (err: Error) => {
        assert.ok(err instanceof KanisterLocationError, JSON.stringify(root));
        assert.ok(err.message.startsWith(`profile team-a/p: the annotation ${ROOT_PATH_ANNOTATION}`), err.message);
        assert.ok(root.length < 3 || !err.message.includes(root), 'the value is not echoed');
        return true;
      });
    }
  });
});

describe('the password Secret', () => {
  const annotations = { [PASSWORD_SECRET_ANNOTATION]: 'pw', [ROOT_PATH_ANNOTATION]: 'repo/' };
  const secret = (data: Record<string, Uint8Array>, type: string | null = KOPIA_PASSWORD_SECRET_TYPE) => ({ ...(type !== null && { type }), data });

  test('of Kanister\'s type with exactly repo-password gives the repository', async () => {
    const asked: string[] = [];
    const repo = await profileRepositoryOf(location('k/'), annotations, (name) => (asked.push(name), Promise.resolve(secret({ [KOPIA_PASSWORD_KEY]: Buffer.from('pässwörd') }))), signal);
    assert.deepEqual(asked, ['pw']);
    assert.equal(repo.prefix, 'k/repo/');
    assert.equal(repo.password, 'pässwörd');
    assert.equal(repo.location.profile, 'p');
  });

  test('no annotation: NotFoundError naming it, nothing read', async () => {
    let reads = 0;
    await assert.rejects(
      profileRepositoryOf(location(''), { [ROOT_PATH_ANNOTATION]: 'x' }, () => (reads++, Promise.resolve(undefined)), signal),
      (err: Error) => err instanceof NotFoundError && err.message.includes(PASSWORD_SECRET_ANNOTATION) && err.details.group === 'cr.kanister.io',
    );
    assert.equal(reads, 0);
  });

  test('a bad root path is refused before the Secret is read', async () => {
    let reads = 0;
    await assert.rejects(profileRepositoryOf(location(''), { ...annotations, [ROOT_PATH_ANNOTATION]: '../x' }, () => (reads++, Promise.resolve(undefined)), signal), KanisterLocationError);
    assert.equal(reads, 0);
  });

  test('refusals (the password cannot be had) name the Secret and the rule, never its type, keys or values', async () => {
    const value = 'the-secret-value-0123';
    const cases: [string, ReturnType<typeof secret> | undefined, RegExp][] = [
      ['missing', undefined, /"pw" does not exist/],
      ['Opaque', secret({ [KOPIA_PASSWORD_KEY]: Buffer.from(value) }, 'Opaque'), /is not of type secrets\.kanister\.io\/kopia-repository\/password/],
      ['no type', secret({ [KOPIA_PASSWORD_KEY]: Buffer.from(value) }, null), /is not of type/],
      ['a token Secret', secret({ token: Buffer.from(value) }, 'kubernetes.io/service-account-token'), /is not of type/],
      ['an extra key', secret({ [KOPIA_PASSWORD_KEY]: Buffer.from(value), 'leaky-key-name': Buffer.from(value) }), /exactly one key, repo-password/],
      ['another key', secret({ 'leaky-key-name': Buffer.from(value) }), /exactly one key, repo-password/],
      ['empty', secret({ [KOPIA_PASSWORD_KEY]: Buffer.alloc(0) }), /must hold in repo-password 1 to 4096 bytes/],
      ['too long', secret({ [KOPIA_PASSWORD_KEY]: Buffer.alloc(MAX_PASSWORD_BYTES + 1, 0x61) }), /must hold in repo-password 1 to 4096 bytes/],
      ['not UTF-8', secret({ [KOPIA_PASSWORD_KEY]: Buffer.from([0x61, 0xff, 0xfe]) }), /must hold UTF-8/],
    ];
    for (const [name, given, message] of cases) {
      await assert.rejects(profileRepositoryOf(location(''), annotations, () => Promise.resolve(given), signal), (err: Error) => {
        assert.ok(err instanceof RepositoryPasswordUnavailableError, name);
        assert.match(err.message, message, name);
        for (const leak of [value, 'leaky-key-name', 'Opaque', 'service-account-token']) assert.ok(!err.message.includes(leak), `${name}: ${leak}`);
        return true;
      });
    }
  });

  test('a name that is not a Secret name of this namespace is refused unread', async () => {
    for (const name of ['other-ns/pw', '../pw', 'PW', '', 'a'.repeat(254)]) {
      let reads = 0;
      await assert.rejects(profileRepositoryOf(location(''), { [PASSWORD_SECRET_ANNOTATION]: name }, () => (reads++, Promise.resolve(undefined)), signal), KanisterLocationError, name);
      assert.equal(reads, 0, name);
    }
  });
});
