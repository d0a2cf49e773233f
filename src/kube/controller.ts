// The loop around a reconciler, written once (controller-runtime's processNextWorkItem
// and reconcileHandler): done() on the way out, forget on success, a rate-limited
// re-add on error, exceptions turned into errors, a time limit, a reconcile id in the
// logs, and counts per outcome.
//
// The time limit cancels, it does not abandon: a reconcile that overruns gets its signal
// aborted, and its key stays "processing" in the queue until the reconcile has really
// returned, so the same key is never reconciled twice at once even when a reconcile
// ignores its signal. The worker slot moves on to other keys meanwhile.
import { randomUUID } from "node:crypto";
import type { WorkQueue } from "./workqueue.ts";
import { realClock, type Clock } from "./clock.ts";

import { errorMessage, type Logger, silentLogger } from "../util/index.ts";

export type Result = { kind: "done" } | { kind: "requeueAfter"; ms: number };
export const done: Result = { kind: "done" };
export const requeueAfter = (ms: number): Result => ({ kind: "requeueAfter", ms });

export type Reconciler = (key: string, signal: AbortSignal, log: Logger) => Promise<Result>;

export type Outcome = "success" | "error" | "requeue_after" | "timeout";
export const OUTCOMES: readonly Outcome[] = ["success", "error", "requeue_after", "timeout"];

/** @default 4 */
export const DEFAULT_CONCURRENCY = 4;
/** @default 60_000 */
export const DEFAULT_RECONCILE_TIMEOUT_MS = 60_000;

export interface RunnerOptions {
  name: string;
  queue: WorkQueue<string>;
  reconcile: Reconciler;
  /** Parallel reconciles (of different keys). @default DEFAULT_CONCURRENCY */
  concurrency?: number;
  /** After this long a reconcile's signal aborts. @default DEFAULT_RECONCILE_TIMEOUT_MS */
  timeoutMs?: number;
  log?: Logger;
  clock?: Clock;
  onResult?: (outcome: Outcome, seconds: number) => void;
  /** Reconciles that overran their limit and have not returned yet (a gauge). */
  onOverrun?: (running: number) => void;
}

export class ReconcileTimeoutError extends Error {
  override name = "ReconcileTimeoutError";
  readonly code = "RECONCILE_TIMEOUT";
}

type Settled = { ok: true; result: Result } | { ok: false; err: unknown };

export async function runController(opts: RunnerOptions, signal: AbortSignal): Promise<void> {
  const log = (opts.log ?? silentLogger).child({ controller: opts.name });
  const q = opts.queue;
  const clock = opts.clock ?? realClock;
  const timeoutMs = opts.timeoutMs ?? DEFAULT_RECONCILE_TIMEOUT_MS;
  const overrunning = new Set<Promise<unknown>>();
  const inFlight = new Set<AbortController>();

  const record = (key: string, s: Settled, rlog: Logger): Outcome => {
    if (s.ok) {
      q.forget(key);
      if (s.result.kind === "requeueAfter") {
        q.addAfter(key, s.result.ms);
        return "requeue_after";
      }
      return "success";
    }
    rlog.warn(
      { err: errorMessage(s.err), requeues: q.numRequeues(key) },
      "reconcile failed; retrying with backoff",
    );
    q.addRateLimited(key);
    return "error";
  };

  const processOne = async (key: string) => {
    const started = performance.now();
    const rlog = log.child({ key, reconcileID: randomUUID() });
    const cancel = new AbortController();
    inFlight.add(cancel);
    const settled: Promise<Settled> = Promise.resolve()
      .then(() => opts.reconcile(key, cancel.signal, rlog))
      .then(
        (result) => ({ ok: true as const, result }),
        (err: unknown) => ({ ok: false as const, err }),
      );
    let timer: { cancel(): void } | undefined;
    const timedOut = new Promise<"timeout">((resolve) => {
      timer = clock.setTimeout(() => resolve("timeout"), timeoutMs);
    });
    const first = await Promise.race([settled, timedOut]);
    timer?.cancel();
    void settled.then(() => inFlight.delete(cancel));
    if (first !== "timeout") {
      const outcome = record(key, first, rlog);
      q.done(key);
      opts.onResult?.(outcome, (performance.now() - started) / 1000);
      return;
    }
    // Over the limit: cancel it, count it, and keep the key busy until it returns.
    cancel.abort(new ReconcileTimeoutError(`reconcile of ${key} exceeded ${timeoutMs} ms`));
    rlog.warn({ timeoutMs }, "reconcile exceeded its time limit; cancelled, its key waits until it stops");
    opts.onResult?.("timeout", (performance.now() - started) / 1000);
    const tail = settled.then(() => {
      q.addRateLimited(key);
      q.done(key);
      overrunning.delete(tail);
      opts.onOverrun?.(overrunning.size);
    });
    overrunning.add(tail);
    opts.onOverrun?.(overrunning.size);
  };

  const worker = async () => {
    for (;;) {
      const key = await q.get();
      if (key === undefined) return;
      await processOne(key);
    }
  };
  const workers = Array.from({ length: opts.concurrency ?? DEFAULT_CONCURRENCY }, () => worker());
  await new Promise<void>((resolve) => {
    if (signal.aborted) resolve();
    signal.addEventListener("abort", () => resolve(), { once: true });
  });
  // Stop taking work; cancel what is in flight (reconciles are level-triggered: the next
  // leader or start does it again) and wait until each has returned.
  const draining = q.shutDownWithDrain();
  for (const c of inFlight) c.abort(new Error("shutting down"));
  await draining;
  await Promise.all(workers);
}
