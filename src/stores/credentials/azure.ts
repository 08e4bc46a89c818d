/**
 * The Azure credential file Velero's Azure plugin reads (`AZURE_CREDENTIALS_FILE`, the `cloud` key of
 * `cloud-credentials`): dotenv lines such as `AZURE_TENANT_ID=...`, `AZURE_STORAGE_ACCOUNT_ACCESS_KEY=...`.
 * Parsed in memory; errors name the location and the line or variable, never a value.
 */
import { parse } from 'dotenv';
import { InvalidLocationError } from '../errors.ts';

/** Variables of an Azure credential file, by name. */
export type AzureCredentialValues = Readonly<Record<string, string>>;

// The line grammar of dotenv's parse() (dotenv 17 lib/main.js), used only to find the lines parse()
// would skip without a word; the values themselves come from parse().
const DOTENV_LINE =
  /(?:^|^)\s*(?:export\s+)?([\w.-]+)(?:\s*=\s*?|:\s+?)(\s*'(?:\\'|[^'])*'|\s*"(?:\\"|[^"])*"|\s*`(?:\\`|[^`])*`|[^#\r\n]+)?\s*(?:#.*)?(?:$|$)/gm;

/**
 * Parses the bytes of an Azure credential file. Blank lines and `#` comments are allowed; every other
 * line must be `NAME=value` (or `export NAME=value`, `NAME: value`, quoted values as dotenv takes them).
 * Throws InvalidLocationError naming `location` and the first malformed line's number.
 */
export function parseAzureCredentialFile(bytes: Uint8Array, location: string): Record<string, string> {
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true, ignoreBOM: false }).decode(bytes);
  } catch {
    throw new InvalidLocationError(`location ${location}: the Azure credential file is not UTF-8 text`);
  }
  text = text.replace(/\r\n?/g, '\n');

  // Character ranges dotenv's grammar accepts; a quoted value may span lines.
  const covered: [number, number][] = [];
  const unterminated: number[] = [];
  for (const m of text.matchAll(new RegExp(DOTENV_LINE.source, DOTENV_LINE.flags))) {
    if (m[0].length === 0) continue;
    covered.push([m.index, m.index + m[0].length]);
    const value = (m[2] ?? '').trim();
    const quote = value[0];
    // An opening quote without its closing one is taken by dotenv as a literal, quote included.
    if ((quote === '"' || quote === "'" || quote === '`') && (value.length < 2 || !value.endsWith(quote))) {
      unterminated.push(m.index + m[0].length - 1);
    }
  }
  const isCovered = (at: number): boolean => covered.some(([start, end]) => at >= start && at < end);

  let offset = 0;
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i] ?? '';
    const lineStart = offset;
    offset += line.length + 1;
    const firstChar = line.search(/\S/);
    if (firstChar < 0 || line[firstChar] === '#') continue;
    if (!isCovered(lineStart + firstChar)) {
      throw new InvalidLocationError(`location ${location}: line ${i + 1} of the Azure credential file is not NAME=value`);
    }
    if (unterminated.some((at) => at >= lineStart && at < offset)) {
      throw new InvalidLocationError(`location ${location}: line ${i + 1} of the Azure credential file has an unterminated quote`);
    }
  }
  return parse(text);
}

/** How a location authenticates to Blob storage, resolved from its config and credential file. */
export type AzureAuth =
  | { kind: 'sharedKey'; accountKey: string; keyVariable: string }
  | {
      kind: 'clientSecret';
      tenantId: string;
      clientId: string;
      clientSecret: string;
      additionallyAllowedTenants: string[];
    }
  | {
      kind: 'clientCertificate';
      tenantId: string;
      clientId: string;
      /** A PEM file to read (`AZURE_CLIENT_CERTIFICATE_PATH`), or the PEM itself (`AZURE_CLIENT_CERTIFICATE`). */
      certificate: { path: string } | { pem: string };
      certificatePassword: string | undefined;
      sendCertificateChain: boolean;
      additionallyAllowedTenants: string[];
    }
  /** The SDK's default chain (workload identity, managed identity, ...): only with ambient credentials. */
  | { kind: 'ambient'; tenantId: string | undefined; clientId: string | undefined };

// Go's strconv.ParseBool, which Velero uses for useAAD.
const TRUE = new Set(['1', 't', 'T', 'TRUE', 'true', 'True']);
const FALSE = new Set(['0', 'f', 'F', 'FALSE', 'false', 'False']);

/** Velero's reading of the `useAAD` config value; an unparsable one is a configuration error. */
export function parseUseAAD(value: string | undefined, location: string): boolean {
  if (value === undefined || value === '') return false;
  if (TRUE.has(value)) return true;
  if (FALSE.has(value)) return false;
  throw new InvalidLocationError(`location ${location}: config useAAD must be "true" or "false"`);
}

const STORAGE_KEY = /^[A-Za-z0-9+/]+={0,2}$/;

function shared(values: AzureCredentialValues, variable: string, location: string): AzureAuth {
  const accountKey = (values[variable] ?? '').trim();
  if (accountKey === '') {
    throw new InvalidLocationError(
      `location ${location}: the credential file has no ${variable}, the variable config storageAccountKeyEnvVar names`,
    );
  }
  if (!STORAGE_KEY.test(accountKey) || accountKey.length % 4 !== 0) {
    throw new InvalidLocationError(`location ${location}: ${variable} in the credential file is not a base64 storage account key`);
  }
  return { kind: 'sharedKey', accountKey, keyVariable: variable };
}

function aad(values: AzureCredentialValues, location: string, ambientCredentials: boolean): AzureAuth {
  const get = (name: string): string | undefined => {
    const v = values[name]?.trim();
    return v === undefined || v === '' ? undefined : v;
  };
  const tenantId = get('AZURE_TENANT_ID');
  const clientId = get('AZURE_CLIENT_ID');
  const clientSecret = get('AZURE_CLIENT_SECRET');
  const certificatePath = get('AZURE_CLIENT_CERTIFICATE_PATH');
  const certificatePem = get('AZURE_CLIENT_CERTIFICATE');
  const additionallyAllowedTenants = (get('AZURE_ADDITIONALLY_ALLOWED_TENANTS') ?? '')
    .split(';')
    .map((t) => t.trim())
    .filter((t) => t !== '');

  if (clientSecret === undefined && certificatePath === undefined && certificatePem === undefined) {
    // Velero falls back to workload or managed identity here: the gateway's own identity, so only
    // where borrowing it is allowed.
    if (ambientCredentials) return { kind: 'ambient', tenantId, clientId };
    throw new InvalidLocationError(
      `location ${location}: useAAD is set but the credential file has no AZURE_CLIENT_SECRET, AZURE_CLIENT_CERTIFICATE_PATH or AZURE_CLIENT_CERTIFICATE`,
    );
  }
  if (tenantId === undefined) throw new InvalidLocationError(`location ${location}: the credential file has no AZURE_TENANT_ID`);
  if (clientId === undefined) throw new InvalidLocationError(`location ${location}: the credential file has no AZURE_CLIENT_ID`);
  if (clientSecret !== undefined) {
    return { kind: 'clientSecret', tenantId, clientId, clientSecret, additionallyAllowedTenants };
  }
  const chain = get('AZURE_CLIENT_SEND_CERTIFICATE_CHAIN');
  return {
    kind: 'clientCertificate',
    tenantId,
    clientId,
    // Velero prefers the PEM in the file over the path.
    certificate: certificatePem !== undefined ? { pem: certificatePem } : { path: certificatePath as string },
    certificatePassword: get('AZURE_CLIENT_CERTIFICATE_PASSWORD'),
    sendCertificateChain: chain === '1' || chain?.toLowerCase() === 'true',
    additionallyAllowedTenants,
  };
}

function hasAADSettings(values: AzureCredentialValues): boolean {
  return ['AZURE_CLIENT_SECRET', 'AZURE_CLIENT_CERTIFICATE', 'AZURE_CLIENT_CERTIFICATE_PATH'].some((k) => (values[k] ?? '').trim() !== '');
}

/**
 * Chooses the authentication for a location the way Velero's Azure plugin does, minus its calls to
 * Azure Resource Manager:
 * - `storageAccountKeyEnvVar` set: the shared key in the variable it names (a missing variable is an
 *   error, as in Velero; with `useAAD: "true"` the Azure AD settings are used instead);
 * - `useAAD: "true"`, or Azure AD settings present: a client secret (`AZURE_TENANT_ID`,
 *   `AZURE_CLIENT_ID`, `AZURE_CLIENT_SECRET`) or certificate (`AZURE_CLIENT_CERTIFICATE_PATH`) token
 *   for the data plane, or `AZURE_CLIENT_CERTIFICATE` (PEM) as Velero also takes (Velero, without
 *   useAAD, would instead fetch the account key through ARM);
 * - otherwise InvalidLocationError naming what is missing.
 * `values` undefined means the location has no credential: the SDK's default chain when
 * `ambientCredentials`, else InvalidLocationError.
 */
export function azureAuthFor(
  values: AzureCredentialValues | undefined,
  config: Readonly<Record<string, string>>,
  location: string,
  ambientCredentials: boolean,
): AzureAuth {
  if (values === undefined) {
    if (ambientCredentials) return { kind: 'ambient', tenantId: undefined, clientId: undefined };
    throw new InvalidLocationError(
      `location ${location} needs a credential: an Azure credential file with the storage account key ` +
        '(named by config storageAccountKeyEnvVar) or Azure AD settings (AZURE_TENANT_ID, AZURE_CLIENT_ID, AZURE_CLIENT_SECRET)',
    );
  }
  const useAAD = parseUseAAD(config.useAAD, location);
  const keyVariable = config.storageAccountKeyEnvVar?.trim() ?? '';
  if (keyVariable !== '') {
    const present = (values[keyVariable] ?? '').trim() !== '';
    if (present || !useAAD) return shared(values, keyVariable, location);
  }
  if (useAAD || hasAADSettings(values)) return aad(values, location, ambientCredentials);
  throw new InvalidLocationError(
    `location ${location}: the Azure credential file has neither a storage account key (set config storageAccountKeyEnvVar ` +
      'to the variable holding it, e.g. AZURE_STORAGE_ACCOUNT_ACCESS_KEY) nor Azure AD settings (AZURE_TENANT_ID, ' +
      'AZURE_CLIENT_ID and AZURE_CLIENT_SECRET or AZURE_CLIENT_CERTIFICATE_PATH)',
  );
}
