// vuln-patcher worker: NATS -> copa on BuildKit -> verified push -> PatchJob status.
import { execFileSync } from "node:child_process";
import { hostname } from "node:os";
import type { KubeConfig } from "@kubernetes/client-node";
import { parse, flagOrEnv, intFlag, durationFlag, streamReplicasFlag } from "./args.ts";

import { findTool, type Logger, newLogger, startHttpServer, UsageError } from "../util/index.ts";

import { loadKubeConfig } from "../kube/index.ts";
import {
  connectNats,
  DEFAULT_ACK_WAIT_MS,
  DEFAULT_MAX_DELIVER,
  DEFAULT_SHUTDOWN_GRACE_MS,
} from "../queue/index.ts";
import { DEFAULT_WORKER_CONCURRENCY, startWorker, type WorkerOptions } from "../worker/index.ts";
import { CERTS_DIR, kubernetesExecutor, localExecutor } from "../patch/index.ts";
import { dockerConfigDirCredentials, RegistryClient } from "../registry/index.ts";
import { DEFAULT_SHUTDOWN_TIMEOUT_MS, bounded, closeNats, exitSoon, onShutdown } from "./shutdown.ts";

export const workerUsage = `Usage: vuln-patcher worker [flags]

Takes patch requests from NATS JetStream and runs copa on BuildKit for each.

  --kubeconfig PATH             default $KUBECONFIG, else in-cluster
  --nats-url URL                default $NATS_URL, else nats://127.0.0.1:4222
  --nats-user, --nats-password  default $NATS_USER, $NATS_PASSWORD
  --nats-ca FILE                default $NATS_CA: check a tls:// NATS against this CA
  --stream-replicas N           the stream's copies in a JetStream cluster (3 survives
                                a node; default $NATS_STREAM_REPLICAS, else as it is)
  --executor local|kubernetes   run copa as a child process, or as a Job per patch
                                (default kubernetes in a cluster, else local)
  --concurrency N               patches at once in this process (default ${DEFAULT_WORKER_CONCURRENCY})
  --buildkit-addr ADDR[,ADDR]   tcp://host:port or unix:///path ($BUILDKIT_ADDR); several:
                                each patch on the one its source repository hashes to,
                                the next when that one is down
  --buildkit-ca, --buildkit-cert, --buildkit-key FILE   mTLS to BuildKit
  --signing-key FILE|URI        sign every published image with cosign and attest its VEX
                                and provenance ($COSIGN_KEY; the password in $COSIGN_PASSWORD);
                                unsigned, an image keeps only its staging tag
  --copa PATH                   copa binary for the local executor (default: copa on PATH,
                                else the one make setup built)
  --copa-image REF              the copa runner image for Jobs ($COPA_IMAGE)
  --job-namespace NS            where Jobs run (default: the PatchJob's namespace)
  --buildkit-tls-secret NAME    Secret with ca.crt, tls.crt, tls.key mounted into Jobs
  --job-resources JSON          the copa container's resources, e.g. '{"limits":{"memory":"512Mi"}}'
  --copa-https-proxy URL        HTTPS_PROXY for copa, which passes it into its build steps:
                                pip and npm reach PyPI and npm's registry through it
                                (library updates; $COPA_HTTPS_PROXY)
  --copa-no-proxy LIST          NO_PROXY beside it: hosts copa reaches directly (BuildKit,
                                the registries; $COPA_NO_PROXY)
  --insecure-registry HOST      reach HOST over plain HTTP (repeatable; loopback always is)
  --ack-wait D                  redeliver when a worker goes silent this long (default ${DEFAULT_ACK_WAIT_MS / 1000}s)
  --max-deliver N               attempts before a PatchJob is Failed (default ${DEFAULT_MAX_DELIVER})
  --shutdown-grace D            on SIGTERM, in-flight patches get this long before they are
                                left for another worker (default ${DEFAULT_SHUTDOWN_GRACE_MS / 1000}s)
  --shutdown-timeout D          exit within this after SIGTERM even if NATS or the apiserver
                                is gone (default ${DEFAULT_SHUTDOWN_TIMEOUT_MS / 1000}s; a second signal exits at once)
  --retry-base D                first retry delay, doubling (default 10s)
  --listen HOST:PORT            /healthz, /readyz, /metrics (default :8081)
  --log-level LEVEL             default info
Registry credentials follow the PatchJob's namespace (a PatchPolicy's credentialsSecret,
a sbomscanner Registry's authSecret); the worker's own, from $DOCKER_CONFIG/config.json,
only where a TenantGrant gives the namespace globalCredentials (docs/tenancy.md).`;

export async function workerCommand(argv: string[]): Promise<number> {
  const { values: v } = parse(argv, {
    kubeconfig: { type: "string" },
    "nats-url": { type: "string" },
    "nats-user": { type: "string" },
    "nats-password": { type: "string" },
    "nats-ca": { type: "string" },
    "stream-replicas": { type: "string" },
    executor: { type: "string" },
    concurrency: { type: "string" },
    "buildkit-addr": { type: "string" },
    "signing-key": { type: "string" },
    "buildkit-ca": { type: "string" },
    "buildkit-cert": { type: "string" },
    "buildkit-key": { type: "string" },
    copa: { type: "string" },
    "copa-image": { type: "string" },
    "job-namespace": { type: "string" },
    "buildkit-tls-secret": { type: "string" },
    "job-resources": { type: "string" },
    "copa-https-proxy": { type: "string" },
    "copa-no-proxy": { type: "string" },
    "insecure-registry": { type: "string", multiple: true },
    "ack-wait": { type: "string" },
    "max-deliver": { type: "string" },
    "retry-base": { type: "string" },
    "shutdown-grace": { type: "string" },
    "shutdown-timeout": { type: "string" },
    listen: { type: "string" },
    identity: { type: "string" },
    "log-level": { type: "string" },
  });
  if (v.help) {
    process.stdout.write(workerUsage + "\n");
    return 0;
  }
  const log = newLogger("worker", v["log-level"]);
  const kc = loadKubeConfig(v.kubeconfig);
  const identity = v.identity ?? process.env.POD_NAME ?? hostname();
  const { executor, executorKind, buildkitAddr, tls } = executorFromFlags(v, kc, log);
  // Only copa runs with library updates get the proxy (OS runs stay as they were).
  const libraryEnv = copaProxyEnv(
    v["copa-https-proxy"] as string | undefined,
    v["copa-no-proxy"] as string | undefined,
  );
  const shutdownMs = durationFlag(
    "shutdown-timeout",
    v["shutdown-timeout"],
    `${DEFAULT_SHUTDOWN_TIMEOUT_MS / 1000}s`,
  );
  const streamReplicas = streamReplicasFlag(v["stream-replicas"]);
  const graceMs = durationFlag("shutdown-grace", v["shutdown-grace"], `${DEFAULT_SHUTDOWN_GRACE_MS / 1000}s`);
  if (graceMs >= shutdownMs)
    throw new UsageError(
      "--shutdown-grace must be shorter than --shutdown-timeout (in-flight patches stop first)",
    );
  const shutdown = onShutdown(log, shutdownMs);
  const nc = await connectNats({
    url: flagOrEnv(v["nats-url"], process.env.NATS_URL, "nats://127.0.0.1:4222")!,
    name: `vuln-patcher-worker-${identity}`,
    user: flagOrEnv(v["nats-user"], process.env.NATS_USER),
    pass: flagOrEnv(v["nats-password"], process.env.NATS_PASSWORD),
    caFile: flagOrEnv(v["nats-ca"], process.env.NATS_CA),
    log,
  });
  const worker = await startWorker({
    kc,
    nc,
    executor,
    registry: new RegistryClient({ insecureHosts: v["insecure-registry"] ?? [] }),
    // The workers' own, from $DOCKER_CONFIG: lent to a namespace only by a TenantGrant.
    globalCredentials: dockerConfigDirCredentials(),
    buildkitAddr,
    tls,
    ...(libraryEnv ? { libraryEnv } : {}),
    identity,
    ...signingFromFlags(v),
    consumer: {
      concurrency: intFlag("concurrency", v.concurrency, DEFAULT_WORKER_CONCURRENCY, 1),
      ackWaitMs: durationFlag("ack-wait", v["ack-wait"], `${DEFAULT_ACK_WAIT_MS / 1000}s`),
      maxDeliver: intFlag("max-deliver", v["max-deliver"], DEFAULT_MAX_DELIVER, 1),
      shutdownGraceMs: graceMs,
      backoffBaseMs: durationFlag("retry-base", v["retry-base"], "10s"),
      ...(streamReplicas ? { stream: { replicas: streamReplicas } } : {}),
    },
    log,
  });
  const http = await startHttpServer({
    listen: v.listen ?? ":8081",
    registry: worker.registry,
    healthy: worker.healthy,
    ready: worker.ready,
  });
  log.info({ executor: executorKind, listen: http.url, identity }, "worker started");
  await shutdown.requested;
  const n = worker.inFlight();
  log.info(
    { inFlight: n, graceMs },
    n
      ? `stopping: ${n} patches in flight get ${graceMs} ms, then go back to the queue`
      : "stopping: no patch in flight",
  );
  await bounded(worker.stop(), shutdownMs - 2_000, "stopping the worker", log);
  await http.close();
  await closeNats(nc, log);
  log.info("worker stopped");
  exitSoon(0);
  return 0;
}

function jobResources(
  json: string | undefined,
): { requests?: Record<string, string>; limits?: Record<string, string> } | undefined {
  if (!json) return undefined;
  try {
    const r = JSON.parse(json) as { requests?: Record<string, string>; limits?: Record<string, string> };
    if (typeof r !== "object" || r === null || Array.isArray(r)) throw new Error("not an object");
    return r;
  } catch (err) {
    throw new UsageError(
      `--job-resources must be JSON like {"limits":{"memory":"512Mi"}}: ${(err as Error).message}`,
    );
  }
}

/** The executor, BuildKit's address and the client files copa is handed, from the flags. */
function executorFromFlags(
  v: Record<string, string | boolean | string[] | undefined>,
  kc: KubeConfig,
  log: Logger,
) {
  const str = (k: string) => v[k] as string | undefined;
  const executorKind = str("executor") ?? (process.env.KUBERNETES_SERVICE_HOST ? "kubernetes" : "local");
  if (executorKind !== "local" && executorKind !== "kubernetes")
    throw new UsageError(`--executor must be local or kubernetes, got ${JSON.stringify(executorKind)}`);
  const buildkitAddr = flagOrEnv(str("buildkit-addr"), process.env.BUILDKIT_ADDR);
  if (!buildkitAddr) throw new UsageError("--buildkit-addr (or $BUILDKIT_ADDR) is required");
  const tlsFiles = [str("buildkit-ca"), str("buildkit-cert"), str("buildkit-key")];
  if (tlsFiles.some(Boolean) && !tlsFiles.every(Boolean))
    throw new UsageError("--buildkit-ca, --buildkit-cert and --buildkit-key go together");
  let tls = tlsFiles.every(Boolean)
    ? { caCert: str("buildkit-ca")!, cert: str("buildkit-cert")!, key: str("buildkit-key")! }
    : undefined;
  // In a Job, copa reads the client certificates from a mounted Secret: the worker's own
  // files copied into each run's Secret, or a Secret of the Job namespace named here.
  const buildkitTLSFiles = executorKind === "kubernetes" ? tls : undefined;
  if (executorKind === "kubernetes" && (tls || str("buildkit-tls-secret")))
    tls = { caCert: `${CERTS_DIR}/ca.crt`, cert: `${CERTS_DIR}/tls.crt`, key: `${CERTS_DIR}/tls.key` };
  const executor =
    executorKind === "local"
      ? localExecutor({ copaPath: str("copa") })
      : kubernetesExecutor({
          kc,
          namespace: str("job-namespace"),
          image:
            flagOrEnv(str("copa-image"), process.env.COPA_IMAGE) ??
            (() => {
              throw new UsageError("--copa-image (or $COPA_IMAGE) is required with --executor kubernetes");
            })(),
          buildkitTLSSecret: str("buildkit-tls-secret"),
          ...(buildkitTLSFiles ? { buildkitTLSFiles } : {}),
          resources: jobResources(str("job-resources")),
          log,
        });
  return { executor, executorKind, buildkitAddr, tls };
}

/** --copa-https-proxy and --copa-no-proxy (or their variables): copa's proxy settings, checked. */
export function copaProxyEnv(
  https = process.env.COPA_HTTPS_PROXY,
  noProxy = process.env.COPA_NO_PROXY,
): Record<string, string> | undefined {
  if (!https) {
    if (noProxy) throw new UsageError("--copa-no-proxy goes with --copa-https-proxy");
    return undefined;
  }
  let url: URL;
  try {
    url = new URL(https);
  } catch {
    throw new UsageError(`--copa-https-proxy: ${JSON.stringify(https)} is not a URL`);
  }
  if (url.protocol !== "http:" && url.protocol !== "https:")
    throw new UsageError(`--copa-https-proxy: ${JSON.stringify(https)} is not an http(s):// URL`);
  if (noProxy !== undefined && !/^[A-Za-z0-9.,:/*_-]*$/.test(noProxy))
    throw new UsageError(`--copa-no-proxy: ${JSON.stringify(noProxy)} is not a list of hosts`);
  return { HTTPS_PROXY: https, ...(noProxy ? { NO_PROXY: noProxy } : {}) };
}

/** --signing-key: cosign signs each published image (docs/signing.md). */
function signingFromFlags(v: Record<string, unknown>): Pick<WorkerOptions, "signing" | "tools"> {
  const key = flagOrEnv(v["signing-key"] as string | undefined, process.env.COSIGN_KEY);
  if (!key) return {};
  const copaImage = flagOrEnv(v["copa-image"] as string | undefined, process.env.COPA_IMAGE);
  return {
    signing: {
      key,
      ...(process.env.COSIGN_PASSWORD !== undefined ? { password: process.env.COSIGN_PASSWORD } : {}),
      insecureHosts: (v["insecure-registry"] as string[] | undefined) ?? [],
    },
    tools: { copa: copaVersion(v["copa"] as string | undefined) ?? copaImage },
  };
}

/** `copa --version` of the local copa, when there is one. */
function copaVersion(explicit?: string): string | undefined {
  try {
    const out = execFileSync(findTool("copa", explicit), ["--version"], { timeout: 10_000 }).toString();
    return /version\s+(\S+)/.exec(out)?.[1];
  } catch {
    return undefined;
  }
}
