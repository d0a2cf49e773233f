// The controller process: caches of reports, PatchJobs and policies; three work queues
// (reports, index PatchJobs, requests) each with its reconciler; the sweep, the
// schedules and the policy statuses; all under leader election. Health and metrics are
// served by the command that starts it (src/cli/controller.ts).
import { hostname } from "node:os";
import { randomBytes } from "node:crypto";
import type { KubeConfig } from "@kubernetes/client-node";
import type { NatsConnection } from "@nats-io/transport-node";
import type { Registry } from "prom-client";
import { patchJobSpecSchema, type PatchJob, type SchemaNode } from "../api/index.ts";
import type { IndexSettings, ReportSettings, ReportSummary } from "../decide/index.ts";
import {
  DEFAULT_CONCURRENCY,
  DEFAULT_LEASE_DURATION_MS,
  DEFAULT_RECONCILE_TIMEOUT_MS,
  DEFAULT_RESYNC_MS,
  LeaderElector,
  type Store,
} from "../kube/index.ts";
import { JetStreamPublisher, type Publisher } from "../queue/index.ts";

import { type Logger, silentLogger } from "../util/index.ts";
import { DEFAULT_STALE_QUEUED_MS, DEFAULT_STALE_RUNNING_MS, DEFAULT_SWEEP_INTERVAL_MS } from "./sweep.ts";
import { controllerMetrics, type ControllerMetrics } from "./metrics.ts";
import { leaderWork, type LeaderState } from "./leading.ts";

/** @default "default" */
export const DEFAULT_POLICY_NAMESPACE = "default";
/** @default 15_000 */
export const DEFAULT_POLICY_STATUS_INTERVAL_MS = 15_000;
/** @default 1_000 */
export const DEFAULT_SCHEDULE_INTERVAL_MS = 1_000;
/** @default "vuln-patcher-controller" */
export const DEFAULT_LEASE_NAME = "vuln-patcher-controller";

export interface ControllerOptions {
  kc: KubeConfig;
  /** The NATS connection to publish on (or give `publisher`). */
  nc?: NatsConnection;
  publisher?: Publisher;
  /** The stream's copies in a JetStream cluster. @default unset: 1 for a new stream, an existing one keeps its own */
  streamReplicas?: number;
  /** Namespaces to watch; empty = all. */
  namespaces?: string[];
  settings?: ReportSettings & IndexSettings;
  /** Full re-list period of the informers. @default DEFAULT_RESYNC_MS */
  resyncMs?: number;
  /** Parallel reconciles per kind. @default DEFAULT_CONCURRENCY */
  concurrency?: number;
  /** A reconcile's time limit. @default DEFAULT_RECONCILE_TIMEOUT_MS */
  reconcileTimeoutMs?: number;
  /** @default DEFAULT_SWEEP_INTERVAL_MS */
  sweepIntervalMs?: number;
  /** @default DEFAULT_STALE_QUEUED_MS */
  staleQueuedMs?: number;
  /** A Running PatchJob without a heartbeat this long (and without its message) is queued again. @default DEFAULT_STALE_RUNNING_MS */
  staleRunningMs?: number;
  leaderElection?: {
    enabled: boolean;
    namespace: string;
    /** @default DEFAULT_LEASE_NAME */
    name?: string;
    identity?: string;
    /** @default DEFAULT_LEASE_DURATION_MS; renew deadline and retry period follow from it. */
    leaseDurationMs?: number;
  };
  /**
   * The controller's own namespace: a PatchPolicy here with allNamespaces applies to
   * every namespace (the chart's default policy lives here). @default DEFAULT_POLICY_NAMESPACE
   */
  policyNamespace?: string;
  /** The time Scheduled policies and windows see. @default the real clock */
  clock?: () => Date;
  /** @default DEFAULT_POLICY_STATUS_INTERVAL_MS */
  policyStatusIntervalMs?: number;
  /** @default DEFAULT_SCHEDULE_INTERVAL_MS */
  scheduleIntervalMs?: number;
  /** The PatchJob CRD's spec schema. @default read from the chart once */
  schema?: SchemaNode;
  log?: Logger;
}

export type ResolvedControllerOptions = Required<
  Omit<
    ControllerOptions,
    "nc" | "publisher" | "streamReplicas" | "leaderElection" | "log" | "schema" | "clock"
  >
> & {
  publisher: Publisher;
  leaderElection?: Required<NonNullable<ControllerOptions["leaderElection"]>>;
  log: Logger;
  schema: SchemaNode;
  clock: () => Date;
};

export class OptionsError extends Error {
  override name = "OptionsError";
  readonly code = "INVALID_OPTION";
}

function positive(name: string, v: number, min = 1): number {
  if (!Number.isFinite(v) || v < min)
    throw new OptionsError(`controller option ${name} must be >= ${min}, got ${v}`);
  return v;
}

/** Defaults filled in and every value checked; an error names the property. */
export function parseControllerOptions(o: ControllerOptions): ResolvedControllerOptions {
  if (o.streamReplicas !== undefined) positive("streamReplicas", o.streamReplicas);
  const stream = o.streamReplicas !== undefined ? { stream: { replicas: o.streamReplicas } } : {};
  const publisher = o.publisher ?? (o.nc ? new JetStreamPublisher(o.nc, stream) : undefined);
  if (!publisher) throw new OptionsError("controller option nc (or publisher) is required");
  const le = o.leaderElection;
  return {
    kc: o.kc,
    publisher,
    namespaces: o.namespaces?.filter(Boolean) ?? [],
    settings: o.settings ?? {},
    resyncMs: positive("resyncMs", o.resyncMs ?? DEFAULT_RESYNC_MS, 1000),
    concurrency: positive("concurrency", o.concurrency ?? DEFAULT_CONCURRENCY),
    reconcileTimeoutMs: positive("reconcileTimeoutMs", o.reconcileTimeoutMs ?? DEFAULT_RECONCILE_TIMEOUT_MS),
    sweepIntervalMs: positive("sweepIntervalMs", o.sweepIntervalMs ?? DEFAULT_SWEEP_INTERVAL_MS),
    staleQueuedMs: positive("staleQueuedMs", o.staleQueuedMs ?? DEFAULT_STALE_QUEUED_MS, 0),
    staleRunningMs: positive("staleRunningMs", o.staleRunningMs ?? DEFAULT_STALE_RUNNING_MS, 1000),
    ...(le
      ? {
          leaderElection: {
            enabled: le.enabled,
            namespace: le.namespace,
            name: le.name ?? DEFAULT_LEASE_NAME,
            identity: le.identity ?? `${hostname()}_${randomBytes(4).toString("hex")}`,
            leaseDurationMs: positive(
              "leaderElection.leaseDurationMs",
              le.leaseDurationMs ?? DEFAULT_LEASE_DURATION_MS,
              3000,
            ),
          },
        }
      : {}),
    policyNamespace: o.policyNamespace ?? DEFAULT_POLICY_NAMESPACE,
    clock: o.clock ?? (() => new Date()),
    policyStatusIntervalMs: positive(
      "policyStatusIntervalMs",
      o.policyStatusIntervalMs ?? DEFAULT_POLICY_STATUS_INTERVAL_MS,
    ),
    scheduleIntervalMs: positive("scheduleIntervalMs", o.scheduleIntervalMs ?? DEFAULT_SCHEDULE_INTERVAL_MS),
    schema: o.schema ?? patchJobSpecSchema(),
    log: o.log ?? silentLogger,
  };
}

export interface RunningController {
  /** Resolves when the controller has stopped. A lost lease does not stop it: it campaigns again. */
  done: Promise<void>;
  stop(): Promise<void>;
  registry: Registry;
  /** Leading, with every cache listed once. */
  isLeader(): boolean;
  /** For /healthz: false when leading and the lease has not been renewed in time. */
  healthy(): boolean;
  /** For /readyz: a standby is ready; a leader once its caches have listed. */
  ready(): boolean;
  /** The report cache (tests and benchmarks look at its size). */
  reportStore(): Store<ReportSummary> | undefined;
  /** The PatchJob cache (tests wait for it to hold a write). */
  patchJobStore(): Store<PatchJob> | undefined;
  /**
   * Leading, synced, and no key waiting or being reconciled (keys waiting on a delay do
   * not count). Tests use it to show that an event led to nothing, without sleeping.
   */
  idle(): boolean;
}

export async function startController(options: ControllerOptions): Promise<RunningController> {
  const o = parseControllerOptions(options);
  const state: LeaderState = { leading: false, synced: false };
  const m: ControllerMetrics = controllerMetrics(() => state.patchJobs?.values() ?? []);
  const stop = new AbortController();
  const le = o.leaderElection;
  let elector: LeaderElector | undefined;
  let done: Promise<void>;
  const lead = async (signal: AbortSignal) => {
    state.leading = true;
    m.leader.set(1);
    try {
      await leaderWork(o, m, state, signal);
    } finally {
      state.leading = false;
      state.synced = false;
      m.leader.set(0);
    }
  };
  if (le?.enabled) {
    const lease = le.leaseDurationMs;
    elector = new LeaderElector({
      kc: o.kc,
      namespace: le.namespace,
      name: le.name,
      identity: le.identity,
      leaseDurationMs: lease,
      renewDeadlineMs: Math.round((lease * 2) / 3),
      retryPeriodMs: Math.max(500, Math.round(lease / 7.5)),
      log: o.log,
      onStartedLeading: lead,
      onNewLeader: (id) => o.log.info({ leader: id }, "leader observed"),
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
        o.log.warn("leadership lost; campaigning again");
      }
    })();
  } else {
    done = lead(stop.signal);
  }
  return {
    done,
    registry: m.registry,
    isLeader: () => state.leading && state.synced,
    healthy: () => elector?.check() ?? true,
    ready: () => !state.leading || state.synced,
    reportStore: () => state.reports,
    patchJobStore: () => state.patchJobs,
    idle: () =>
      state.leading &&
      state.synced &&
      Object.values(state.queues ?? {}).every((q) => q.len() === 0 && q.processing() === 0),
    async stop() {
      stop.abort();
      await done;
    },
  };
}
