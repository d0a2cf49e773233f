// A SIMULATION of a kubelet, for the one component that cannot run in these tests: it
// finds the Pods that copa Jobs create, runs the container's argv with the local copa
// (volumes materialised from their ConfigMaps into temp dirs, no shell), and writes the
// Pod status as a kubelet would. The apiserver, the Job controller, BuildKit, copa and
// the registry around it are real.
import { mkdtemp, mkdir, writeFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { CoreV1Api, type KubeConfig, type V1Pod } from "@kubernetes/client-node";
import { localExecutor } from "../../src/patch/local.ts";
import { goBinary } from "./tools.ts";

/** Run until `signal` aborts; resolves the number of Pods it ran. */
export async function simulateKubelet(
  kc: KubeConfig,
  namespace: string,
  signal: AbortSignal,
): Promise<number> {
  const core = kc.makeApiClient(CoreV1Api);
  const done = new Set<string>();
  while (!signal.aborted) {
    const pods = await core
      .listNamespacedPod({ namespace, labelSelector: "app.kubernetes.io/component=copa" })
      .catch(() => ({ items: [] as V1Pod[] }));
    for (const pod of pods.items) {
      const name = pod.metadata!.name!;
      if (done.has(name) || pod.status?.phase === "Succeeded" || pod.status?.phase === "Failed") continue;
      done.add(name);
      await runPod(core, namespace, pod);
    }
    await new Promise((r) => setTimeout(r, 300));
  }
  return done.size;
}

async function runPod(core: CoreV1Api, namespace: string, pod: V1Pod): Promise<void> {
  const root = await mkdtemp(join(tmpdir(), "sim-kubelet-"));
  try {
    const c = pod.spec!.containers[0]!;
    if (c.command?.[0] !== "copa")
      throw new Error(`the simulated kubelet only runs copa, not ${c.command?.[0]}`);
    const paths = new Map<string, string>();
    for (const m of c.volumeMounts ?? []) {
      const dir = join(root, m.name);
      await mkdir(dir, { recursive: true });
      paths.set(m.mountPath, dir);
      const vol = pod.spec!.volumes!.find((v) => v.name === m.name)!;
      if (vol.configMap) {
        const cm = await core.readNamespacedConfigMap({ namespace, name: vol.configMap.name! });
        for (const [k, v] of Object.entries(cm.data ?? {})) await writeFile(join(dir, k), v);
      }
    }
    const mapPath = (a: string) => {
      for (const [mount, dir] of paths) if (a.startsWith(mount + "/")) return dir + a.slice(mount.length);
      return a;
    };
    const result = await localExecutor({ copaPath: goBinary("copa") }).run({
      id: "sim",
      timeoutMs: 600_000,
      args: () => c.args!.map(mapPath),
    });
    const now = new Date();
    await core.replaceNamespacedPodStatus({
      namespace,
      name: pod.metadata!.name!,
      body: {
        ...pod,
        status: {
          phase: result.exitCode === 0 ? "Succeeded" : "Failed",
          startTime: now,
          containerStatuses: [
            {
              name: c.name,
              image: c.image!,
              imageID: "",
              ready: false,
              restartCount: 0,
              state: {
                terminated: {
                  exitCode: result.exitCode ?? 137,
                  reason: result.exitCode === 0 ? "Completed" : "Error",
                  message: result.outputTail.slice(-4000),
                  startedAt: now,
                  finishedAt: now,
                },
              },
            },
          ],
        },
      },
    });
  } finally {
    await rm(root, { recursive: true, force: true });
  }
}
