// Doing what a decision says: at most one write to the PatchJob (a publish comes before
// its status write), Events for humans, and the result for the work queue. Conflicts
// mean our copy was stale: the informer's event for the newer object brings the key
// back, so they end the pass quietly instead of failing it.
import { ConditionType, getCondition, markPublishFailed, type PatchJob, type ScanJob } from "../api/index.ts";
import type { Action, EventSpec, WorkloadWrite } from "../decide/index.ts";
import {
  done,
  type EventRecorder,
  ignoreConflict,
  type PatchJobClient,
  requeueAfter,
  type Result,
} from "../kube/index.ts";
import type { Publisher } from "../queue/index.ts";

import { errorMessage, type Logger } from "../util/index.ts";
import { workloadApiVersion, WorkloadWriteError } from "./workloads.ts";

export interface ApplyDeps {
  client: PatchJobClient;
  publisher: Publisher;
  events: EventRecorder;
  /** Wake another key (an index PatchJob's). */
  enqueue: (key: string) => void;
  /** A PatchJob of a policy was published (its maxInFlight counts it at once). */
  onPublished?: (pj: PatchJob, duplicate: boolean) => void;
  onPublishFailure?: () => void;
  /** Create sbomscanner's ScanJob; false when it already existed. */
  createScanJob?: (job: ScanJob) => Promise<boolean>;
  /** A rollout step's write to a workload (src/controller/workloads.ts); false: it changed under us. */
  writeWorkload?: (w: WorkloadWrite) => Promise<boolean>;
}

export class PublishError extends Error {
  override name = "PublishError";
  readonly code = "PUBLISH_FAILED";
}

function emit(events: EventRecorder, pj: PatchJob, e: EventSpec | undefined): void {
  if (!e) return;
  if (e.type === "Warning") events.warning(pj, e.reason, e.message);
  else events.normal(pj, e.reason, e.message);
}

/** Runs `write`; a conflict ends the pass (the newer object's event requeues the key). */
async function orConflict(write: () => Promise<unknown>): Promise<boolean> {
  return (await ignoreConflict(write().then(() => true))) ?? false;
}

export async function apply(
  deps: ApplyDeps,
  a: Action,
  current: PatchJob | undefined,
  log: Logger,
): Promise<Result> {
  switch (a.kind) {
    case "none":
      log.debug({ reason: a.reason }, a.message);
      return done;
    case "requeue":
      log.debug({ reason: a.reason, afterMs: a.afterMs }, a.message);
      return requeueAfter(a.afterMs);
    case "event":
      if (current) emit(deps.events, current, a.event);
      return done;
    case "create": {
      let created: PatchJob | undefined;
      // AlreadyExists: another controller (or our own earlier pass) made it; its event brings us back.
      await orConflict(async () => (created = await deps.client.create(a.object)));
      if (created) {
        log.info({ generation: created.metadata.generation }, "PatchJob created");
        emit(deps.events, created, a.event);
      }
      return done;
    }
    case "updateSpec": {
      let updated: PatchJob | undefined;
      await orConflict(async () => (updated = await deps.client.updateSpec(current!, a.spec)));
      if (updated) {
        log.info(
          { generation: updated.metadata.generation, reason: a.event?.reason },
          "PatchJob spec updated",
        );
        emit(deps.events, updated, a.event);
      }
      return done;
    }
    case "status": {
      if (await orConflict(() => deps.client.updateStatus(current!, a.status))) {
        log.info({ phase: a.status.phase, reason: a.status.reason }, a.status.message ?? "status recorded");
        emit(deps.events, current!, a.event);
      }
      for (const k of a.enqueue ?? []) deps.enqueue(k);
      return a.requeueAfterMs ? requeueAfter(a.requeueAfterMs) : done;
    }
    case "publish":
      return publish(deps, a, current!, log);
    case "scanJob":
      return requestScan(deps, a, current!, log);
    case "workload":
      return rolloutWrite(deps, a, current!, log);
  }
}

/**
 * A rollout step's write to a workload. Refused for want of rights (the chart's
 * rollout.namespaces leaves this namespace out): that workload is Skipped with why, so the
 * rollout goes on with the next instead of retrying for ever.
 */
async function rolloutWrite(
  deps: ApplyDeps,
  a: Extract<Action, { kind: "workload" }>,
  pj: PatchJob,
  log: Logger,
): Promise<Result> {
  const w = a.write;
  const ref = { kind: w.kind, namespace: w.namespace, name: w.name };
  if (!deps.writeWorkload) {
    log.warn(ref, "a rollout step is due but this controller cannot write workloads");
    return done;
  }
  try {
    const wrote = await deps.writeWorkload(w);
    log.info(
      { ...ref, wrote, reason: w.event.reason },
      wrote ? "workload changed" : "workload changed under us; reading it again",
    );
    if (wrote) {
      const involved = {
        apiVersion: workloadApiVersion(w.kind),
        kind: w.kind,
        metadata: { name: w.name, namespace: w.namespace },
      };
      if (w.event.type === "Warning") deps.events.warning(involved, w.event.reason, w.event.message);
      else deps.events.normal(involved, w.event.reason, w.event.message);
      emit(deps.events, pj, w.event);
    }
  } catch (err) {
    if (!(err instanceof WorkloadWriteError)) throw err;
    log.warn({ ...ref, err: err.message }, "rollout refused");
    const r = pj.status!.rollout!;
    const workloads = r.workloads.map((it) =>
      it.kind === w.kind && it.name === w.name && it.state === "Planned"
        ? { ...it, state: "Skipped", reason: "Forbidden", message: err.message.slice(0, 1024) }
        : it,
    );
    await orConflict(() => deps.client.updateStatus(pj, { ...pj.status!, rollout: { ...r, workloads } }));
    deps.events.warning(pj, "RolloutForbidden", err.message);
  }
  return requeueAfter(a.requeueAfterMs);
}

/** The ScanJob (AlreadyExists: an earlier pass made it, which is the point of its name), then the status. */
async function requestScan(
  deps: ApplyDeps,
  a: Extract<Action, { kind: "scanJob" }>,
  pj: PatchJob,
  log: Logger,
): Promise<Result> {
  if (!deps.createScanJob) {
    log.warn("a ScanJob was asked for but this controller cannot create one");
    return done;
  }
  const created = await deps.createScanJob(a.scanJob);
  log.info(
    { scanJob: a.scanJob.metadata.name, created },
    "sbomscanner asked for a scan of the patched image",
  );
  if (await orConflict(() => deps.client.updateStatus(pj, a.status))) emit(deps.events, pj, a.event);
  return done;
}

async function publish(
  deps: ApplyDeps,
  a: Extract<Action, { kind: "publish" }>,
  pj: PatchJob,
  log: Logger,
): Promise<Result> {
  try {
    const r = await deps.publisher.publish({
      namespace: pj.metadata.namespace!,
      name: pj.metadata.name,
      uid: pj.metadata.uid!,
      generation: a.generation,
    });
    deps.onPublished?.(pj, r.duplicate);
    log.info({ generation: a.generation, seq: r.seq, duplicate: r.duplicate }, "patch request published");
  } catch (err) {
    deps.onPublishFailure?.();
    const message = errorMessage(err);
    log.warn({ err: message }, "could not publish the patch request; will retry");
    const wasFailing = getCondition(pj, ConditionType.Queued)?.reason === "PublishFailed";
    await orConflict(() => deps.client.updateStatus(pj, markPublishFailed(pj, message)));
    if (!wasFailing) deps.events.warning(pj, "PublishFailed", `could not queue the patch: ${message}`);
    // The work queue's rate limiter spaces the retries.
    throw new PublishError(`publish failed: ${message}`, { cause: err });
  }
  // A worker may already have claimed it (Running): its status wins; the next pass sees it.
  if (await orConflict(() => deps.client.updateStatus(pj, a.queued))) emit(deps.events, pj, a.event);
  return done;
}
