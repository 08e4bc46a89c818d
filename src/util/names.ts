/** Names the gateway's parts share with its Helm chart. */

/** The gateway's Service as the chart names it, and the default of `--service-name`. */
export const DEFAULT_SERVICE_NAME = 'velero-download-server';
