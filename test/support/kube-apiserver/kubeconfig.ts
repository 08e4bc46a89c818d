/**
 * Kubeconfig documents pointing at the test API server: a bearer-token user, or a user holding only a
 * client certificate (CN = username, O = groups, signed by the test CA; the server accepts it as
 * kube-apiserver's x509 authenticator does).
 */
import { writeFile } from 'node:fs/promises';
import { generate } from 'selfsigned';
import { stringify } from 'yaml';
import type { TestPki } from '../test-ca.ts';

export interface Kubeconfig {
  apiVersion: 'v1';
  kind: 'Config';
  clusters: { name: string; cluster: { server: string; 'certificate-authority-data': string } }[];
  users: { name: string; user: { token?: string; 'client-certificate-data'?: string; 'client-key-data'?: string } }[];
  contexts: { name: string; context: { cluster: string; user: string; namespace?: string } }[];
  'current-context': string;
  preferences: Record<string, never>;
}

export interface KubeconfigOptions {
  /** The context's default namespace. */
  namespace?: string;
  /** Name of the user entry (default `test-user`). */
  user?: string;
}

export type Credentials = { token: string } | { certificate: string; key: string };

const b64 = (pem: string): string => Buffer.from(pem).toString('base64');

export function buildKubeconfig(server: string, caCert: string, creds: Credentials, opts: KubeconfigOptions = {}): Kubeconfig {
  const user = opts.user ?? 'test-user';
  const cluster = 'vds-test';
  return {
    apiVersion: 'v1',
    kind: 'Config',
    clusters: [{ name: cluster, cluster: { server, 'certificate-authority-data': b64(caCert) } }],
    users: [{ name: user, user: 'token' in creds ? { token: creds.token } : { 'client-certificate-data': b64(creds.certificate), 'client-key-data': b64(creds.key) } }],
    contexts: [{ name: `${user}@${cluster}`, context: { cluster, user, ...(opts.namespace ? { namespace: opts.namespace } : {}) } }],
    'current-context': `${user}@${cluster}`,
    preferences: {},
  };
}

/** A client certificate for `username` in `groups`, signed by the test CA. */
export async function issueClientCertificate(pki: TestPki, username: string, groups: string[] = []): Promise<{ certificate: string; key: string }> {
  const subject = [{ name: 'commonName', value: username }, ...groups.map((g) => ({ name: 'organizationName', value: g }))];
  const pems = await generate(subject, {
    keyType: 'ec',
    algorithm: 'sha256',
    notAfterDate: new Date(Date.now() + 24 * 3600 * 1000),
    ca: { key: pki.caKey, cert: pki.caCert },
    extensions: [
      { name: 'basicConstraints', cA: false },
      { name: 'keyUsage', digitalSignature: true, critical: true },
      { name: 'extKeyUsage', clientAuth: true },
    ],
  });
  return { certificate: pems.cert, key: pems.private };
}

export const kubeconfigYaml = (doc: Kubeconfig): string => stringify(doc);

/** Writes `doc` as YAML, readable by its owner only (kubectl warns about anything wider). Returns `file`. */
export async function writeKubeconfig(file: string, doc: Kubeconfig): Promise<string> {
  await writeFile(file, kubeconfigYaml(doc), { mode: 0o600 });
  return file;
}
