/**
 * A real browser for the page's tests: Debian's headless Chromium driven by playwright-core, never a
 * browser that Playwright downloads. `.ci/run` installs the `chromium` package; without it the tests
 * that need it are skipped locally with a line saying how to install it, and fail under `CI=true`
 * (the rule of `missingTools`, shared through `skipReasonOutsideCi`).
 *
 * HTTPS stays verified: a test's server certificates are trusted one by one at launch
 * (`--ignore-certificate-errors-spki-list`, by the SHA-256 of their public key), so a page served
 * with any other certificate still fails with `net::ERR_CERT_…`; nothing sets `ignoreHTTPSErrors`.
 *
 * Launch costs about a second, so a test file shares one browser and gives each test a context:
 *
 * ```ts
 * describe('…', { skip: missingChromium() }, () => {
 *   let browser: Browser;
 *   before(async () => (browser = await launchBrowser({ trustCerts: [pki.cert] })));
 *   after(() => browser?.close());
 *   test('…', async () => {
 *     const context = await contextTrusting(browser, pki.cert);
 *     try { const page = await context.newPage(); await page.goto(url); … } finally { await context.close(); }
 *   });
 * });
 * ```
 */
import { X509Certificate, createHash } from 'node:crypto';
import { accessSync, constants } from 'node:fs';
import { mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';
import type { Browser, BrowserContext, BrowserContextOptions, Page } from 'playwright-core';
import { skipReasonOutsideCi } from './real-cluster.ts';

/** Bounds on every wait, so a hung browser fails the test instead of holding the suite. */
export const BROWSER_TIMEOUTS = {
  launch: 30_000,
  navigation: 15_000,
  /** Clicks, fills, waits for selectors, screenshots. */
  action: 10_000,
  /** From the click to the whole file on disk. */
  download: 30_000,
} as const;

const CANDIDATES = ['/usr/bin/chromium', '/usr/bin/chromium-browser'];
const HOW_TO_INSTALL = 'install Debian\'s chromium (`apt-get install chromium fonts-liberation`) or set VDS_CHROMIUM to a Chromium binary';

const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url));
/** Where `screenshot` writes (ignored by git). */
export const SCREENSHOT_DIR = join(REPO_ROOT, 'test-artifacts', 'screenshots');

function executable(path: string): boolean {
  try {
    accessSync(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/**
 * The Chromium to drive: `VDS_CHROMIUM` when set (and then only it: a wrong path is not papered over
 * by another browser), else the first of /usr/bin/chromium, /usr/bin/chromium-browser; undefined when
 * there is none.
 */
export function chromiumPath(): string | undefined {
  const chosen = process.env.VDS_CHROMIUM;
  if (chosen) return executable(chosen) ? chosen : undefined;
  return CANDIDATES.find(executable);
}

/**
 * For `describe(name, { skip: missingChromium() }, ...)`: false when a Chromium is there, else the
 * reason the tests are skipped. Under `CI=true` a missing browser throws instead: CI must run them.
 */
export function missingChromium(): string | false {
  if (chromiumPath()) return false;
  const where = process.env.VDS_CHROMIUM ? `VDS_CHROMIUM=${process.env.VDS_CHROMIUM} is not executable` : `no Chromium at ${CANDIDATES.join(' or ')}`;
  return skipReasonOutsideCi(`${where}: ${HOW_TO_INSTALL}`);
}

/** Base64 of the SHA-256 of a certificate's SubjectPublicKeyInfo (DER): the form Chromium's SPKI list takes. */
export function spkiHash(certPem: string): string {
  const spki = new X509Certificate(certPem).publicKey.export({ type: 'spki', format: 'der' });
  return createHash('sha256').update(spki).digest('base64');
}

export interface LaunchOptions {
  /**
   * Server certificates (PEM) the browser accepts although no CA it knows signed them; any other
   * certificate error still fails. Chromium takes the list only at launch, for the whole browser.
   */
  trustCerts?: readonly string[];
  /** More Chromium switches. */
  args?: readonly string[];
}

const trusted = new WeakMap<Browser, ReadonlySet<string>>();

/** Launches headless Chromium. The caller closes it (`after` / `finally`). */
export async function launchBrowser(options: LaunchOptions = {}): Promise<Browser> {
  const executablePath = chromiumPath();
  if (!executablePath) throw new Error(`no Chromium: ${HOW_TO_INSTALL}`);
  const spkis = new Set((options.trustCerts ?? []).map(spkiHash));
  const args = [...(options.args ?? [])];
  if (spkis.size > 0) args.push(`--ignore-certificate-errors-spki-list=${[...spkis].join(',')}`);
  // Chromium refuses to start as root with its sandbox (these machines run the tests as root), so
  // the sandbox goes only then. Playwright adds --no-sandbox unless chromiumSandbox is true: say so.
  const root = process.getuid?.() === 0;
  if (root) args.push('--no-sandbox');
  const browser = await chromium.launch({
    executablePath,
    headless: true,
    chromiumSandbox: !root,
    args,
    timeout: BROWSER_TIMEOUTS.launch,
  });
  trusted.set(browser, spkis);
  return browser;
}

/**
 * A fresh context (its own cookies and storage) for pages of the server whose certificate is
 * `certPem`, which must have been among the browser's `trustCerts`: a test that forgot it fails here
 * rather than with a certificate error later. Downloads are accepted; timeouts are bounded.
 */
export async function contextTrusting(browser: Browser, certPem: string, options: BrowserContextOptions = {}): Promise<BrowserContext> {
  if (!trusted.get(browser)?.has(spkiHash(certPem))) {
    throw new Error('this certificate was not in launchBrowser({ trustCerts }) of this browser');
  }
  return newContext(browser, options);
}

/** A fresh context that trusts nothing more than the browser does (for pages that must fail, or plain HTTP). */
export async function newContext(browser: Browser, options: BrowserContextOptions = {}): Promise<BrowserContext> {
  const context = await browser.newContext({ acceptDownloads: true, ...options });
  context.setDefaultNavigationTimeout(BROWSER_TIMEOUTS.navigation);
  context.setDefaultTimeout(BROWSER_TIMEOUTS.action);
  return context;
}

/**
 * A full-page PNG of `page` at test-artifacts/screenshots/<name>.png under the repository (for a
 * person to look at when a test fails, or to attach in CI). Returns the path.
 */
export async function screenshot(page: Page, name: string): Promise<string> {
  if (!/^[\w.-]+$/.test(name) || name.startsWith('.')) throw new Error(`screenshot name ${JSON.stringify(name)}: letters, digits, _ . - only`);
  await mkdir(SCREENSHOT_DIR, { recursive: true });
  const path = join(SCREENSHOT_DIR, `${name}.png`);
  await page.screenshot({ path, fullPage: true, timeout: BROWSER_TIMEOUTS.action });
  return path;
}

export interface Downloaded {
  bytes: Buffer;
  /** The name the browser would save it as (from Content-Disposition, else the URL). */
  suggestedFilename: string;
}

/**
 * Clicks `selector` (a link or button that starts a download) and returns the downloaded file once
 * the browser has all of it. A failed download (a reset, a short body) throws with the browser's
 * reason; so does one that takes longer than BROWSER_TIMEOUTS.download, which is then cancelled.
 * The page's context needs `acceptDownloads` (contexts from this module have it).
 */
export async function downloadByClicking(page: Page, selector: string): Promise<Downloaded> {
  const [download] = await Promise.all([
    page.waitForEvent('download', { timeout: BROWSER_TIMEOUTS.download }),
    page.click(selector),
  ]);
  let timer: NodeJS.Timeout | undefined;
  const timedOut = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      void download.cancel();
      reject(new Error(`download of ${download.url()} did not finish within ${BROWSER_TIMEOUTS.download} ms`));
    }, BROWSER_TIMEOUTS.download);
  });
  try {
    const failure = await Promise.race([download.failure(), timedOut]);
    if (failure !== null) throw new Error(`download of ${download.url()} failed: ${failure}`);
    const bytes = await readFile(await download.path());
    return { bytes, suggestedFilename: download.suggestedFilename() };
  } finally {
    clearTimeout(timer);
  }
}
