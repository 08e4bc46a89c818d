/** Names the gateway's parts share with its Helm chart, its client and the cluster. */

/** The gateway's Service as the chart names it, and the default of `--service-name`. */
export const DEFAULT_SERVICE_NAME = 'velero-download-server';

/** The service account's mounted files inside a pod (token, namespace, CA). */
export const SERVICE_ACCOUNT_DIR = '/var/run/secrets/kubernetes.io/serviceaccount';

/** Annotation the gateway writes on a DownloadRequest, and the client reads: the URL that streams its target. */
export const URL_ANNOTATION = 'download-server.velero.io/url';

/** Annotation on the CA ConfigMap and the certificate Secret, which clients pin: SHA-256 fingerprint of the serving certificate. */
export const FINGERPRINT_ANNOTATION = 'download-server.velero.io/tls-fingerprint';

/** The ConfigMap where the gateway publishes the CA clients trust (key ca.crt), by default; the client reads it, and names it in advice. */
export const CA_CONFIGMAP_NAME = 'velero-download-server-ca';

/**
 * The characters of each part of an access user's name (`user@host`): printable ASCII without space,
 * `:` and `@`, so a name is safe in a log line, a SubjectAccessReview's username and a Basic user-id.
 */
export const ACCESS_USER_NAME_PART = /^[!-9;-?A-~]+$/;

/** Longest user part of an access user's name. */
export const MAX_ACCESS_USER_LENGTH = 64;

/** Whether `user` can be the user part of an access user's name (also the seed form's one user name). */
export function isAccessUserPart(user: string): boolean {
  return user.length <= MAX_ACCESS_USER_LENGTH && ACCESS_USER_NAME_PART.test(user);
}
