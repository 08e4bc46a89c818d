/**
 * Namespace-scoped multi-tenancy: tenants keep BSLs, Backups and Secrets in their own
 * namespaces; the gateway gives exactly the isolation RBAC gives, never lends its own credential, and
 * audits every download.
 */
import assert from 'node:assert/strict';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import request from 'supertest';
import { group, user } from '../support/kube-apiserver/index.ts';
import { kubeFixture, velero } from '../support/kube-fixture.ts';
import type { KubeFixture } from '../support/kube-fixture.ts';
import { binary } from '../support/http.ts';
import { inProcessGateway } from '../support/in-process.ts';
import { startGateway } from '../support/processes.ts';
import type { InProcessGateway } from '../support/in-process.ts';

const TENANTS = ['team-a', 'team-b', 'team-c'] as const;
const ADMIN_NS = 'velero';
const b64 = (s: string): string => Buffer.from(s).toString('base64');
/** The Status message of a body collected as bytes. */
const message = (b: unknown): string => (JSON.parse(Buffer.from(b as Buffer).toString()) as { message: string }).message;

describe('multi-tenancy', () => {
  let fx: KubeFixture;
  let gw: InProcessGateway;
  const tokens: Record<string, string> = {};
  const body = (ns: string): Buffer => Buffer.from(`log of ${ns}\n`);

  async function tenantBackup(ns: string, opts: { credential?: boolean; provider?: string } = {}): Promise<void> {
    const bucket = `bucket-${ns}`;
    await mkdir(join(fx.fsRoot, bucket, 'backups', `${ns}-nightly`), { recursive: true });
    await writeFile(join(fx.fsRoot, bucket, 'backups', `${ns}-nightly`, `${ns}-nightly-logs.gz`), body(ns));
    fx.api.put({ apiVersion: 'v1', kind: 'Secret', metadata: { name: 'creds', namespace: ns }, data: { cloud: b64('tenant-credential') } });
    fx.api.put(
      velero(
        'BackupStorageLocation',
        'default',
        { provider: opts.provider ?? 'replicated.com/hostpath', objectStorage: { bucket }, ...(opts.credential !== false && { credential: { name: 'creds', key: 'cloud' } }) },
        ns,
      ),
    );
    fx.api.put(velero('Backup', `${ns}-nightly`, { storageLocation: 'default' }, ns));
  }

  before(async () => {
    fx = await kubeFixture();
    for (const ns of TENANTS) {
      await tenantBackup(ns);
      tokens[ns] = fx.api.tokens.user(`user-${ns}`, [`${ns}-members`]);
      fx.api.rbac.grant(group(`${ns}-members`), [{ apiGroups: ['velero.io'], resources: ['backups/log'], verbs: ['get'] }], ns);
    }
    // The admin may read logs everywhere (a ClusterRole bound cluster-wide).
    tokens.admin = fx.api.tokens.user('backup-admin', []);
    fx.api.rbac.grant(user('backup-admin'), [{ apiGroups: ['velero.io'], resources: ['backups/log'], verbs: ['get'] }]);
    // The admin namespace's own backup is the fixture's "nightly".
    await writeFile(join(fx.dir, 'default-credentials'), '[default]\naws_access_key_id=GATEWAY\naws_secret_access_key=GATEWAY-SECRET\n');
    gw = await inProcessGateway(
      fx.args(
        '--watch-namespaces', 'team-*',
        // team-a and team-late get two entries: a namespace may repeat.
        '--tenant-filesystem-allow', 'team-a=bucket-team-a,team-b=bucket-team-b,team-c=bucket-team-c,team-late=bucket-team-late,team-sneaky=bucket-team-sneaky,team-a=shared',
        '--audit-log', join(fx.dir, 'audit.log'),
        '--default-credentials-file', join(fx.dir, 'default-credentials'),
      ),
    );
  });
  after(() => fx.close());

  const get = (token: string, ns: string, name: string) =>
    binary(request(gw.app).get(`/v1/namespaces/${ns}/backups/${name}/log`).set('Authorization', `Bearer ${token}`));

  test('the isolation matrix: every user × every namespace', async () => {
    const targets: [ns: string, backup: string][] = [[ADMIN_NS, 'nightly'], ...TENANTS.map((ns) => [ns, `${ns}-nightly`] as [string, string])];
    for (const who of [...TENANTS, 'admin']) {
      for (const [ns, backup] of targets) {
        const expected = who === 'admin' || who === ns ? 200 : 403;
        const res = await get(tokens[who]!, ns, backup);
        assert.equal(res.status, expected, `${who} → ${ns}/${backup}: ${res.text}`);
        if (expected === 200 && ns !== ADMIN_NS) assert.deepEqual(res.body, body(ns));
        // A denied caller learns nothing: a missing backup in the same namespace looks the same.
        if (expected === 403) assert.equal((await get(tokens[who]!, ns, 'no-such-backup')).status, 403);
      }
    }
  });

  test('namespaces outside --watch-namespaces are not served, even to the admin', async () => {
    fx.api.put(velero('Backup', 'x', { storageLocation: 'default' }, 'other'));
    const res = await get(tokens.admin!, 'other', 'x');
    assert.equal(res.status, 404);
    assert.match(message(res.body), /namespace "other" is not served/);
  });

  test('a namespace created after start that matches the glob is served', async () => {
    await tenantBackup('team-late');
    fx.api.rbac.grant(group('late-members'), [{ apiGroups: ['velero.io'], resources: ['backups/log'], verbs: ['get'] }], 'team-late');
    const token = fx.api.tokens.user('late-user', ['late-members']);
    const res = await get(token, 'team-late', 'team-late-nightly');
    assert.equal(res.status, 200, res.text);
  });

  test('a tenant BSL without its own credential is refused, although the default credential would work', async () => {
    await tenantBackup('team-nocred', { credential: false });
    const res = await get(tokens.admin!, 'team-nocred', 'team-nocred-nightly');
    assert.equal(res.status, 403);
    assert.match(message(res.body), /needs its own credential/);
    // The admin namespace's BSL, also without a credential, still works.
    assert.equal((await get(tokens.admin!, ADMIN_NS, 'nightly')).status, 200);
  });

  test('a reference into another namespace is refused, whatever the object says', async () => {
    await tenantBackup('team-sneaky');
    fx.api.put(
      velero('BackupStorageLocation', 'default', { provider: 'replicated.com/hostpath', objectStorage: { bucket: 'bucket-team-sneaky' }, credential: { name: 'creds', key: 'cloud', namespace: ADMIN_NS } }, 'team-sneaky'),
    );
    const res = await get(tokens.admin!, 'team-sneaky', 'team-sneaky-nightly');
    assert.equal(res.status, 403);
    assert.match(message(res.body), /refers to namespace "velero"/);
  });

  describe('--tenant-filesystem-allow: which namespace may use which filesystem bucket', () => {
    /** A BSL `name` in `ns` on filesystem bucket `bucket`, a backup `backup` on it, and its log on disk. */
    async function onBucket(ns: string, name: string, bucket: string, backup: string): Promise<Buffer> {
      const bytes = Buffer.from(`${backup} in ${bucket}\n`);
      await mkdir(join(fx.fsRoot, bucket, 'backups', backup), { recursive: true });
      await writeFile(join(fx.fsRoot, bucket, 'backups', backup, `${backup}-logs.gz`), bytes);
      fx.api.put({ apiVersion: 'v1', kind: 'Secret', metadata: { name: 'creds', namespace: ns }, data: { cloud: b64('tenant-credential') } });
      fx.api.put(velero('BackupStorageLocation', name, { provider: 'replicated.com/nfs', objectStorage: { bucket }, credential: { name: 'creds', key: 'cloud' } }, ns));
      fx.api.put(velero('Backup', backup, { storageLocation: name }, ns));
      return bytes;
    }
    /** The Status of a refusal: 403, reason Forbidden, naming namespace, location and bucket. */
    function assertNotGranted(res: { status: number; body: unknown }, ns: string, bsl: string, bucket: string): void {
      assert.equal(res.status, 403);
      const status = JSON.parse(Buffer.from(res.body as Buffer).toString()) as { kind: string; reason: string; code: number; message: string };
      assert.deepEqual([status.kind, status.reason, status.code], ['Status', 'Forbidden', 403]);
      assert.equal(
        status.message,
        `backupstoragelocation "${bsl}" in namespace "${ns}" uses filesystem bucket ${JSON.stringify(bucket)} (provider "replicated.com/nfs"), ` +
          `which --tenant-filesystem-allow does not grant to namespace "${ns}" (e.g. --tenant-filesystem-allow ${ns}=<bucket>)`,
      );
    }

    test('a granted bucket is served, the second one of a namespace too', async () => {
      const bytes = await onBucket('team-a', 'shared', 'shared', 'on-shared');
      const res = await get(tokens['team-a']!, 'team-a', 'on-shared');
      assert.equal(res.status, 200);
      assert.deepEqual(res.body, bytes);
    });

    test("another namespace's bucket is refused, although its files are there", async () => {
      await onBucket('team-a', 'borrowed', 'bucket-team-b', 'stolen');
      assertNotGranted(await get(tokens.admin!, 'team-a', 'stolen'), 'team-a', 'borrowed', 'bucket-team-b');
    });

    test('a granted bucket is refused to another namespace, even a watched one', async () => {
      await onBucket('team-d', 'default', 'bucket-team-a', 'team-d-nightly');
      assertNotGranted(await get(tokens.admin!, 'team-d', 'team-d-nightly'), 'team-d', 'default', 'bucket-team-a');
    });

    test('buckets are compared as written: a path that climbs to another bucket is not the granted one', async () => {
      fx.api.put(velero('BackupStorageLocation', 'climbing', { provider: 'replicated.com/nfs', objectStorage: { bucket: 'bucket-team-a/../bucket-team-b' }, credential: { name: 'creds', key: 'cloud' } }, 'team-a'));
      fx.api.put(velero('Backup', 'climbs', { storageLocation: 'climbing' }, 'team-a'));
      assertNotGranted(await get(tokens.admin!, 'team-a', 'climbs'), 'team-a', 'climbing', 'bucket-team-a/../bucket-team-b');
    });

    test('without the flag no tenant may use a filesystem bucket; the own namespace always may', async () => {
      const strict = await inProcessGateway(fx.args('--watch-namespaces', 'team-*'));
      const res = await request(strict.app).get('/v1/namespaces/team-a/backups/team-a-nightly/log').set('Authorization', `Bearer ${tokens['team-a']}`);
      assert.equal(res.status, 403);
      assert.match((res.body as { message: string }).message, /uses filesystem bucket "bucket-team-a" .* which --tenant-filesystem-allow does not grant to namespace "team-a"/);
      const own = await request(strict.app).get(`/v1/namespaces/${ADMIN_NS}/backups/nightly/log`).set('Authorization', `Bearer ${tokens.admin}`);
      assert.equal(own.status, 200);
      await strict.stop();
    });

    test('the old switch does not start the gateway: exit 2 with the new syntax', async () => {
      const err = await startGateway(fx.args('--watch-namespaces', 'team-*', '--tenant-filesystem-allow')).then(
        async (gw2) => {
          await gw2.stop();
          return assert.fail('the gateway started with --tenant-filesystem-allow alone');
        },
        (e: unknown) => e as Error,
      );
      assert.match(err.message, /exited with 2 before listening/);
      assert.match(err.message, /--tenant-filesystem-allow: "true" no longer lets every namespace use every filesystem bucket; name which namespace may use which bucket: --tenant-filesystem-allow team-a=velero-nfs,team-b=shared \(false or empty: none\)/);
    });
  });

  test('audit lines for allowed and denied downloads, in the log and the audit file, without tokens', async () => {
    await get(tokens['team-a']!, 'team-a', 'team-a-nightly');
    await get(tokens['team-b']!, 'team-a', 'team-a-nightly');
    await request(gw.app).get('/v1/namespaces/team-a/backups/team-a-nightly/log');
    await new Promise((r) => setTimeout(r, 50));
    const lines = (await readFile(join(fx.dir, 'audit.log'), 'utf8'))
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    const forA = lines.filter((l) => l.namespace === 'team-a' && l.target === 'backups/team-a-nightly');
    const allowed = forA.find((l) => l.status === 200 && l.user === 'user-team-a');
    const denied = forA.find((l) => l.status === 403 && l.user === 'user-team-b');
    assert.ok(allowed && denied, JSON.stringify(forA));
    assert.deepEqual(allowed.groups, ['team-a-members', 'system:authenticated']);
    assert.equal(allowed.artifact, 'log');
    assert.equal(allowed.bytes, body('team-a').length);
    assert.equal(typeof allowed.durationMs, 'number');
    assert.ok(allowed.remote);
    assert.ok(lines.some((l) => l.status === 401 && l.user === undefined), 'unauthenticated attempts are audited too');
    assert.ok(gw.logs.some((l) => l.audit === 'download'), 'and in the main log');
    const raw = (await readFile(join(fx.dir, 'audit.log'), 'utf8')) + gw.rawLog();
    for (const t of Object.values(tokens)) assert.ok(!raw.includes(t));
    assert.ok(!raw.includes('GATEWAY-SECRET') && !raw.includes('tenant-credential'));
  });
});
