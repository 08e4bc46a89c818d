/**
 * The browser infrastructure itself (test/support/browser.ts), against a small HTTPS server of this
 * file: a certificate is trusted only when named at launch, a page's Content-Security-Policy is
 * enforced, forms, downloads and screenshots work, and the browser leaves no process behind. The page
 * tests rely on each of these.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readdir, readFile, rm } from 'node:fs/promises';
import { createServer, request } from 'node:https';
import type { ServerResponse } from 'node:http';
import type { Server, ServerOptions } from 'node:https';
import type { AddressInfo } from 'node:net';
import { after, before, describe, test } from 'node:test';
import type { Browser } from 'playwright-core';
import {
  contextTrusting,
  downloadByClicking,
  launchBrowser,
  missingChromium,
  newContext,
  screenshot,
  spkiHash,
} from '../support/browser.ts';
import { createTestPki } from '../support/test-ca.ts';
import type { TestPki } from '../support/test-ca.ts';

const CSP = "default-src 'none'; style-src 'self'; frame-ancestors 'none'";
const TITLE = 'Browser support page';
const FILE = randomBytes(300 * 1024);

function page(): string {
  return `<!doctype html>
<html><head><meta charset="utf-8"><title>${TITLE}</title><link rel="stylesheet" href="/style.css"></head>
<body>
<h1>Backups</h1>
<form action="/echo" method="get"><label>Name <input name="q" id="q"></label><button id="go">Search</button></form>
<p><a id="dl" href="/file.bin">backup.tar.gz</a></p>
<script>document.title='ran'</script>
</body></html>`;
}

function html(res: ServerResponse, body: string, csp: boolean): void {
  res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', ...(csp ? { 'content-security-policy': CSP } : {}) });
  res.end(body);
}

async function serve(pki: TestPki): Promise<{ server: Server; url: string }> {
  const options: ServerOptions = { cert: pki.cert, key: pki.key };
  const server = createServer(options, (req, res) => {
    const url = new URL(req.url ?? '/', 'https://x');
    if (url.pathname === '/') return html(res, page(), true);
    // The same page without the policy: its inline script runs, so the CSP test can tell the difference.
    if (url.pathname === '/no-csp') return html(res, page(), false);
    if (url.pathname === '/style.css') {
      res.writeHead(200, { 'content-type': 'text/css' });
      return res.end('h1 { color: rgb(1, 2, 3); }');
    }
    if (url.pathname === '/echo') {
      const q = (url.searchParams.get('q') ?? '').replace(/[^\w -]/g, '');
      return html(res, `<!doctype html><title>echo</title><p id="out">you asked for ${q}</p>`, true);
    }
    if (url.pathname === '/file.bin') {
      res.writeHead(200, {
        'content-type': 'application/octet-stream',
        'content-length': FILE.length,
        'content-disposition': 'attachment; filename="backup.tar.gz"',
      });
      return res.end(FILE);
    }
    res.writeHead(404).end();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { server, url: `https://127.0.0.1:${(server.address() as AddressInfo).port}` };
}

/** Processes whose command line contains `needle` (Chromium's keeps its switches, the SPKI hash among them). */
async function processesWith(needle: string): Promise<number[]> {
  const pids: number[] = [];
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      if ((await readFile(`/proc/${entry}/cmdline`, 'latin1')).includes(needle)) pids.push(Number(entry));
    } catch {
      // Gone while we looked.
    }
  }
  return pids;
}

describe('real browser support', { skip: missingChromium() }, () => {
  let trustedPki: TestPki;
  let otherPki: TestPki;
  let trustedSite: { server: Server; url: string };
  let otherSite: { server: Server; url: string };
  let browser: Browser;
  let launchMs = 0;

  before(async () => {
    [trustedPki, otherPki] = await Promise.all([createTestPki('browser test CA'), createTestPki('other CA')]);
    [trustedSite, otherSite] = await Promise.all([serve(trustedPki), serve(otherPki)]);
    const started = performance.now();
    browser = await launchBrowser({ trustCerts: [trustedPki.cert] });
    launchMs = performance.now() - started;
  });
  after(async () => {
    await browser?.close();
    trustedSite?.server.close();
    otherSite?.server.close();
  });

  test('a page of the trusted server loads, with its stylesheet', async (t) => {
    const context = await contextTrusting(browser, trustedPki.cert);
    try {
      const p = await context.newPage();
      const started = performance.now();
      const response = await p.goto(`${trustedSite.url}/`);
      const firstPageMs = performance.now() - started;
      assert.equal(response?.status(), 200);
      assert.equal(await p.textContent('h1'), 'Backups');
      // style-src 'self' lets the server's own stylesheet in.
      // (A string, evaluated in the page: the tests are compiled without the DOM's types.)
      assert.equal(await p.evaluate<string>("getComputedStyle(document.querySelector('h1')).color"), 'rgb(1, 2, 3)');
      t.diagnostic(`chromium ${browser.version()}: launch ${launchMs.toFixed(0)} ms, first page ${firstPageMs.toFixed(0)} ms`);
    } finally {
      await context.close();
    }
  });

  test('a server whose certificate was not named at launch fails to load', async () => {
    // The other server does serve: Node, given its CA, reads the page.
    const status = await new Promise<number | undefined>((resolve, reject) => {
      request(`${otherSite.url}/`, { ca: otherPki.caCert }, (res) => {
        res.resume();
        resolve(res.statusCode);
      })
        .on('error', reject)
        .end();
    });
    assert.equal(status, 200);
    const context = await newContext(browser);
    try {
      const p = await context.newPage();
      await assert.rejects(p.goto(`${otherSite.url}/`), /net::ERR_CERT_/);
    } finally {
      await context.close();
    }
    await assert.rejects(contextTrusting(browser, otherPki.cert), /not in launchBrowser/);
    assert.notEqual(spkiHash(otherPki.cert), spkiHash(trustedPki.cert));
  });

  test('the Content-Security-Policy blocks the inline script; without it the script runs', async () => {
    const context = await contextTrusting(browser, trustedPki.cert);
    try {
      const p = await context.newPage();
      const violations: string[] = [];
      p.on('console', (m) => {
        if (m.text().includes('Content Security Policy')) violations.push(m.text());
      });
      await p.goto(`${trustedSite.url}/`);
      assert.equal(await p.title(), TITLE);
      assert.ok(violations.some((v) => v.includes('script-src')), `no CSP violation reported: ${JSON.stringify(violations)}`);

      await p.goto(`${trustedSite.url}/no-csp`);
      assert.equal(await p.title(), 'ran');
    } finally {
      await context.close();
    }
  });

  test('a form is filled and submitted', async () => {
    const context = await contextTrusting(browser, trustedPki.cert);
    try {
      const p = await context.newPage();
      await p.goto(`${trustedSite.url}/`);
      await p.fill('#q', 'nightly-2026');
      await Promise.all([p.waitForURL(/\/echo\?q=nightly-2026$/), p.click('#go')]);
      assert.equal(await p.textContent('#out'), 'you asked for nightly-2026');
    } finally {
      await context.close();
    }
  });

  test('a download gives the bytes served, under the name of Content-Disposition', async () => {
    const context = await contextTrusting(browser, trustedPki.cert);
    try {
      const p = await context.newPage();
      await p.goto(`${trustedSite.url}/`);
      const { bytes, suggestedFilename } = await downloadByClicking(p, '#dl');
      assert.equal(bytes.length, FILE.length);
      assert.ok(bytes.equals(FILE), 'downloaded bytes differ from those served');
      assert.equal(suggestedFilename, 'backup.tar.gz');
    } finally {
      await context.close();
    }
  });

  test('a screenshot is written as a PNG', async () => {
    const context = await contextTrusting(browser, trustedPki.cert);
    try {
      const p = await context.newPage();
      await p.goto(`${trustedSite.url}/`);
      const name = 'browser-support';
      await rm(`test-artifacts/screenshots/${name}.png`, { force: true });
      const path = await screenshot(p, name);
      assert.match(path, /test-artifacts\/screenshots\/browser-support\.png$/);
      const png = await readFile(path);
      assert.deepEqual([...png.subarray(0, 8)], [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
      // IHDR: width and height (big-endian) at 16 and 20; the default viewport is 1280 wide.
      assert.equal(png.readUInt32BE(16), 1280);
      assert.ok(png.readUInt32BE(20) > 0);
      await assert.rejects(screenshot(p, '../escape'), /letters, digits/);
    } finally {
      await context.close();
    }
  });

  // Last: it closes the shared browser.
  test('closing the browser leaves no Chromium process behind', async () => {
    // The SPKI hash is in the browser's command line and unique to this run's certificate.
    const needle = spkiHash(trustedPki.cert);
    assert.ok((await processesWith(needle)).length > 0, 'the running browser was not found by its command line');
    await browser.close();
    const deadline = Date.now() + 5000;
    let left = await processesWith(needle);
    while (left.length > 0 && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 100));
      left = await processesWith(needle);
    }
    assert.deepEqual(left, [], 'Chromium processes still running after close');
  });
});
