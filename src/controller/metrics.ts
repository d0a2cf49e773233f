// The controller's metrics: reconciles by kind and outcome, queue depths, publishes,
// leadership, and PatchJobs by phase (read from the cache when scraped).
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from "prom-client";
import { type PatchJob, Phase } from "../api/index.ts";
import { OUTCOMES } from "../kube/index.ts";
import { WorkloadState } from "../decide/index.ts";
import type { Kind } from "./routing.ts";

export const KINDS: readonly Kind[] = ["report", "index", "request"];

export type ControllerMetrics = ReturnType<typeof controllerMetrics>;

export function controllerMetrics(patchJobs: () => Iterable<PatchJob>) {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  const m = {
    registry,
    reconciles: new Counter({
      name: "vuln_patcher_reconcile_total",
      help: "Reconciles by kind of PatchJob and result",
      labelNames: ["kind", "result"] as const,
      registers: [registry],
    }),
    duration: new Histogram({
      name: "vuln_patcher_reconcile_duration_seconds",
      help: "Time per reconcile",
      labelNames: ["kind"] as const,
      buckets: [0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 30],
      registers: [registry],
    }),
    overrunning: new Gauge({
      name: "vuln_patcher_reconciles_overrunning",
      help: "Reconciles past their time limit that have not returned yet (their keys wait)",
      labelNames: ["kind"] as const,
      registers: [registry],
    }),
    depth: new Gauge({
      name: "vuln_patcher_workqueue_depth",
      help: "Keys waiting in the work queue",
      labelNames: ["kind"] as const,
      registers: [registry],
    }),
    publishFailures: new Counter({
      name: "vuln_patcher_publish_failures_total",
      help: "Failed publishes to JetStream",
      registers: [registry],
    }),
    published: new Counter({
      name: "vuln_patcher_messages_published_total",
      help: "Patch requests published, by whether JetStream saw a duplicate",
      labelNames: ["duplicate"] as const,
      registers: [registry],
    }),
    leadershipLost: new Counter({
      name: "vuln_patcher_leadership_lost_total",
      help: "Times this controller lost the lease while leading (it then campaigns again)",
      registers: [registry],
    }),
    lists: new Counter({
      name: "vuln_patcher_informer_lists_total",
      help: "Completed lists per informer: full, or metadata-only relists",
      labelNames: ["informer", "kind"] as const,
      registers: [registry],
    }),
    relistFetched: new Counter({
      name: "vuln_patcher_informer_relist_fetched_total",
      help: "Objects a metadata relist got in full (their resourceVersion had moved)",
      labelNames: ["informer"] as const,
      registers: [registry],
    }),
    leader: new Gauge({
      name: "vuln_patcher_leader",
      help: "1 while this replica leads",
      registers: [registry],
    }),
    phases: new Gauge({
      name: "vuln_patcher_patchjobs",
      help: "PatchJobs by phase (from the cache, when scraped)",
      labelNames: ["phase"] as const,
      registers: [registry],
      collect() {
        this.reset();
        for (const p of Object.values(Phase)) this.set({ phase: p }, 0);
        for (const pj of patchJobs()) if (pj.status?.phase) this.inc({ phase: pj.status.phase });
      },
    }),
    rollouts: new Gauge({
      name: "vuln_patcher_rollout_workloads",
      help: "Workload containers in PatchJobs' rollouts by state: Planned, Updating, Updated, RollingBack, RolledBack, Skipped (from the cache, when scraped)",
      labelNames: ["state"] as const,
      registers: [registry],
      collect() {
        this.reset();
        for (const s of Object.values(WorkloadState)) this.set({ state: s }, 0);
        for (const pj of patchJobs())
          for (const w of pj.status?.rollout?.workloads ?? []) this.inc({ state: w.state });
      },
    }),
  };
  for (const kind of KINDS) for (const result of OUTCOMES) m.reconciles.inc({ kind, result }, 0);
  m.published.inc({ duplicate: "false" }, 0);
  m.published.inc({ duplicate: "true" }, 0);
  return m;
}
