// `helm install` of the repository's chart into an environment with a real node, with
// the images src/devenv/cluster-images.ts built: every address a Pod needs is the node's
// (the registry, NATS), and Services resolve through the node's CoreDNS.
import { execFile } from "node:child_process";
import { join } from "node:path";
import { promisify } from "node:util";
import { AppsV1Api, CoreV1Api, type KubeConfig } from "@kubernetes/client-node";
import { ignoreConflict } from "../kube/index.ts";
import type { Env } from "./env.ts";
import type { ClusterImages } from "./cluster-images.ts";
import { goBinary, REPO_ROOT } from "./tools.ts";
import { waitFor } from "./wait.ts";

const run = promisify(execFile);

export const CHART = join(REPO_ROOT, "charts", "vuln-patcher");

export async function helm(env: Env, args: string[]): Promise<string> {
  try {
    const { stdout } = await run(goBinary("helm"), [...args, "--kubeconfig", env.kubeconfig], {
      maxBuffer: 32 * 1024 * 1024,
      timeout: 10 * 60_000,
      // helm keeps its cache and config under HOME: inside the environment's directory.
      env: {
        ...process.env,
        HELM_CACHE_HOME: join(env.dir, "helm", "cache"),
        HELM_CONFIG_HOME: join(env.dir, "helm", "config"),
        HELM_DATA_HOME: join(env.dir, "helm", "data"),
      },
    });
    return stdout;
  } catch (err) {
    const e = err as Error & { stderr?: string };
    throw new Error(`helm ${args[0]} failed: ${(e.stderr ?? e.message).trim()}`, { cause: err });
  }
}

/** The values that point the chart at the environment (and its images). */
export function envValues(env: Env, images: ClusterImages): string[] {
  const reg = env.registryHost;
  return [
    `image.repository=${images.vulnPatcher.repository}`,
    `image.tag=${images.vulnPatcher.tag}`,
    `copaImage.repository=${images.copaRunner.repository}`,
    `copaImage.tag=${images.copaRunner.tag}`,
    `buildkit.image=${images.buildkit}`,
    `buildkit.httpRegistries[0]=${reg}`,
    `buildkit.toolingMirror=${reg}`,
    `worker.insecureRegistries[0]=${reg}`,
    `nats.url=${env.natsURL}`,
    // One of each: a 2-core machine, and the kill test wants to know which worker had it.
    "controller.replicas=1",
    "worker.replicas=1",
    "controller.resync=30s",
    // Small requests: the node is this machine.
    "buildkit.resources.requests.cpu=100m",
    "buildkit.resources.requests.memory=128Mi",
  ].flatMap((v) => ["--set", v]);
}

/** `helm install` and wait until every Deployment and StatefulSet of the release is ready. */
export async function installChart(
  env: Env,
  images: ClusterImages,
  o: { release?: string; namespace?: string; extra?: string[] } = {},
): Promise<{ release: string; namespace: string }> {
  const release = o.release ?? "vp";
  const namespace = o.namespace ?? "vuln-patcher";
  const auth = env.nats?.auth;
  if (auth) {
    // The environment's NATS asks for a password: hand it to the chart as an admin would.
    const core = env.kubeConfig().makeApiClient(CoreV1Api);
    await ignoreConflict(core.createNamespace({ body: { metadata: { name: namespace } } }));
    await core.createNamespacedSecret({
      namespace,
      body: { metadata: { name: "env-nats-auth" }, stringData: { user: auth.user, password: auth.password } },
    });
  }
  await helm(env, [
    "install",
    release,
    CHART,
    "--namespace",
    namespace,
    "--create-namespace",
    ...envValues(env, images),
    ...(auth ? ["--set", "nats.credentialsSecret=env-nats-auth"] : []),
    ...(o.extra ?? []),
  ]);
  await waitForDeployments(env.kubeConfig(), namespace);
  return { release, namespace };
}

export async function waitForDeployments(
  kc: KubeConfig,
  namespace: string,
  timeoutMs = 300_000,
): Promise<void> {
  const apps = kc.makeApiClient(AppsV1Api);
  await waitFor(
    `every Deployment and StatefulSet in ${namespace} ready`,
    async () => {
      const [deps, sets] = await Promise.all([
        apps.listNamespacedDeployment({ namespace }),
        apps.listNamespacedStatefulSet({ namespace }),
      ]);
      const notReady = [
        ...deps.items.filter(
          (d) =>
            (d.status?.availableReplicas ?? 0) < (d.spec?.replicas ?? 1) ||
            (d.status?.updatedReplicas ?? 0) < (d.spec?.replicas ?? 1),
        ),
        ...sets.items.filter(
          (s) =>
            (s.status?.readyReplicas ?? 0) < (s.spec?.replicas ?? 1) ||
            (s.status?.updatedReplicas ?? 0) < (s.spec?.replicas ?? 1),
        ),
      ];
      return deps.items.length > 0 && notReady.length === 0;
    },
    timeoutMs,
    500,
  );
}
