/**
 * The container image, read (no Docker engine runs here): multi-stage on Node 24, production
 * dependencies only at run time, a numeric non-root user, exec-form entrypoint, no tests or local
 * state copied in, and a .dockerignore that keeps them out of the build context; every base image
 * pinned by digest under the command that prints its current digest, the OCI labels, a shell-free
 * HEALTHCHECK, the client on PATH, and the REVISION file build_info reads (its RUN run by the real
 * /bin/sh as Docker would run it).
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { before, describe, test } from 'node:test';
import { revisionOf } from '../../src/version.ts';
import { ROOT } from './chart.ts';

interface Instruction {
  op: string;
  args: string;
  line: number;
}
interface Stage {
  from: string;
  name?: string;
  /** The comment lines right above the FROM. */
  comments: string[];
  instructions: Instruction[];
}

/** Instructions with continuation lines joined and comments dropped, grouped by stage. */
function parseDockerfile(text: string): Stage[] {
  const stages: Stage[] = [];
  let pending = '';
  let start = 0;
  let comments: string[] = [];
  text.split('\n').forEach((raw, i) => {
    const line = raw.trim();
    if (!pending && line.startsWith('#')) {
      comments.push(line);
      return;
    }
    if (!pending && line === '') {
      comments = [];
      return;
    }
    if (line.startsWith('#')) return;
    if (!pending) start = i + 1;
    pending += (pending ? ' ' : '') + line.replace(/\\$/, '').trim();
    if (line.endsWith('\\')) return;
    const [, op = '', args = ''] = /^(\S+)\s*(.*)$/.exec(pending) ?? [];
    if (op.toUpperCase() !== 'FROM') comments = [];
    pending = '';
    const ins = { op: op.toUpperCase(), args, line: start };
    if (ins.op === 'FROM') {
      const [from = '', as, name] = args.split(/\s+/);
      stages.push({ from, ...(as?.toUpperCase() === 'AS' && name ? { name } : {}), comments, instructions: [] });
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
      assert.match(s.from, /^(docker\.io\/(library\/)?)?node:24[-.\w]*(@sha256:[0-9a-f]{64})?$|^gcr\.io\/distroless\/nodejs24-debian\d+(:[\w.-]+)?(@sha256:[0-9a-f]{64})?$/, `FROM ${s.from}`);
    }
  });

  test('every base image is pinned by digest, with the command that prints the current digest of its tag above it', () => {
    const digests = new Map<string, Set<string>>();
    for (const s of stages) {
      if (stages.some((other) => other.name === s.from)) continue;
      const m = /^([^@\s]+:[\w.-]+)@(sha256:[0-9a-f]{64})$/.exec(s.from);
      assert.ok(m, `FROM ${s.from}: name:tag@sha256:<64 hex> (the tag says what to refresh, the digest what is built)`);
      const [, image, digest] = m as unknown as [string, string, string];
      digests.set(image, (digests.get(image) ?? new Set()).add(digest));
      const refresh = s.comments.find((c) => /^#\s*refresh:\s*docker buildx imagetools inspect\s/.test(c));
      assert.ok(refresh, `FROM ${s.from}: a "# refresh: docker buildx imagetools inspect ..." comment above it`);
      assert.ok(refresh.split(/\s+/).includes(image), `the refresh command above FROM ${s.from} inspects that same image (${refresh})`);
      // The index digest: an arch-specific manifest's digest would build on one platform only.
      assert.match(refresh, /\.Manifest\.Digest/, 'the command prints the index digest');
    }
    for (const [image, set] of digests) assert.equal(set.size, 1, `every stage on ${image} has the same digest`);
  });

  test('OCI labels: source, version, revision, licenses (the package\'s), from build arguments with defaults', async () => {
    const pkg = JSON.parse(await readFile(join(ROOT, 'package.json'), 'utf8')) as { version: string; license: string };
    const labels = new Map<string, string>();
    for (const i of runtime.instructions.filter((x) => x.op === 'LABEL')) {
      for (const m of i.args.matchAll(/([\w.-]+)="([^"]*)"/g)) labels.set(m[1]!, m[2]!);
    }
    const args = new Map<string, string>();
    for (const i of runtime.instructions.filter((x) => x.op === 'ARG')) {
      const [name = '', value = ''] = i.args.split('=');
      args.set(name, value);
    }
    const resolve = (v: string | undefined): string | undefined => v?.replace(/\$\{(\w+)\}/g, (_, n: string) => args.get(n) ?? `<undefined ${n}>`);
    assert.equal(resolve(labels.get('org.opencontainers.image.licenses')), pkg.license);
    assert.equal(resolve(labels.get('org.opencontainers.image.version')), pkg.version, 'the default version is the package\'s');
    assert.equal(labels.get('org.opencontainers.image.version'), '${VERSION}', 'a build argument overrides it');
    assert.equal(labels.get('org.opencontainers.image.revision'), '${REVISION}');
    assert.ok(args.has('REVISION'), 'REVISION has a default');
    assert.match(resolve(labels.get('org.opencontainers.image.source')) ?? '', /^https:\/\/\S+$/);
  });

  test('a HEALTHCHECK in exec form (the runtime has no shell) that runs the probe the build produces', async () => {
    const checks = runtime.instructions.filter((i) => i.op === 'HEALTHCHECK');
    assert.equal(checks.length, 1);
    const m = /^(.*?)\bCMD\s+(\[.*\])$/.exec(checks[0]!.args);
    assert.ok(m, `HEALTHCHECK ... CMD [...]: ${checks[0]!.args}`);
    const argv = JSON.parse(m[2]!) as string[];
    const node = (JSON.parse(runtime.instructions.filter((i) => i.op === 'ENTRYPOINT').at(-1)!.args) as string[])[0];
    assert.equal(argv[0], node, 'the runtime\'s own node');
    assert.equal(argv[1], 'dist/healthcheck.js');
    await readFile(join(ROOT, 'src', 'healthcheck.ts'), 'utf8');
    assert.match(m[1]!, /--timeout=\d+s/);
  });

  test('the client runs from the same image: --entrypoint velero-download', async () => {
    const pkg = JSON.parse(await readFile(join(ROOT, 'package.json'), 'utf8')) as { bin: Record<string, string> };
    const node = (JSON.parse(runtime.instructions.filter((i) => i.op === 'ENTRYPOINT').at(-1)!.args) as string[])[0]!;
    const workdir = runtime.instructions.filter((i) => i.op === 'WORKDIR').at(-1)!.args;
    // The launcher is written with printf in a stage that has a shell; its text, unescaped:
    const maker = stages.flatMap((s) => s.instructions).find((i) => i.op === 'RUN' && /\/usr\/local\/bin\/velero-download/.test(i.args));
    assert.ok(maker, 'a RUN writes /usr/local/bin/velero-download');
    const printf = /printf '([^']*)'/.exec(maker.args)?.[1]?.replace(/\\n/g, '\n');
    assert.ok(printf, 'the launcher is written with printf');
    const [shebang, body] = printf.split('\n');
    assert.equal(shebang, `#!${node}`, 'names the runtime\'s node: the image has no /usr/bin/env for the client\'s own shebang');
    assert.equal(body, `import("${workdir}/${pkg.bin['velero-download']}");`, 'loads the client the package names');
    assert.match(maker.args, /chmod 0755 \S*\/usr\/local\/bin\/velero-download/);
    assert.ok(runtime.instructions.some((i) => i.op === 'COPY' && /\/usr\/local\/bin\/velero-download\s+\/usr\/local\/bin\/velero-download$/.test(i.args)), 'copied into the runtime');
    const env = runtime.instructions.filter((i) => i.op === 'ENV').map((i) => i.args).join(' ');
    assert.match(env, /\bPATH=(\S*:)?\/usr\/local\/bin(:|\s|$)/, '/usr/local/bin is on PATH, so --entrypoint velero-download resolves');
  });

  /** The RUN that writes the REVISION file, its stage, and where the runtime puts the file. */
  function revisionWriter(): { stage: Stage; run: Instruction; copy: Instruction } {
    const stage = stages.find((s) => s.instructions.some((i) => i.op === 'RUN' && />\s*REVISION\b/.test(i.args)));
    assert.ok(stage, 'a RUN writes REVISION');
    const run = stage.instructions.find((i) => i.op === 'RUN' && />\s*REVISION\b/.test(i.args))!;
    const copy = runtime.instructions.find((i) => i.op === 'COPY' && /\/REVISION\s+\S*REVISION$/.test(i.args));
    assert.ok(copy, 'the runtime copies REVISION in');
    return { stage, run, copy };
  }

  /** Runs `script` as Docker runs a RUN (`/bin/sh -c`, build arguments in the environment) in a fresh directory. */
  async function runAsDocker(script: string, env: Record<string, string>): Promise<{ code: number; stderr: string; dir: string }> {
    const dir = await mkdtemp(join(tmpdir(), 'vds-dockerfile-'));
    return new Promise((done) => {
      execFile('/bin/sh', ['-c', script], { cwd: dir, env: { PATH: '/usr/bin:/bin', ...env } }, (err, _stdout, stderr) => {
        done({ code: err ? Number((err as { code?: number }).code ?? 1) : 0, stderr, dir });
      });
    });
  }

  test('the image carries a REVISION file beside package.json, written from the REVISION build argument in a stage with a shell', () => {
    const { stage, run, copy } = revisionWriter();
    assert.notEqual(stage, runtime, 'the runtime has no shell to run it');
    assert.doesNotMatch(stage.from, /distroless/);
    // A build argument reaches only the stages that declare it, and a RUN only after the declaration.
    const arg = stage.instructions.find((i) => i.op === 'ARG' && /^REVISION(=|$)/.test(i.args));
    assert.ok(arg && arg.line < run.line, `ARG REVISION declared in stage ${stage.name} before the RUN`);
    const stageDir = stage.instructions.filter((i) => i.op === 'WORKDIR' && i.line < run.line).at(-1)?.args;
    const [source, dest] = copy.args.split(/\s+/).filter((a) => !a.startsWith('--'));
    assert.equal(/--from=(\S+)/.exec(copy.args)?.[1], stage.name);
    assert.equal(source, `${stageDir}/REVISION`, 'the file the RUN wrote (relative to its WORKDIR)');
    // Beside package.json, where src/version.ts looks for it.
    const pkgCopy = runtime.instructions.find((i) => i.op === 'COPY' && /package\.json$/.test(i.args))!;
    assert.equal(dirname(dest!), dirname(pkgCopy.args.split(/\s+/).at(-1)!));
  });

  test('the REVISION the RUN writes is what the gateway reports; the default reports unknown', async () => {
    const { run, stage } = revisionWriter();
    const byDefault = stage.instructions.find((i) => i.op === 'ARG' && i.args.startsWith('REVISION'))!.args.split('=')[1] ?? '';
    for (const [revision, expected] of [
      ['0123456789abcdef0123456789abcdef01234567', '0123456789abcdef0123456789abcdef01234567'],
      ['a'.repeat(64), 'a'.repeat(64)],
      [byDefault, 'unknown'],
    ] as const) {
      const r = await runAsDocker(run.args, { REVISION: revision });
      try {
        assert.equal(r.code, 0, r.stderr);
        assert.equal(revisionOf(r.dir), expected, `REVISION=${revision}`);
      } finally {
        await rm(r.dir, { recursive: true, force: true });
      }
    }
  });

  test('a REVISION that is not a full commit id fails the build, and the shell never runs it', async () => {
    const { run } = revisionWriter();
    for (const revision of [
      'abc1234', // a short hash: build_info would say unknown while the label says abc1234
      '0123456789ABCDEF0123456789ABCDEF01234567',
      `${'a'.repeat(39)}\n`,
      `${'a'.repeat(40)}\nmain`,
      '$(touch pwned)', '`touch pwned`; touch pwned',
      `../../../../etc/${'a'.repeat(24)}`,
      '',
    ]) {
      const r = await runAsDocker(run.args, { REVISION: revision });
      try {
        assert.notEqual(r.code, 0, `REVISION=${JSON.stringify(revision)} accepted`);
        assert.match(r.stderr, /REVISION must be a full commit id \(git rev-parse HEAD\)/);
        assert.deepEqual(await readdir(r.dir), [], 'nothing written, nothing run');
      } finally {
        await rm(r.dir, { recursive: true, force: true });
      }
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
