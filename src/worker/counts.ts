// Before/after counts of a PatchJob: before from the controller's status (or the spec),
// after from what the patched image was verified to fix.
import type { PackageUpdate, PatchJob, VulnerabilityCounts } from "../api/index.ts";

/** Findings an update fixes: one per CVE it names (at least one). */
export function findingsOf(updates: PackageUpdate[]): number {
  return updates.reduce((n, u) => n + Math.max(1, u.vulnerabilityIDs?.length ?? 0), 0);
}

export function counts(pj: PatchJob, fixed: number): VulnerabilityCounts {
  // Library updates are packages with CVEs too (a PatchJob made by hand has no "before").
  const specFixable = findingsOf([...(pj.spec.updates ?? []), ...(pj.spec.libraryUpdates ?? [])]);
  const before = {
    total: pj.status?.vulnerabilities?.before?.total ?? specFixable,
    fixable: pj.status?.vulnerabilities?.before?.fixable ?? specFixable,
  };
  const f = Math.min(fixed, before.fixable);
  return {
    before,
    after: {
      total: Math.max(0, (before.total ?? 0) - f),
      fixable: Math.max(0, (before.fixable ?? 0) - f),
      fixed: f,
    },
  };
}
