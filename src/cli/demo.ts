// vuln-patcher demo: the whole pipeline on this machine, on the real components. It
// brings the environment up, installs the CRDs, starts the controller and a worker,
// creates a VulnerabilityReport for the vulnerable Debian image from real data (CVE
// ids from Debian's changelogs), and follows it to a verified patched image.
import { rm } from "node:fs/promises";
import { setup, goBinary, type Env } from "../devenv/index.ts";
import { installAllCRDs } from "../devenv/crds.ts";
import { honestReport } from "../devenv/honest-report.ts";
import { reportsApi } from "../devenv/kube.ts";
import { parseImageRef } from "../api/index.ts";
import { patchJobClient } from "../kube/index.ts";
import { readPackageDB } from "../registry/index.ts";

import { newLogger } from "../util/index.ts";
import { parse } from "./args.ts";
import { bounded, exitSoon, onShutdown } from "./shutdown.ts";
import { keepDevEnv, prepareDevDir } from "./dev.ts";
import { DEMO_NAMESPACE as NS, startDemoPipeline, type DemoPipeline } from "./demo-pipeline.ts";
import { findingsTable, followPatchJob, type Finding } from "./demo-follow.ts";

export const demoUsage = `Usage: vuln-patcher demo [--cluster] [--keep] [--name NAME]

Runs the whole pipeline on local real components and prints a before/after table:
sbomscanner VulnerabilityReport -> controller -> PatchJob -> NATS JetStream -> worker
-> copa on BuildKit -> registry -> verified PatchJob status.

  --cluster     the same in a cluster on a real node on this machine (root; one per machine):
                the chart installed from images BuildKit builds from the Dockerfiles, a
                Deployment running the vulnerable image, the patch made by a copa Job Pod,
                and the Deployment rolled out to the patched digest (docs/rollout.md)
  --keep        afterwards, keep the environment, the controller, the worker and the web UI
                running until Ctrl-C (then stop the environment with 'vuln-patcher dev down --name NAME')
  --name NAME   the environment's name (default demo)
Logs of the controller and worker go to stderr as JSON; set LOG_LEVEL=warn to quiet them.`;

const REPORT_NAME = "debian-bookworm-vuln";

/** Steps 4 and 5: a report from real data, then the pipeline followed to its end. */
async function patchTheImage(
  env: Env,
  p: DemoPipeline,
  out: (s: string) => void,
  signal: AbortSignal,
  since: () => string,
) {
  const kc = env.kubeConfig();
  const image = parseImageRef(env.images!.vulnerable);
  const src = await p.registry.manifestFor(image);
  const db = await readPackageDB(p.registry, image, src!.manifest.layers, { debianVersion: true });
  out(
    `[4/5] creating a VulnerabilityReport for ${env.images!.vulnerable} (Debian ${db.debianVersion ?? "12"})`,
  );
  out(`      from real data: packages older than bookworm-security, CVE ids from their Debian changelogs`);
  const report = await honestReport({
    name: REPORT_NAME,
    namespace: NS,
    registryURI: env.registryHost,
    repository: image.repository,
    tag: image.tag!,
    digest: src!.digest,
    installed: db.packages,
    debianVersion: db.debianVersion,
  });
  const findings = (report.report as { results: Array<{ vulnerabilities: Finding[] }> }).results[0]!
    .vulnerabilities;
  out(`      ${findings.length} findings in ${new Set(findings.map((x) => x.packageName)).size} packages`);
  await reportsApi(kc).create(report);
  out(`[5/5] following the pipeline:`);
  const seen = new Set<string>();
  const pj = await followPatchJob(patchJobClient(kc), NS, REPORT_NAME, {
    signal,
    deadlineMs: 15 * 60_000,
    step: (key, text) => {
      if (seen.has(key)) return;
      seen.add(key);
      out(`      ${since().padStart(6)}  ${text}`);
    },
  });
  return { pj, findings };
}

export async function demoCommand(argv: string[]): Promise<number> {
  const { values: v } = parse(argv, {
    keep: { type: "boolean" },
    cluster: { type: "boolean" },
    name: { type: "string", default: "demo" },
  });
  if (v.help) {
    process.stdout.write(demoUsage + "\n");
    return 0;
  }
  if (process.getuid?.() !== 0)
    throw new Error("the demo runs BuildKit, which needs root here: run it as root");
  const name = v.name as string;
  const out = (s: string) => process.stdout.write(s + "\n");
  const t0 = Date.now();
  const since = () => `${((Date.now() - t0) / 1000).toFixed(1)}s`;
  const log = newLogger("demo", process.env.LOG_LEVEL ?? "warn");
  // Stopping the environment it started can take a while: a minute, then exit anyway.
  const { signal } = onShutdown(log, v.cluster ? 150_000 : 60_000);
  if (v.cluster)
    return (await import("./demo-cluster.ts")).demoCluster({ name, keep: !!v.keep, out, log, signal });
  out(
    `[1/5] starting the real-component environment "${name}" (etcd, kube-apiserver, kube-controller-manager, NATS JetStream, registry, BuildKit)...`,
  );
  const dir = await prepareDevDir(name);
  const env: Env = await setup({ dir, buildkit: true });
  let kept = false;
  try {
    out(
      `      up in ${since()}: apiserver ${env.controlPlane!.server}, NATS ${env.natsURL}, registry ${env.registryHost}, BuildKit ${env.buildkitAddr}`,
    );
    out(
      `[2/5] installing the PatchJob and PatchPolicy CRDs, the default policy (patch every fixable report) and sbomscanner's VulnerabilityReport test CRD`,
    );
    await installAllCRDs(env.kubeConfig());
    out(`[3/5] starting the controller and a worker (local executor: copa ${goBinary("copa")})`);
    const p = await startDemoPipeline(env, dir, goBinary("copa"), log);
    out(`      web UI: ${p.uiURL}/  (token to paste: cat ${p.tokenFile}; namespace ${NS})`);
    const { pj, findings } = await patchTheImage(env, p, out, signal, since);
    if (signal.aborted) {
      out("interrupted");
      await bounded(p.stop(), 10_000, "stopping the pipeline", log);
      return 130;
    }
    if (!pj || pj.status?.phase !== "Succeeded")
      throw new Error(
        `the demo PatchJob ended ${pj?.status?.phase ?? "nowhere"}: ${pj?.status?.message ?? "timed out"}`,
      );
    const image = pj.status.patchedImage!;
    const { table, fixed } = await findingsTable(p.registry, image.reference!, findings);
    out("");
    out(table);
    out("");
    out(`${fixed} of ${findings.length} findings fixed; patched image ${image.reference}@${image.digest}`);
    out(`PatchJob status: ${pj.status.message}`);
    out(`total wall time ${since()}`);
    out("");
    if (!v.keep) {
      await p.stop();
      out(
        `To explore afterwards, run 'npm run demo -- --keep' (kubectl --kubeconfig <env>/kubeconfig get pj).`,
      );
      return 0;
    }
    await keepDevEnv(name, env);
    kept = true;
    out("Look around (the environment, controller, worker and web UI stay up until Ctrl-C):");
    out(`  web UI: ${p.uiURL}/  (token: cat ${p.tokenFile}; namespace ${NS}) - Patch or Dry run the image`);
    out(`  export KUBECONFIG=${env.kubeconfig}`);
    out(`  ${goBinary("kubectl")} get pj -o wide`);
    out(`  ${goBinary("kubectl")} describe pj ${REPORT_NAME}`);
    out(`  skopeo inspect --tls-verify=false docker://${image.reference}`);
    out(`  vuln-patcher dev down --name ${name}    # when done`);
    await new Promise<void>((r) => signal.addEventListener("abort", () => r(), { once: true }));
    await bounded(p.stop(), 10_000, "stopping the pipeline", log);
    exitSoon(0);
    return 0;
  } finally {
    if (!kept) {
      await env.stop();
      // Not kept: nothing to come back to (each run left ~770 MB of BuildKit and registry data).
      await rm(dir, { recursive: true, force: true }).catch(() => {});
    }
  }
}
