// The Scheduled policies' runs: when a policy's next time has come, each report it is
// the policy for gets one patch decision (a grant) and is queued; the run is recorded
// in the policy's status.
import type { CustomObjectsApi } from "@kubernetes/client-node";
import { Mode, type PatchPolicy } from "../api/index.ts";
import { nextRun, type ReportFacts } from "../decide/index.ts";
import type { Store } from "../kube/index.ts";

import { errorMessage, type Logger } from "../util/index.ts";

import { policyKey, type Clock, type PolicySet } from "./policy-set.ts";
import { toTime, writePolicyStatus } from "./policy-status.ts";

/**
 * Run the Scheduled policies: when a policy's next time has come, grant each report it
 * is the policy for one patch decision and queue it; record the run in the status.
 * A controller that was down over several run times runs once (as a CronJob does).
 */
export async function runSchedules(o: {
  policies: PolicySet;
  store: Store<PatchPolicy>;
  reports: () => Iterable<[string, ReportFacts]>;
  enqueue: (key: string) => void;
  api: CustomObjectsApi;
  clock: Clock;
  started: Date;
  intervalMs: number;
  signal: AbortSignal;
  log: Logger;
  /** False while the reports are still being listed: a run then would miss some. */
  synced: () => boolean;
}): Promise<void> {
  const { signal } = o;
  // The runs made here, in case the status write is lost or the cache is behind it.
  const ran = new Map<string, number>();
  while (!signal.aborted) {
    const now = o.clock();
    for (const p of o.synced() ? o.policies.compiled().valid : []) {
      if (p.mode !== Mode.Scheduled || !p.cron) continue;
      const last = p.policy.status?.lastScheduleTime;
      const created = p.policy.metadata.creationTimestamp;
      const fromStatus = new Date(
        last ?? (created ? String(created instanceof Date ? created.toISOString() : created) : o.started),
      ).getTime();
      const base = new Date(Math.max(fromStatus, ran.get(policyKey(p)) ?? 0));
      const due = nextRun(p.cron, p.timeZone, base);
      if (!due || due.getTime() > now.getTime()) continue;
      let n = 0;
      for (const [key, facts] of o.reports()) {
        const chosen = o.policies.choose(facts);
        if (!chosen || policyKey(chosen) !== policyKey(p)) continue;
        o.policies.grant(key, p);
        o.enqueue(key);
        n++;
      }
      ran.set(policyKey(p), Math.max(due.getTime(), Math.floor(now.getTime() / 60_000) * 60_000));
      const next = nextRun(p.cron, p.timeZone, now);
      o.log.info(
        { policy: `${p.namespace}/${p.name}`, reports: n, next: next?.toISOString() },
        "scheduled run",
      );
      await writePolicyStatus(o.api, p.policy, {
        lastScheduleTime: toTime(due.getTime() > now.getTime() ? now : due),
        ...(next ? { nextScheduleTime: toTime(next) } : {}),
      }).catch((err: unknown) =>
        o.log.warn({ err: errorMessage(err) }, "could not record the scheduled run"),
      );
    }
    await new Promise<void>((r) => {
      const t = setTimeout(r, o.intervalMs);
      signal.addEventListener("abort", () => (clearTimeout(t), r()), { once: true });
    });
  }
}
