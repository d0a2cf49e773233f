// What the leader does, for as long as it leads: start the caches, wire their events to
// the three work queues, run the reconcilers, the sweep, the schedules and the policy
// statuses, and stop all of it when `signal` aborts.
import { CustomObjectsApi } from "@kubernetes/client-node";
import { type PatchJob, type PatchPolicy, Phase } from "../api/index.ts";
import type { ReportFacts, ReportSummary } from "../decide/index.ts";
import {
  eventRecorder,
  type ListStats,
  patchJobClient,
  type PatchJobClient,
  type Reconciler,
  runController,
  type Store,
  WorkQueue,
} from "../kube/index.ts";

import {
  CacheSet,
  grantInformer,
  namespaceInformer,
  patchJobInformer,
  policyInformer,
  reportInformer,
} from "./caches.ts";
import type { ControllerMetrics } from "./metrics.ts";
import type { ResolvedControllerOptions } from "./manager.ts";
import { PolicySet } from "./policy-set.ts";
import { runPolicyStatuses } from "./policy-status.ts";
import { indexReconciler, reportReconciler, requestReconciler, type ReconcilerDeps } from "./reconcilers.ts";
import { MemberIndex, wakes, type Kind } from "./routing.ts";
import { AfterScans } from "./after-scans.ts";
import { scanJobs } from "./scanjobs.ts";
import { workloadReader, workloadWriter } from "./workloads.ts";
import { runSchedules } from "./schedules.ts";
import { runSweep } from "./sweep.ts";
import { ReportImages, Tenancy } from "./tenancy.ts";

/** Shared with the process around it (metrics, readiness, tests). */
export interface LeaderState {
  leading: boolean;
  synced: boolean;
  patchJobs?: Store<PatchJob>;
  reports?: Store<ReportSummary>;
  queues?: Record<Kind, WorkQueue<string>>;
}

type Queues = Record<Kind, WorkQueue<string>>;

function caches(o: ResolvedControllerOptions, m: ControllerMetrics) {
  const namespaces = o.namespaces.length ? o.namespaces : [undefined];
  const onList = (informer: string, s: ListStats) => {
    m.lists.inc({ informer, kind: s.full ? "full" : "metadata" });
    if (!s.full) m.relistFetched.inc({ informer }, s.fetched);
  };
  const opts = (namespace: string | undefined) => ({
    kc: o.kc,
    namespace,
    resyncMs: o.resyncMs,
    log: o.log,
    onList,
  });
  // Policies: those of the watched namespaces, and the controller's own (global ones).
  const policyNamespaces =
    namespaces[0] === undefined ? [undefined] : [...new Set([...o.namespaces, o.policyNamespace])];
  return {
    reports: new CacheSet(namespaces.map((ns) => reportInformer(opts(ns)))),
    patchJobs: new CacheSet(namespaces.map((ns) => patchJobInformer(opts(ns)))),
    policies: new CacheSet(policyNamespaces.map((ns) => policyInformer(opts(ns)))),
    // Cluster-scoped, whatever namespaces are watched: what the tenancy rules need.
    grants: new CacheSet([grantInformer(opts(undefined))]),
    namespaces: new CacheSet([namespaceInformer(opts(undefined))]),
  };
}

function* reportFactsOf(reports: Store<ReportSummary>): Iterable<[string, ReportFacts]> {
  for (const r of reports.values())
    if (r.facts) yield [`${r.facts.metadata.namespace}/${r.facts.metadata.name}`, r.facts];
}

/** Informer events -> keys on the right queue; the member index and our outputs kept current. */
function wire(
  c: ReturnType<typeof caches>,
  q: Queues,
  policies: PolicySet,
  members: MemberIndex,
  outputs: Map<string, number>,
  scans: AfterScans,
  tenancy: { images: ReportImages; rules: Tenancy },
  log: ResolvedControllerOptions["log"],
): void {
  const wake = (pj: PatchJob) => {
    for (const [kind, key] of wakes(pj)) q[kind].add(key);
  };
  // Denied PatchJobs are asked again when what the rules read changes: a grant, a
  // namespace's labels, a report of their namespace.
  const denied = new Map<string, PatchJob>();
  const track = (key: string, pj: PatchJob | undefined) =>
    pj?.status?.phase === Phase.Denied ? denied.set(key, pj) : denied.delete(key);
  const wakeDenied = (namespace?: string) => {
    for (const pj of denied.values()) if (!namespace || pj.metadata.namespace === namespace) wake(pj);
  };
  const count = (pj: PatchJob | undefined, d: number) => {
    const ref = pj?.status?.patchedImage?.reference;
    if (!ref) return;
    const n = (outputs.get(ref) ?? 0) + d;
    if (n > 0) outputs.set(ref, n);
    else outputs.delete(ref);
  };
  c.patchJobs.on({
    add: (k, pj) => (members.add(pj), count(pj, 1), track(k, pj), scans.patchJob(pj), wake(pj)),
    update: (k, pj, old) => (count(old, -1), count(pj, 1), track(k, pj), scans.patchJob(pj), wake(pj)),
    delete: (k, pj) => (
      members.delete(pj),
      count(pj, -1),
      track(k, undefined),
      scans.patchJob(pj, true),
      wake(pj)
    ),
  });
  tenancy.images.follow((h) => c.reports.on(h));
  // A report of a digest we published wakes the PatchJobs that published it (after-scan).
  const report = (k: string, s?: ReportSummary) => {
    q.report.add(k);
    for (const [kind, key] of scans.report(k, s)) q[kind].add(key);
  };
  c.reports.on({
    add: (k, s) => (report(k, s), s.facts?.metadata.namespace && wakeDenied(s.facts.metadata.namespace)),
    update: (k, s) => report(k, s),
    delete: (k) => report(k, undefined),
  });
  const regrant = () => {
    tenancy.rules.invalidate();
    for (const [grant, problems] of tenancy.rules.compiled().invalid)
      log.warn({ grant, problems }, "TenantGrant not used: it grants nothing until fixed");
    wakeDenied();
  };
  c.grants.on({ add: regrant, update: regrant, delete: regrant });
  c.namespaces.on({
    update: (_k, ns, old) => {
      if (JSON.stringify(ns.labels) !== JSON.stringify(old.labels)) wakeDenied(ns.name);
    },
  });
  // A policy changed: every report may have another policy now. A status-only update
  // (ours, every few seconds) changes no decision: only the compiled set is refreshed.
  const repolicy = () => {
    policies.invalidate();
    for (const [k] of reportFactsOf(c.reports.store)) q.report.add(k);
  };
  c.policies.on({
    add: repolicy,
    delete: repolicy,
    update: (_k, obj, old) =>
      obj.metadata.generation !== old.metadata.generation ? repolicy() : policies.invalidate(),
  });
}

/** One kind's reconcile loop, with its metrics. */
function runReconciler(
  o: ResolvedControllerOptions,
  m: ControllerMetrics,
  q: Queues,
  kind: Kind,
  reconcile: Reconciler,
  signal: AbortSignal,
): Promise<void> {
  return runController(
    {
      name: kind,
      queue: q[kind],
      reconcile,
      concurrency: o.concurrency,
      timeoutMs: o.reconcileTimeoutMs,
      log: o.log,
      onResult: (outcome, seconds) => {
        m.reconciles.inc({ kind, result: outcome });
        m.duration.observe({ kind }, seconds);
      },
      onOverrun: (n) => m.overrunning.set({ kind }, n),
    },
    signal,
  );
}

export async function leaderWork(
  o: ResolvedControllerOptions,
  m: ControllerMetrics,
  state: LeaderState,
  signal: AbortSignal,
): Promise<void> {
  const c = caches(o, m);
  const q: Queues = {
    report: new WorkQueue<string>({ onDepth: (d) => m.depth.set({ kind: "report" }, d) }),
    index: new WorkQueue<string>({ onDepth: (d) => m.depth.set({ kind: "index" }, d) }),
    request: new WorkQueue<string>({ onDepth: (d) => m.depth.set({ kind: "request" }, d) }),
  };
  const policies = new PolicySet(c.policies.store as Store<PatchPolicy>, o.policyNamespace, o.clock);
  const members = new MemberIndex();
  const outputs = new Map<string, number>();
  const scans = new AfterScans();
  const images = new ReportImages();
  const rules = new Tenancy({
    grants: c.grants.store,
    namespaces: c.namespaces.store,
    images,
    globalPolicyTarget: (pj) => policies.globalPolicyTarget(pj),
  });
  wire(c, q, policies, members, outputs, scans, { images, rules }, o.log);
  state.patchJobs = c.patchJobs.store;
  state.reports = c.reports.store;
  state.queues = q;
  // Policies and PatchJobs first (what already exists), then reports: reconciles start
  // as the first page of reports arrives, so listing and reconciling overlap.
  const running = [
    ...c.policies.run(signal),
    ...c.grants.run(signal),
    ...c.namespaces.run(signal),
    ...c.patchJobs.run(signal),
  ];
  await Promise.all(
    [c.policies, c.grants, c.namespaces, c.patchJobs].map((s) => s.waitForSync(signal)),
  ).catch(() => {});
  if (signal.aborted) return void (await Promise.all(running));
  running.push(...c.reports.run(signal));
  void c.reports.waitForSync(signal).then(
    () => {
      state.synced = true;
      o.log.info({ reports: c.reports.store.size, patchJobs: c.patchJobs.store.size }, "caches synced");
    },
    () => {},
  );
  const client = patchJobClient(o.kc);
  const deps = reconcilerDeps(o, m, c, q, client, { policies, members, outputs, scans, rules });
  const runner = (kind: Kind, reconcile: Reconciler) => runReconciler(o, m, q, kind, reconcile, signal);
  const papi = o.kc.makeApiClient(CustomObjectsApi);
  const reports = () => reportFactsOf(c.reports.store);
  await Promise.all([
    runner("report", reportReconciler(deps)),
    runner("index", indexReconciler(deps)),
    runner("request", requestReconciler(deps)),
    runSweep(
      {
        patchJobs: c.patchJobs.store,
        enqueue: (kind, key) => q[kind].add(key),
        publisher: o.publisher,
        client,
        intervalMs: o.sweepIntervalMs,
        staleMs: o.staleQueuedMs,
        staleRunningMs: o.staleRunningMs,
        tenancy: (pj) => rules.verdict(pj),
        log: o.log,
      },
      signal,
    ),
    runSchedules({
      policies,
      store: c.policies.store as Store<PatchPolicy>,
      reports,
      enqueue: (k) => q.report.add(k),
      api: papi,
      clock: o.clock,
      started: o.clock(),
      intervalMs: o.scheduleIntervalMs,
      signal,
      log: o.log,
      synced: () => c.reports.synced(),
    }),
    runPolicyStatuses(
      {
        onInvalid: (p, message) => deps.events.warning(p, "InvalidSpec", message),
        policies,
        store: c.policies.store as Store<PatchPolicy>,
        reports,
        patchJobs: c.patchJobs.store,
        api: papi,
        clock: o.clock,
        log: o.log,
        intervalMs: o.policyStatusIntervalMs,
        synced: () => c.reports.synced(),
      },
      signal,
    ),
    ...running,
  ]);
}

/** What the reconcilers read and write with. */
function reconcilerDeps(
  o: ResolvedControllerOptions,
  m: ControllerMetrics,
  c: ReturnType<typeof caches>,
  q: Queues,
  client: PatchJobClient,
  p: {
    policies: PolicySet;
    members: MemberIndex;
    outputs: Map<string, number>;
    scans: AfterScans;
    rules: Tenancy;
  },
): ReconcilerDeps {
  const { policies, members, outputs, scans, rules } = p;
  const sbom = scanJobs(o.kc);
  return {
    client,
    registryFor: (pj) => sbom.registryFor(pj),
    workloadsIn: workloadReader(o.kc),
    writeWorkload: workloadWriter(o.kc),
    createScanJob: (job) => sbom.create(job),
    publisher: o.publisher,
    events: eventRecorder(o.kc, "vuln-patcher-controller", o.log),
    enqueue: (k) => q.index.add(k),
    onPublished: (pj, dup) => (policies.published(pj), m.published.inc({ duplicate: String(dup) })),
    onPublishFailure: () => m.publishFailures.inc(),
    reports: c.reports.store,
    reportsSynced: () => c.reports.synced(),
    patchJobs: c.patchJobs.store,
    members,
    policies,
    isOwnOutput: (ref) => outputs.has(ref),
    scanOf: (pj) => scans.scanOf(pj),
    tenancy: (pj) => rules.verdict(pj),
    settings: o.settings,
    schema: o.schema,
    clock: o.clock,
  };
}
