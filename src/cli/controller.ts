// vuln-patcher controller: VulnerabilityReports -> PatchJobs -> NATS JetStream.
import { parse, flagOrEnv, intFlag, durationFlag, streamReplicasFlag } from "./args.ts";

import { newLogger, parseDuration, startHttpServer, UsageError } from "../util/index.ts";

import {
  DEFAULT_CONCURRENCY,
  DEFAULT_LEASE_DURATION_MS,
  DEFAULT_RESYNC_MS,
  loadKubeConfig,
} from "../kube/index.ts";
import { connectNats } from "../queue/index.ts";
import { startController } from "../controller/index.ts";
import { kubeAuthenticator, startApi, tokenAudiences } from "../server/index.ts";
import { DEFAULT_TAG_SUFFIX, DEFAULT_TIMEOUT } from "../api/index.ts";
import { DEFAULT_SHUTDOWN_TIMEOUT_MS, bounded, closeNats, exitSoon, onShutdown } from "./shutdown.ts";

export const controllerUsage = `Usage: vuln-patcher controller [flags]

Watches sbomscanner VulnerabilityReports, records each patch to make in a PatchJob and
publishes it to NATS JetStream.

  --kubeconfig PATH            default $KUBECONFIG, else in-cluster
  --nats-url URL               default $NATS_URL, else nats://127.0.0.1:4222
  --nats-user, --nats-password default $NATS_USER, $NATS_PASSWORD
  --nats-ca FILE               default $NATS_CA: check a tls:// NATS against this CA
  --stream-replicas N          the stream's copies in a JetStream cluster (3 survives
                               a node; default $NATS_STREAM_REPLICAS, else as it is)
  --namespaces a,b             namespaces to watch (default $WATCH_NAMESPACES, else all)
  --policy-namespace NS        the controller's namespace: a PatchPolicy here with allNamespaces
                               applies everywhere (default $POD_NAMESPACE, else default)
  --tag-suffix S               patched tag suffix (default ${DEFAULT_TAG_SUFFIX})
  --patch-timeout D            copa time limit per patch (default ${DEFAULT_TIMEOUT})
  --ignore-errors              let copa continue past packages it cannot update
  --publish-partial            multi-arch: publish the index with the platforms that patched
                               and the others unchanged when some fail (default: publish nothing)
  --resync D                   full re-list period (default ${DEFAULT_RESYNC_MS / 60_000}m)
  --concurrency N              parallel reconciles per kind of PatchJob (default ${DEFAULT_CONCURRENCY})
  --leader-elect=false         run without leader election (default on)
  --leader-election-namespace  default $POD_NAMESPACE, else default
  --lease-duration D           the leader's lease (default ${DEFAULT_LEASE_DURATION_MS / 1000}s)
  --listen HOST:PORT           /healthz, /readyz, /metrics (default :8080)
  --shutdown-timeout D         on SIGTERM, exit within this even if the apiserver or NATS is
                               gone (default ${DEFAULT_SHUTDOWN_TIMEOUT_MS / 1000}s; a second signal exits at once)
  --api                        also serve the HTTP API and the web UI on --listen (every
                               replica serves; see 'vuln-patcher server --help')
  --token-audience A           with --api: the audience callers' tokens must carry
                               (default vuln-patcher); "" for none
  --log-level LEVEL            default info`;

export async function controllerCommand(argv: string[]): Promise<number> {
  const { values: v } = parse(argv, {
    kubeconfig: { type: "string" },
    "nats-url": { type: "string" },
    "nats-user": { type: "string" },
    "nats-password": { type: "string" },
    "nats-ca": { type: "string" },
    "stream-replicas": { type: "string" },
    namespaces: { type: "string" },
    "policy-namespace": { type: "string" },
    "tag-suffix": { type: "string" },
    "patch-timeout": { type: "string" },
    "ignore-errors": { type: "boolean" },
    "publish-partial": { type: "boolean" },
    resync: { type: "string" },
    concurrency: { type: "string" },
    "leader-elect": { type: "string" },
    "leader-election-namespace": { type: "string" },
    "leader-election-id": { type: "string" },
    "lease-duration": { type: "string" },
    listen: { type: "string" },
    "shutdown-timeout": { type: "string" },
    api: { type: "boolean" },
    "token-audience": { type: "string" },
    "log-level": { type: "string" },
  });
  if (v.help) {
    process.stdout.write(controllerUsage + "\n");
    return 0;
  }
  const log = newLogger("controller", v["log-level"]);
  const leaderElect = (v["leader-elect"] ?? "true") !== "false";
  const timeout = v["patch-timeout"] ?? DEFAULT_TIMEOUT;
  parseDuration(timeout);
  const suffix = v["tag-suffix"] ?? DEFAULT_TAG_SUFFIX;
  if (!/^[A-Za-z0-9_.-]+$/.test(suffix))
    throw new UsageError(`--tag-suffix ${JSON.stringify(suffix)} is not valid in a tag`);
  const leaseMs = durationFlag("lease-duration", v["lease-duration"], `${DEFAULT_LEASE_DURATION_MS / 1000}s`);
  const kc = loadKubeConfig(v.kubeconfig);
  const shutdownMs = durationFlag(
    "shutdown-timeout",
    v["shutdown-timeout"],
    `${DEFAULT_SHUTDOWN_TIMEOUT_MS / 1000}s`,
  );
  const shutdown = onShutdown(log, shutdownMs);
  const nc = await connectNats({
    url: flagOrEnv(v["nats-url"], process.env.NATS_URL, "nats://127.0.0.1:4222")!,
    name: "vuln-patcher-controller",
    user: flagOrEnv(v["nats-user"], process.env.NATS_USER),
    pass: flagOrEnv(v["nats-password"], process.env.NATS_PASSWORD),
    caFile: flagOrEnv(v["nats-ca"], process.env.NATS_CA),
    log,
  });
  const api = v.api
    ? await startApi({
        kc,
        auth: kubeAuthenticator(kc, tokenAudiences(v["token-audience"])),
        log: log.child({ component: "api" }),
      })
    : undefined;
  const streamReplicas = streamReplicasFlag(v["stream-replicas"]);
  const ctl = await startController({
    kc,
    nc,
    ...(streamReplicas ? { streamReplicas } : {}),
    namespaces: (flagOrEnv(v.namespaces, process.env.WATCH_NAMESPACES) ?? "")
      .split(",")
      .map((s) => s.trim())
      .filter(Boolean),
    settings: {
      tagSuffix: suffix,
      timeout,
      ignoreErrors: !!v["ignore-errors"],
      publishPartial: !!v["publish-partial"],
    },
    policyNamespace: flagOrEnv(v["policy-namespace"], process.env.POD_NAMESPACE, "default")!,
    resyncMs: durationFlag("resync", v.resync, `${DEFAULT_RESYNC_MS / 1000}s`),
    concurrency: intFlag("concurrency", v.concurrency, DEFAULT_CONCURRENCY, 1),
    leaderElection: {
      enabled: leaderElect,
      namespace: flagOrEnv(v["leader-election-namespace"], process.env.POD_NAMESPACE, "default")!,
      identity: v["leader-election-id"],
      leaseDurationMs: leaseMs,
    },
    log,
  });
  const http = await startHttpServer({
    listen: v.listen ?? ":8080",
    registry: ctl.registry,
    healthy: ctl.healthy,
    ready: ctl.ready,
    routes: api?.routes,
  });
  log.info({ listen: http.url, leaderElect }, "controller started");
  // Runs until a signal: a lost lease does not end the process (it campaigns again).
  await Promise.race([ctl.done, shutdown.requested]);
  // Reconciles are cancelled at once; the lease is released if the apiserver answers.
  const step = Math.max(1_000, Math.floor(shutdownMs / 3));
  await bounded(ctl.stop(), step, "stopping the controller", log);
  await http.close();
  await bounded(api?.stop() ?? Promise.resolve(), 2_000, "stopping the API", log);
  await closeNats(nc, log);
  log.info("controller stopped");
  exitSoon(0);
  return 0;
}
