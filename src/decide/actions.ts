// What a reconcile does, as data. A decision returns exactly one Action; the reconciler
// applies it with at most one write to the PatchJob (and, for `publish`, one message
// before it). A write that changes what the next decision sees (a create, a new spec)
// is followed by another pass, started by the informer's event: level-triggered, so
// every step can be retried and a crash between two steps loses nothing.
import {
  markDenied,
  markQueued,
  type PatchJob,
  type PatchJobSpec,
  type PatchJobStatus,
  Phase,
  type ScanJob,
  statusForGeneration,
  type VulnerabilityCounts,
} from "../api/index.ts";
import type { TenancyVerdict } from "./tenancy.ts";
import type { WorkloadWrite } from "./workloads.ts";

export interface EventSpec {
  type: "Normal" | "Warning";
  reason: string;
  message: string;
}

/** A new PatchJob: its metadata and spec (the status comes with the next pass). */
export interface NewPatchJob {
  metadata: { name: string; namespace: string; labels: Record<string, string> };
  spec: PatchJobSpec;
}

export type Action =
  /** Nothing to write. `reason` says why (logged at debug). */
  | { kind: "none"; reason: string; message: string }
  /** Nothing to write now; look again later. */
  | { kind: "requeue"; afterMs: number; reason: string; message: string }
  /** Only tell a human (the PatchJob stays as it is). */
  | { kind: "event"; event: EventSpec }
  | { kind: "create"; object: NewPatchJob; event?: EventSpec }
  | { kind: "updateSpec"; spec: PatchJobSpec; event?: EventSpec }
  | {
      kind: "status";
      status: PatchJobStatus;
      event?: EventSpec;
      /** Look again after this long (a gate that will open). */
      requeueAfterMs?: number;
      /** Other keys to wake (an index PatchJob, when a platform is handed to it). */
      enqueue?: string[];
    }
  /** Publish this generation to the patch queue, then record `queued`. */
  | { kind: "publish"; generation: number; queued: PatchJobStatus; event?: EventSpec }
  /** Ask sbomscanner to scan the patched image (create its ScanJob, once), then record that it was asked. */
  | { kind: "scanJob"; scanJob: ScanJob; status: PatchJobStatus; event?: EventSpec }
  /** Change one workload's pod template (a rollout step), then look again after `requeueAfterMs`. */
  | { kind: "workload"; write: WorkloadWrite; requeueAfterMs: number };

export const none = (reason: string, message: string): Action => ({ kind: "none", reason, message });

/** Labels on every PatchJob the controller makes. */
export const MANAGED_BY = { "app.kubernetes.io/managed-by": "vuln-patcher" } as const;
export const SOURCE_LABEL = "vulnpatcher.io/source";

/** Make a PatchJob of ours (source `report`), with these extra labels. */
export function create(
  namespace: string,
  name: string,
  spec: PatchJobSpec,
  labels: Record<string, string> = {},
): Action {
  return {
    kind: "create",
    object: {
      metadata: { name, namespace, labels: { ...MANAGED_BY, [SOURCE_LABEL]: spec.source, ...labels } },
      spec,
    },
  };
}

/** Why a PatchJob of a policy may not be published now, and when to look again. */
export interface Gate {
  reason: string;
  message: string;
  retryMs: number;
}

/**
 * True when this generation still needs a message: nothing recorded for it yet, recorded
 * as unpublished, or refused by the tenancy rules (asked again: a grant may have come).
 */
export function needsPublish(pj: PatchJob): boolean {
  const s = pj.status;
  const gen = pj.metadata.generation ?? 1;
  if (!s?.phase || (s.observedGeneration ?? 0) < gen) return true;
  return s.phase === Phase.Pending || s.phase === Phase.Denied;
}

/** The tenancy rules refused this PatchJob: record it (once) as Denied. */
export function decideDenied(
  pj: PatchJob,
  v: Extract<TenancyVerdict, { ok: false }>,
  before: VulnerabilityCounts["before"] | undefined,
  now: Date,
): Action {
  const generation = pj.metadata.generation ?? 1;
  const s = pj.status;
  if (s?.phase === Phase.Denied && s.observedGeneration === generation && s.message === v.message)
    return none(v.reason, "already recorded");
  return {
    kind: "status",
    status: markDenied({ ...pj, status: statusForGeneration(pj, before) }, v.reason, v.message, now),
    event: { type: "Warning", reason: v.reason, message: v.message },
  };
}

/**
 * Publish the PatchJob's generation; or, when the tenancy rules refuse it, record that;
 * or, while its policy's gate is closed (maxInFlight, the time window), say so once in
 * the status and look again when it may open.
 */
export function decidePublish(
  pj: PatchJob,
  o: {
    tenancy?: TenancyVerdict;
    /** Asked only when the tenancy rules allow it. */
    gate?: () => Gate | undefined;
    before?: NonNullable<VulnerabilityCounts["before"]>;
    event?: EventSpec;
    now: Date;
  },
): Action {
  if (o.tenancy && !o.tenancy.ok) return decideDenied(pj, o.tenancy, o.before, o.now);
  const generation = pj.metadata.generation ?? 1;
  const status = statusForGeneration(pj, o.before);
  const g = o.gate?.();
  if (g) {
    if (pj.status?.reason === g.reason && pj.status.observedGeneration === generation)
      return { kind: "requeue", afterMs: g.retryMs, reason: g.reason, message: g.message };
    return {
      kind: "status",
      status: {
        ...status,
        phase: Phase.Pending,
        reason: g.reason,
        message: g.message,
        observedGeneration: generation,
      },
      requeueAfterMs: g.retryMs,
    };
  }
  return {
    kind: "publish",
    generation,
    queued: markQueued({ ...pj, status }, o.now),
    ...(o.event ? { event: o.event } : {}),
  };
}
