// PatchJob (vulnpatcher.io/v1alpha1): TypeScript mirror of
// charts/vuln-patcher/crds/patchjobs.vulnpatcher.io.yaml, and the named status
// transitions. Each transition sets phase, reason, message and observedGeneration in
// one place, so no caller forgets one of them.
import type { ObjectMeta } from "./report.ts";

export const GROUP = "vulnpatcher.io";
export const VERSION = "v1alpha1";
export const PLURAL = "patchjobs";
export const KIND = "PatchJob";
export const API_VERSION = `${GROUP}/${VERSION}`;
export const DEFAULT_TAG_SUFFIX = "-patched";
/** @default 10m, as in the CRD. */
export const DEFAULT_TIMEOUT = "10m";
export const MAX_FIXED_CVES = 200;

export const Phase = {
  Pending: "Pending",
  Queued: "Queued",
  Planned: "Planned",
  Running: "Running",
  Succeeded: "Succeeded",
  NoOp: "NoOp",
  Failed: "Failed",
  Invalid: "Invalid",
} as const;
export type Phase = (typeof Phase)[keyof typeof Phase];

/** Phases after which nothing more happens for this generation. */
export const TERMINAL_PHASES: ReadonlySet<Phase> = new Set([
  Phase.Succeeded,
  Phase.NoOp,
  Phase.Failed,
  Phase.Invalid,
  Phase.Planned,
]);

export const Source = { Report: "report", Policy: "policy", Manual: "manual" } as const;
export type Source = (typeof Source)[keyof typeof Source];

/**
 * Status reasons. Error classes carry one of these, so the failure handler maps an
 * error to a status without parsing text.
 */
export const Reason = {
  Created: "Created",
  Published: "Published",
  PublishFailed: "PublishFailed",
  Claimed: "Claimed",
  Patched: "Patched",
  AlreadyPatched: "AlreadyPatched",
  NothingToUpdate: "NothingToUpdate",
  Planned: "Planned",
  UnsupportedOS: "UnsupportedOS",
  InvalidSpec: "InvalidSpec",
  InvalidReport: "InvalidReport",
  BuildKitUnreachable: "BuildKitUnreachable",
  RegistryUnreachable: "RegistryUnreachable",
  RegistryDenied: "RegistryDenied",
  ImageNotFound: "ImageNotFound",
  PackageError: "PackageError",
  Timeout: "Timeout",
  CopaFailed: "CopaFailed",
  VerificationFailed: "VerificationFailed",
  MaxAttemptsExceeded: "MaxAttemptsExceeded",
  ReportDeleted: "ReportDeleted",
  ReportPresent: "ReportPresent",
  /** Cancelled through the API before a worker started it. */
  Cancelled: "Cancelled",
  /** Waiting: the policy's maxInFlight is reached. */
  PolicyLimit: "PolicyLimit",
  /** Waiting: outside the policy's time window. */
  OutsideWindow: "OutsideWindow",
  /** A platform's PatchJob handed to its index's PatchJob. */
  Grouped: "Grouped",
  /** A platform's patch was fine but the index was not published (another platform failed). */
  IndexNotPublished: "IndexNotPublished",
  Internal: "Internal",
} as const;
export type Reason = (typeof Reason)[keyof typeof Reason];

export const ConditionType = {
  Queued: "Queued",
  Succeeded: "Succeeded",
  SourceAvailable: "SourceAvailable",
} as const;
export type ConditionType = (typeof ConditionType)[keyof typeof ConditionType];

export interface Condition {
  type: string;
  status: "True" | "False" | "Unknown";
  reason: string;
  message: string;
  lastTransitionTime: string;
  observedGeneration?: number;
}

export interface ImageSpec {
  registryURI: string;
  repository: string;
  tag?: string;
  digest?: string;
  indexDigest?: string;
  platform: string;
}

export interface ReportRef {
  namespace: string;
  name: string;
  uid?: string;
  resourceVersion?: string;
}

export interface PackageUpdate {
  name: string;
  installedVersion: string;
  fixedVersion: string;
  vulnerabilityIDs?: string[];
}

/** One platform of a multi-arch index PatchJob, planned from that platform's report. */
export interface PlatformPatch {
  platform: string;
  /** The platform's manifest digest in the source index. */
  digest: string;
  /** The report's PatchJob, which gets this platform's result. */
  patchJob?: string;
  /** That PatchJob's generation the plan came from. */
  generation?: number;
  findingsHash?: string;
  updates?: PackageUpdate[];
}

export const PlatformResult = {
  Patched: "Patched",
  AlreadyPatched: "AlreadyPatched",
  /** Its report's updates are already in the image: the original manifest stays. */
  UpToDate: "UpToDate",
  /** No report (or nothing fixable): the original manifest stays. */
  Unchanged: "Unchanged",
  Failed: "Failed",
  /** Patched, but the index was not published because another platform failed. */
  NotPublished: "NotPublished",
} as const;
export type PlatformResult = (typeof PlatformResult)[keyof typeof PlatformResult];

export interface PlatformStatus {
  platform: string;
  result: PlatformResult;
  sourceDigest?: string;
  /** The platform's manifest in the published index. */
  digest?: string;
  message?: string;
}

export interface PatchJobSpec {
  /** Absent only on the record of a report that could not be turned into a patch (phase Invalid). */
  image?: ImageSpec;
  source: Source;
  reportRef?: ReportRef;
  policyRef?: { name: string; namespace?: string };
  os?: { type: string; version: string };
  findingsHash?: string;
  updates?: PackageUpdate[];
  /** Multi-arch (image.platform "all"): the platforms to patch together. */
  platforms?: PlatformPatch[];
  target?: { reference?: string; tagSuffix?: string };
  options?: { ignoreErrors?: boolean; timeout?: string; publishPartial?: boolean };
  dryRun?: boolean;
}

export interface VulnerabilityCounts {
  before?: { total?: number; fixable?: number };
  after?: { total?: number; fixable?: number; fixed?: number };
}

export interface PatchJobStatus {
  phase?: Phase;
  reason?: string;
  message?: string;
  observedGeneration?: number;
  attempts?: number;
  startTime?: string;
  completionTime?: string;
  queuedTime?: string;
  worker?: string;
  patchedImage?: { reference?: string; digest?: string; shortDigest?: string; platformDigest?: string };
  /** A platform's PatchJob: the multi-arch PatchJob that patches it with the rest of its index. */
  group?: string;
  /** A multi-arch PatchJob: the result per platform. */
  platforms?: PlatformStatus[];
  vulnerabilities?: VulnerabilityCounts;
  fixedCVEs?: string[];
  fixedCVEsTruncated?: boolean;
  /** A dry run (phase Planned): the updates that would be made, with the CVEs each fixes. */
  plannedUpdates?: PackageUpdate[];
  vexConfigMap?: string;
  conditions?: Condition[];
}

export interface PatchJob {
  apiVersion: typeof API_VERSION;
  kind: typeof KIND;
  metadata: ObjectMeta & { name: string; namespace?: string };
  spec: PatchJobSpec;
  status?: PatchJobStatus;
}

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

export function markPending(pj: PatchJob, message = "waiting to be queued"): PatchJobStatus {
  return {
    ...base(pj, Phase.Pending, Reason.Created, message),
    startTime: undefined,
    completionTime: undefined,
  };
}

export function markQueued(pj: PatchJob, now = new Date()): PatchJobStatus {
  const gen = pj.metadata.generation ?? 0;
  return {
    ...base(pj, Phase.Queued, Reason.Published, "published to the patch queue"),
    queuedTime: nowRFC3339(now),
    startTime: undefined,
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
    completionTime: undefined,
    worker,
  };
}

export interface Outcome {
  patchedImage?: { reference: string; digest: string };
  vulnerabilities?: VulnerabilityCounts;
  fixedCVEs?: string[];
  vexConfigMap?: string;
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
    ...(outcome.vexConfigMap ? { vexConfigMap: outcome.vexConfigMap } : {}),
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
