/**
 * The browser page end to end, in real Chromium (Debian's, headless) against the real gateway process:
 * local mode with its demo data (sign-in, list, a backup's page and a download by click, the log
 * viewer and its level filter, the results, the volume browser with a file and a directory's tar,
 * sign-out), kubernetes mode against the API double (a refused download is a 403 page), a session
 * that ends at --session-max-age, and what a page of another site can and cannot do (login CSRF, a
 * cross-site image request without the session cookie, framing refused). Every page is screenshotted
 * to test-artifacts/screenshots/; with VDS_UPDATE_SCREENSHOTS=1 the list and backup screenshots are
 * also copied to docs/screenshots/ for the README.
 *
 * HTTPS stays verified: each server's own leaf certificate (read from a TLS connection to it) is
 * trusted by its public key at launch, nothing else is.
 */
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { copyFile, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:https';
import type { Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect } from 'node:tls';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';
import { after, before, describe, test } from 'node:test';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { DEMO_VOLUME } from '../../src/velero/demo.ts';
import { contextTrusting, downloadByClicking, launchBrowser, missingChromium, screenshot } from '../support/browser.ts';
import { BACKUP, NS, kubeFixture } from '../support/kube-fixture.ts';
import type { KubeFixture } from '../support/kube-fixture.ts';
import { curl, startGateway } from '../support/processes.ts';
import type { GatewayProcess } from '../support/processes.ts';
import { eventually } from '../support/real-velero.ts';
import { untar } from '../support/tar.ts';
import { createTestPki } from '../support/test-ca.ts';

const SESSION = '__Host-vds-session';
const DEMO_BACKUP = 'demo-backup';
/** A second backup written into the local data directory (for search and sort). */
const OTHER_BACKUP = 'weekly-2026-11-29';
const DEMO_VOLUME_ID = `${DEMO_VOLUME.namespace}:${DEMO_VOLUME.pod}:${DEMO_VOLUME.volume}`;
const DOCS_SCREENSHOTS = fileURLToPath(new URL('../../docs/screenshots/', import.meta.url));
/** The README's screenshots: light scheme, 1280×800 viewport (the page itself is captured whole). */
const DOCS_VIEW = { viewport: { width: 1280, height: 800 }, colorScheme: 'light' } as const;

/** The PEM of the leaf certificate a TLS server presents at `url`. */
async function leafCertificate(url: string): Promise<string> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve, reject) => {
    // Only read, never trusted by this connection: the browser pins the key it sees here.
    const socket = connect({ host: hostname, port: Number(port), servername: hostname === '127.0.0.1' ? undefined : hostname, rejectUnauthorized: false }, () => {
      const raw = socket.getPeerCertificate().raw;
      socket.destroy();
      resolve(new X509Certificate(raw).toString());
    });
    socket.setTimeout(5000, () => socket.destroy(new Error(`no TLS handshake with ${url} within 5 s`)));
    socket.on('error', reject);
  });
}

interface LocalGateway {
  gw: GatewayProcess;
  dir: string;
  token: string;
  /** The demo token's user name (the token file's second column). */
  user: string;
  cert: string;
  cacert: string;
}

async function startLocal(...args: string[]): Promise<LocalGateway> {
  const dir = await mkdtemp(join(tmpdir(), 'vds-ui-'));
  try {
    const gw = await startGateway(['--mode', 'local', '--data-dir', join(dir, 'data'), '--state-dir', join(dir, 'state'), ...args]);
    const [token, user] = (await readFile(join(dir, 'state', 'tokens.csv'), 'utf8')).split('\n')[0]!.split(',') as [string, string];
    return { gw, dir, token, user, cert: await leafCertificate(gw.url), cacert: join(dir, 'state', 'tls.crt') };
  } catch (err) {
    await rm(dir, { recursive: true, force: true });
    throw err;
  }
}

/**
 * Signs in through the page's form as a person would: `/` → sign-in page, paste the token, submit.
 * A refused sign-in fails at once with the page's heading and alert (not after a navigation timeout).
 */
async function signIn(page: Page, base: string, token: string): Promise<void> {
  await page.goto(`${base}/`);
  assert.equal(new URL(page.url()).pathname, '/ui/sign-in', 'an unsigned visitor lands on the sign-in page');
  await page.locator('input#token').fill(token);
  const [answer] = await Promise.all([
    page.waitForResponse((r) => r.url() === `${base}/ui/sign-in` && r.request().method() === 'POST'),
    page.getByRole('button', { name: 'Sign in' }).click(),
  ]);
  if (answer.status() !== 303) {
    await page.waitForLoadState('load');
    const why = `${await page.locator('h1').textContent()}: ${await page.locator('[role=alert]').first().textContent()}`;
    assert.fail(`sign-in answered ${answer.status()}, not 303 to /ui/ (${why}); the browser sent Origin ${String(await answer.request().headerValue('origin'))}`);
  }
  await page.waitForURL(`${base}/ui/`);
}

async function sessionCookie(context: BrowserContext, base: string): Promise<string | undefined> {
  return (await context.cookies(base)).find((c) => c.name === SESSION)?.value;
}

/** The access lines (`msg: request`) of the gateway for `path` from index `from` of its log on. */
function accessLines(gw: GatewayProcess, path: string, from = 0): Record<string, unknown>[] {
  return gw.logs.slice(from).filter((l) => l.msg === 'request' && l.path === path);
}

/** The cells' texts of a table's body rows (evaluated from a string: the tests are compiled without the DOM's types). */
async function rows(page: Page, table: string): Promise<string[][]> {
  return page.evaluate<string[][]>(`[...document.querySelectorAll(${JSON.stringify(`${table} tbody tr`)})].map((tr) => [...tr.cells].map((c) => c.textContent.trim()))`);
}

describe('the browser page in Chromium', { skip: missingChromium() }, () => {
  let browser: Browser | undefined;
  let local: LocalGateway | undefined;
  let shortLived: LocalGateway | undefined;
  let fx: KubeFixture | undefined;
  let kube: GatewayProcess | undefined;
  let kubeCert: string;
  /** The other site: https://localhost:<port>, a different site from https://127.0.0.1:<port>. */
  let other: { server: Server; origin: string; cert: string } | undefined;

  before(async () => {
    const started = await Promise.allSettled([
      startLocal(),
      startLocal('--session-max-age', '10s'),
      (async () => {
        fx = await kubeFixture();
        kube = await startGateway(fx.args());
        kubeCert = await leafCertificate(kube.url);
      })(),
      (async () => {
        const pki = await createTestPki('other site CA');
        const server = createServer({ cert: pki.cert, key: pki.key }, (req, res) => {
          const url = new URL(req.url ?? '/', 'https://localhost');
          const gateway = local!.gw.url;
          const body =
            url.pathname === '/sign-in-csrf'
              ? // Login CSRF: sign the visitor in as someone else, with a real token and a guessed form field.
                `<!doctype html><title>win a prize</title>
<form id="f" method="post" action="${gateway}/ui/sign-in"><input name="form" value="AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"><input name="token" value="${local!.token}"></form>
<script>document.getElementById('f').submit()</script>`
              : url.pathname === '/embed'
                ? `<!doctype html><title>cat pictures</title>
<img id="img" src="${gateway}/v1/namespaces/velero/backups/${DEMO_BACKUP}/log" alt="">
<iframe id="frame" src="${gateway}/ui/" title="gateway"></iframe>`
                : undefined;
          if (body === undefined) {
            res.writeHead(404).end();
            return;
          }
          res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' }).end(body);
        });
        await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
        other = { server, origin: `https://localhost:${(server.address() as AddressInfo).port}`, cert: pki.cert };
      })(),
    ]);
    [local, shortLived] = started.slice(0, 2).map((s) => (s.status === 'fulfilled' ? s.value : undefined)) as [LocalGateway | undefined, LocalGateway | undefined];
    const failed = started.find((s) => s.status === 'rejected');
    if (failed) throw failed.reason;
    browser = await launchBrowser({ trustCerts: [local!.cert, shortLived!.cert, kubeCert, other!.cert] });
  });

  after(async () => {
    await browser?.close();
    other?.server.close();
    await Promise.all([local?.gw, shortLived?.gw, kube].filter((g): g is GatewayProcess => g !== undefined).map((g) => g.stop()));
    await fx?.close();
    await Promise.all([local, shortLived].filter((l): l is LocalGateway => l !== undefined).map((l) => rm(l.dir, { recursive: true, force: true })));
  });

  describe('local mode with the demo', () => {
    let context: BrowserContext;
    let page: Page;
    let base: string;
    /** Set by the first test; the others need its session. */
    let signedIn = false;
    const needsSession = (): void => assert.ok(signedIn, 'not signed in (the sign-in test failed)');
    const backupUi = (): string => `${base}/ui/namespaces/velero/backups/${DEMO_BACKUP}`;
    const api = (path: string): string => `${base}/v1/namespaces/velero/backups/${DEMO_BACKUP}${path}`;
    /** Bytes of an API URL fetched by the real curl with the bearer token (not through the browser). */
    const fetchApi = async (path: string): Promise<Buffer> => {
      const r = await curl(['--cacert', local!.cacert, '--fail', '--max-time', '20', '-H', `Authorization: Bearer ${local!.token}`, api(path)]);
      assert.equal(r.code, 0, r.stderr);
      return r.stdout;
    };

    before(async () => {
      base = local!.gw.url;
      // A second backup in the data directory, as Velero lays one out, for the list's search and sort.
      const other = join(local!.dir, 'data', 'backups', OTHER_BACKUP);
      await mkdir(other, { recursive: true });
      await writeFile(join(other, `${OTHER_BACKUP}-logs.gz`), gzipSync('time="2026-11-29T02:00:00Z" level=error msg="one volume failed"\n'));
      await writeFile(
        join(other, 'velero-backup.json'),
        JSON.stringify({
          apiVersion: 'velero.io/v1',
          kind: 'Backup',
          metadata: { name: OTHER_BACKUP, namespace: 'velero' },
          spec: { storageLocation: 'default' },
          status: { phase: 'PartiallyFailed', startTimestamp: '2026-11-29T02:00:00Z', completionTimestamp: '2026-11-29T02:04:10Z', errors: 1, warnings: 2 },
        }),
      );
      context = await contextTrusting(browser!, local!.cert, DOCS_VIEW);
      page = await context.newPage();
    });
    after(() => context?.close());

    test('/ leads to the sign-in page; the demo token signs in; the list shows the demo backup and restore', async () => {
      await page.goto(`${base}/`);
      assert.equal(page.url(), `${base}/ui/sign-in`);
      assert.equal(await page.locator('h1').textContent(), 'Sign in');
      await screenshot(page, 'ui-sign-in');
      // A wrong token first: an alert, no session.
      await page.locator('input#token').fill('not-the-demo-token-0123456789');
      await page.getByRole('button', { name: 'Sign in' }).click();
      await page.locator('[role=alert]').waitFor();
      assert.match((await page.locator('[role=alert]').textContent()) ?? '', /not valid/);
      assert.equal(await sessionCookie(context, base), undefined);

      await signIn(page, base, local!.token);
      assert.ok(await sessionCookie(context, base), 'a session cookie is set');
      signedIn = true;
      assert.equal(await page.locator('header strong').textContent(), local!.user);
      assert.match((await page.locator('header').textContent()) ?? '', new RegExp(`Signed in as ${local!.user}`));
      assert.ok(await page.getByRole('button', { name: 'Sign out' }).isVisible());
      const backup = page.locator('#backups-table').getByRole('link', { name: DEMO_BACKUP, exact: true });
      assert.equal(await backup.getAttribute('href'), `/ui/namespaces/velero/backups/${DEMO_BACKUP}`);
      const restore = page.locator('#restores-table').getByRole('link', { name: 'demo-restore', exact: true });
      assert.equal(await restore.getAttribute('href'), '/ui/namespaces/velero/restores/demo-restore');
      const shot = await screenshot(page, 'ui-list');
      if (process.env.VDS_UPDATE_SCREENSHOTS === '1') {
        await mkdir(DOCS_SCREENSHOTS, { recursive: true });
        await copyFile(shot, join(DOCS_SCREENSHOTS, 'ui-list.png'));
      }
    });

    test('the list: search filters the rows, the column buttons sort them (by keyboard too)', async () => {
      needsSession();
      await page.goto(`${base}/ui/`);
      const visible = async (): Promise<string[]> => (await rows(page, '#backups-table')).filter((r) => r.length > 0).map((r) => r[0]!);
      const shownNames = async (): Promise<string[]> =>
        page.evaluate<string[]>(`[...document.querySelectorAll('#backups-table tbody tr')].filter((tr) => !tr.hidden).map((tr) => tr.cells[0].textContent.trim())`);
      assert.deepEqual((await visible()).sort(), [DEMO_BACKUP, OTHER_BACKUP].sort());
      const other = (await rows(page, '#backups-table')).find((r) => r[0] === OTHER_BACKUP)!;
      assert.deepEqual([other[2], other[7], other[8]], ['PartiallyFailed', '1', '2'], 'phase, errors and warnings from velero-backup.json');
      await page.getByLabel('Search backups').fill('weekly');
      assert.deepEqual(await shownNames(), [OTHER_BACKUP]);
      assert.equal(await page.locator('#backups-table-count').textContent(), '1 shown');
      await page.getByLabel('Search backups').fill('');
      assert.equal((await shownNames()).length, 2);
      const byName = page.locator('#backups-table thead').getByRole('button', { name: 'Name', exact: true });
      await byName.focus();
      await page.keyboard.press('Enter');
      assert.equal(await page.locator('#backups-table th[data-key=name]').getAttribute('aria-sort'), 'ascending');
      assert.deepEqual(await shownNames(), [DEMO_BACKUP, OTHER_BACKUP]);
      await page.keyboard.press('Enter');
      assert.equal(await page.locator('#backups-table th[data-key=name]').getAttribute('aria-sort'), 'descending');
      assert.deepEqual(await shownNames(), [OTHER_BACKUP, DEMO_BACKUP]);
      await page.locator('#backups-table thead').getByRole('button', { name: 'Started', exact: true }).click();
      assert.deepEqual(await shownNames(), [OTHER_BACKUP, DEMO_BACKUP], 'by start time, oldest first');
    });

    test('the backup page; contents downloaded by a click is the file in the data directory', async () => {
      needsSession();
      await Promise.all([page.waitForURL(backupUi()), page.locator('#backups-table').getByRole('link', { name: DEMO_BACKUP, exact: true }).click()]);
      assert.equal(await page.locator('h1').textContent(), `Backup ${DEMO_BACKUP}`);
      assert.equal(await page.locator('th[scope=row]', { hasText: /^contents$/ }).count(), 1);
      const link = page.getByRole('link', { name: 'Download contents' });
      assert.equal(await link.getAttribute('href'), `/v1/namespaces/velero/backups/${DEMO_BACKUP}/contents`);
      const shot = await screenshot(page, 'ui-backup');
      if (process.env.VDS_UPDATE_SCREENSHOTS === '1') await copyFile(shot, join(DOCS_SCREENSHOTS, 'ui-backup.png'));
      const { bytes, suggestedFilename } = await downloadByClicking(page, 'a[href$="/contents"]');
      const onDisk = await readFile(join(local!.dir, 'data', 'backups', DEMO_BACKUP, `${DEMO_BACKUP}.tar.gz`));
      assert.ok(onDisk.length > 0);
      assert.equal(bytes.length, onDisk.length);
      assert.ok(bytes.equals(onDisk), 'the downloaded contents differ from the file in the data directory');
      assert.equal(suggestedFilename, `${DEMO_BACKUP}.tar.gz`);
      assert.equal(page.url(), backupUi(), 'the download did not navigate away');
    });

    test('the log viewer shows the lines and filters them by level', async () => {
      needsSession();
      await page.goto(backupUi());
      const view = page.getByRole('link', { name: 'View log' });
      assert.equal(await view.getAttribute('href'), `/ui/namespaces/velero/backups/${DEMO_BACKUP}/log`);
      await Promise.all([page.waitForURL(`${backupUi()}/log`), view.click()]);
      assert.equal(await page.locator('h1').textContent(), `Log of backup ${DEMO_BACKUP}`);
      const all = await rows(page, 'table#log-table');
      // The demo log: four info lines (src/velero/demo.ts).
      assert.deepEqual(all.map((r) => r[1]), ['info', 'info', 'info', 'info']);
      assert.deepEqual(all.map((r) => r[0]), ['1', '2', '3', '4']);
      assert.match(all[3]![2]!, /Backed up a total of 3 items/);
      assert.deepEqual(await page.evaluate<string[]>("[...document.querySelectorAll('select#level option')].map((o) => o.value)"), ['all', 'error', 'warning', 'info', 'debug']);
      await screenshot(page, 'ui-log');

      await page.locator('select#level').selectOption('error');
      await Promise.all([page.waitForURL(/[?&]level=error\b/), page.getByRole('button', { name: 'Show' }).click()]);
      assert.equal(await page.locator('table#log-table tbody tr').count(), 0, 'the demo log has no error line');
      assert.equal(await page.locator('select#level').inputValue(), 'error', 'the filter shown is the one applied');
      await page.locator('select#level').selectOption('info');
      await Promise.all([page.waitForURL(/[?&]level=info\b/), page.getByRole('button', { name: 'Show' }).click()]);
      assert.deepEqual((await rows(page, 'table#log-table')).map((r) => r[2]), all.map((r) => r[2]));
      assert.equal(await page.getByRole('link', { name: 'Next page' }).count(), 0, 'four lines fit on one page');
    });

    test('the results page', async () => {
      needsSession();
      await page.goto(backupUi());
      const view = page.getByRole('link', { name: 'View results' });
      assert.equal(await view.getAttribute('href'), `/ui/namespaces/velero/backups/${DEMO_BACKUP}/results`);
      await Promise.all([page.waitForURL(`${backupUi()}/results`), view.click()]);
      assert.equal(await page.locator('h1').textContent(), `Results of backup ${DEMO_BACKUP}`);
      // The demo's results are { errors: {}, warnings: {} }.
      assert.equal(await page.locator('table#results-table').count(), 0);
      assert.equal(await page.getByText('No errors or warnings.').count(), 1);
      await screenshot(page, 'ui-results');
    });

    test('volumes: the demo volume, its directories, a file and a directory\'s tar downloaded by clicking', async () => {
      needsSession();
      await page.goto(backupUi());
      const browse = page.getByRole('link', { name: 'Browse volumes' });
      assert.equal(await browse.getAttribute('href'), `/ui/namespaces/velero/backups/${DEMO_BACKUP}/volumes`);
      await Promise.all([page.waitForURL(`${backupUi()}/volumes`), browse.click()]);
      assert.equal(await page.locator('h1').textContent(), `Volumes of backup ${DEMO_BACKUP}`);
      const volume = page.locator('table#volumes-table').getByRole('link', { name: DEMO_VOLUME_ID, exact: true });
      assert.equal(decodeURIComponent((await volume.getAttribute('href')) ?? ''), `/ui/namespaces/velero/backups/${DEMO_BACKUP}/volumes/${DEMO_VOLUME_ID}/files/`);
      await screenshot(page, 'ui-volumes');

      await Promise.all([page.waitForURL(/\/files\/$/), volume.click()]);
      assert.ok(((await page.locator('h1').textContent()) ?? '').startsWith(DEMO_VOLUME_ID));
      // The demo volume's root (test/e2e/volumes.test.ts lists the same through the API).
      const names = (await rows(page, 'table#files-table')).map((r) => r[0]);
      for (const n of ['about/', 'assets/', 'index.html', 'latest.log', 'logs/', 'uploads/']) assert.ok(names.includes(n), `${n} in ${JSON.stringify(names)}`);
      const index = page.locator('table#files-table').getByRole('link', { name: 'index.html', exact: true });
      assert.equal(decodeURIComponent((await index.getAttribute('href')) ?? ''), `/v1/namespaces/velero/backups/${DEMO_BACKUP}/volumes/${DEMO_VOLUME_ID}/files/index.html`);
      await screenshot(page, 'ui-directory');

      const logs = page.locator('table#files-table').getByRole('link', { name: 'logs/', exact: true });
      await Promise.all([page.waitForURL(/\/files\/logs\/?$/), logs.click()]);
      assert.ok(((await page.locator('h1').textContent()) ?? '').startsWith(DEMO_VOLUME_ID));
      const accessLog = page.locator('table#files-table').getByRole('link', { name: 'access.log', exact: true });
      const fileHref = `/v1/namespaces/velero/backups/${DEMO_BACKUP}/volumes/${DEMO_VOLUME_ID}/files/logs/access.log`;
      assert.equal(decodeURIComponent((await accessLog.getAttribute('href')) ?? ''), fileHref);
      await screenshot(page, 'ui-directory-logs');

      const file = await downloadByClicking(page, 'table#files-table a[href$="/logs/access.log"]');
      const fromApi = await fetchApi(`/volumes/${DEMO_VOLUME_ID}/files/logs/access.log`);
      assert.ok(fromApi.length > 100_000, `the demo's access.log is over 100 KB (${fromApi.length})`);
      assert.ok(file.bytes.equals(fromApi), `the file downloaded by the browser (${file.bytes.length} bytes) differs from the API's (${fromApi.length})`);
      assert.equal(file.suggestedFilename, 'access.log');

      const tarLink = page.getByRole('link', { name: 'Download this directory as a tar' });
      assert.equal(decodeURIComponent((await tarLink.getAttribute('href')) ?? '').replace(/\/$/, ''), `/v1/namespaces/velero/backups/${DEMO_BACKUP}/volumes/${DEMO_VOLUME_ID}/archive/logs`);
      const archive = await downloadByClicking(page, 'a[href*="/archive/"]');
      assert.equal(archive.bytes.subarray(257, 262).toString('latin1'), 'ustar', 'ustar magic at offset 257');
      const entries = await untar(archive.bytes);
      const inTar = entries.get('logs/access.log');
      assert.ok(inTar, `logs/access.log in the tar: ${JSON.stringify([...entries.keys()])}`);
      assert.ok(inTar.data.equals(fromApi), 'the tar\'s access.log differs from the API\'s');
      assert.match(archive.suggestedFilename, /\.tar$/);
    });

    test('sign-out lands on the sign-in page; /ui/ then goes to sign-in again', async () => {
      needsSession();
      await page.goto(`${base}/ui/`);
      await Promise.all([page.waitForURL(/\/ui\/sign-in\?signed-out$/), page.getByRole('button', { name: 'Sign out' }).click()]);
      assert.equal(await page.locator('h1').textContent(), 'Sign in');
      assert.equal(await page.locator('[role=status]').textContent(), 'Signed out.');
      assert.equal(await sessionCookie(context, base), undefined, 'the session cookie is gone');
      await page.goto(`${base}/ui/`);
      assert.equal(page.url(), `${base}/ui/sign-in`);
    });
  });

  describe('kubernetes mode (API double): bob, who may read only backups/log', () => {
    let context: BrowserContext;
    let page: Page;
    let base: string;
    const backupUi = (): string => `${base}/ui/namespaces/${NS}/backups/${BACKUP}`;
    const contentsUrl = (): string => `${base}/v1/namespaces/${NS}/backups/${BACKUP}/contents`;
    let signedIn = false;
    const needsSession = (): void => assert.ok(signedIn, 'bob is not signed in (the sign-in test failed)');

    before(async () => {
      base = kube!.url;
      context = await contextTrusting(browser!, kubeCert, DOCS_VIEW);
      page = await context.newPage();
    });
    after(() => context?.close());

    /** The refusal as a page: the heading, the reason, the page's own stylesheet (not a JSON Status). */
    async function assert403Page(): Promise<void> {
      assert.equal(page.url(), contentsUrl());
      assert.equal(await page.locator('h1').textContent(), '403 Not allowed');
      assert.match((await page.locator('[role=alert]').textContent()) ?? '', /cannot get resource "backups\/contents"/);
      assert.equal(await page.locator('link[rel=stylesheet][href^="/ui/assets/"]').count(), 1, 'an HTML page of the gateway, not a Status');
    }

    test('bob signs in and sees the backup, its contents marked as not readable', async () => {
      await signIn(page, base, fx!.tokens.bob);
      signedIn = true;
      assert.match((await page.locator('header').textContent()) ?? '', /Signed in as bob/);
      await Promise.all([page.waitForURL(backupUi()), page.locator('#backups-table').getByRole('link', { name: BACKUP, exact: true }).click()]);
      assert.equal(await page.locator('h1').textContent(), `Backup ${BACKUP}`);
      const link = page.getByRole('link', { name: 'Download contents' });
      assert.equal(await link.getAttribute('href'), `/v1/namespaces/${NS}/backups/${BACKUP}/contents`);
    });

    test('opening the contents URL shows a 403 page', async () => {
      needsSession();
      const response = await page.goto(contentsUrl());
      assert.ok(response);
      assert.equal(response.status(), 403);
      assert.match((await response.headerValue('content-type')) ?? '', /^text\/html/);
      await assert403Page();
      await screenshot(page, 'ui-403');
    });

    test('clicking the contents download link shows that 403 page, not a failed download', async () => {
      needsSession();
      await page.goto(backupUi());
      const mark = kube!.logs.length;
      const downloads: { url: string; failure: Promise<string | null> }[] = [];
      page.on('download', (d) => downloads.push({ url: d.url(), failure: d.failure() }));
      await page.getByRole('link', { name: 'Download contents' }).click();
      // Either the browser navigates to the refusal, or it turns the click into a download.
      await Promise.race([page.waitForURL(contentsUrl()), page.waitForEvent('download')]);
      const answered = await eventually('the gateway\'s answer in its log', () => accessLines(kube!, `/v1/namespaces/${NS}/backups/${BACKUP}/contents`, mark)[0], 5000);
      assert.equal(answered.status, 403);
      if (downloads.length > 0) {
        const failure = await Promise.race([downloads[0]!.failure, new Promise((r) => setTimeout(r, 2000, 'not finished within 2 s'))]);
        assert.fail(`the click started a download (the link has the download attribute), which failed with ${JSON.stringify(failure)}; the page stayed at ${page.url()} and no 403 page was shown`);
      }
      await page.waitForLoadState('load');
      await assert403Page();
    });
  });

  test('a session ends at --session-max-age 10s: the reloaded page is the sign-in page, and the old cookie opens nothing', async () => {
    const context = await contextTrusting(browser!, shortLived!.cert);
    try {
      const page = await context.newPage();
      const base = shortLived!.gw.url;
      await signIn(page, base, shortLived!.token);
      assert.equal(await page.locator('h1').textContent(), 'Backups and restores');
      const kept = (await context.cookies(base)).find((c) => c.name === SESSION);
      assert.ok(kept, 'signed in');
      assert.ok(kept.expires > 0 && kept.expires - Date.now() / 1000 <= 10.5, `cookie expires in ${kept.expires - Date.now() / 1000} s`);
      await new Promise((r) => setTimeout(r, 11_000));
      await page.reload();
      assert.equal(page.url(), `${base}/ui/sign-in`, 'the browser dropped the cookie at its Max-Age');
      // A cookie kept past its end (copied out of the browser) is refused by the gateway itself.
      await context.addCookies([{ name: SESSION, value: kept.value, url: `${base}/`, secure: true, httpOnly: true, sameSite: 'Strict' }]);
      await page.goto(`${base}/ui/`);
      assert.equal(page.url(), `${base}/ui/sign-in?ended`, 'the gateway refuses the expired session');
      assert.equal(await sessionCookie(context, base), undefined, 'and clears it');
    } finally {
      await context.close();
    }
  });

  describe('another site', () => {
    test('login CSRF: a form another site submits to /ui/sign-in signs nobody in', async () => {
      const context = await contextTrusting(browser!, local!.cert);
      try {
        const page = await context.newPage();
        const base = local!.gw.url;
        // The victim has been to the sign-in page before (so holds its form cookie), not signed in.
        await page.goto(`${base}/ui/sign-in`);
        const mark = local!.gw.logs.length;
        await Promise.all([page.waitForURL(`${base}/ui/sign-in`), page.goto(`${other!.origin}/sign-in-csrf`)]);
        await page.waitForLoadState('load');
        assert.equal(await page.locator('h1').textContent(), '403 Not allowed');
        const post = await eventually('the POST in the access log', () => accessLines(local!.gw, '/ui/sign-in', mark).find((l) => l.method === 'POST'), 5000);
        assert.equal(post.status, 403);
        assert.equal(await sessionCookie(context, base), undefined, 'no session cookie');
        await page.goto(`${base}/ui/`);
        assert.equal(page.url(), `${base}/ui/sign-in`, 'the victim is not signed in');
      } finally {
        await context.close();
      }
    });

    test('while signed in: another site\'s image request carries no session (401) and its frame of the page is refused', async () => {
      const context = await contextTrusting(browser!, local!.cert);
      try {
        const page = await context.newPage();
        const base = local!.gw.url;
        await signIn(page, base, local!.token);
        assert.ok(await sessionCookie(context, base));
        // The same request from the gateway's own page is allowed: the session works.
        await page.goto(`${base}/ui/namespaces/velero/backups/${DEMO_BACKUP}`);
        const own = await downloadByClicking(page, `a[href="/v1/namespaces/velero/backups/${DEMO_BACKUP}/log"]`);
        assert.ok(own.bytes.equals(await readFile(join(local!.dir, 'data', 'backups', DEMO_BACKUP, `${DEMO_BACKUP}-logs.gz`))));

        const csp: string[] = [];
        page.on('console', (m) => {
          if (/frame-ancestors|Refused to (frame|display)/i.test(m.text())) csp.push(m.text());
        });
        const mark = local!.gw.logs.length;
        await page.goto(`${other!.origin}/embed`);
        await page.waitForFunction('document.getElementById("img").complete', undefined, { timeout: 10_000 });
        const imageRequests = await eventually('the image request in the access log', () => {
          const l = accessLines(local!.gw, `/v1/namespaces/velero/backups/${DEMO_BACKUP}/log`, mark);
          return l.length > 0 ? l : undefined;
        }, 5000);
        assert.deepEqual(imageRequests.map((l) => l.status), [401], 'the cross-site image request came without the session');

        await eventually('the frame-ancestors refusal', () => csp.length > 0, 5000);
        assert.match(csp.join('\n'), /frame-ancestors 'none'/);
        const frame = page.frames().find((f) => f !== page.mainFrame());
        assert.ok(frame, 'the iframe exists');
        let framed = '';
        try {
          framed = await frame.content();
        } catch {
          // A refused frame may have no document to read at all.
        }
        assert.ok(!framed.includes('Velero downloads'), 'the gateway\'s page is not rendered in the other site\'s frame');
        // The victim is still signed in (nothing the other site did ended the session).
        await page.goto(`${base}/ui/`);
        assert.equal(page.url(), `${base}/ui/`);
      } finally {
        await context.close();
      }
    });
  });
});
