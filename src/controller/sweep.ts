// Re-publish what is stuck: Pending PatchJobs go back through their reconciler; a Queued
// one whose message is no longer in the stream (and no worker picked it up) is
// published again, and so is a Running one whose worker stopped writing heartbeats and
// whose message is gone (while it is in the stream, JetStream redelivers it itself).
// Idempotent: the message id de-duplicates, and workers check the generation.
import { markDenied, markQueued, type PatchJob, Phase, Reason } from "../api/index.ts";
import type { TenancyVerdict } from "../decide/index.ts";
import {
  type Clock,
  ignoreConflict,
  type PatchJobClient,
  realClock,
  sleepOn,
  type Store,
} from "../kube/index.ts";
import type { Publisher } from "../queue/index.ts";

import { errorMessage, type Logger } from "../util/index.ts";

import { keyOf, kindOf, type Kind } from "./routing.ts";

/** @default 60_000 */
export const DEFAULT_SWEEP_INTERVAL_MS = 60_000;
/** A Queued PatchJob whose message is gone after this long is published again. @default 300_000 */
export const DEFAULT_STALE_QUEUED_MS = 300_000;
/** A Running PatchJob without a heartbeat for this long (10 missed beats) is taken back. @default 300_000 */
export const DEFAULT_STALE_RUNNING_MS = 300_000;

export interface SweepOptions {
  patchJobs: Store<PatchJob>;
  enqueue: (kind: Kind, key: string) => void;
  publisher: Publisher;
  client: PatchJobClient;
  intervalMs: number;
  staleMs: number;
  /** @default DEFAULT_STALE_RUNNING_MS */
  staleRunningMs?: number;
  /** Asked again before a re-publish: a grant may have been taken back since. */
  tenancy?: (pj: PatchJob) => TenancyVerdict;
  log: Logger;
  clock?: Clock;
}

/** One pass over the cache (stopped between PatchJobs when `signal` aborts). Returns the keys re-published. */
export async function sweepOnce(o: SweepOptions, signal?: AbortSignal): Promise<string[]> {
  const now = (o.clock ?? realClock).now();
  const republished: string[] = [];
  for (const pj of [...o.patchJobs.values()]) {
    if (signal?.aborted) break;
    const s = pj.status;
    const key = keyOf(pj);
    if (!s?.phase || s.phase === Phase.Pending) {
      o.enqueue(kindOf(pj), key);
      continue;
    }
    if (s.observedGeneration !== pj.metadata.generation) continue;
    const running = s.phase === Phase.Running;
    if (running) {
      const last = Date.parse(s.heartbeatTime ?? s.startTime ?? "") || 0;
      if (now - last < (o.staleRunningMs ?? DEFAULT_STALE_RUNNING_MS)) continue;
    } else {
      if (s.phase !== Phase.Queued) continue;
      // A platform waiting for its index PatchJob has no message of its own: the index's counts.
      if (s.reason === Reason.Grouped) continue;
      if (now - (Date.parse(s.queuedTime ?? "") || 0) < o.staleMs) continue;
    }
    const req = {
      namespace: pj.metadata.namespace!,
      name: pj.metadata.name,
      uid: pj.metadata.uid!,
      generation: pj.metadata.generation ?? 1,
    };
    const verdict = o.tenancy?.(pj);
    if (verdict && !verdict.ok) {
      await ignoreConflict(o.client.updateStatus(pj, markDenied(pj, verdict.reason, verdict.message))).catch(
        (err: unknown) => o.log.warn({ key, err: errorMessage(err) }, "sweep could not record a refusal"),
      );
      o.log.info({ key, reason: verdict.reason }, "sweep: a stale Queued PatchJob is no longer allowed");
      continue;
    }
    try {
      if (await o.publisher.pending(req)) continue;
      await o.publisher.publish(req);
      const queued = markQueued(pj);
      await ignoreConflict(
        o.client.updateStatus(
          pj,
          running
            ? {
                ...queued,
                reason: Reason.HeartbeatLost,
                message: `worker ${s.worker ?? "?"} stopped sending heartbeats (last ${s.heartbeatTime ?? s.startTime}) and its request was gone: queued again`,
              }
            : queued,
        ),
      );
      republished.push(key);
      o.log.info(
        { key, generation: req.generation, was: s.phase },
        running
          ? "sweep took back a Running PatchJob without heartbeats"
          : "sweep re-published a stale Queued PatchJob",
      );
    } catch (err) {
      o.log.warn({ key, err: errorMessage(err) }, "sweep could not re-publish");
    }
  }
  return republished;
}

export async function runSweep(o: SweepOptions, signal: AbortSignal): Promise<void> {
  const clock = o.clock ?? realClock;
  while (!signal.aborted) {
    await sleepOn(clock, o.intervalMs, signal);
    if (signal.aborted) return;
    await sweepOnce(o, signal);
  }
}
