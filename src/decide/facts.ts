// What the controller keeps of each report: the facts a decision needs (identity,
// image, converted findings, severities). A report is ~150 KB; this is a few hundred
// bytes, and no decision ever needs the report again.
import {
  type ConversionResult,
  libraryFindings,
  type LibraryFact,
  convertReport,
  type ImageMetadata,
  type ObjectMeta,
  parseReport,
  SEVERITIES,
  type Severity,
  severityRank,
  type VulnerabilityReport,
} from "../api/index.ts";

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
  /** Findings in language packages and binaries; a policy decides which are patched (src/api/library.ts). */
  libraries: LibraryFact[];
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
    libraries: libraryFindings(report),
  };
}

/** A report as the caches keep it: its facts when it parsed, why not when it did not. */
export interface ReportSummary {
  uid?: string;
  resourceVersion?: string;
  deleting: boolean;
  /** Set when the report parsed. */
  facts?: ReportFacts;
  /** Set when it did not: why. */
  invalid?: { reason: string; message: string };
}

/** A report object as it comes from the apiserver (anything: it is checked here). */
export interface RawReport {
  metadata?: { uid?: string; resourceVersion?: string; deletionTimestamp?: unknown; [k: string]: unknown };
  [k: string]: unknown;
}

export function summarizeReport(raw: RawReport): ReportSummary {
  const parsed = parseReport(raw);
  const base = {
    ...(raw.metadata?.uid ? { uid: raw.metadata.uid } : {}),
    resourceVersion: raw.metadata?.resourceVersion,
    deleting: !!raw.metadata?.deletionTimestamp,
  };
  if (!parsed.ok) return { ...base, invalid: { reason: parsed.reason, message: parsed.message } };
  return { ...base, facts: reportFacts(parsed.value) };
}
