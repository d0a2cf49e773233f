// While a patch runs, the worker writes status.heartbeatTime now and then: the sign of
// life the controller's sweep looks for before it takes a Running PatchJob back. Never
// over a newer status: a write that conflicts re-reads, and the heartbeat stops once the
// PatchJob is no longer this worker's Running generation.
import { markHeartbeat, type PatchJob, Phase } from "../api/index.ts";
import { ignoreConflict, type PatchJobClient } from "../kube/index.ts";
import { errorMessage, type Logger } from "../util/index.ts";

/** @default 30_000 */
export const DEFAULT_HEARTBEAT_MS = 30_000;

export function startHeartbeat(
  client: PatchJobClient,
  claimed: PatchJob,
  identity: string,
  everyMs: number,
  log: Logger,
): { stop(): void } {
  let latest = claimed;
  let busy = false;
  let stopped = false;
  const ours = (p: PatchJob | undefined): p is PatchJob =>
    !!p &&
    p.metadata.uid === claimed.metadata.uid &&
    p.metadata.generation === claimed.metadata.generation &&
    p.status?.phase === Phase.Running &&
    p.status.worker === identity;
  const beat = async () => {
    if (busy || stopped) return;
    busy = true;
    try {
      const written = await ignoreConflict(client.updateStatus(latest, markHeartbeat(latest)));
      if (written) latest = written;
      else {
        const fresh = await client.get(claimed.metadata.namespace!, claimed.metadata.name);
        if (!ours(fresh)) return stop();
        latest = fresh;
      }
    } catch (err) {
      log.debug({ err: errorMessage(err) }, "heartbeat not written");
    } finally {
      busy = false;
    }
  };
  const timer = setInterval(() => void beat(), everyMs);
  timer.unref();
  const stop = () => {
    stopped = true;
    clearInterval(timer);
  };
  return { stop };
}
