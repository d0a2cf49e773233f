// The worker process: the shared durable consumer, the patch handler, metrics and
// health endpoints.
import type { KubeConfig } from "@kubernetes/client-node";
import type { NatsConnection } from "@nats-io/transport-node";
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from "prom-client";
import { consume, ensureConsumer, type ConsumerOptions } from "../queue/consumer.ts";
import { eventRecorder } from "../kube/events.ts";
import { patchJobClient } from "../kube/patchjobs.ts";
import type { Executor } from "../patch/executor.ts";
import type { RegistryClient } from "../registry/client.ts";
import { startHttpServer, type RunningServer } from "../server/http.ts";
import { silentLogger, type Logger } from "../util/log.ts";
import { patchHandler } from "./handler.ts";
import { vexWriter } from "./vex.ts";

export interface WorkerOptions {
  kc: KubeConfig;
  nc: NatsConnection;
  executor: Executor;
  registry: RegistryClient;
  buildkitAddr: string;
  tls?: { caCert: string; cert: string; key: string };
  identity: string;
  consumer?: ConsumerOptions;
  listen?: string;
  log?: Logger;
}

export interface RunningWorker {
  done: Promise<void>;
  stop(): Promise<void>;
  server?: RunningServer;
  registry: Registry;
}

export async function startWorker(o: WorkerOptions): Promise<RunningWorker> {
  const log = o.log ?? silentLogger;
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  const patches = new Counter({
    name: "vuln_patcher_patches_total",
    help: "Patch requests handled, by outcome",
    labelNames: ["outcome"] as const,
    registers: [registry],
  });
  for (const k of ["succeeded", "noop", "failed", "retry", "dropped"]) patches.inc({ outcome: k }, 0);
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
  let ready = true;
  const handler = patchHandler({
    client: patchJobClient(o.kc),
    events: eventRecorder(o.kc, "vuln-patcher-worker", log),
    executor: o.executor,
    registry: o.registry,
    buildkitAddr: o.buildkitAddr,
    tls: o.tls,
    identity: o.identity,
    saveVex: vexWriter(o.kc),
    log,
    onOutcome: (outcome, seconds) => {
      patches.inc({ outcome });
      if (outcome !== "dropped") duration.observe(seconds);
    },
    onInFlight: (d) => inFlight.inc(d),
  });
  const stop = new AbortController();
  const done = consume(o.nc, handler, stop.signal, { ...o.consumer, log });
  const server = o.listen
    ? await startHttpServer({
        listen: o.listen,
        registry,
        healthy: () => !o.nc.isClosed(),
        ready: () => ready && !o.nc.isClosed(),
      })
    : undefined;
  return {
    done,
    registry,
    server,
    async stop() {
      ready = false;
      stop.abort();
      await done;
      await server?.close();
    },
  };
}
