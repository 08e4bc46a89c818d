/**
 * The resource types the test API server serves, their discovery documents, and the Velero CRDs it
 * installs. Velero kinds are served only while their CustomResourceDefinition is in the store, and
 * their `/status` subresource only when that CRD declares one, as on a real cluster.
 */

export interface ResourceType {
  group: string;
  version: string;
  /** Plural, the URL segment. */
  resource: string;
  singular: string;
  kind: string;
  namespaced: boolean;
  /** Served from a CRD: list items keep kind/apiVersion, strategic merge patch is refused (415). */
  custom: boolean;
  /** Built-in types only (custom ones follow their CRD): has a `/status` subresource. */
  statusSubresource?: boolean;
  /** With a status subresource, a create keeps the posted status (Node) instead of dropping it. */
  keepStatusOnCreate?: boolean;
  /** DELETE answers with the object; otherwise with a `Status` of Success (Secret, Node). */
  returnDeletedObject: boolean;
  shortNames?: string[];
}

const core = (resource: string, kind: string, more: Partial<ResourceType>): ResourceType => ({
  group: '', version: 'v1', resource, singular: kind.toLowerCase(), kind, namespaced: true, custom: false, returnDeletedObject: true, ...more,
});
const velero = (resource: string, kind: string, shortNames?: string[]): ResourceType => ({
  group: 'velero.io', version: 'v1', resource, singular: kind.toLowerCase(), kind, namespaced: true, custom: true, returnDeletedObject: true,
  ...(shortNames ? { shortNames } : {}),
});

export const RESOURCES: readonly ResourceType[] = [
  core('secrets', 'Secret', { returnDeletedObject: false }),
  core('configmaps', 'ConfigMap', { returnDeletedObject: false, shortNames: ['cm'] }),
  core('services', 'Service', { statusSubresource: true, shortNames: ['svc'] }),
  core('nodes', 'Node', { namespaced: false, statusSubresource: true, keepStatusOnCreate: true, returnDeletedObject: false, shortNames: ['no'] }),
  core('namespaces', 'Namespace', { namespaced: false, statusSubresource: true, shortNames: ['ns'] }),
  velero('backups', 'Backup'),
  velero('restores', 'Restore'),
  velero('downloadrequests', 'DownloadRequest'),
  velero('backupstoragelocations', 'BackupStorageLocation', ['bsl']),
  velero('podvolumebackups', 'PodVolumeBackup'),
  // Velero serves DataUploads in v2alpha1 only (not in discovery here, which lists v1).
  { ...velero('datauploads', 'DataUpload'), version: 'v2alpha1' },
  // Kanister's Profile: served only while its CRD is installed (KubeApiServerOptions.kanister).
  { group: 'cr.kanister.io', version: 'v1alpha1', resource: 'profiles', singular: 'profile', kind: 'Profile', namespaced: true, custom: true, returnDeletedObject: true },
  {
    group: 'admissionregistration.k8s.io', version: 'v1', resource: 'mutatingwebhookconfigurations', singular: 'mutatingwebhookconfiguration',
    kind: 'MutatingWebhookConfiguration', namespaced: false, custom: false, returnDeletedObject: false,
  },
  {
    group: 'apiextensions.k8s.io', version: 'v1', resource: 'customresourcedefinitions', singular: 'customresourcedefinition',
    kind: 'CustomResourceDefinition', namespaced: false, custom: false, statusSubresource: true, keepStatusOnCreate: true,
    returnDeletedObject: true, shortNames: ['crd', 'crds'],
  },
];

/** Create-only review APIs: answered, never stored. */
export const REVIEWS = {
  tokenreviews: { group: 'authentication.k8s.io', version: 'v1', kind: 'TokenReview' },
  subjectaccessreviews: { group: 'authorization.k8s.io', version: 'v1', kind: 'SubjectAccessReview' },
} as const;

export const apiVersionOf = (rt: { group: string; version: string }): string => (rt.group ? `${rt.group}/${rt.version}` : rt.version);

export function findResource(group: string, version: string, resource: string): ResourceType | undefined {
  return RESOURCES.find((rt) => rt.group === group && rt.version === version && rt.resource === resource);
}

export function resourceForKind(apiVersion: string, kind: string): ResourceType {
  const rt = RESOURCES.find((r) => apiVersionOf(r) === apiVersion && r.kind === kind);
  if (!rt) throw new Error(`test kube-apiserver does not serve ${apiVersion} ${kind}`);
  return rt;
}

export const crdName = (rt: ResourceType): string => `${rt.resource}.${rt.group}`;

/** What discovery needs to know about the live state: which custom types are served and with which subresources. */
export interface Served {
  served(rt: ResourceType): boolean;
  hasStatus(rt: ResourceType): boolean;
}

const VERBS = ['create', 'delete', 'get', 'list', 'patch', 'update', 'watch'];

function resourceList(groupVersion: string, s: Served): object {
  const types = RESOURCES.filter((rt) => apiVersionOf(rt) === groupVersion && s.served(rt));
  const reviews = Object.entries(REVIEWS).filter(([, r]) => apiVersionOf(r) === groupVersion);
  return {
    kind: 'APIResourceList',
    apiVersion: 'v1',
    groupVersion,
    resources: [
      ...types.flatMap((rt) => {
        const entry = { name: rt.resource, singularName: rt.singular, namespaced: rt.namespaced, kind: rt.kind, verbs: VERBS, ...(rt.shortNames ? { shortNames: rt.shortNames } : {}) };
        const status = { name: `${rt.resource}/status`, singularName: '', namespaced: rt.namespaced, kind: rt.kind, verbs: ['get', 'patch', 'update'] };
        return s.hasStatus(rt) ? [entry, status] : [entry];
      }),
      ...reviews.map(([name, r]) => ({ name, singularName: '', namespaced: false, kind: r.kind, verbs: ['create'] })),
    ],
  };
}

function groups(s: Served): { name: string; versions: { groupVersion: string; version: string }[]; preferredVersion: { groupVersion: string; version: string } }[] {
  const names = new Set([...RESOURCES.filter((rt) => rt.group && s.served(rt)).map((rt) => rt.group), ...Object.values(REVIEWS).map((r) => r.group)]);
  return [...names].sort().map((name) => {
    // Discovery lists v1 for every group but Kanister's, whose only version is v1alpha1.
    const version = name === 'cr.kanister.io' ? 'v1alpha1' : 'v1';
    const v = { groupVersion: `${name}/${version}`, version };
    return { name, versions: [v], preferredVersion: v };
  });
}

export const VERSION = {
  major: '1', minor: '34', gitVersion: 'v1.34.0-vds-test', gitCommit: '0000000000000000000000000000000000000000', gitTreeState: 'clean',
  buildDate: '2026-01-01T00:00:00Z', goVersion: 'go1.24.0', compiler: 'gc', platform: 'linux/amd64',
};

/** The body for a discovery path, or undefined when the path is not a discovery path. */
export function discovery(path: string, s: Served, serverAddress: string): object | undefined {
  const p = path.replace(/\/+$/, '');
  if (p === '/version') return VERSION;
  if (p === '/api') return { kind: 'APIVersions', versions: ['v1'], serverAddressByClientCIDRs: [{ clientCIDR: '0.0.0.0/0', serverAddress }] };
  if (p === '/api/v1') return resourceList('v1', s);
  if (p === '/apis') return { kind: 'APIGroupList', apiVersion: 'v1', groups: groups(s) };
  const m = /^\/apis\/([^/]+)(?:\/(v1\w*))?$/.exec(p);
  const g = m && groups(s).find((x) => x.name === m[1]);
  if (!m || !g || (m[2] && m[2] !== g.preferredVersion.version)) return undefined;
  return m[2] ? resourceList(g.preferredVersion.groupVersion, s) : { kind: 'APIGroup', apiVersion: 'v1', ...g };
}

/** Shape of the DownloadRequest CRD to install. */
export interface DownloadRequestCrdOptions {
  /** Declare `status.veleroServerURL` (the download-server design); stock Velero does not. */
  veleroServerURL?: boolean;
  /** Enable the `/status` subresource; stock Velero's DownloadRequest CRD has none. */
  statusSubresource?: boolean;
}

const open = { type: 'object', 'x-kubernetes-preserve-unknown-fields': true };

function crd(rt: ResourceType, status: object, subresources: boolean): object {
  return {
    apiVersion: 'apiextensions.k8s.io/v1',
    kind: 'CustomResourceDefinition',
    metadata: { name: crdName(rt) },
    spec: {
      group: rt.group,
      names: { kind: rt.kind, listKind: `${rt.kind}List`, plural: rt.resource, singular: rt.singular, ...(rt.shortNames ? { shortNames: rt.shortNames } : {}) },
      scope: rt.namespaced ? 'Namespaced' : 'Cluster',
      versions: [
        {
          name: rt.version,
          served: true,
          storage: true,
          schema: { openAPIV3Schema: { type: 'object', properties: { apiVersion: { type: 'string' }, kind: { type: 'string' }, metadata: { type: 'object' }, spec: open, status } } },
          ...(subresources ? { subresources: { status: {} } } : {}),
        },
      ],
    },
    status: { acceptedNames: { kind: rt.kind, plural: rt.resource }, storedVersions: [rt.version] },
  };
}

/** The DownloadRequest CRD: stock Velero's status schema (pruned to phase, downloadURL, expiration), or the extended one. */
export function downloadRequestCrd(opts: DownloadRequestCrdOptions = {}): object {
  const properties: Record<string, object> = {
    downloadURL: { type: 'string' },
    expiration: { type: 'string', format: 'date-time', nullable: true },
    phase: { type: 'string', enum: ['New', 'Processed'] },
    ...(opts.veleroServerURL ? { veleroServerURL: { type: 'string' } } : {}),
  };
  return crd(resourceForKind('velero.io/v1', 'DownloadRequest'), { type: 'object', properties }, opts.statusSubresource ?? false);
}

/**
 * CRDs for the Velero kinds the gateway reads. Subresources as in Velero v1.18: only
 * BackupStorageLocation has `/status` of these. Schemas are open except the DownloadRequest status,
 * the one pruning matters for here.
 */
export function veleroCrds(dr: DownloadRequestCrdOptions = {}): object[] {
  const r = (kind: string): ResourceType => resourceForKind('velero.io/v1', kind);
  return [
    crd(r('Backup'), open, false),
    crd(r('Restore'), open, false),
    crd(r('BackupStorageLocation'), open, true),
    downloadRequestCrd(dr),
    crd(r('PodVolumeBackup'), open, false),
    crd(resourceForKind('velero.io/v2alpha1', 'DataUpload'), open, false),
  ];
}

/** Kanister's Profile CRD (`profiles.cr.kanister.io`, v1alpha1): its fields are top-level, open here. */
export function kanisterCrds(): object[] {
  return [crd(resourceForKind('cr.kanister.io/v1alpha1', 'Profile'), open, false)];
}
