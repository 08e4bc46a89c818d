/**
 * Which namespaces the gateway serves: its own, always, plus `--watch-namespaces` names and `*` globs
 * (`velero,team-*`, or `*` for all). Matching is by name at request time, so a namespace created later
 * that matches a glob is served without a restart.
 */
export function namespaceMatcher(own: string, patterns: readonly string[]): (namespace: string) => boolean {
  const exact = new Set([own, ...patterns.filter((p) => !p.includes('*'))]);
  const globs = patterns
    .filter((p) => p.includes('*'))
    .map((p) => new RegExp(`^${p.split('*').map((part) => part.replace(/[.+?^${}()|[\]\\]/g, '\\$&')).join('[a-z0-9-]*')}$`));
  return (ns) => exact.has(ns) || globs.some((g) => g.test(ns));
}
