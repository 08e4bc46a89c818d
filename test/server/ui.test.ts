/**
 * The browser page over HTTP, through the gateway's real wiring in kubernetes mode against the
 * Kubernetes API double (TokenReview, SubjectAccessReview, Backups): sign-in and its login-CSRF
 * defences, the session cookie's attributes, what each user sees, downloads by cookie, refusals as
 * pages, tampered and revoked sessions, sign-out, and that no token or cookie value reaches the log.
 * The same flows in a real browser are in test/ui/.
 */
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { gzipSync } from 'node:zlib';
import request from 'supertest';
import type { Response } from 'supertest';
import { BACKUP, NS, kubeFixture } from '../support/kube-fixture.ts';
import type { KubeFixture } from '../support/kube-fixture.ts';
import { inProcessGateway } from '../support/in-process.ts';
import type { InProcessGateway } from '../support/in-process.ts';
import { binary } from '../support/http.ts';
import { DEMO_BACKUP, DEMO_RESTORE, DEMO_VOLUME } from '../../src/velero/demo.ts';

const HOST = 'downloads.example.com';
const ORIGIN = `https://${HOST}`;
const SESSION = '__Host-vds-session';
const FORM = '__Host-vds-form';

function setCookies(res: Response): string[] {
  const h = res.headers['set-cookie'] as unknown;
  return Array.isArray(h) ? (h as string[]) : typeof h === 'string' ? [h] : [];
}
function cookieValue(res: Response, name: string): string | undefined {
  const c = setCookies(res).find((x) => x.startsWith(`${name}=`));
  return c === undefined ? undefined : c.slice(name.length + 1, c.indexOf(';'));
}
function hiddenForm(htmlText: string): string {
  const m = /name="form" value="([^"]+)"/.exec(htmlText);
  assert.ok(m, 'the page has a form token field');
  return m[1]!;
}

describe('browser page over HTTP (kubernetes mode)', () => {
  let fx: KubeFixture;
  let gw: InProcessGateway;
  before(async () => {
    fx = await kubeFixture();
    // A short token cache, so that a revoked token ends the session within the test.
    gw = await inProcessGateway(fx.args('--authn-cache-ttl', '1s', '--authn-denied-cache-ttl', '1s', '--session-max-age', '2h'));
  });
  after(async () => {
    await gw.stop();
    await fx.close();
  });

  /** The sign-in page: its form token (cookie and field). */
  async function signInForm(): Promise<string> {
    const res = await request(gw.app).get('/ui/sign-in').set('Host', HOST).expect(200);
    const cookie = cookieValue(res, FORM);
    assert.ok(cookie);
    assert.equal(hiddenForm(res.text), cookie);
    return cookie;
  }

  /** Signs in as `token` the way the page's form does; returns the session cookie value. */
  async function signIn(token: string): Promise<string> {
    const form = await signInForm();
    const res = await request(gw.app)
      .post('/ui/sign-in')
      .set({ Host: HOST, Origin: ORIGIN, 'Sec-Fetch-Site': 'same-origin', Cookie: `${FORM}=${form}` })
      .type('form')
      .send({ form, token })
      .expect(303);
    assert.equal(res.headers.location, '/ui/');
    const session = cookieValue(res, SESSION);
    assert.ok(session, 'a session cookie is set');
    return session;
  }

  const withSession = (session: string, form?: string): Record<string, string> => ({ Host: HOST, Cookie: `${SESSION}=${session}${form ? `; ${FORM}=${form}` : ''}` });

  test('/ and /ui go to the page; without a session the page goes to sign-in', async () => {
    assert.equal((await request(gw.app).get('/').expect(303)).headers.location, '/ui/');
    assert.equal((await request(gw.app).get('/ui').expect(303)).headers.location, '/ui/sign-in');
    assert.equal((await request(gw.app).get('/ui/').expect(303)).headers.location, '/ui/sign-in');
  });

  test('the sign-in page: strict CSP, no framing, no inline script or style, a __Host- form cookie', async () => {
    const res = await request(gw.app).get('/ui/sign-in').set('Host', HOST).expect(200);
    const csp = String(res.headers['content-security-policy']);
    for (const d of ["default-src 'none'", "script-src 'self'", "style-src 'self'", "frame-ancestors 'none'", "form-action 'self'", "base-uri 'none'"]) assert.ok(csp.includes(d), d);
    assert.ok(!csp.includes('unsafe-inline'));
    assert.equal(res.headers['x-frame-options'], 'DENY');
    // Not no-referrer: under it Chromium sends Origin: null with the page's own POSTs (test/ui/page.test.ts).
    assert.equal(res.headers['referrer-policy'], 'same-origin');
    assert.equal(res.headers['cache-control'], 'no-store');
    assert.match(String(res.headers['content-type']), /^text\/html/);
    assert.doesNotMatch(res.text, /<script(?![^>]*\bsrc=)[^>]*>/, 'no inline script');
    assert.doesNotMatch(res.text, /\sstyle=|<style/, 'no inline style');
    assert.doesNotMatch(res.text, /\son[a-z]+=/i, 'no event handler attributes');
    const cookie = setCookies(res).find((c) => c.startsWith(`${FORM}=`));
    assert.ok(cookie);
    for (const attr of ['HttpOnly', 'Secure', 'SameSite=Strict', 'Path=/']) assert.ok(cookie.includes(attr), attr);
    assert.ok(!/Domain=/i.test(cookie));
    // The assets the page links exist, with long caching, and only they do.
    for (const m of res.text.matchAll(/(?:href|src)="(\/ui\/assets\/[^"]+)"/g)) {
      const a = await request(gw.app).get(m[1]!).expect(200);
      assert.match(String(a.headers['cache-control']), /immutable/);
    }
    await request(gw.app).get('/ui/assets/app.0000000000000000.css').expect(404);
    await request(gw.app).get('/ui/assets/..%2F..%2Fpackage.json').expect(404);
  });

  test('login CSRF: a sign-in POST without this origin or without the form token is refused before any review', async () => {
    const form = await signInForm();
    const reviews = fx.api.calls.count({ resource: 'tokenreviews', verb: 'create' });
    const body = { form, token: fx.tokens.alice };
    const cases: [string, Record<string, string>][] = [
      ['no Origin', { Host: HOST, Cookie: `${FORM}=${form}` }],
      ['another site', { Host: HOST, Origin: 'https://evil.example', Cookie: `${FORM}=${form}` }],
      ['plain http origin', { Host: HOST, Origin: `http://${HOST}`, Cookie: `${FORM}=${form}` }],
      ['cross-site fetch metadata', { Host: HOST, Origin: ORIGIN, 'Sec-Fetch-Site': 'cross-site', Cookie: `${FORM}=${form}` }],
      ['null origin (a sandboxed frame)', { Host: HOST, Origin: 'null', Cookie: `${FORM}=${form}` }],
      ['no form cookie', { Host: HOST, Origin: ORIGIN }],
      ['another form cookie', { Host: HOST, Origin: ORIGIN, Cookie: `${FORM}=${'A'.repeat(43)}` }],
    ];
    for (const [what, headers] of cases) {
      const res = await request(gw.app).post('/ui/sign-in').set(headers).type('form').send(body);
      assert.equal(res.status, 403, what);
      assert.equal(cookieValue(res, SESSION), undefined, what);
      assert.match(String(res.headers['content-type']), /^text\/html/, what);
    }
    const noField = await request(gw.app).post('/ui/sign-in').set({ Host: HOST, Origin: ORIGIN, Cookie: `${FORM}=${form}` }).type('form').send({ token: fx.tokens.alice });
    assert.equal(noField.status, 403);
    assert.equal(fx.api.calls.count({ resource: 'tokenreviews', verb: 'create' }), reviews, 'no TokenReview for a refused form');
  });

  test('sign-in: a wrong token is a 401 page without a session; a form that is not a form is 4xx, never 500', async () => {
    const form = await signInForm();
    const h = { Host: HOST, Origin: ORIGIN, Cookie: `${FORM}=${form}` };
    const bad = await request(gw.app).post('/ui/sign-in').set(h).type('form').send({ form, token: 'not-a-valid-token-0123456789' });
    assert.equal(bad.status, 401);
    assert.equal(cookieValue(bad, SESSION), undefined);
    assert.match(bad.text, /The token is not valid/);
    assert.equal((await request(gw.app).post('/ui/sign-in').set(h).type('form').send({ form, token: 'has spaces in it' })).status, 400);
    assert.equal((await request(gw.app).post('/ui/sign-in').set(h).type('form').send({ form, token: '' })).status, 400);
    assert.equal((await request(gw.app).post('/ui/sign-in').set(h).type('json').send({ form, token: fx.tokens.alice })).status, 415);
    assert.equal((await request(gw.app).post('/ui/sign-in').set(h).type('form').send(`form=${form}&token=${'a'.repeat(20_000)}`)).status, 413);
    assert.equal((await request(gw.app).post('/ui/sign-in').set(h).type('form').send(`form=${form}&token=%E0%A4%A`)).status < 500, true);
    assert.equal((await request(gw.app).post('/ui/sign-in').set(h).type('form').send(`form=${form}&form=${form}&token=x`)).status, 403, 'a repeated field is no token');
    assert.equal((await request(gw.app).get('/ui/sign-in').set('Host', HOST).query({ token: 'x' })).status, 400, 'tokens are never taken from a URL');
  });

  test('sign-in sets a session cookie: HttpOnly, Secure, SameSite=Strict, __Host-, the configured maximum age', async () => {
    const form = await signInForm();
    const res = await request(gw.app)
      .post('/ui/sign-in')
      .set({ Host: HOST, Origin: ORIGIN, Cookie: `${FORM}=${form}` })
      .type('form')
      .send({ form, token: fx.tokens.alice })
      .expect(303);
    const cookie = setCookies(res).find((c) => c.startsWith(`${SESSION}=`));
    assert.ok(cookie);
    for (const attr of ['HttpOnly', 'Secure', 'SameSite=Strict', 'Path=/', 'Max-Age=7200']) assert.ok(cookie.includes(attr), attr);
    assert.ok(!/Domain=/i.test(cookie));
    assert.ok(!cookie.includes(fx.tokens.alice), 'the token is sealed');
  });

  test('alice sees the backup and restore, their artifacts with sizes, and downloads by cookie', async () => {
    const session = await signIn(fx.tokens.alice);
    const list = await request(gw.app).get('/ui/').set(withSession(session)).expect(200);
    assert.ok(list.text.includes(`/ui/namespaces/${NS}/backups/${BACKUP}`), 'the backup is listed');
    assert.match(list.text, /Signed in as <strong>alice<\/strong>/);
    const page = await request(gw.app).get(`/ui/namespaces/${NS}/backups/${BACKUP}`).set(withSession(session)).expect(200);
    assert.ok(page.text.includes(`href="/v1/namespaces/${NS}/backups/${BACKUP}/log"`));
    assert.ok(page.text.includes(`data-value="${fx.files.log.length}"`), 'the log\'s size, from the store');
    const log = await binary(request(gw.app).get(`/v1/namespaces/${NS}/backups/${BACKUP}/log`).set(withSession(session))).expect(200);
    assert.deepEqual(log.body, fx.files.log);
    const audit = gw.logs.find((l) => l.audit === 'download' && l.user === 'alice' && l.via === 'session');
    assert.ok(audit, 'the audit line says the download came by a browser session');
  });

  test('bob (only backups/log) sees the backup; contents is refused with a 403 page, not a Status and not a broken page', async () => {
    const session = await signIn(fx.tokens.bob);
    const list = await request(gw.app).get('/ui/').set(withSession(session)).expect(200);
    assert.ok(list.text.includes(`/ui/namespaces/${NS}/backups/${BACKUP}`), 'whoever may read every log may see the backups');
    const page = await request(gw.app).get(`/ui/namespaces/${NS}/backups/${BACKUP}`).set(withSession(session)).expect(200);
    assert.match(page.text, /<th scope="row">contents<\/th><td>you may not read it<\/td>/);
    const refused = await request(gw.app).get(`/v1/namespaces/${NS}/backups/${BACKUP}/contents`).set(withSession(session)).expect(403);
    assert.match(String(refused.headers['content-type']), /^text\/html/);
    assert.match(refused.text, /403 Not allowed/);
    assert.match(refused.text, /cannot get resource &quot;backups\/contents&quot;/);
    assert.equal(String(refused.headers['content-security-policy']).includes("frame-ancestors 'none'"), true);
    // A client with the same token as a bearer still gets the API's Status.
    const api = await request(gw.app).get(`/v1/namespaces/${NS}/backups/${BACKUP}/contents`).set('Authorization', `Bearer ${fx.tokens.bob}`).expect(403);
    assert.equal((api.body as { kind?: string }).kind, 'Status');
  });

  test('a user who may list pays one review per kind and namespace for the list page, not one per artifact', async () => {
    const token = fx.api.tokens.user('grace', ['system:authenticated']);
    fx.api.rbac.grant({ kind: 'User', name: 'grace' }, [{ apiGroups: ['velero.io'], resources: ['backups', 'restores'], verbs: ['list'] }], NS);
    const session = await signIn(token);
    const before = fx.api.calls.count({ resource: 'subjectaccessreviews', verb: 'create' });
    const list = await request(gw.app).get('/ui/').set(withSession(session)).expect(200);
    assert.ok(list.text.includes(`/ui/namespaces/${NS}/backups/${BACKUP}"`));
    assert.equal(fx.api.calls.count({ resource: 'subjectaccessreviews', verb: 'create' }) - before, 2, 'list backups, list restores');
    // Listing is not reading: her artifacts stay refused.
    await request(gw.app).get(`/v1/namespaces/${NS}/backups/${BACKUP}/log`).set(withSession(session)).expect(403);
  });

  test('carol (no rights) sees an empty page, not an error; a backup page is a 403 page before anything is looked up', async () => {
    const session = await signIn(fx.tokens.carol);
    const list = await request(gw.app).get('/ui/').set(withSession(session)).expect(200);
    assert.ok(!list.text.includes(BACKUP));
    assert.match(list.text, /No backups you may see/);
    await request(gw.app).get(`/ui/namespaces/${NS}/backups/${BACKUP}`).set(withSession(session)).expect(403);
    await request(gw.app).get(`/ui/namespaces/${NS}/backups/no-such-backup`).set(withSession(session)).expect(403);
    await request(gw.app).get(`/ui/namespaces/${NS}/backups/Not_A_Name`).set(withSession(session)).expect(400);
  });

  test('a tampered or foreign cookie opens nothing: the page goes to sign-in and clears it; a download is a 401 page', async () => {
    const session = await signIn(fx.tokens.alice);
    const tampered = session.slice(0, -3) + (session.endsWith('AAA') ? 'BAA' : 'AAA');
    for (const value of [tampered, 'v1.AAAAAAAA.AAAAAAAAAAAAAAAA.AAAA.AAAAAAAAAAAAAAAAAAAAAA', fx.tokens.alice]) {
      const page = await request(gw.app).get('/ui/').set(withSession(value)).expect(303);
      assert.equal(page.headers.location, '/ui/sign-in?ended');
      assert.ok(setCookies(page).some((c) => c.startsWith(`${SESSION}=;`) && c.includes('Max-Age=0')), 'the cookie is cleared');
      const dl = await request(gw.app).get(`/v1/namespaces/${NS}/backups/${BACKUP}/log`).set(withSession(value)).expect(401);
      assert.match(String(dl.headers['content-type']), /^text\/html/);
      assert.ok(!dl.text.includes(value), 'the cookie is not echoed');
    }
  });

  test('a request another site (or a sibling host) started carries no session, whatever its cookie', async () => {
    const session = await signIn(fx.tokens.alice);
    for (const site of ['cross-site', 'same-site']) {
      await request(gw.app).get(`/v1/namespaces/${NS}/backups/${BACKUP}/log`).set(withSession(session)).set('Sec-Fetch-Site', site).expect(401);
      assert.equal((await request(gw.app).get('/ui/').set(withSession(session)).set('Sec-Fetch-Site', site).expect(303)).headers.location, '/ui/sign-in');
    }
    for (const site of ['same-origin', 'none']) {
      await request(gw.app).get(`/v1/namespaces/${NS}/backups/${BACKUP}/log`).set(withSession(session)).set('Sec-Fetch-Site', site).expect(200);
      await request(gw.app).get('/ui/').set(withSession(session)).set('Sec-Fetch-Site', site).expect(200);
    }
  });

  test('an Authorization header wins over the cookie: a bad header is a 401 whatever the cookie', async () => {
    const session = await signIn(fx.tokens.alice);
    await request(gw.app).get(`/v1/namespaces/${NS}/backups/${BACKUP}/log`).set(withSession(session)).set('Authorization', 'Bearer wrong-token-0123456789').expect(401);
    await request(gw.app).get(`/v1/namespaces/${NS}/backups/${BACKUP}/contents`).set(withSession(session)).set('Authorization', `Bearer ${fx.tokens.bob}`).expect(403);
  });

  test('a revoked token ends the session within the token cache period', async () => {
    const token = fx.api.tokens.user('frank', ['system:authenticated']);
    fx.api.rbac.grant({ kind: 'User', name: 'frank' }, [{ apiGroups: ['velero.io'], resources: ['backups/log'], verbs: ['get'] }], NS);
    const session = await signIn(token);
    await request(gw.app).get('/ui/').set(withSession(session)).expect(200);
    await request(gw.app).get(`/v1/namespaces/${NS}/backups/${BACKUP}/log`).set(withSession(session)).expect(200);
    assert.equal(fx.api.tokens.remove(token), true);
    await new Promise((r) => setTimeout(r, 1500)); // --authn-cache-ttl 1s
    assert.equal((await request(gw.app).get('/ui/').set(withSession(session)).expect(303)).headers.location, '/ui/sign-in?ended');
    await request(gw.app).get(`/v1/namespaces/${NS}/backups/${BACKUP}/log`).set(withSession(session)).expect(401);
  });

  test('sign-out clears the session; a cross-site sign-out is refused', async () => {
    const session = await signIn(fx.tokens.alice);
    const page = await request(gw.app).get('/ui/').set(withSession(session)).expect(200);
    const form = hiddenForm(page.text);
    const formCookie = cookieValue(page, FORM);
    const cookie = `${SESSION}=${session}; ${FORM}=${formCookie ?? form}`;
    const cross = await request(gw.app).post('/ui/sign-out').set({ Host: HOST, Origin: 'https://evil.example', Cookie: cookie }).type('form').send({ form });
    assert.equal(cross.status, 403);
    assert.equal(cookieValue(cross, SESSION), undefined, 'nothing cleared');
    const out = await request(gw.app).post('/ui/sign-out').set({ Host: HOST, Origin: ORIGIN, Cookie: cookie }).type('form').send({ form }).expect(303);
    assert.equal(out.headers.location, '/ui/sign-in?signed-out');
    assert.ok(setCookies(out).some((c) => c.startsWith(`${SESSION}=;`) && c.includes('Max-Age=0')));
  });

  test('no token and no session cookie value in any log line', async () => {
    const session = await signIn(fx.tokens.dave);
    await request(gw.app).get('/ui/').set(withSession(session)).expect(200);
    await request(gw.app).get(`/v1/namespaces/${NS}/backups/${BACKUP}/log`).set(withSession(session)).expect(200);
    const raw = gw.rawLog();
    assert.ok(raw.includes('browser sign-in'), 'sign-ins are logged (by user)');
    for (const secret of [...Object.values(fx.tokens), session, session.split('.')[3]!]) assert.ok(!raw.includes(secret), 'a secret reached the log');
  });
});

describe('browser page over HTTP (local mode, the demo): log, results, volumes', () => {
  let dir: string;
  let gw: InProcessGateway;
  let session: string;
  const api = `/v1/namespaces/velero/backups/${DEMO_BACKUP}`;
  const ui = `/ui/namespaces/velero/backups/${DEMO_BACKUP}`;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'vds-ui-'));
    gw = await inProcessGateway(['--mode', 'local', '--data-dir', join(dir, 'data'), '--state-dir', join(dir, 'state')]);
    const token = (await readFile(join(dir, 'state', 'tokens.csv'), 'utf8')).split('\n').find((l) => l && !l.startsWith('#'))!.split(',')[0]!;
    const form = (await request(gw.app).get('/ui/sign-in').set('Host', HOST).expect(200)).text.match(/name="form" value="([^"]+)"/)![1]!;
    const res = await request(gw.app).post('/ui/sign-in').set({ Host: HOST, Origin: ORIGIN, Cookie: `${FORM}=${form}` }).type('form').send({ form, token }).expect(303);
    session = cookieValue(res, SESSION)!;
  });
  after(async () => {
    await gw.stop();
    await rm(dir, { recursive: true, force: true });
  });
  const get = (path: string): request.Test => request(gw.app).get(path).set({ Host: HOST, Cookie: `${SESSION}=${session}` });

  test('the list shows the demo backup and restore; the backup page every artifact with its size', async () => {
    const list = await get('/ui/').expect(200);
    assert.ok(list.text.includes(`${ui}"`) && list.text.includes(`/ui/namespaces/velero/restores/${DEMO_RESTORE}"`));
    const page = await get(ui).expect(200);
    const contents = await readFile(join(dir, 'data', 'backups', DEMO_BACKUP, `${DEMO_BACKUP}.tar.gz`));
    assert.match(page.text, new RegExp(`<th scope="row">contents</th><td class="num" data-value="${contents.length}">`));
    for (const link of ['View log', 'View results', 'Browse volumes']) assert.ok(page.text.includes(`>${link}</a>`), link);
  });

  test('the log, gunzipped, by page and by level, every line escaped; bad parameters are 400 pages', async () => {
    assert.ok([...(await get(`${ui}/log`).expect(200)).text.matchAll(/class="level-info"/g)].length > 3, 'the demo log is shown');
    // 1,200 lines: levels in turn (logrus writes warning as "warning", Velero's plugins sometimes "warn"), one hostile.
    const names = ['info', 'warning', 'error', 'debug', 'warn', 'fatal'];
    const lines = Array.from({ length: 1200 }, (_, i) => `time="2026-12-01T10:00:00Z" level=${names[i % names.length]} msg="line ${i + 1}${i === 7 ? ' <script>alert(1)</script>' : ''}"`);
    await writeFile(join(dir, 'data', 'backups', DEMO_BACKUP, `${DEMO_BACKUP}-logs.gz`), gzipSync(lines.join('\n') + '\n'));
    const shown = async (query: string): Promise<{ n: number[]; levels: string[]; text: string }> => {
      const text = (await get(`${ui}/log${query}`).expect(200)).text;
      const rows = [...text.matchAll(/<tr><td class="num">(\d+)<\/td><td class="level-(\w*)">/g)];
      return { n: rows.map((r) => Number(r[1])), levels: rows.map((r) => r[2]!), text };
    };
    const p0 = await shown('');
    assert.deepEqual(p0.n, Array.from({ length: 500 }, (_, i) => i + 1), 'page 1: lines 1-500');
    assert.ok(p0.text.includes('rel="next" href="/ui/namespaces/velero/backups/demo-backup/log?level=all&amp;page=1"'));
    assert.ok(p0.text.includes('line 8 &lt;script&gt;alert(1)&lt;/script&gt;') && !p0.text.includes('<script>alert'), 'escaped');
    const p2 = await shown('?page=2');
    assert.deepEqual(p2.n, Array.from({ length: 200 }, (_, i) => i + 1001), 'page 3: lines 1001-1200');
    assert.ok(!p2.text.includes('rel="next"') && p2.text.includes('rel="prev"'));
    const warnings = await shown('?level=warning');
    assert.equal(warnings.n.length, 400, '"warn" and "warning" are both warnings');
    assert.ok(warnings.levels.every((l) => l === 'warning'));
    const errors = await shown('?level=error');
    assert.deepEqual(errors.n.slice(0, 3), [3, 6, 9], 'error and fatal lines, numbered as in the whole log');
    const errors2 = await shown('?level=error&page=1');
    assert.deepEqual(errors2.n, [], 'exactly 400 error lines: page 2 is empty');
    assert.match(errors2.text, /No more lines at level error/);
    await get(`${ui}/log?level=<script>`).expect(400);
    await get(`${ui}/log?page=-1`).expect(400);
    await get(`${ui}/log?page=1e9`).expect(400);
    await get(`${ui}/log?page=1&page=2`).expect(400);
  });

  test('results as a table, every message escaped; a file that is not gzip or not JSON is a 502 page, never an empty table', async () => {
    assert.match((await get(`${ui}/results`).expect(200)).text, /No errors or warnings\./);
    const file = join(dir, 'data', 'backups', DEMO_BACKUP, `${DEMO_BACKUP}-results.gz`);
    const doc = { errors: { velero: ['<script>alert(1)</script>'], cluster: [], namespaces: { 'demo-app': ['could not back up pod web-0'] } }, warnings: { namespaces: { b: ['w1'] }, velero: 7 } };
    await writeFile(file, gzipSync(JSON.stringify(doc)));
    const page = await get(`${ui}/results`).expect(200);
    const rows = [...page.text.matchAll(/<tr><td class="result-(\w+)">\w+<\/td><td>([^<]*)<\/td><td>([^<]*)<\/td><\/tr>/g)].map((m) => [m[1], m[2], m[3]]);
    assert.deepEqual(rows, [
      ['error', 'Velero', '&lt;script&gt;alert(1)&lt;/script&gt;'],
      ['error', 'namespace demo-app', 'could not back up pod web-0'],
      ['warning', 'namespace b', 'w1'],
    ]);
    await writeFile(file, 'not gzip at all');
    assert.match((await get(`${ui}/results`).expect(502)).text, /502/);
    assert.ok(gw.logs.some((l) => l.msg === 'request failed' && l.reason === 'BadGateway' && String(l.message).includes('results file')), 'a broken artifact is logged');
    await writeFile(file, gzipSync('{"errors": '));
    await get(`${ui}/results`).expect(502);
    await writeFile(file, gzipSync(Buffer.alloc(9 * 1024 * 1024, 0x20)));
    await get(`${ui}/results`).expect(502);
    await writeFile(join(dir, 'data', 'backups', DEMO_BACKUP, `${DEMO_BACKUP}-logs.gz`), 'not gzip');
    await get(`${ui}/log`).expect(502);
  });

  test('volumes: the demo volume, its directories, file links to the API; a file path goes to the API; escapes refused', async () => {
    const vols = await get(`${ui}/volumes`).expect(200);
    const id = `${DEMO_VOLUME.namespace}:${DEMO_VOLUME.pod}:${DEMO_VOLUME.volume}`;
    const rootHref = `${ui}/volumes/${encodeURIComponent(id)}/files/`;
    assert.ok(vols.text.includes(`href="${rootHref}"`), 'the volume links to its root');
    const root = await get(rootHref).expect(200);
    assert.ok(root.text.includes(`href="${api}/volumes/${encodeURIComponent(id)}/archive/">Download this directory as a tar`));
    const files = [...root.text.matchAll(/<a href="(\/v1\/[^"]+\/files\/[^"]+)">([^<]+)<\/a>/g)];
    const dirs = [...root.text.matchAll(/<a href="([^"]+\/)">([^<]+)\/<\/a>/g)];
    assert.ok(files.length + dirs.length > 0, 'entries listed');
    // The listing matches the API's JSON listing of the same directory.
    const listing = (await request(gw.app).get(`${api}/volumes/${encodeURIComponent(id)}/files/`).set('Cookie', `${SESSION}=${session}`).expect(200)).body as { entries: { name: string; type: string }[] };
    assert.deepEqual([...files.map((m) => m[2]), ...dirs.map((m) => `${m[2]}`)].sort(), listing.entries.filter((e) => e.type === 'file' || e.type === 'dir').map((e) => e.name).sort());
    if (files.length > 0) {
      const file = await request(gw.app).get(files[0]![1]!.replace(/&amp;/g, '&')).set('Cookie', `${SESSION}=${session}`).expect(200);
      assert.ok(file.headers['content-disposition']);
      const viaUi = await get(`${rootHref}${encodeURIComponent(files[0]![2]!)}`).expect(303);
      assert.equal(viaUi.headers.location, files[0]![1]);
    }
    await get(`${rootHref}..%2F..%2Fetc`).expect(400);
    await get(`${rootHref}a/../../b`).expect((r) => assert.ok(r.status === 400 || r.status === 404, String(r.status)));
    await get(`${ui}/volumes/no:such:volume/files/`).expect(404);
  });

  test('without a session every page goes to sign-in, and nothing is read', async () => {
    for (const p of [ui, `${ui}/log`, `${ui}/results`, `${ui}/volumes`]) {
      const res = await request(gw.app).get(p).expect(303);
      assert.equal(res.headers.location, '/ui/sign-in');
    }
  });
});
