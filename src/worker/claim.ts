// Loading and claiming a patch request. The PatchJob is the truth: re-read it, drop what
// is stale or finished, and claim it with a status write carrying the resourceVersion
// read, so two workers never both act on one generation.
import { isFinished, markRunning, type PatchJob, Phase } from "../api/index.ts";
import { ignoreConflict, type PatchJobClient } from "../kube/index.ts";
import type { Delivery, PatchRequest } from "../queue/index.ts";

export type Claim =
  | { kind: "claimed"; pj: PatchJob }
  | { kind: "drop"; why: string; fields?: Record<string, unknown> }
  | { kind: "retry"; delayMs?: number; why: string };

/** The early exits, on the PatchJob as read: undefined means go on and claim. */
export function dropReason(
  pj: PatchJob | undefined,
  req: PatchRequest,
  d: Pick<Delivery, "deliveryCount">,
  identity: string,
): Extract<Claim, { kind: "drop" }> | undefined {
  if (!pj || pj.metadata.uid !== req.uid)
    return { kind: "drop", why: "PatchJob gone or replaced; dropping the request" };
  const gen = pj.metadata.generation ?? 1;
  if (req.generation < gen)
    return {
      kind: "drop",
      why: "stale request (a newer generation is queued); dropping",
      fields: { current: gen },
    };
  if (isFinished(pj))
    return {
      kind: "drop",
      why: "generation already finished; dropping",
      fields: { phase: pj.status?.phase },
    };
  if (
    pj.status?.phase === Phase.Running &&
    pj.status.observedGeneration === gen &&
    pj.status.worker !== identity &&
    d.deliveryCount === 1
  )
    // A second message for a generation another worker is patching (a re-publish): that
    // worker's own message comes back to us if it dies, so this one can go.
    return {
      kind: "drop",
      why: "another worker is patching this generation; dropping the duplicate request",
      fields: { worker: pj.status.worker },
    };
  return undefined;
}

export async function claim(
  client: PatchJobClient,
  req: PatchRequest,
  d: Pick<Delivery, "deliveryCount">,
  identity: string,
): Promise<Claim> {
  let pj = await client.get(req.namespace, req.name);
  const early = dropReason(pj, req, d, identity);
  if (early) return early;
  // On a conflict (the controller recording Queued, say) read again and re-check.
  for (let i = 0; i < 3; i++) {
    const claimed = await ignoreConflict(client.updateStatus(pj!, markRunning(pj!, identity)));
    if (claimed) return { kind: "claimed", pj: claimed };
    const fresh = await client.get(req.namespace, req.name);
    if (
      !fresh ||
      fresh.metadata.uid !== req.uid ||
      (fresh.metadata.generation ?? 1) !== req.generation ||
      isFinished(fresh)
    )
      return { kind: "drop", why: "PatchJob changed while claiming; dropping this request" };
    if (
      fresh.status?.phase === Phase.Running &&
      fresh.status.observedGeneration === req.generation &&
      fresh.status.worker !== identity
    )
      // Someone else holds it; if they die, JetStream redelivers to us later.
      return { kind: "retry", why: "another worker claimed it first" };
    pj = fresh;
  }
  return { kind: "retry", delayMs: 1000, why: "could not claim after 3 conflicts" };
}
