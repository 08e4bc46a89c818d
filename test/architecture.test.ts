/**
 * The map in code: which room of `src/` may import which, and no import cycle between files or
 * between rooms. Reads every `import` / `export ... from` / `import()` of a relative module in `src/`
 * (type-only imports count: a type dependency is still a dependency of the design).
 */
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, normalize, relative } from 'node:path';
import { describe, test } from 'node:test';

const SRC = join(import.meta.dirname, '..', 'src');

/** Each room and the rooms of ours it may import (besides itself). `util` imports none. */
const MAY_IMPORT: Record<string, readonly string[]> = {
  util: [],
  config: ['util'],
  kube: ['util'],
  stores: ['util'],
  kopia: ['stores', 'util'],
  tls: ['kube', 'util'],
  auth: ['kube', 'util'],
  velero: ['kube', 'stores', 'kopia', 'util'],
  cli: ['velero', 'kube', 'util', 'version'],
  server: ['auth', 'config', 'kube', 'kopia', 'stores', 'tls', 'util', 'velero', 'version'],
  compose: ['auth', 'config', 'kube', 'kopia', 'server', 'stores', 'tls', 'util', 'velero', 'version'],
  main: ['config', 'compose', 'util', 'version'],
  version: [],
};

/**
 * Rooms whose imports of another room's must be type-only (`import type`). The client (`cli`) also
 * reads velero's artifact table as values: one list of artifact names for the server and the client.
 */
const TYPES_ONLY: Record<string, readonly string[]> = {
  velero: ['stores', 'kopia'],
  kopia: ['stores'],
};

interface Edge {
  from: string;
  to: string;
  typeOnly: boolean;
}

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) return sourceFiles(path);
    return entry.name.endsWith('.ts') ? [path] : [];
  });
}

const IMPORT = /(import|export)\s+(type\s+)?(?:[^'";]*?\s+from\s+)?['"](\.{1,2}\/[^'"]+)['"]|import\(\s*['"](\.{1,2}\/[^'"]+)['"]\s*\)/g;

/** The relative imports of one file's text, resolved against `file`. */
export function importsOf(file: string, text: string): Edge[] {
  const edges: Edge[] = [];
  const code = text.replace(/\/\*[\s\S]*?\*\//g, '').replace(/^\s*\/\/.*$/gm, '');
  for (const m of code.matchAll(IMPORT)) {
    const spec = m[3] ?? m[4];
    if (!spec) continue;
    const target = normalize(join(dirname(file), spec)).replace(/\.js$/, '.ts');
    const typeOnly = m[2] !== undefined || /^import\s+type\s/.test(m[0]) || /^export\s+type\s/.test(m[0]);
    edges.push({ from: file, to: target.endsWith('.ts') ? target : `${target}.ts`, typeOnly });
  }
  return edges;
}

/** `src/stores/s3.ts` → `stores`; `src/main.ts` → `main`. */
export function roomOf(file: string): string {
  const parts = relative(SRC, file).split(/[\\/]/);
  return parts.length > 1 ? parts[0]! : parts[0]!.replace(/\.ts$/, '');
}

/** The rule breaks among `edges`, one line each. */
export function violations(edges: readonly Edge[]): string[] {
  const out: string[] = [];
  for (const { from, to, typeOnly } of edges) {
    const a = roomOf(from);
    const b = roomOf(to);
    if (a === b) continue;
    const allowed = MAY_IMPORT[a];
    if (!allowed) out.push(`${relative(SRC, from)}: room "${a}" is not on the map`);
    else if (!allowed.includes(b)) out.push(`${relative(SRC, from)} imports ${relative(SRC, to)} ("${a}" may not import "${b}")`);
    else if (TYPES_ONLY[a]?.includes(b) && !typeOnly) {
      out.push(`${relative(SRC, from)} imports values from ${relative(SRC, to)} ("${a}" may import only types of "${b}")`);
    }
  }
  return [...new Set(out)];
}

/** Every cycle found by a depth-first walk of `graph`, each as the path that closes it. */
export function cycles(graph: ReadonlyMap<string, ReadonlySet<string>>): string[][] {
  const state = new Map<string, 'open' | 'done'>();
  const path: string[] = [];
  const found: string[][] = [];
  const visit = (node: string): void => {
    state.set(node, 'open');
    path.push(node);
    for (const next of graph.get(node) ?? []) {
      const s = state.get(next);
      if (s === 'open') found.push([...path.slice(path.indexOf(next)), next]);
      else if (s === undefined) visit(next);
    }
    path.pop();
    state.set(node, 'done');
  };
  for (const node of graph.keys()) if (!state.has(node)) visit(node);
  return found;
}

function graphOf(edges: readonly Edge[], key: (file: string) => string): Map<string, Set<string>> {
  const graph = new Map<string, Set<string>>();
  for (const { from, to } of edges) {
    const a = key(from);
    const b = key(to);
    if (!graph.has(a)) graph.set(a, new Set());
    if (a !== b) graph.get(a)!.add(b);
  }
  return graph;
}

const files = sourceFiles(SRC);
const edges = files.flatMap((file) => importsOf(file, readFileSync(file, 'utf8')));

describe('the map of src/', () => {
  test('every import is one the map allows', () => {
    assert.deepEqual(violations(edges), []);
  });

  test('no import cycle between files', () => {
    const found = cycles(graphOf(edges, (f) => relative(SRC, f)));
    assert.deepEqual(found.map((c) => c.join(' → ')), []);
  });

  test('no import cycle between rooms', () => {
    const found = cycles(graphOf(edges, roomOf));
    assert.deepEqual(found.map((c) => c.join(' → ')), []);
  });

  test('the reader sees every kind of import, so the checks above can fail', () => {
    const f = join(SRC, 'stores', 'x.ts');
    const text = [
      "import { a } from '../server/app.ts';",
      "import type { B } from '../velero/errors.ts';",
      "export { c } from '../kube/client.ts';",
      "export type { D } from './types.ts';",
      "const e = await import('../auth/types.ts');",
      "// import { z } from '../server/ignored.ts';",
    ].join('\n');
    const found = importsOf(f, text);
    assert.deepEqual(
      found.map((e) => [relative(SRC, e.to), e.typeOnly]),
      [
        ['server/app.ts', false],
        ['velero/errors.ts', true],
        ['kube/client.ts', false],
        ['stores/types.ts', true],
        ['auth/types.ts', false],
      ],
    );
    assert.equal(violations(found).length, 4);
    const veleroValue = importsOf(join(SRC, 'velero', 'y.ts'), "import { S3Store } from '../stores/s3.ts';");
    assert.match(violations(veleroValue)[0]!, /only types/);
    const loop = new Map([['a', new Set(['b'])], ['b', new Set(['c'])], ['c', new Set(['a'])]]);
    assert.deepEqual(cycles(loop), [['a', 'b', 'c', 'a']]);
  });
});
