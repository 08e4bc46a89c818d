/**
 * The browser page over HTTP, through the gateway's real wiring in kubernetes mode against the
 * Kubernetes API double (TokenReview, SubjectAccessReview, Backups): sign-in and its login-CSRF
 * defences, the session cookie's attributes, what each user sees, downloads by cookie, refusals as
 * pages, tampered and revoked sessions, sign-out, and that no token or cookie value reaches the log.
 * The same flows in a real browser are in test/ui/.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import request from 'supertest';
import type { Response } from 'supertest';
import { BACKUP, NS, kubeFixture } from '../support/kube-fixture.ts';
import type { KubeFixture } from '../support/kube-fixture.ts';
import { inProcessGateway } from '../support/in-process.ts';
import type { InProcessGateway } from '../support/in-process.ts';
import { binary } from '../support/http.ts';

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
