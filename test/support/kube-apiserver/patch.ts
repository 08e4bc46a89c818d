/** JSON merge patch (RFC 7386) and JSON patch (RFC 6902), as kube-apiserver applies them. */
import { isDeepStrictEqual } from 'node:util';
import { ApiError, badRequest } from './errors.ts';

type Json = unknown;
const isObject = (v: Json): v is Record<string, Json> => typeof v === 'object' && v !== null && !Array.isArray(v);

export function mergePatch(target: Json, patch: Json): Json {
  if (!isObject(patch)) return structuredClone(patch);
  const out: Record<string, Json> = isObject(target) ? { ...target } : {};
  for (const [k, v] of Object.entries(patch)) {
    if (v === null) delete out[k];
    else out[k] = mergePatch(out[k], v);
  }
  return out;
}

interface Op {
  op: string;
  path: string;
  from?: string;
  value?: Json;
}

const unescape = (t: string): string => t.replace(/~1/g, '/').replace(/~0/g, '~');

function pointer(path: string): string[] {
  if (path === '') return [];
  if (!path.startsWith('/')) throw badRequest(`invalid JSON pointer: ${JSON.stringify(path)}`);
  return path.slice(1).split('/').map(unescape);
}

const fail = (op: string, path: string): ApiError =>
  new ApiError(422, `the server rejected our request due to an error in our request: ${op} operation does not apply: doc is missing path: "${path}"`, 'Invalid');

/** The container holding the last token of `path`, and that token. */
function locate(doc: Json, path: string, op: string): { parent: Record<string, Json> | Json[]; key: string } {
  const tokens = pointer(path);
  const key = tokens.pop();
  if (key === undefined) throw fail(op, path);
  let cur: Json = doc;
  for (const t of tokens) {
    cur = Array.isArray(cur) ? cur[Number(t)] : isObject(cur) ? cur[t] : undefined;
    if (cur === undefined) throw fail(op, path);
  }
  if (!Array.isArray(cur) && !isObject(cur)) throw fail(op, path);
  return { parent: cur, key };
}

function read(doc: Json, path: string, op: string): Json {
  const { parent, key } = locate(doc, path, op);
  const v = Array.isArray(parent) ? parent[Number(key)] : parent[key];
  if (v === undefined) throw fail(op, path);
  return v;
}

function add(doc: Json, path: string, value: Json, op = 'add'): void {
  const { parent, key } = locate(doc, path, op);
  if (!Array.isArray(parent)) parent[key] = structuredClone(value);
  else if (key === '-') parent.push(structuredClone(value));
  else {
    const i = Number(key);
    if (!Number.isInteger(i) || i < 0 || i > parent.length) throw fail(op, path);
    parent.splice(i, 0, structuredClone(value));
  }
}

function remove(doc: Json, path: string, op = 'remove'): void {
  read(doc, path, op);
  const { parent, key } = locate(doc, path, op);
  if (Array.isArray(parent)) parent.splice(Number(key), 1);
  else delete parent[key];
}

export function jsonPatch(doc: Json, ops: Json): Json {
  if (!Array.isArray(ops)) throw badRequest('json: cannot unmarshal object into Go value of type jsonpatch.Patch');
  const out = structuredClone(doc);
  for (const o of ops as Op[]) {
    switch (o.op) {
      case 'add':
        add(out, o.path, o.value);
        break;
      case 'remove':
        remove(out, o.path);
        break;
      case 'replace':
        remove(out, o.path, 'replace');
        add(out, o.path, o.value, 'replace');
        break;
      case 'move': {
        const v = read(out, o.from ?? '', 'move');
        remove(out, o.from ?? '', 'move');
        add(out, o.path, v, 'move');
        break;
      }
      case 'copy':
        add(out, o.path, read(out, o.from ?? '', 'copy'), 'copy');
        break;
      case 'test':
        if (!isDeepStrictEqual(read(out, o.path, 'test'), o.value)) {
          throw new ApiError(422, `the server rejected our request due to an error in our request: testing value ${o.path} failed`, 'Invalid');
        }
        break;
      default:
        throw badRequest(`unexpected kind of JSON patch operation: ${JSON.stringify(o.op)}`);
    }
  }
  return out;
}
