/**
 * What a benchmark returns and how it is printed: one table (a column per system, a row per metric,
 * ratio columns), the targets with MET / NOT MET, the exact command lines, and notes.
 */

export interface Row {
  metric: string;
  unit: string;
  /** By column; missing or undefined prints as "–". */
  values: Record<string, number | null | undefined>;
  /** Decimal places (default 2). */
  digits?: number;
}

export interface Table {
  columns: string[];
  /** Ratio columns `numerator/denominator`, both among `columns`. */
  ratios: [string, string][];
  rows: Row[];
}

export interface Check {
  target: string;
  measured: string;
  met: boolean;
}

export interface BenchResult {
  id: string;
  title: string;
  table: Table;
  checks: Check[];
  /** Command lines as they can be pasted into a shell ($TOKEN for the bearer token). */
  commands: string[];
  notes: string[];
  /** Raw per-run figures, for the JSON file. */
  raw: unknown;
}

export function median(xs: readonly number[]): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

export function percentile(xs: readonly number[], p: number): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))]!;
}

export const MiB = 1024 * 1024;
export const GiB = 1024 * MiB;

export function fmt(v: number | null | undefined, digits = 2): string {
  // null: a value that was NaN or missing when an earlier run was stored as JSON.
  if (v == null || Number.isNaN(v)) return '–';
  return v.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits });
}

export function sizeLabel(bytes: number): string {
  return bytes >= GiB && bytes % GiB === 0 ? `${bytes / GiB} GiB` : bytes >= MiB ? `${bytes / MiB} MiB` : `${bytes / 1024} KiB`;
}

export function check(target: string, measured: string, met: boolean): Check {
  return { target, measured, met };
}

function pad(s: string, n: number, right = false): string {
  return right ? s.padStart(n) : s.padEnd(n);
}

export function renderTable(t: Table): string {
  const header = ['metric', ...t.columns, ...t.ratios.map(([a, b]) => `${a} / ${b}`)];
  const lines = t.rows.map((r) => {
    const cells = t.columns.map((c) => fmt(r.values[c], r.digits));
    const ratios = t.ratios.map(([a, b]) => {
      const x = r.values[a];
      const y = r.values[b];
      return x == null || y == null || y === 0 ? '–' : `${fmt(x / y, 2)}×`;
    });
    return [`${r.metric} (${r.unit})`, ...cells, ...ratios];
  });
  const widths = header.map((h, i) => Math.max(h.length, ...lines.map((l) => l[i]!.length)));
  const row = (cells: string[]): string => `| ${cells.map((c, i) => pad(c, widths[i]!, i > 0)).join(' | ')} |`;
  return [row(header), `|${widths.map((w, i) => (i > 0 ? `${'-'.repeat(w + 1)}:` : '-'.repeat(w + 2))).join('|')}|`, ...lines.map(row)].join('\n');
}

/** Readable in a terminal and valid Markdown (for results/latest.md). */
export function renderResult(r: BenchResult): string {
  const out = [`## ${r.title}`, '', renderTable(r.table), ''];
  for (const c of r.checks) out.push(`- ${c.met ? '**MET**' : '**NOT MET**'} ${c.target}: ${c.measured}`);
  if (r.notes.length) out.push('', 'Notes:', ...r.notes.map((n) => `- ${n}`));
  out.push('', 'Commands:', '```sh', ...r.commands, '```', '');
  return out.join('\n');
}
