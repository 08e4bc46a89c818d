import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { azureAuthFor, parseAzureCredentialFile, parseUseAAD } from '../../src/stores/credentials/azure.ts';
import type { AzureAuth } from '../../src/stores/credentials/azure.ts';
import { InvalidLocationError } from '../../src/stores/errors.ts';

const STORAGE_KEY = 'c2VjcmV0LXN0b3JhZ2Uta2V5LXRoYXQtaXMtbG9uZy1lbm91Z2gtdG8tbG9vay1yZWFsLTAxMjM0NTY3ODk=';
const CLIENT_SECRET = 'Zq8~sEcReT.value_that-must-never-show';
const SECRETS = [STORAGE_KEY, CLIENT_SECRET, 'hunter2-in-a-bad-line', 'half-quoted-secret'];

/** Runs `fn`, expects InvalidLocationError, and checks its message names the location and shows no secret. */
function refused(fn: () => unknown, pattern: RegExp): InvalidLocationError {
  let caught: unknown;
  try {
    fn();
  } catch (err) {
    caught = err;
  }
  assert.ok(caught instanceof InvalidLocationError, `expected InvalidLocationError, got ${String(caught)}`);
  assert.match(caught.message, /location ns\/loc/);
  assert.match(caught.message, pattern);
  for (const secret of SECRETS) assert.ok(!caught.message.includes(secret), `message shows a secret: ${caught.message}`);
  return caught;
}

const parse = (text: string | Uint8Array): Record<string, string> =>
  parseAzureCredentialFile(typeof text === 'string' ? Buffer.from(text) : text, 'ns/loc');

describe('parseAzureCredentialFile', () => {
  test('the file velero install writes', () => {
    const values = parse(
      [
        'AZURE_SUBSCRIPTION_ID=11111111-2222-3333-4444-555555555555',
        'AZURE_TENANT_ID=66666666-7777-8888-9999-000000000000',
        'AZURE_CLIENT_ID=aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee',
        `AZURE_CLIENT_SECRET=${CLIENT_SECRET}`,
        'AZURE_RESOURCE_GROUP=MC_rg_cluster_westeurope',
        'AZURE_CLOUD_NAME=AzurePublicCloud',
        '',
      ].join('\n'),
    );
    assert.deepEqual(values, {
      AZURE_SUBSCRIPTION_ID: '11111111-2222-3333-4444-555555555555',
      AZURE_TENANT_ID: '66666666-7777-8888-9999-000000000000',
      AZURE_CLIENT_ID: 'aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee',
      AZURE_CLIENT_SECRET: CLIENT_SECRET,
      AZURE_RESOURCE_GROUP: 'MC_rg_cluster_westeurope',
      AZURE_CLOUD_NAME: 'AzurePublicCloud',
    });
  });

  test('comments, blank lines, CRLF, a BOM, export, quotes, spaces and NAME: value', () => {
    const text =
      '\ufeff# storage key for the backup account\r\n\r\n' +
      `export AZURE_STORAGE_ACCOUNT_ACCESS_KEY="${STORAGE_KEY}"\r\n` +
      "  AZURE_CLOUD_NAME = 'AzureChinaCloud'   # where it lives\r\n" +
      'AZURE_RESOURCE_GROUP: rg\r\n' +
      'EMPTY=\r\n' +
      'MULTI="line one\nline two"\r\n' +
      'NO_NEWLINE_AT_END=yes';
    assert.deepEqual(parse(text), {
      AZURE_STORAGE_ACCOUNT_ACCESS_KEY: STORAGE_KEY,
      AZURE_CLOUD_NAME: 'AzureChinaCloud',
      AZURE_RESOURCE_GROUP: 'rg',
      EMPTY: '',
      MULTI: 'line one\nline two',
      NO_NEWLINE_AT_END: 'yes',
    });
  });

  test('an empty file or only comments gives no variables', () => {
    assert.deepEqual(parse(''), {});
    assert.deepEqual(parse('# nothing here\n\n   \n'), {});
  });

  const malformed: [string, string, number][] = [
    ['a line without =', `AZURE_TENANT_ID=t\nhunter2-in-a-bad-line\n`, 2],
    ['a name with spaces', `AZURE_TENANT_ID=t\n\nMY KEY=hunter2-in-a-bad-line\n`, 3],
    ['a bare value after a key line', `AZURE_CLIENT_SECRET=${CLIENT_SECRET}\n  =hunter2-in-a-bad-line\n`, 2],
    ['an unterminated quote', `AZURE_TENANT_ID=t\nAZURE_CLIENT_SECRET="half-quoted-secret\nAZURE_CLIENT_ID=c\n`, 2],
  ];
  for (const [name, text, line] of malformed) {
    test(`${name} → InvalidLocationError naming line ${line}, not its content`, () => {
      refused(() => parse(text), new RegExp(`line ${line} of the Azure credential file`));
    });
  }

  test('bytes that are not UTF-8 are refused', () => {
    refused(() => parse(Buffer.from([0x41, 0x3d, 0xff, 0xfe, 0x0a])), /not UTF-8/);
  });
});

describe('parseUseAAD', () => {
  test("Go's strconv.ParseBool spellings, as Velero reads useAAD", () => {
    for (const v of ['true', 'True', 'TRUE', 't', 'T', '1']) assert.equal(parseUseAAD(v, 'ns/loc'), true, v);
    for (const v of ['false', 'False', 'FALSE', 'f', 'F', '0', '', undefined]) assert.equal(parseUseAAD(v, 'ns/loc'), false, String(v));
    refused(() => parseUseAAD('yes', 'ns/loc'), /useAAD must be "true" or "false"/);
  });
});

describe('azureAuthFor', () => {
  const aadValues = {
    AZURE_TENANT_ID: 'tenant',
    AZURE_CLIENT_ID: 'client',
    AZURE_CLIENT_SECRET: CLIENT_SECRET,
  };

  const cases: { name: string; values: Record<string, string> | undefined; config: Record<string, string>; ambient?: boolean; want: AzureAuth }[] = [
    {
      name: 'storageAccountKeyEnvVar names the shared key',
      values: { MY_KEY: STORAGE_KEY, ...aadValues },
      config: { storageAccountKeyEnvVar: 'MY_KEY' },
      want: { kind: 'sharedKey', accountKey: STORAGE_KEY, keyVariable: 'MY_KEY' },
    },
    {
      name: 'the key wins over useAAD when both are there (Velero checks the key first)',
      values: { MY_KEY: STORAGE_KEY, ...aadValues },
      config: { storageAccountKeyEnvVar: 'MY_KEY', useAAD: 'true' },
      want: { kind: 'sharedKey', accountKey: STORAGE_KEY, keyVariable: 'MY_KEY' },
    },
    {
      name: 'useAAD with a client secret',
      values: { ...aadValues, AZURE_ADDITIONALLY_ALLOWED_TENANTS: 't2; t3;' },
      config: { useAAD: 'true' },
      want: { kind: 'clientSecret', tenantId: 'tenant', clientId: 'client', clientSecret: CLIENT_SECRET, additionallyAllowedTenants: ['t2', 't3'] },
    },
    {
      name: 'useAAD with a key variable that is missing falls to Azure AD',
      values: aadValues,
      config: { useAAD: 'true', storageAccountKeyEnvVar: 'MISSING' },
      want: { kind: 'clientSecret', tenantId: 'tenant', clientId: 'client', clientSecret: CLIENT_SECRET, additionallyAllowedTenants: [] },
    },
    {
      name: 'Azure AD settings without useAAD are used for the data plane',
      values: aadValues,
      config: {},
      want: { kind: 'clientSecret', tenantId: 'tenant', clientId: 'client', clientSecret: CLIENT_SECRET, additionallyAllowedTenants: [] },
    },
    {
      name: 'a certificate file',
      values: { AZURE_TENANT_ID: 'tenant', AZURE_CLIENT_ID: 'client', AZURE_CLIENT_CERTIFICATE_PATH: '/credentials/sp.pem', AZURE_CLIENT_SEND_CERTIFICATE_CHAIN: 'true' },
      config: { useAAD: 'true' },
      want: {
        kind: 'clientCertificate',
        tenantId: 'tenant',
        clientId: 'client',
        certificate: { path: '/credentials/sp.pem' },
        certificatePassword: undefined,
        sendCertificateChain: true,
        additionallyAllowedTenants: [],
      },
    },
    {
      name: 'a PEM in the file wins over a path, as in Velero',
      values: {
        AZURE_TENANT_ID: 'tenant',
        AZURE_CLIENT_ID: 'client',
        AZURE_CLIENT_CERTIFICATE: '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----',
        AZURE_CLIENT_CERTIFICATE_PATH: '/credentials/sp.pem',
        AZURE_CLIENT_CERTIFICATE_PASSWORD: 'pw',
      },
      config: { useAAD: 'true' },
      want: {
        kind: 'clientCertificate',
        tenantId: 'tenant',
        clientId: 'client',
        certificate: { pem: '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----' },
        certificatePassword: 'pw',
        sendCertificateChain: false,
        additionallyAllowedTenants: [],
      },
    },
    {
      name: 'useAAD with only a client id: workload or managed identity, where ambient credentials are allowed',
      values: { AZURE_CLIENT_ID: 'client', AZURE_TENANT_ID: 'tenant' },
      config: { useAAD: 'true' },
      ambient: true,
      want: { kind: 'ambient', tenantId: 'tenant', clientId: 'client' },
    },
    {
      name: 'no credential at all, ambient credentials allowed',
      values: undefined,
      config: { storageAccountKeyEnvVar: 'MY_KEY' },
      ambient: true,
      want: { kind: 'ambient', tenantId: undefined, clientId: undefined },
    },
  ];
  for (const c of cases) {
    test(c.name, () => {
      assert.deepEqual(azureAuthFor(c.values, c.config, 'ns/loc', c.ambient ?? false), c.want);
    });
  }

  const refusals: { name: string; values: Record<string, string> | undefined; config: Record<string, string>; pattern: RegExp }[] = [
    {
      name: 'the named key variable is missing',
      values: { OTHER: STORAGE_KEY },
      config: { storageAccountKeyEnvVar: 'MY_KEY' },
      pattern: /the credential file has no MY_KEY, the variable config storageAccountKeyEnvVar names/,
    },
    {
      name: 'the named key variable is empty',
      values: { MY_KEY: '  ' },
      config: { storageAccountKeyEnvVar: 'MY_KEY' },
      pattern: /has no MY_KEY/,
    },
    {
      name: 'the key is not base64',
      values: { MY_KEY: 'hunter2-in-a-bad-line' },
      config: { storageAccountKeyEnvVar: 'MY_KEY' },
      pattern: /MY_KEY in the credential file is not a base64 storage account key/,
    },
    {
      name: 'neither a key nor Azure AD settings',
      values: { AZURE_SUBSCRIPTION_ID: 's', AZURE_STORAGE_ACCOUNT_ACCESS_KEY: STORAGE_KEY },
      config: {},
      pattern: /neither a storage account key \(set config storageAccountKeyEnvVar .*\) nor Azure AD settings/,
    },
    {
      name: 'useAAD without a secret or certificate, ambient credentials not allowed',
      values: { AZURE_TENANT_ID: 'tenant', AZURE_CLIENT_ID: 'client' },
      config: { useAAD: 'true' },
      pattern: /no AZURE_CLIENT_SECRET, AZURE_CLIENT_CERTIFICATE_PATH or AZURE_CLIENT_CERTIFICATE/,
    },
    {
      name: 'a client secret without a tenant',
      values: { AZURE_CLIENT_ID: 'client', AZURE_CLIENT_SECRET: CLIENT_SECRET },
      config: { useAAD: 'true' },
      pattern: /no AZURE_TENANT_ID/,
    },
    {
      name: 'a client secret without a client id',
      values: { AZURE_TENANT_ID: 'tenant', AZURE_CLIENT_SECRET: CLIENT_SECRET },
      config: {},
      pattern: /no AZURE_CLIENT_ID/,
    },
    {
      name: 'no credential, ambient credentials not allowed',
      values: undefined,
      config: { storageAccountKeyEnvVar: 'MY_KEY' },
      pattern: /^location ns\/loc needs a credential/,
    },
  ];
  for (const r of refusals) {
    test(`${r.name} → InvalidLocationError`, () => {
      refused(() => azureAuthFor(r.values, r.config, 'ns/loc', false), r.pattern);
    });
  }
});
