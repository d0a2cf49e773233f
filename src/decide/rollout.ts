// What a patched image's rollout does next (issue 21). Pure: the reconciler gives the
// PatchJob, its rollout settings and the workloads of its namespace as it reads them now;
// the answer is at most one write, either to the PatchJob's status or to one workload.
//
// The steps of one workload, each seen by the next pass (level-triggered, so a crash
// between two steps loses nothing):
//   Planned --write the workload: image by digest + ROLLOUT_RECORD--> (seen) Updating
//   Updating --its own rollout finished--> Updated
//   Updating --deadline passed / not ready in time--> write back the previous image +
//     ROLLED_BACK --> (seen) RollingBack --healthy again (or timed out)--> RolledBack,
//     and the rest of this PatchJob's rollout stops (Skipped RolloutStopped).
import { isDeepStrictEqual } from "node:util";
import { type PatchJob, type PatchJobStatus, Phase, type Severity, severityRank } from "../api/index.ts";
import type { Action, EventSpec } from "./actions.ts";
import { sourceRef } from "./naming.ts";
import { msUntilWindow } from "./policy.ts";
import {
  matchWorkloads,
  readRecord,
  type RollbackRecord,
  ROLLED_BACK,
  ROLLOUT_RECORD,
  type RolloutRecord,
  type WorkloadFacts,
  type WorkloadKind,
  type WorkloadMatch,
  WorkloadState,
  type WorkloadWrite,
} from "./workloads.ts";

export interface RolloutSpec {
  mode?: "Off" | "DryRun" | "Auto";
  kinds?: WorkloadKind[];
  matchLabels?: Record<string, string>;
  /** Roll out only a patch that fixed a finding at least this severe. */
  minSeverity?: Severity;
  /** Start workloads only inside this daily window (those already started finish). */
  window?: { start: string; end: string; timeZone?: string };
  /** Workloads changed at once. @default 1 */
  maxConcurrent?: number;
  /** How long a workload (or its rollback) may take to be ready. @default 600 */
  timeoutSeconds?: number;
}

export const DEFAULT_ROLLOUT_TIMEOUT_S = 600;
export const DEFAULT_ROLLOUT_CONCURRENCY = 1;
/** How often a workload's progress is read while it rolls out (nothing watches workloads). */
export const ROLLOUT_POLL_MS = 2_000;
/** After a write to a workload: look again soon (no informer event will come for it). */
export const AFTER_WORKLOAD_WRITE_MS = 300;

export type Rollout = NonNullable<PatchJobStatus["rollout"]>;
type Item = Rollout["workloads"][number];

export interface RolloutInput {
  pj: PatchJob | undefined;
  rollout: RolloutSpec | undefined;
  /** undefined: not readable (no rights) or not read. */
  workloads: WorkloadFacts[] | undefined;
  /** The highest severity among the findings the patch fixed, when known. */
  fixedSeverity?: Severity | undefined;
  now: Date;
}

/** The image a workload gets: the patched reference, pinned by digest. */
export function rolloutImage(pj: PatchJob): string | undefined {
  const p = pj.status?.patchedImage;
  return p?.reference && p.digest ? `${p.reference}@${p.digest}` : undefined;
}

/**
 * A patched image to roll out: the PatchJob Succeeded, or found its image patched already
 * (NoOp AlreadyPatched names that image; the workloads may still run the vulnerable one).
 * A platform of a multi-arch PatchJob never: its index PatchJob rolls out the index.
 */
function hasPatchedImage(pj: PatchJob): boolean {
  const s = pj.status;
  if (!s || s.group || !s.patchedImage?.digest) return false;
  return s.phase === Phase.Succeeded || (s.phase === Phase.NoOp && s.reason === "AlreadyPatched");
}

/** Whether this PatchJob's rollout has work left (the reconciler reads workloads only then). */
export function rolloutPending(pj: PatchJob | undefined, rollout: RolloutSpec | undefined): boolean {
  const mode = rollout?.mode ?? "Off";
  if (!pj || mode === "Off" || !hasPatchedImage(pj)) return false;
  const r = pj.status!.rollout;
  if (r?.observedGeneration !== (pj.metadata.generation ?? 1) || r.mode !== mode) return true;
  return mode === "Auto" && r.workloads.some((w) => ACTIVE.has(w.state) || w.state === WorkloadState.Planned);
}

/**
 * Whether a pass needs the workloads' progress and Pods (this generation's Auto plan has
 * workloads left to change); false when a plan is to be made.
 */
export function rolloutInFlight(pj: PatchJob | undefined): boolean {
  const r = pj?.status?.rollout;
  return (
    r?.mode === "Auto" &&
    r.observedGeneration === (pj!.metadata.generation ?? 1) &&
    r.workloads.some((w) => ACTIVE.has(w.state) || w.state === WorkloadState.Planned)
  );
}

const ACTIVE = new Set<string>([WorkloadState.Updating, WorkloadState.RollingBack]);

export function decideRollout(i: RolloutInput): Action | undefined {
  const { pj, rollout } = i;
  const mode = rollout?.mode ?? "Off";
  if (!pj?.spec.image || !i.workloads || mode === "Off") return undefined;
  if (!hasPatchedImage(pj)) return undefined;
  const generation = pj.metadata.generation ?? 1;
  const to = rolloutImage(pj);
  if (pj.status!.observedGeneration !== generation || !to) return undefined;
  const prev = pj.status!.rollout;
  if (!prev || prev.observedGeneration !== generation || prev.mode !== mode)
    return plan(pj, rollout!, i.workloads, i.fixedSeverity, to, generation);
  if (mode !== "Auto") return undefined;
  return step(pj, rollout!, prev, i.workloads, i.now);
}

/** The workloads that run the source image, as this generation's plan. */
function plan(
  pj: PatchJob,
  rollout: RolloutSpec,
  workloads: WorkloadFacts[],
  fixedSeverity: Severity | undefined,
  to: string,
  generation: number,
): Action | undefined {
  const mode = rollout.mode!;
  const matches = matchWorkloads(sourceRef({ image: pj.spec.image! }), pj.metadata.namespace!, workloads, {
    ...(rollout.kinds ? { kinds: rollout.kinds } : {}),
    ...(rollout.matchLabels ? { matchLabels: rollout.matchLabels } : {}),
  });
  const low = severityBelow(rollout.minSeverity, fixedSeverity);
  const items = matches.map((m): Item => {
    if (m.state === WorkloadState.Skipped) return clean(m);
    return low ? clean({ ...m, state: WorkloadState.Skipped, ...low }) : clean({ ...m, to });
  });
  const next: Rollout = { mode, observedGeneration: generation, workloads: items, updated: 0 };
  if (isDeepStrictEqual(pj.status!.rollout, next)) return undefined;
  const planned = items.filter((m) => m.state === WorkloadState.Planned).length;
  const verb = mode === "Auto" ? "will get" : "would get";
  const message = `rollout ${mode}: ${planned} workload containers ${verb} ${to}, ${items.length - planned} left alone`;
  return {
    kind: "status",
    status: { ...pj.status!, rollout: next },
    event: { type: "Normal", reason: "RolloutPlanned", message },
  };
}

function severityBelow(
  min: Severity | undefined,
  fixed: Severity | undefined,
): { reason: string; message: string } | undefined {
  if (!min) return undefined;
  if (!fixed)
    return {
      reason: "SeverityUnknown",
      message: `the rollout wants a fix of ${min} or more; the patch's severities are not known`,
    };
  if (severityRank(fixed) < severityRank(min))
    return {
      reason: "BelowMinSeverity",
      message: `the patch fixes at most ${fixed}; the rollout wants ${min} or more`,
    };
  return undefined;
}

const keyOf = (w: { kind: string; name: string }) => `${w.kind}/${w.name}`;

/** Items grouped by workload, in plan order: a workload's containers change together. */
function groups(items: Item[]): Map<string, Item[]> {
  const out = new Map<string, Item[]>();
  for (const it of items) out.set(keyOf(it), [...(out.get(keyOf(it)) ?? []), it]);
  return out;
}

/** The next step of an Auto rollout whose plan is recorded. */
function step(
  pj: PatchJob,
  rollout: RolloutSpec,
  prev: Rollout,
  workloads: WorkloadFacts[],
  now: Date,
): Action | undefined {
  const facts = new Map(
    workloads.filter((w) => w.namespace === pj.metadata.namespace).map((w) => [keyOf(w), w]),
  );
  const uid = pj.metadata.uid ?? pj.metadata.name;
  const timeoutMs = (rollout.timeoutSeconds ?? DEFAULT_ROLLOUT_TIMEOUT_S) * 1000;
  const changes = new Map<string, Item[]>();
  const events: EventSpec[] = [];
  let write: WorkloadWrite | undefined;
  let waiting = false;
  for (const [k, group] of groups(prev.workloads)) {
    const t = transition(group, facts.get(k), uid, timeoutMs, now);
    if (t.items) changes.set(k, t.items);
    if (t.event) events.push(t.event);
    if (t.write && !write) write = t.write;
    waiting ||= !!t.waiting;
  }
  // In plan order, the changed groups in place.
  let items = [...groups(prev.workloads).entries()].flatMap(([k, g]) => changes.get(k) ?? g);
  if (items.some((it) => it.state === WorkloadState.RolledBack)) items = stopRest(items);
  if (changes.size > 0 || !isDeepStrictEqual(items, prev.workloads))
    return statusWrite(
      pj,
      prev,
      items,
      events,
      write ? AFTER_WORKLOAD_WRITE_MS : waiting ? ROLLOUT_POLL_MS : undefined,
    );
  if (write) return { kind: "workload", write, requeueAfterMs: AFTER_WORKLOAD_WRITE_MS };
  const start = startNext(pj, rollout, items, facts, uid, now);
  if (start) return start;
  if (waiting || items.some((it) => ACTIVE.has(it.state)))
    return {
      kind: "requeue",
      afterMs: ROLLOUT_POLL_MS,
      reason: "RolloutProgressing",
      message: "waiting for workloads to be ready",
    };
  return undefined;
}

function statusWrite(
  pj: PatchJob,
  prev: Rollout,
  items: Item[],
  events: EventSpec[],
  requeueAfterMs: number | undefined,
): Action {
  const updated = new Set(items.filter((w) => w.state === WorkloadState.Updated).map(keyOf)).size;
  const event = events.find((e) => e.type === "Warning") ?? events[0];
  return {
    kind: "status",
    status: { ...pj.status!, rollout: { ...prev, workloads: items, updated } },
    ...(event ? { event } : {}),
    // Another step may be due at once (the status write's own event brings the key back too).
    ...(requeueAfterMs ? { requeueAfterMs } : {}),
  };
}

/** After a rollback, the workloads not started yet are left as they are. */
function stopRest(items: Item[]): Item[] {
  const failed = items.find((it) => it.state === WorkloadState.RolledBack)!;
  return items.map((it) =>
    it.state === WorkloadState.Planned
      ? {
          ...it,
          state: WorkloadState.Skipped,
          reason: "RolloutStopped",
          message: `not started: ${keyOf(failed)} was rolled back`,
        }
      : it,
  );
}

interface Transition {
  items?: Item[];
  event?: EventSpec;
  write?: WorkloadWrite;
  waiting?: boolean;
}

/** One workload's next step, from its items and what the workload shows now. */
function transition(
  group: Item[],
  w: WorkloadFacts | undefined,
  uid: string,
  timeoutMs: number,
  now: Date,
): Transition {
  const state = group[0]!.state;
  if (state !== WorkloadState.Planned && !ACTIVE.has(state)) return {};
  const at = now.toISOString();
  if (!w) {
    if (state === WorkloadState.Planned) return {};
    return {
      items: mark(group, {
        state: WorkloadState.Skipped,
        reason: "Gone",
        message: "the workload was deleted during its rollout",
        finishedAt: at,
      }),
    };
  }
  const images = Object.fromEntries(w.containers.map((c) => [c.name, c.image]));
  const record = readRecord<RolloutRecord>(w.annotations, ROLLOUT_RECORD);
  const rolledBack = readRecord<RollbackRecord>(w.annotations, ROLLED_BACK);
  if (state === WorkloadState.Planned) {
    // Our write to the workload happened; the status did not say so yet.
    if (record?.patchJob === uid && group.every((it) => images[it.container] === it.to))
      return { items: mark(group, { state: WorkloadState.Updating, startedAt: record.at }) };
    return {};
  }
  if (state === WorkloadState.Updating) {
    if (rolledBack?.patchJob === uid && group.every((it) => images[it.container] === it.from))
      return {
        items: mark(group, {
          state: WorkloadState.RollingBack,
          reason: rolledBack.reason,
          message: rolledBack.message,
        }),
      };
    const h = health(
      w,
      group.map((it) => it.to!),
      group[0]!.startedAt,
      timeoutMs,
      now,
    );
    if (h.kind === "ready")
      return {
        items: mark(group, { state: WorkloadState.Updated, finishedAt: at }),
        event: { type: "Normal", reason: "RolloutUpdated", message: `${keyOf(w)} runs ${group[0]!.to}` },
      };
    if (h.kind === "failed") return { write: rollbackWrite(w, group, uid, h, at), waiting: true };
    return { waiting: true };
  }
  // RollingBack: done when the previous image is healthy again, or when that too takes too long.
  const h = health(
    w,
    group.map((it) => it.from),
    rolledBack?.at,
    timeoutMs,
    now,
  );
  if (h.kind === "waiting") return { waiting: true };
  const suffix = h.kind === "failed" ? ` (the previous image is back but not ready yet: ${h.message})` : "";
  return {
    items: mark(group, {
      state: WorkloadState.RolledBack,
      finishedAt: at,
      message: `${group[0]!.message ?? ""}${suffix}`.slice(0, 512),
    }),
    event: {
      type: "Warning",
      reason: "RolloutRolledBack",
      message: `${keyOf(w)} rolled back to ${group[0]!.from}: ${group[0]!.reason}: ${group[0]!.message ?? ""}`,
    },
  };
}

function mark(group: Item[], over: Partial<Item>): Item[] {
  return group.map((it) => clean({ ...it, ...over }));
}

type Health = { kind: "ready" } | { kind: "waiting" } | { kind: "failed"; reason: string; message: string };

/**
 * Whether the workload's own rollout to `images` is done: every wanted replica of the new
 * template ready and available and no old one left; failed when a Deployment reports its
 * progress deadline exceeded or `timeoutMs` has passed since `since`. A CronJob is done
 * once its template says so (its next Job runs it).
 */
export function health(
  w: WorkloadFacts,
  images: string[],
  since: string | undefined,
  timeoutMs: number,
  now: Date,
  o: { rollback?: boolean } = {},
): Health {
  if (w.kind === "CronJob") return { kind: "ready" };
  const p = w.progress;
  const why = () => {
    const pods = (w.unready ?? []).filter((u) => u.images.some((i) => images.includes(i)));
    return pods
      .map((u) => `${u.pod}: ${u.why}`)
      .join("; ")
      .slice(0, 400);
  };
  if (p && p.observedGeneration >= p.generation) {
    // A deadline reported before this change is the workload's old trouble, and after a
    // rollback the condition lags the counters: neither is this change failing.
    const at = p.deadlineExceededAt ? Date.parse(p.deadlineExceededAt) : Infinity;
    const fresh = !since || at >= Date.parse(since) - 1000;
    if (p.deadlineExceeded && fresh && !o.rollback)
      return { kind: "failed", reason: "ProgressDeadlineExceeded", message: why() || p.deadlineExceeded };
    if (p.updated >= p.desired && p.ready >= p.desired && p.available >= p.desired && p.total <= p.updated)
      return { kind: "ready" };
  }
  const started = since ? Date.parse(since) : NaN;
  if (Number.isFinite(started) && now.getTime() - started >= timeoutMs)
    return {
      kind: "failed",
      reason: "NotReadyInTime",
      message:
        why() ||
        `not ready after ${Math.round(timeoutMs / 1000)} s (${p?.ready ?? 0}/${p?.desired ?? "?"} ready)`,
    };
  return { kind: "waiting" };
}

function rollbackWrite(
  w: WorkloadFacts,
  group: Item[],
  uid: string,
  h: Extract<Health, { kind: "failed" }>,
  at: string,
): WorkloadWrite {
  const record: RollbackRecord = {
    patchJob: uid,
    at,
    from: group[0]!.from,
    to: group[0]!.to!,
    reason: h.reason,
    message: h.message,
  };
  return {
    kind: w.kind as WorkloadWrite["kind"],
    namespace: w.namespace,
    name: w.name,
    containers: group.map((it) => ({
      name: it.container,
      ...initOf(w, it.container),
      expect: it.to!,
      image: it.from,
    })),
    annotations: { [ROLLED_BACK]: JSON.stringify(record), [ROLLOUT_RECORD]: null },
    event: {
      type: "Warning",
      reason: "RollingBack",
      message: `vuln-patcher puts back ${group[0]!.from}: ${h.reason}: ${h.message}`,
    },
  };
}

function initOf(w: WorkloadFacts, container: string): { init?: true } {
  return w.containers.find((c) => c.name === container)?.init ? { init: true } : {};
}

/** The next Planned workload, when the limits allow one more: its write, or why it is skipped. */
function startNext(
  pj: PatchJob,
  rollout: RolloutSpec,
  items: Item[],
  facts: Map<string, WorkloadFacts>,
  uid: string,
  now: Date,
): Action | undefined {
  const active = new Set(items.filter((it) => ACTIVE.has(it.state)).map(keyOf)).size;
  const next = [...groups(items).values()].find((g) => g[0]!.state === WorkloadState.Planned);
  if (!next || active >= (rollout.maxConcurrent ?? DEFAULT_ROLLOUT_CONCURRENCY)) return undefined;
  const wait = rollout.window ? msUntilWindow(rollout.window, now) : 0;
  if (wait > 0)
    return {
      kind: "requeue",
      afterMs: wait,
      reason: "OutsideWindow",
      message: `the rollout window opens in ${Math.ceil(wait / 60_000)} min`,
    };
  const w = facts.get(keyOf(next[0]!));
  const images = Object.fromEntries((w?.containers ?? []).map((c) => [c.name, c.image]));
  const moved = next.find((it) => images[it.container] !== it.from);
  if (!w || moved) {
    const why = !w
      ? { reason: "Gone", message: "the workload was deleted before its turn" }
      : {
          reason: "ChangedMeanwhile",
          message: `container ${moved!.container} runs ${images[moved!.container] ?? "nothing"} now, not ${moved!.from}`,
        };
    const skipped = items.map((it) =>
      keyOf(it) === keyOf(next[0]!) ? clean({ ...it, state: WorkloadState.Skipped, ...why }) : it,
    );
    return statusWrite(pj, pj.status!.rollout!, skipped, [], AFTER_WORKLOAD_WRITE_MS);
  }
  const at = now.toISOString();
  const record: RolloutRecord = {
    patchJob: uid,
    at,
    containers: Object.fromEntries(next.map((it) => [it.container, { from: it.from, to: it.to! }])),
  };
  return {
    kind: "workload",
    write: {
      kind: w.kind as WorkloadWrite["kind"],
      namespace: w.namespace,
      name: w.name,
      containers: next.map((it) => ({
        name: it.container,
        ...initOf(w, it.container),
        expect: it.from,
        image: it.to!,
      })),
      annotations: { [ROLLOUT_RECORD]: JSON.stringify(record) },
      event: {
        type: "Normal",
        reason: "RolloutStarted",
        message: `vuln-patcher sets ${next.map((it) => it.container).join(", ")} to ${next[0]!.to} (PatchJob ${pj.metadata.name})`,
      },
    },
    requeueAfterMs: AFTER_WORKLOAD_WRITE_MS,
  };
}

/** Without undefined members, as the apiserver returns it. */
function clean<T extends object>(m: T): T {
  return Object.fromEntries(Object.entries(m).filter(([, v]) => v !== undefined)) as T;
}

export type { WorkloadMatch };
