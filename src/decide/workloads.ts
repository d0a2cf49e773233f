// Which workloads run a PatchJob's source image, and which of them a rollout may touch
// (issue 21, first slice: the matching and the reasons to leave a workload alone; the
// rollout itself comes next). Pure: the controller gives the workloads it sees.
//
// A container runs the image when its reference names the same repository and the same
// digest, or (a reference by tag) the same tag, or when a Pod of the workload reports the
// source digest as its image ID (what the kubelet pulled: the truth for a mutable tag).
import { type ImageRef, parseImageRef } from "../api/index.ts";

export type WorkloadKind = "Deployment" | "StatefulSet" | "DaemonSet" | "CronJob" | "Pod";

export interface WorkloadFacts {
  kind: WorkloadKind;
  namespace: string;
  name: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  containers: Array<{ name: string; image: string; init?: boolean }>;
  /** Image IDs its Pods report per container (status.containerStatuses[].imageID). */
  imageIDs?: Record<string, string[]>;
  /** A Pod only: whether something owns it (then its owner is the workload). */
  owned?: boolean;
  /**
   * What sbomscanner's WorkloadScanReport of this workload says each container runs
   * (registry host when its Registry object is known, repository, tag): an image the
   * workload names another way (a mirror's host) is still found.
   */
  scanned?: Record<string, { registry?: string; repository: string; tag: string }>;
  /** How far the workload's own rollout is (read while one of ours runs; none for a CronJob or Pod). */
  progress?: WorkloadProgress;
  /** Its Pods that are not ready: the images they run and why (container state, probe, condition). */
  unready?: Array<{ pod: string; images: string[]; why: string }>;
}

/** A workload's rollout counters, the same for every kind (the reader maps each kind's status onto them). */
export interface WorkloadProgress {
  generation: number;
  observedGeneration: number;
  /** Replicas (or Pods a DaemonSet should run) wanted. */
  desired: number;
  /** Pods of the current template. */
  updated: number;
  ready: number;
  available: number;
  /** Pods of every template (old ones still there while > updated). */
  total: number;
  /** A Deployment past its progressDeadlineSeconds: the condition's message, and when it was set. */
  deadlineExceeded?: string;
  deadlineExceededAt?: string;
}

export const WorkloadState = {
  Planned: "Planned",
  Updating: "Updating",
  Updated: "Updated",
  RollingBack: "RollingBack",
  RolledBack: "RolledBack",
  Skipped: "Skipped",
} as const;
export type WorkloadState = (typeof WorkloadState)[keyof typeof WorkloadState];

export interface WorkloadMatch {
  kind: WorkloadKind;
  namespace: string;
  name: string;
  container: string;
  /** The image the container runs now. */
  from: string;
  state: WorkloadState;
  /** The image it gets (Auto) or would get (DryRun): the patched reference by digest. */
  to?: string;
  /** Skipped: why (opted out, managed by GitOps, a bare Pod, not selected); RolledBack: what failed. */
  reason?: string;
  message?: string;
  startedAt?: string;
  finishedAt?: string;
}

/** The annotation by which a workload says no to rollouts. */
export const ROLLOUT_OPT_OUT = "vulnpatcher.io/rollout";
/** On a workload we changed: which PatchJob, when, and each container's previous image (JSON, RolloutRecord). */
export const ROLLOUT_RECORD = "vulnpatcher.io/rollout-record";
/** On a workload we put back: what failed (JSON, RollbackRecord). Later rollouts of the same image leave it alone. */
export const ROLLED_BACK = "vulnpatcher.io/rolled-back";

export interface RolloutRecord {
  patchJob: string;
  at: string;
  containers: Record<string, { from: string; to: string }>;
}

export interface RollbackRecord {
  patchJob: string;
  at: string;
  /** The image put back, and the one that failed. */
  from: string;
  to: string;
  reason: string;
  message: string;
}

/** A JSON annotation of ours, or undefined when absent or not ours (a hand-written value is ignored). */
export function readRecord<T extends { patchJob: string; at: string }>(
  annotations: Record<string, string> | undefined,
  key: string,
): T | undefined {
  const raw = annotations?.[key];
  if (!raw) return undefined;
  try {
    const v = JSON.parse(raw) as T;
    return typeof v?.patchJob === "string" && typeof v.at === "string" ? v : undefined;
  } catch {
    return undefined;
  }
}

export interface RolloutSelection {
  /** Kinds to roll out. @default every kind but Pod */
  kinds?: WorkloadKind[];
  /** Every label must match. @default all */
  matchLabels?: Record<string, string>;
}

/** GitOps controllers own what they deploy: changing it in place fights them. */
export function gitOpsOwner(w: Pick<WorkloadFacts, "labels" | "annotations">): string | undefined {
  const l = w.labels ?? {};
  const a = w.annotations ?? {};
  if (a["argocd.argoproj.io/tracking-id"] || l["argocd.argoproj.io/instance"]) return "Argo CD";
  if (l["kustomize.toolkit.fluxcd.io/name"] || l["helm.toolkit.fluxcd.io/name"]) return "Flux";
  return undefined;
}

function runsImage(container: { image: string }, imageIDs: string[], source: ImageRef): boolean {
  let ref: ImageRef;
  try {
    ref = parseImageRef(container.image);
  } catch {
    return false;
  }
  if (ref.registry !== source.registry || ref.repository !== source.repository) return false;
  if (source.digest && imageIDs.some((id) => id.endsWith(`@${source.digest}`) || id === source.digest))
    return true;
  if (ref.digest) return ref.digest === source.digest;
  return !!ref.tag && ref.tag === source.tag;
}

/** sbomscanner mapped this container to the source's repository and tag (and registry, when known). */
function scannedAs(
  s: { registry?: string; repository: string; tag: string } | undefined,
  source: ImageRef,
): boolean {
  if (!s || !source.tag) return false;
  return (
    s.repository === source.repository &&
    s.tag === source.tag &&
    (!s.registry || s.registry === source.registry)
  );
}

/**
 * The containers of `namespace`'s workloads that run `source`, each Planned or Skipped with
 * why. Workloads of other namespaces are never looked at: a PatchJob acts in its own.
 */
export function matchWorkloads(
  source: ImageRef,
  namespace: string,
  workloads: WorkloadFacts[],
  selection: RolloutSelection = {},
): WorkloadMatch[] {
  const kinds = selection.kinds ?? ["Deployment", "StatefulSet", "DaemonSet", "CronJob"];
  const out: WorkloadMatch[] = [];
  for (const w of workloads) {
    if (w.namespace !== namespace || (w.kind === "Pod" && w.owned)) continue;
    for (const c of w.containers) {
      if (!runsImage(c, w.imageIDs?.[c.name] ?? [], source) && !scannedAs(w.scanned?.[c.name], source))
        continue;
      const base = { kind: w.kind, namespace: w.namespace, name: w.name, container: c.name, from: c.image };
      const skip = skipReason(w, kinds, selection) ?? rolledBackBefore(w, c.image);
      out.push(
        skip ? { ...base, state: WorkloadState.Skipped, ...skip } : { ...base, state: WorkloadState.Planned },
      );
    }
  }
  return out.sort((a, b) =>
    `${a.kind}/${a.name}/${a.container}`.localeCompare(`${b.kind}/${b.name}/${b.container}`),
  );
}

/** A rollout of this image failed here before: a person decides when to try again. */
function rolledBackBefore(w: WorkloadFacts, image: string): { reason: string; message: string } | undefined {
  const rb = readRecord<RollbackRecord>(w.annotations, ROLLED_BACK);
  if (!rb || rb.from !== image) return undefined;
  return {
    reason: "RolledBackBefore",
    message: `rolled back at ${rb.at} (${rb.reason}); remove the annotation ${ROLLED_BACK} to let a rollout try again`,
  };
}

function skipReason(
  w: WorkloadFacts,
  kinds: WorkloadKind[],
  selection: RolloutSelection,
): { reason: string; message: string } | undefined {
  if (w.kind === "Pod")
    return {
      reason: "BarePod",
      message: "a Pod without an owner: reported, never changed (nothing would recreate it)",
    };
  if (w.annotations?.[ROLLOUT_OPT_OUT] === "false")
    return { reason: "OptedOut", message: `the workload says ${ROLLOUT_OPT_OUT}: "false"` };
  const gitops = gitOpsOwner(w);
  if (gitops)
    return {
      reason: "GitOpsManaged",
      message: `managed by ${gitops}: a change in place would be reverted; put the patched image@digest into Git instead`,
    };
  if (!kinds.includes(w.kind))
    return { reason: "KindNotSelected", message: `the policy rolls out ${kinds.join(", ")}` };
  for (const [k, v] of Object.entries(selection.matchLabels ?? {}))
    if (w.labels?.[k] !== v) return { reason: "NotSelected", message: `label ${k}=${v} does not match` };
  return undefined;
}

/** One write to one workload's pod template: each container from `expect` to `image`, and annotations. */
export interface WorkloadWrite {
  kind: Exclude<WorkloadKind, "Pod">;
  namespace: string;
  name: string;
  containers: Array<{ name: string; init?: boolean; expect: string; image: string }>;
  /** Set (string) or remove (null). */
  annotations: Record<string, string | null>;
  /** For the workload's own Events (an EventSpec). */
  event: { type: "Normal" | "Warning"; reason: string; message: string };
}
