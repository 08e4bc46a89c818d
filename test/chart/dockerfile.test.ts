/**
 * The container image, read (no Docker engine runs here): multi-stage on Node 24, production
 * dependencies only at run time, a numeric non-root user, exec-form entrypoint, no tests or local
 * state copied in, and a .dockerignore that keeps them out of the build context.
 */
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { before, describe, test } from 'node:test';
import { ROOT } from './chart.ts';

interface Instruction {
  op: string;
  args: string;
  line: number;
}
interface Stage {
  from: string;
  name?: string;
  instructions: Instruction[];
}

/** Instructions with continuation lines joined and comments dropped, grouped by stage. */
function parseDockerfile(text: string): Stage[] {
  const stages: Stage[] = [];
  let pending = '';
  let start = 0;
  text.split('\n').forEach((raw, i) => {
    const line = raw.trim();
    if (!pending && (line === '' || line.startsWith('#'))) return;
    if (line.startsWith('#')) return;
    if (!pending) start = i + 1;
    pending += (pending ? ' ' : '') + line.replace(/\\$/, '').trim();
    if (line.endsWith('\\')) return;
    const [, op = '', args = ''] = /^(\S+)\s*(.*)$/.exec(pending) ?? [];
    pending = '';
    const ins = { op: op.toUpperCase(), args, line: start };
    if (ins.op === 'FROM') {
      const [from = '', as, name] = args.split(/\s+/);
      stages.push({ from, ...(as?.toUpperCase() === 'AS' && name ? { name } : {}), instructions: [] });
    } else {
      assert.ok(stages.length > 0, `${ins.op} before the first FROM (line ${start})`);
      stages.at(-1)!.instructions.push(ins);
    }
  });
  return stages;
}

describe('container image', () => {
  let stages: Stage[];
  let runtime: Stage;
  let ignore: string[];

  before(async () => {
    stages = parseDockerfile(await readFile(join(ROOT, 'Dockerfile'), 'utf8'));
    runtime = stages.at(-1)!;
    ignore = (await readFile(join(ROOT, '.dockerignore'), 'utf8')).split('\n').map((l) => l.trim()).filter((l) => l && !l.startsWith('#'));
  });

  test('multi-stage, every stage on Node 24 (node:24-slim or distroless nodejs24)', () => {
    assert.ok(stages.length >= 2, 'a build stage and a runtime stage');
    for (const s of stages) {
      if (stages.some((other) => other.name === s.from)) continue;
      assert.match(s.from, /^(docker\.io\/(library\/)?)?node:24[-.\w]*$|^gcr\.io\/distroless\/nodejs24-debian\d+(:[\w.-]+)?$/, `FROM ${s.from}`);
    }
  });

  test('the build stage installs dev dependencies and builds dist/', () => {
    const build = stages.find((s) => s.instructions.some((i) => i.op === 'RUN' && /npm run build/.test(i.args)));
    assert.ok(build, 'a stage runs npm run build');
    const install = build.instructions.find((i) => i.op === 'RUN' && /npm ci\b/.test(i.args));
    assert.ok(install && !/--omit=dev|--production/.test(install.args), 'the build installs with dev dependencies');
  });

  test('the runtime gets production dependencies only', () => {
    const copies = runtime.instructions.filter((i) => i.op === 'COPY');
    const modules = copies.find((c) => /node_modules/.test(c.args));
    assert.ok(modules, 'node_modules is copied into the runtime');
    const fromStage = /--from=(\S+)/.exec(modules.args)?.[1];
    const source = stages.find((s) => s.name === fromStage);
    assert.ok(source, `node_modules comes from stage ${fromStage}`);
    assert.ok(source.instructions.some((i) => i.op === 'RUN' && /npm ci\b.*--omit=dev/.test(i.args)), `stage ${fromStage} runs npm ci --omit=dev`);
    assert.ok(!runtime.instructions.some((i) => i.op === 'RUN' && /npm (ci|install)/.test(i.args)), 'no install in the runtime stage');
    assert.ok(copies.some((c) => /--from=\S+\s+\S*dist\b/.test(c.args)), 'dist/ from the build stage');
  });

  test('runs as a numeric non-root user', () => {
    const users = runtime.instructions.filter((i) => i.op === 'USER');
    assert.ok(users.length > 0, 'the runtime stage sets USER');
    const [uid, gid] = users.at(-1)!.args.split(':');
    assert.match(uid!, /^\d+$/, 'numeric, so runAsNonRoot can verify it');
    assert.notEqual(Number(uid), 0);
    if (gid !== undefined) assert.match(gid, /^\d+$/);
    assert.equal(Number(uid), 65532, 'the uid the chart and distroless nonroot use');
  });

  test('exec-form ENTRYPOINT and CMD, node as PID 1 starting dist/main.js', () => {
    const entry = runtime.instructions.filter((i) => i.op === 'ENTRYPOINT' || i.op === 'CMD');
    assert.ok(entry.length > 0, 'an ENTRYPOINT or CMD');
    for (const e of entry) {
      const argv = JSON.parse(e.args) as unknown;
      assert.ok(Array.isArray(argv) && argv.every((a) => typeof a === 'string'), `${e.op} is a JSON array (exec form), not a shell string`);
    }
    const argv = JSON.parse(runtime.instructions.filter((i) => i.op === 'ENTRYPOINT').at(-1)!.args) as string[];
    assert.match(argv[0]!, /(^|\/)node$/, 'node itself is PID 1 (no sh -c, which would swallow SIGTERM)');
    assert.ok(argv.includes('dist/main.js'));
  });

  test('exposes the API and metrics ports', () => {
    const ports = runtime.instructions.filter((i) => i.op === 'EXPOSE').flatMap((i) => i.args.split(/\s+/));
    assert.deepEqual(ports.map((p) => p.replace('/tcp', '')).sort(), ['8085', '8443']);
  });

  test('copies no tests, local state, data or secrets, and never the whole context', () => {
    for (const s of stages) {
      for (const i of s.instructions.filter((x) => x.op === 'COPY' || x.op === 'ADD')) {
        const sources = i.args.split(/\s+/).filter((a) => !a.startsWith('--')).slice(0, -1);
        for (const src of sources) {
          assert.ok(!/^\.\/?$/.test(src), `line ${i.line}: COPY of the whole context`);
          assert.ok(!/(^|\/)(test|tests|state|data|bench|\.git|\.env)(\/|$)/.test(src), `line ${i.line}: ${src}`);
          assert.ok(!/\.(pem|key|csv)$/.test(src), `line ${i.line}: ${src}`);
        }
      }
      assert.ok(!s.instructions.some((i) => i.op === 'ARG' && /(token|password|secret|key)/i.test(i.args)), 'no secrets as build args');
    }
    const env = runtime.instructions.filter((i) => i.op === 'ENV').map((i) => i.args).join(' ');
    assert.ok(!/(TOKEN|PASSWORD|SECRET|ACCESS_KEY)/i.test(env), 'no secrets in ENV');
  });

  test('state lives under a writable directory, not the read-only root', () => {
    const env = runtime.instructions.filter((i) => i.op === 'ENV').map((i) => i.args).join(' ');
    assert.match(env, /VDS_STATE_DIR=\/var\/lib\/velero-download-server\b/);
    assert.ok(runtime.instructions.some((i) => i.op === 'COPY' && /--chown=65532:65532/.test(i.args) && /\/var\/lib\/velero-download-server$/.test(i.args)));
  });

  test('.dockerignore keeps node_modules, tests and local state out of the build context', () => {
    for (const entry of ['node_modules', 'test', 'data', 'state', '.git', 'bench']) assert.ok(ignore.includes(entry), entry);
    // An allow-list: everything else is out unless re-included, and only the build inputs are.
    assert.equal(ignore[0], '*');
    const included = ignore.filter((l) => l.startsWith('!')).map((l) => l.slice(1).replace(/\/$/, ''));
    // demo: the demo's volume backup (a small Kopia repository) that local mode writes on first start
    assert.deepEqual(included.sort(), ['demo', 'package-lock.json', 'package.json', 'src', 'tsconfig.build.json', 'tsconfig.json']);
  });
});
