// Which workloads run a PatchJob's source image, and which of them a rollout may touch
// (issue 21, first slice: the matching and the reasons to leave a workload alone; the
// rollout itself comes next). Pure: the controller gives the workloads it sees.
//
// A container runs the image when its reference names the same repository and the same
// digest, or (a reference by tag) the same tag, or when a Pod of the workload reports the
// source digest as its image ID (what the kubelet pulled: the truth for a mutable tag).
import { isDeepStrictEqual } from "node:util";
import { type ImageRef, parseImageRef, type PatchJob, Phase } from "../api/index.ts";
import type { Action } from "./actions.ts";
import { sourceRef } from "./naming.ts";

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
}

export const WorkloadState = {
  Planned: "Planned",
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
  /** Skipped: why (opted out, managed by GitOps, a bare Pod, not selected). */
  reason?: string;
  message?: string;
}

/** The annotation by which a workload says no to rollouts. */
export const ROLLOUT_OPT_OUT = "vulnpatcher.io/rollout";

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
      if (!runsImage(c, w.imageIDs?.[c.name] ?? [], source)) continue;
      const base = { kind: w.kind, namespace: w.namespace, name: w.name, container: c.name, from: c.image };
      const skip = skipReason(w, kinds, selection);
      out.push(
        skip ? { ...base, state: WorkloadState.Skipped, ...skip } : { ...base, state: WorkloadState.Planned },
      );
    }
  }
  return out.sort((a, b) =>
    `${a.kind}/${a.name}/${a.container}`.localeCompare(`${b.kind}/${b.name}/${b.container}`),
  );
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

/**
 * A Succeeded PatchJob under a DryRun rollout: the plan for its generation, or undefined
 * when the status already has it (level-triggered). `workloads` undefined: not read (yet).
 */
export function decideRollout(
  pj: PatchJob | undefined,
  rollout: { mode?: string; kinds?: WorkloadKind[]; matchLabels?: Record<string, string> } | undefined,
  workloads: WorkloadFacts[] | undefined,
): Action | undefined {
  if (!pj?.spec.image || !workloads || (rollout?.mode ?? "Off") === "Off") return undefined;
  if (pj.status?.phase !== Phase.Succeeded) return undefined;
  const generation = pj.metadata.generation ?? 1;
  if (pj.status.observedGeneration !== generation) return undefined;
  const source = sourceRef({ image: pj.spec.image });
  const matches = matchWorkloads(source, pj.metadata.namespace!, workloads, {
    ...(rollout?.kinds ? { kinds: rollout.kinds } : {}),
    ...(rollout?.matchLabels ? { matchLabels: rollout.matchLabels } : {}),
  });
  const next = { mode: rollout!.mode!, observedGeneration: generation, workloads: matches.map(clean) };
  if (isDeepStrictEqual(pj.status.rollout, next)) return undefined;
  const planned = matches.filter((m) => m.state === WorkloadState.Planned).length;
  const message = `rollout ${next.mode}: ${planned} workload containers would get the patched image, ${matches.length - planned} left alone`;
  return {
    kind: "status",
    status: { ...pj.status, rollout: next },
    event: { type: "Normal", reason: "RolloutPlanned", message },
  };
}

/** Without undefined members, as the apiserver returns it. */
function clean(m: WorkloadMatch): WorkloadMatch {
  return Object.fromEntries(Object.entries(m).filter(([, v]) => v !== undefined)) as unknown as WorkloadMatch;
}
