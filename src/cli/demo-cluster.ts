// vuln-patcher demo --cluster: the same story as the local demo, but in a cluster on a
// real node on this machine. The chart is installed from images BuildKit builds from the
// repository's Dockerfiles (as test/slow/cluster.test.ts does); a Deployment runs the
// vulnerable image; the patch is made by a copa Job Pod; then the rollout points the
// Deployment at the patched digest and the kubelet runs it.
import { rm } from "node:fs/promises";
import { join } from "node:path";
import { AppsV1Api, CoreV1Api, CustomObjectsApi, type KubeConfig } from "@kubernetes/client-node";
import { setup, cacheDir, goBinary, type Env } from "../devenv/index.ts";
import { buildClusterImages } from "../devenv/cluster-images.ts";
import { installChart } from "../devenv/chart.ts";
import { sbomscannerCRDs } from "../devenv/crds.ts";
import { honestReportForImage } from "../devenv/honest-report.ts";
import { reportsApi } from "../devenv/kube.ts";
import { markNodeKept } from "../devenv/node.ts";
import { testRegistryClient } from "../devenv/registry.ts";
import { waitFor } from "../devenv/wait.ts";
import { parseImageRef, type PatchJob, POLICY_PLURAL } from "../api/index.ts";
import { installCRDs, patchJobClient } from "../kube/index.ts";
import { type Logger } from "../util/index.ts";
import { bounded, exitSoon } from "./shutdown.ts";
import { keepDevEnv, prepareDevDir } from "./dev.ts";
import { findingsTable, followPatchJob, type Finding } from "./demo-follow.ts";

const NS = "default";
const APP = "shop";
const REPORT = "shop-debian";

/** The workload the demo rolls out: the vulnerable image, non-root, Ready when its process runs. */
function shopDeployment(image: string) {
  return {
    metadata: { name: APP, labels: { app: APP } },
    spec: {
      replicas: 2,
      selector: { matchLabels: { app: APP } },
      template: {
        metadata: { labels: { app: APP } },
        spec: {
          terminationGracePeriodSeconds: 1,
          containers: [
            {
              name: "app",
              image,
              command: ["sleep", "infinity"],
              securityContext: { allowPrivilegeEscalation: false, runAsNonRoot: true, runAsUser: 65532 },
            },
          ],
        },
      },
    },
  };
}

/** The image IDs the kubelet reports for the shop's Ready Pods, once there are `n`, all running `digest`. */
async function podsRunning(kc: KubeConfig, digest: string, n: number): Promise<string[]> {
  const core = kc.makeApiClient(CoreV1Api);
  return waitFor(
    `${n} Ready Pods of ${APP} running ${digest}`,
    async () => {
      const pods = (
        await core.listNamespacedPod({ namespace: NS, labelSelector: `app=${APP}` })
      ).items.filter((p) => !p.metadata?.deletionTimestamp);
      const ready = pods.filter((p) =>
        p.status?.conditions?.some((c) => c.type === "Ready" && c.status === "True"),
      );
      const ids = ready.map((p) => p.status?.containerStatuses?.[0]?.imageID ?? "");
      return pods.length === n && ready.length === n && ids.every((i) => i.endsWith(digest))
        ? ids
        : undefined;
    },
    300_000,
    500,
  );
}

/** Step 2: the images built from the Dockerfiles, the chart (rollout on for NS), and a policy that rolls out. */
async function installWithPolicy(env: Env, out: (s: string) => void): Promise<void> {
  const kc = env.kubeConfig();
  out(
    `[2/6] building the images from the Dockerfiles with BuildKit, then helm install (rollout on for "${NS}")`,
  );
  const images = await buildClusterImages({
    dir: env.dir,
    registry: env.registryHost,
    buildkitAddr: env.buildkitAddr,
    cacheDir: join(cacheDir(), "buildkit-cache"),
  });
  await installCRDs(kc, sbomscannerCRDs());
  await installChart(env, images, {
    extra: [
      "rollout.enabled=true",
      `rollout.namespaces={${NS}}`,
      `worker.namespaces[0]=${NS}`,
      "api.enabled=true",
    ].flatMap((v) => ["--set", v]),
  });
  // This namespace's policy: patch every fixable report, and roll the patch out.
  await kc.makeApiClient(CustomObjectsApi).createNamespacedCustomObject({
    group: "vulnpatcher.io",
    version: "v1alpha1",
    plural: POLICY_PLURAL,
    namespace: NS,
    body: {
      apiVersion: "vulnpatcher.io/v1alpha1",
      kind: "PatchPolicy",
      metadata: { name: "patch-and-roll-out" },
      spec: { selector: { fixableOnly: true }, rollout: { mode: "Auto", timeoutSeconds: 300 } },
    },
  });
}

export async function demoCluster(o: {
  name: string;
  keep: boolean;
  out: (s: string) => void;
  log: Logger;
  signal: AbortSignal;
}): Promise<number> {
  const { out } = o;
  const t0 = Date.now();
  const since = () => `${((Date.now() - t0) / 1000).toFixed(1)}s`;
  out(
    `[1/6] starting "${o.name}": etcd, kube-apiserver, NATS, registry, BuildKit, and a real node (containerd, kubelet, CoreDNS)...`,
  );
  const dir = await prepareDevDir(o.name);
  const env: Env = await setup({ dir, node: true, buildkit: true, natsAuth: true });
  let kept = false;
  try {
    const kc = env.kubeConfig();
    out(`      up in ${since()}: apiserver ${env.controlPlane!.server}, node Ready`);
    await installWithPolicy(env, out);
    out(`      chart ready at ${since()}; PatchPolicy ${NS}/patch-and-roll-out: rollout Auto`);
    const image = env.images!.vulnerable;
    out(`[3/6] a Deployment "${APP}" (2 replicas) running ${image}`);
    await kc
      .makeApiClient(AppsV1Api)
      .createNamespacedDeployment({ namespace: NS, body: shopDeployment(image) });
    const source = await testRegistryClient().manifestFor(parseImageRef(image));
    await podsRunning(kc, source!.digest, 2);
    out(`      its Pods run ${source!.digest} (the kubelet's imageID)`);
    const report = await honestReportForImage(image, REPORT, NS);
    const findings = (report.report as { results: Array<{ vulnerabilities: Finding[] }> }).results[0]!
      .vulnerabilities;
    out(
      `[4/6] sbomscanner's VulnerabilityReport: ${findings.length} findings from real data (Debian changelogs)`,
    );
    await reportsApi(kc).create(report);
    out(
      `[5/6] following the pipeline in the cluster (controller Pod -> NATS -> worker Pod -> copa Job Pod -> BuildKit Pod):`,
    );
    const seen = new Set<string>();
    const pj = await followPatchJob(patchJobClient(kc), NS, REPORT, {
      signal: o.signal,
      deadlineMs: 15 * 60_000,
      step: (key, text) => {
        if (!seen.has(key)) out(`      ${since().padStart(7)}  ${text}`);
        seen.add(key);
      },
    });
    if (o.signal.aborted) return 130;
    if (pj?.status?.phase !== "Succeeded")
      throw new Error(
        `the demo PatchJob ended ${pj?.status?.phase ?? "nowhere"}: ${pj?.status?.message ?? "timed out"}`,
      );
    const patched = pj.status.patchedImage!;
    const tSucceeded = Date.now();
    out(`[6/6] rolling out ${patched.reference}@${patched.digest} to the workloads of "${NS}":`);
    const rolled = await waitFor(
      "the rollout to finish",
      async () => {
        const x = (await patchJobClient(kc).get(NS, REPORT)) as PatchJob | undefined;
        const ws = x?.status?.rollout?.workloads ?? [];
        return ws.length > 0 && ws.every((w) => !["Planned", "Updating", "RollingBack"].includes(w.state))
          ? x
          : undefined;
      },
      300_000,
      500,
    );
    await podsRunning(kc, patched.digest!, 2);
    for (const w of rolled!.status!.rollout!.workloads)
      out(
        `      ${w.kind}/${w.name} (${w.container}): ${w.state}${w.reason ? ` ${w.reason}` : ""}${w.to ? ` -> ${w.to}` : ""}`,
      );
    out(
      `      both Pods of ${APP} Ready and running ${patched.digest} (the kubelet's imageID), ${((Date.now() - tSucceeded) / 1000).toFixed(1)} s after Succeeded`,
    );
    const { table, fixed } = await findingsTable(testRegistryClient(), patched.reference!, findings);
    out("");
    out(table);
    out("");
    out(
      `${fixed} of ${findings.length} findings fixed; ${rolled!.status!.rollout!.updated ?? 0} workloads updated; total ${since()}`,
    );
    if (!o.keep) return 0;
    await keepDevEnv(o.name, env);
    await markNodeKept(env.dir);
    kept = true;
    const kubectl = `${goBinary("kubectl")} --kubeconfig ${env.kubeconfig}`;
    out("");
    out(`Look around (it stays up after Ctrl-C; stop it with 'vuln-patcher dev down --name ${o.name}'):`);
    out(`  ${kubectl} get pj,deploy,pods -A`);
    out(`  ${kubectl} describe pj ${REPORT}`);
    out(
      `  ${kubectl} -n vuln-patcher port-forward svc/vp-vuln-patcher-api 8080:80   # the web UI at http://127.0.0.1:8080/`,
    );
    out(
      `  ${kubectl} create token vp-vuln-patcher-controller -n vuln-patcher   # a token with rights on PatchJobs, for the UI`,
    );
    await new Promise<void>((r) => o.signal.addEventListener("abort", () => r(), { once: true }));
    exitSoon(0);
    return 0;
  } finally {
    if (!kept) {
      await bounded(env.stop(), 120_000, "stopping the environment", o.log);
      await rm(dir, { recursive: true, force: true }).catch(() => {});
    }
  }
}
