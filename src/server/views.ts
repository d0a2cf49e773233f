// What the API shows of reports and PatchJobs: what a person needs, never the ~150 KB
// report body or managedFields.
import type { PatchJob } from "../api/index.ts";
import type { ReportSummary } from "../decide/index.ts";

export function reportView(key: string, s: ReportSummary, pj: PatchJob | undefined) {
  const [namespace, name] = key.split("/") as [string, string];
  const f = s.facts;
  return {
    namespace,
    name,
    ...(f
      ? {
          image: {
            registry: f.imageMetadata.registryURI,
            repository: f.imageMetadata.repository,
            tag: f.imageMetadata.tag,
            digest: f.imageMetadata.digest,
            platform: f.imageMetadata.platform,
            ...(f.imageMetadata.indexDigest ? { indexDigest: f.imageMetadata.indexDigest } : {}),
          },
          vulnerabilities: {
            total: f.conversion.ok ? f.conversion.value.counts.total : f.conversion.counts.total,
            fixable: f.conversion.ok ? f.conversion.value.counts.fixable : f.conversion.counts.fixable,
            bySeverity: f.bySeverity,
          },
          patchable: f.conversion.ok && f.conversion.value.updates.length > 0,
          ...(f.conversion.ok ? {} : { problem: f.conversion.message }),
        }
      : { problem: s.invalid?.message ?? "unreadable report" }),
    ...(pj ? { patchJob: { name: pj.metadata.name, phase: pj.status?.phase ?? "Pending" } } : {}),
  };
}

export function patchJobView(pj: PatchJob) {
  return {
    namespace: pj.metadata.namespace,
    name: pj.metadata.name,
    generation: pj.metadata.generation,
    createdAt: pj.metadata.creationTimestamp,
    spec: pj.spec,
    status: pj.status ?? {},
  };
}
