/**
 * HTML built by a tagged template that escapes every interpolated value unless it is already `Html`
 * (made by this template). Names of backups, namespaces, users, log lines and error messages come
 * from the cluster, the store or the caller: none of them can open a tag or an attribute.
 */

export class Html {
  readonly text: string;
  constructor(text: string) {
    this.text = text;
  }
  toString(): string {
    return this.text;
  }
}

const ESCAPES: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };

export function escapeHtml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => ESCAPES[c]!);
}

function part(v: unknown): string {
  if (v instanceof Html) return v.text;
  if (Array.isArray(v)) return v.map(part).join('');
  if (v === undefined || v === null || v === false) return '';
  if (typeof v === 'string') return escapeHtml(v);
  if (typeof v === 'number' || typeof v === 'boolean' || typeof v === 'bigint') return String(v);
  throw new TypeError('only strings, numbers and Html go into a page');
}

/** `html\`<p>${name}</p>\``: values escaped; Html values and arrays of them kept as they are. */
export function html(strings: TemplateStringsArray, ...values: unknown[]): Html {
  let out = strings[0]!;
  for (let i = 0; i < values.length; i++) out += part(values[i]) + strings[i + 1]!;
  return new Html(out);
}

/** One path segment of a URL (names are DNS-1123 already; this keeps any other value harmless). */
export function seg(s: string): string {
  return encodeURIComponent(s);
}
