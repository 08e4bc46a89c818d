/**
 * The page's HTML: one layout and the views, as functions of plain values. Everything shown comes
 * through `html`, which escapes it. No inline script or style anywhere (the Content-Security-Policy
 * forbids both): behaviour comes from the one hashed script, looks from the one hashed stylesheet.
 */
import type { CatalogEntry } from '../../velero/catalog.ts';
import type { BackupVolume } from '../../velero/volumes.ts';
import type { LogLevel, LogPage, ResultRow } from './readers.ts';
import { LOG_LEVELS, LOG_PAGE_LINES } from './readers.ts';
import type { OwnerKind } from '../../velero/artifacts.ts';
import { SCRIPT, STYLE } from './assets.ts';
import { html, seg } from './html.ts';
import type { Html } from './html.ts';

export interface LayoutOptions {
  title: string;
  /** Who is signed in: shown with the sign-out button (which needs the form token). */
  user?: { name: string; formToken: string };
  body: Html;
}

export function layout(o: LayoutOptions): string {
  return html`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="color-scheme" content="light dark">
<title>${o.title} · Velero downloads</title>
<link rel="stylesheet" href="${STYLE.path}">
<script src="${SCRIPT.path}" defer></script>
</head>
<body>
<header>
<a class="brand" href="/ui/">Velero downloads</a>
${o.user ? html`<form method="post" action="/ui/sign-out"><span class="muted">Signed in as <strong>${o.user.name}</strong></span><input type="hidden" name="form" value="${o.user.formToken}"><button type="submit" class="secondary">Sign out</button></form>` : ''}
</header>
<main id="main">
${o.body}
</main>
</body>
</html>
`.text;
}

export interface SignInView {
  formToken: string;
  mode: 'local' | 'kubernetes';
  /** Why the form is shown again (escaped like everything else). */
  error?: string;
  notice?: string;
}

export function signInPage(v: SignInView): string {
  const help =
    v.mode === 'local'
      ? html`<p>This gateway runs in local mode: use a token from its token file (<code>state/tokens.csv</code>, the first column; the demo token is written there on first start).</p>`
      : html`<p>Paste a Kubernetes bearer token. For a service account: <code>kubectl create token &lt;service-account&gt; -n &lt;namespace&gt;</code>. With your cluster's OIDC login, the ID token it prints (for example <code>kubectl oidc-login get-token …</code>). The gateway asks the API server who the token belongs to (TokenReview) and shows only what that user may read.</p>`;
  return layout({
    title: 'Sign in',
    body: html`<h1>Sign in</h1>
${v.error ? html`<p class="notice error" role="alert">${v.error}</p>` : ''}
${v.notice ? html`<p class="notice" role="status">${v.notice}</p>` : ''}
${help}
<form method="post" action="/ui/sign-in" autocomplete="off">
<input type="hidden" name="form" value="${v.formToken}">
<label for="token">Bearer token</label>
<input type="password" id="token" name="token" required spellcheck="false" autocomplete="off" aria-describedby="token-help">
<p id="token-help" class="muted">The token is kept encrypted in a cookie this page's scripts cannot read, and never appears in a URL or a log.</p>
<button type="submit">Sign in</button>
</form>`,
  });
}

export interface ErrorView {
  code: number;
  reason: string;
  message: string;
  signedIn?: { name: string; formToken: string };
}

export function errorPage(v: ErrorView): string {
  const action =
    v.code === 401
      ? html`<p><a class="button" href="/ui/sign-in">Sign in</a></p>`
      : html`<p><a href="/ui/">Back to the list of backups</a></p>`;
  return layout({
    title: `${v.code} ${v.reason}`,
    ...(v.signedIn && { user: v.signedIn }),
    body: html`<h1>${v.code} ${titleOf(v.code)}</h1>
<p class="notice error" role="alert">${v.message}</p>
${action}`,
  });
}

function titleOf(code: number): string {
  switch (code) {
    case 400: return 'Bad request';
    case 401: return 'Not signed in';
    case 403: return 'Not allowed';
    case 404: return 'Not found';
    case 429: return 'Too many requests';
    case 503: return 'Unavailable, try again';
    default: return code >= 500 ? 'The gateway could not answer' : 'Request refused';
  }
}

export function formatBytes(n: number | undefined): string {
  if (n === undefined) return '';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = n;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return u === 0 ? `${n} B` : `${v.toFixed(v < 10 ? 1 : 0)} ${units[u]}`;
}

/** A timestamp as the API wrote it, shown in UTC without seconds' fractions. */
function when(t: string | undefined): Html {
  if (!t) return html``;
  const d = new Date(t);
  if (Number.isNaN(d.getTime())) return html`${t}`;
  return html`<time datetime="${d.toISOString()}">${d.toISOString().replace('T', ' ').replace(/\.\d+Z$|Z$/, ' UTC')}</time>`;
}

export interface NamespaceListing {
  namespace: string;
  backups: CatalogEntry[];
  restores: CatalogEntry[];
}

export function listPage(user: { name: string; formToken: string }, listings: NamespaceListing[], notes: string[]): string {
  const backups = listings.flatMap((l) => l.backups);
  const restores = listings.flatMap((l) => l.restores);
  return layout({
    title: 'Backups',
    user,
    body: html`<h1>Backups and restores</h1>
${notes.map((n) => html`<p class="notice" role="status">${n}</p>`)}
<h2 id="backups-heading">Backups</h2>
${backups.length === 0 ? html`<p class="muted">No backups you may see.</p>` : entryTable('backups', backups)}
<h2 id="restores-heading">Restores</h2>
${restores.length === 0 ? html`<p class="muted">No restores you may see.</p>` : entryTable('restores', restores)}`,
  });
}

function entryTable(owner: OwnerKind, entries: CatalogEntry[]): Html {
  const id = `${owner}-table`;
  const rows = entries.map(
    (e) => html`<tr>
<td><a href="/ui/namespaces/${seg(e.namespace)}/${owner}/${seg(e.name)}">${e.name}</a></td>
<td>${e.namespace}</td>
<td class="phase-${e.phase ?? 'unknown'}">${e.phase ?? ''}</td>
<td data-value="${e.started ?? ''}">${when(e.started)}</td>
<td data-value="${e.completed ?? ''}">${when(e.completed)}</td>
<td>${owner === 'backups' ? (e.location ?? '') : (e.backup ?? '')}</td>
${owner === 'backups' ? html`<td class="num" data-value="${e.size ?? ''}">${formatBytes(e.size)}</td>` : ''}
<td class="num" data-value="${e.errors ?? ''}">${e.errors ?? ''}</td>
<td class="num" data-value="${e.warnings ?? ''}">${e.warnings ?? ''}</td>
</tr>`,
  );
  return html`<div class="filters"><div><label for="${id}-search">Search ${owner}</label>
<input type="search" id="${id}-search" data-filter="${id}" aria-controls="${id}"></div>
<p class="muted" id="${id}-count" aria-live="polite">${entries.length} shown</p></div>
<div class="table-wrap"><table id="${id}" data-sortable aria-labelledby="${owner}-heading">
<thead><tr><th scope="col" data-key="name">Name</th><th scope="col" data-key="namespace">Namespace</th><th scope="col" data-key="phase">Phase</th>
<th scope="col" data-key="started">Started</th><th scope="col" data-key="completed">Completed</th>
<th scope="col" data-key="location">${owner === 'backups' ? 'Location' : 'Backup'}</th>
${owner === 'backups' ? html`<th scope="col" data-key="size">Size</th>` : ''}
<th scope="col" data-key="errors">Errors</th><th scope="col" data-key="warnings">Warnings</th></tr></thead>
<tbody>${rows}</tbody></table></div>`;
}

export interface ArtifactRow {
  artifact: string;
  /** The gateway's download URL of the artifact (the cookie stands in for the token there). */
  href: string;
  /** `size`: known; `forbidden`: the user may not read it; `missing`: not in the store; `error`: the store did not answer. */
  state: { kind: 'size'; bytes: number } | { kind: 'forbidden' } | { kind: 'missing' } | { kind: 'error'; message: string };
}

export function ownerPage(user: { name: string; formToken: string }, owner: OwnerKind, entry: CatalogEntry, artifacts: ArtifactRow[]): string {
  const kind = owner === 'backups' ? 'Backup' : 'Restore';
  const base = ownerPath(owner, entry.namespace, entry.name);
  const rows = artifacts.map((a) => {
    const s = a.state;
    const status =
      s.kind === 'size'
        ? html`<td class="num" data-value="${s.bytes}">${formatBytes(s.bytes)}</td>`
        : s.kind === 'forbidden'
          ? html`<td>you may not read it</td>`
          : s.kind === 'missing'
            ? html`<td>not in the store</td>`
            : html`<td>the store did not answer: ${s.message}</td>`;
    return html`<tr><th scope="row">${a.artifact}</th>${status}<td><a href="${a.href}">Download <span class="visually-hidden">${a.artifact}</span></a></td></tr>`;
  });
  return layout({
    title: `${kind} ${entry.name}`,
    user,
    body: html`<nav class="crumbs" aria-label="Breadcrumb"><a href="/ui/">Backups and restores</a> › ${entry.namespace}</nav>
<h1>${kind} ${entry.name}</h1>
<dl class="facts">
<dt>Namespace</dt><dd>${entry.namespace}</dd>
${entry.phase ? html`<dt>Phase</dt><dd class="phase-${entry.phase}">${entry.phase}</dd>` : ''}
${entry.started ? html`<dt>Started</dt><dd>${when(entry.started)}</dd>` : ''}
${entry.completed ? html`<dt>Completed</dt><dd>${when(entry.completed)}</dd>` : ''}
${entry.location ? html`<dt>Storage location</dt><dd>${entry.location}</dd>` : ''}
${entry.backup ? html`<dt>Backup</dt><dd><a href="/ui/namespaces/${seg(entry.namespace)}/backups/${seg(entry.backup)}">${entry.backup}</a></dd>` : ''}
</dl>
<p class="actions"><a href="${base}/log">View log</a> · <a href="${base}/results">View results</a>${owner === 'backups' ? html` · <a href="${base}/volumes">Browse volumes</a>` : ''}</p>
<h2 id="artifacts-heading">Artifacts</h2>
<div class="table-wrap"><table aria-labelledby="artifacts-heading">
<thead><tr><th scope="col">Artifact</th><th scope="col">Size</th><th scope="col">Download</th></tr></thead>
<tbody>${rows}</tbody></table></div>`,
  });
}

/** The page of a backup or restore. */
export function ownerPath(owner: OwnerKind, namespace: string, name: string): string {
  return `/ui/namespaces/${seg(namespace)}/${owner}/${seg(name)}`;
}

function crumbs(owner: OwnerKind, namespace: string, name: string): Html {
  return html`<nav class="crumbs" aria-label="Breadcrumb"><a href="/ui/">Backups and restores</a> › <a href="${ownerPath(owner, namespace, name)}">${owner === 'backups' ? 'Backup' : 'Restore'} ${name}</a></nav>`;
}

const KIND_WORD = { backups: 'backup', restores: 'restore' } as const;

export interface LogView {
  owner: OwnerKind;
  namespace: string;
  name: string;
  level: LogLevel;
  page: number;
  log: LogPage;
}

export function logPage(user: { name: string; formToken: string }, v: LogView): string {
  const base = `${ownerPath(v.owner, v.namespace, v.name)}/log`;
  const link = (page: number): string => `${base}?level=${v.level}&page=${page}`;
  const first = v.page * LOG_PAGE_LINES + 1;
  return layout({
    title: `Log of ${KIND_WORD[v.owner]} ${v.name}`,
    user,
    body: html`${crumbs(v.owner, v.namespace, v.name)}
<h1>Log of ${KIND_WORD[v.owner]} ${v.name}</h1>
<form method="get" action="${base}" class="filters">
<div><label for="level">Level</label>
<select id="level" name="level">${LOG_LEVELS.map((l) => html`<option value="${l}"${l === v.level ? html` selected` : ''}>${l}</option>`)}</select></div>
<div><button type="submit">Show</button></div>
<p><a href="/v1/namespaces/${seg(v.namespace)}/${v.owner}/${seg(v.name)}/log">Download the whole log (gzip)</a></p>
</form>
${v.log.cut ? html`<p class="notice" role="status">The log is too long to page this far in the browser; download it instead.</p>` : ''}
${v.log.lines.length === 0
  ? html`<p class="muted">${v.page === 0 ? 'No lines' : 'No more lines'}${v.level === 'all' ? '' : ` at level ${v.level}`}.</p>`
  : html`<p class="muted">${v.level === 'all' ? 'Lines' : `Lines at level ${v.level}`}, ${first} to ${first + v.log.lines.length - 1} of those shown.</p>
<div class="table-wrap"><table id="log-table" class="log">
<thead><tr><th scope="col">Line</th><th scope="col">Level</th><th scope="col">Message</th></tr></thead>
<tbody>${v.log.lines.map((l) => html`<tr><td class="num">${l.n}</td><td class="level-${l.level}">${l.level}</td><td><code>${l.text}</code></td></tr>`)}</tbody></table></div>`}
<nav class="pager" aria-label="Pages">${v.page > 0 ? html`<a rel="prev" href="${link(v.page - 1)}">Previous page</a>` : ''} ${v.log.more ? html`<a rel="next" href="${link(v.page + 1)}">Next page</a>` : ''}</nav>`,
  });
}

export function resultsPage(user: { name: string; formToken: string }, owner: OwnerKind, namespace: string, name: string, rows: ResultRow[] | undefined): string {
  return layout({
    title: `Results of ${KIND_WORD[owner]} ${name}`,
    user,
    body: html`${crumbs(owner, namespace, name)}
<h1>Results of ${KIND_WORD[owner]} ${name}</h1>
${rows === undefined
  ? html`<p class="muted">This ${KIND_WORD[owner]} has no results file.</p>`
  : rows.length === 0
    ? html`<p class="muted">No errors or warnings.</p>`
    : html`<div class="table-wrap"><table id="results-table" data-sortable>
<thead><tr><th scope="col" data-key="kind">Kind</th><th scope="col" data-key="scope">Scope</th><th scope="col" data-key="message">Message</th></tr></thead>
<tbody>${rows.map((r) => html`<tr><td class="result-${r.kind}">${r.kind}</td><td>${r.scope}</td><td>${r.message}</td></tr>`)}</tbody></table></div>`}`,
  });
}

export function volumesPage(user: { name: string; formToken: string }, namespace: string, name: string, volumes: BackupVolume[]): string {
  const base = `${ownerPath('backups', namespace, name)}/volumes`;
  return layout({
    title: `Volumes of backup ${name}`,
    user,
    body: html`${crumbs('backups', namespace, name)}
<h1>Volumes of backup ${name}</h1>
${volumes.length === 0
  ? html`<p class="muted">This backup has no volume backups the gateway knows of.</p>`
  : html`<div class="table-wrap"><table id="volumes-table" data-sortable>
<thead><tr><th scope="col" data-key="id">Volume</th><th scope="col" data-key="kind">Kind</th><th scope="col" data-key="pvc">PVC</th><th scope="col" data-key="phase">Phase</th><th scope="col" data-key="size">Size</th></tr></thead>
<tbody>${volumes.map((v) => html`<tr><td>${v.uploader === 'kopia' && v.snapshotID ? html`<a href="${base}/${seg(v.id)}/files/">${v.id}</a>` : v.id}</td><td>${v.kind}${v.uploader === 'kopia' ? '' : ` (${v.uploader})`}</td><td>${v.pvc ?? ''}</td><td class="phase-${v.phase ?? 'unknown'}">${v.phase ?? ''}</td><td class="num" data-value="${v.size ?? ''}">${formatBytes(v.size)}</td></tr>`)}</tbody></table></div>`}`,
  });
}

export interface DirectoryEntryView {
  name: string;
  type: string;
  size: number;
  mtime: string;
}

export interface DirectoryView {
  namespace: string;
  name: string;
  volume: string;
  segments: string[];
  entries: DirectoryEntryView[];
  /** Entries left out past the page's bound. */
  more: boolean;
}

export function directoryPage(user: { name: string; formToken: string }, v: DirectoryView): string {
  const ui = `${ownerPath('backups', v.namespace, v.name)}/volumes/${seg(v.volume)}/files/`;
  const api = `/v1/namespaces/${seg(v.namespace)}/backups/${seg(v.name)}/volumes/${seg(v.volume)}`;
  const path = v.segments.map(seg).join('/');
  const here = path === '' ? '' : `${path}/`;
  const up = v.segments.length === 0 ? undefined : `${ui}${v.segments.slice(0, -1).map(seg).join('/')}${v.segments.length > 1 ? '/' : ''}`;
  const rows = v.entries.map((e) => {
    const cell =
      e.type === 'dir'
        ? html`<a href="${ui}${here}${seg(e.name)}/">${e.name}/</a>`
        : e.type === 'file'
          ? html`<a href="${api}/files/${here}${seg(e.name)}">${e.name}</a>`
          : html`${e.name}`;
    return html`<tr><td data-value="${e.name}">${cell}</td><td>${e.type}</td><td class="num" data-value="${e.type === 'file' ? e.size : ''}">${e.type === 'file' ? formatBytes(e.size) : ''}</td><td data-value="${e.mtime}">${e.mtime.replace(/\.\d+/, '').replace('T', ' ')}</td></tr>`;
  });
  return layout({
    title: `${v.volume} /${v.segments.join('/')}`,
    user,
    body: html`<nav class="crumbs" aria-label="Breadcrumb"><a href="/ui/">Backups and restores</a> › <a href="${ownerPath('backups', v.namespace, v.name)}">Backup ${v.name}</a> › <a href="${ownerPath('backups', v.namespace, v.name)}/volumes">Volumes</a></nav>
<h1>${v.volume}: /${v.segments.join('/')}</h1>
<p class="actions">${up === undefined ? '' : html`<a href="${up}">Up one level</a> · `}<a href="${api}/archive/${path}">Download this directory as a tar</a></p>
${v.more ? html`<p class="notice" role="status">Only the first ${v.entries.length} entries are shown; download the directory as a tar for all of them.</p>` : ''}
${v.entries.length === 0 ? html`<p class="muted">This directory is empty.</p>` : html`<div class="table-wrap"><table id="files-table" data-sortable>
<thead><tr><th scope="col" data-key="name">Name</th><th scope="col" data-key="type">Type</th><th scope="col" data-key="size">Size</th><th scope="col" data-key="mtime">Modified</th></tr></thead>
<tbody>${rows}</tbody></table></div>`}`,
  });
}
