/**
 * An in-memory RBAC authorizer with Kubernetes' matching rules (plugin/pkg/auth/authorizer/rbac):
 * ClusterRoleBindings apply everywhere, RoleBindings only in their namespace (to a Role of that
 * namespace or a ClusterRole); `resource/subresource` must be named as such (a rule for `backups` does
 * not grant `backups/log`), `*` and `*\/sub` match as upstream, empty resourceNames means any name.
 * Objects use the rbac.authorization.k8s.io/v1 shapes, so a chart's rendered manifests can be loaded.
 */

export interface PolicyRule {
  apiGroups?: string[];
  resources?: string[];
  resourceNames?: string[];
  nonResourceURLs?: string[];
  verbs: string[];
}

export interface Subject {
  kind: 'User' | 'Group' | 'ServiceAccount';
  name: string;
  /** ServiceAccount only; defaults to the binding's namespace. */
  namespace?: string;
  apiGroup?: string;
}

export interface RoleRef {
  kind: 'Role' | 'ClusterRole';
  name: string;
  apiGroup?: string;
}

interface Meta {
  name: string;
  namespace?: string;
}
export interface Role {
  kind: 'Role' | 'ClusterRole';
  metadata: Meta;
  rules: PolicyRule[];
}
export interface Binding {
  kind: 'RoleBinding' | 'ClusterRoleBinding';
  metadata: Meta;
  roleRef: RoleRef;
  subjects: Subject[];
}

/** What is asked: a resource request (resource set) or a non-resource one (path set). */
export interface Attributes {
  user: string;
  groups: string[];
  verb: string;
  namespace?: string;
  group?: string;
  resource?: string;
  subresource?: string;
  name?: string;
  path?: string;
}

export interface Decision {
  allowed: boolean;
  /** `RBAC: allowed by ClusterRoleBinding "x" of ClusterRole "y" to User "z"`; empty when denied (no opinion), as upstream. */
  reason: string;
}

export const user = (name: string): Subject => ({ kind: 'User', name });
export const group = (name: string): Subject => ({ kind: 'Group', name });
export const serviceAccount = (namespace: string, name: string): Subject => ({ kind: 'ServiceAccount', name, namespace });

const has = (list: string[] | undefined, v: string): boolean => !!list && (list.includes('*') || list.includes(v));

function ruleAllows(r: PolicyRule, a: Attributes): boolean {
  if (!has(r.verbs, a.verb)) return false;
  if (a.resource === undefined) {
    const path = a.path ?? '';
    return (r.nonResourceURLs ?? []).some((u) => u === '*' || u === path || (u.endsWith('*') && path.startsWith(u.slice(0, -1))));
  }
  if (!has(r.apiGroups, a.group ?? '')) return false;
  const combined = a.subresource ? `${a.resource}/${a.subresource}` : a.resource;
  const resourceOk = (r.resources ?? []).some((x) => x === '*' || x === combined || (!!a.subresource && x === `*/${a.subresource}`));
  return resourceOk && (!r.resourceNames?.length || r.resourceNames.includes(a.name ?? ''));
}

function describe(s: Subject, bindingNs: string): string {
  return s.kind === 'ServiceAccount' ? `ServiceAccount "${s.name}/${s.namespace ?? bindingNs}"` : `${s.kind} "${s.name}"`;
}

export class Rbac {
  #roles = new Map<string, Role>();
  #bindings = new Map<string, Binding>();
  #seq = 0;

  /** Adds Role, ClusterRole, RoleBinding and ClusterRoleBinding manifests (and `List`s of them); other kinds are ignored. */
  load(...objects: unknown[]): this {
    for (const o of objects as { kind?: string; items?: unknown[]; metadata: Meta }[]) {
      if (o?.kind === 'List' || o?.kind?.endsWith('List')) this.load(...(o.items ?? []));
      else if (o?.kind === 'Role' || o?.kind === 'ClusterRole') this.#roles.set(roleKey(o.kind, o.metadata), o as Role);
      else if (o?.kind === 'RoleBinding' || o?.kind === 'ClusterRoleBinding') this.#bindings.set(roleKey(o.kind, o.metadata), o as Binding);
    }
    return this;
  }

  role(namespace: string, name: string, rules: PolicyRule[]): this {
    return this.load({ kind: 'Role', metadata: { name, namespace }, rules });
  }

  clusterRole(name: string, rules: PolicyRule[]): this {
    return this.load({ kind: 'ClusterRole', metadata: { name }, rules });
  }

  /** A RoleBinding in `namespace` to a Role of that namespace, or to a ClusterRole (then granted in that namespace only). */
  roleBinding(namespace: string, name: string, roleRef: RoleRef, subjects: Subject[]): this {
    return this.load({ kind: 'RoleBinding', metadata: { name, namespace }, roleRef, subjects });
  }

  clusterRoleBinding(name: string, clusterRole: string, subjects: Subject[]): this {
    return this.load({ kind: 'ClusterRoleBinding', metadata: { name }, roleRef: { kind: 'ClusterRole', name: clusterRole }, subjects });
  }

  /** Shorthand: a new (Cluster)Role with `rules`, bound to `subjects` in `namespace` or cluster-wide. Returns the role's name. */
  grant(subjects: Subject | Subject[], rules: PolicyRule[], namespace?: string): string {
    const name = `grant-${++this.#seq}`;
    const list = Array.isArray(subjects) ? subjects : [subjects];
    if (namespace) this.role(namespace, name, rules).roleBinding(namespace, name, { kind: 'Role', name }, list);
    else this.clusterRole(name, rules).clusterRoleBinding(name, name, list);
    return name;
  }

  /** Removes a (Cluster)Role or (Cluster)RoleBinding. */
  remove(kind: Role['kind'] | Binding['kind'], name: string, namespace?: string): boolean {
    const k = roleKey(kind, { name, ...(namespace ? { namespace } : {}) });
    return this.#roles.delete(k) || this.#bindings.delete(k);
  }

  clear(): void {
    this.#roles.clear();
    this.#bindings.clear();
  }

  authorize(a: Attributes): Decision {
    const ns = a.namespace ?? '';
    const bindings = [...this.#bindings.values()].filter(
      (b) => b.kind === 'ClusterRoleBinding' || (ns !== '' && b.metadata.namespace === ns),
    );
    bindings.sort((x, y) => (x.kind === y.kind ? 0 : x.kind === 'ClusterRoleBinding' ? -1 : 1));
    for (const b of bindings) {
      const bindingNs = b.metadata.namespace ?? '';
      const subject = (b.subjects ?? []).find((s) => applies(s, a, bindingNs));
      if (!subject) continue;
      const role = this.#roles.get(roleKey(b.roleRef.kind, { name: b.roleRef.name, ...(b.roleRef.kind === 'Role' ? { namespace: bindingNs } : {}) }));
      if (!role?.rules?.some((r) => ruleAllows(r, a))) continue;
      const by = b.kind === 'ClusterRoleBinding' ? `ClusterRoleBinding "${b.metadata.name}"` : `RoleBinding "${b.metadata.name}/${bindingNs}"`;
      return { allowed: true, reason: `RBAC: allowed by ${by} of ${b.roleRef.kind} "${b.roleRef.name}" to ${describe(subject, bindingNs)}` };
    }
    return { allowed: false, reason: '' };
  }
}

function applies(s: Subject, a: Attributes, bindingNs: string): boolean {
  if (s.kind === 'User') return s.name === a.user;
  if (s.kind === 'Group') return a.groups.includes(s.name);
  return a.user === `system:serviceaccount:${s.namespace ?? bindingNs}:${s.name}`;
}

const roleKey = (kind: string, m: Meta): string => `${kind}/${kind === 'Role' || kind === 'RoleBinding' ? (m.namespace ?? '') : ''}/${m.name}`;
