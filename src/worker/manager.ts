// The worker process: the shared durable consumer, the patch handler, metrics and
// health endpoints.
import type { KubeConfig } from "@kubernetes/client-node";
import type { NatsConnection } from "@nats-io/transport-node";
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from "prom-client";
import { consume, type ConsumerOptions, ensureConsumer } from "../queue/index.ts";
import { eventRecorder, patchJobClient } from "../kube/index.ts";
import { CosignSigner, type Executor, parseBuilderAddrs, type SignerOptions } from "../patch/index.ts";
import type { ToolVersions } from "./attestations.ts";
import type { Credential, RegistryClient } from "../registry/index.ts";

import { type Logger, silentLogger } from "../util/index.ts";
import { HANDLER_OUTCOMES, patchHandler } from "./handler.ts";
import {
  chooseCredentials,
  hostsOf,
  kubeSourceReader,
  loadSources,
  type SourceReader,
} from "./credentials.ts";

export interface WorkerOptions {
  kc: KubeConfig;
  nc: NatsConnection;
  executor: Executor;
  registry: RegistryClient;
  /** One BuildKit address, or several comma-separated: one per replica. */
  buildkitAddr: string;
  tls?: { caCert: string; cert: string; key: string };
  /** copa's environment for runs with library updates (HTTPS_PROXY, NO_PROXY). @default none */
  libraryEnv?: Record<string, string>;
  identity: string;
  consumer?: ConsumerOptions;
  /**
   * The workers' own registry credentials, by host: used for a PatchJob only where a
   * TenantGrant gives its namespace globalCredentials. @default none
   */
  globalCredentials?: ReadonlyMap<string, Credential>;
  /**
   * Sign every published image with this key (a cosign key file or KMS URI) and attest
   * its VEX and provenance; unsigned, nothing gets its tag. @default no signing
   */
  signing?: SignerOptions;
  /** For the provenance statement. @default none recorded */
  tools?: ToolVersions;
  /** Where a tenant's credentials are read. @default the cluster (Secrets, PatchPolicies, sbomscanner Registries) */
  credentialSources?: SourceReader;
  log?: Logger;
}

/** Patches at once in one worker process. @default 2 */
export const DEFAULT_WORKER_CONCURRENCY = 2;

export class WorkerOptionsError extends Error {
  override name = "WorkerOptionsError";
  readonly code = "INVALID_OPTION";
}

/** Defaults filled in and every value checked; an error names the property. */
export function parseWorkerOptions(o: WorkerOptions): WorkerOptions & { consumer: ConsumerOptions } {
  if (!o.buildkitAddr) throw new WorkerOptionsError("worker option buildkitAddr is required");
  for (const addr of parseBuilderAddrs(o.buildkitAddr))
    if (!/^(unix|tcp):\/\//.test(addr))
      throw new WorkerOptionsError(
        `worker option buildkitAddr must be unix:// or tcp:// (several comma-separated), got ${JSON.stringify(addr)}`,
      );
  if (!o.identity) throw new WorkerOptionsError("worker option identity is required (the pod name)");
  const consumer = { concurrency: DEFAULT_WORKER_CONCURRENCY, ...o.consumer };
  for (const k of [
    "concurrency",
    "maxDeliver",
    "ackWaitMs",
    "backoffBaseMs",
    "backoffMaxMs",
    "shutdownGraceMs",
  ] as const) {
    const v = consumer[k];
    if (v !== undefined && (!Number.isFinite(v) || v < (k === "shutdownGraceMs" ? 0 : 1)))
      throw new WorkerOptionsError(`worker option consumer.${k} must be a positive number, got ${v}`);
  }
  return { ...o, consumer };
}

export interface RunningWorker {
  done: Promise<void>;
  stop(): Promise<void>;
  registry: Registry;
  /** For /healthz and /readyz. */
  healthy(): boolean;
  ready(): boolean;
  /** Patches running now. */
  inFlight(): number;
}

export async function startWorker(options: WorkerOptions): Promise<RunningWorker> {
  const o = parseWorkerOptions(options);
  const log = o.log ?? silentLogger;
  // At start, so that a missing cosign stops the worker with a clear line, not each patch.
  const signer = o.signing ? new CosignSigner(o.signing) : undefined;
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  const patches = new Counter({
    name: "vuln_patcher_patches_total",
    help: "Patch requests handled, by outcome",
    labelNames: ["outcome"] as const,
    registers: [registry],
  });
  for (const k of HANDLER_OUTCOMES) patches.inc({ outcome: k }, 0);
  const failovers = new Counter({
    name: "vuln_patcher_buildkit_failovers_total",
    help: "Patches moved from an unreachable BuildKit to the next replica, by the one that was down",
    labelNames: ["buildkit"] as const,
    registers: [registry],
  });
  const duration = new Histogram({
    name: "vuln_patcher_patch_duration_seconds",
    help: "Time to handle a patch request",
    buckets: [1, 5, 10, 30, 60, 120, 300, 600, 1800],
    registers: [registry],
  });
  const inFlight = new Gauge({
    name: "vuln_patcher_patches_in_flight",
    help: "Patches running now",
    registers: [registry],
  });
  await ensureConsumer(o.nc, o.consumer);
  const sources = o.credentialSources ?? kubeSourceReader(o.kc);
  const global = o.globalCredentials ?? new Map<string, Credential>();
  let ready = true;
  let running = 0;
  const handler = patchHandler({
    client: patchJobClient(o.kc),
    events: eventRecorder(o.kc, "vuln-patcher-worker", log),
    executor: o.executor,
    registry: o.registry,
    buildkitAddr: o.buildkitAddr,
    tls: o.tls,
    ...(o.libraryEnv ? { libraryEnv: o.libraryEnv } : {}),
    identity: o.identity,
    onFailover: (from) => failovers.inc({ buildkit: from }),
    ...(signer ? { signer, tools: o.tools ?? {} } : {}),
    credentials: async (pj) => {
      const hosts = hostsOf(pj);
      return chooseCredentials(hosts, await loadSources(pj, hosts, sources, global));
    },
    log,
    onOutcome: (outcome, seconds) => {
      patches.inc({ outcome });
      if (outcome !== "dropped" && outcome !== "released") duration.observe(seconds);
    },
    onInFlight: (d) => {
      running += d;
      inFlight.inc(d);
    },
  });
  const stop = new AbortController();
  const done = consume(o.nc, handler, stop.signal, { ...o.consumer, log });
  return {
    done,
    registry,
    healthy: () => !o.nc.isClosed(),
    ready: () => ready && !o.nc.isClosed(),
    inFlight: () => running,
    async stop() {
      ready = false;
      stop.abort();
      await done;
    },
  };
}
