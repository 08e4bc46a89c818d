/**
 * The page's two static files, shipped inside the code (nothing fetched at run time, no CDN, no build
 * step of its own) and served under a name holding a digest of their content, so they are cached for
 * a year and a new version is a new URL. The Content-Security-Policy of every page allows scripts and
 * styles from these URLs only: no inline script, no inline style.
 *
 * The script only sorts and filters the tables the server already rendered: the page works without it.
 */
import { createHash } from 'node:crypto';

const CSS = `
:root { color-scheme: light dark; --bg: #ffffff; --fg: #1b1f24; --muted: #57606a; --line: #d0d7de; --accent: #0a58ca;
  --accent-fg: #ffffff; --panel: #f6f8fa; --bad: #a40e26; --good: #116329; --warn: #7d4e00; }
@media (prefers-color-scheme: dark) {
  :root { --bg: #0d1117; --fg: #e6edf3; --muted: #9da7b3; --line: #30363d; --accent: #58a6ff; --accent-fg: #0d1117;
    --panel: #161b22; --bad: #ff7b72; --good: #56d364; --warn: #e3b341; }
}
* { box-sizing: border-box; }
body { margin: 0; font: 16px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; background: var(--bg); color: var(--fg); }
a { color: var(--accent); }
a:focus-visible, button:focus-visible, input:focus-visible, select:focus-visible, textarea:focus-visible, th button:focus-visible {
  outline: 3px solid var(--accent); outline-offset: 2px; }
header { display: flex; flex-wrap: wrap; gap: .5rem 1rem; align-items: center; justify-content: space-between;
  padding: .75rem 1rem; border-bottom: 1px solid var(--line); background: var(--panel); }
header .brand { font-weight: 600; color: var(--fg); text-decoration: none; }
header form { display: flex; gap: .5rem; align-items: center; margin: 0; }
main { max-width: 72rem; margin: 0 auto; padding: 1rem; }
h1 { font-size: 1.5rem; margin: .5rem 0 1rem; }
h2 { font-size: 1.2rem; margin: 1.5rem 0 .5rem; }
.muted { color: var(--muted); }
button, .button { font: inherit; padding: .45rem .9rem; border-radius: 6px; border: 1px solid var(--accent);
  background: var(--accent); color: var(--accent-fg); cursor: pointer; text-decoration: none; display: inline-block; }
button.secondary { background: transparent; color: var(--accent); }
label { display: block; font-weight: 600; margin: .75rem 0 .25rem; }
input[type=search], input[type=password], textarea, select { font: inherit; width: 100%; max-width: 40rem; padding: .45rem .6rem;
  border: 1px solid var(--line); border-radius: 6px; background: var(--bg); color: var(--fg); }
textarea { font-family: ui-monospace, SFMono-Regular, Menlo, monospace; min-height: 6rem; }
.notice { border: 1px solid var(--line); border-left: 4px solid var(--accent); background: var(--panel); padding: .75rem 1rem; border-radius: 6px; }
.error { border-left-color: var(--bad); }
.table-wrap { overflow-x: auto; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; padding: .45rem .6rem; border-bottom: 1px solid var(--line); vertical-align: top; }
th { white-space: nowrap; }
th button { all: unset; cursor: pointer; font-weight: 600; }
th[aria-sort=ascending] button::after { content: " \\25B2"; }
th[aria-sort=descending] button::after { content: " \\25BC"; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
tbody td:first-child { white-space: nowrap; }
dl.facts { display: grid; grid-template-columns: max-content 1fr; gap: .25rem 1.5rem; margin: 0 0 1rem; }
dl.facts dt { font-weight: 600; }
dl.facts dd { margin: 0; }
.phase-Completed { color: var(--good); }
.phase-Failed, .phase-PartiallyFailed, .phase-FailedValidation { color: var(--bad); }
.phase-InProgress, .phase-New, .phase-WaitingForPluginOperations { color: var(--warn); }
code, pre { font-family: ui-monospace, SFMono-Regular, Menlo, monospace; font-size: .9rem; }
pre { background: var(--panel); border: 1px solid var(--line); padding: .75rem; border-radius: 6px; overflow-x: auto; white-space: pre-wrap; word-break: break-all; }
.filters { display: flex; flex-wrap: wrap; gap: .5rem 1rem; align-items: end; }
.filters label { margin: 0 0 .25rem; }
nav.crumbs { margin: .25rem 0; }
.visually-hidden { position: absolute; width: 1px; height: 1px; overflow: hidden; clip: rect(0 0 0 0); white-space: nowrap; }
@media (max-width: 40rem) { th, td { padding: .35rem .4rem; } main { padding: .75rem; } }
`;

const JS = `
'use strict';
// Sorting and filtering of the tables the server rendered; the page works without this script.
for (const table of document.querySelectorAll('table[data-sortable]')) {
  const body = table.tBodies[0];
  if (!body) continue;
  table.querySelectorAll('th[data-key]').forEach((th, col) => {
    const label = th.textContent;
    const button = document.createElement('button');
    button.type = 'button';
    button.textContent = label;
    th.textContent = '';
    th.appendChild(button);
    button.addEventListener('click', () => {
      const dir = th.getAttribute('aria-sort') === 'ascending' ? -1 : 1;
      table.querySelectorAll('th[aria-sort]').forEach((o) => o.removeAttribute('aria-sort'));
      th.setAttribute('aria-sort', dir === 1 ? 'ascending' : 'descending');
      const index = [...th.parentNode.children].indexOf(th);
      const value = (row) => row.cells[index] ? (row.cells[index].dataset.value ?? row.cells[index].textContent) : '';
      const rows = [...body.rows].sort((a, b) => {
        const x = value(a), y = value(b);
        const nx = Number(x), ny = Number(y);
        const c = x !== '' && y !== '' && !Number.isNaN(nx) && !Number.isNaN(ny) ? nx - ny : x.localeCompare(y);
        return c * dir;
      });
      body.append(...rows);
    });
  });
}
for (const input of document.querySelectorAll('input[data-filter]')) {
  const table = document.getElementById(input.dataset.filter);
  if (!table) continue;
  const status = document.getElementById(input.dataset.filter + '-count');
  input.addEventListener('input', () => {
    const q = input.value.trim().toLowerCase();
    let shown = 0;
    for (const row of table.tBodies[0].rows) {
      const hit = q === '' || row.textContent.toLowerCase().includes(q);
      row.hidden = !hit;
      if (hit) shown++;
    }
    if (status) status.textContent = shown + ' shown';
  });
}
`;

export interface Asset {
  name: string;
  type: string;
  body: Buffer;
  /** The URL path the pages link to. */
  path: string;
}

function asset(base: string, ext: string, type: string, text: string): Asset {
  const body = Buffer.from(text, 'utf8');
  const digest = createHash('sha256').update(body).digest('hex').slice(0, 16);
  const name = `${base}.${digest}.${ext}`;
  return { name, type, body, path: `/ui/assets/${name}` };
}

export const STYLE = asset('app', 'css', 'text/css; charset=utf-8', CSS);
export const SCRIPT = asset('app', 'js', 'text/javascript; charset=utf-8', JS);
export const ASSETS: ReadonlyMap<string, Asset> = new Map([STYLE, SCRIPT].map((a) => [a.name, a]));
