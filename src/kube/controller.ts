// The loop around a reconciler, written once (controller-runtime's processNextWorkItem
// and reconcileHandler): done() on the way out, forget on success, a rate-limited
// re-add on error (unless terminal), panics turned into errors, a time limit, a
// reconcile id in the logs, and counts per outcome.
import { randomUUID } from "node:crypto";
import type { WorkQueue } from "./workqueue.ts";
import { TerminalError, errorMessage } from "../util/errors.ts";
import { silentLogger, type Logger } from "../util/log.ts";

export type Result = { kind: "done" } | { kind: "requeueAfter"; ms: number };
export const done: Result = { kind: "done" };
export const requeueAfter = (ms: number): Result => ({ kind: "requeueAfter", ms });

export type Reconciler = (key: string, signal: AbortSignal, log: Logger) => Promise<Result>;

export type Outcome = "success" | "error" | "terminal_error" | "requeue_after" | "timeout";

export interface RunnerOptions {
  name: string;
  queue: WorkQueue<string>;
  reconcile: Reconciler;
  /** @default 4 */
  concurrency?: number;
  /** @default 60_000 */
  timeoutMs?: number;
  log?: Logger;
  onResult?: (outcome: Outcome, seconds: number) => void;
}

export async function runController(opts: RunnerOptions, signal: AbortSignal): Promise<void> {
  const log = (opts.log ?? silentLogger).child({ controller: opts.name });
  const q = opts.queue;
  const worker = async () => {
    for (;;) {
      const key = await q.get();
      if (key === undefined) return;
      const started = performance.now();
      const rlog = log.child({ key, reconcileID: randomUUID() });
      let outcome: Outcome;
      // In-flight reconciles finish on shutdown; only the time limit cuts them short.
      const limit = AbortSignal.timeout(opts.timeoutMs ?? 60_000);
      try {
        const result = await Promise.race([
          opts.reconcile(key, limit, rlog),
          new Promise<never>((_, reject) =>
            limit.addEventListener("abort", () => reject(limit.reason), { once: true }),
          ),
        ]);
        if (result.kind === "requeueAfter") {
          q.forget(key);
          q.addAfter(key, result.ms);
          outcome = "requeue_after";
        } else {
          q.forget(key);
          outcome = "success";
        }
      } catch (err) {
        if (err instanceof TerminalError) {
          rlog.error({ err: errorMessage(err) }, "reconcile failed for good");
          q.forget(key);
          outcome = "terminal_error";
        } else {
          outcome = limit.aborted ? "timeout" : "error";
          rlog.warn(
            { err: errorMessage(err), requeues: q.numRequeues(key) },
            "reconcile failed; retrying with backoff",
          );
          q.addRateLimited(key);
        }
      } finally {
        q.done(key);
      }
      opts.onResult?.(outcome, (performance.now() - started) / 1000);
    }
  };
  const workers = Array.from({ length: opts.concurrency ?? 4 }, () => worker());
  await new Promise<void>((resolve) => {
    if (signal.aborted) resolve();
    signal.addEventListener("abort", () => resolve(), { once: true });
  });
  // Stop taking work, let in-flight reconciles finish.
  await q.shutDownWithDrain();
  await Promise.all(workers);
}
