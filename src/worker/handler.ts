// One patch request, made true once with an honest result. The PatchJob is the truth:
// re-read it, drop what is stale or finished, claim it with the resourceVersion read
// (so two workers never both act), patch, verify, record, and only then ack.
import {
  BadMessageError,
  decodeRequest,
  type Delivery,
  type Handler,
  type HandlerResult,
} from "../queue/index.ts";
import type { EventRecorder, PatchJobClient } from "../kube/index.ts";
import type { PatchJob } from "../api/index.ts";

import { credentialsFrom, dockerConfigText } from "../registry/index.ts";
import { type Logger, silentLogger } from "../util/index.ts";
import { claim } from "./claim.ts";
import { describeCredentials, explainDenied, type TenantCredentials } from "./credentials.ts";
import { DEFAULT_HEARTBEAT_MS, startHeartbeat } from "./heartbeat.ts";
import { recordExhausted, recordFailure } from "./failure.ts";
import { record, type RecordDeps } from "./record.ts";
import { runAttempt, type EngineDeps } from "./run.ts";
import { stampingClient } from "./status-writer.ts";

export type HandlerOutcome = "succeeded" | "noop" | "failed" | "retry" | "dropped" | "released";
export const HANDLER_OUTCOMES: readonly HandlerOutcome[] = [
  "succeeded",
  "noop",
  "failed",
  "retry",
  "dropped",
  "released",
];

export interface WorkerDeps extends EngineDeps, RecordDeps {
  client: PatchJobClient;
  events: EventRecorder;
  /** This worker's name (pod name), recorded in status.worker. */
  identity: string;
  log?: Logger;
  onOutcome?: (outcome: HandlerOutcome, seconds: number) => void;
  onInFlight?: (delta: number) => void;
  /**
   * The PatchJob's tenant's registry credentials (src/worker/credentials.ts). Absent:
   * the engine's own `registry` and the executor's environment (tests of the engine).
   */
  credentials?: (pj: PatchJob) => Promise<TenantCredentials>;
  /** How often a running patch writes status.heartbeatTime. @default DEFAULT_HEARTBEAT_MS */
  heartbeatMs?: number;
}

const ACK: HandlerResult = { kind: "ack" };

export function patchHandler(deps: WorkerDeps): Handler {
  const baseLog = deps.log ?? silentLogger;

  async function handle(d: Delivery, signal: AbortSignal): Promise<HandlerResult> {
    const started = performance.now();
    const outcome = (o: HandlerOutcome) => deps.onOutcome?.(o, (performance.now() - started) / 1000);
    let req;
    try {
      req = decodeRequest(d.data);
    } catch (err) {
      if (!(err instanceof BadMessageError)) throw err;
      baseLog.error({ err: err.message }, "dropping a malformed patch request");
      outcome("dropped");
      return ACK;
    }
    const log = baseLog.child({
      patchjob: `${req.namespace}/${req.name}`,
      generation: req.generation,
      delivery: d.deliveryCount,
    });
    const c = await claim(deps.client, req, d, deps.identity);
    if (c.kind === "drop") {
      log.info(c.fields ?? {}, c.why);
      outcome("dropped");
      return ACK;
    }
    if (c.kind === "retry") {
      log.info(c.why);
      outcome("retry");
      return { kind: "retry", ...(c.delayMs !== undefined ? { delayMs: c.delayMs } : {}) };
    }
    const pj = c.pj;
    deps.onInFlight?.(1);
    let creds: TenantCredentials | undefined;
    const heartbeat = startHeartbeat(
      deps.client,
      pj,
      deps.identity,
      deps.heartbeatMs ?? DEFAULT_HEARTBEAT_MS,
      log,
    );
    try {
      creds = await deps.credentials?.(pj);
      if (creds) log.info({ credentials: describeCredentials(creds) }, "registry credentials");
      // This attempt reads and pushes with its tenant's credentials, and nothing else.
      const engine = creds
        ? {
            ...deps,
            registry: deps.registry.withCredentials(credentialsFrom(creds.creds)),
            dockerConfig: dockerConfigText(creds.creds),
          }
        : deps;
      const result = await runAttempt(engine, { pj, signal, working: d.working, log });
      heartbeat.stop();
      const client = result.builder ? stampingClient(deps.client, { buildkit: result.builder }) : deps.client;
      outcome(await record({ ...deps, client }, pj, result, log));
      return ACK;
    } catch (err) {
      heartbeat.stop();
      if (signal.aborted) {
        // This worker is stopping: the patch is left for another worker (redelivered at
        // once), as after a crash; nothing is recorded as failed.
        log.warn("stopping mid-patch: the request goes back to the queue");
        outcome("released");
        return { kind: "retry", delayMs: 0 };
      }
      const f = await recordFailure(deps, pj, explainDenied(err, pj, creds), d, log);
      outcome(f.outcome);
      return f.result;
    } finally {
      heartbeat.stop();
      deps.onInFlight?.(-1);
    }
  }

  async function exhausted(d: Delivery): Promise<void> {
    let req;
    try {
      req = decodeRequest(d.data);
    } catch {
      return;
    }
    const log = baseLog.child({ patchjob: `${req.namespace}/${req.name}`, generation: req.generation });
    const pj = await deps.client.get(req.namespace, req.name);
    if (pj && pj.metadata.uid === req.uid && (pj.metadata.generation ?? 1) === req.generation)
      await recordExhausted(deps, pj, d, log);
    deps.onOutcome?.("failed", 0);
  }

  return { handle, exhausted };
}
