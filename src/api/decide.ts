// The controller's decision for one report: a pure function of the report, the
// PatchJob that already exists for it (if any) and the settings. It never does I/O;
// reconcile fetches, calls decide, and applies what it returns.
import { convertReport, type Conversion, type ConversionResult } from "./convert.ts";
import { isPatchedTag, patchJobNameForReport } from "./naming.ts";
import {
  DEFAULT_TAG_SUFFIX,
  DEFAULT_TIMEOUT,
  Source,
  type PatchJob,
  type ImageSpec,
  type PatchJobSpec,
  type VulnerabilityCounts,
} from "./patchjob.ts";
import type { ImageMetadata, ObjectMeta, VulnerabilityReport } from "./report.ts";
import { patchJobSpecProblems } from "./schema.ts";
import { SEVERITIES, severityRank, type Severity } from "./policy.ts";

/**
 * What a decision needs of a report: its identity, its image and the result of
 * converting its findings. A few hundred bytes where the report is ~150 KB, so the
 * controller's cache keeps these, never reports.
 */
export interface ReportFacts {
  metadata: Pick<ObjectMeta, "name" | "namespace" | "uid" | "resourceVersion" | "deletionTimestamp"> & {
    labels?: Record<string, string>;
  };
  imageMetadata: ImageMetadata;
  conversion: ConversionResult;
  /** Highest severity among the findings VEX did not suppress, and among the fixable ones. */
  severity: { any?: Severity; fixable?: Severity };
  /** Unsuppressed findings per severity. */
  bySeverity: Partial<Record<Severity, number>>;
}

export function reportFacts(report: VulnerabilityReport): ReportFacts {
  const m = report.metadata;
  const conversion = convertReport(report);
  const fixable = new Set(
    conversion.ok ? conversion.value.findings.map((f) => `${f.packageName}\n${f.cve}`) : [],
  );
  const severity: ReportFacts["severity"] = {};
  const bySeverity: ReportFacts["bySeverity"] = {};
  for (const r of report.report.results ?? [])
    for (const v of r.vulnerabilities ?? []) {
      if (v.suppressed) continue;
      const sev = SEVERITIES[severityRank(v.severity)]!;
      bySeverity[sev] = (bySeverity[sev] ?? 0) + 1;
      if (severity.any === undefined || severityRank(sev) > severityRank(severity.any)) severity.any = sev;
      if (
        fixable.has(`${v.packageName}\n${v.cve}`) &&
        (severity.fixable === undefined || severityRank(sev) > severityRank(severity.fixable))
      )
        severity.fixable = sev;
    }
  return {
    metadata: {
      name: m.name,
      namespace: m.namespace,
      uid: m.uid,
      resourceVersion: m.resourceVersion,
      ...(m.labels && Object.keys(m.labels).length ? { labels: m.labels } : {}),
      ...(m.deletionTimestamp ? { deletionTimestamp: m.deletionTimestamp } : {}),
    },
    imageMetadata: report.imageMetadata,
    conversion,
    severity,
    bySeverity,
  };
}

export interface DecideSettings {
  /** @default "-patched" */
  tagSuffix?: string;
  /** @default "10m" */
  timeout?: string;
  /** @default false */
  ignoreErrors?: boolean;
  /** The PatchPolicy chosen for the report (none: the controller's settings alone). */
  policy?: {
    name: string;
    namespace: string;
    dryRun?: boolean;
    target?: { reference?: string; tagSuffix?: string };
  };
}

export const SkipReason = {
  OwnPatchedImage: "OwnPatchedImage",
  NothingFixable: "NothingFixable",
  NoOSPackages: "NoOSPackages",
  UnknownOS: "UnknownOS",
  UnsupportedOS: "UnsupportedOS",
  InvalidPlatform: "InvalidPlatform",
  Deleting: "Deleting",
} as const;
export type SkipReason = (typeof SkipReason)[keyof typeof SkipReason];

export const LeaveReason = {
  UpToDate: "UpToDate",
  NotOurs: "NotOurs",
  Skipped: "Skipped",
} as const;
export type LeaveReason = (typeof LeaveReason)[keyof typeof LeaveReason];

/** The spec of a report's PatchJob: always with an image. */
export type ReportPatchSpec = PatchJobSpec & { image: ImageSpec };

export type Decision =
  | { action: "create"; name: string; spec: ReportPatchSpec; before: VulnerabilityCounts["before"] }
  | {
      action: "update";
      name: string;
      spec: ReportPatchSpec;
      before: VulnerabilityCounts["before"];
      why: "DigestChanged" | "FindingsChanged" | "PolicyChanged";
    }
  | { action: "leave"; name: string; reason: LeaveReason; message: string }
  | { action: "skip"; reason: SkipReason; message: string }
  /** The report cannot become a patch (hostile, malformed or oversized content): record why. */
  | { action: "invalid"; name: string; reason: string; message: string };

export function specFromReport(
  report: Pick<ReportFacts, "metadata" | "imageMetadata">,
  conv: Conversion,
  settings: DecideSettings = {},
): ReportPatchSpec {
  const im = report.imageMetadata;
  const cves = new Map<string, string[]>();
  for (const f of conv.findings) cves.set(f.packageName, [...(cves.get(f.packageName) ?? []), f.cve]);
  return {
    image: {
      registryURI: im.registryURI,
      repository: im.repository,
      ...(im.tag ? { tag: im.tag } : {}),
      digest: im.digest,
      ...(im.indexDigest ? { indexDigest: im.indexDigest } : {}),
      platform: im.platform,
    },
    source: Source.Report,
    reportRef: {
      namespace: report.metadata.namespace ?? "",
      name: report.metadata.name ?? "",
      ...(report.metadata.uid ? { uid: report.metadata.uid } : {}),
      ...(report.metadata.resourceVersion ? { resourceVersion: report.metadata.resourceVersion } : {}),
    },
    os: { type: conv.os.type, version: conv.os.version },
    findingsHash: conv.findingsHash,
    updates: conv.updates.map((u) => ({
      name: u.name,
      installedVersion: u.installedVersion,
      fixedVersion: u.fixedVersion,
      vulnerabilityIDs: [...new Set(cves.get(u.name) ?? [u.vulnerabilityID])].sort(),
    })),
    target: settings.policy?.target ?? { tagSuffix: settings.tagSuffix ?? DEFAULT_TAG_SUFFIX },
    options: { ignoreErrors: settings.ignoreErrors ?? false, timeout: settings.timeout ?? DEFAULT_TIMEOUT },
    ...(settings.policy
      ? { policyRef: { name: settings.policy.name, namespace: settings.policy.namespace } }
      : {}),
    ...(settings.policy?.dryRun ? { dryRun: true } : {}),
  };
}

export function decide(
  report: VulnerabilityReport,
  existing: PatchJob | undefined,
  settings: DecideSettings = {},
): Decision {
  return decideFacts(reportFacts(report), existing, settings);
}

export function decideFacts(
  report: ReportFacts,
  existing: PatchJob | undefined,
  settings: DecideSettings = {},
): Decision {
  const name = patchJobNameForReport(report.metadata.name ?? "");
  const suffix = settings.tagSuffix ?? DEFAULT_TAG_SUFFIX;
  if (report.metadata.deletionTimestamp)
    return { action: "skip", reason: SkipReason.Deleting, message: "the report is being deleted" };
  if (isPatchedTag(report.imageMetadata.tag, suffix)) {
    return {
      action: "skip",
      reason: SkipReason.OwnPatchedImage,
      message: `tag ${report.imageMetadata.tag} is a patched image (suffix ${suffix})`,
    };
  }
  if (existing && existing.spec.source !== Source.Report) {
    return {
      action: "leave",
      name,
      reason: LeaveReason.NotOurs,
      message: `PatchJob ${name} was created by source ${existing.spec.source}`,
    };
  }
  const conv = report.conversion;
  if (!conv.ok) {
    const malformed = conv.reason === "MalformedFindings";
    if (existing?.spec.image || (existing && !malformed))
      return { action: "leave", name, reason: LeaveReason.Skipped, message: conv.message };
    if (conv.reason === "MalformedFindings")
      return { action: "invalid", name, reason: "InvalidReport", message: conv.message };
    return { action: "skip", reason: conv.reason, message: conv.message };
  }
  if (conv.value.updates.length === 0) {
    const message = `nothing fixable: ${conv.value.counts.total} vulnerabilities, none with a fixed OS package newer than installed`;
    if (existing) return { action: "leave", name, reason: LeaveReason.Skipped, message };
    return { action: "skip", reason: SkipReason.NothingFixable, message };
  }
  const before = { total: conv.value.counts.total, fixable: conv.value.counts.fixable };
  const spec = specFromReport(report, conv.value, settings);
  // Everything in the spec came from the report: check it against the CRD's own rules,
  // so hostile or oversized content is recorded as Invalid, not retried forever.
  const problems = patchJobSpecProblems(spec);
  if (problems.length > 0)
    return {
      action: "invalid",
      name,
      reason: "InvalidReport",
      message: `the report cannot become a patch: ${problems.join("; ")}`,
    };
  if (!existing) return { action: "create", name, spec, before };
  if (existing.spec.image?.digest !== spec.image.digest)
    return { action: "update", name, spec, before, why: "DigestChanged" };
  if (existing.spec.findingsHash !== spec.findingsHash)
    return { action: "update", name, spec, before, why: "FindingsChanged" };
  // Another policy, or the same switched between DryRun and patching. (Not the target:
  // a {{date}} template renders a new tag every day, and that alone is no reason to patch.)
  // A PatchJob from before policies existed (no policyRef) is not patched again just
  // because a patching policy now covers it.
  const policyMoved =
    !!existing.spec.policyRef &&
    ((existing.spec.policyRef.name ?? "") !== (spec.policyRef?.name ?? "") ||
      (existing.spec.policyRef.namespace ?? "") !== (spec.policyRef?.namespace ?? ""));
  if (policyMoved || !!existing.spec.dryRun !== !!spec.dryRun)
    return { action: "update", name, spec, before, why: "PolicyChanged" };
  return {
    action: "leave",
    name,
    reason: LeaveReason.UpToDate,
    message: "digest and fixable findings unchanged",
  };
}
