/**
 * End to end: access users (`user@host`, HTTP Basic) against the real gateway process in local mode,
 * driven by the real curl with `-u`: downloads, refusals, the failed-attempt limits per user and per
 * client address (each test speaks from its own loopback address, so their budgets stay apart), the
 * logs (never the password), and the table file changed under a running download.
 */
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { hashPassword } from '../../src/auth/access-users.ts';
import { stringify } from 'yaml';
import { curl, curlLive, freePort, putBackupContents, startGateway, startLocalGateway } from '../support/processes.ts';
import type { GatewayProcess } from '../support/processes.ts';
import { missingTools, startRealCluster } from '../support/real-cluster.ts';
import type { RealCluster } from '../support/real-cluster.ts';
import { BACKUP, GATEWAY_SA, NS, RESTORE, eventually, grant, installVelero } from '../support/real-velero.ts';
import type { RealVelero } from '../support/real-velero.ts';

const PASSWORD = 'correct:horse:battery wörd';
const OTHER_PASSWORD = 'second-user-password-7f3a';
const BIG = 'big-backup';
const BIG_SIZE = 24 * 1024 * 1024;

interface Answer {
  code: string;
  body: Buffer;
  headers: string;
}

/** curl from loopback address 127.0.0.<n> (so each test has its own per-address budget): status, body, headers. */
async function fetchAs(cacert: string, n: number, url: string, ...args: string[]): Promise<Answer> {
  const r = await curl(['--cacert', cacert, '--interface', `127.0.0.${n}`, '-D', '-', '-w', '\n%{http_code}', ...args, url]);
  const text = r.stdout;
  const nl = text.lastIndexOf(0x0a);
  const end = text.indexOf('\r\n\r\n');
  return { code: text.subarray(nl + 1).toString(), headers: text.subarray(0, end).toString(), body: text.subarray(end + 4, nl) };
}

const sha256 = async (p: string): Promise<string> => createHash('sha256').update(await readFile(p)).digest('hex');

/**
 * Fails until the gateway answers 429; returns the failures it took. A budget of `burst` refilled at
 * `qps` allows `burst` failures plus what was refilled meanwhile, and no more.
 */
async function failUntil429(burst: number, qps: number, attempt: (i: number) => Promise<string>): Promise<number> {
  const started = performance.now();
  for (let i = 0; ; i++) {
    const code = await attempt(i);
    if (code === '429') {
      const refilled = ((performance.now() - started) / 1000) * qps;
      assert.ok(i >= burst && i <= burst + Math.ceil(refilled) + 1, `429 after ${i} failures (burst ${burst}, ${refilled.toFixed(1)} refilled)`);
      return i;
    }
    assert.equal(code, '401', `attempt ${i}`);
  }
}

/** No form of any of `secrets` in `output`. */
function assertNoSecrets(output: string, secrets: string[], users: string[]): void {
  for (const secret of secrets) {
    const forms = [secret, Buffer.from(secret).toString('base64'), encodeURIComponent(secret), ...users.map((u) => Buffer.from(`${u}:${secret}`).toString('base64'))];
    for (const form of forms) assert.ok(!output.includes(form), `a secret reached the log (${form.slice(0, 6)}…)`);
  }
}

describe('access users in local mode, end to end', () => {
  let dir: string;
  let gw: GatewayProcess;
  let cacert: string;
  let usersFile: string;
  let ciHash: string;
  let opsHash: string;
  let bigPath: string;
  const log = (): string => `${gw.url}/v1/namespaces/velero/backups/demo-backup/log`;
  const get = (n: number, url: string, ...args: string[]): Promise<Answer> => fetchAs(cacert, n, url, ...args);
  const users = async (text: string): Promise<void> => {
    // Replaced atomically, as an editor or a mounted Secret would.
    const tmp = `${usersFile}.tmp`;
    await writeFile(tmp, text);
    await rename(tmp, usersFile);
  };

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'vds-access-users-'));
    usersFile = join(dir, 'access-users');
    ciHash = await hashPassword(PASSWORD);
    opsHash = await hashPassword(OTHER_PASSWORD, { algorithm: 'pbkdf2-sha256' });
    await writeFile(usersFile, `# CI\nci@jenkins: ${ciHash}\nbroken@jenkins: scrypt$1024$8$1$c2FsdA==$aGFzaA==\nops@laptop: ${opsHash}\n`);
    ({ gw, cacert } = await startLocalGateway(dir, '--access-users-file', usersFile));
    bigPath = await putBackupContents(join(dir, 'data'), BIG, randomBytes(BIG_SIZE));
  });

  after(async () => {
    await gw?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  test('curl -u user@host:password downloads the demo log byte for byte; the access and audit lines name the user', async () => {
    const r = await get(2, log(), '-u', `ci@jenkins:${PASSWORD}`);
    assert.equal(r.code, '200', r.body.toString());
    assert.deepEqual(r.body, await readFile(join(dir, 'data', 'backups', 'demo-backup', 'demo-backup-logs.gz')));
    const lines = await eventually('the audit line', () => gw.logs.filter((l) => l.audit === 'download' && l.status === 200));
    assert.equal(lines.at(-1)?.user, 'velero-download-server:ci@jenkins');
    assert.deepEqual(lines.at(-1)?.groups, ['velero-download-server:access-users']);
    assert.equal(gw.logs.filter((l) => l.msg === 'request' && l.status === 200).at(-1)?.user, 'velero-download-server:ci@jenkins');
  });

  test('a malformed entry is skipped and reported by name without its value; the others work', async () => {
    const warn = gw.logs.find((l) => l.msg === 'access users: entry skipped');
    assert.equal(warn?.entry, 'broken@jenkins');
    assert.match(String(warn?.problem), /scrypt N/);
    assert.ok(!gw.output().includes('c2FsdA=='), 'the malformed value reached the log');
    assert.equal(gw.logs.find((l) => l.msg === 'access users loaded')?.users, 2);
    assert.equal((await get(3, log(), '-u', `ops@laptop:${OTHER_PASSWORD}`)).code, '200');
    assert.equal((await get(3, log(), '-u', 'broken@jenkins:anything')).code, '401');
  });

  test('wrong password and unknown user: the same 401 with both challenges and a Status body', async () => {
    const wrong = await get(4, log(), '-u', 'ci@jenkins:not-the-password');
    const unknown = await get(4, log(), '-u', 'nobody@jenkins:not-the-password');
    for (const r of [wrong, unknown]) {
      assert.equal(r.code, '401');
      assert.match(r.headers, /www-authenticate: Bearer realm="velero-download-server", Basic realm="velero-download-server", charset="UTF-8"/i);
      assert.equal((JSON.parse(r.body.toString()) as { reason: string }).reason, 'Unauthorized');
    }
    assert.deepEqual(wrong.body, unknown.body);
  });

  test('repeated failures for one user → 429 with Retry-After and a Status body, even with the right password', async () => {
    // The per-user budget: 10 failures, refilled at 0.1/s, from any address.
    await failUntil429(10, 0.1, async (i) => (await get(10 + (i % 3), log(), '-u', 'ops@laptop:guess')).code);
    const r = await get(13, log(), '-u', `ops@laptop:${OTHER_PASSWORD}`);
    assert.equal(r.code, '429');
    assert.match(r.headers, /retry-after: \d+/i);
    const status = JSON.parse(r.body.toString()) as { kind: string; reason: string; code: number };
    assert.deepEqual([status.kind, status.reason, status.code], ['Status', 'TooManyRequests', 429]);
    // Another user is not held up by it.
    assert.equal((await get(13, log(), '-u', `ci@jenkins:${PASSWORD}`)).code, '200');
  });

  test('repeated failures from one address → 429, whatever X-Forwarded-For says (no proxy is trusted)', async () => {
    // The per-address budget: 20 failures over any users, refilled at 0.2/s; each guess names a new
    // user and claims a new client address.
    await failUntil429(20, 0.2, async (i) => (await get(20, log(), '-u', `spray${i}@jenkins:guess`, '-H', `X-Forwarded-For: 10.9.${i}.1`)).code);
    // Another address is not held up by it.
    assert.equal((await get(21, log(), '-u', `ci@jenkins:${PASSWORD}`)).code, '200');
  });

  test('Basic on the metrics listener and with a bearer-only path: never a download', async () => {
    const r = await curl(['--cacert', cacert, '-w', '\n%{http_code}', '-u', `ci@jenkins:${PASSWORD}`, `https://127.0.0.1:${gw.metricsPort}/v1/namespaces/velero/backups/demo-backup/log`]);
    assert.equal(r.stdout.toString().split('\n').at(-1), '404');
  });

  test('the table file changed under a running download: it finishes with all its bytes; a removed user 401, an added user 200', async () => {
    const out = join(dir, 'big.bin');
    const live = curlLive(['--cacert', cacert, '--interface', '127.0.0.30', '-u', `ci@jenkins:${PASSWORD}`, '--fail', '--limit-rate', '4M', '-o', out, `${gw.url}/v1/namespaces/velero/backups/${BIG}/contents`]);
    await eventually('the download to be under way', async () => (await stat(out).catch(() => undefined))?.size);
    await users(`new@jenkins: ${opsHash}\n`);
    await eventually('the added user to be accepted', async () => (await get(31, log(), '-u', `new@jenkins:${OTHER_PASSWORD}`)).code === '200', 15_000, 250);
    assert.equal((await get(31, log(), '-u', `ci@jenkins:${PASSWORD}`)).code, '401', 'the removed user is refused');
    assert.equal(live.proc.exitCode, null, 'the running download is still running');
    const r = await live.done;
    assert.equal(r.code, 0, r.stderr);
    assert.equal(await sha256(out), await sha256(bigPath));
    // A file that disappears is no users at once; back, they are accepted again.
    await rm(usersFile);
    await eventually('the removed file to refuse everyone', async () => (await get(31, log(), '-u', `new@jenkins:${OTHER_PASSWORD}`)).code === '401', 15_000, 250);
    await users(`ci@jenkins: ${ciHash}\n`);
    await eventually('the file back', async () => (await get(31, log(), '-u', `ci@jenkins:${PASSWORD}`)).code === '200', 15_000, 250);
  });

  test('the password never reaches a log line, in any form', () => {
    assertNoSecrets(gw.output(), [PASSWORD, OTHER_PASSWORD, ciHash, opsHash], ['ci@jenkins', 'ops@laptop', 'new@jenkins']);
  });
});

const USERS_SECRET = 'velero-download-server-users';
const SAR_POLICY = {
  apiVersion: 'audit.k8s.io/v1',
  kind: 'Policy',
  omitStages: ['RequestReceived', 'ResponseStarted'],
  // The reviews' bodies (who was asked about), nothing else.
  rules: [{ level: 'Request', resources: [{ group: 'authorization.k8s.io', resources: ['subjectaccessreviews'] }] }, { level: 'None' }],
};

describe('access users in kubernetes mode, against a real API server: the watched Secret and RBAC', { skip: missingTools('kube-apiserver', 'etcd') }, () => {
  let k: RealCluster;
  let v: RealVelero;
  let gw: GatewayProcess;
  let cacert: string;
  let webhookPort: number;
  let auditDir: string;
  const hashes: Record<string, string> = {};
  const passwords = { ci: 'ci-password:with:colons', ops: 'ops-password-91b2', fresh: 'fresh-password-0c4d', robot: 'robot-seed-password-55aa' };
  const url = (path: string): string => `${gw.url}/v1/namespaces/${NS}/${path}`;
  const get = (n: number, path: string, user: string, password: string): Promise<Answer> => fetchAs(cacert, n, url(path), '-u', `${user}:${password}`);
  const secretBody = (users: string, extra: Record<string, string> = {}): object => ({
    apiVersion: 'v1',
    kind: 'Secret',
    metadata: { name: USERS_SECRET, namespace: NS },
    stringData: { users, ...extra },
  });
  const putSecret = async (users: string, extra: Record<string, string> = {}): Promise<void> => {
    // A replace, not an apply: keys left out are gone.
    await k.rest('DELETE', `/api/v1/namespaces/${NS}/secrets/${USERS_SECRET}`);
    const r = await k.rest('POST', `/api/v1/namespaces/${NS}/secrets`, secretBody(users, extra));
    assert.equal(r.status, 201, JSON.stringify(r.body));
  };

  before(async () => {
    auditDir = await mkdtemp(join(tmpdir(), 'vds-sar-audit-'));
    await writeFile(join(auditDir, 'policy.yaml'), stringify(SAR_POLICY));
    k = await startRealCluster({ apiServerArgs: [`--audit-policy-file=${join(auditDir, 'policy.yaml')}`, `--audit-log-path=${join(auditDir, 'audit.log')}`, '--audit-log-mode=blocking'] });
    v = await installVelero(k);
    const gatewaySa = { kind: 'ServiceAccount' as const, name: GATEWAY_SA, namespace: NS };
    await k.apply(
      // What the chart grants for access users: that one Secret, read and watched by name.
      ...grant('vds-test-access-users', [{ apiGroups: [''], resources: ['secrets'], resourceNames: [USERS_SECRET], verbs: ['get', 'watch'] }], [gatewaySa], NS),
      // The README's example: ci@jenkins may read backup logs, nothing else.
      ...grant('ci-jenkins-logs', [{ apiGroups: ['velero.io'], resources: ['backups/log'], verbs: ['get'] }], [{ kind: 'User', name: 'velero-download-server:ci@jenkins' }], NS),
      ...grant('ops-contents', [{ apiGroups: ['velero.io'], resources: ['backups/contents'], verbs: ['get'] }], [{ kind: 'User', name: 'velero-download-server:ops@laptop' }], NS),
      // Every access user: restore logs.
      ...grant('access-users-restore-logs', [{ apiGroups: ['velero.io'], resources: ['restores/log'], verbs: ['get'] }], [{ kind: 'Group', name: 'velero-download-server:access-users' }], NS),
    );
    for (const [name, pw] of Object.entries(passwords)) hashes[name] = await hashPassword(pw, { algorithm: name === 'ops' ? 'pbkdf2-sha256' : 'scrypt' });
    // A contents object large enough to be running while the Secret changes.
    await writeFile(join(v.fsRoot, 'bsl-bucket', 'cluster-a', 'backups', BACKUP, `${BACKUP}.tar.gz`), randomBytes(BIG_SIZE));
    webhookPort = await freePort();
    // The Secret does not exist yet: the gateway starts without access users and picks it up later.
    gw = await startGateway(v.args('--access-users-seed-username', 'robot', '--webhook-listen', `127.0.0.1:${webhookPort}`));
    cacert = await v.caFile();
  });
  after(async () => {
    await gw?.stop();
    await k?.close();
    await v?.close();
    if (auditDir) await rm(auditDir, { recursive: true, force: true });
  });

  test('a missing Secret is no users; created later, it is picked up; malformed and unread keys are reported by name', async () => {
    assert.ok(gw.logs.some((l) => l.msg === 'access users: the source is missing; no access user is accepted'));
    assert.equal((await get(40, 'backups/nightly/log', 'ci@jenkins', passwords.ci)).code, '401');
    await putSecret(`ci@jenkins: ${hashes.ci}\nops@laptop: ${hashes.ops}\nsloppy@laptop: plain$${passwords.fresh}\n`, { 'build-01': hashes.robot!, 'build-02': passwords.robot });
    await eventually('ci@jenkins accepted', async () => (await get(40, 'backups/nightly/log', 'ci@jenkins', passwords.ci)).code === '200', 15_000, 200);
    const skipped = gw.logs.filter((l) => l.msg === 'access users: entry skipped').map((l) => l.entry);
    assert.deepEqual(skipped.sort(), ['robot@build-02', 'sloppy@laptop']);
    assert.equal(gw.logs.findLast((l) => l.msg === 'access users loaded')?.users, 3);
    // The seed form: robot@<host key>, reviewed as any access user.
    assert.equal((await get(41, `restores/${RESTORE}/log`, 'robot@build-01', passwords.robot)).code, '200');
  });

  test('RBAC decides: ci@jenkins may read backups/log but not backups/contents; the group grants restore logs; the SAR names the user and the group', async () => {
    const log = await get(42, `backups/${BACKUP}/log`, 'ci@jenkins', passwords.ci);
    assert.equal(log.code, '200');
    assert.deepEqual(log.body, v.files.log);
    const contents = await get(42, `backups/${BACKUP}/contents`, 'ci@jenkins', passwords.ci);
    assert.equal(contents.code, '403');
    assert.match(JSON.parse(contents.body.toString()).message as string, /velero-download-server:ci@jenkins/);
    assert.equal((await get(42, `restores/${RESTORE}/log`, 'ci@jenkins', passwords.ci)).code, '200');
    const reviews = (await readFile(join(auditDir, 'audit.log'), 'utf8'))
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => (JSON.parse(l) as { requestObject?: { spec?: { user?: string; groups?: string[]; resourceAttributes?: { subresource?: string } } } }).requestObject?.spec)
      .filter((s) => s?.user === 'velero-download-server:ci@jenkins');
    assert.ok(reviews.length >= 3, JSON.stringify(reviews));
    for (const r of reviews) assert.deepEqual(r?.groups, ['velero-download-server:access-users']);
    assert.deepEqual(new Set(reviews.map((r) => r?.resourceAttributes?.subresource)), new Set(['log', 'contents']));
  });

  test('the Secret changed under a running download: it finishes with all its bytes; a removed user 401, an added user 200', async (t) => {
    const out = join(v.dir, 'contents.bin');
    const live = curlLive(['--cacert', cacert, '--interface', '127.0.0.43', '-u', `ops@laptop:${passwords.ops}`, '--fail', '--limit-rate', '4M', '-o', out, url(`backups/${BACKUP}/contents`)]);
    await eventually('the download to be under way', async () => (await stat(out).catch(() => undefined))?.size);
    const changed = performance.now();
    await putSecret(`ci@jenkins: ${hashes.ci}\nfresh@laptop: ${hashes.fresh}\n`);
    await eventually('the added user accepted', async () => (await get(44, `restores/${RESTORE}/log`, 'fresh@laptop', passwords.fresh)).code === '200', 15_000, 50);
    t.diagnostic(`a Secret change took effect within ${Math.round(performance.now() - changed)} ms (curl and one password check included)`);
    assert.equal((await get(44, `backups/${BACKUP}/log`, 'ops@laptop', passwords.ops)).code, '401', 'the removed user is refused');
    assert.equal(live.proc.exitCode, null, 'the running download is still running');
    const r = await live.done;
    assert.equal(r.code, 0, r.stderr);
    assert.equal(await sha256(out), await sha256(join(v.fsRoot, 'bsl-bucket', 'cluster-a', 'backups', BACKUP, `${BACKUP}.tar.gz`)));
  });

  test('a deleted Secret refuses everyone at once; recreated, they are back', async (t) => {
    assert.equal((await get(45, `backups/${BACKUP}/log`, 'ci@jenkins', passwords.ci)).code, '200');
    const deleted = performance.now();
    assert.equal((await k.rest('DELETE', `/api/v1/namespaces/${NS}/secrets/${USERS_SECRET}`)).status, 200);
    await eventually('ci@jenkins refused', async () => (await get(45, `backups/${BACKUP}/log`, 'ci@jenkins', passwords.ci)).code === '401', 15_000, 50);
    t.diagnostic(`a deleted Secret refused its users within ${Math.round(performance.now() - deleted)} ms`);
    assert.ok(gw.logs.some((l) => l.msg === 'access users: the source is deleted; no access user is accepted'));
    await putSecret(`ci@jenkins: ${hashes.ci}\n`);
    await eventually('ci@jenkins back', async () => (await get(46, `backups/${BACKUP}/log`, 'ci@jenkins', passwords.ci)).code === '200', 15_000, 100);
  });

  test('Basic never opens the signed-URL route, nor anything on the webhook listener', async () => {
    const signed = await fetchAs(cacert, 47, url('downloadrequests/dr-none?uid=u&kind=BackupLog&target=nightly&expires=9999999999&signature=AAAA'), '-u', `ci@jenkins:${passwords.ci}`);
    assert.notEqual(signed.code, '200');
    assert.notDeepEqual(signed.body, v.files.log);
    const webhook = await fetchAs(cacert, 47, `https://127.0.0.1:${webhookPort}/v1/namespaces/${NS}/backups/${BACKUP}/log`, '-u', `ci@jenkins:${passwords.ci}`);
    assert.equal(webhook.code, '404');
  });

  test('no password, hash or credential header reaches the gateway\'s log', () => {
    assertNoSecrets(gw.output(), [...Object.values(passwords), ...Object.values(hashes)], ['ci@jenkins', 'ops@laptop', 'fresh@laptop', 'robot@build-01', 'sloppy@laptop']);
  });
});
