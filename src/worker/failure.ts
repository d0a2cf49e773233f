// A failed attempt, recorded: a transient failure before the last attempt goes back to
// Queued (never "Running" with nobody on it) and is retried; anything else, or the last
// attempt, ends Failed with the reason. And the subscriber's limit: a request delivered
// more often than the limit (its last attempt never reported back) ends Failed too.
import { isFinished, markFailed, PatchError, type PatchJob, Phase, Reason } from "../api/index.ts";
import type { EventRecorder, PatchJobClient } from "../kube/index.ts";
import type { Delivery, HandlerResult } from "../queue/index.ts";

import { errorMessage, type Logger } from "../util/index.ts";

import { librariesFailed } from "../patch/index.ts";
import { finish, finishMembers } from "./status-writer.ts";

export interface FailureDeps {
  client: PatchJobClient;
  events: EventRecorder;
}

export function asPatchError(err: unknown): PatchError {
  return err instanceof PatchError
    ? err
    : new PatchError(Reason.Internal, errorMessage(err), { transient: true, cause: err });
}

export async function recordFailure(
  d: FailureDeps,
  pj: PatchJob,
  err: unknown,
  delivery: Pick<Delivery, "maxDeliver">,
  log: Logger,
): Promise<{ result: HandlerResult; outcome: "retry" | "failed" }> {
  const pe = asPatchError(err);
  const attempt = pj.status?.attempts ?? 1;
  const last = attempt >= delivery.maxDeliver;
  if (pe.transient && !last) {
    const message = `attempt ${attempt} of ${delivery.maxDeliver} failed (${pe.reason}): ${pe.message}; retrying`;
    await finish(d.client, pj, (p) => ({
      ...p.status,
      phase: Phase.Queued,
      reason: pe.reason,
      message,
      observedGeneration: p.metadata.generation ?? 1,
    }));
    log.warn({ reason: pe.reason, err: pe.message }, "transient failure; will retry");
    return { result: { kind: "retry" }, outcome: "retry" };
  }
  const exhausted = last && pe.transient;
  const message = exhausted ? `failed after ${attempt} attempts: ${pe.message}` : pe.message;
  const reason = exhausted ? Reason.MaxAttemptsExceeded : pe.reason;
  await fail(d, pj, reason, message);
  d.events.warning(pj, pe.reason, message);
  log.error({ reason: pe.reason, err: pe.message }, "patch failed");
  return { result: { kind: "ack" }, outcome: "failed" };
}

async function fail(d: FailureDeps, pj: PatchJob, reason: Reason, message: string): Promise<void> {
  if (pj.spec.platforms?.length)
    await finishMembers(
      d.client,
      pj,
      () => (m) => markFailed(m, reason, `the index patch failed: ${message}`),
    );
  await finish(d.client, pj, (p) => {
    const status = markFailed(p, reason, message);
    const libraries = librariesFailed(status.libraries, message);
    return libraries ? { ...status, libraries } : status;
  });
}

/**
 * Past the delivery limit: the last attempt never reported back (its worker died), or
 * the request kept coming back without a result. Give up honestly, once.
 */
export async function recordExhausted(
  d: FailureDeps,
  pj: PatchJob | undefined,
  delivery: Pick<Delivery, "deliveryCount" | "maxDeliver">,
  log: Logger,
): Promise<void> {
  if (!pj || isFinished(pj)) return;
  const last = pj.status?.message ?? "no result";
  const message = `gave up after ${delivery.deliveryCount - 1} deliveries (${pj.status?.attempts ?? 0} attempts); the last one did not finish (${last})`;
  await fail(d, pj, Reason.MaxAttemptsExceeded, message);
  d.events.warning(pj, Reason.MaxAttemptsExceeded, message);
  log.error({ deliveries: delivery.deliveryCount }, message);
}
