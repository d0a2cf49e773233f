// The decision for an index PatchJob: the platforms' PatchJobs (its members, found by
// their label) make one plan; the index PatchJob is created, moved to the plan's spec,
// or published. Pure.
import { type PatchJob, Source } from "../api/index.ts";
import { create, decidePublish, needsPublish, none, type Action, type Gate } from "./actions.ts";
import type { TenancyVerdict } from "./tenancy.ts";
import { INDEX_LABEL, indexChange, indexPlan, type GroupSettings } from "./grouping.ts";

/** @default 10_000 */
export const DEFAULT_INDEX_SETTLE_MS = 10_000;

export interface IndexSettings extends GroupSettings {
  /** Wait this long after an index's newest platform PatchJob before patching it. @default DEFAULT_INDEX_SETTLE_MS */
  indexSettleMs?: number;
}

export interface IndexInput {
  namespace: string;
  name: string;
  /** The PatchJobs labelled as members of this index. */
  members: PatchJob[];
  current?: PatchJob;
  /** The gate of the PatchJob's policy (maxInFlight, window), asked only when publishing. */
  gate?: () => Gate | undefined;
  /** May the PatchJob's namespace read its source and push to its target? Asked only when publishing. */
  tenancy?: (pj: PatchJob) => TenancyVerdict;
  /** False while the first list of reports is still arriving: the tenancy rules need them, so wait. */
  reportsSynced?: boolean;
  settings: IndexSettings;
  now: Date;
}

const WHY = {
  DigestChanged: "the index digest changed",
  FindingsChanged: "a platform's fixable findings changed",
  PlatformsChanged: "a platform's PatchJob or the target changed",
} as const;

export function decideIndex(i: IndexInput): Action {
  const plan = indexPlan(i.members, i.settings);
  if (!plan) return none("NoMembers", "no platform PatchJob can be patched");
  // sbomscanner writes the reports of an index's platforms one after another: let them
  // settle, so the index is patched once with every platform instead of once per report.
  const settle = i.settings.indexSettleMs ?? DEFAULT_INDEX_SETTLE_MS;
  const newest = Math.max(...i.members.map((m) => createdAt(m)));
  const wait = newest + settle - i.now.getTime();
  if (wait > 0)
    return {
      kind: "requeue",
      afterMs: Math.min(wait + 100, settle + 100),
      reason: "Settling",
      message: "waiting for the other platforms' reports",
    };
  const { current } = i;
  if (!current) return create(i.namespace, i.name, plan.spec, { [INDEX_LABEL]: "true" });
  if (current.spec.source !== Source.Report) return none("NotOurs", `source ${current.spec.source}`);
  const why = indexChange(current, plan.spec);
  if (why !== "none")
    return {
      kind: "updateSpec",
      spec: plan.spec,
      event: {
        type: "Normal",
        reason: why,
        message: `patch the index again (generation ${(current.metadata.generation ?? 0) + 1}): ${WHY[why]}`,
      },
    };
  if (needsPublish(current)) {
    if (i.reportsSynced === false)
      return { kind: "requeue", afterMs: 2_000, reason: "NotSynced", message: "reports still listing" };
    return decidePublish(current, {
      tenancy: i.tenancy?.(current),
      gate: i.gate,
      before: plan.before,
      now: i.now,
    });
  }
  // A member's counts arrived after the index was queued: keep the sum true.
  const before = current.status?.vulnerabilities?.before;
  if (before?.total !== plan.before.total || before?.fixable !== plan.before.fixable)
    return {
      kind: "status",
      status: {
        ...current.status,
        vulnerabilities: { ...current.status?.vulnerabilities, before: plan.before },
      },
    };
  return none(
    "UpToDate",
    plan.waiting.length
      ? `platforms of another index digest wait: ${plan.waiting.join(", ")}`
      : "index up to date",
  );
}

function createdAt(m: PatchJob): number {
  const t = m.metadata.creationTimestamp;
  return t ? new Date(t as string | Date).getTime() : 0;
}
