// The named status transitions of a PatchJob. Each sets phase, reason, message and
// observedGeneration in one place, so no caller forgets one of them; each returns a new
// status and never writes anything.
import {
  ConditionType,
  MAX_FIXED_CVES,
  Phase,
  Reason,
  TERMINAL_PHASES,
  type Condition,
  type PatchJob,
  type PatchJobStatus,
  type VulnerabilityCounts,
} from "./patchjob.ts";

// ---- conditions (meta.SetStatusCondition semantics) ----

function nowRFC3339(now: Date): string {
  return new Date(Math.floor(now.getTime() / 1000) * 1000).toISOString().replace(".000Z", "Z");
}

/**
 * Set or replace a condition. lastTransitionTime moves only when the status changes
 * (or the condition is new); reason, message and observedGeneration always update.
 */
export function setCondition(
  conditions: Condition[] | undefined,
  c: Omit<Condition, "lastTransitionTime">,
  now = new Date(),
): Condition[] {
  const list = [...(conditions ?? [])];
  const i = list.findIndex((x) => x.type === c.type);
  const prev = i >= 0 ? list[i] : undefined;
  const next: Condition = {
    ...c,
    message: c.message.slice(0, 32768),
    lastTransitionTime: prev && prev.status === c.status ? prev.lastTransitionTime : nowRFC3339(now),
  };
  if (i >= 0) list[i] = next;
  else list.push(next);
  return list;
}

export function getCondition(pj: Pick<PatchJob, "status">, type: string): Condition | undefined {
  return pj.status?.conditions?.find((c) => c.type === type);
}

// ---- transitions: each returns a new status ----

function base(pj: PatchJob, phase: Phase, reason: Reason, message: string): PatchJobStatus {
  const gen = pj.metadata.generation ?? 0;
  return {
    ...pj.status,
    phase,
    reason,
    message: message.slice(0, 4096),
    observedGeneration: gen,
    // Attempts count per generation: the first status written for a new one starts again.
    attempts: pj.status?.observedGeneration === gen ? pj.status?.attempts : undefined,
  };
}

export function markQueued(pj: PatchJob, now = new Date()): PatchJobStatus {
  const gen = pj.metadata.generation ?? 0;
  return {
    ...base(pj, Phase.Queued, Reason.Published, "published to the patch queue"),
    queuedTime: nowRFC3339(now),
    startTime: undefined,
    heartbeatTime: undefined,
    completionTime: undefined,
    conditions: setCondition(
      pj.status?.conditions,
      {
        type: ConditionType.Queued,
        status: "True",
        reason: Reason.Published,
        message: "published to the patch queue",
        observedGeneration: gen,
      },
      now,
    ),
  };
}

export function markPublishFailed(pj: PatchJob, message: string, now = new Date()): PatchJobStatus {
  const gen = pj.metadata.generation ?? 0;
  return {
    ...base(pj, Phase.Pending, Reason.PublishFailed, `could not publish to the patch queue: ${message}`),
    conditions: setCondition(
      pj.status?.conditions,
      {
        type: ConditionType.Queued,
        status: "False",
        reason: Reason.PublishFailed,
        message,
        observedGeneration: gen,
      },
      now,
    ),
  };
}

export function markRunning(pj: PatchJob, worker: string, now = new Date()): PatchJobStatus {
  const attempt = (base(pj, Phase.Running, Reason.Claimed, "").attempts ?? 0) + 1;
  return {
    ...base(pj, Phase.Running, Reason.Claimed, `patching (attempt ${attempt})`),
    attempts: attempt,
    startTime: nowRFC3339(now),
    heartbeatTime: nowRFC3339(now),
    completionTime: undefined,
    worker,
  };
}

/** A Running PatchJob's sign of life (the worker writes it while it patches). */
export function markHeartbeat(pj: PatchJob, now = new Date()): PatchJobStatus {
  return { ...pj.status, heartbeatTime: nowRFC3339(now) };
}

export interface Outcome {
  patchedImage?: { reference: string; digest: string };
  vulnerabilities?: VulnerabilityCounts;
  fixedCVEs?: string[];
  signature?: { digest: string; attestations: string[] };
}

function finish(
  pj: PatchJob,
  phase: Phase,
  reason: Reason,
  message: string,
  succeeded: boolean,
  outcome: Outcome,
  now: Date,
): PatchJobStatus {
  const gen = pj.metadata.generation ?? 0;
  const cves = outcome.fixedCVEs ? [...new Set(outcome.fixedCVEs)].sort() : undefined;
  return {
    ...base(pj, phase, reason, message),
    completionTime: nowRFC3339(now),
    ...(outcome.patchedImage
      ? { patchedImage: { ...outcome.patchedImage, shortDigest: outcome.patchedImage.digest.slice(0, 19) } }
      : {}),
    ...(outcome.vulnerabilities ? { vulnerabilities: outcome.vulnerabilities } : {}),
    ...(cves
      ? { fixedCVEs: cves.slice(0, MAX_FIXED_CVES), fixedCVEsTruncated: cves.length > MAX_FIXED_CVES }
      : {}),
    ...(outcome.signature ? { signature: outcome.signature } : {}),
    conditions: setCondition(
      pj.status?.conditions,
      {
        type: ConditionType.Succeeded,
        status: succeeded ? "True" : "False",
        reason,
        message: message.slice(0, 32768),
        observedGeneration: gen,
      },
      now,
    ),
  };
}

export function markSucceeded(
  pj: PatchJob,
  outcome: Outcome & { patchedImage: { reference: string; digest: string } },
  reason: Reason = Reason.Patched,
  now = new Date(),
): PatchJobStatus {
  const fixed = outcome.vulnerabilities?.after?.fixed;
  const msg =
    `patched image ${outcome.patchedImage.reference}@${outcome.patchedImage.digest}` +
    (fixed !== undefined ? ` (${fixed} fixed)` : "");
  return finish(pj, Phase.Succeeded, reason, msg, true, outcome, now);
}

/** Nothing for this PatchJob to do: no update needed, or (AlreadyPatched) the target already holds the patch. */
export function markNoOp(
  pj: PatchJob,
  message: string,
  outcome: Outcome = {},
  now = new Date(),
  reason: Reason = Reason.NothingToUpdate,
): PatchJobStatus {
  return finish(pj, Phase.NoOp, reason, message, true, outcome, now);
}

export function markPlanned(
  pj: PatchJob,
  message: string,
  outcome: Outcome = {},
  now = new Date(),
): PatchJobStatus {
  return finish(pj, Phase.Planned, Reason.Planned, message, true, outcome, now);
}

export function markFailed(pj: PatchJob, reason: Reason, message: string, now = new Date()): PatchJobStatus {
  return finish(pj, Phase.Failed, reason, message, false, {}, now);
}

/** Refused by the tenancy rules before it was queued: nothing was read or pushed. */
export function markDenied(pj: PatchJob, reason: Reason, message: string, now = new Date()): PatchJobStatus {
  return finish(pj, Phase.Denied, reason, message, false, {}, now);
}

/** Ended before any worker started it: nothing was patched or pushed. */
export function markCancelled(
  pj: PatchJob,
  reason: Reason,
  message: string,
  now = new Date(),
): PatchJobStatus {
  return finish(pj, Phase.Cancelled, reason, message, false, {}, now);
}

/**
 * The status a generation starts from: a new generation drops the results of the last
 * one (image, platforms, CVEs, plan, VEX), keeping conditions and history fields;
 * `before` is the finding counts this generation starts with.
 */
export function statusForGeneration(
  pj: PatchJob,
  before?: NonNullable<VulnerabilityCounts["before"]>,
): PatchJobStatus {
  const s = pj.status ?? {};
  const current = s.observedGeneration === (pj.metadata.generation ?? 0);
  const {
    patchedImage: _i,
    platforms: _p,
    fixedCVEs: _f,
    fixedCVEsTruncated: _t,
    plannedUpdates: _u,
    signature: _v,
    ...kept
  } = s;
  const base = current ? s : kept;
  return before ? { ...base, vulnerabilities: { ...(current ? s.vulnerabilities : {}), before } } : base;
}

export function markInvalid(pj: PatchJob, reason: Reason, message: string, now = new Date()): PatchJobStatus {
  return finish(pj, Phase.Invalid, reason, message, false, {}, now);
}

export function markSourceGone(pj: PatchJob, now = new Date()): PatchJobStatus {
  return {
    ...pj.status,
    conditions: setCondition(
      pj.status?.conditions,
      {
        type: ConditionType.SourceAvailable,
        status: "False",
        reason: Reason.ReportDeleted,
        message: "the VulnerabilityReport this PatchJob came from was deleted; kept as history",
        observedGeneration: pj.metadata.generation ?? 0,
      },
      now,
    ),
  };
}

/** True when this generation has reached an end (nothing left to do for it). */
export function isFinished(pj: PatchJob): boolean {
  const s = pj.status;
  return !!s?.phase && TERMINAL_PHASES.has(s.phase) && s.observedGeneration === (pj.metadata.generation ?? 0);
}
