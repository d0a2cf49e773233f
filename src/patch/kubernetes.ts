// The kubernetes executor: one batch/v1 Job per patch, running copa with an argv array,
// the manifest from a ConfigMap, the run's own registry credentials (its tenant's) and
// BuildKit's client certificates from a Secret of its own, owned by the Job, a deadline, no
// retries of its own (retries are the worker's), an owner reference to the PatchJob,
// and a restricted security context. The result comes from the Pod's termination
// state (and the log tail when the kubelet can serve it).
import { BatchV1Api, CoreV1Api, type KubeConfig, type V1Job, type V1Pod } from "@kubernetes/client-node";
import { createHash } from "node:crypto";
import { readFile } from "node:fs/promises";
import { setTimeout as sleep } from "node:timers/promises";
import type { CopaRun } from "./outcome.ts";
import { safeFileName, type CopaRequest, type Executor } from "./executor.ts";
import { apiMessage, ignoreConflict, isConflict, isNotFound } from "../kube/index.ts";

import { type Logger, silentLogger } from "../util/index.ts";

export interface KubernetesExecutorOptions {
  kc: KubeConfig;
  /** The copa runner image (copa's static binary on a minimal base). */
  image: string;
  /** Where Jobs run; default the PatchJob's namespace. */
  namespace?: string;
  /** Secret with ca.crt, tls.crt, tls.key for mTLS to BuildKit, in the Job namespace. */
  buildkitTLSSecret?: string;
  /**
   * Or: the worker's own BuildKit client files (paths), copied into each run's Secret, so
   * the Job namespace needs no Secret of its own and the worker needs only `create`
   * there (never `get`).
   */
  buildkitTLSFiles?: { caCert: string; cert: string; key: string };
  /** @default 3600 */
  ttlSecondsAfterFinished?: number;
  /** @default 2_000 */
  pollMs?: number;
  resources?: { requests?: Record<string, string>; limits?: Record<string, string> };
  /** Environment of every copa container (HTTPS_PROXY and NO_PROXY for library updates). */
  env?: Record<string, string>;
  log?: Logger;
}

export const MANIFEST_DIR = "/work/manifest";
export const VEX_DIR = "/work/out";
export const DOCKER_CONFIG_DIR = "/work/docker";
export const CERTS_DIR = "/work/certs";

export function jobName(id: string): string {
  const slug = id
    .toLowerCase()
    .replace(/[^a-z0-9-]/g, "-")
    .replace(/-+/g, "-")
    .replace(/^-|-$/g, "")
    .slice(0, 40)
    .replace(/-$/, "");
  return `vp-${slug}-${createHash("sha256").update(id).digest("hex").slice(0, 8)}`;
}

/** The Job for a copa run (pure: tests check it field by field). */
export function buildJob(o: KubernetesExecutorOptions, req: CopaRequest, namespace: string): V1Job {
  const name = jobName(req.id);
  // A multi-arch patch hands copa the ConfigMap's directory, one file per platform.
  const args = req.args({
    manifest: req.manifests ? MANIFEST_DIR : req.manifest ? `${MANIFEST_DIR}/manifest.json` : undefined,
    vex: req.manifest && !req.manifests ? `${VEX_DIR}/vex.json` : undefined,
  });
  const volumes: NonNullable<NonNullable<V1Job["spec"]>["template"]["spec"]>["volumes"] = [
    { name: "out", emptyDir: { sizeLimit: "16Mi" } },
    { name: "tmp", emptyDir: { sizeLimit: "256Mi" } },
  ];
  const mounts = [
    { name: "out", mountPath: VEX_DIR },
    { name: "tmp", mountPath: "/tmp" },
  ];
  if (req.manifest || req.manifests) {
    volumes.push({ name: "manifest", configMap: { name } });
    mounts.push({ name: "manifest", mountPath: MANIFEST_DIR, readOnly: true } as (typeof mounts)[number]);
  }
  const env = [{ name: "HOME", value: "/tmp" }];
  for (const [k, v] of Object.entries({ ...o.env, ...req.env })) env.push({ name: k, value: v });
  // This run's own Secret (created with the Job, owned by it): the tenant's registry
  // credentials and the BuildKit client files.
  const runSecret = runSecretKeys(o, req);
  if (runSecret.docker) {
    volumes.push({
      name: "docker-config",
      secret: { secretName: name, items: [{ key: "config.json", path: "config.json" }] },
    });
    mounts.push({
      name: "docker-config",
      mountPath: DOCKER_CONFIG_DIR,
      readOnly: true,
    } as (typeof mounts)[number]);
    env.push({ name: "DOCKER_CONFIG", value: DOCKER_CONFIG_DIR });
  }
  if (runSecret.tls) {
    volumes.push({
      name: "buildkit-certs",
      secret: {
        secretName: name,
        items: ["ca.crt", "tls.crt", "tls.key"].map((k) => ({ key: k, path: k })),
      },
    });
    mounts.push({ name: "buildkit-certs", mountPath: CERTS_DIR, readOnly: true } as (typeof mounts)[number]);
  } else if (o.buildkitTLSSecret) {
    volumes.push({ name: "buildkit-certs", secret: { secretName: o.buildkitTLSSecret } });
    mounts.push({ name: "buildkit-certs", mountPath: CERTS_DIR, readOnly: true } as (typeof mounts)[number]);
  }
  const deadline = Math.ceil(req.timeoutMs / 1000);
  return {
    apiVersion: "batch/v1",
    kind: "Job",
    metadata: {
      name,
      namespace,
      labels: {
        "app.kubernetes.io/managed-by": "vuln-patcher",
        "app.kubernetes.io/component": "copa",
        ...(req.owner ? { "vulnpatcher.io/patchjob": req.owner.name.slice(0, 63) } : {}),
        ...(req.owner && req.namespace ? { "vulnpatcher.io/patchjob-namespace": req.namespace } : {}),
      },
      // An owner must live in the same namespace; a Job elsewhere is found by its labels.
      ...(req.owner && namespace === req.namespace
        ? { ownerReferences: [{ ...req.owner, controller: true, blockOwnerDeletion: true }] }
        : {}),
    },
    spec: {
      backoffLimit: 0,
      activeDeadlineSeconds: deadline,
      ttlSecondsAfterFinished: o.ttlSecondsAfterFinished ?? 3600,
      template: {
        metadata: {
          labels: { "app.kubernetes.io/managed-by": "vuln-patcher", "app.kubernetes.io/component": "copa" },
        },
        spec: {
          restartPolicy: "Never",
          automountServiceAccountToken: false,
          enableServiceLinks: false,
          securityContext: {
            runAsNonRoot: true,
            runAsUser: 65532,
            runAsGroup: 65532,
            fsGroup: 65532,
            seccompProfile: { type: "RuntimeDefault" },
          },
          volumes,
          containers: [
            {
              name: "copa",
              image: o.image,
              imagePullPolicy: "IfNotPresent",
              // argv, never a shell: the image's entrypoint is copa itself.
              command: ["copa"],
              args,
              env,
              volumeMounts: mounts,
              terminationMessagePolicy: "FallbackToLogsOnError",
              securityContext: {
                allowPrivilegeEscalation: false,
                readOnlyRootFilesystem: true,
                capabilities: { drop: ["ALL"] },
              },
              resources: o.resources ?? {
                requests: { cpu: "100m", memory: "128Mi" },
                limits: { memory: "512Mi" },
              },
            },
          ],
        },
      },
    },
  };
}

/** What goes into a run's own Secret. */
function runSecretKeys(o: KubernetesExecutorOptions, req: CopaRequest): { docker: boolean; tls: boolean } {
  return { docker: req.dockerConfig !== undefined, tls: !!o.buildkitTLSFiles };
}

async function runSecretData(
  o: KubernetesExecutorOptions,
  req: CopaRequest,
): Promise<Record<string, string>> {
  const data: Record<string, string> = {};
  if (req.dockerConfig !== undefined) data["config.json"] = req.dockerConfig;
  const f = o.buildkitTLSFiles;
  if (f) {
    data["ca.crt"] = await readFile(f.caCert, "utf8");
    data["tls.crt"] = await readFile(f.cert, "utf8");
    data["tls.key"] = await readFile(f.key, "utf8");
  }
  return data;
}

export function kubernetesExecutor(o: KubernetesExecutorOptions): Executor {
  const batch = o.kc.makeApiClient(BatchV1Api);
  const core = o.kc.makeApiClient(CoreV1Api);
  const log = o.log ?? silentLogger;
  return {
    kind: "kubernetes",
    async run(req: CopaRequest): Promise<CopaRun> {
      const namespace = o.namespace ?? req.namespace;
      if (!namespace) throw new Error("the kubernetes executor needs a namespace");
      const job = buildJob(o, req, namespace);
      const name = job.metadata!.name!;
      const started = Date.now();
      // A redelivery of the same attempt finds its Job: follow it instead of starting another.
      let created: V1Job;
      try {
        created = await batch.createNamespacedJob({ namespace, body: job });
      } catch (err) {
        if (!isConflict(err))
          throw new Error(`cannot create Job ${namespace}/${name}: ${apiMessage(err)}`, { cause: err });
        created = await batch.readNamespacedJob({ namespace, name });
      }
      // The run's own Secret and ConfigMap: owned by the Job (deleted with it). The Pod
      // waits for them (the kubelet retries the mounts); an existing one is the same
      // attempt's, made before a redelivery.
      const meta = {
        name,
        namespace,
        labels: { "app.kubernetes.io/managed-by": "vuln-patcher" },
        ownerReferences: [
          { apiVersion: "batch/v1", kind: "Job", name, uid: created.metadata!.uid!, controller: true },
        ],
      };
      const secret = runSecretKeys(o, req);
      if (secret.docker || secret.tls)
        await ignoreConflict(
          core.createNamespacedSecret({
            namespace,
            body: { metadata: meta, type: "Opaque", stringData: await runSecretData(o, req) },
          }),
        ).catch(async (err: unknown) => {
          // Without it the Pod would wait for ever: take the Job back.
          await batch
            .deleteNamespacedJob({ namespace, name, propagationPolicy: "Background" })
            .catch(() => {});
          throw new Error(`cannot create the run's Secret ${namespace}/${name}: ${apiMessage(err)}`, {
            cause: err,
          });
        });
      if (req.manifest || req.manifests)
        await ignoreConflict(
          core.createNamespacedConfigMap({ namespace, body: { metadata: meta, data: manifestFiles(req) } }),
        );
      log.info({ job: `${namespace}/${name}` }, "copa Job created");
      const deadline = started + req.timeoutMs + 60_000;
      for (;;) {
        if (req.signal?.aborted)
          // The worker is stopping: the Job runs on, and the next attempt (whichever worker
          // gets the request) finds it by name and follows it, as after a crash.
          return {
            exitCode: null,
            signal: null,
            durationMs: Date.now() - started,
            outputTail: "the worker stopped following the copa Job; it runs on for the next attempt",
            timedOut: false,
          };
        if (Date.now() > deadline) {
          await batch
            .deleteNamespacedJob({ namespace, name, propagationPolicy: "Background" })
            .catch(() => {});
          return {
            exitCode: null,
            signal: "SIGKILL",
            durationMs: Date.now() - started,
            outputTail: "the copa Job was cancelled",
            timedOut: true,
          };
        }
        let j: V1Job;
        try {
          j = await batch.readNamespacedJob({ namespace, name });
        } catch (err) {
          if (isNotFound(err))
            return {
              exitCode: null,
              signal: null,
              durationMs: Date.now() - started,
              outputTail: "the copa Job was deleted",
              timedOut: false,
            };
          throw err;
        }
        const cond = j.status?.conditions?.find(
          (c) => (c.type === "Complete" || c.type === "Failed") && c.status === "True",
        );
        if (cond) {
          const pod = await finishedPod(core, namespace, name);
          const term = pod?.status?.containerStatuses?.find((c) => c.name === "copa")?.state?.terminated;
          let output = term?.message ?? "";
          if (!output && pod?.metadata?.name) {
            output = await core
              .readNamespacedPodLog({ namespace, name: pod.metadata.name, container: "copa", tailLines: 200 })
              .catch(() => "");
          }
          req.onOutput?.(output.split("\n").at(-1) ?? "");
          const timedOut = cond.type === "Failed" && cond.reason === "DeadlineExceeded";
          const exitCode = term?.exitCode ?? (cond.type === "Complete" ? 0 : 1);
          return {
            exitCode,
            signal: null,
            durationMs: Date.now() - started,
            outputTail: output || `Job ${cond.type}: ${cond.reason ?? ""} ${cond.message ?? ""}`.trim(),
            timedOut,
          };
        }
        req.onOutput?.("");
        await sleep(o.pollMs ?? 2_000);
      }
    },
  };
}

async function finishedPod(core: CoreV1Api, namespace: string, job: string): Promise<V1Pod | undefined> {
  const pods = await core.listNamespacedPod({ namespace, labelSelector: `job-name=${job}` });
  return (
    pods.items.find((p) => p.status?.phase === "Succeeded" || p.status?.phase === "Failed") ?? pods.items[0]
  );
}

/** The ConfigMap data for a copa run: manifest.json, or one file per platform. */
export function manifestFiles(req: Pick<CopaRequest, "manifest" | "manifests">): Record<string, string> {
  if (req.manifests)
    return Object.fromEntries(
      Object.entries(req.manifests).map(([f, m]) => [safeFileName(f), JSON.stringify(m, null, 2)]),
    );
  return req.manifest ? { "manifest.json": JSON.stringify(req.manifest, null, 2) } : {};
}
