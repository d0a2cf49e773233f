// The decision for a PatchJob made by hand (kubectl, the API) or by a policy run: the
// controller only queues it. Pure.
import { type PatchJob, Source } from "../api/index.ts";
import { decidePublish, needsPublish, none, type Action, type Gate } from "./actions.ts";
import type { TenancyVerdict } from "./tenancy.ts";

export interface RequestInput {
  current?: PatchJob;
  /** The gate of the PatchJob's policy (maxInFlight, window), asked only when publishing. */
  gate?: () => Gate | undefined;
  /** May the PatchJob's namespace read its source and push to its target? Asked only when publishing. */
  tenancy?: (pj: PatchJob) => TenancyVerdict;
  /** False while the first list of reports is still arriving: the tenancy rules need them, so wait. */
  reportsSynced?: boolean;
  now: Date;
}

export function decideRequest(i: RequestInput): Action {
  const pj = i.current;
  if (!pj) return none("NotFound", "the PatchJob is gone");
  if (pj.spec.source === Source.Report) return none("NotOurs", "a report's PatchJob");
  if (!needsPublish(pj)) return none("UpToDate", "this generation was queued");
  if (i.reportsSynced === false)
    return { kind: "requeue", afterMs: 2_000, reason: "NotSynced", message: "reports still listing" };
  return decidePublish(pj, {
    tenancy: i.tenancy?.(pj),
    gate: i.gate,
    now: i.now,
    event: { type: "Normal", reason: "Queued", message: `${pj.spec.source} patch request queued` },
  });
}
