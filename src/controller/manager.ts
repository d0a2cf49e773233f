// The controller process: informers on VulnerabilityReports and PatchJobs, a work
// queue of report keys, the reconcile runner, the sweep that re-publishes what is
// stuck, all under leader election; /healthz, /readyz and /metrics beside them.
import { CustomObjectsApi, type KubeConfig } from "@kubernetes/client-node";
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from "prom-client";
import { hostname } from "node:os";
import { randomBytes } from "node:crypto";
import { setTimeout as sleep } from "node:timers/promises";
import type { NatsConnection } from "@nats-io/transport-node";
import {
  GROUP,
  PLURAL,
  Phase,
  REPORT_GROUP,
  REPORT_PLURAL,
  REPORT_VERSION,
  VERSION,
  markQueued,
  Reason,
  type DecideSettings,
  type GroupSettings,
  type PatchJob,
} from "../api/index.ts";
import { Informer, mergedStore, type ListPage, type RawObject, type Store } from "../kube/informer.ts";
import { WorkQueue } from "../kube/workqueue.ts";
import { runController } from "../kube/controller.ts";
import { LeaderElector } from "../kube/leader.ts";
import { eventRecorder } from "../kube/events.ts";
import { patchJobClient } from "../kube/patchjobs.ts";
import { isConflict } from "../kube/errors.ts";
import { JetStreamPublisher, type Publisher } from "../queue/publisher.ts";
import { startHttpServer, type Route, type RunningServer } from "../server/http.ts";
import { silentLogger, type Logger } from "../util/log.ts";
import { errorMessage } from "../util/errors.ts";
import { reportReconciler } from "./reconcile.ts";
import { PolicySet, runSchedules, writePolicyStatuses } from "./policies.ts";
import { POLICY_PLURAL, type PatchPolicy, type ReportFacts } from "../api/index.ts";
import { summarizeReport, type ReportSummary } from "./summary.ts";

export interface ControllerOptions {
  kc: KubeConfig;
  nc: NatsConnection;
  /** Namespaces to watch; empty = all. */
  namespaces?: string[];
  settings?: DecideSettings & GroupSettings & { groupIndexes?: boolean; indexSettleMs?: number };
  /** Full re-list period of the informers. @default 300_000 */
  resyncMs?: number;
  /** Parallel reconciles. @default 4 */
  concurrency?: number;
  /** @default 60_000 */
  sweepIntervalMs?: number;
  /** A Queued PatchJob whose message is gone from the stream after this long is published again. @default 300_000 */
  staleQueuedMs?: number;
  leaderElection?: {
    enabled: boolean;
    namespace: string;
    name?: string;
    identity?: string;
    leaseDurationMs?: number;
    renewDeadlineMs?: number;
    retryPeriodMs?: number;
  };
  /** host:port for /healthz, /readyz, /metrics; undefined = no server. */
  listen?: string;
  log?: Logger;
  /** For tests: a publisher other than JetStream. */
  publisher?: Publisher;
  /**
   * The controller's own namespace: a PatchPolicy here with allNamespaces applies to
   * every namespace (the chart's default policy lives here). @default "default"
   */
  policyNamespace?: string;
  /** For tests: the time Scheduled policies and windows see. @default the real clock */
  clock?: () => Date;
  /** How often policy statuses are brought up to date. @default 15_000 */
  policyStatusIntervalMs?: number;
  /** More routes on the listen address (the API and UI with --api). */
  routes?: Route[];
}

export interface RunningController {
  /** Resolves when the controller has stopped. A lost lease does not stop it: it campaigns again. */
  done: Promise<void>;
  stop(): Promise<void>;
  server?: RunningServer;
  registry: Registry;
  isLeader(): boolean;
  /** The report cache (tests and benchmarks look at its size). */
  reportStore(): Store<ReportSummary> | undefined;
}

function metrics(registry: Registry, patchJobs: () => Iterable<PatchJob>) {
  return {
    reconciles: new Counter({
      name: "vuln_patcher_reconcile_total",
      help: "Reconciles by result",
      labelNames: ["result"] as const,
      registers: [registry],
    }),
    duration: new Histogram({
      name: "vuln_patcher_reconcile_duration_seconds",
      help: "Time per reconcile",
      buckets: [0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 30],
      registers: [registry],
    }),
    depth: new Gauge({
      name: "vuln_patcher_workqueue_depth",
      help: "Keys waiting in the work queue",
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
  };
}

export async function startController(o: ControllerOptions): Promise<RunningController> {
  const log = o.log ?? silentLogger;
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  let pjStore: Store<PatchJob> | undefined;
  const m = metrics(registry, () => pjStore?.values() ?? []);
  for (const r of ["success", "error", "terminal_error", "requeue_after", "timeout"])
    m.reconciles.inc({ result: r }, 0);
  const api = o.kc.makeApiClient(CustomObjectsApi);
  const namespaces = o.namespaces?.length ? o.namespaces : [undefined];
  const publisher = o.publisher ?? new JetStreamPublisher(o.nc);
  const events = eventRecorder(o.kc, "vuln-patcher-controller", log);
  const client = patchJobClient(o.kc);
  const settings = o.settings ?? {};

  const policyNamespace = o.policyNamespace ?? "default";
  const clock = o.clock ?? (() => new Date());
  let reports: Informer<ReportSummary>[] = [];
  let patchJobs: Informer<PatchJob>[] = [];
  let synced = false;

  const leaderWork = async (signal: AbortSignal) => {
    m.leader.set(1);
    const queue = new WorkQueue<string>({ onDepth: (d) => m.depth.set(d) });
    const listOf =
      (group: string, version: string, plural: string, ns: string | undefined) =>
      async (p: { limit: number; continueToken?: string }): Promise<ListPage> =>
        (ns
          ? await api.listNamespacedCustomObject({
              group,
              version,
              plural,
              namespace: ns,
              limit: p.limit,
              _continue: p.continueToken,
            })
          : await api.listClusterCustomObject({
              group,
              version,
              plural,
              limit: p.limit,
              _continue: p.continueToken,
            })) as ListPage;
    const pathOf = (group: string, version: string, plural: string, ns: string | undefined) =>
      `/apis/${group}/${version}${ns ? `/namespaces/${ns}` : ""}/${plural}`;
    reports = namespaces.map(
      (ns) =>
        new Informer<ReportSummary>({
          name: `vulnerabilityreports${ns ? `/${ns}` : ""}`,
          pageSize: 50,
          kc: o.kc,
          list: listOf(REPORT_GROUP, REPORT_VERSION, REPORT_PLURAL, ns),
          watchPath: pathOf(REPORT_GROUP, REPORT_VERSION, REPORT_PLURAL, ns),
          transform: (raw: RawObject) => summarizeReport(raw),
          resourceVersion: (s) => s.resourceVersion,
          resyncMs: o.resyncMs,
          log,
        }),
    );
    patchJobs = namespaces.map(
      (ns) =>
        new Informer<PatchJob>({
          name: `patchjobs${ns ? `/${ns}` : ""}`,
          kc: o.kc,
          list: listOf(GROUP, VERSION, PLURAL, ns),
          watchPath: pathOf(GROUP, VERSION, PLURAL, ns),
          transform: slimPatchJob,
          resourceVersion: (p) => p.metadata.resourceVersion,
          resyncMs: o.resyncMs,
          log,
        }),
    );
    // Policies: those of the watched namespaces, and the controller's own (global ones).
    const policyNamespaces =
      namespaces[0] === undefined ? [undefined] : [...new Set([...namespaces, policyNamespace])];
    const policyInformers = policyNamespaces.map(
      (ns) =>
        new Informer<PatchPolicy>({
          name: `patchpolicies${ns ? `/${ns}` : ""}`,
          kc: o.kc,
          list: listOf(GROUP, VERSION, POLICY_PLURAL, ns),
          watchPath: pathOf(GROUP, VERSION, POLICY_PLURAL, ns),
          transform: (raw: RawObject) => raw as unknown as PatchPolicy,
          resourceVersion: (p) => p.metadata.resourceVersion,
          resyncMs: o.resyncMs,
          log,
        }),
    );
    const policyStore = mergedStore(policyInformers);
    const policies = new PolicySet(policyStore, policyNamespace, clock);
    const reportFacts = function* (): Iterable<[string, ReportFacts]> {
      for (const r of mergedStore(reports).values())
        if (r.facts) yield [`${r.facts.metadata.namespace}/${r.facts.metadata.name}`, r.facts];
    };
    // A policy changed: every report may have another policy now. A status-only update
    // (ours, every few seconds) changes no decision: only the compiled set is refreshed.
    const repolicy = () => {
      policies.invalidate();
      for (const [k] of reportFacts()) queue.add(k);
    };
    for (const i of policyInformers)
      i.on({
        add: repolicy,
        delete: repolicy,
        update: (_k, obj, old) =>
          obj.metadata.generation !== old.metadata.generation ? repolicy() : policies.invalidate(),
      });
    const enqueue = {
      add: (k: string) => queue.add(k),
      update: (k: string) => queue.add(k),
      delete: (k: string) => queue.add(k),
    };
    for (const i of reports) i.on(enqueue);
    // PatchJob names are report names: a change to a PatchJob wakes its report's key.
    for (const i of patchJobs) i.on(enqueue);
    // What we pushed, by reference: a scan of it is never patched again.
    const outputs = new Map<string, number>();
    const count = (pj: PatchJob | undefined, d: number) => {
      const ref = pj?.status?.patchedImage?.reference;
      if (!ref) return;
      const n = (outputs.get(ref) ?? 0) + d;
      if (n > 0) outputs.set(ref, n);
      else outputs.delete(ref);
    };
    for (const i of patchJobs)
      i.on({
        add: (_k, pj) => count(pj, 1),
        update: (_k, pj, old) => (count(old, -1), count(pj, 1)),
        delete: (_k, pj) => count(pj, -1),
      });
    const reportStore = mergedStore(reports);
    pjStore = mergedStore(patchJobs);
    // Policies and PatchJobs first (what already exists), then reports: reconciles start
    // as the first page of reports arrives, so listing and reconciling overlap.
    const running = [...policyInformers, ...patchJobs].map((i) => i.run(signal));
    await Promise.all([...policyInformers, ...patchJobs].map((i) => i.waitForSync(signal))).catch(() => {});
    if (signal.aborted) {
      await Promise.all(running);
      return;
    }
    running.push(...reports.map((i) => i.run(signal)));
    const reportsSynced = () => reports.every((i) => i.hasSynced());
    void Promise.all(reports.map((i) => i.waitForSync(signal))).then(
      () => {
        synced = true;
        log.info({ reports: reportStore.size, patchJobs: pjStore?.size }, "caches synced");
      },
      () => {},
    );
    const reconcile = reportReconciler({
      kc: o.kc,
      reportsSynced,
      reports: reportStore,
      patchJobs: pjStore,
      client,
      publisher,
      events,
      settings,
      policies,
      isOwnOutput: (ref) => outputs.has(ref),
      enqueue: (k) => queue.add(k),
      onPublishFailure: () => m.publishFailures.inc(),
      onPublished: (dup) => m.published.inc({ duplicate: String(dup) }),
    });
    const runner = runController(
      {
        name: "vulnerabilityreport",
        queue,
        reconcile,
        concurrency: o.concurrency ?? 4,
        log,
        onResult: (outcome, seconds) => {
          m.reconciles.inc({ result: outcome });
          m.duration.observe(seconds);
        },
      },
      signal,
    );
    const sweeper = sweep(
      signal,
      pjStore,
      queue,
      publisher,
      client,
      o.sweepIntervalMs ?? 60_000,
      o.staleQueuedMs ?? 300_000,
      log,
    );
    const papi = o.kc.makeApiClient(CustomObjectsApi);
    const scheduler = runSchedules({
      policies,
      store: policyStore,
      reports: reportFacts,
      enqueue: (k) => queue.add(k),
      api: papi,
      clock,
      started: clock(),
      intervalMs: 1_000,
      signal,
      log,
      synced: reportsSynced,
    });
    const statusWriter = (async () => {
      while (!signal.aborted) {
        await sleep(o.policyStatusIntervalMs ?? 15_000, undefined, { signal }).catch(() => {});
        if (signal.aborted || !reportsSynced()) continue;
        await writePolicyStatuses({
          onInvalid: (p, message) => events.warning(p, "InvalidSpec", message),
          policies,
          store: policyStore,
          reports: reportFacts,
          patchJobs: pjStore!,
          api: papi,
          clock,
          log,
        }).catch((err: unknown) => log.warn({ err: errorMessage(err) }, "policy statuses not written"));
      }
    })();
    await Promise.all([runner, sweeper, scheduler, statusWriter, ...running]);
    synced = false;
    m.leader.set(0);
  };

  const stop = new AbortController();
  let elector: LeaderElector | undefined;
  let leading = false;
  let done: Promise<void>;
  if (o.leaderElection?.enabled) {
    const le = o.leaderElection;
    elector = new LeaderElector({
      kc: o.kc,
      namespace: le.namespace,
      name: le.name ?? "vuln-patcher-controller",
      identity: le.identity ?? `${hostname()}_${randomBytes(4).toString("hex")}`,
      leaseDurationMs: le.leaseDurationMs,
      renewDeadlineMs: le.renewDeadlineMs,
      retryPeriodMs: le.retryPeriodMs,
      log,
      onStartedLeading: async (signal) => {
        leading = true;
        try {
          await leaderWork(signal);
        } finally {
          leading = false;
        }
      },
      onNewLeader: (id) => log.info({ leader: id }, "leader observed"),
    });
    const campaigner = elector;
    // Leadership lost (the lease could not be renewed in time, e.g. while the apiserver
    // restarts): the leader work has stopped, so nothing is reconciled twice; campaign
    // again in the same process instead of exiting, and lead again if the lease is ours.
    done = (async () => {
      while (!stop.signal.aborted) {
        const lost = await campaigner.run(stop.signal);
        if (!lost) break;
        m.leadershipLost.inc();
        log.warn("leadership lost; campaigning again");
      }
    })();
  } else {
    leading = true;
    done = leaderWork(stop.signal);
  }
  const server = o.listen
    ? await startHttpServer({
        listen: o.listen,
        registry,
        healthy: () => elector?.check() ?? true,
        ready: () => !leading || synced,
        routes: o.routes,
      })
    : undefined;
  return {
    done,
    registry,
    server,
    isLeader: () => leading && synced,
    reportStore: () => (reports.length ? mergedStore(reports) : undefined),
    async stop() {
      stop.abort();
      await done;
      await server?.close();
    },
  };
}

/**
 * Re-publish what is stuck: Pending PatchJobs go back through reconcile; a Queued one
 * whose message is no longer in the stream (and no worker picked it up) is published
 * again. Idempotent: the message id de-duplicates, and workers check the generation.
 */
async function sweep(
  signal: AbortSignal,
  pjs: Store<PatchJob>,
  queue: WorkQueue<string>,
  publisher: Publisher,
  client: ReturnType<typeof patchJobClient>,
  intervalMs: number,
  staleMs: number,
  log: Logger,
): Promise<void> {
  while (!signal.aborted) {
    await sleep(intervalMs, undefined, { signal }).catch(() => {});
    if (signal.aborted) return;
    for (const pj of [...pjs.values()]) {
      const s = pj.status;
      const key = `${pj.metadata.namespace}/${pj.metadata.name}`;
      if (!s?.phase || s.phase === Phase.Pending) {
        queue.add(key);
        continue;
      }
      if (s.phase !== Phase.Queued || s.observedGeneration !== pj.metadata.generation) continue;
      // A platform waiting for its index PatchJob has no message of its own: the index's counts.
      if (s.reason === Reason.Grouped) continue;
      const since = Date.parse(s.queuedTime ?? "") || 0;
      if (Date.now() - since < staleMs) continue;
      const req = {
        namespace: pj.metadata.namespace!,
        name: pj.metadata.name,
        uid: pj.metadata.uid!,
        generation: pj.metadata.generation ?? 1,
      };
      try {
        if (await publisher.pending(req)) continue;
        await publisher.publish(req);
        await client.updateStatus(pj, markQueued(pj)).catch((e: unknown) => {
          if (!isConflict(e)) throw e;
        });
        log.info({ key, generation: req.generation }, "sweep re-published a stale Queued PatchJob");
      } catch (err) {
        log.warn({ key, err: errorMessage(err) }, "sweep could not re-publish");
      }
    }
  }
}

/**
 * What the controller keeps of a PatchJob: everything but managedFields (often the
 * largest part of a small object, and never read here).
 */
export function slimPatchJob(raw: RawObject): PatchJob {
  const { managedFields: _mf, ...metadata } = (raw.metadata ?? {}) as Record<string, unknown>;
  return { ...(raw as unknown as PatchJob), metadata: metadata as unknown as PatchJob["metadata"] };
}
