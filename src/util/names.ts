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
