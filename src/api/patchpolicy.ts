// PatchPolicy (vulnpatcher.io/v1alpha1): TypeScript mirror of
// charts/vuln-patcher/crds/patchpolicies.vulnpatcher.io.yaml. What a policy means
// (matching, choosing, targets, windows, schedules) is in src/decide/policy.ts.
import type { ObjectMeta } from "./report.ts";
import type { Condition, RolloutSettings } from "./patchjob.ts";
import type { PackageType, PatchLevel } from "./library.ts";

export const POLICY_PLURAL = "patchpolicies";
export const POLICY_KIND = "PatchPolicy";

export const Mode = { Auto: "Auto", Scheduled: "Scheduled", DryRun: "DryRun", Disabled: "Disabled" } as const;
export type Mode = (typeof Mode)[keyof typeof Mode];

export const SEVERITIES = ["UNKNOWN", "LOW", "MEDIUM", "HIGH", "CRITICAL"] as const;
export type Severity = (typeof SEVERITIES)[number];

export interface LabelSelector {
  matchLabels?: Record<string, string>;
  matchExpressions?: Array<{
    key: string;
    operator: "In" | "NotIn" | "Exists" | "DoesNotExist";
    values?: string[];
  }>;
}

export interface PatchPolicySpec {
  allNamespaces?: boolean;
  selector?: {
    registry?: string;
    repository?: string;
    tag?: string;
    reportLabels?: LabelSelector;
    minSeverity?: Severity;
    fixableOnly?: boolean;
  };
  mode?: Mode;
  schedule?: { cron: string; timeZone?: string };
  target?: { tagSuffix?: string; tagTemplate?: string; repository?: string; registry?: string };
  limits?: { maxInFlight?: number; window?: { start: string; end: string; timeZone?: string } };
  /** dockerconfigjson Secret in the policy's namespace: its PatchJobs' registry credentials (same namespace only). */
  credentialsSecret?: string;
  /** What its PatchJobs patch: OS packages, libraries (Python, Node.js), or both. @default ["os"] */
  packageTypes?: PackageType[];
  /** The highest version jump of a library update. @default "patch" */
  libraryPatchLevel?: PatchLevel;
  /** End an image whose OS release is past its end of life (src/api/eol.ts) at once, EndOfLife, without a patch attempt. */
  skipEndOfLife?: boolean;
  /** After a patch: ask sbomscanner to scan the patched image now (one ScanJob per patch), not on its schedule. */
  verification?: { requestScan?: boolean };
  /** The workloads running the source image: Off, DryRun (the plan recorded), Auto (rolled out by digest). */
  rollout?: RolloutSettings;
}

export interface PatchPolicyStatus {
  observedGeneration?: number;
  matchedReports?: number;
  patchJobsCreated?: number;
  lastScheduleTime?: string;
  nextScheduleTime?: string;
  conditions?: Condition[];
}

export interface PatchPolicy {
  apiVersion: "vulnpatcher.io/v1alpha1";
  kind: typeof POLICY_KIND;
  metadata: ObjectMeta & { name: string; namespace?: string };
  spec: PatchPolicySpec;
  status?: PatchPolicyStatus;
}

/** The chart's default policy: patch every fixable report in every namespace, as soon as it is seen. */
export function defaultPolicy(namespace: string): PatchPolicy {
  return {
    apiVersion: "vulnpatcher.io/v1alpha1",
    kind: POLICY_KIND,
    metadata: { name: "default", namespace, labels: { "app.kubernetes.io/part-of": "vuln-patcher" } },
    spec: { allNamespaces: true, mode: Mode.Auto, selector: { fixableOnly: true } },
  };
}

export function severityRank(s: string | undefined): number {
  const i = SEVERITIES.indexOf((s ?? "UNKNOWN").toUpperCase() as Severity);
  return i < 0 ? 0 : i;
}
