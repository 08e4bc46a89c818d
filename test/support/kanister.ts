/**
 * Kanister objects for the API test double (install its CRD with `kubeFixture({ kanister: true })`):
 * Profiles (`cr.kanister.io/v1alpha1`, settings as top-level fields, as Kanister keeps them) and
 * Secrets of Kanister's types (`secrets.kanister.io/aws`, `/gcp`, `/azure`, `/storage-location`).
 */
import type { KubeObject } from './kube-apiserver/index.ts';

export const KANISTER_AWS = 'secrets.kanister.io/aws';
export const KANISTER_GCP = 'secrets.kanister.io/gcp';
export const KANISTER_AZURE = 'secrets.kanister.io/azure';
export const KANISTER_LOCATION = 'secrets.kanister.io/storage-location';

export interface ProfileFields {
  location?: Record<string, unknown>;
  credential?: Record<string, unknown>;
  skipSSLVerify?: boolean;
}

export function kanisterProfile(namespace: string, name: string, fields: ProfileFields, annotations?: Record<string, string>): KubeObject {
  return { apiVersion: 'cr.kanister.io/v1alpha1', kind: 'Profile', metadata: { name, namespace, ...(annotations && { annotations }) }, ...fields };
}

/** A Secret with `data` base64-encoded as the API stores it; `type` as given (Opaque when absent). */
export function secretOf(namespace: string, name: string, data: Record<string, string | Uint8Array>, type?: string): KubeObject {
  const encoded = Object.fromEntries(Object.entries(data).map(([k, v]) => [k, Buffer.from(v).toString('base64')]));
  return { apiVersion: 'v1', kind: 'Secret', metadata: { name, namespace }, type: type ?? 'Opaque', data: encoded };
}

/** `credential` of a keyPair Profile: two keys of one Secret, as `kanctl create profile` writes it. */
export const keyPairCredential = (secret: string, idField: string, secretField: string, namespace?: string): Record<string, unknown> => ({
  type: 'keyPair',
  keyPair: { idField, secretField, secret: { apiVersion: 'v1', kind: 'Secret', name: secret, ...(namespace && { namespace }) } },
});

/** `credential` of a secret Profile: a whole Kanister credential Secret. */
export const secretCredential = (secret: string, namespace?: string): Record<string, unknown> => ({
  type: 'secret',
  secret: { apiVersion: 'v1', kind: 'Secret', name: secret, ...(namespace && { namespace }) },
});
