/**
 * The matrix of settings that name a file on the gateway or run a program (src/stores/file-settings.ts),
 * every row of every provider's table:
 * - as a tenant: refused by the factory with TenantSettingRefusedError (→ 403 Forbidden) naming the
 *   location and the setting, never its value; no adapter is built (so no connection) and the file,
 *   a tripwire FIFO, is never read;
 * - as the admin: a setting the gateway reads is read only as a regular file of at most 1 MiB (a FIFO,
 *   /dev/zero, a directory, a larger file are refused naming the setting); a setting it ignores is
 *   accepted and never read, while the real adapter goes all the way to the store; GCP credentials
 *   other than service-account keys stay refused for everyone, with a message that says why.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:http';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { mapError } from '../../src/server/status.ts';
import { InvalidLocationError, ObjectNotFoundError, TenantSettingRefusedError } from '../../src/stores/errors.ts';
import { DefaultStoreFactory } from '../../src/stores/factory.ts';
import type { AdapterConstructor } from '../../src/stores/factory.ts';
import { FILE_SETTINGS, readLocationFile } from '../../src/stores/file-settings.ts';
import type { FileSettingRule } from '../../src/stores/file-settings.ts';
import type { StoreSpec } from '../../src/stores/spec.ts';
import { createTestServiceAccount } from '../support/gcs-server.ts';
import { tripwire } from '../support/tripwire.ts';
import type { Tripwire } from '../support/tripwire.ts';

type Provider = keyof typeof FILE_SETTINGS;
const PROVIDERS = Object.keys(FILE_SETTINGS) as Provider[];
const MiB = 1024 * 1024;
const AZURE_KEY = Buffer.alloc(64, 7).toString('base64');
const SERVICE_ACCOUNT = createTestServiceAccount('matrix@vds-test-project.iam.gserviceaccount.com');
const signal = (): AbortSignal => new AbortController().signal;

/**
 * For every row, a concrete setting of the kind a user would write: its name (a pattern row gets a
 * real-looking key) and its value, given the tripwire's path. Values that are not paths (a role ARN,
 * a profile name) still make the gateway use something of its own; they cannot touch the tripwire,
 * so for them the proof is that no adapter was built.
 */
const EXAMPLES: Record<string, { name: string; value: (wire: string) => unknown }> = {
  'aws config customerKeyEncryptionFile': { name: 'customerKeyEncryptionFile', value: (w) => w },
  'aws config credentialsFile': { name: 'credentialsFile', value: (w) => w },
  'aws credential credential_process': { name: 'credential_process', value: (w) => `/bin/sh -c "cat ${w}"` },
  'aws credential web_identity_token_file': { name: 'web_identity_token_file', value: (w) => w },
  'aws credential role_arn': { name: 'role_arn', value: () => 'arn:aws:iam::123456789012:role/gateway-admin' },
  'aws credential source_profile': { name: 'source_profile', value: () => 'admin-profile' },
  'aws credential credential_source': { name: 'credential_source', value: () => 'Ec2InstanceMetadata' },
  'aws credential sso_*': { name: 'sso_start_url', value: () => 'https://example.awsapps.com/start' },
  'aws credential login_session': { name: 'login_session', value: () => 'arn:aws:iam::123456789012:user/admin' },
  'aws credential ca_bundle': { name: 'ca_bundle', value: (w) => w },
  'aws credential *_file': { name: 'some_token_file', value: (w) => w },
  'aws credential *_path': { name: 'cert_path', value: (w) => w },
  'azure config credentialsFile': { name: 'credentialsFile', value: (w) => w },
  'azure credential AZURE_CLIENT_CERTIFICATE_PATH': { name: 'AZURE_CLIENT_CERTIFICATE_PATH', value: (w) => w },
  'azure credential AZURE_FEDERATED_TOKEN_FILE': { name: 'AZURE_FEDERATED_TOKEN_FILE', value: (w) => w },
  'azure credential *_FILE': { name: 'AZURE_CREDENTIALS_FILE', value: (w) => w },
  'azure credential *_PATH': { name: 'AZURE_CLIENT_KEY_PATH', value: (w) => w },
  'azure credential *_DIR': { name: 'AZURE_CONFIG_DIR', value: (w) => w },
  'gcp config credentialsFile': { name: 'credentialsFile', value: (w) => w },
  'gcp credential credential_source.file': { name: 'credential_source.file', value: (w) => w },
  'gcp credential credential_source.executable': { name: 'credential_source.executable', value: (w) => ({ command: `/bin/cat ${w}`, timeout_millis: 5000 }) },
  'gcp credential credential_source.url': { name: 'credential_source.url', value: () => 'http://169.254.169.254/computeMetadata/v1/instance/service-accounts/default/identity' },
  'gcp credential credential_source.environment_id': { name: 'credential_source.environment_id', value: () => 'aws1' },
  'gcp credential credential_source.certificate': { name: 'credential_source.certificate', value: (w) => ({ certificate_config_location: w }) },
  'gcp credential *_file': { name: 'credential_source.executable.output_file', value: (w) => w },
  'gcp credential *_path': { name: 'credential_source.token_path', value: (w) => w },
};

const rowId = (provider: Provider, rule: FileSettingRule): string => `${provider} ${rule.where} ${rule.key}`;

/** How a message names a setting (file-settings.ts fileSettingsOf). */
function displayed(provider: Provider, where: FileSettingRule['where'], name: string): string {
  if (where === 'config') return `config ${name}`;
  if (provider === 'aws') return `AWS credential key ${name} (profile "default")`;
  if (provider === 'azure') return `Azure credential variable ${name}`;
  return `GCP credential field ${name}`;
}

/** A valid location of `provider` at `endpoint`, optionally with one more setting. */
function specOf(provider: Provider, endpoint: string, extra?: { where: FileSettingRule['where']; name: string; value: unknown }, tenant = true): StoreSpec {
  const config: Record<string, string> =
    provider === 'aws'
      ? { region: 'us-east-1', s3Url: endpoint, s3ForcePathStyle: 'true' }
      : provider === 'azure'
        ? { storageAccount: 'matrix', storageAccountURI: `${endpoint}/matrix`, storageAccountKeyEnvVar: 'AZURE_STORAGE_ACCOUNT_ACCESS_KEY' }
        : { storeEndpoint: endpoint };
  let credential: string;
  if (provider === 'aws') credential = '[default]\naws_access_key_id = AKIDMATRIX\naws_secret_access_key = matrix-secret\n';
  else if (provider === 'azure') credential = `AZURE_STORAGE_ACCOUNT_ACCESS_KEY=${AZURE_KEY}\nAZURE_CLOUD_NAME=AzurePublicCloud\n`;
  else credential = Buffer.from(SERVICE_ACCOUNT.json).toString();
  if (extra?.where === 'config') config[extra.name] = String(extra.value);
  if (extra?.where === 'credential') {
    if (provider === 'aws') credential += `${extra.name} = ${String(extra.value)}\n`;
    else if (provider === 'azure') credential += `${extra.name}=${String(extra.value)}\n`;
    else {
      const doc = JSON.parse(credential) as Record<string, unknown>;
      const path = extra.name.split('.');
      let at = doc;
      for (const seg of path.slice(0, -1)) at = (at[seg] ??= {}) as Record<string, unknown>;
      at[path.at(-1)!] = extra.value;
      if (path[0] === 'credential_source') doc.type = 'external_account';
      credential = JSON.stringify(doc);
    }
  }
  return {
    name: `${tenant ? 'team-a' : 'velero'}/matrix`,
    provider: provider === 'aws' ? 'velero.io/aws' : provider,
    bucket: provider === 'azure' ? 'matrix-container' : 'matrix-bucket',
    prefix: '',
    config,
    credential: Buffer.from(credential),
    ...(tenant && { tenant: true, allowDefaultCredential: false }),
  };
}

/** The real adapters, each construction recorded: an empty record means nothing could have connected. */
function recordingAdapters(built: string[]): Record<Provider, () => Promise<AdapterConstructor>> {
  return {
    aws: async () => {
      const { S3Store } = await import('../../src/stores/s3.ts');
      return (o) => (built.push(o.spec.name), new S3Store(o));
    },
    azure: async () => {
      const { AzureBlobStore } = await import('../../src/stores/azure.ts');
      return (o) => (built.push(o.spec.name), new AzureBlobStore(o));
    },
    gcp: async () => {
      const { GcsStore } = await import('../../src/stores/gcs.ts');
      return (o) => (built.push(o.spec.name), new GcsStore(o));
    },
  };
}

describe('settings naming files or programs, every row of every provider', () => {
  let dir = '';
  let wire: Tripwire;
  /** A plain-HTTP store that answers 404 to everything and counts requests. */
  let store: Server;
  let storeRequests = 0;
  let origin = '';
  const factories: DefaultStoreFactory[] = [];
  const newFactory = (built: string[]): DefaultStoreFactory => {
    const f = new DefaultStoreFactory({ fsRoot: '/nonexistent', tenantEndpointAllow: ['127.0.0.1/32'], adapters: recordingAdapters(built) });
    factories.push(f);
    return f;
  };

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'vds-file-settings-'));
    wire = await tripwire(join(dir, 'tripwire'));
    store = createServer((req, res) => {
      storeRequests++;
      req.resume();
      res.statusCode = 404;
      res.setHeader('content-type', 'application/json');
      res.setHeader('x-ms-error-code', 'BlobNotFound');
      res.end(JSON.stringify({ error: { code: 404, message: 'Not Found', errors: [{ reason: 'notFound' }] } }));
    });
    store.listen(0, '127.0.0.1');
    await once(store, 'listening');
    origin = `http://127.0.0.1:${(store.address() as AddressInfo).port}`;
  });
  after(async () => {
    for (const f of factories) f.close();
    store.closeAllConnections();
    store.close();
    await wire.close();
    await rm(dir, { recursive: true, force: true });
  });

  test('every row of the table has an example here, and no example is left over', () => {
    const rows = PROVIDERS.flatMap((p) => FILE_SETTINGS[p].map((r) => rowId(p, r)));
    assert.deepEqual(rows.filter((id) => !(id in EXAMPLES)), [], 'rows without an example');
    assert.deepEqual(Object.keys(EXAMPLES).filter((id) => !rows.includes(id)), [], 'examples without a row');
    for (const p of PROVIDERS) {
      for (const r of FILE_SETTINGS[p]) assert.ok(r.matches(EXAMPLES[rowId(p, r)]!.name), `${rowId(p, r)} matches its example`);
    }
  });

  test("the README's table lists every row, with what the gateway does for its own BSLs", async () => {
    const readme = await readFile(new URL('../../README.md', import.meta.url), 'utf8');
    const rows = readme.split('\n').filter((l) => /^\| (aws|azure|gcp) \|/.test(l));
    for (const p of PROVIDERS) {
      for (const r of FILE_SETTINGS[p]) {
        const row = rows.find((l) => l.startsWith(`| ${p} |`) && l.includes(`\`${r.key}\``));
        assert.ok(row, `README has no row for ${rowId(p, r)}`);
        const admin = row.split('|').at(-2)!.trim();
        assert.ok(admin.startsWith(r.admin), `${rowId(p, r)}: the README says "${admin}", the table ${r.admin}`);
      }
    }
  });

  describe('as a tenant: refused before anything, 403 naming the setting', () => {
    test('control: each provider’s tenant location without such a setting is built (the record sees constructions)', async () => {
      const built: string[] = [];
      const f = newFactory(built);
      for (const p of PROVIDERS) await f.forSpec(specOf(p, origin.replace('http:', 'https:')));
      assert.equal(built.length, PROVIDERS.length);
    });

    for (const provider of PROVIDERS) {
      for (const rule of FILE_SETTINGS[provider]) {
        const id = rowId(provider, rule);
        test(`${id}`, async () => {
          const example = EXAMPLES[id]!;
          const built: string[] = [];
          const f = newFactory(built);
          const value = example.value(wire.path);
          const spec = specOf(provider, origin.replace('http:', 'https:'), { where: rule.where, name: example.name, value });
          const err = await (async () => f.forSpec(spec))().then(
            () => assert.fail('the tenant location was built'),
            (e: unknown) => e,
          );
          assert.ok(err instanceof TenantSettingRefusedError, String(err));
          const setting = displayed(provider, rule.where, example.name);
          assert.ok(err.settings.includes(setting), `${JSON.stringify(err.settings)} names ${setting}`);
          assert.match(err.message, new RegExp(`^location team-a/matrix: .*${setting.replace(/[()*".]/g, '\\$&')}`));
          assert.match(err.message, /refused for locations outside the gateway's namespace/);
          const text = typeof value === 'string' ? value : JSON.stringify(value);
          assert.ok(!err.message.includes(wire.path) && !err.message.includes(text), 'the message never shows the value');
          const mapped = mapError(err);
          assert.deepEqual([mapped.body.code, mapped.body.reason, mapped.body.kind], [403, 'Forbidden', 'Status']);
          assert.equal(mapped.body.message, err.message);
          assert.deepEqual(built, [], 'no adapter was built, so no connection was made');
          assert.ok(await wire.intact(), 'the file was never read');
        });
      }
    }

    test('several at once are all named in one answer', async () => {
      const f = newFactory([]);
      const spec = specOf('aws', origin.replace('http:', 'https:'), { where: 'credential', name: 'credential_process', value: '/bin/true' });
      spec.config.customerKeyEncryptionFile = '/etc/passwd';
      spec.config.credentialsFile = '/etc/shadow';
      const err = await (async () => f.forSpec(spec))().catch((e: unknown) => e);
      assert.ok(err instanceof TenantSettingRefusedError);
      assert.deepEqual([...err.settings].sort(), ['AWS credential key credential_process (profile "default")', 'config credentialsFile', 'config customerKeyEncryptionFile']);
      assert.match(err.message, / and .* are refused/);
    });

    test('only the profile in use counts, and empty values name nothing', async () => {
      const built: string[] = [];
      const f = newFactory(built);
      const spec = specOf('aws', origin.replace('http:', 'https:'));
      spec.credential = Buffer.from(`${Buffer.from(spec.credential!).toString()}[other]\ncredential_process = /bin/sh -c "cat ${wire.path}"\n`);
      spec.config.customerKeyEncryptionFile = '  ';
      await f.forSpec(spec);
      const other = { ...spec, config: { ...spec.config, profile: 'other' } };
      other.credential = Buffer.from(`${Buffer.from(spec.credential).toString()}aws_access_key_id = A\naws_secret_access_key = S\n`);
      const err = await (async () => f.forSpec(other))().catch((e: unknown) => e);
      assert.ok(err instanceof TenantSettingRefusedError);
      assert.deepEqual(err.settings, ['AWS credential key credential_process (profile "other")']);
      assert.ok(await wire.intact());
    });
  });

  describe('as the admin', () => {
    let files: Record<'regular' | 'directory' | 'large', string>;
    before(async () => {
      files = { regular: join(dir, 'regular'), directory: join(dir, 'a-directory'), large: join(dir, 'large') };
      await writeFile(files.regular, Buffer.alloc(40, 0x61));
      await mkdir(files.directory);
      await writeFile(files.large, Buffer.alloc(MiB + 1, 0x61));
    });

    const read = PROVIDERS.flatMap((p) => FILE_SETTINGS[p].filter((r) => r.admin === 'read').map((r) => [p, r] as const));
    test('the rows the gateway reads are exactly customerKeyEncryptionFile and AZURE_CLIENT_CERTIFICATE_PATH', () => {
      assert.deepEqual(read.map(([p, r]) => rowId(p, r)), ['aws config customerKeyEncryptionFile', 'azure credential AZURE_CLIENT_CERTIFICATE_PATH']);
    });
    for (const [provider, rule] of read) {
      test(`${rowId(provider, rule)}: a regular file is read; a FIFO, /dev/zero, a directory, a file over 1 MiB are refused naming the setting`, async () => {
        const admin = specOf(provider, origin, undefined, false);
        const setting = displayed(provider, rule.where, rule.key);
        assert.equal((await readLocationFile(admin, setting, files.regular)).length, 40);
        for (const [path, why] of [
          [wire.path, /names a FIFO \(named pipe\), not a regular file$/],
          ['/dev/zero', /names a character device, not a regular file$/],
          [files.directory, /names a directory, not a regular file$/],
          [files.large, /names a file larger than 1 MiB$/],
        ] as const) {
          const err = await readLocationFile(admin, setting, path).catch((e: unknown) => e);
          assert.ok(err instanceof InvalidLocationError && !(err instanceof TenantSettingRefusedError), String(err));
          assert.ok(err.message.startsWith(`location velero/matrix: ${setting} names `), err.message);
          assert.match(err.message, why);
          assert.ok(!err.message.includes(path));
        }
        // The same call for a tenant's location never looks at the path.
        const err = await readLocationFile({ ...admin, tenant: true }, setting, wire.path).catch((e: unknown) => e);
        assert.ok(err instanceof TenantSettingRefusedError);
        assert.ok(await wire.intact(), 'the FIFO was never read');
      });
    }

    for (const provider of PROVIDERS) {
      const ignored = FILE_SETTINGS[provider].filter((r) => r.admin === 'ignored');
      if (ignored.length === 0) continue;
      test(`${provider}: ${ignored.map((r) => r.key).join(', ')} are accepted and never read; the real adapter goes to the store`, async () => {
        const built: string[] = [];
        const f = newFactory(built);
        const from = storeRequests;
        for (const rule of ignored) {
          const example = EXAMPLES[rowId(provider, rule)]!;
          const spec = specOf(provider, origin, { where: rule.where, name: example.name, value: example.value(wire.path) }, false);
          const s = await f.forSpec(spec);
          await assert.rejects(s.stat('backups/b/b-logs.gz', { signal: signal() }), ObjectNotFoundError, rowId(provider, rule));
        }
        assert.equal(built.length, ignored.length);
        assert.ok(storeRequests - from >= ignored.length, 'every location reached the store');
        assert.ok(await wire.intact(), 'no setting was read or run');
      });
    }

    test('gcp: an external_account credential stays refused for everyone, saying why; nothing read, nothing sent', async () => {
      const built: string[] = [];
      const f = newFactory(built);
      const from = storeRequests;
      for (const rule of FILE_SETTINGS.gcp.filter((r) => r.admin === 'refused')) {
        const example = EXAMPLES[rowId('gcp', rule)]!;
        const spec = specOf('gcp', origin, { where: rule.where, name: example.name, value: example.value(wire.path) }, false);
        const err = await (async () => f.forSpec(spec))().catch((e: unknown) => e);
        assert.ok(err instanceof InvalidLocationError, `${rowId('gcp', rule)}: ${String(err)}`);
        assert.match(err.message, /^location velero\/matrix: GCP credential has type "external_account"; only "service_account" keys are supported: .*credential_source.*never uses/);
      }
      assert.equal(storeRequests, from, 'nothing was sent');
      assert.ok(await wire.intact());
    });
  });
});
