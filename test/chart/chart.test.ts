/**
 * The Helm chart's files, read without helm: Chart.yaml, values.yaml and values.schema.json parse and
 * agree, the schema accepts the defaults and rejects wrong types, every value is documented, every
 * `.Values.*` path a template uses exists, every flag the Deployment template names is one the
 * gateway has. What the templates render (objects, flags, RBAC) is checked on helm's own rendering
 * in helm.test.ts.
 */
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { before, describe, test } from 'node:test';
import AjvModule from 'ajv';
import type { ValidateFunction } from 'ajv';
import { LineCounter, isMap, parseDocument } from 'yaml';
import type { YAMLMap } from 'yaml';
import { FLAGS } from '../../src/config/config.ts';
import { GatewayMetrics } from '../../src/server/metrics.ts';
import { ROOT, readChartFile, readYaml, templates } from './chart.ts';

const Ajv = AjvModule.default;

type Schema = {
  $ref?: string;
  type?: string | string[];
  properties?: Record<string, Schema>;
  additionalProperties?: boolean | Schema;
  definitions?: Record<string, Schema>;
  [k: string]: unknown;
};
type Values = Record<string, unknown>;

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/** A deep copy of `values` with `path` (dot-separated) set to `value`. */
function withValue(values: Values, path: string, value: unknown): Values {
  const copy = structuredClone(values);
  const keys = path.split('.');
  let at: Record<string, unknown> = copy;
  for (const k of keys.slice(0, -1)) at = at[k] as Record<string, unknown>;
  at[keys.at(-1)!] = value;
  return copy;
}

describe('chart files', () => {
  let values: Values;
  let schema: Schema;
  let validate: ValidateFunction;
  const resolve = (s: Schema): Schema => (s.$ref ? schema.definitions![s.$ref.replace('#/definitions/', '')]! : s);
  /** A chart-defined object (its keys are the chart's settings), as opposed to a free-form Kubernetes object. */
  const chartObject = (s: Schema | undefined): s is Schema & { properties: Record<string, Schema> } =>
    s !== undefined && resolve(s).properties !== undefined;

  before(async () => {
    values = await readYaml<Values>('values.yaml');
    schema = JSON.parse(await readChartFile('values.schema.json')) as Schema;
    validate = new Ajv({ allErrors: true, strict: true, strictRequired: false, strictTypes: false }).compile(schema);
  });

  test('Chart.yaml is a v2 application chart named after its directory, at the package version', async () => {
    const chart = await readYaml<Record<string, unknown>>('Chart.yaml');
    const pkg = JSON.parse(await readFile(join(ROOT, 'package.json'), 'utf8')) as { version: string };
    assert.equal(chart.apiVersion, 'v2');
    assert.equal(chart.name, 'velero-download-server');
    assert.equal(chart.type, 'application');
    assert.match(String(chart.version), /^\d+\.\d+\.\d+(-[0-9A-Za-z.-]+)?$/);
    assert.equal(chart.appVersion, pkg.version, 'appVersion is the image tag by default: keep it at the package version');
  });

  test('values.schema.json accepts the default values', () => {
    assert.ok(validate(values), JSON.stringify(validate.errors, null, 2));
  });

  const wrong: [path: string, value: unknown, why: string][] = [
    ['replicaCount', '2', 'a number as a string'],
    ['replicaCount', -1, 'a negative count'],
    ['service.type', 'ExternalName', 'a Service type the gateway cannot be reached through'],
    ['service.port', 70000, 'a port out of range'],
    ['service.nodePort', 8443, 'a nodePort outside 30000-32767'],
    ['configuration.watchNamespaces', 'team-a', 'a string instead of a list'],
    ['configuration.watchNamespaces', ['Team_A'], 'a namespace that is not a DNS label'],
    ['configuration.logLevel', 'verbose', 'an unknown log level'],
    ['configuration.shutdownGrace', 25, 'a number instead of a duration'],
    ['configuration.shutdownDelay', '5 seconds', 'not a duration'],
    ['preStopSleepSeconds', 1.5, 'a fraction of a second'],
    ['terminationGracePeriodSeconds', '35', 'a number as a string'],
    ['configuration.tenantFilesystemAllow', true, 'the old all-or-nothing switch'],
    ['configuration.tenantFilesystemAllow', 'team-a=velero-nfs', 'the flag syntax instead of a map'],
    ['configuration.tenantFilesystemAllow', { 'team-*': ['velero-nfs'] }, 'a namespace glob'],
    ['configuration.tenantFilesystemAllow', { Team_A: ['velero-nfs'] }, 'a namespace that is not a DNS label'],
    ['configuration.tenantFilesystemAllow', { 'team-a': 'velero-nfs' }, 'a bucket instead of a list of buckets'],
    ['configuration.tenantFilesystemAllow', { 'team-a': ['../etc'] }, 'a bucket that climbs out of the mount root'],
    ['configuration.tenantFilesystemAllow', { 'team-a': ['a,b'] }, 'a bucket with a comma'],
    ['configuration.extraArgs', ['debug'], 'an argument that is not a flag'],
    ['configuration.requestTimeout', 30, 'a number instead of a duration'],
    ['configuration.sendStallTimeout', 'forever', 'not a duration'],
    ['configuration.maxConnections', 0, 'a cap of zero'],
    ['configuration.maxConnectionsPerClient', 1.5, 'a fraction of a connection'],
    ['configuration.maxConcurrentDownloads', '64', 'a number as a string'],
    ['configuration.trustedProxies', '10.0.0.0/8', 'a string instead of a list'],
    ['configuration.trustedProxies', ['ingress.example'], 'a host name instead of an address or CIDR'],
    ['tls.mode', 'self-signed', 'an unknown TLS mode'],
    ['tls.caConfigMap', 'Velero_CA', 'a ConfigMap name that is not a DNS subdomain'],
    ['accessUsers.secretName', 'Users_Secret', 'a Secret name that is not a DNS subdomain'],
    ['accessUsers.allowPlaintext', 'yes', 'a string instead of a boolean'],
    ['accessUsers.seedUsername', 'ro bot', 'a user name with a space'],
    ['accessUsers.seedUsername', 'robot@host', 'a user name with "@"'],
    ['image.pullPolicy', 'Sometimes', 'an unknown pull policy'],
    ['image.digest', 'latest', 'a digest that is not sha256:…'],
    ['admissionWebhook.timeoutSeconds', 60, 'a webhook timeout above the API server maximum'],
    ['admissionWebhook.enabled', 'true', 'a string instead of a boolean'],
    ['networkPolicy.from', [{}], 'an empty peer, which would admit everyone'],
    ['networkPolicy.cidrs', ['10.0.0.0'], 'a CIDR without a prefix length'],
    ['filesystem.volumes', [{ name: 'nfs', nfs: { server: 'a', path: '/x' }, hostPath: { path: '/y' } }], 'a volume with two sources'],
    ['filesystem.volumes', [{ name: 'nfs' }], 'a volume with no source'],
    ['filesystem.root', 'mnt/velero', 'a relative mount root'],
    ['podDisruptionBudget.maxUnavailable', 'half', 'neither a number nor a percentage'],
    ['ingress.tlsMode', 'edge', 'TLS termination without re-encryption'],
    ['resources', 'small', 'a string instead of an object'],
    ['metrics.prometheusRule.selector', 'namespace="velero"} or vector(1) > 0 or x{a="b"', 'a selector that ends the braces and adds an expression'],
    ['metrics.prometheusRule.selector', 'namespace="velero" # rest', 'a selector that comments out the rest of the expression'],
    ['metrics.prometheusRule.selector', 'namespace="velero"\n', 'a selector with a line break'],
    ['metrics.prometheusRule.alertLabels', { severity: 'none' }, 'an alert label that would replace the severity of every alert'],
    ['metrics.prometheusRule.errorRatio.threshold', 0, 'a threshold of zero (fires on the first error)'],
    ['metrics.prometheusRule.errorRatio.threshold', 5, 'a percentage instead of a ratio'],
    ['metrics.prometheusRule.kubeReviewErrors.window', '5 minutes', 'not a Prometheus duration'],
    ['metrics.prometheusRule.kubeReviewErrors.for', '1.5h', 'a fraction, which Prometheus durations have not'],
    ['metrics.prometheusRule.certificateExpiry.days', 0.5, 'a fraction of a day'],
    ['metrics.prometheusRule.certificateExpiry.severity', 'page me', 'a severity with a space'],
  ];
  for (const [path, value, why] of wrong) {
    test(`the schema rejects ${path}: ${why}`, () => {
      assert.equal(validate(withValue(values, path, value)), false, `${path}=${JSON.stringify(value)} was accepted`);
    });
  }

  test('the schema accepts tenantFilesystemAllow as false, {} or a map of namespaces to buckets', () => {
    for (const value of [false, {}, { 'team-a': ['velero-nfs'], 'team-b': ['velero-nfs', 'scratch/team-b'] }]) {
      assert.ok(validate(withValue(values, 'configuration.tenantFilesystemAllow', value)), `${JSON.stringify(value)}: ${JSON.stringify(validate.errors)}`);
    }
  });

  test('the schema rejects unknown keys (typos)', () => {
    assert.equal(validate({ ...values, replicas: 3 }), false);
    assert.equal(validate(withValue(values, 'service', { ...(values.service as Values), typ: 'NodePort' })), false);
  });

  test('values.yaml and the schema describe the same settings', () => {
    const missing: string[] = [];
    const walk = (v: unknown, s: Schema, path: string): void => {
      const r = resolve(s);
      if (!isObject(v) || !r.properties) return;
      for (const [k, child] of Object.entries(v)) {
        const cs = r.properties[k];
        if (!cs) missing.push(`${path}${k}: in values.yaml, not in the schema`);
        else walk(child, cs, `${path}${k}.`);
      }
      for (const k of Object.keys(r.properties)) if (!(k in v) && !(path === '' && k === 'global')) missing.push(`${path}${k}: in the schema, not in values.yaml`);
    };
    walk(values, schema, '');
    assert.deepEqual(missing, []);
  });

  test('every value in values.yaml has a comment', async () => {
    const text = await readChartFile('values.yaml');
    const lines = text.split('\n');
    const counter = new LineCounter();
    const doc = parseDocument(text, { lineCounter: counter });
    const undocumented: string[] = [];
    const walk = (map: YAMLMap, s: Schema, path: string): void => {
      for (const pair of map.items) {
        const key = String((pair.key as { value: unknown }).value);
        const { line } = counter.linePos((pair.key as { range: [number] }).range[0]);
        const own = lines[line - 1]!;
        const indent = own.length - own.trimStart().length;
        const above = lines[line - 2] ?? '';
        const documented = (above.trimStart().startsWith('#') && above.length - above.trimStart().length === indent) || /\s#\s/.test(own);
        if (!documented) undocumented.push(`${path}${key} (line ${line})`);
        const cs = resolve(s).properties?.[key];
        if (chartObject(cs) && isMap(pair.value)) walk(pair.value, cs, `${path}${key}.`);
      }
    };
    walk(doc.contents as YAMLMap, schema, '');
    assert.deepEqual(undocumented, [], 'a comment line directly above each key says what it does');
  });

  test('every .Values path used by a template exists in values.yaml', async () => {
    const missing: string[] = [];
    let seen = 0;
    const check = (name: string, path: string): void => {
      seen++;
      let at: unknown = values;
      for (const key of path.slice(1).split('.')) {
        if (!isObject(at) || !(key in at)) {
          missing.push(`${name}: .Values${path}`);
          return;
        }
        at = at[key];
      }
    };
    for (const [name, text] of await templates()) {
      for (const m of text.matchAll(/\.Values((?:\.[A-Za-z_][A-Za-z0-9_]*)+)/g)) check(name, m[1]!);
      // Aliases: `$cfg := .Values.configuration` makes `$cfg.fqdn` mean `.Values.configuration.fqdn`.
      for (const [, alias, base] of text.matchAll(/\$([A-Za-z_]\w*) :?= \.Values((?:\.[A-Za-z_]\w*)+)/g)) {
        for (const m of text.matchAll(new RegExp(`\\$${alias}((?:\\.[A-Za-z_]\\w*)+)`, 'g'))) check(name, `${base!}${m[1]!}`);
      }
    }
    assert.ok(seen > 50, `found only ${seen} .Values references: is the scan broken?`);
    assert.deepEqual([...new Set(missing)], []);
  });

  test('every template a template includes is defined', async () => {
    const all = [...(await templates()).values()].join('\n');
    const defined = new Set([...all.matchAll(/define "([^"]+)"/g)].map((m) => m[1]));
    const used = new Set([...all.matchAll(/include "([^"]+)"/g)].map((m) => m[1]!));
    assert.ok(used.size > 5);
    assert.deepEqual([...used].filter((u) => !defined.has(u)), []);
  });

  test('the templates a chart must have are there', async () => {
    const names = [...(await templates()).keys()];
    for (const t of ['_helpers.tpl', 'NOTES.txt', 'deployment.yaml', 'service.yaml', 'serviceaccount.yaml', 'rbac.yaml', 'pdb.yaml', 'ingress.yaml',
      'networkpolicy.yaml', 'servicemonitor.yaml', 'prometheusrule.yaml', 'mutatingwebhookconfiguration.yaml', 'certificate.yaml']) {
      assert.ok(names.includes(t), `templates/${t}`);
    }
  });

  test('the PrometheusRule queries only metrics the gateway exports, by their exported names', async () => {
    const rule = (await templates()).get('prometheusrule.yaml')!;
    const used = new Set([...rule.matchAll(/\bvelero_download_server_[a-z_]+/g)].map((m) => m[0]));
    assert.ok(used.size >= 4, `only ${[...used].join(', ')} found: is the scan broken?`);
    // A histogram is exported as _bucket, _sum and _count series beside its name.
    const exported = new Set((await new GatewayMetrics({ processMetrics: false }).registry.getMetricsAsJSON())
      .flatMap((m) => (String(m.type) === 'histogram' ? ['_bucket', '_sum', '_count'].map((x) => m.name + x) : [m.name])));
    assert.deepEqual([...used].filter((n) => !exported.has(n)), []);
  });

  test('the Deployment passes only flags the gateway has', async () => {
    const deployment = (await templates()).get('deployment.yaml')!;
    const used = new Set([...deployment.matchAll(/"?--([a-z][a-z0-9-]*)[=%"\s]/g)].map((m) => m[1]!));
    const known = new Set(Object.values(FLAGS).map((f) => f.name));
    // A switch may be negated (`--no-ui`), as the gateway's parser allows.
    const negatable = new Set(Object.values(FLAGS).filter((f) => f.kind === 'boolean').map((f) => `no-${f.name}`));
    assert.ok(used.size >= 15, `only ${used.size} flags found: is the scan broken?`);
    assert.deepEqual([...used].filter((f) => !known.has(f) && !negatable.has(f)), []);
    // node:util parseArgs refuses `--switch=value`: switches are passed bare.
    const switches = Object.values(FLAGS).filter((f) => f.kind === 'boolean').map((f) => f.name);
    assert.deepEqual(switches.filter((f) => deployment.includes(`--${f}=`)), []);
  });
});
