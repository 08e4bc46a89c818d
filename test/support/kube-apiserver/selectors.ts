/**
 * Label and field selectors in their URL syntax. Field selectors support what kube-apiserver supports
 * for every type (metadata.name, metadata.namespace) plus a Secret's `type`; anything else is a 400,
 * so code that would fail on a real cluster fails here too.
 */
import { badRequest } from './errors.ts';
import type { KubeObject } from './store.ts';

export type Predicate = (obj: KubeObject) => boolean;

/** Splits on commas outside parentheses (`a in (x,y),b` → two terms). */
function terms(s: string): string[] {
  const out: string[] = [];
  let depth = 0;
  let cur = '';
  for (const ch of s) {
    if (ch === ',' && depth === 0) {
      out.push(cur);
      cur = '';
      continue;
    }
    if (ch === '(') depth++;
    if (ch === ')') depth--;
    cur += ch;
  }
  out.push(cur);
  return out.map((t) => t.trim()).filter(Boolean);
}

const KEY = String.raw`[A-Za-z0-9][-A-Za-z0-9_./]*`;
const VALUE = String.raw`[-A-Za-z0-9_.]*`;

function labelTerm(t: string): Predicate {
  let m: RegExpExecArray | null;
  const labels = (o: KubeObject): Record<string, string> => o.metadata.labels ?? {};
  if ((m = new RegExp(`^!\\s*(${KEY})$`).exec(t))) {
    const k = m[1]!;
    return (o) => !(k in labels(o));
  }
  if ((m = new RegExp(`^(${KEY})\\s+(in|notin)\\s+\\(([^)]*)\\)$`).exec(t))) {
    const [k, op, list] = [m[1]!, m[2], m[3]!.split(',').map((v) => v.trim())];
    return op === 'in' ? (o) => list.includes(labels(o)[k] ?? '\0') : (o) => !list.includes(labels(o)[k] ?? '\0');
  }
  if ((m = new RegExp(`^(${KEY})\\s*(==|=|!=)\\s*(${VALUE})$`).exec(t))) {
    const [k, op, v] = [m[1]!, m[2], m[3]!];
    return op === '!=' ? (o) => labels(o)[k] !== v : (o) => labels(o)[k] === v;
  }
  if ((m = new RegExp(`^(${KEY})$`).exec(t))) {
    const k = m[1]!;
    return (o) => k in labels(o);
  }
  throw badRequest(`unable to parse requirement: ${JSON.stringify(t)}`);
}

function fieldValue(field: string, resource: string): ((o: KubeObject) => string) | undefined {
  if (field === 'metadata.name') return (o) => o.metadata.name ?? '';
  if (field === 'metadata.namespace') return (o) => o.metadata.namespace ?? '';
  if (field === 'type' && resource === 'secrets') return (o) => (typeof o.type === 'string' ? o.type : '');
  return undefined;
}

function fieldTerm(t: string, resource: string): Predicate {
  const m = /^([^!=]+?)\s*(==|=|!=)\s*(.*)$/.exec(t);
  if (!m) throw badRequest(`invalid field selector: ${JSON.stringify(t)}`);
  const [field, op, v] = [m[1]!, m[2], m[3]!];
  const get = fieldValue(field, resource);
  if (!get) throw badRequest(`field label not supported: ${field}`);
  return op === '!=' ? (o) => get(o) !== v : (o) => get(o) === v;
}

/** One predicate for `labelSelector` and `fieldSelector` together (either may be absent). */
export function selector(labelSelector: string | null, fieldSelector: string | null, resource: string): Predicate {
  const preds = [...terms(labelSelector ?? '').map(labelTerm), ...terms(fieldSelector ?? '').map((t) => fieldTerm(t, resource))];
  return (o) => preds.every((p) => p(o));
}
